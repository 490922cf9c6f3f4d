"""Exceptions: onnxdoctor itself failed, or the input cannot be examined at all.

A problem *in* a model is never an exception; it is a Finding. These exceptions are what the CLI
turns into one clear line and exit code 2 (as Polygraphy separates lint entries from its own errors).
"""

from __future__ import annotations

from pathlib import Path


class OnnxDoctorError(Exception):
    """Base class of every error onnxdoctor raises on purpose."""


class UsageError(OnnxDoctorError):
    """The command line or an option file is wrong (unknown role name, bad --map entry, ...)."""


class UnusableInputError(OnnxDoctorError):
    """The path cannot be examined: missing, empty, truncated, not ONNX, unsafe external data."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class MissingExtraError(OnnxDoctorError):
    """An optional dependency is not installed; the message names the pip command that fixes it."""

    def __init__(self, module: str, extra: str) -> None:
        self.module = module
        self.extra = extra
        super().__init__(
            f"this needs the Python package '{module}', which is not installed: "
            f"pip install 'onnxdoctor[{extra}]'"
        )
