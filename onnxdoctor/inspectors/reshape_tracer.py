"""Reshape-node tracer (ODR2xx): where each Reshape's target shape comes from, entry by entry.

Two failure classes from the field:
- a target shape that is a constant holding an export-time batch or sequence length
  (`view(int(x.shape[0]), int(x.shape[1]), h, d)` traced to `[1, 3, 2, 8]`): any other length dies
  with `input_shape_size == requested_shape_size was false ... requested shape:{1,3,2,8}`;
- with allowzero=0 a 0 entry means "copy that input dim": an entry computed from an empty cache
  (length 0 at step 0) becomes a copy, giving `The dimension with value zero exceeds the dimension
  size of the input tensor`, and a 0 next to a -1 makes -1 impossible to infer.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from typing import TYPE_CHECKING

from onnxdoctor.context import Context
from onnxdoctor.findings import Finding, Rule, Severity, register
from onnxdoctor.inspectors import inspector
from onnxdoctor.model.dims import Dim, format_dims
from onnxdoctor.model.graph import PASS_THROUGH_OPS, Constant, GraphView, Scope, attribute_int
from onnxdoctor.model.signature import axis_roles

if TYPE_CHECKING:
    import onnx

BAKED_RESHAPE = register(
    Rule(
        "ODR201",
        "baked-reshape-shape",
        Severity.ERROR,
        "a Reshape whose target shape is a constant holding an export-time batch or sequence value while its "
        "data depends on a dynamic axis",
        what="A Reshape's target shape has constant entries where the data has a batch, sequence or cache "
        "length that changes between calls.",
        why="The trace turned a tensor size into a Python int; the constant only matches the example input. "
        "Step 1 (one token instead of the prompt) or another batch size fails with 'input_shape_size == "
        "requested_shape_size was false' in this node.",
        example="q.view(int(x.shape[0]), int(x.shape[1]), heads, head_dim) exported as Reshape(q, [1, 3, 2, 8]).",
        fix="In the model code keep sizes as tensors: q.view(x.shape[0], x.shape[1], heads, head_dim) or "
        "q.view(bsz, -1, heads, head_dim) without int(); or export with dynamo=True and dynamic_shapes. "
        "Re-exporting with dynamic_axes alone does not remove a baked constant.",
        fix_safety="Needs a code change and re-export; the recovery engine can only point to the node.",
    )
)

RESHAPE_ZERO = register(
    Rule(
        "ODR202",
        "reshape-zero-meets-empty-cache",
        Severity.ERROR,
        "a Reshape with allowzero=0 whose computed shape entry can be 0 when the cache is empty",
        what="A Reshape with allowzero=0 has a target entry that is 0 when the past is empty (step 0), or a "
        "0 'copy' entry next to -1 on data that can be empty.",
        why="With allowzero=0 a 0 entry means 'copy the input's dim': at step 0 an entry computed from the cache "
        "length silently becomes a copy ('The dimension with value zero exceeds the dimension size of the input "
        "tensor'), and -1 cannot be inferred when the other entries multiply to 0.",
        example="Reshape(past_key, [-1, heads, 0, head_dim]) with an empty past at step 0.",
        fix="Compute the target from non-empty sizes (use -1 for the cache length), or export with opset >= 14 "
        "and allowzero=1 where a 0 length is meant literally; clients can feed a merged decoder's no-cache "
        "branch at step 0 instead of an empty past.",
        fix_safety="Needs a code change and re-export.",
    )
)

_ELEMENTWISE = {"Add": "+", "Sub": "-", "Mul": "*", "Div": "/"}


@dataclass(frozen=True)
class Entry:
    """One entry of a target shape and where it comes from."""

    value: int | None  # known value (constants, static dims)
    source: str  # constant | dim | computed | unknown
    text: str
    dims: tuple[tuple[str, int], ...] = ()  # (tensor, axis) of every Shape() this entry reads
    symbol: str | None = None  # the symbolic dim it reads, when known (e.g. batch_size)

    @property
    def short(self) -> str:
        """Compact form for tables: the symbol it follows, else the value, else the expression."""
        if self.value is not None:
            return str(self.value)
        return self.symbol or self.text

    def to_dict(self) -> dict[str, object]:
        return {"value": self.value, "source": self.source, "text": self.text, "symbol": self.symbol}


@dataclass
class ReshapeTrace:
    node: onnx.NodeProto
    scope: Scope
    data_shape: tuple[Dim, ...] | None
    entries: list[Entry] | None  # None: the target's length is unknown
    allowzero: int
    findings: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.scope.node_label(self.node)

    def target_text(self) -> str:
        if self.entries is None:
            return "?"
        return "[" + ", ".join(e.text for e in self.entries) + "]"

    def to_dict(self) -> dict[str, object]:
        return {
            "node": self.node.name,
            "graph": self.scope.path or "main",
            "data": self.node.input[0],
            "data_shape": None if self.data_shape is None else [str(d) for d in self.data_shape],
            "target": None if self.entries is None else [e.to_dict() for e in self.entries],
            "allowzero": self.allowzero,
            "findings": self.findings,
        }


def _unknown(count: int | None) -> list[Entry] | None:
    return None if count is None else [Entry(None, "unknown", "?") for _ in range(count)]


def _shape_entries(tensor: str, scope: Scope, start: int, end: int | None) -> list[Entry] | None:
    dims = scope.shape(tensor)
    if dims is None:
        return None
    rank = len(dims)
    start = start + rank if start < 0 else start
    stop = rank if end is None else (end + rank if end < 0 else min(end, rank))
    return [
        Entry(dims[a].value, "dim", f"Shape({tensor})[{a}]", ((tensor, a),), dims[a].param or None)
        for a in range(max(start, 0), max(stop, 0))
    ]


def _fallback(name: str, scope: Scope) -> list[Entry] | None:
    """Unknown entries, as many as the tensor's inferred shape says (computed only when a trace gives up)."""
    own_shape = scope.shape(name)
    return _unknown(int(own_shape[0].value) if own_shape and len(own_shape) == 1 and own_shape[0].value is not None else (1 if own_shape == () else None))


