"""ONNX Runtime implementation of :class:`iot_models.model.Model`.

:func:`load_models` is the entry point for the worker and the gateway's REST path: it reads
``models/<name>/<version>/manifest.json``, picks the variant for this CPU (or the override),
checks the file's sha256 against the manifest, builds the session with the given thread
counts and warms it up.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from iot_models.manifest import (
    HashMismatchError,
    Manifest,
    ModelError,
    ModelNotFoundError,
    VariantNotFoundError,
    find_manifests,
    read_manifest,
    sha256_bytes,
)
from iot_models.model import Model, ModelInfo, Output
from iot_models.variants import current_platform, select_variant

__all__ = ["OnnxModel", "load_models"]

log = logging.getLogger(__name__)
_WARMUP_BATCHES = (1, 64)


class OnnxModel:
    """One model variant in an ``onnxruntime.InferenceSession``; ``predict`` is thread-safe.

    Args:
        manifest: the version's manifest.
        directory: the folder holding the manifest and the ONNX files.
        variant: which variant to load (see :func:`iot_models.variants.select_variant`).
        intra_op_threads: ONNX Runtime threads inside one operator (1 fits one-core workers).
        inter_op_threads: threads across independent operators (these graphs are chains: 1).

    Raises:
        VariantNotFoundError: ``variant`` is not in the manifest or its file is missing.
        HashMismatchError: the file's sha256 is not the manifest's.
        ModelError: ONNX Runtime refused the file.
    """

    def __init__(
        self,
        manifest: Manifest,
        directory: Path,
        variant: str,
        *,
        intra_op_threads: int = 1,
        inter_op_threads: int = 1,
    ) -> None:
        entry = manifest.variants.get(variant)
        if entry is None:
            raise VariantNotFoundError(
                f"{manifest.name}/{manifest.version} has no variant {variant!r}; "
                f"available: {sorted(manifest.variants)}"
            )
        path = directory / entry.file
        try:
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise VariantNotFoundError(
                f"{path} is listed in the manifest but missing; restore it from git or "
                "run `iotstream models build`"
            ) from exc
        digest = sha256_bytes(data)
        if digest != entry.sha256:
            raise HashMismatchError(
                f"{path}: sha256 {digest[:12]}… but the manifest says {entry.sha256[:12]}…; "
                "the file is corrupt or from another build: restore it from git or run "
                "`iotstream models build`"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = inter_op_threads
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self._session = ort.InferenceSession(
                data, sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # ORT raises its own untyped Fail/InvalidGraph errors
            raise ModelError(f"ONNX Runtime could not load {path}: {exc}") from exc
        out = manifest.output
        self._input = manifest.input.name
        self._fetch = [out.tensor]
        self._threshold = out.threshold
        self._labels = out.labels
        self._normal = out.labels.index(out.normal_label) if out.labels and out.normal_label else 0
        self._info = ModelInfo(
            name=manifest.name,
            version=manifest.version,
            variant=variant,
            kind=out.kind,
            feature_names=manifest.input.feature_names,
            labels=out.labels,
        )
        self._warm_up()

    @property
    def info(self) -> ModelInfo:
        """Identity and input contract."""
        return self._info

    def _warm_up(self) -> None:
        for n in _WARMUP_BATCHES:
            self.run(np.zeros((n, self._info.n_features), dtype=np.float32))

    def run(self, features: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """The raw output tensor for a batch (probabilities, or reconstruction errors).

        Raises:
            ModelError: ONNX Runtime refused the batch (wrong width, for instance).
        """
        batch = np.asarray(features, dtype=np.float32)
        try:
            result: npt.NDArray[np.float32] = self._session.run(self._fetch, {self._input: batch})[
                0
            ]
        except Exception as exc:  # ORT's own untyped errors, translated at this boundary
            raise ModelError(
                f"{self._info.name}/{self._info.variant} could not score a batch of shape "
                f"{batch.shape} (expects (n, {self._info.n_features}) float32): {exc}"
            ) from exc
        return result

    def predict(self, features: npt.NDArray[np.float32]) -> list[Output]:
        """Score a float32 ``(n, n_features)`` batch with one session run."""
        raw = self.run(features)
        if self._labels is None:
            scores = raw.reshape(-1).tolist()
            threshold = self._threshold
            return [Output(s, s > threshold) for s in scores]
        labels = self._labels
        best = raw.argmax(axis=1).tolist()
        scores = (1.0 - raw[:, self._normal]).tolist()
        rows = raw.tolist()
        threshold = self._threshold
        # positional: keywords cost ~0.2 µs a reading here (Output's field order)
        return [
            Output(s, s > threshold, labels[b], dict(zip(labels, row, strict=True)))
            for s, b, row in zip(scores, best, rows, strict=True)
        ]


def load_models(
    root: Path,
    names: Iterable[str] | None = None,
    variant_override: str | Mapping[str, str] | None = None,
    threads: int = 1,
) -> dict[str, Model]:
    """Load the newest version of each model under ``root`` (``models/`` in the repo).

    Args:
        root: the model repository folder.
        names: models to load; ``None`` loads every model found.
        variant_override: one variant name for all models, or ``{model: variant}``; models
            not in the mapping use their platform default.
        threads: ONNX Runtime intra-op threads per session.

    Raises:
        ModelNotFoundError: a requested name (or any model, when ``names`` is ``None``) is missing.
        VariantNotFoundError, HashMismatchError, ManifestError, ModelError: see :class:`OnnxModel`.
    """
    found = find_manifests(root)
    wanted = list(found) if names is None else list(names)
    if not wanted:
        raise ModelNotFoundError(f"no models under {root}; run `iotstream models build`")
    platform = current_platform()
    models: dict[str, Model] = {}
    for name in wanted:
        path = found.get(name)
        if path is None:
            raise ModelNotFoundError(
                f"model {name!r} not found under {root} (have: {sorted(found)}); "
                "check the name or run `iotstream models build`"
            )
        manifest = read_manifest(path)
        override = (
            variant_override.get(name)
            if isinstance(variant_override, Mapping)
            else variant_override
        )
        variant = select_variant(manifest.variants, manifest.defaults, platform, override)
        models[name] = OnnxModel(manifest, path.parent, variant, intra_op_threads=threads)
        log.info(
            "loaded model %s/%s variant %s (platform %s, override %s, %d threads)",
            manifest.name,
            manifest.version,
            variant,
            platform,
            override,
            threads,
        )
    return models
