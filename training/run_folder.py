"""A retraining run's folder: its configuration and what each step leaves for the next.

Every step of :mod:`training.pipeline` reads and writes only this folder (and the stores
the configuration names), so the steps can run as separate processes (Airflow tasks), on
another machine with a shared folder, and be retried. Layout::

    run.json                 RunConfig (written once; a later step with other options fails)
    data.npz                 the dataset's rows, split: x/y_{train,calibration,test}
    dataset.json             the dataset version record (content-addressed id)
    fp32.onnx                train
    evaluate.json            fp32 on the test split, the autoencoder's threshold
    <variant>.onnx           quantize (int8-x86_64, int8-x86_64-novnni, int8-arm64)
    quantize.json            the recipes and excluded nodes
    gate.json                accuracy per variant, arm64 parity, verdict
    candidate/               the version folder (manifest + files) the gate let through
    published.json           the version published, and where
    canary.json              the alias after the canary moved
    done/<step>.json         a step's completion record: a retried step that finds it is a no-op
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from iot_models.store.objects import write_atomic

__all__ = ["PipelineError", "RunConfig", "RunFolder"]


class PipelineError(Exception):
    """A step cannot run or failed; the message says which step, why, and what to do."""


class RunConfig(BaseModel):
    """What one retraining run does (``run.json``)."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    model: str = Field(min_length=1)
    """The model to retrain (a name in ``training.specs.SPECS``)."""
    store: str = Field(min_length=1)
    """Model store URL the new version is published to (``s3://``, ``file://`` or a folder)."""
    capture: str = Field(min_length=1)
    """Capture store URL the dataset is assembled from (and its record written to)."""
    alias: str = "production"
    """The alias whose canary moves to the new version (its own version never changes)."""
    canary_percent: float = Field(10.0, gt=0.0, le=100.0)
    """Share of devices the new version serves as a canary."""
    since: float | None = None
    """Dataset window start, epoch seconds (None: every captured hour)."""
    until: float | None = None
    """Dataset window end, exclusive (None: now)."""
    min_rows: int = Field(5000, ge=0)
    """Dataset size reached with synthetic rows when fewer labelled rows were captured."""
    synthetic_seed: int = 101
    """Seed of the synthetic top-up rows."""
    gate_limits: dict[str, float] | None = None
    """Replaces fields of the spec's gate limits (e.g. ``{"min_agreement": 0.99}``); the
    manifest records the limits applied."""
    parity: Literal["auto", "required", "off"] = "auto"
    """arm64 parity under qemu: ``auto`` runs it when qemu and the sysroot are there (else
    records why not), ``required`` fails the gate without them, ``off`` records a skip."""
    run_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    """Identifies the run; recorded in the new version's provenance (publish is idempotent
    by it)."""


class RunFolder:
    """The run folder ``root`` (created on first use)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, name: str) -> Path:
        """A file of the run."""
        return self.root / name

    def configure(self, config: RunConfig | None, overrides: dict[str, Any]) -> RunConfig:
        """The run's configuration: ``run.json`` when it exists (``overrides`` must agree
        with it), else ``config`` (or ``overrides``) written to it.

        Raises:
            PipelineError: no configuration anywhere, or options that contradict ``run.json``.
        """
        path = self.path("run.json")
        if path.is_file():
            stored = RunConfig.model_validate_json(path.read_bytes())
            wanted = {k: v for k, v in overrides.items() if v is not None and k != "run_id"}
            differ = {k for k, v in wanted.items() if getattr(stored, k) != v}
            if differ:
                raise PipelineError(
                    f"{self.root} belongs to a run configured with other "
                    f"{', '.join(sorted(differ))}: use a new --run-dir for a new run"
                )
            return stored
        if config is None:
            missing = [k for k in ("model", "store", "capture") if overrides.get(k) is None]
            if missing:
                raise PipelineError(
                    f"{self.root} holds no run.json: give --{' --'.join(missing)} (the first "
                    "step of a run records its configuration)"
                )
            config = RunConfig.model_validate({k: v for k, v in overrides.items() if v is not None})
        self.write_json("run.json", config.model_dump(mode="json"))
        return config

    def write_json(self, name: str, doc: Any) -> None:
        """Write ``doc`` as JSON, atomically."""
        write_atomic(self.path(name), (json.dumps(doc, indent=2) + "\n").encode())

    def read_json(self, name: str, *, needed_by: str) -> Any:
        """A JSON file an earlier step wrote.

        Raises:
            PipelineError: it is not there (the step that writes it has not run).
        """
        try:
            return json.loads(self.path(name).read_bytes())
        except FileNotFoundError as exc:
            raise PipelineError(
                f"{needed_by}: {self.path(name)} is missing; run the earlier steps first"
            ) from exc

    def write_bytes(self, name: str, data: bytes) -> None:
        """Write a file atomically."""
        write_atomic(self.path(name), data)

    def done(self, step: str) -> dict[str, Any] | None:
        """The completion record of ``step``, or ``None`` when it has not completed."""
        path = self.path(f"done/{step}.json")
        if not path.is_file():
            return None
        record: dict[str, Any] = json.loads(path.read_bytes())
        return record

    def mark_done(self, step: str, record: dict[str, Any]) -> None:
        """Record that ``step`` completed (what it did, for logs and a retry)."""
        self.write_json(f"done/{step}.json", record)
