"""The retraining pipeline: captured data -> dataset version -> train -> evaluate ->
quantize -> gate -> publish -> canary, as named steps over a run folder.

``iotstream models pipeline`` runs every step in one process (a laptop needs no
orchestrator); ``iotstream models pipeline step NAME --run-dir D`` runs one, which is what
each task of the Airflow DAG ``iotstream_retrain`` (``dags/iotstream_retrain.py``) calls.
A step that already completed in the folder is a no-op (a retried task does not redo it),
a failed gate raises :class:`~training.release_steps.GateFailedError` with the reasons
and nothing is published, and promotion to production stays manual (``iotstream models
promote``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from training import release_steps, steps
from training.run_folder import PipelineError, RunConfig, RunFolder

__all__ = ["STEPS", "PipelineError", "RunConfig", "RunFolder", "run_pipeline", "run_step"]

Step = Callable[[RunFolder, RunConfig, steps.Log], dict[str, Any]]

STEPS: Final[dict[str, Step]] = {
    "assemble_dataset": steps.assemble_dataset,
    "train": steps.train,
    "evaluate": steps.evaluate_fp32,
    "quantize": steps.quantize_variants,
    "gate": release_steps.gate_variants,
    "publish": release_steps.publish,
    "canary": release_steps.canary,
}
"""Step name -> function, in run order (the DAG's tasks are these, ``canary`` as
``move_canary``)."""


def run_step(
    name: str,
    run_dir: Path,
    overrides: dict[str, Any] | None = None,
    *,
    log: steps.Log = print,
) -> dict[str, Any]:
    """Run the step ``name`` in ``run_dir`` unless it already completed there.

    Args:
        name: a key of :data:`STEPS`.
        run_dir: the run folder (created by the first step).
        overrides: :class:`RunConfig` fields; needed by the first step of a run, checked
            against ``run.json`` by the later ones.
        log: where progress lines go.

    Returns:
        The step's completion record.

    Raises:
        PipelineError: unknown step, missing or contradicting configuration, an earlier
            step not run, or the step failed (``GateFailedError`` for the gate).
        ModelError: a store or dataset error (the message says what to do).
    """
    if name not in STEPS:
        raise PipelineError(f"unknown step {name!r}; steps: {', '.join(STEPS)}")
    folder = RunFolder(run_dir)
    cfg = folder.configure(None, overrides or {})
    record = folder.done(name)
    if record is not None:
        log(f"{name}: already done in {run_dir} ({record})")
        return record
    log(f"{name}: running (model {cfg.model}, run {cfg.run_id})")
    record = STEPS[name](folder, cfg, log)
    folder.mark_done(name, record)
    return record


def run_pipeline(
    run_dir: Path, config: RunConfig, *, log: steps.Log = print
) -> dict[str, dict[str, Any]]:
    """Every step in order in ``run_dir``; returns each step's record (see :func:`run_step`)."""
    RunFolder(run_dir).configure(config, config.model_dump(exclude={"run_id"}))
    return {name: run_step(name, run_dir, log=log) for name in STEPS}
