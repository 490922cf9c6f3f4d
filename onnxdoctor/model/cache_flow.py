"""How each present output is built from its past: the data-flow facts several checks share.

For every cache pair the present is traced back (through Identity/Cast, into the cache branch of a
merged decoder's If) to the node that makes it, and classified:

- concat: Concat with the past on one side (which input, which axis);
- contrib: an onnxruntime attention op that takes the past and returns the present itself;
- scatter: a static-cache update (ScatterND / ScatterElements / TensorScatter) of the past;
- constant: a constant placeholder (merged seq2seq cross-attention presents in the cache branch);
- passthrough: the past itself (cross-attention presents that copy the encoder cache);
- detached: nothing of the past's values flows into the present;
- other: the past flows in through something else (not judged).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import onnx

from onnxdoctor.model.graph import PASS_THROUGH_OPS, GraphView, Scope, SourceMasks, attribute_int
from onnxdoctor.model.signature import CONTRIB_ATTENTION_OPS, CachePair, Signature

SCATTER_OPS = frozenset({"ScatterND", "ScatterElements", "TensorScatter", "Scatter"})


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
    other_pasts: tuple[str, ...] = ()  # detached: other past inputs it is built from (swapped outputs)

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


def _with_other_pasts(masks: SourceMasks, source: PresentSource, name: str, scope: Scope) -> PresentSource:
    """A detached present built from *another* past is most likely a swapped output, not a lost cache."""
    if source.kind != "detached":
        return source
    own = source.pair.past.name if source.pair.past else None
    others = tuple(sorted(p for p in masks.sources_in(name, scope) if p != own))
    return replace(source, other_pasts=others) if others else source


def _classify(
    masks: SourceMasks, pair: CachePair, name: str, scope: Scope, branch: str | None, cache_axis: int, rank: int, depth: int = 0
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
        carriers = [i for i, inp in enumerate(node.input) if inp and masks.carries(inp, node_scope, past.name)]
        stacked = pair.axes is not None and pair.axes.stack is not None and depth == 0
        if stacked and axis == pair.axes.stack and len(node.input) == 2:  # type: ignore[union-attr]
            # legacy stacked layout: present = stack(key, value); judge the key half
            inner = _strip_unsqueeze(node.input[0], node_scope)
            if inner is not None:
                return _classify(masks, pair, inner, node_scope, branch, cache_axis - 1, rank - 1, depth + 1)
        if len(carriers) == 1:
            return PresentSource(
                pair, "concat", node, node_scope, branch, carriers[0], axis, cache_axis, tuple(node.input)
            )
        if not carriers:
            return PresentSource(pair, "detached", node, node_scope, branch, None, axis, cache_axis, tuple(node.input))
        return PresentSource(pair, "other", node, node_scope, branch, None, axis, cache_axis, tuple(node.input))
    feeds_past = masks.carries(tensor_name, node_scope, past.name)
    if node.domain == "com.microsoft" and node.op_type in CONTRIB_ATTENTION_OPS:
        return PresentSource(pair, "contrib" if feeds_past else "detached", node, node_scope, branch)
    if node.op_type in SCATTER_OPS and node.input and masks.carries(node.input[0], node_scope, past.name):
        return PresentSource(pair, "scatter", node, node_scope, branch)
    return PresentSource(pair, "other" if feeds_past else "detached", node, node_scope, branch)


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
    masks = view.source_masks([p.past.name for p in kv.pairs if p.past is not None])
    for pair in kv.pairs:
        if pair.past is None or pair.present is None or pair.axes is None:
            continue
        name, scope, branch = _resolve_output(view, signature, pair.present.name)
        source = _classify(masks, pair, name, scope, branch, pair.axes.cache, pair.axes.rank)
        sources.append(_with_other_pasts(masks, source, name, scope))
    return sources
