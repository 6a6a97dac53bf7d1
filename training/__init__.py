"""Training, ONNX export, int8 quantization, evaluation and the gate for the fleet models.

Modules: :mod:`~training.data` (splits), :mod:`~training.specs` (the models),
:mod:`~training.train`, :mod:`~training.export`, :mod:`~training.quantize`,
:mod:`~training.evaluate`, :mod:`~training.gate`, :mod:`~training.build` (``iotstream models
build``), :mod:`~training.reproduce` and :mod:`~training.bench`. Needs the ``train`` extra
(scikit-learn, skl2onnx, onnx); the runtime path (:mod:`iot_models.onnx_model`) does not.
See docs/models.md.
"""
