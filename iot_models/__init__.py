"""iot_models: what training, workers and the gateway share about models.

- :mod:`iot_models.sensors`: the simulated machines whose 16 features define the data.
- :mod:`iot_models.manifest`: the model repository layout, the manifest schema, errors.
- :mod:`iot_models.variants`: which variant (fp32, int8 per CPU family) runs here.
- :mod:`iot_models.model`: the ``Model`` interface the inference core runs.
- :mod:`iot_models.onnx_model`: ONNX Runtime models loaded from the repository.
- :mod:`iot_models.core`: the inference data plane (readings in, predictions out), called
  by the streaming workers and by the gateway's REST ``/v1/predict`` alike.
- :mod:`iot_models.store`: the model store (folder or S3): published versions, aliases.
- :mod:`iot_models.canary`: which devices a canary version scores (a pure function).
- :mod:`iot_models.follow` and :mod:`iot_models.swap`: serving what an alias names and
  swapping cores between batches when it moves.

Imports :mod:`iot_contract` only; ``onnxruntime`` is imported by :mod:`iot_models.onnx_model`
alone, so training code can read manifests without it.
"""
