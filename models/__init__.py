"""Our networks: definitions, training and export scripts, and the shipped ONNX weights."""
