"""Present-shape checker (ODP3xx): every present must be Concat(past, new) on the cache axis.

Reads how each present is built (model/cache_flow.py). Attention ops of onnxruntime that take the
past and return the present themselves (GroupQueryAttention, MultiHeadAttention, ...) and
static-cache scatter updates are understood as correct, not flagged.
"""

from __future__ import annotations

from collections.abc import Iterator

from onnxdoctor.context import Context
from onnxdoctor.findings import Finding, Rule, Severity, register
from onnxdoctor.inspectors import inspector
from onnxdoctor.model.cache_flow import PresentSource, concats_of_past
from onnxdoctor.model.graph import attribute_int
from onnxdoctor.model.signature import CachePair

NOT_CONCATENATED = register(
    Rule(
        "ODP301",
        "present-not-concatenated",
        Severity.ERROR,
        "a present output not produced by Concat(past, new) on the cache axis (e.g. wired to the new step's K/V only)",
        what="The present is not Concat(its own past, new): nothing of the past input's values flows into it (it "
        "holds only what this step computed), or it extends another cache tensor (another layer's past, or the value "
        "past for a key present): the outputs are swapped. A past that reaches a later layer's new K/V through the "
        "hidden states is normal and does not count.",
        why="The next step receives a cache of length `new` instead of `past + new`: attention forgets every "
        "earlier token. Nothing fails at step 1; from step 2 on, outputs are silently wrong or a later Reshape "
        "or mask fails.",
        example="present.0.key wired to the rotary-embedded new key instead of the Concat that appends it to "
        "past_key_values.0.key.",
        fix="Return the concatenated cache (in the model code, the tensor after torch.cat((past_key, key), dim=-2)); "
        "if that Concat still exists in the graph, rewire the output to it.",
        fix_safety="Rewiring to an existing Concat(past, new) is safe when replay then matches uncached decoding.",
    )
)

CONCAT_ORDER = register(
    Rule(
        "ODP302",
        "present-concat-order",
        Severity.ERROR,
        "Concat(new, past) instead of Concat(past, new)",
        what="The present is a Concat whose first input is this step's K/V and whose second is the past.",
        why="Cache positions no longer match token positions: with one token per step the error hides behind "
        "symmetric attention, with chunked decoding, padding or relative/rotary positions the output is wrong.",
        example="Concat(new_key, past_key_values.0.key, axis=2) -> present.0.key.",
        fix="Concatenate the past first: torch.cat((past_key, key), dim=-2).",
        fix_safety="Swapping the two Concat inputs is safe; verify with replay --chunk 2.",
    )
)

CONCAT_AXIS = register(
    Rule(
        "ODP303",
        "present-concat-axis",
        Severity.ERROR,
        "the concat axis is not the cache-length axis",
        what="The Concat that builds a present joins past and new on an axis other than the cache-length axis.",
        why="The cache grows in heads or head_dim instead of length: the next step's feed has the wrong shape "
        "('Got invalid dimensions') or attention reads mixed tensors.",
        example="Concat(past_key, key, axis=3) on [batch, heads, seq, head_dim]: head_dim doubles each step.",
        fix="Concatenate on the sequence axis of the cache layout (dim=-2 for [batch, heads, seq, head_dim]).",
        fix_safety="Needs a code change and re-export.",
    )
)

CROSS_PLACEHOLDER = register(
    Rule(
        "ODP304",
        "cross-attention-placeholder",
        Severity.INFO,
        "a merged decoder's cache branch returns constant placeholders for cross-attention presents",
        what="In the cache branch of a merged seq2seq decoder, the cross-attention presents are constants "
        "(e.g. shape (0, heads, 1, head_dim)), not the encoder's K/V.",
        why="This is how optimum merges decoders: the encoder K/V never change after step 0. A client that "
        "feeds these placeholders back as past_key_values.*.encoder.* fails one step later.",
        example="present.0.encoder.key has shape (0, 8, 1, 64) at step 1; feeding it at step 2 fails.",
        fix="Keep the cross-attention presents returned at step 0 and feed those at every later step.",
        fix_safety="Informational; the model is correct.",
    )
)


def _where(source: PresentSource) -> str:
    return f" (inside {source.branch})" if source.branch else ""


def _part(pair: CachePair) -> str:
    return "key+value" if pair.part in ("kv", "stacked") else pair.part


def _cache_of(pair: CachePair) -> str:
    """"layer 1's key cache": how a message names one cache tensor."""
    part = _part(pair)
    kind = "cross-attention " if pair.attention == "cross" else ""
    return f"layer {pair.layer}'s {kind}{part} cache"


