"""Dataset versions: reproducible, content-addressed training sets built from captured
readings, topped up with the synthetic generator's rows (docs/models.md, "Dataset versions").

A :class:`DatasetVersion` names the exact capture files (key, sha256, rows), the synthetic
part (rows, seed, generator) and the label policy; its ``id`` is the sha256 of its
canonical JSON without ``created_at``, so the same selection always gets the same id. It is
stored once at ``datasets/<id>.json`` in the capture store and never overwritten; capture
files are immutable, and :func:`materialize` re-checks every file's sha256, so a dataset id
in a model's provenance says exactly which rows trained it. Why not DVC:
docs/architecture.md, "Dataset versions: content-addressed records, not DVC".

Label policy (``captured-labelled+synthetic``): captured rows whose ground-truth ``label``
is missing, or is not one of the generator's :data:`~iot_models.sensors.LABELS`, are
dropped; when fewer than ``min_rows`` labelled rows remain, the synthetic generator
(:func:`iot_models.sensors.make_dataset`, the one the bundled models were trained on) fills
up to ``min_rows``. Rows come out captured first (files in key order, rows in file order),
then synthetic.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from typing import Annotated, Final, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from iot_models.capture.layout import DATASETS_PREFIX
from iot_models.capture.reader import TimeBound, list_files, read_file
from iot_models.manifest import ModelError
from iot_models.sensors import FEATURE_NAMES, LABELS, N_FEATURES, make_dataset
from iot_models.store.objects import ObjectNotFoundError, ObjectStore

__all__ = [
    "GENERATOR",
    "CaptureFile",
    "DatasetError",
    "DatasetVersion",
    "LabelPolicy",
    "Materialized",
    "SyntheticPart",
    "create_dataset",
    "dataset_key",
    "list_datasets",
    "load_dataset",
    "materialize",
]

GENERATOR: Final = "iot_models.sensors.make_dataset"
"""The synthetic generator's name in a dataset record."""

DEFAULT_SYNTHETIC_SEED: Final = 101
"""The training split's seed (``training.data.SEEDS["train"]``)."""

_ID_RE: Final = re.compile(r"\A[0-9a-f]{64}\Z")

Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class DatasetError(ModelError):
    """A dataset cannot be created, found or materialized; the message says which and why."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


class CaptureFile(_Frozen):
    """One capture file of a dataset."""

    key: str
    """Its key in the capture store (``readings/<model>/date=.../hour=.../....parquet``)."""
    sha256: Sha256
    """sha256 of the file's bytes when the dataset was created."""
    rows: int = Field(ge=0)
    """All its rows."""
    labelled: int = Field(ge=0)
    """Its rows the label policy keeps."""


class SyntheticPart(_Frozen):
    """Rows drawn from the synthetic generator."""

    rows: int = Field(ge=1)
    seed: int
    generator: str = GENERATOR


class LabelPolicy(_Frozen):
    """Which rows a dataset keeps."""

    name: Literal["captured-labelled+synthetic"] = "captured-labelled+synthetic"
    """Captured rows without a known ground-truth label are dropped; synthetic rows fill up
    to ``min_rows``."""
    min_rows: int = Field(default=0, ge=0)
    labels: tuple[str, ...] = LABELS
    """The label set, in index order (``y`` indexes it)."""


class DatasetVersion(_Frozen):
    """A reproducible training set: exactly these files, this synthetic part, this policy.

    Build one with :func:`create_dataset`; read one with :func:`load_dataset`.
    """

    schema_version: Literal[1] = 1
    id: Sha256
    """sha256 of the canonical JSON of every other field except ``created_at``."""
    model: str
    """The model whose captures were selected."""
    feature_names: tuple[str, ...] = FEATURE_NAMES
    files: tuple[CaptureFile, ...]
    """The capture files, sorted by key."""
    synthetic: SyntheticPart | None
    label_policy: LabelPolicy
    created_at: datetime

    @property
    def captured_rows(self) -> int:
        """Captured rows kept (labelled)."""
        return sum(f.labelled for f in self.files)

    @property
    def rows(self) -> int:
        """Rows :func:`materialize` returns."""
        return self.captured_rows + (self.synthetic.rows if self.synthetic else 0)

    @staticmethod
    def content_id(content: dict[str, object]) -> str:
        """The id of a record's content (every field but ``id`` and ``created_at``)."""
        body = {k: v for k, v in content.items() if k not in ("id", "created_at")}
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return hashlib.sha256(canonical.encode()).hexdigest()


