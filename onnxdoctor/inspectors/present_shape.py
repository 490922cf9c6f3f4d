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
from onnxdoctor.model.cache_flow import PresentSource

NOT_CONCATENATED = register(
    Rule(
        "ODP301",
        "present-not-concatenated",
        Severity.ERROR,
        "a present output not produced by Concat(past, new) on the cache axis (e.g. wired to the new step's K/V only)",
        what="Nothing of the past input's values flows into its present output: the present holds only what "
        "this step computed.",
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


def _check_self(ctx: Context, source: PresentSource) -> Iterator[Finding]:
    pair = source.pair
    assert pair.past is not None and pair.present is not None
    past, present = pair.past.name, pair.present.name
    if source.kind == "detached" and source.other_pasts:
        others = ", ".join(source.other_pasts)
        yield NOT_CONCATENATED.finding(
            f"{present} is built from {others}, not from its own past {past}: the present outputs are probably "
            "swapped (key/value or layers), so every client feeds the wrong cache back",
            ctx.at("output", present),
            evidence={"present": present, "past": past, "built_from": list(source.other_pasts)},
            remedy={"graph_edit": "fix_output_names", "present": present, "built_from": list(source.other_pasts)},
            fix="Name each output after the tensor it really holds (output_names order in torch.onnx.export); "
            "check that present.{i}.key is Concat(past_key_values.{i}.key, new key).",
        )
        return
    if source.kind == "detached":
        made_by = f"{source.node_label}" if source.node is not None else "a value that does not depend on the past"
        yield NOT_CONCATENATED.finding(
            f"{present} does not contain {past}: it is made by {made_by}{_where(source)} from this step's values "
            "only, so the next step loses the cache",
            ctx.at("output", present),
            evidence={"present": present, "past": past, "producer": made_by, "expected": f"Concat({past}, new) on axis {pair.axes.cache if pair.axes else '?'}"},
            remedy={"graph_edit": "rewire_present_to_concat", "present": present, "past": past},
        )
        return
    if source.kind != "concat" or source.node is None:
        return
    node_name = source.node.name or source.node_label
    if source.past_input_index not in (None, 0) and len(source.inputs) == 2:
        yield CONCAT_ORDER.finding(
            f"{present} is Concat({source.inputs[0]}, {source.inputs[1]}) at node {source.node_label}{_where(source)}: "
            f"the past ({past}) is the second input, so new tokens come before the cache",
            ctx.at("node", node_name),
            evidence={"present": present, "concat_inputs": list(source.inputs), "past_input_index": source.past_input_index, "graph": source.scope.path if source.scope else None},
            remedy={"graph_edit": "swap_concat_inputs", "node": node_name, "present": present},
        )
    if source.concat_axis is not None and source.expected_axis is not None and source.concat_axis != source.expected_axis:
        yield CONCAT_AXIS.finding(
            f"{present} is built by {source.node_label}{_where(source)} on axis {source.concat_axis}, "
            f"but the cache-length axis is {source.expected_axis}",
            ctx.at("node", node_name, axis=source.concat_axis),
            evidence={"present": present, "observed_axis": source.concat_axis, "expected_axis": source.expected_axis, "graph": source.scope.path if source.scope else None},
            remedy={"code_change": "concat_on_cache_axis", "node": node_name, "axis": source.expected_axis},
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
        yield from _check_self(ctx, source)
    if placeholders:
        names = [s.pair.present.name for s in placeholders if s.pair.present]
        shape = _placeholder_shape(placeholders[0])
        yield CROSS_PLACEHOLDER.finding(
            f"the cache branch returns constant placeholders{f' of shape {shape}' if shape else ''} for "
            f"{len(names)} cross-attention presents ({names[0]}, ...): keep the ones returned at step 0 and feed "
            "those at every later step",
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
