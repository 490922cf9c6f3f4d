"""Comparison metrics: scaled differences, top-k agreement, greedy agreement, position sensitivity."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onnxdoctor.numerics.envelope import ENVELOPES, STRICT, Drift, judge, same_values, widened
from onnxdoctor.numerics.metrics import compare_logits, greedy_agreement, position_sensitivity, spread
from onnxdoctor.numerics.regime import Regime


def test_difference_is_scaled_by_the_logits_spread() -> None:
    rng = np.random.default_rng(0)
    expected = rng.standard_normal((2, 3, 50)) * 0.01  # near-flat logits, as random weights give
    observed = expected + 0.001
    comparison = compare_logits(observed, expected)
    assert comparison.max_abs == pytest.approx(0.001)
    assert comparison.spread == pytest.approx(0.01, rel=0.2)
    assert comparison.scaled == pytest.approx(0.1, rel=0.2)
    assert comparison.top1 == 1.0 and comparison.top5 == 1.0 and comparison.rows == 6


def test_identical_logits_are_exact_even_when_flat() -> None:
    flat = np.zeros((1, 2, 8), np.float32)
    comparison = compare_logits(flat, flat)
    assert comparison.scaled == 0.0 and judge(comparison, STRICT) is Drift.EXACT


def test_top1_and_top5_count_disagreeing_rows() -> None:
    expected = np.tile(np.arange(10, dtype=np.float32), (4, 1))
    observed = expected.copy()
    observed[0, 0] = 100.0  # row 0 now prefers token 0
    comparison = compare_logits(observed, expected)
    assert comparison.top1 == 0.75
    assert comparison.top5 == pytest.approx((4 / 5 + 3) / 4)


def test_non_finite_values_are_left_to_their_own_oracle() -> None:
    expected = np.ones((1, 4), np.float32) * np.arange(4)
    observed = expected.copy()
    observed[0, 1] = np.nan
    assert compare_logits(observed, expected).max_abs == 0.0


def test_shape_mismatch_is_refused() -> None:
    with pytest.raises(ValueError, match="shapes"):
        compare_logits(np.zeros((1, 3)), np.zeros((1, 4)))


def test_greedy_agreement_names_the_first_diverging_step() -> None:
    a = [np.eye(5)[[i]] for i in (1, 2, 3, 4)]
    b = [np.eye(5)[[i]] for i in (1, 2, 0, 4)]
    fraction, first = greedy_agreement(a, b)
    assert fraction == 0.75 and first == 2
    assert greedy_agreement(a, a) == (1.0, None)


def test_position_sensitivity_separates_constant_from_token_dependent_logits() -> None:
    rng = np.random.default_rng(1)
    varying = rng.standard_normal((20, 64))
    assert position_sensitivity(varying) > 0.5
    constant = np.tile(rng.standard_normal(64), (20, 1))
    assert position_sensitivity(constant) < 1e-9
    assert position_sensitivity(np.zeros((20, 64))) == 0.0
    assert position_sensitivity(varying[:1]) == float("inf")  # one row: nothing to compare


def test_judge_against_an_envelope() -> None:
    expected = np.random.default_rng(2).standard_normal((4, 32))
    noise = compare_logits(expected + 0.05 * expected.std(), expected)
    assert judge(noise, STRICT) is Drift.DEFECT
    assert judge(noise, ENVELOPES["int8-dynamic"]) is Drift.NOISE
    assert judge(compare_logits(expected, expected), ENVELOPES["int8-dynamic"]) is Drift.EXACT


def test_self_noise_widens_only_dynamic_quantization() -> None:
    dynamic = Regime(activations=("dynamic",), weights="int8 per-tensor")
    base = ENVELOPES["int8-dynamic"]
    assert widened(base, dynamic, base.scaled / 10) is base
    assert widened(base, dynamic, base.scaled).scaled == pytest.approx(3 * base.scaled)
    assert widened(ENVELOPES["fp16"], Regime(float_compute="float16"), 1.0) is ENVELOPES["fp16"]


def test_same_values_follows_the_envelope() -> None:
    present = np.random.default_rng(3).standard_normal((1, 2, 5, 8)).astype(np.float32)
    assert same_values(present, present.copy())
    assert not same_values(present, present[:, :, :4])
    assert not same_values(present + 0.01 * present.std(), present)
    assert same_values(present + 0.01 * present.std(), present, ENVELOPES["int8-dynamic"])
    assert not same_values(present[:, ::-1].copy(), present, ENVELOPES["int8-dynamic"])  # key/value or heads swapped


@settings(max_examples=60, deadline=None)
@given(
    rows=st.integers(1, 6),
    vocab=st.integers(2, 40),
    scale=st.floats(1e-4, 1e3),
    seed=st.integers(0, 2**16),
)
def test_scaled_difference_does_not_depend_on_the_logits_units(rows: int, vocab: int, scale: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    expected = rng.standard_normal((rows, vocab))
    observed = expected + rng.standard_normal((rows, vocab)) * 0.01
    if spread(expected) < 1e-3:
        return
    plain = compare_logits(observed, expected)
    scaled = compare_logits(observed * scale, expected * scale)
    assert scaled.scaled == pytest.approx(plain.scaled, rel=1e-6)
    assert scaled.top1 == plain.top1
