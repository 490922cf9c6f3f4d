"""Tolerance envelopes: how far two computations of one healthy model may drift in each regime.

The numbers are measured, not guessed: `bench/bench_envelope.py` decodes tiny and medium decoders
in every regime (cached vs uncached, padded row vs the row alone) and planted defects in the same
regimes, and README.md ("Numerics") has the table. Each envelope sits well above the largest
healthy drift measured and well below the smallest defect, both in units of the logits' spread
(see metrics.compare_logits).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

from onnxdoctor.numerics.metrics import Comparison
from onnxdoctor.numerics.regime import Regime


@dataclass(frozen=True)
class Envelope:
    """The largest scaled drift (max |diff| / logits' spread) that is this regime's own noise."""

    name: str
    scaled: float
    note: str

    def describe(self) -> str:
        return f"{self.name} envelope ({self.scaled:.2g} x the logits' spread)"


# Largest healthy drift measured by bench/bench_envelope.py (tiny fixtures and 4-layer hidden-256 decoders,
# cached vs uncached and padded vs alone, 8 steps) and the smallest planted defect, in the same unit:
#   fp32 3e-6 | weight-only int4 3e-6 | static QDQ 0 | fp16 1e-3 | int8 dynamic 0.053 tiny, 0.155 medium
#   defects: >= 0.11 (GPT-2 tiny: swapped concat 0.12, ignored mask 0.25), >= 0.7 elsewhere, >= 1.3 medium
ENVELOPES: dict[str, Envelope] = {
    "fp32": Envelope("fp32", 1e-3, "float32 rounding; measured <= 3e-6"),
    "weight-only": Envelope("weight-only", 1e-3, "weights dequantized inside the op, float32 activations; measured <= 3e-6"),
    "qdq": Envelope("qdq", 0.05, "fixed activation scales; measured 0"),
    "qoperator": Envelope("qoperator", 0.05, "fixed activation scales, integer kernels (as static QDQ)"),
    "fp16": Envelope("fp16", 0.05, "half-precision rounding; measured <= 1e-3"),
    "bf16": Envelope("bf16", 0.1, "bfloat16 rounding (8 bits of mantissa, 8x fp16's step)"),
    "int8-dynamic": Envelope(
        "int8-dynamic", 0.1, "activation scales computed per call; measured <= 0.053 tiny, widened by the model's own noise"
    ),
}

STRICT = ENVELOPES["fp32"]


def envelope_for(regime: Regime) -> Envelope:
    """The loosest envelope among the regime's noise sources (fp16 compute + int8 dynamic -> int8's)."""
    parts = [ENVELOPES[c] for c in regime.components]
    loosest = max(parts, key=lambda e: e.scaled)
    if len(parts) > 1 and loosest is not STRICT:
        names = "+".join(p.name for p in parts if p is not STRICT) or loosest.name
        return Envelope(names, loosest.scaled, loosest.note)
    return loosest


# A model's own noise (the same logits from two calls that differ only in what else the call holds) times
# this factor widens an envelope whose noise depends on the call: dynamic int8 computes activation scales
# from whatever tensor it sees, and deep real models accumulate more of it than the tiny ones measured.
SELF_NOISE_FACTOR = 3.0


def widened(envelope: Envelope, regime: Regime, self_noise: float) -> Envelope:
    """The envelope, widened to SELF_NOISE_FACTOR x the model's measured self-noise for dynamic quantization."""
    limit = SELF_NOISE_FACTOR * self_noise
    if "int8-dynamic" not in regime.components or limit <= envelope.scaled:
        return envelope
    return Envelope(envelope.name, limit, f"{envelope.note}; widened to {SELF_NOISE_FACTOR:g} x this model's own noise {self_noise:.2g}")


class Drift(str, Enum):
    """What a measured difference means under an envelope."""

    EXACT = "exact"  # within float32 rounding
    NOISE = "noise"  # above float32 rounding, inside the regime's envelope: quantization / precision noise
    DEFECT = "defect"  # outside the envelope


def judge(comparison: Comparison, envelope: Envelope) -> Drift:
    if comparison.scaled <= STRICT.scaled:
        return Drift.EXACT
    return Drift.NOISE if comparison.scaled <= envelope.scaled else Drift.DEFECT


def same_values(observed: np.ndarray, expected: np.ndarray, envelope: Envelope = STRICT) -> bool:
    """Are two tensors (a fed past and the present it should be) the same up to the regime's noise?

    The difference is scaled by the expected tensor's own spread, as logits are.
    """
    if observed.shape != expected.shape:
        return False
    if observed.size == 0:
        return True
    a = observed.astype(np.float64)
    b = expected.astype(np.float64)
    finite = np.isfinite(a) & np.isfinite(b)
    if not np.array_equal(np.isfinite(a), np.isfinite(b)):
        return False
    if not finite.any():
        return True
    diff = float(np.max(np.abs(a - b)[finite]))
    scale = max(float(np.std(b[finite])), 1e-6 * max(1.0, float(np.max(np.abs(b[finite])))))
    return diff / scale <= envelope.scaled


# Against a float32 reference (verify: the PyTorch source; compare: another export), a regime's own
# quantization error counts too, not only its run-to-run noise: measured by bench/bench_verify.py on
# exports of tiny and medium random-weight decoders (README "verify").
# measured (max over 8 steps, batch 2): fp32 0 | fp16 0.0017 | int8 dynamic 0.073 | int4 block 16/32 0.48 |
# static QDQ 0.83; another checkpoint of the same config: 4.5 - 5.7.
FIDELITY: dict[str, Envelope] = {
    "fp32": Envelope("fp32", 1e-3, "different kernels, same float32 math; measured 0 - 1e-6"),
    "weight-only": Envelope("weight-only", 1.5, "int4/int8 weights against float32 weights; measured <= 0.48"),
    "qdq": Envelope("qdq", 1.5, "quantized activations and weights; measured <= 0.83"),
    "qoperator": Envelope("qoperator", 1.5, "quantized activations and weights (as static QDQ)"),
    "fp16": Envelope("fp16", 0.05, "half-precision weights and math; measured <= 0.0017"),
    "bf16": Envelope("bf16", 0.1, "bfloat16 weights and math"),
    "int8-dynamic": Envelope("int8-dynamic", 0.5, "int8 weights and per-call activation scales; measured <= 0.073"),
}


def fidelity_envelope(*regimes: Regime) -> Envelope:
    """How far these regimes may sit from a float32 reference: the loosest of their noise sources."""
    parts = [FIDELITY[c] for regime in regimes for c in regime.components]
    loosest = max(parts, key=lambda e: e.scaled)
    names = "+".join(dict.fromkeys(p.name for p in parts if p.scaled > FIDELITY["fp32"].scaled)) or loosest.name
    return Envelope(names, loosest.scaled, loosest.note)
