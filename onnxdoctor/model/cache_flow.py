"""How each present output is built from its past: the data-flow facts several checks share.

For every cache pair the present is traced back (through Identity/Cast, into the cache branch of a
merged decoder's If) to the node that makes it, and classified:

- concat: Concat with the past on one side (which input, which axis);
- swapped: Concat (or an attention op) whose past operand is *another* cache tensor (another layer, or
  value instead of key): the outputs are named after the wrong tensors;
- contrib: an onnxruntime attention op that takes the past and returns the present itself;
- scatter: a static-cache update (ScatterND / ScatterElements / TensorScatter) of the past;
- constant: a constant placeholder (merged seq2seq cross-attention presents in the cache branch);
- passthrough: the past itself (cross-attention presents that copy the encoder cache);
- detached: nothing of the past's values flows into the present;
- other: the past flows in through something else (not judged).

"The past is an operand" is decided structurally: the operand reaches a past input through ops that
only move or relabel its values (Identity, Cast, Transpose, Reshape, (Un)Squeeze, the Gather that
unpacks a stacked key/value). Value flow alone says nothing: in every healthy decoder layer 0's past
reaches layer 1's new K/V through attention -> residual -> k_proj, so "layer 1's present depends on
layer 0's past" is normal and must never read as swapped outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from onnxdoctor.model.graph import PASS_THROUGH_OPS, GraphView, Scope, SourceMasks, attribute_int
from onnxdoctor.model.signature import CONTRIB_ATTENTION_OPS, CachePair, Signature

if TYPE_CHECKING:
    import onnx

SCATTER_OPS = frozenset({"ScatterND", "ScatterElements", "TensorScatter", "Scatter"})

# Ops that move a tensor's values without mixing them with other values: a past seen through them is
# still the past operand (first input only; the others are shapes, perms or axes).
CARRYING_OPS = PASS_THROUGH_OPS | {"Transpose", "Reshape", "Squeeze", "Unsqueeze"}

# Contrib attention ops: output index of a present -> input index of the past it extends.
CONTRIB_PAST_SLOTS: dict[str, dict[int, int]] = {
    "GroupQueryAttention": {1: 3, 2: 4},
    "SparseAttention": {1: 3, 2: 4},
    "MultiHeadAttention": {1: 6, 2: 7},
    "DecoderMaskedMultiHeadAttention": {1: 5, 2: 6},
    "Attention": {1: 4},
    "DecoderMaskedSelfAttention": {1: 4},
}


@dataclass(frozen=True)
class PresentSource:
    pair: CachePair
    kind: str  # concat | contrib | scatter | constant | passthrough | detached | other
    node: onnx.NodeProto | None
    scope: Scope | None
    branch: str | None = None  # "cache branch" path inside a merged decoder's If
    past_input_index: int | None = None  # concat: which input carries the past
    concat_axis: int | None = None  # normalized to the present's rank
    expected_axis: int | None = None  # the cache axis at the Concat (differs inside stacked layouts)
    inputs: tuple[str, ...] = ()
    other_pasts: tuple[str, ...] = ()  # swapped: the other past input(s) it extends instead of its own

    @property
    def node_label(self) -> str:
        if self.node is None or self.scope is None:
            return "(graph input)"
        return self.scope.node_label(self.node)


def _cache_branch(view: GraphView, signature: Signature, if_node: onnx.NodeProto) -> str:
    """Which If attribute runs when use_cache_branch is True (then_branch unless the cond is negated)."""
    negations = 0
    name = if_node.input[0]
    switch = signature.input("use_cache_branch")
    while switch is not None and name != switch.name:
        found = view.main.producer(name)
        if found is None or not found[0].input:
            break
        node = found[0]
        if node.op_type == "Not":
            negations += 1
        name = node.input[0]
    return "then_branch" if negations % 2 == 0 else "else_branch"


def _resolve_output(view: GraphView, signature: Signature, name: str) -> tuple[str, Scope, str | None]:
    """Follow a graph output into the merged decoder's cache branch when an If produces it."""
    found = view.main.producer(name)
    if found is None:
        return name, view.main, None
    node, scope = found
    if node.op_type != "If" or signature.merged_if_node is None:
        return name, scope, None
    index = list(node.output).index(name)
    branch_name = _cache_branch(view, signature, node)
    for attribute in node.attribute:
        if attribute.name == branch_name:
            child = view.subgraph_scope(attribute.g)
            if child is not None and index < len(attribute.g.output):
                return attribute.g.output[index].name, child, child.path
    return name, scope, None


