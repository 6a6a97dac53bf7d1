"""The retraining steps up to the int8 files: assemble_dataset -> train -> evaluate ->
quantize (then gate -> publish -> canary: :mod:`training.release_steps`). Each reads and
writes the run folder (:mod:`training.run_folder`) and returns a small record of what it
did; :mod:`training.pipeline` runs them in order, the Airflow DAG
(``dags/iotstream_retrain.py``) as one task each.

The splits of a dataset are drawn by a permutation seeded from its id, so the same dataset
always gives the same train / calibration / test rows.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from training import evaluate, export, quantize
from training.build import AE_FALSE_ALARM_RATE, quantizable_exclusions
from training.data import Split
from training.isolated import pinned_env
from training.run_folder import PipelineError, RunConfig, RunFolder
from training.specs import ModelSpec, spec_by_name

__all__ = [
    "MIN_DATASET_ROWS",
    "Log",
    "assemble_dataset",
    "evaluate_fp32",
    "quantize_variants",
    "spec_of",
    "splits_of",
    "train",
]

Log = Callable[[str], None]
MIN_DATASET_ROWS = 500
"""Fewer rows cannot give a test split that measures a gate of one point of F1."""
SPLIT_SHARES = {"test": 0.2, "calibration": 0.1}
MAX_CALIBRATION_ROWS = 2000
_ROOT = Path(__file__).resolve().parent.parent
_SPLITS = ("train", "calibration", "test")


def spec_of(name: str) -> ModelSpec:
    """The spec of model ``name``; an unknown name is a :class:`PipelineError`."""
    try:
        return spec_by_name(name)
    except KeyError as exc:
        raise PipelineError(str(exc.args[0])) from exc


def splits_of(folder: RunFolder) -> dict[str, Split]:
    """The run's train / calibration / test splits (``data.npz``)."""
    path = folder.path("data.npz")
    if not path.is_file():
        raise PipelineError(f"{path} is missing; run assemble_dataset first")
    with np.load(path) as data:
        seed = int(data["seed"])
        return {s: Split(s, seed, data[f"x_{s}"], data[f"y_{s}"]) for s in _SPLITS}


def assemble_dataset(folder: RunFolder, cfg: RunConfig, log: Log) -> dict[str, Any]:
    """Create (or find) the dataset version of the captured window, materialize it and
    split it into ``data.npz``."""
    from iot_models.capture.datasets import create_dataset, materialize
    from iot_models.store.objects import open_objects

    spec_of(cfg.model)  # an unknown model fails here, before any I/O
    objects = open_objects(cfg.capture)
    try:
        # the run's window fields are create_dataset's keywords, by name
        window = cfg.model_dump(include={"since", "until", "min_rows", "synthetic_seed"})
        dataset = create_dataset(objects, cfg.model, **window)
        x, y, _ = materialize(objects, dataset)
    finally:
        objects.close()
    if len(y) < MIN_DATASET_ROWS:
        raise PipelineError(
            f"dataset {dataset.id} has {len(y)} rows, fewer than {MIN_DATASET_ROWS}: raise "
            "min_rows (synthetic top-up) or widen the capture window"
        )
    seed = int(dataset.id[:8], 16)
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = int(len(y) * SPLIT_SHARES["test"])
    n_cal = min(int(len(y) * SPLIT_SHARES["calibration"]), MAX_CALIBRATION_ROWS)
    parts = {
        "test": order[:n_test],
        "calibration": order[n_test : n_test + n_cal],
        "train": order[n_test + n_cal :],
    }
    arrays: dict[str, Any] = {"seed": np.int64(seed)}
    for name, idx in parts.items():
        arrays[f"x_{name}"], arrays[f"y_{name}"] = x[idx], y[idx]
    folder.path("data.npz").parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.path(".data.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, folder.path("data.npz"))
    folder.write_json("dataset.json", dataset.model_dump(mode="json"))
    log(
        f"dataset {dataset.id}: {dataset.rows} rows ({dataset.captured_rows} captured, "
        f"{len(dataset.files)} files); train {len(parts['train'])}, calibration {n_cal}, "
        f"test {n_test}"
    )
    return {
        "dataset_id": dataset.id,
        "rows": dataset.rows,
        "captured_rows": dataset.captured_rows,
        **{name: len(idx) for name, idx in parts.items()},
    }


def _fit_and_export(run_dir: Path, model: str) -> None:
    """Child process body of :func:`train` (pinned OpenBLAS kernel)."""
    from training.train import fit

    spec = spec_by_name(model)
    pipeline = fit(spec, splits_of(RunFolder(run_dir))["train"])
    proto = (
        export.export_classifier(pipeline)
        if spec.kind == "classifier"
        else export.export_autoencoder(pipeline)
    )
    tmp = run_dir / ".fp32.tmp.onnx"
    onnx.save(proto, str(tmp))
    os.replace(tmp, run_dir / "fp32.onnx")


def train(folder: RunFolder, cfg: RunConfig, log: Log) -> dict[str, Any]:
    """Fit the model's spec on the train split and export ``fp32.onnx``, in a child process
    with the pinned OpenBLAS kernel (as ``iotstream models build``: reproducible weights)."""
    spec = spec_of(cfg.model)
    rows = len(splits_of(folder)["train"].y)
    env, coretype = pinned_env()
    log(f"{spec.name}: training {spec.kind} {spec.hidden} on {rows} rows (OpenBLAS {coretype})")
    started = time.monotonic()
    # Our own module and run folder; no shell.
    proc = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "training.steps", "fit", str(folder.root), spec.name],
        env=env,
        cwd=_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0 or not folder.path("fp32.onnx").is_file():
        raise PipelineError(f"train: fitting {spec.name} failed:\n{proc.stderr[-3000:]}")
    return {"rows": rows, "seconds": round(time.monotonic() - started, 2), "blas": coretype}


