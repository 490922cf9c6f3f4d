"""I/O signature checks (ODS0xx): cache tensors that cannot be carried from step to step.

Everything here reads only the Signature: pairing of past inputs with present outputs, their
dtypes and head counts, and the contracts a client must know (merged switch, positions, fp16).
"""

from __future__ import annotations

from collections.abc import Iterator

from onnxdoctor.context import Context
from onnxdoctor.findings import Finding, Rule, Severity, register
from onnxdoctor.inspectors import inspector
from onnxdoctor.model import roles
from onnxdoctor.model.cache_flow import concats_of_past
from onnxdoctor.model.dims import format_dims
from onnxdoctor.model.graph import attribute_int
from onnxdoctor.model.signature import CachePair

NO_KV_CACHE = register(
    Rule(
        "ODS001",
        "no-kv-cache",
        Severity.INFO,
        "no past/present KV-cache tensors recognized; decoder checks skipped",
        what="No graph input or output was recognized as a past or present KV-cache tensor.",
        why="Without a cache every step recomputes the full sequence; if the model does have a cache "
        "under names onnxdoctor does not know, every cache check is silently skipped.",
        example="A text-generation export without `-with-past`: inputs input_ids, attention_mask; output logits.",
        fix="If the model should have a cache, export with the `-with-past` task (optimum) or add past/present "
        "inputs and outputs to the wrapper (torch.onnx). If it has one under other names, name the roles: "
        "`--map 'cache_in_{i}_k=past.{i}.key,...'`.",
        fix_safety="Informational; nothing to change if the model is not meant to have a cache.",
    )
)

UNRECOGNIZED_CACHE = register(
    Rule(
        "ODS005",
        "unrecognized-cache-inputs",
        Severity.WARNING,
        "float inputs shaped like a KV cache whose roles are not recognized",
        what="A model with token-id inputs has several float inputs of rank 4 or 5 that match no known cache naming "
        "(exporter default names such as past_0 for rank-4 tensors, onnx::Reshape_3, args_2).",
        why="Every cache check (axes, concat, presents) is skipped for tensors without a role, so a broken export "
        "could look clean; clients also cannot tell which output feeds which input.",
        example="torch.onnx.export without input_names: inputs input.1, onnx::Reshape_1 .. onnx::Reshape_4.",
        fix="Export with input_names / output_names (past_key_values.{i}.key, present.{i}.key, ...), or name the "
        "roles for onnxdoctor: --map 'past_0=past.0.key,past_1=past.0.value,cat_7=present.0.key,...'.",
        fix_safety="Renaming inputs needs the clients to use the new names.",
    )
)

UNPAIRED = register(
    Rule(
        "ODS002",
        "unpaired-cache-tensor",
        Severity.ERROR,
        "a past input without its present output, or the reverse",
        what="A past input of a layer has no present output to feed it at the next step, or a present output "
        "has no past input to receive it.",
        why="Decoding step n feeds each present of step n-1 back as the matching past. A missing partner means "
        "the cache of that layer is lost after step 0 (or never used), and step 1 fails or silently diverges.",
        example="Inputs past_key_values.0.key/value, outputs present.0.key only: layer 0's value cache is dropped.",
        fix="Re-export with every present listed in the output names (torch.onnx: output_names and dynamic_axes "
        "for each present.*); if the Concat producing it still exists, `onnxdoctor fix` can re-expose it.",
        fix_safety="Re-exposing an existing Concat output is safe; everything else needs a re-export.",
    )
)

DTYPE_MISMATCH = register(
    Rule(
        "ODS003",
        "cache-dtype-mismatch",
        Severity.ERROR,
        "past and present of one cache tensor differ in dtype",
        what="A present output's element type differs from the past input it is fed back into.",
        why="The client must cast every step (and usually does not): ORT rejects the feed with "
        "'Unexpected input data type', or a cast silently loses precision.",
        example="past_key_values.0.key float32, present.0.key float16 after a partial fp16 conversion.",
        fix="Convert the whole model consistently (keep_io_types=False), or keep cache I/O in one dtype.",
        fix_safety="Needs a re-export or conversion; verify with replay.",
    )
)

SHAPE_MISMATCH = register(
    Rule(
        "ODS004",
        "cache-shape-mismatch",
        Severity.ERROR,
        "past and present of one cache tensor differ in rank, heads or head_dim",
        what="A present output and its past input disagree on rank, number of KV heads or head_dim.",
        why="The next step feeds the present back as the past; with a different heads count or head_dim the "
        "feed is rejected ('Got invalid dimensions') or attention reads garbage.",
        example="past [batch, 2, past, 8] (kv heads) but present [batch, 4, total, 8] (query heads, GQA "
        "repeat_kv applied before the cache was returned).",
        fix="Return the cache before repeat_kv / head expansion; keep past and present declared with the same "
        "heads and head_dim.",
        fix_safety="Needs a code change and re-export.",
    )
)

