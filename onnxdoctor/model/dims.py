"""Dims as values: a number, a symbol, or a small linear expression of symbols.

Exporters name the same dim differently (`past_sequence_length + 1`, `total_sequence_length`,
dynamo's `s69 + s70`, `batch`, `unk__42`), so dims are compared by arithmetic, never by string:
`past_sequence_length + sequence_length` parses to {past_sequence_length: 1, sequence_length: 1}.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnx

_TERM = re.compile(r"\s*([+-])?\s*(?:(\d+)\s*\*\s*)?([A-Za-z_][A-Za-z0-9_.:]*|\d+)\s*")


@dataclass(frozen=True)
class LinearDim:
    """`constant + sum(coefficient * symbol)`; symbols are dim_param names."""

    constant: int = 0
    terms: tuple[tuple[str, int], ...] = ()

    @property
    def symbols(self) -> frozenset[str]:
        return frozenset(name for name, _ in self.terms)

    def coefficient(self, symbol: str) -> int:
        return dict(self.terms).get(symbol, 0)

    def minus(self, other: LinearDim) -> LinearDim:
        merged = dict(self.terms)
        for name, coefficient in other.terms:
            merged[name] = merged.get(name, 0) - coefficient
        return LinearDim(
            self.constant - other.constant,
            tuple(sorted((n, c) for n, c in merged.items() if c != 0)),
        )


@functools.lru_cache(maxsize=4096)
def parse_dim_expression(text: str) -> LinearDim | None:
    """Parse `a + b - 1`, `2*a`, `s69 + s70`; None for anything non-linear (`floor(a/2)`).

    Cached: a model has few distinct dim names, asked about thousands of times (LinearDim is frozen)."""
    text = text.strip()
    if not text:
        return None
    position = 0
    constant = 0
    terms: dict[str, int] = {}
    first = True
    while position < len(text):
        match = _TERM.match(text, position)
        if match is None or match.end() == position:
            return None
        sign_text, factor_text, atom = match.groups()
        if sign_text is None and not first:
            return None
        sign = -1 if sign_text == "-" else 1
        factor = int(factor_text) if factor_text else 1
        if atom.isdigit():
            if factor_text:
                return None
            constant += sign * int(atom)
        else:
            terms[atom] = terms.get(atom, 0) + sign * factor
        position = match.end()
        first = False
    return LinearDim(constant, tuple(sorted((n, c) for n, c in terms.items() if c != 0)))


@dataclass(frozen=True)
class Dim:
    """One axis of a graph input or output: a fixed size, a named symbol, or unknown."""

    value: int | None = None
    param: str | None = None

    @property
    def is_static(self) -> bool:
        return self.value is not None

    @property
    def is_unknown(self) -> bool:
        return self.value is None and not self.param

    @property
    def linear(self) -> LinearDim | None:
        if self.value is not None:
            return LinearDim(self.value)
        if self.param:
            return parse_dim_expression(self.param)
        return None

    def __str__(self) -> str:
        if self.value is not None:
            return str(self.value)
        return self.param or "?"

    def same_as(self, other: Dim) -> bool:
        """Equal by arithmetic (`a+b` == `b + a`); unknown dims are never the same."""
        mine, theirs = self.linear, other.linear
        return mine is not None and mine == theirs


def dims_of(value_info: onnx.ValueInfoProto) -> tuple[Dim, ...] | None:
    """The dims of a tensor-typed value, or None when the rank is not declared."""
    tensor_type = value_info.type.tensor_type
    if not value_info.type.HasField("tensor_type") or not tensor_type.HasField("shape"):
        return None
    result: list[Dim] = []
    for dim in tensor_type.shape.dim:
        if dim.HasField("dim_value"):
            result.append(Dim(value=dim.dim_value))
        elif dim.HasField("dim_param") and dim.dim_param:
            result.append(Dim(param=dim.dim_param))
        else:
            result.append(Dim())
    return tuple(result)


def format_dims(dims: tuple[Dim, ...] | None) -> str:
    if dims is None:
        return "(rank unknown)"
    return "[" + ", ".join(str(d) for d in dims) + "]"