def _strip_pass_through(name: str, scope: Scope) -> tuple[str, onnx.NodeProto | None, Scope]:
    for _ in range(64):
        found = scope.producer(name)
        if found is None:
            return name, None, scope
        node, node_scope = found
        if node.op_type in PASS_THROUGH_OPS and node.input:
            name, scope = node.input[0], node_scope
            continue
        return name, node, node_scope
    return name, None, scope


def _operand_past(name: str, scope: Scope, pasts: frozenset[str]) -> str | None:
    """The past input that `name` is, seen through value-carrying ops only; None when it is computed."""
    for _ in range(64):
        if name in pasts and scope.producer(name) is None:
            return name
        found = scope.producer(name)
        if found is None:
            return None
        node, scope = found
        if not node.input:
            return None
        if node.op_type in CARRYING_OPS or _unstacks(node, scope):
            name = node.input[0]
            continue
        return None
    return None


def _unstacks(node: onnx.NodeProto, scope: Scope) -> bool:
    """Gather with a constant scalar index: how legacy stacked caches take the key or value half."""
    if node.op_type != "Gather" or len(node.input) < 2:
        return False
    index = scope.constant(node.input[1])
    return index is not None and index.ndim == 0


def _swapped(pair: CachePair, found: list[str | None]) -> tuple[str, ...]:
    own = pair.past.name if pair.past else None
    return tuple(sorted({p for p in found if p is not None and p != own}))


def _classify(
    masks: SourceMasks,
    pasts: frozenset[str],
    pair: CachePair,
    name: str,
    scope: Scope,
    branch: str | None,
    cache_axis: int,
    rank: int,
    depth: int = 0,
) -> PresentSource:
    past = pair.past
    assert past is not None
    tensor_name, node, node_scope = _strip_pass_through(name, scope)
    if node is None:
        if tensor_name == past.name:
            return PresentSource(pair, "passthrough", None, None, branch)
        if node_scope.constant(tensor_name) is not None or any(tensor_name in s.initializers for s in node_scope.chain()):
            return PresentSource(pair, "constant", None, node_scope, branch)
        return PresentSource(pair, "detached", None, None, branch)
    if node.op_type == "Constant":
        return PresentSource(pair, "constant", node, node_scope, branch)
    if node.op_type == "Concat":
        axis = attribute_int(node, "axis", 0)
        axis = axis + rank if axis < 0 else axis
        stacked = pair.axes is not None and pair.axes.stack is not None and depth == 0
        if stacked and axis == pair.axes.stack and len(node.input) == 2:  # type: ignore[union-attr]
            # legacy stacked layout: present = stack(key, value); judge the key half
            inner = _strip_unsqueeze(node.input[0], node_scope)
            if inner is not None:
                return _classify(masks, pasts, pair, inner, node_scope, branch, cache_axis - 1, rank - 1, depth + 1)
        inputs = tuple(node.input)
        operands = [_operand_past(inp, node_scope, pasts) if inp else None for inp in node.input]
        if past.name in operands:
            index = operands.index(past.name)
            return PresentSource(pair, "concat", node, node_scope, branch, index, axis, cache_axis, inputs)
        others = _swapped(pair, operands)
        if others:
            index = next(i for i, p in enumerate(operands) if p in others)
            return PresentSource(pair, "swapped", node, node_scope, branch, index, axis, cache_axis, inputs, others)
        # no operand is a past as such (e.g. a sliding-window Slice of it): fall back to value flow
        carriers = [i for i, inp in enumerate(node.input) if inp and masks.carries(inp, node_scope, past.name)]
        if len(carriers) == 1:
            return PresentSource(pair, "concat", node, node_scope, branch, carriers[0], axis, cache_axis, inputs)
        kind = "detached" if not carriers else "other"
        return PresentSource(pair, kind, node, node_scope, branch, None, axis, cache_axis, inputs)
    if node.domain == "com.microsoft" and node.op_type in CONTRIB_ATTENTION_OPS:
        return _classify_contrib(masks, pasts, pair, tensor_name, node, node_scope, branch)
    feeds_past = masks.carries(tensor_name, node_scope, past.name)
    if node.op_type in SCATTER_OPS and node.input and masks.carries(node.input[0], node_scope, past.name):
        return PresentSource(pair, "scatter", node, node_scope, branch)
    return PresentSource(pair, "other" if feeds_past else "detached", node, node_scope, branch)