MERGED_PROTOCOL = register(
    Rule(
        "ODS010",
        "merged-decoder-protocol",
        Severity.INFO,
        "how to drive a merged decoder's use_cache_branch and what its cache branch returns",
        what="The file is a merged decoder: one If node switched by the BOOL[1] input use_cache_branch.",
        why="Clients must feed use_cache_branch=False with dummy pasts at step 0 and True afterwards; in "
        "seq2seq merged decoders the cache branch returns placeholders for the cross-attention presents, so "
        "the encoder KV of step 0 must be kept, not replaced.",
        example="Step 1 of a Marian merged decoder fed present.0.encoder.key from step 1 (shape (0, 4, 1, 8)) "
        "fails at step 2.",
        fix="Follow the contract printed here (`onnxdoctor contract`), or export without post-processing "
        "(decoder_model.onnx + decoder_with_past_model.onnx).",
        fix_safety="Informational.",
    )
)

POSITION_IDS = register(
    Rule(
        "ODS011",
        "position-ids-required",
        Severity.INFO,
        "the model takes position_ids: how to compute them at step 0 and step n",
        what="The model has a position_ids input that the client must compute.",
        why="Wrong positions do not fail; they silently degrade the output (especially with left padding, "
        "where positions must come from the attention mask, not from arange).",
        example="Step n fed position_ids = [[0]] instead of the past length: rotary embeddings repeat position 0.",
        fix="Step 0: position_ids = cumsum(attention_mask) - 1 with padded positions set to 1; step n: the "
        "previous last position + 1 for each row.",
        fix_safety="Informational.",
    )
)

REDUCED_PRECISION = register(
    Rule(
        "ODS013",
        "reduced-precision-io",
        Severity.INFO,
        "fp16/bf16 inputs or outputs: the client must feed and read that dtype",
        what="Some inputs or outputs are float16 or bfloat16.",
        why="Clients that feed float32 get 'Unexpected input data type'; logits near 65504 overflow to inf.",
        example="past_key_values.0.key float16: a zero past built with np.zeros(..., np.float32) is rejected.",
        fix="Feed the declared dtype; export with keep_io_types=True if the client must stay in float32.",
        fix_safety="Informational.",
    )
)

_HALF_TYPES = {10: "float16", 16: "bfloat16"}


def _unpaired(ctx: Context, pair: CachePair) -> Iterator[Finding]:
    kv = ctx.signature.kv
    assert kv is not None
    if pair.past is not None and pair.present is None:
        if pair.attention == "cross" and not kv.merged:
            return  # decoder_with_past files take the encoder cache from step 0 and return none
        yield UNPAIRED.finding(
            f"input {pair.past.name} ({pair.past.role_text}) has no present output to feed it at the next step: "
            f"layer {pair.layer}'s {pair.attention}-attention {pair.part} cache is lost after each step",
            ctx.at("input", pair.past.name),
            evidence={"past": pair.past.name, "expected_present": pair.past.role_text.replace("past", "present", 1)},
            remedy={"graph_edit": "expose_present", "layer": pair.layer, "attention": pair.attention, "part": pair.part},
            fix=_expose_fix(ctx, pair),
        )
    elif pair.present is not None and pair.past is None and kv.mode not in ("no_past",) and pair.attention == "self":
        yield UNPAIRED.finding(
            f"output {pair.present.name} ({pair.present.role_text}) has no past input to receive it at the next step",
            ctx.at("output", pair.present.name),
            evidence={"present": pair.present.name, "expected_past": pair.present.role_text.replace("present", "past", 1)},
            remedy={"export_setting": "add_past_input", "layer": pair.layer, "part": pair.part},
        )


def _expose_fix(ctx: Context, pair: CachePair) -> str:
    """Where layer `pair.layer`'s lost present still lives, so the fix names that layer's node, not a pattern."""
    assert pair.past is not None and ctx.signature.kv is not None
    expected = pair.past.role_text.replace("past", "present", 1)
    pasts = frozenset(p.past.name for p in ctx.signature.kv.pairs if p.past is not None)
    concats = concats_of_past(ctx.graph, pair.past.name, pasts)
    if pair.axes is not None:
        axis, rank = pair.axes.cache, pair.axes.rank
        concats = [c for c in concats if attribute_int(c[0], "axis", 0) in (axis, axis - rank)]
    export = (
        f"Re-export with layer {pair.layer}'s {pair.part} present ({expected}) among the outputs (torch.onnx: "
        "output_names and dynamic_axes)"
    )
    if len(concats) == 1:
        node, scope, _ = concats[0]
        mend = "`onnxdoctor fix` can expose it as that output" if scope.parent is None else "it can be returned as that output"
        return f"{export}; the Concat of {pair.past.name} still exists as {scope.node_label(node)}, so {mend}."
    return f"{export}."


