"""Quantized twins of an export, made with ONNX Runtime's real quantizers (for tests here and elsewhere).

`quantized_twins(source, root)` writes one folder per variant of onnxdoctor.numerics.quantize
(int8 dynamic, per-channel uint8, optimum's dynamic config, int4 MatMulNBits at block 16 and 32,
static QDQ calibrated on replay's own recorded feeds, fp16 with fp32 I/O) and returns their paths.
A variant a quantizer cannot apply to a layout is skipped with the reason, so callers can say why:

- static QDQ is calibrated on replay's recorded decoder feeds: decoder-only exports only;
- ORT's float16 converter writes merged decoders (an `If` with a branch returning an outer value)
  that ONNX Runtime refuses to load ("Subgraph output ... is an outer scope value"): skipped there.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from onnxdoctor.numerics.quantize import VARIANTS, Calibration, quantize_folder


def recorded_calibration(source: Path, steps: int = 3) -> Calibration | None:
    """Feeds of a correct decode of `source` (replay --record), or None when it has several scenarios."""
    from onnxdoctor.engine import inspect_path
    from onnxdoctor.errors import UsageError
    from onnxdoctor.replay.harness import Replayer, ReplayOptions

    with tempfile.TemporaryDirectory() as scratch:
        record = Path(scratch) / "record"
        try:
            Replayer(inspect_path(source), ReplayOptions(steps=steps, record=record)).run()
        except UsageError:  # "--record needs one decoding scenario": seq2seq folders
            return None
        return [dict(np.load(path)) for path in sorted(record.glob("step*.npz")) if "_outputs" not in path.name]


def _merged(source: Path) -> bool:
    return (source / "decoder_model_merged.onnx").exists()


def skipped_reason(source: Path, variant: str, calibration: Calibration | None) -> str | None:
    """Why `variant` is not made for `source` (None: it is made)."""
    if variant == "qdq-static" and (not calibration or len(list(source.glob("*.onnx"))) > 1):
        return "static QDQ needs calibration feeds for every file; replay --record holds the decoder's (decoder-only exports)"
    if variant == "fp16" and _merged(source):
        return "onnxruntime.transformers.float16 writes merged decoders that ONNX Runtime cannot load"
    return None


def quantized_twins(source: Path, root: Path, variants: list[str] | None = None) -> dict[str, Path]:
    """variant -> folder under `root` with `source` quantized that way (skipped variants are absent)."""
    calibration = recorded_calibration(source)
    made: dict[str, Path] = {}
    for variant in variants or list(VARIANTS):
        if skipped_reason(source, variant, calibration) is not None:
            continue
        target = root / f"{source.name}-{variant}"
        quantize_folder(source, target, variant, calibration=calibration)
        made[variant] = target
    return made