def _classify_contrib(
    masks: SourceMasks, pasts: frozenset[str], pair: CachePair, tensor: str, node: onnx.NodeProto, scope: Scope, branch: str | None
) -> PresentSource:
    """An attention op returning the present: it must extend this pair's own past (its matching past input)."""
    past = pair.past
    assert past is not None
    slots = CONTRIB_PAST_SLOTS.get(node.op_type, {})
    out_index = list(node.output).index(tensor) if tensor in node.output else -1
    slot = slots.get(out_index)
    candidates = [slot] if slot is not None and slot < len(node.input) else range(len(node.input))
    operands = [_operand_past(node.input[i], scope, pasts) if node.input[i] else None for i in candidates]
    inputs = tuple(node.input)
    if past.name in operands:
        return PresentSource(pair, "contrib", node, scope, branch, inputs=inputs)
    others = _swapped(pair, operands)
    if others:
        return PresentSource(pair, "swapped", node, scope, branch, inputs=inputs, other_pasts=others)
    feeds_past = masks.carries(tensor, scope, past.name)
    return PresentSource(pair, "contrib" if feeds_past else "detached", node, scope, branch, inputs=inputs)


def _strip_unsqueeze(name: str, scope: Scope) -> str | None:
    tensor_name, node, _ = _strip_pass_through(name, scope)
    if node is not None and node.op_type == "Unsqueeze" and node.input:
        return node.input[0]
    return None


def trace_presents(view: GraphView, signature: Signature) -> list[PresentSource]:
    """Classify how every present with a past partner is produced."""
    kv = signature.kv
    if kv is None:
        return []
    sources = []
    pasts = frozenset(p.past.name for p in kv.pairs if p.past is not None)
    masks = view.source_masks(sorted(pasts))
    for pair in kv.pairs:
        if pair.past is None or pair.present is None or pair.axes is None:
            continue
        name, scope, branch = _resolve_output(view, signature, pair.present.name)
        sources.append(_classify(masks, pasts, pair, name, scope, branch, pair.axes.cache, pair.axes.rank))
    return sources


def concats_of_past(view: GraphView, past: str, pasts: frozenset[str]) -> list[tuple[onnx.NodeProto, Scope, int]]:
    """Every Concat (in any graph) with `past` as an operand, and which input: where a lost present still lives.

    Why: a present rewired to the new K/V, or dropped, usually leaves its Concat(past, new) in the graph
    (attention still reads it); naming that node makes the fix concrete for the layer at hand.
    """
    found = []
    for node, scope in view.nodes("Concat"):
        for index, name in enumerate(node.input):
            if name and _operand_past(name, scope, pasts) == past:
                found.append((node, scope, index))
                break
    return found
