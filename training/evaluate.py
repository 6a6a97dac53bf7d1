"""Score variants on the test split with ONNX Runtime and compare them with fp32 and truth."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from sklearn.metrics import f1_score, roc_auc_score

from iot_models.manifest import Accuracy

__all__ = ["accuracy", "anomaly_scores", "run_onnx"]

Kind = Literal["classifier", "autoencoder"]


def run_onnx(
    model: Path | bytes, x: npt.NDArray[np.float32], threads: int = 1
) -> npt.NDArray[np.float32]:
    """The first output of ``model`` for ``x`` (one session run, ``threads`` intra-op)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    source = model if isinstance(model, bytes) else str(model)
    session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    out: npt.NDArray[np.float32] = session.run(None, {name: x})[0]
    return out


def anomaly_scores(kind: Kind, raw: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """Classifier: 1 - P(normal) (label 0); autoencoder: the reconstruction error itself."""
    if kind == "classifier":
        return 1.0 - raw[:, 0].astype(np.float64)
    return raw.reshape(-1).astype(np.float64)


def accuracy(
    kind: Kind,
    reference: npt.NDArray[np.float32],
    raw: npt.NDArray[np.float32],
    y: npt.NDArray[np.int64],
    threshold: float,
) -> Accuracy:
    """Compare one variant's outputs ``raw`` with fp32's ``reference`` and the truth ``y``.

    Classifier: macro-F1 over the labels, anomaly AUC of ``1 - P(normal)``, agreement of
    the arg-max label with fp32. Autoencoder: anomaly AUC (fault vs normal), macro-F1 of
    the thresholded flag, agreement of the flag with fp32's.
    """
    ref_score, score = anomaly_scores(kind, reference), anomaly_scores(kind, raw)
    is_fault = y > 0
    if kind == "classifier":
        pred, ref_pred = raw.argmax(axis=1), reference.argmax(axis=1)
        f1 = float(f1_score(y, pred, average="macro"))
        ref_f1 = float(f1_score(y, ref_pred, average="macro"))
        agreement = float(np.mean(pred == ref_pred))
    else:
        flag, ref_flag = score > threshold, ref_score > threshold
        f1 = float(f1_score(is_fault, flag, average="macro"))
        ref_f1 = float(f1_score(is_fault, ref_flag, average="macro"))
        agreement = float(np.mean(flag == ref_flag))
    auc = float(roc_auc_score(is_fault, score))
    ref_auc = float(roc_auc_score(is_fault, ref_score))
    mae = float(np.mean(np.abs(score - ref_score)))
    return Accuracy(
        rows=len(y),
        macro_f1=round(f1, 6),
        auc=round(auc, 6),
        agreement_with_fp32=round(agreement, 6),
        macro_f1_delta_points=round((ref_f1 - f1) * 100.0, 4),
        auc_delta_points=round((ref_auc - auc) * 100.0, 4),
        score_mae_vs_fp32=round(mae, 8),
        score_rel_mae_vs_fp32=round(mae / max(float(np.mean(np.abs(ref_score))), 1e-12), 6),
    )
