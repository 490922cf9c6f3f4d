"""Dim arithmetic: the same length written differently by different exporters compares equal."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from onnxdoctor.model.dims import Dim, LinearDim, parse_dim_expression

symbols = st.sampled_from(["past_sequence_length", "sequence_length", "s15", "s70", "batch", "total_seq", "unk__3"])


def test_common_exporter_spellings() -> None:
    assert parse_dim_expression("past_sequence_length + 1") == LinearDim(1, (("past_sequence_length", 1),))
    assert parse_dim_expression("s69 + s70") == LinearDim(0, (("s69", 1), ("s70", 1)))
    assert parse_dim_expression("2*s3 - 1") == LinearDim(-1, (("s3", 2),))
    assert parse_dim_expression("floor(s3/2)") is None
    assert parse_dim_expression("") is None


def test_same_as_ignores_order_and_spacing() -> None:
    assert Dim(param="s15 + s70").same_as(Dim(param="s70+s15"))
    assert not Dim(param="s15").same_as(Dim(param="s15 + s70"))
    assert Dim(value=4).same_as(Dim(value=4)) and not Dim(value=4).same_as(Dim(param="heads"))
    assert not Dim().same_as(Dim())  # unknown dims are never known to be equal


@given(terms=st.lists(st.tuples(symbols, st.integers(1, 3)), min_size=1, max_size=4), constant=st.integers(-5, 5))
def test_parse_round_trips_any_linear_expression(terms: list[tuple[str, int]], constant: int) -> None:
    text = " + ".join(f"{c}*{s}" if c != 1 else s for s, c in terms)
    if constant:
        text += f" {'+' if constant > 0 else '-'} {abs(constant)}"
    parsed = parse_dim_expression(text)
    assert parsed is not None
    expected: dict[str, int] = {}
    for symbol, coefficient in terms:
        expected[symbol] = expected.get(symbol, 0) + coefficient
    assert dict(parsed.terms) == expected and parsed.constant == constant
    # present = past + new: the difference recovers the new-token term
    past = LinearDim(0, (("past", 1),))
    assert LinearDim(parsed.constant, tuple(sorted({**dict(parsed.terms), "past": 1}.items()))).minus(past) == parsed
