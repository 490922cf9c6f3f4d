"""Dynamic-axis auditor (ODA1xx): axes that must vary while decoding but were fixed at export.

A decoder's batch, new-token count, cache length and encoder length change between calls; an export
without `dynamic_axes` (torch.onnx) or with optimum's `--no-dynamic-axes` freezes them to the sizes
of the example inputs, and step 1 dies with `Got invalid dimensions for input: ... Expected: 5`.
One finding per rule and file lists every frozen axis, with the `dynamic_axes` that fixes them all.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from onnxdoctor.context import Context
from onnxdoctor.findings import Finding, Rule, Severity, register
from onnxdoctor.inspectors import inspector
from onnxdoctor.model import roles
from onnxdoctor.model.signature import TensorSig, axis_roles

DIM_NAMES = {
    "batch": "batch_size",
    "sequence": "sequence_length",
    "total": "total_sequence_length",
    "cache": "past_sequence_length",
    "encoder": "encoder_sequence_length",
}

_EXPORT_FIX = (
    "torch.onnx.export: give dynamic_axes for every input and output (see remedy), or export with "
    "dynamo=True and dynamic_shapes; optimum: do not pass --no-dynamic-axes (no_dynamic_axes=True)."
)

STATIC_BATCH = register(
    Rule(
        "ODA101",
        "static-batch-axis",
        Severity.WARNING,
        "a batch dim fixed to a number on inputs/outputs",
        what="The batch axis of inputs or outputs is a fixed number instead of a symbol.",
        why="The model only runs with the batch size it was traced with; batched or beam-search clients get "
        "'Got invalid dimensions for input: input_ids ... index: 0'.",
        example="input_ids [1, sequence_length] after torch.onnx.export without dynamic_axes={'input_ids': {0: 'batch'}}.",
        fix=_EXPORT_FIX,
        fix_safety="Safe when no constant in the graph depends on the batch size (see ODR201); verify with replay --batch 2.",
    )
)

STATIC_SEQUENCE = register(
    Rule(
        "ODA102",
        "static-sequence-axis",
        Severity.ERROR,
        "input_ids / attention_mask / position_ids / logits sequence dim fixed",
        what="The new-token axis of input_ids, position_ids or logits, or the length axis of attention_mask, is "
        "a fixed number.",
        why="Step 0 feeds the prompt, step n one token, and the mask grows by one every step: a fixed length "
        "fits at most one of those calls.",
        example="input_ids [1, 3] and attention_mask [1, 8] (traced with a 3-token prompt and a 5-token dummy past).",
        fix=_EXPORT_FIX,
        fix_safety="Safe when no Reshape bakes the same length (see ODR201); verify with replay.",
    )
)

STATIC_CACHE = register(
    Rule(
        "ODA103",
        "static-cache-axis",
        Severity.ERROR,
        "past or present cache-length dim fixed (or past fixed while present is not)",
        what="The cache-length axis of a past input or present output is a fixed number.",
        why="The cache is empty at step 0 and grows by the new tokens every step: a fixed past length rejects "
        "both ('Got invalid dimensions for input: past_key_values.0.key ... index: 2 Got: 0 Expected: 5').",
        example="past_key_values.0.key [1, 2, 5, 8] because the export used a 5-token dummy past without dynamic_axes.",
        fix=_EXPORT_FIX,
        fix_safety="Needs a re-export; verify with replay.",
    )
)

UNLINKED_CACHE = register(
    Rule(
        "ODA104",
        "unlinked-cache-length",
        Severity.ERROR,
        "present length not derivable from past length + new tokens",
        what="The declared cache length of a present is not past length + new tokens: it is the new tokens "
        "alone, or exactly the past length.",
        why="A present of length `new` means the cache is not carried (see ODP301); a present declared with the "
        "past's length misleads clients that allocate outputs from the declared shape, and shape inference.",
        example="present.0.key [batch, 2, sequence_length, 8] while past_key_values.0.key is [batch, 2, past_sequence_length, 8].",
        fix="Return Concat(past, new) and name its axis so that it reads as past + new "
        "(torch.onnx dynamic_axes: use a separate name such as 'total_sequence_length' for presents).",
        fix_safety="Renaming a declared dim is safe; rewiring a present needs replay to confirm.",
    )
)

STATIC_ENCODER = register(
    Rule(
        "ODA105",
        "static-encoder-axis",
        Severity.WARNING,
        "encoder sequence dim fixed in a seq2seq decoder",
        what="The encoder-length axis of encoder_hidden_states, encoder_attention_mask or a cross-attention "
        "cache is a fixed number.",
        why="Every source sentence must then be padded to exactly that length; other lengths are rejected "
        "('Got invalid dimensions for input: encoder_hidden_states ... index: 1').",
        example="encoder_hidden_states [1, 7, 512] after tracing with a 7-token source sentence.",
        fix=_EXPORT_FIX,
        fix_safety="Needs a re-export; verify with replay.",
    )
)


@dataclass(frozen=True)
class FrozenAxis:
    tensor: TensorSig
    axis: int
    meaning: str  # batch | sequence | total | cache | encoder
    value: int


def frozen_axes(ctx: Context) -> list[FrozenAxis]:
    """Every role axis of the signature that is a fixed number (shared with the Reshape tracer)."""
    signature = ctx.signature
    result = []
    for tensor in signature.inputs + signature.outputs:
        for axis, meaning in axis_roles(signature, tensor).items():
            dim = tensor.dims[axis] if tensor.dims is not None else None
            if dim is not None and dim.is_static:
                assert dim.value is not None
                result.append(FrozenAxis(tensor, axis, meaning, dim.value))
    return result


def export_time_sizes(frozen: list[FrozenAxis]) -> dict[str, int]:
    """The example-input sizes the export was traced with, as far as frozen axes reveal them."""
    sizes: dict[str, int] = {}
    for item in frozen:
        if item.meaning in ("batch", "sequence", "cache", "encoder") and item.tensor.io == "input":
            sizes.setdefault(item.meaning, item.value)
    return sizes


def _remedy(items: list[FrozenAxis]) -> dict[str, object]:
    axes: dict[str, dict[int, str]] = {}
    for item in items:
        axes.setdefault(item.tensor.name, {})[item.axis] = DIM_NAMES[item.meaning]
    return {"export_setting": "dynamic_axes", "dynamic_axes": axes, "optimum": "drop --no-dynamic-axes"}


def _summary(items: list[FrozenAxis]) -> str:
    shown = ", ".join(f"{i.tensor.io} {i.tensor.name} axis {i.axis} = {i.value}" for i in items[:3])
    return shown + (f" (+{len(items) - 3} more)" if len(items) > 3 else "")


def _grouped(ctx: Context, rule: Rule, items: list[FrozenAxis], what: str, severity: Severity | None = None) -> Finding:
    first = items[0]
    sizes = export_time_sizes(frozen_axes(ctx))
    traced = ", ".join(f"{k}={v}" for k, v in sizes.items())
    return rule.finding(
        f"{what} fixed: {_summary(items)}" + (f"; the export was traced with {traced}" if traced else ""),
        ctx.at(first.tensor.io, first.tensor.name, axis=first.axis),
        evidence={
            "frozen": [{"tensor": i.tensor.name, "axis": i.axis, "role": i.meaning, "value": i.value} for i in items],
            "export_time_sizes": sizes,
            "expected": "a symbolic dim",
        },
        remedy=_remedy(items),
        severity=severity,
    )


def _declared_only(ctx: Context, item: FrozenAxis) -> bool:
    """A fixed output axis whose input counterpart is dynamic: only the declaration is wrong."""
    if item.tensor.io != "output" or item.meaning != "sequence":
        return False
    ids = ctx.signature.input(roles.INPUT_IDS) or ctx.signature.input(roles.INPUTS_EMBEDS)
    return ids is not None and ids.dims is not None and len(ids.dims) > 1 and not ids.dims[1].is_static


def _unlinked(ctx: Context) -> Iterator[Finding]:
    kv = ctx.signature.kv
    ids = ctx.signature.input(roles.INPUT_IDS) or ctx.signature.input(roles.INPUTS_EMBEDS)
    new_tokens = ids.dims[1].linear if ids is not None and ids.dims is not None and len(ids.dims) > 1 else None
    assert kv is not None
    for pair in kv.self_pairs():
        if pair.past is None or pair.present is None or pair.axes is None:
            continue
        if pair.past.dims is None or pair.present.dims is None or len(pair.present.dims) != pair.axes.rank:
            continue
        past_dim, present_dim = pair.past.dims[pair.axes.cache], pair.present.dims[pair.axes.cache]
        past_len, present_len = past_dim.linear, present_dim.linear
        if past_dim.is_static or present_dim.is_static or past_len is None or present_len is None:
            continue  # fixed lengths are ODA103's
        source = ctx.present_sources.get(pair.present.name)
        if present_len == past_len and (source is None or source.kind not in ("scatter", "contrib")):
            yield UNLINKED_CACHE.finding(
                f"{pair.present.name} declares cache length {present_dim} on axis {pair.axes.cache}, the same as "
                f"{pair.past.name}: a present must be past + new tokens long",
                ctx.at("output", pair.present.name, axis=pair.axes.cache),
                evidence={"observed": str(present_dim), "expected": f"{past_dim} + new tokens"},
                remedy={"export_setting": "dynamic_axes", "dynamic_axes": {pair.present.name: {pair.axes.cache: "total_sequence_length"}}},
                severity=Severity.WARNING,
            )
        elif new_tokens is not None and present_len == new_tokens and not (present_len.symbols & past_len.symbols):
            yield UNLINKED_CACHE.finding(
                f"{pair.present.name} declares cache length {present_dim} on axis {pair.axes.cache}: the new tokens "
                f"only, without the past ({past_dim})",
                ctx.at("output", pair.present.name, axis=pair.axes.cache),
                evidence={"observed": str(present_dim), "expected": f"{past_dim} + {ids.dims[1] if ids and ids.dims else 'new'}"},
                remedy={"graph_edit": "rewire_present_to_concat", "present": pair.present.name},
            )


@inspector
def check_dynamic_axes(ctx: Context) -> Iterator[Finding]:
    signature = ctx.signature
    kv = signature.kv
    if signature.kind != "decoder":
        return
    frozen = frozen_axes(ctx)
    grows = kv is not None and kv.mode in ("with_past", "merged", "past_only")
    batch = [f for f in frozen if f.meaning == "batch"]
    if batch and not ctx.static_cache:  # a preallocated cache fixes the batch by design
        yield _grouped(ctx, STATIC_BATCH, batch, "the batch axis is")
    sequence = [f for f in frozen if f.meaning in ("sequence", "total") and f.tensor.cache is None]
    real = [f for f in sequence if not _declared_only(ctx, f)]
    if real:
        yield _grouped(ctx, STATIC_SEQUENCE, real, "the sequence axis is", None if grows else Severity.WARNING)
    # logits of the last token only ([batch, 1, vocab], genai's prune_lm_head) are a design, not a frozen axis
    declared = [f for f in sequence if _declared_only(ctx, f) and not (f.tensor.role == roles.LOGITS and f.value == 1)]
    if declared:
        yield _grouped(ctx, STATIC_SEQUENCE, declared, "an output's sequence axis is declared", Severity.WARNING)
    cache = [f for f in frozen if f.meaning in ("cache", "total") and f.tensor.cache is not None]
    if cache and grows and not ctx.static_cache:
        yield _grouped(ctx, STATIC_CACHE, cache, "the cache-length axis is")
    encoder = [f for f in frozen if f.meaning == "encoder"]
    if encoder:
        yield _grouped(ctx, STATIC_ENCODER, encoder, "the encoder-length axis is")
    if kv is not None and kv.mode in ("with_past", "merged"):
        yield from _unlinked(ctx)
