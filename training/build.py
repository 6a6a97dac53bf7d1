"""``iotstream models build``: train, export, quantize, evaluate, gate, write the repository.

Each model is built in a temporary folder and moved to ``<root>/<name>/<version>/`` only if
every int8 variant passes the gate, so a failed build never leaves half a version behind.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnx

from iot_models.manifest import (
    MANIFEST_FILE,
    Accuracy,
    BuildInfo,
    Calibration,
    DefaultVariant,
    InputSpec,
    Manifest,
    OutputSpec,
    Quantization,
    VariantEntry,
    sha256_bytes,
)
from iot_models.profile import FeatureProfile
from iot_models.sensors import FEATURE_NAMES, LABELS
from training import evaluate, export, gate, quantize
from training.data import Splits, make_splits
from training.isolated import blas_coretype, train_and_export_pinned
from training.specs import SPECS, ModelSpec, spec_by_name

__all__ = [
    "AE_FALSE_ALARM_RATE",
    "SOURCES",
    "build",
    "build_model",
    "output_spec",
    "quantizable_exclusions",
    "source_revision",
    "tool_versions",
]

AE_FALSE_ALARM_RATE = 0.01
"""The autoencoder's threshold lets this share of normal calibration rows raise an alarm."""
_ROOT = Path(__file__).resolve().parent.parent


def quantizable_exclusions(model_path: Path) -> list[str]:
    """Nodes left in float: input standardisation (raw features span 0.5 to 3000, one int8
    scale cannot hold them), Softmax (probabilities keep full precision) and the
    autoencoder's error arithmetic."""
    graph = onnx.load(str(model_path)).graph
    return [
        n.name
        for n in graph.node
        if n.op_type == "Softmax" or n.name.startswith(("scaler_", *export.AE_NODES))
    ]


SOURCES = ("training", "iot_models/sensors.py", "iot_models/manifest.py")
"""What the artifacts are built from: provenance is the last commit that touched these."""