def evaluate_fp32(folder: RunFolder, cfg: RunConfig, log: Log) -> dict[str, Any]:
    """fp32 on the test split; the autoencoder's threshold from calibration normal rows."""
    spec = spec_of(cfg.model)
    splits = splits_of(folder)
    test = splits["test"]
    if len(set((test.y > 0).tolist())) < 2:
        raise PipelineError("evaluate: the test split needs normal and fault rows")
    fp32 = folder.path("fp32.onnx")
    if not fp32.is_file():
        raise PipelineError(f"evaluate: {fp32} is missing; run train first")
    threshold = 0.5
    if spec.kind == "autoencoder":
        normal = splits["calibration"].normal
        if len(normal.y) == 0:
            raise PipelineError("evaluate: no normal rows in the calibration split")
        ref = evaluate.run_onnx(fp32, normal.x).reshape(-1)
        threshold = float(np.quantile(ref, 1.0 - AE_FALSE_ALARM_RATE))
    raw = evaluate.run_onnx(fp32, test.x)
    acc = evaluate.accuracy(spec.kind, raw, raw, test.y, threshold)
    folder.write_json("evaluate.json", {"threshold": threshold, "fp32": acc.model_dump()})
    log(f"fp32 on {acc.rows} test rows: macro-F1 {acc.macro_f1}, AUC {acc.auc}")
    return {"threshold": threshold, "macro_f1": acc.macro_f1, "auc": acc.auc}


def quantize_variants(folder: RunFolder, cfg: RunConfig, log: Log) -> dict[str, Any]:
    """Static QDQ int8 per target (x86-64 VNNI, x86-64 without VNNI, arm64), calibrated on
    the calibration split."""
    fp32 = folder.path("fp32.onnx")
    if not fp32.is_file():
        raise PipelineError(f"quantize: {fp32} is missing; run train first")
    pre = folder.path(".preprocessed.onnx")
    quantize.preprocess(fp32, pre)
    excluded = quantizable_exclusions(pre)
    reader = quantize.ArrayCalibrationReader(export.INPUT_NAME, splits_of(folder)["calibration"].x)
    recipes: dict[str, Any] = {}
    for recipe in quantize.RECIPES:
        log(f"quantizing {recipe.variant} ({recipe.target})")
        tmp = folder.path(f".{recipe.variant}.tmp.onnx")
        quantize.quantize(pre, tmp, recipe, reader, excluded)
        os.replace(tmp, folder.path(f"{recipe.variant}.onnx"))
        recipes[recipe.variant] = recipe.describe(excluded).model_dump(mode="json")
    pre.unlink(missing_ok=True)
    folder.write_json("quantize.json", recipes)
    return {"variants": sorted(recipes)}


if __name__ == "__main__" and sys.argv[1:2] == ["fit"]:
    _fit_and_export(Path(sys.argv[2]), sys.argv[3])
