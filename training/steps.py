"""The retraining steps: assemble_dataset -> train -> evaluate -> quantize -> gate ->
publish -> canary. Each reads and writes the run folder (:mod:`training.run_folder`) and
returns a small record of what it did; :mod:`training.pipeline` runs them in order, the
Airflow DAG (``dags/iotstream_retrain.py``) as one task each.

The splits of a dataset are drawn by a permutation seeded from its id, so the same dataset
always gives the same train / calibration / test rows.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from iot_models.manifest import (
    MANIFEST_FILE,
    Accuracy,
    BuildInfo,
    Calibration,
    DatasetRef,
    DefaultVariant,
    GateLimits,
    InputSpec,
    Manifest,
    Quantization,
    VariantEntry,
    read_manifest,
    sha256_bytes,
)
from iot_models.profile import FeatureProfile
from iot_models.sensors import FEATURE_NAMES
from training import evaluate, export, gate, quantize
from training.build import (
    AE_FALSE_ALARM_RATE,
    _git,
    _output_spec,
    _versions,
    quantizable_exclusions,
)
from training.data import Split
from training.isolated import blas_coretype
from training.parity import check_parity
from training.run_folder import PipelineError, RunConfig, RunFolder
from training.specs import ModelSpec, spec_by_name

__all__ = [
    "MIN_DATASET_ROWS",
    "GateFailedError",
    "Log",
    "assemble_dataset",
    "canary",
    "evaluate_fp32",
    "gate_variants",
    "publish",
    "quantize_variants",
    "train",
]

Log = Callable[[str], None]
MIN_DATASET_ROWS = 500
"""Fewer rows cannot give a test split that measures a gate of one point of F1."""
SPLIT_SHARES = {"test": 0.2, "calibration": 0.1}
MAX_CALIBRATION_ROWS = 2000
_ROOT = Path(__file__).resolve().parent.parent
_SPLITS = ("train", "calibration", "test")


class GateFailedError(PipelineError):
    """The candidate broke the gate; nothing was published. ``problems`` lists why."""

    def __init__(self, message: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(message)


def _spec(name: str) -> ModelSpec:
    try:
        return spec_by_name(name)
    except KeyError as exc:
        raise PipelineError(str(exc.args[0])) from exc


def _splits(folder: RunFolder) -> dict[str, Split]:
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

    _spec(cfg.model)  # an unknown model fails here, before any I/O
    objects = open_objects(cfg.capture)
    try:
        dataset = create_dataset(
            objects,
            cfg.model,
            since=cfg.since,
            until=cfg.until,
            min_rows=cfg.min_rows,
            synthetic_seed=cfg.synthetic_seed,
        )
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
    pipeline = fit(spec, _splits(RunFolder(run_dir))["train"])
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
    spec = _spec(cfg.model)
    rows = len(_splits(folder)["train"].y)
    env = dict(os.environ)
    coretype = blas_coretype()
    if coretype == "auto":
        env.pop("OPENBLAS_CORETYPE", None)
    else:
        env["OPENBLAS_CORETYPE"] = coretype
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_ROOT), env.get("PYTHONPATH")) if p)
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
    spec = _spec(cfg.model)
    splits = _splits(folder)
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
    reader = quantize.ArrayCalibrationReader(export.INPUT_NAME, _splits(folder)["calibration"].x)
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


def _limits(kind: str, overrides: dict[str, float] | None) -> GateLimits:
    base = gate.CLASSIFIER_LIMITS if kind == "classifier" else gate.AUTOENCODER_LIMITS
    if not overrides:
        return base
    return GateLimits.model_validate({**base.model_dump(), **overrides})


def gate_variants(folder: RunFolder, cfg: RunConfig, log: Log) -> dict[str, Any]:
    """Every int8 variant against fp32 on the test split within the gate limits, and the
    arm64 file against x86-64 under qemu; on a pass, the candidate version folder.

    Raises:
        GateFailedError: a limit is broken (the message lists every violation); nothing
            is written to ``candidate/``.
    """
    spec = _spec(cfg.model)
    test = _splits(folder)["test"]
    threshold = float(folder.read_json("evaluate.json", needed_by="gate")["threshold"])
    recipes = folder.read_json("quantize.json", needed_by="gate")
    files = {"fp32": folder.path("fp32.onnx")} | {v: folder.path(f"{v}.onnx") for v in recipes}
    raw = {v: evaluate.run_onnx(path, test.x) for v, path in files.items()}
    results = {
        v: evaluate.accuracy(spec.kind, raw["fp32"], out, test.y, threshold)
        for v, out in raw.items()
    }
    limits = _limits(spec.kind, cfg.gate_limits)
    problems = [
        p for v, acc in results.items() if v != "fp32" for p in gate.violations(limits, v, acc)
    ]
    if cfg.parity == "off":
        parity = {"status": "skipped", "detail": "skipped: parity off in the run's configuration"}
    else:
        log("arm64 parity under qemu ...")
        parity = check_parity(files["int8-arm64"], spec.kind, test.x).model_dump()
        if parity["status"] == "failed":
            problems.append(f"arm64 parity: {parity['detail']}")
        elif parity["status"] == "skipped" and cfg.parity == "required":
            problems.append(f"arm64 parity required but {parity['detail']}")
    log(f"arm64 parity: {parity['detail']}")
    verdict = "failed" if problems else "passed"
    folder.write_json(
        "gate.json",
        {
            "verdict": verdict,
            "problems": problems,
            "limits": limits.model_dump(),
            "accuracy": {v: a.model_dump() for v, a in results.items()},
            "parity": parity,
        },
    )
    if problems:
        raise GateFailedError(
            f"gate failed for {spec.name}: " + "; ".join(problems) + " (nothing published)",
            problems,
        )
    _write_candidate(folder, cfg, results, limits, recipes, threshold)
    log(f"gate passed: {len(results) - 1} int8 variants within {limits.model_dump()}")
    return {"verdict": verdict, "parity": parity["status"]}


def _write_candidate(
    folder: RunFolder,
    cfg: RunConfig,
    results: dict[str, Accuracy],
    limits: GateLimits,
    recipes: dict[str, Any],
    threshold: float,
) -> None:
    spec = _spec(cfg.model)
    splits = _splits(folder)
    dataset = folder.read_json("dataset.json", needed_by="gate")
    captured = sum(int(f["labelled"]) for f in dataset["files"])
    synthetic = dataset["synthetic"]["rows"] if dataset["synthetic"] else 0
    dest = folder.path("candidate")
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    variants = {}
    for v, acc in results.items():
        data = folder.path(f"{v}.onnx").read_bytes()
        (dest / f"{v}.onnx").write_bytes(data)
        variants[v] = VariantEntry(
            file=f"{v}.onnx",
            sha256=sha256_bytes(data),
            size_bytes=len(data),
            precision="fp32" if v == "fp32" else "int8",
            quantization=Quantization.model_validate(recipes[v]) if v in recipes else None,
            accuracy=acc,
        )
    rev, dirty = _git()
    source = f"dataset {dataset['id']} ({captured} captured + {synthetic} synthetic rows)"
    proto = onnx.load(str(folder.path("fp32.onnx")))
    cal, test = splits["calibration"], splits["test"]
    manifest = Manifest(
        name=spec.name,
        version="candidate",
        description=spec.description,
        opset={(o.domain or "ai.onnx"): o.version for o in proto.opset_import},
        input=InputSpec(
            name=export.INPUT_NAME, shape=(None, len(FEATURE_NAMES)), feature_names=FEATURE_NAMES
        ),
        output=_output_spec(spec, threshold),
        variants=variants,
        defaults={p: DefaultVariant(variant=v, basis=b) for p, (v, b) in spec.defaults.items()},
        calibration=Calibration(
            rows=len(cal.y),
            seed=cal.seed,
            method=f"static QDQ, MinMax ranges, batches of {quantize.CALIBRATION_BATCH} rows "
            "in order",
            composition=cal.composition(),
            source=f"{source}, rows drawn by a permutation seeded from its id",
        ),
        test_split={"rows": len(test.y), "seed": test.seed, **test.composition()},
        gate=limits,
        build=BuildInfo(
            git_revision=rev,
            git_dirty=dirty,
            tool_versions=_versions(),
            dataset=DatasetRef(
                id=dataset["id"],
                store=cfg.capture,
                rows=captured + synthetic,
                captured_rows=captured,
                run_id=cfg.run_id,
            ),
        ),
        reference=FeatureProfile.from_samples(
            splits["train"].x, FEATURE_NAMES, source=f"training rows of {source}"
        ),
    )
    (dest / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2) + "\n")


def _next_version(versions: list[str]) -> str:
    numbers = [int(v) for v in versions if v.isdigit()]
    return str(max(numbers, default=0) + 1)


def publish(folder: RunFolder, cfg: RunConfig, log: Log) -> dict[str, Any]:
    """Publish the candidate as the model's next numeric version (never overwriting one;
    a retry after a publish that succeeded finds it by the run id and publishes nothing)."""
    from iot_models.store import VersionExistsError, open_store

    candidate = folder.path("candidate")
    if not (candidate / MANIFEST_FILE).is_file():
        raise PipelineError(f"publish: {candidate} is missing; the gate has not passed")
    manifest = read_manifest(candidate / MANIFEST_FILE)
    store = open_store(cfg.store)
    try:
        for version in store.versions(cfg.model):
            ref = store.manifest(cfg.model, version).build.dataset
            if ref is not None and ref.run_id == cfg.run_id:
                log(f"run {cfg.run_id} already published {cfg.model} {version}")
                return _published(folder, cfg, version)
        for _attempt in range(3):
            version = _next_version(store.versions(cfg.model))
            staged = folder.path(f"publish/{version}")
            shutil.rmtree(staged, ignore_errors=True)
            shutil.copytree(candidate, staged)
            relabelled = manifest.model_copy(update={"version": version})
            (staged / MANIFEST_FILE).write_text(relabelled.model_dump_json(indent=2) + "\n")
            try:
                store.publish(staged)
            except VersionExistsError:
                log(f"version {version} was published meanwhile; taking the next one")
                continue
            log(f"published {cfg.model} {version} to {store.url}")
            return _published(folder, cfg, version)
    finally:
        store.close()
    raise PipelineError(f"publish: {cfg.model} kept getting new versions; retry the step")


def _published(folder: RunFolder, cfg: RunConfig, version: str) -> dict[str, Any]:
    record = {"model": cfg.model, "version": version, "store": cfg.store}
    folder.write_json("published.json", record)
    return record


def canary(folder: RunFolder, cfg: RunConfig, log: Log) -> dict[str, Any]:
    """Move the alias's canary to the published version at ``canary_percent`` (the alias's
    own version, what most devices run, is left for a person: ``iotstream models
    promote``)."""
    from iot_models.store import Alias, Canary, open_store
    from iot_models.store.alias import start_canary
    from iot_models.store.ops import change_alias, who

    version = folder.read_json("published.json", needed_by="canary")["version"]
    wanted = Canary(version=version, percent=cfg.canary_percent)

    def move(current: Alias | None) -> Alias:
        if current is None:
            raise PipelineError(
                f"canary: {cfg.model} has no alias {cfg.alias!r} to put a canary on; point "
                f"it at a version first (`iotstream models alias {cfg.model} {cfg.alias} "
                "VERSION`): the pipeline never sets what every device runs"
            )
        return start_canary(current, wanted, at=time.time(), by=f"pipeline {cfg.run_id} {who()}")

    store = open_store(cfg.store)
    try:
        alias = change_alias(store, cfg.model, cfg.alias, move)
    finally:
        store.close()
    folder.write_json("canary.json", alias.model_dump(mode="json"))
    log(alias.describe())
    return {"alias": alias.describe()}


if __name__ == "__main__" and sys.argv[1:2] == ["fit"]:
    _fit_and_export(Path(sys.argv[2]), sys.argv[3])
