"""The inference worker: MQTT in, ONNX Runtime micro-batches, Redis out."""
