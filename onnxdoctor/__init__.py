"""onnxdoctor: find out why an exported ONNX decoder with a KV cache fails, and fix the export.

Importing the package is cheap on purpose: it loads neither onnxruntime nor torch, so the pytest
plugin and `onnxdoctor --help` stay fast; those load inside the commands that need them.
"""

__version__ = "0.1.0"

from onnxdoctor.errors import OnnxDoctorError, UnusableInputError, UsageError
from onnxdoctor.findings import Finding, Location, Severity

__all__ = [
    "__version__",
    "Finding",
    "Location",
    "OnnxDoctorError",
    "Severity",
    "UnusableInputError",
    "UsageError",
]