def source_revision() -> tuple[str, bool]:
    """(last commit touching :data:`SOURCES`, whether they have uncommitted changes).

    The last commit of the sources rather than HEAD, so a rebuild at a later commit that did
    not change them reproduces the manifest byte for byte.
    """

    exe = shutil.which("git")
    if exe is None:
        return "unknown", False

    def git(*args: str) -> str:
        # Fixed arguments, no shell: nothing untrusted reaches the command line.
        return subprocess.run(  # noqa: S603
            [exe, *args], cwd=_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        rev = git("log", "-1", "--format=%H", "--", *SOURCES)
        dirty = git("status", "--porcelain", "--", *SOURCES)
    except (OSError, subprocess.CalledProcessError):
        return "unknown", False
    return rev or "unknown", bool(dirty)


def tool_versions() -> dict[str, str]:
    """Versions of the packages that shape the model files (provenance)."""
    from importlib.metadata import version

    found = {p: version(p) for p in ("numpy", "scikit-learn", "skl2onnx", "onnx", "onnxruntime")}
    return {**found, "openblas_coretype": blas_coretype()}


def output_spec(spec: ModelSpec, threshold: float) -> OutputSpec:
    """The manifest's output description of a model built from ``spec``."""
    if spec.kind == "classifier":
        return OutputSpec(
            kind="classifier",
            tensor="probabilities",
            meaning="probability per label; score = 1 - P(normal)",
            labels=LABELS,
            normal_label=LABELS[0],
            threshold=threshold,
            threshold_rule="anomaly when P(normal) < 0.5",
        )
    return OutputSpec(
        kind="autoencoder",
        tensor="score",
        meaning="mean squared reconstruction error over the standardised features",
        threshold=threshold,
        threshold_rule=(
            f"{100 * (1 - AE_FALSE_ALARM_RATE):g}th percentile of fp32 scores on the normal "
            "rows of the calibration split"
        ),
    )


def build_model(
    spec: ModelSpec, splits: Splits, dest: Path, log: Callable[[str], None]
) -> Manifest:
    """Build one model version into ``dest`` (created; must not exist). Raises GateError."""
    work = Path(tempfile.mkdtemp(prefix=f"iotstream-build-{spec.name}-"))
    try:
        log(f"{spec.name}: training {spec.kind} {spec.hidden} (OpenBLAS {blas_coretype()})")
        files = {"fp32": work / "fp32.onnx"}
        train_and_export_pinned(spec, files["fp32"])
        proto = onnx.load(str(files["fp32"]))
        pre = work / "preprocessed.onnx"
        quantize.preprocess(files["fp32"], pre)
        excluded = quantizable_exclusions(pre)
        reader = quantize.ArrayCalibrationReader(export.INPUT_NAME, splits.calibration.x)
        recipes: dict[str, Quantization] = {}
        for recipe in quantize.RECIPES:
            log(f"{spec.name}: quantizing {recipe.variant}")
            files[recipe.variant] = work / f"{recipe.variant}.onnx"
            quantize.quantize(pre, files[recipe.variant], recipe, reader, excluded)
            recipes[recipe.variant] = recipe.describe(excluded)

        test = splits.test
        raw = {v: evaluate.run_onnx(path, test.x) for v, path in files.items()}
        threshold = 0.5
        if spec.kind == "autoencoder":
            calib_normal = splits.calibration.normal.x
            ref = evaluate.run_onnx(files["fp32"], calib_normal).reshape(-1)
            threshold = float(np.quantile(ref, 1.0 - AE_FALSE_ALARM_RATE))
        results: dict[str, Accuracy] = {
            v: evaluate.accuracy(spec.kind, raw["fp32"], out, test.y, threshold)
            for v, out in raw.items()
        }
        limits = gate.CLASSIFIER_LIMITS if spec.kind == "classifier" else gate.AUTOENCODER_LIMITS
        gate.enforce(spec.name, limits, results)

        variants = {}
        for v, path in files.items():
            data = path.read_bytes()
            variants[v] = VariantEntry(
                file=f"{v}.onnx",
                sha256=sha256_bytes(data),
                size_bytes=len(data),
                precision="fp32" if v == "fp32" else "int8",
                quantization=recipes.get(v),
                accuracy=results[v],
            )
        rev, dirty = source_revision()
        manifest = Manifest(
            name=spec.name,
            version=spec.version,
            description=spec.description,
            opset={(o.domain or "ai.onnx"): o.version for o in proto.opset_import},
            input=InputSpec(
                name=export.INPUT_NAME,
                shape=(None, len(FEATURE_NAMES)),
                feature_names=FEATURE_NAMES,
            ),
            output=output_spec(spec, threshold),
            variants=variants,
            defaults={p: DefaultVariant(variant=v, basis=b) for p, (v, b) in spec.defaults.items()},
            calibration=Calibration(
                rows=len(splits.calibration.y),
                seed=splits.calibration.seed,
                method="static QDQ, MinMax ranges, batches of "
                f"{quantize.CALIBRATION_BATCH} rows in order",
                composition=splits.calibration.composition(),
                source="iot_models.sensors.make_dataset (a fleet unseen in training)",
            ),
            test_split={"rows": len(test.y), "seed": test.seed, **test.composition()},
            gate=limits,
            build=BuildInfo(git_revision=rev, git_dirty=dirty, tool_versions=tool_versions()),
            # Drift reference: the training split's normal rows, 5 bins. A live fleet is
            # mostly healthy (the split is half faults), and a fleet of n machines shows a
            # PSI of about (bins - 1) / n from its mix of machines alone (docs/models.md).
            reference=FeatureProfile.from_samples(
                splits.train.normal.x,
                FEATURE_NAMES,
                source=f"training split (seed {splits.train.seed}), normal rows",
                bins=5,
            ),
        )
        dest.mkdir(parents=True)
        for v, path in files.items():
            shutil.copyfile(path, dest / f"{v}.onnx")
        text = json.dumps(manifest.model_dump(mode="json"), indent=2) + "\n"
        (dest / MANIFEST_FILE).write_text(text)
        return manifest
    finally:
        shutil.rmtree(work, ignore_errors=True)


def build(
    root: Path,
    names: Sequence[str] | None = None,
    *,
    log: Callable[[str], None] = print,
) -> list[Manifest]:
    """Build ``names`` (default: every model in :data:`training.specs.SPECS`) under ``root``.

    An existing version folder is replaced only after its new build passed the gate.
    """
    specs = [spec_by_name(n) for n in names] if names else list(SPECS)
    splits = make_splits()
    manifests = []
    for spec in specs:
        final = root / spec.name / spec.version
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=root))
        try:
            manifests.append(build_model(spec, splits, staging / "v", log))
            if final.exists():
                shutil.rmtree(final)
            final.parent.mkdir(parents=True, exist_ok=True)
            (staging / "v").rename(final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        log(f"{spec.name}: wrote {final}")
    return manifests