def _torch_dim(pair: CachePair, axis: int) -> str:
    rank = pair.axes.rank if pair.axes else 4
    return f"dim={axis - rank}" if axis < rank else f"dim={axis}"


def _pair_of_past(ctx: Context, past: str) -> CachePair | None:
    kv = ctx.signature.kv
    return next((p for p in kv.pairs if p.past is not None and p.past.name == past), None) if kv else None


def _swap_kind(pair: CachePair, other: CachePair | None) -> str:
    if other is None:
        return "outputs"
    if other.layer == pair.layer:
        return f"{_part(pair)} and {_part(other)} of layer {pair.layer}"
    if other.part == pair.part:
        return f"the {_part(pair)} caches of layers {pair.layer} and {other.layer}"
    return f"layer {pair.layer}'s {_part(pair)} and layer {other.layer}'s {_part(other)}"


def _existing_concat(ctx: Context, source: PresentSource) -> tuple[str, int] | None:
    """The Concat of this pair's own past on the cache axis that still exists in the graph: (node label, axis)."""
    pair = source.pair
    kv = ctx.signature.kv
    if pair.past is None or pair.axes is None or kv is None:
        return None
    pasts = frozenset(p.past.name for p in kv.pairs if p.past is not None)
    for node, scope, _ in concats_of_past(ctx.graph, pair.past.name, pasts):
        axis = attribute_int(node, "axis", 0)
        axis = axis + pair.axes.rank if axis < 0 else axis
        if axis == pair.axes.cache:
            return scope.node_label(node), axis
    return None


def _check_swapped(ctx: Context, source: PresentSource, sources: dict[str, PresentSource]) -> Iterator[Finding]:
    pair = source.pair
    assert pair.past is not None and pair.present is not None
    past, present = pair.past.name, pair.present.name
    others = ", ".join(source.other_pasts)
    other = _pair_of_past(ctx, source.other_pasts[0]) if len(source.other_pasts) == 1 else None
    holder = next((s.pair.present.name for s in sources.values() if s.kind == "swapped" and past in s.other_pasts and s.pair.present), None)
    what = f"{_cache_of(other)} ({others})" if other is not None else others
    built = f"Concat({', '.join(source.inputs)}) at node {source.node_label}" if source.node is not None and source.node.op_type == "Concat" else f"returned by {source.node_label}"
    holder_text = f"; the output built from {past} is named {holder}" if holder else ""
    yield NOT_CONCATENATED.finding(
        f"{present} ({_cache_of(pair)}) is {built}{_where(source)}: it extends {what}, not its own past "
        f"{past}{holder_text}. The present outputs are swapped ({_swap_kind(pair, other)}), so a client feeding "
        f"{present} back as {past} gives layer {pair.layer} the wrong cache",
        ctx.at("output", present),
        evidence={"present": present, "past": past, "layer": pair.layer, "built_from": list(source.other_pasts), "node": source.node_label, "holds_own_past": holder},
        remedy={"graph_edit": "fix_output_names", "present": present, "built_from": list(source.other_pasts), "swap_with": holder},
        fix=(
            f"Swap the names {present} and {holder}" if holder else f"Rename {present} after the cache it holds"
        )
        + " (the output_names order in torch.onnx.export, or the order the model returns its cache in): "
        f"{present} must be the Concat of {past} and layer {pair.layer}'s new {_part(pair)}.",
    )