# The entries of a target, finished once inferred shapes are known (see plan_entries).
Planned = Callable[[], "list[Entry] | None"]


def _nothing() -> list[Entry] | None:
    return None


def _read_ahead(constant: Constant | None) -> None:
    """Read a constant's values now if they can be read; if not, the plan meets the same error when (and
    only if) it gets there, as trace_entries always did."""
    if constant is not None:
        try:
            constant.values  # noqa: B018 - kept on the Constant
        except Exception:  # noqa: BLE001 - raised again where it is actually used
            pass


def plan_entries(name: str, scope: Scope, depth: int = 0) -> Planned:
    """trace_entries in two halves: every lookup that needs no inferred shape (producers, constants,
    attributes) happens now; the returned function does the rest with shapes. inspect builds the plans
    while shape inference still runs in the background, so little is left once it ends."""
    if depth > 40:
        return _nothing
    value = scope.constant(name)
    if value is not None:
        _read_ahead(value)
        return lambda: [Entry(int(v), "constant", str(int(v))) for v in value.values]

    def fallback() -> list[Entry] | None:
        return _fallback(name, scope)

    found = scope.producer(name)
    if found is None:
        return fallback
    node, node_scope = found
    op = node.op_type
    if op in PASS_THROUGH_OPS or op in ("Unsqueeze", "Squeeze") or (op == "Reshape" and depth > 0):
        inner = plan_entries(node.input[0], node_scope, depth + 1)
        return lambda: inner() or fallback()
    if op == "Shape":
        tensor, start = node.input[0], attribute_int(node, "start", 0)
        end_attr = next((a.i for a in node.attribute if a.name == "end"), None)
        return lambda: _shape_entries(tensor, node_scope, start, end_attr) or fallback()
    if op == "Concat":
        parts = [plan_entries(part, node_scope, depth + 1) for part in node.input]

        def concat() -> list[Entry] | None:
            result: list[Entry] = []
            for part in parts:
                traced = part()
                if traced is None:
                    return fallback()
                result.extend(traced)
            return result

        return concat
    if op == "Gather" and len(node.input) == 2:
        planned_source = plan_entries(node.input[0], node_scope, depth + 1)
        indices = node_scope.constant(node.input[1])
        _read_ahead(indices)

        def gather() -> list[Entry] | None:
            source = planned_source()
            if source is not None and indices is not None:
                picked = [int(i) for i in indices.values]
                if all(-len(source) <= i < len(source) for i in picked):
                    return [source[i] for i in picked]
            return fallback()

        return gather
    if op == "Slice" and len(node.input) >= 3:
        planned_source = plan_entries(node.input[0], node_scope, depth + 1)
        starts, ends = node_scope.constant(node.input[1]), node_scope.constant(node.input[2])
        _read_ahead(starts)
        _read_ahead(ends)

        def slice_() -> list[Entry] | None:
            source = planned_source()
            if source is not None and starts is not None and ends is not None:
                start, stop = int(starts.values[0]), int(ends.values[0])
                return source[slice(start, min(stop, len(source)))]
            return fallback()

        return slice_
    if op in _ELEMENTWISE and len(node.input) == 2:
        planned_left = plan_entries(node.input[0], node_scope, depth + 1)
        planned_right = plan_entries(node.input[1], node_scope, depth + 1)
        def elementwise() -> list[Entry] | None:
            combined = _combine(op, planned_left(), planned_right())
            return combined if combined is not None else fallback()

        return elementwise
    return fallback