def dataset_key(dataset_id: str) -> str:
    """Where a dataset record lives in the capture store."""
    return f"{DATASETS_PREFIX}{dataset_id}.json"


def _labelled_mask(labels: list[str | None]) -> npt.NDArray[np.bool_]:
    known = set(LABELS)
    return np.fromiter((lab in known for lab in labels), dtype=bool, count=len(labels))


def create_dataset(
    objects: ObjectStore,
    model: str,
    *,
    since: TimeBound = None,
    until: TimeBound = None,
    min_rows: int = 0,
    synthetic_seed: int = DEFAULT_SYNTHETIC_SEED,
    now: datetime | None = None,
) -> DatasetVersion:
    """Select ``model``'s capture files in the hours overlapping ``[since, until)``, record
    them as a dataset version and store it at ``datasets/<id>.json``.

    Every selected file is read once (sha256 of its bytes, count of labelled rows). When
    fewer than ``min_rows`` labelled rows are captured, a synthetic part of
    ``min_rows - labelled`` rows drawn with ``synthetic_seed`` fills up. The same selection
    gives the same id; when that record already exists it is returned unchanged (its
    original ``created_at``), never overwritten.

    Args:
        objects: the capture store.
        model: the model whose captures to select.
        since: window start (epoch seconds or datetime; naive = UTC); ``None``: all.
        until: window end, exclusive; ``None``: up to now (files present now).
        min_rows: the dataset's minimum size, reached with synthetic rows.
        synthetic_seed: seed of the synthetic part (default: the training split's).
        now: ``created_at`` (default: the current time).

    Returns:
        The stored :class:`DatasetVersion`.

    Raises:
        DatasetError: no labelled rows and ``min_rows`` is 0 (nothing to train on).
        StoreError: the store did not answer or refused.
    """
    files: list[CaptureFile] = []
    for key in list_files(objects, model, since, until):
        try:
            data = objects.get(key)
        except ObjectNotFoundError:
            continue  # deleted by retention between the listing and the read
        table = read_file(data, ["label"])
        labels = table.column("label").to_pylist()
        labelled = int(_labelled_mask(labels).sum()) if table.num_rows else 0
        files.append(
            CaptureFile(
                key=key,
                sha256=hashlib.sha256(data).hexdigest(),
                rows=table.num_rows,
                labelled=labelled,
            )
        )
    captured = sum(f.labelled for f in files)
    if captured == 0 and min_rows == 0:
        total = sum(f.rows for f in files)
        raise DatasetError(
            f"no labelled rows for {model!r} in {objects.url} ({len(files)} capture files, "
            f"{total} rows, none with a known ground-truth label): capture readings that "
            "carry a label, widen the window, or set a minimum size to fill with "
            "synthetic rows"
        )
    fill = max(0, min_rows - captured)
    synthetic = SyntheticPart(rows=fill, seed=synthetic_seed) if fill else None
    content: dict[str, object] = {
        "schema_version": 1,
        "model": model,
        "feature_names": list(FEATURE_NAMES),
        "files": [f.model_dump(mode="json") for f in files],
        "synthetic": None if synthetic is None else synthetic.model_dump(mode="json"),
        "label_policy": LabelPolicy(min_rows=min_rows).model_dump(mode="json"),
    }
    dataset_id = DatasetVersion.content_id(content)
    try:
        return load_dataset(objects, dataset_id)
    except DatasetError as exc:
        if not isinstance(exc.__cause__, ObjectNotFoundError):
            raise
    dataset = DatasetVersion.model_validate(
        {**content, "id": dataset_id, "created_at": now or datetime.now(UTC)}
    )
    objects.put(dataset_key(dataset_id), dataset.model_dump_json(indent=2).encode())
    return dataset


