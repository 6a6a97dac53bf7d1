"""Convert fitted pipelines to ONNX (skl2onnx) with a fixed opset and one named output.

* Input ``features``: float32 ``(batch, 16)``, batch dynamic.
* Classifier output ``probabilities``: float32 ``(batch, n_labels)`` (ZipMap off; the
  label-string branch is cut away, the runtime takes the argmax itself).
* Autoencoder output ``score``: float32 ``(batch,)``, the mean squared reconstruction error
  in standardised units, computed inside the graph (nodes ``ae_*``).
"""

from __future__ import annotations

from typing import Any

import onnx
from onnx import helper
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType

from iot_models.sensors import N_FEATURES

__all__ = ["AE_NODES", "INPUT_NAME", "OPSET", "export_autoencoder", "export_classifier"]

INPUT_NAME = "features"
OPSET = {"": 17, "ai.onnx.ml": 3}
AE_NODES = ("ae_residual", "ae_square", "ae_score")
"""The autoencoder's error nodes: kept in float by quantization (squares need range)."""


def _convert(pipeline: Any, options: dict[Any, Any] | None = None) -> onnx.ModelProto:
    model: onnx.ModelProto = to_onnx(
        pipeline,
        initial_types=[(INPUT_NAME, FloatTensorType([None, N_FEATURES]))],
        target_opset=dict(OPSET),
        options=options,
    )
    return model


def _standard_ops(model: onnx.ModelProto) -> onnx.ModelProto:
    """Replace skl2onnx's ``ai.onnx.ml`` ``Scaler`` by ``Sub`` + ``Mul`` and drop dead inputs.

    ONNX shape inference does not type a ``Scaler``'s output, and the quantizer leaves
    tensors of unknown type in float: the whole MLP would stay fp32 with int8 weights only.
    """
    graph = model.graph
    for i, node in enumerate(graph.node):
        if node.op_type != "Scaler":
            continue
        attrs = {a.name: list(a.floats) for a in node.attribute}
        width = len(attrs["offset"])
        centred = f"{node.output[0]}_centred"
        graph.initializer.extend(
            [
                helper.make_tensor(
                    "scaler_offset", onnx.TensorProto.FLOAT, [width], attrs["offset"]
                ),
                helper.make_tensor("scaler_scale", onnx.TensorProto.FLOAT, [width], attrs["scale"]),
            ]
        )
        graph.node.remove(node)
        graph.node.insert(
            i,
            helper.make_node("Mul", [centred, "scaler_scale"], [node.output[0]], name="scaler_mul"),
        )
        graph.node.insert(
            i,
            helper.make_node("Sub", [node.input[0], "scaler_offset"], [centred], name="scaler_sub"),
        )
        break
    used = {name for n in graph.node for name in n.input}
    for init in [t for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(init)
    kept = [o for o in model.opset_import if o.domain in ("", "ai.onnx")]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    return model


def _finish(model: onnx.ModelProto, doc: str) -> onnx.ModelProto:
    model = _standard_ops(model)
    model.doc_string = doc
    model.producer_name = "iotstream-training"
    model.producer_version = "1"
    onnx.checker.check_model(model, full_check=True)
    return model


def export_classifier(pipeline: Any) -> onnx.ModelProto:
    """ONNX for ``Pipeline(scaler, MLPClassifier)`` with the single ``probabilities`` output."""
    model = _convert(pipeline, {id(pipeline.named_steps["mlp"]): {"zipmap": False}})
    extracted = onnx.utils.Extractor(model).extract_model([INPUT_NAME], ["probabilities"])
    for opset in model.opset_import:
        if opset.domain not in {o.domain for o in extracted.opset_import}:
            extracted.opset_import.append(opset)
    return _finish(extracted, "class probabilities, index-aligned with manifest labels")


def export_autoencoder(pipeline: Any) -> onnx.ModelProto:
    """ONNX for ``Pipeline(scaler, MLPRegressor)`` that outputs the reconstruction MSE."""
    model = _convert(pipeline)
    graph = _standard_ops(model).graph
    scaled = next(n.output[0] for n in graph.node if n.name == "scaler_mul")
    # skl2onnx ends a regressor with Reshape(-1, 1), written for one target; with 16
    # targets that flattens the batch, so the error is taken from the layer before it.
    reshape = next(n for n in graph.node if n.output[0] == graph.output[0].name)
    if reshape.op_type != "Reshape":
        raise RuntimeError(f"unexpected autoencoder graph tail {reshape.op_type}")
    recon = reshape.input[0]
    graph.node.remove(reshape)
    residual, square = "ae_residual_out", "ae_square_out"
    graph.node.extend(
        [
            helper.make_node("Sub", [recon, scaled], [residual], name=AE_NODES[0]),
            helper.make_node("Mul", [residual, residual], [square], name=AE_NODES[1]),
            helper.make_node(
                "ReduceMean", [square], ["score"], name=AE_NODES[2], axes=[1], keepdims=0
            ),
        ]
    )
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info("score", onnx.TensorProto.FLOAT, [None]))
    return _finish(model, "reconstruction mean squared error in standardised units")