def _combine(op: str, left: list[Entry] | None, right: list[Entry] | None) -> list[Entry] | None:
    """Elementwise shape arithmetic, entry by entry (a single entry broadcasts); None when it cannot."""
    if left is None or right is None:
        return None
    if len(left) == 1 and len(right) > 1:
        left = left * len(right)
    if len(right) == 1 and len(left) > 1:
        right = right * len(left)
    if len(left) != len(right):
        return None
    symbol = _ELEMENTWISE[op]
    combined = []
    for a, b in zip(left, right):
        known = None
        if a.value is not None and b.value is not None and not (op == "Div" and b.value == 0):
            known = {"+": a.value + b.value, "-": a.value - b.value, "*": a.value * b.value, "/": a.value // b.value if b.value else 0}[symbol]
        source_kind = "constant" if a.source == b.source == "constant" else "computed"
        readable = f"{a.short} {symbol} {b.short}" if a.symbol or b.symbol else None
        combined.append(Entry(known, source_kind, f"{a.text} {symbol} {b.text}", a.dims + b.dims, readable))
    return combined


def trace_entries(name: str, scope: Scope, depth: int = 0) -> list[Entry] | None:
    """Entries of a 1-D (or scalar) int tensor, traced through the usual shape arithmetic."""
    return plan_entries(name, scope, depth)()


def _role_symbols(ctx: Context) -> dict[str, str]:
    """dim_param symbol -> batch | sequence | total | cache | encoder, from the signature."""
    symbols: dict[str, str] = {}
    signature = ctx.signature
    for tensor in signature.inputs + signature.outputs:
        for axis, meaning in axis_roles(signature, tensor).items():
            dim = tensor.dims[axis] if tensor.dims is not None else None
            linear = dim.linear if dim is not None and not dim.is_static else None
            if linear is not None and len(linear.terms) == 1 and linear.constant == 0 and linear.terms[0][1] == 1:
                symbols.setdefault(linear.terms[0][0], meaning)
    return symbols


def _dim_meaning(dim: Dim, symbols: dict[str, str]) -> str | None:
    linear = dim.linear
    if dim.is_static or linear is None:
        return None
    meanings = {symbols[s] for s in linear.symbols if s in symbols}
    if len(meanings) == 1 and len(linear.terms) == 1 and linear.constant == 0 and linear.terms[0][1] == 1:
        return meanings.pop()
    if meanings:
        return "+".join(sorted(meanings))
    return None


def _cache_symbols(ctx: Context) -> set[str]:
    """Symbols that are a past length on their own: 0 at step 0."""
    return {s for s, meaning in _role_symbols(ctx).items() if meaning == "cache"}


def _can_be_zero(entry: Entry, scope: Scope, empty_symbols: set[str]) -> bool:
    if entry.source != "dim" or len(entry.dims) != 1:
        return False
    tensor, axis = entry.dims[0]
    dims = scope.shape(tensor)
    if dims is None or axis >= len(dims):
        return False
    linear = dims[axis].linear
    return linear is not None and linear.constant == 0 and len(linear.terms) == 1 and linear.terms[0][0] in empty_symbols


# Each view's Reshapes with their planned targets: built by prepare_reshapes while shape inference runs
# in the background (the engine calls it), else on first use; finished by trace_reshapes.
_PLANS: weakref.WeakKeyDictionary[GraphView, list[tuple[onnx.NodeProto, Scope, Planned, int]]] = weakref.WeakKeyDictionary()


def _plans(ctx: Context) -> list[tuple[onnx.NodeProto, Scope, Planned, int]]:
    view = ctx.graph
    plans = _PLANS.get(view)
    if plans is None:
        plans = _PLANS[view] = [
            (node, scope, plan_entries(node.input[1], scope), attribute_int(node, "allowzero", 0))
            for node, scope in view.nodes("Reshape")
            if len(node.input) >= 2
        ]
    return plans


def prepare_reshapes(ctx: Context) -> None:
    """Plan every Reshape's target now: all the tracing that needs no inferred shape."""
    _plans(ctx)


def trace_reshapes(ctx: Context) -> list[ReshapeTrace]:
    """Every Reshape of the model (subgraphs included) with the provenance of its target shape."""
    return [
        ReshapeTrace(node, scope, scope.shape(node.input[0]), planned(), allowzero)
        for node, scope, planned, allowzero in _plans(ctx)
    ]


def _baked(trace: ReshapeTrace, symbols: dict[str, str]) -> list[tuple[int, int | None, str]]:
    """(entry index, constant value, what it stands for) when a target cannot follow the data's dynamic dims.

    Only targets without -1 are judged: -1 absorbs whatever the dynamic dims are, so only a target
    whose entries are all fixed (or fixed where a batch/sequence dim of the data has no Shape-derived
    counterpart) can fail for other lengths.
    """
    if trace.entries is None or trace.data_shape is None:
        return []
    if any(e.value == -1 or (e.source == "constant" and e.value == 0) for e in trace.entries):
        return []
    data_roles = {i: m for i, d in enumerate(trace.data_shape) if (m := _dim_meaning(d, symbols)) is not None}
    if not data_roles:
        return []
    followed: set[str] = set()
    for entry in trace.entries:
        for tensor, axis in entry.dims:
            dims = trace.scope.shape(tensor)
            if dims is not None and axis < len(dims) and dims[axis].linear is not None:
                followed |= dims[axis].linear.symbols  # type: ignore[union-attr]
    data_symbols = {s for d in trace.data_shape if d.linear is not None for s in d.linear.symbols if s in symbols}
    missing = data_symbols - followed
    if not missing:
        return []
    baked: list[tuple[int, int | None, str]] = []
    for index, meaning in data_roles.items():
        dim = trace.data_shape[index]
        if index < len(trace.entries) and trace.entries[index].source == "constant" and dim.linear is not None and dim.linear.symbols & missing:
            baked.append((index, trace.entries[index].value, meaning))
    if not baked:
        baked = [(-1, None, "+".join(sorted(symbols[s] for s in missing)))]
    return baked


def analyse_reshapes(ctx: Context) -> list[tuple[ReshapeTrace, list[Finding]]]:
    """Every Reshape with its findings; `inspect --reshapes` lists this, the check yields the findings."""
    signature = ctx.signature
    if signature.kind != "decoder":
        return [(trace, []) for trace in trace_reshapes(ctx)]
    symbols = _role_symbols(ctx)
    kv = signature.kv
    empty_symbols = _cache_symbols(ctx) if kv is not None and kv.mode in ("with_past", "past_only") else set()
    result = []
    for trace in trace_reshapes(ctx):
        findings = list(_check_baked(ctx, trace, symbols))
        if trace.allowzero == 0 and empty_symbols:
            findings.extend(_check_zero(ctx, trace, empty_symbols))
        result.append((trace, findings))
    return result


@inspector(needs_shapes=True, prepare=prepare_reshapes)
def check_reshapes(ctx: Context) -> Iterator[Finding]:
    for _trace, findings in analyse_reshapes(ctx):
        yield from findings


def _check_baked(ctx: Context, trace: ReshapeTrace, symbols: dict[str, str]) -> Iterator[Finding]:
    baked = _baked(trace, symbols)
    if not baked:
        return
    trace.findings.append(BAKED_RESHAPE.code)
    parts = ", ".join(
        f"entry {i} = {v} stands for {m}" if i >= 0 else f"no entry follows the data's {m} length" for i, v, m in baked
    )
    data = f"{trace.node.input[0]} {format_dims(trace.data_shape)}"
    yield BAKED_RESHAPE.finding(
        f"Reshape {trace.label} reshapes {data} to {trace.target_text()}: {parts}; any other value fails in this "
        "node ('input_shape_size == requested_shape_size was false')",
        ctx.at("node", trace.node.name or trace.label),
        evidence={
            "node": trace.label,
            "data": trace.node.input[0],
            "data_shape": [str(d) for d in trace.data_shape or ()],
            "target": [e.value if e.source == "constant" else e.text for e in trace.entries or ()],
            "target_input": trace.node.input[1],
            "baked": [{"index": i, "value": v, "stands_for": m} for i, v, m in baked],
        },
        remedy={"code_change": "keep_sizes_symbolic", "node": trace.node.name, "exporter": "dynamo=True with dynamic_shapes"},
    )


def _check_zero(ctx: Context, trace: ReshapeTrace, empty_symbols: set[str]) -> Iterator[Finding]:
    if trace.entries is None or trace.scope.path:
        return  # merged decoders' branches never see an empty cache under the protocol
    zero_entries = [i for i, e in enumerate(trace.entries) if _can_be_zero(e, trace.scope, empty_symbols)]
    copy_entries = []
    has_minus_one = any(e.source == "constant" and e.value == -1 for e in trace.entries)
    if has_minus_one and trace.data_shape is not None:
        for index, entry in enumerate(trace.entries):
            if entry.source == "constant" and entry.value == 0 and index < len(trace.data_shape):
                linear = trace.data_shape[index].linear
                if linear is not None and linear.constant == 0 and linear.symbols and linear.symbols <= empty_symbols:
                    copy_entries.append(index)
    if not zero_entries and not copy_entries:
        return
    trace.findings.append(RESHAPE_ZERO.code)
    reasons = [f"entry {i} ({trace.entries[i].text}) is 0 when the cache is empty and is then read as 'copy input dim {i}'" for i in zero_entries]
    reasons += [f"entry {i} is a 0 'copy' of an empty cache axis next to -1, which then cannot be inferred" for i in copy_entries]
    yield RESHAPE_ZERO.finding(
        f"Reshape {trace.label} (allowzero=0) has target {trace.target_text()}: " + "; ".join(reasons) + "; step 0 with an empty past fails here",
        ctx.at("node", trace.node.name or trace.label, step=0),
        evidence={
            "node": trace.label,
            "data_shape": [str(d) for d in trace.data_shape or ()],
            "target": [e.text for e in trace.entries],
            "zero_at_step0": zero_entries + copy_entries,
        },
        remedy={"code_change": "avoid_zero_entries", "node": trace.node.name},
    )