def load_dataset(objects: ObjectStore, dataset_id: str) -> DatasetVersion:
    """The dataset version ``dataset_id`` (its full 64-hex id) from the capture store,
    checked against its id.

    Raises:
        DatasetError: malformed id, no such dataset (``__cause__`` is the
            :class:`ObjectNotFoundError`), or a record whose content does not match its id.
        StoreError: the store did not answer or refused.
    """
    if not _ID_RE.match(dataset_id):
        raise DatasetError(f"{dataset_id!r} is not a dataset id (64 lowercase hex digits)")
    try:
        raw = objects.get(dataset_key(dataset_id))
    except ObjectNotFoundError as exc:
        raise DatasetError(f"no dataset {dataset_id} in {objects.url}") from exc
    try:
        dataset = DatasetVersion.model_validate_json(raw)
    except ValidationError as exc:
        raise DatasetError(f"dataset {dataset_id} in {objects.url} is malformed: {exc}") from exc
    if (
        dataset.id != dataset_id
        or DatasetVersion.content_id(dataset.model_dump(mode="json")) != dataset_id
    ):
        raise DatasetError(f"dataset {dataset_id} in {objects.url} does not match its id")
    return dataset


def list_datasets(objects: ObjectStore) -> list[DatasetVersion]:
    """Every dataset version in the capture store, oldest first (malformed ones skipped)."""
    found: list[DatasetVersion] = []
    for key in objects.list(DATASETS_PREFIX):
        name = key[len(DATASETS_PREFIX) :].removesuffix(".json")
        try:
            found.append(load_dataset(objects, name))
        except DatasetError:
            continue
    return sorted(found, key=lambda d: (d.created_at, d.id))


Materialized = tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], tuple[str, ...]]
"""``(X, y, feature_names)``."""


def materialize(objects: ObjectStore, dataset: DatasetVersion) -> Materialized:
    """The rows of ``dataset``, as training consumes them (like
    :class:`training.data.Split`).

    Reads every capture file, checks its sha256 against the record, keeps the rows the
    label policy keeps (captured files in the record's order, rows in file order), then
    appends the synthetic part (``make_dataset(rows, seed)``).

    Returns:
        ``X`` float32 ``(rows, 16)`` in ``feature_names`` order, ``y`` int64 ``(rows,)``
        label indices into ``dataset.label_policy.labels`` (0 = normal), and
        ``feature_names``.

    Raises:
        DatasetError: a capture file is missing or changed (the message names it), its
            rows do not have the dataset's feature width, or the record names another
            generator, feature set or label set than this code has.
        StoreError: the store did not answer or refused.
    """
    if dataset.feature_names != FEATURE_NAMES or dataset.label_policy.labels != LABELS:
        raise DatasetError(
            f"dataset {dataset.id} was made for other features or labels than this "
            "version of iot_models.sensors has"
        )
    index = {label: i for i, label in enumerate(LABELS)}
    xs: list[npt.NDArray[np.float32]] = []
    ys: list[npt.NDArray[np.int64]] = []
    for entry in dataset.files:
        try:
            data = objects.get(entry.key)
        except ObjectNotFoundError as exc:
            raise DatasetError(
                f"dataset {dataset.id}: capture file {entry.key} is missing from "
                f"{objects.url} (deleted by retention?)"
            ) from exc
        digest = hashlib.sha256(data).hexdigest()
        if digest != entry.sha256:
            raise DatasetError(
                f"dataset {dataset.id}: capture file {entry.key} changed "
                f"(sha256 {digest}, recorded {entry.sha256})"
            )
        table = read_file(data, ["features", "label"])
        labels = table.column("label").to_pylist()
        keep = _labelled_mask(labels)
        rows = [f for f, k in zip(table.column("features").to_pylist(), keep, strict=True) if k]
        if any(len(r) != N_FEATURES for r in rows):
            raise DatasetError(
                f"dataset {dataset.id}: capture file {entry.key} has rows without "
                f"{N_FEATURES} features"
            )
        xs.append(np.asarray(rows, dtype=np.float32).reshape(-1, N_FEATURES))
        ys.append(
            np.fromiter(
                (index[lab] for lab, k in zip(labels, keep, strict=True) if k), dtype=np.int64
            )
        )
    if dataset.synthetic is not None:
        if dataset.synthetic.generator != GENERATOR:
            raise DatasetError(
                f"dataset {dataset.id}: unknown generator {dataset.synthetic.generator!r}"
            )
        x, y = make_dataset(dataset.synthetic.rows, dataset.synthetic.seed)
        xs.append(x.astype(np.float32, copy=False))
        ys.append(y.astype(np.int64, copy=False))
    if not xs:
        return (
            np.empty((0, N_FEATURES), dtype=np.float32),
            np.empty(0, dtype=np.int64),
            FEATURE_NAMES,
        )
    return np.concatenate(xs), np.concatenate(ys), FEATURE_NAMES