def _shape_mismatch(ctx: Context, pair: CachePair) -> Iterator[Finding]:
    past, present, axes = pair.past, pair.present, pair.axes
    if past is None or present is None or past.dims is None or present.dims is None or axes is None:
        return
    if len(past.dims) != len(present.dims):
        yield SHAPE_MISMATCH.finding(
            f"{present.name} has rank {len(present.dims)} but its past {past.name} has rank {len(past.dims)}",
            ctx.at("output", present.name),
            evidence={"past_dims": format_dims(past.dims), "present_dims": format_dims(present.dims)},
        )
        return
    for label, axis in (("kv heads", axes.heads), ("head_dim", axes.head_dim), ("stack", axes.stack)):
        if axis is None:
            continue
        seen, expected = present.dims[axis], past.dims[axis]
        if seen.is_static and expected.is_static and seen.value != expected.value:
            if kv_placeholder(ctx, pair, seen.value, expected.value):
                continue
            yield SHAPE_MISMATCH.finding(
                f"{present.name} has {label} {seen.value} on axis {axis} but its past {past.name} has {expected.value}",
                ctx.at("output", present.name, axis=axis),
                evidence={"observed": seen.value, "expected": expected.value, "past_dims": format_dims(past.dims), "present_dims": format_dims(present.dims)},
            )


def kv_placeholder(ctx: Context, pair: CachePair, seen: int | None, expected: int | None) -> bool:
    """Merged seq2seq decoders may declare 0-sized cross-attention placeholders; ODP304 covers those."""
    kv = ctx.signature.kv
    return bool(kv and kv.merged and pair.attention == "cross" and 0 in (seen, expected))


@inspector
def check_io_signature(ctx: Context) -> Iterator[Finding]:
    signature = ctx.signature
    kv = signature.kv
    cache_like = [
        t for t in signature.inputs
        if t.role == roles.OTHER and t.elem_type in (1, 10, 11, 16) and t.rank in (4, 5)
    ]
    has_tokens = any(t.elem_type in (6, 7) and t.rank == 2 for t in signature.inputs)
    if kv is None and has_tokens and len(cache_like) >= 2:
        names = ", ".join(t.name for t in cache_like[:4]) + (f" (+{len(cache_like) - 4} more)" if len(cache_like) > 4 else "")
        yield UNRECOGNIZED_CACHE.finding(
            f"{len(cache_like)} float inputs of rank 4-5 look like a KV cache but match no known naming ({names}); "
            "cache checks are skipped until their roles are named with --map",
            ctx.at("input", cache_like[0].name),
            evidence={"inputs": [t.name for t in cache_like], "outputs": [t.name for t in signature.outputs]},
            remedy={"export_setting": "input_names", "map_example": ",".join(f"{t.name}=past.?.key|value" for t in cache_like[:2])},
        )
    elif kv is None:
        if signature.kind != "encoder":
            yield NO_KV_CACHE.finding(
                f"{ctx.file}: no past/present KV-cache inputs or outputs recognized "
                f"({len(signature.inputs)} inputs, {len(signature.outputs)} outputs); decoder checks skipped",
                ctx.at("graph"),
                evidence={"inputs": [t.name for t in signature.inputs], "outputs": [t.name for t in signature.outputs]},
            )
    else:
        for pair in kv.pairs:
            yield from _unpaired(ctx, pair)
            if pair.past is not None and pair.present is not None and pair.past.elem_type != pair.present.elem_type:
                yield DTYPE_MISMATCH.finding(
                    f"{pair.present.name} is {pair.present.dtype} but its past {pair.past.name} is {pair.past.dtype}",
                    ctx.at("output", pair.present.name),
                    evidence={"observed": pair.present.dtype, "expected": pair.past.dtype},
                    remedy={"export_setting": "consistent_cache_dtype", "dtype": pair.past.dtype},
                )
            yield from _shape_mismatch(ctx, pair)
        if kv.merged:
            switch = signature.input(roles.USE_CACHE_BRANCH)
            cross = " Cross-attention presents from the cache branch are placeholders: keep step 0's." if kv.cross_attention else ""
            yield MERGED_PROTOCOL.finding(
                f"merged decoder (If node {signature.merged_if_node}): feed {switch.name if switch else 'use_cache_branch'}"
                f"=[False] with empty dummy pasts at step 0, [True] with the previous presents afterwards.{cross}",
                ctx.at("input", switch.name if switch else None),
                evidence={"if_node": signature.merged_if_node, "cross_attention": kv.cross_attention},
            )
    position = signature.input(roles.POSITION_IDS)
    if position is not None and kv is not None:
        yield POSITION_IDS.finding(
            f"{position.name} is required: step 0 cumsum(attention_mask) - 1 (padding -> 1), step n the previous "
            "last position + 1 per row",
            ctx.at("input", position.name),
            evidence={"dims": format_dims(position.dims)},
        )
    half = [t for t in signature.inputs + signature.outputs if t.elem_type in _HALF_TYPES]
    if half:
        names = ", ".join(f"{t.name} ({_HALF_TYPES[t.elem_type]})" for t in half[:4])
        more = f" and {len(half) - 4} more" if len(half) > 4 else ""
        yield REDUCED_PRECISION.finding(
            f"{len(half)} inputs/outputs use reduced precision: {names}{more}; feed and read that dtype",
            ctx.at(half[0].io, half[0].name),
            evidence={"tensors": {t.name: _HALF_TYPES[t.elem_type] for t in half}},
        )