def _check_self(ctx: Context, source: PresentSource, sources: dict[str, PresentSource]) -> Iterator[Finding]:
    pair = source.pair
    assert pair.past is not None and pair.present is not None and pair.axes is not None
    past, present = pair.past.name, pair.present.name
    layer = pair.layer
    if source.kind == "swapped":
        yield from _check_swapped(ctx, source, sources)
        return
    if source.kind == "detached":
        made_by = f"{source.node_label}" if source.node is not None else "a value that does not depend on the past"
        existing = _existing_concat(ctx, source)
        expected = f"Concat({past}, new) on axis {pair.axes.cache}"
        if existing is not None:
            fix = (
                f"Rewire {present} to the output of {existing[0]}, the Concat of {past} and layer {layer}'s new "
                f"{_part(pair)} on axis {existing[1]} that layer {layer}'s attention already reads; in the model code, "
                f"return the tensor after torch.cat((past_{pair.part}, {pair.part}), {_torch_dim(pair, pair.axes.cache)}) "
                f"from layer {layer}'s attention."
            )
        else:
            fix = (
                f"Make layer {layer}'s attention return torch.cat((past_{pair.part}, {pair.part}), "
                f"{_torch_dim(pair, pair.axes.cache)}) as {present} (past {past} first, then this step's {pair.part}) "
                "and re-export."
            )
        yield NOT_CONCATENATED.finding(
            f"{present} ({_cache_of(pair)}) does not contain {past}: it is made by {made_by}{_where(source)}, "
            f"layer {layer}'s {_part(pair)} of this step alone instead of {expected}, so the next step loses "
            f"layer {layer}'s cache",
            ctx.at("output", present),
            evidence={"present": present, "past": past, "layer": layer, "producer": made_by, "expected": expected, "existing_concat": existing[0] if existing else None},
            remedy={"graph_edit": "rewire_present_to_concat", "present": present, "past": past, "layer": layer, "concat": existing[0] if existing else None},
            fix=fix,
        )
        return
    if source.kind != "concat" or source.node is None:
        return
    node_name = source.node.name or source.node_label
    if source.past_input_index not in (None, 0) and len(source.inputs) == 2:
        yield CONCAT_ORDER.finding(
            f"{present} ({_cache_of(pair)}) is Concat({source.inputs[0]}, {source.inputs[1]}) at node "
            f"{source.node_label}{_where(source)}: the past ({past}) is the second input, so layer {layer}'s new "
            "tokens come before its cache",
            ctx.at("node", node_name),
            evidence={"present": present, "layer": layer, "concat_inputs": list(source.inputs), "past_input_index": source.past_input_index, "graph": source.scope.path if source.scope else None},
            remedy={"graph_edit": "swap_concat_inputs", "node": node_name, "present": present},
            fix=f"Swap the two inputs of {source.node_label} so {past} comes first"
            f"{' (`onnxdoctor fix` does this edit)' if source.scope is not None and source.scope.parent is None else ''}; in the model code, torch.cat((past_{pair.part}, {pair.part}), {_torch_dim(pair, pair.axes.cache)}) "
            f"in layer {layer}'s attention.",
        )
    if source.concat_axis is not None and source.expected_axis is not None and source.concat_axis != source.expected_axis:
        yield CONCAT_AXIS.finding(
            f"{present} ({_cache_of(pair)}) is built by {source.node_label}{_where(source)} joining {past} and the new "
            f"{_part(pair)} on axis {source.concat_axis}, but the cache-length axis is {source.expected_axis}: "
            f"layer {layer}'s cache grows on the wrong axis",
            ctx.at("node", node_name, axis=source.concat_axis),
            evidence={"present": present, "layer": layer, "observed_axis": source.concat_axis, "expected_axis": source.expected_axis, "graph": source.scope.path if source.scope else None},
            remedy={"code_change": "concat_on_cache_axis", "node": node_name, "axis": source.expected_axis},
            fix=f"Concatenate {past} and layer {layer}'s new {_part(pair)} on axis {source.expected_axis} "
            f"(torch.cat((past_{pair.part}, {pair.part}), {_torch_dim(pair, source.expected_axis)}) in layer {layer}'s "
            "attention) and re-export.",
        )


@inspector
def check_present_shapes(ctx: Context) -> Iterator[Finding]:
    kv = ctx.signature.kv
    if kv is None or kv.mode not in ("with_past", "merged"):
        return
    placeholders: list[PresentSource] = []
    for source in ctx.present_sources.values():
        if source.pair.attention == "cross":
            if kv.merged and source.kind == "constant":
                placeholders.append(source)
            continue
        yield from _check_self(ctx, source, ctx.present_sources)
    if placeholders:
        names = [s.pair.present.name for s in placeholders if s.pair.present]
        shape = _placeholder_shape(placeholders[0])
        layers = sorted({s.pair.layer for s in placeholders})
        yield CROSS_PLACEHOLDER.finding(
            f"the cache branch returns constant placeholders{f' of shape {shape}' if shape else ''} for "
            f"{len(names)} cross-attention presents of layers {', '.join(map(str, layers))} ({names[0]}, ...): keep "
            "the ones returned at step 0 and feed those at every later step",
            ctx.at("output", names[0]),
            evidence={"presents": names, "placeholder_shape": shape, "branch": placeholders[0].branch},
        )


def _placeholder_shape(source: PresentSource) -> list[int] | None:
    if source.scope is None:
        return None
    if source.node is not None:
        for attribute in source.node.attribute:
            if attribute.name == "value":
                return [int(d) for d in attribute.t.dims]
    return None
