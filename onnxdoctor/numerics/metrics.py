"""Comparison metrics for logits: every oracle, check-feeds, verify and compare use these.

Random-weight test models (and many real ones near a flat distribution) give logits whose spread
across the vocabulary is tiny; an absolute tolerance is then meaningless. Differences are therefore
scaled by the reference logits' spread (their standard deviation across the vocabulary), and the
decision a user cares about, which token wins, is measured directly (top-1, top-5, greedy agreement).
numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Comparison:
    """How far observed logits are from expected ones."""

    max_abs: float  # max |observed - expected| over finite values
    spread: float  # std of the expected logits across the vocabulary, mean over rows
    scaled: float  # max_abs / spread: 1.0 means "as large as the logits' own variation"
    top1: float  # fraction of rows (batch x positions) whose argmax agrees
    top5: float  # mean overlap of the top-5 sets
    rows: int

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 8) if isinstance(v, float) else v) for k, v in self.__dict__.items()}

    def describe(self) -> str:
        return (
            f"max |diff| {self.max_abs:.3g} = {self.scaled:.3g} x the logits' spread ({self.spread:.3g}); "
            f"top-1 agreement {self.top1:.0%}, top-5 overlap {self.top5:.0%}"
        )


def _rows(values: np.ndarray) -> np.ndarray:
    """[rows, vocab] in float64: every leading axis (batch, positions) becomes a row."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 0:
        return array.reshape(1, 1)
    return array.reshape(-1, array.shape[-1])


def spread(values: np.ndarray) -> float:
    """Mean over rows of the std across the last axis (the vocabulary), finite values only."""
    rows = _rows(values)
    finite = np.isfinite(rows)
    if not finite.any():
        return 0.0
    safe = np.where(finite, rows, np.nan)
    per_row = np.nanstd(safe, axis=-1)
    per_row = per_row[np.isfinite(per_row)]
    return float(per_row.mean()) if per_row.size else 0.0


def _topk_overlap(observed: np.ndarray, expected: np.ndarray, k: int) -> float:
    k = min(k, observed.shape[-1])
    if k < 1 or observed.shape[0] == 0:
        return 1.0
    top_o = np.argpartition(-observed, k - 1, axis=-1)[:, :k]
    top_e = np.argpartition(-expected, k - 1, axis=-1)[:, :k]
    overlap = [len(set(a.tolist()) & set(b.tolist())) / k for a, b in zip(top_o, top_e)]
    return float(np.mean(overlap))


def compare_logits(observed: np.ndarray, expected: np.ndarray) -> Comparison:
    """Scaled max difference and top-k agreement of two logits arrays of one shape.

    Non-finite values are left out (they are the non-finite oracle's business).
    """
    o, e = _rows(observed), _rows(expected)
    if o.shape != e.shape:
        raise ValueError(f"cannot compare logits of shapes {np.shape(observed)} and {np.shape(expected)}")
    finite = np.isfinite(o) & np.isfinite(e)
    if not finite.any():
        return Comparison(0.0, 0.0, 0.0, 1.0, 1.0, int(o.shape[0]))
    max_abs = float(np.max(np.abs(o - e)[finite]))
    spread_e = spread(e)
    # a flat reference (zero spread) is compared against its magnitude, so exact equality still reads 0
    floor = 1e-6 * max(1.0, float(np.max(np.abs(e[finite]))))
    scaled = max_abs / max(spread_e, floor)
    o_clean, e_clean = np.where(finite, o, -np.inf), np.where(finite, e, -np.inf)
    top1 = float(np.mean(np.argmax(o_clean, axis=-1) == np.argmax(e_clean, axis=-1)))
    return Comparison(max_abs, spread_e, scaled, top1, _topk_overlap(o_clean, e_clean, 5), int(o.shape[0]))


def greedy_agreement(observed_steps: Sequence[np.ndarray], expected_steps: Sequence[np.ndarray]) -> tuple[float, int | None]:
    """(fraction of steps whose last-position argmax agrees in every row, first step that disagrees)."""
    agree = 0
    first: int | None = None
    steps = 0
    for step, (o, e) in enumerate(zip(observed_steps, expected_steps)):
        steps += 1
        last_o = np.asarray(o)[..., -1, :] if np.ndim(o) == 3 else np.asarray(o)
        last_e = np.asarray(e)[..., -1, :] if np.ndim(e) == 3 else np.asarray(e)
        if np.array_equal(np.argmax(last_o, axis=-1), np.argmax(last_e, axis=-1)):
            agree += 1
        elif first is None:
            first = step
    return (agree / steps if steps else 1.0), first


def position_sensitivity(logits: np.ndarray) -> float:
    """How much logits change across positions and rows, relative to their spread across the vocabulary.

    A model whose output no longer depends on its input (a quantization that collapsed every
    activation) gives the same logits at every position: this reads ~0. Healthy models read O(1).
    """
    rows = _rows(logits)
    finite = np.isfinite(rows).all(axis=-1)
    rows = rows[finite]
    if rows.shape[0] < 2:
        return float("inf")  # nothing to compare: never report insensitivity on one row
    across = float(np.mean(np.std(rows, axis=0)))  # how a vocabulary entry moves between positions
    within = spread(rows)
    if within == 0.0:
        return 0.0 if across == 0.0 else float("inf")
    return across / within
