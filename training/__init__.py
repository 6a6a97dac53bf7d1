"""Training, ONNX export and int8 quantization of the fleet models (being built)."""
