"""The release half of the retraining steps: gate -> publish -> canary (the first half,
dataset to int8 files, is :mod:`training.steps`).

The gate is the only way to a ``candidate/`` folder, publish takes only that folder, and
the canary step only moves the alias's canary: what every device runs changes when a
person promotes it (``iotstream models promote``).
"""

from __future__ import annotations

import shutil
import time
from typing import Any

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
from training.build import output_spec, source_revision, tool_versions
from training.parity import check_parity
from training.run_folder import PipelineError, RunConfig, RunFolder
from training.steps import Log, spec_of, splits_of

__all__ = ["GateFailedError", "canary", "gate_variants", "publish"]


class GateFailedError(PipelineError):
    """The candidate broke the gate; nothing was published. ``problems`` lists why."""

    def __init__(self, message: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(message)


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
    spec = spec_of(cfg.model)
    test = splits_of(folder)["test"]
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
    spec = spec_of(cfg.model)
    splits = splits_of(folder)
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
    rev, dirty = source_revision()
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
        output=output_spec(spec, threshold),
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
            tool_versions=tool_versions(),
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
