"""The one decode driver and its backends (ONNX Runtime, PyTorch): replay, verify, compare and bench run through it."""
