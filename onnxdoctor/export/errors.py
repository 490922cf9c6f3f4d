"""Typed errors of the export pipeline: each stage says what went wrong in one line, with its own exit code."""

from __future__ import annotations

from onnxdoctor.errors import OnnxDoctorError


class ExportPipelineError(OnnxDoctorError):
    """A stage of `onnxdoctor export` could not go on; `stage` names it on the exit line."""

    stage = "export"
    exit_code = 2


class CheckpointError(ExportPipelineError):
    """SOURCE or the adapter is missing, partial or broken (bad input: exit 2)."""

    stage = "checkpoint"


class MergeError(ExportPipelineError):
    """The adapter could not be merged, or the merge did not do what W + scale * B @ A says (exit 2)."""

    stage = "merge"


class ExportFailed(ExportPipelineError):
    """No export attempt produced a decoder that inspect + replay + verify prove (exit 1, report written)."""

    stage = "export"
    exit_code = 1


class ValidationFailed(ExportPipelineError):
    """The export or a quantized variant departs from the source beyond its envelope (exit 1, report written)."""

    stage = "validation"
    exit_code = 1
