"""Dynamic checks with ONNX Runtime: replay under the reference protocol, and client feed checking.

Importing this package loads nothing heavy; onnxruntime is imported by the modules that run models.
"""
