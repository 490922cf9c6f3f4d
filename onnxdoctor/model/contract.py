"""The feeding contract: what a client must feed each input at step 0 and at step n.

Derived from the Signature alone: this is the knowledge a Rust / C# / JS client needs and most
often gets wrong (empty past at step 0, mask length past + new, positions from the mask, keeping
the encoder's cross-attention cache from step 0 when a merged decoder returns placeholders).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from onnxdoctor.model import roles
from onnxdoctor.model.signature import CachePair, KVLayout, Signature, TensorSig

if TYPE_CHECKING:
    from onnxdoctor.model.export import ExportFolder


@dataclass(frozen=True)
class Feed:
    name: str
    role: str
    dtype: str
    shape: str
    value: str


@dataclass(frozen=True)
class StepContract:
    """Feeds of one step, or why this file does not run that step (`runs_in`)."""

    feeds: tuple[Feed, ...] | None
    note: str = ""

    def to_dict(self) -> dict[str, object]:
        return {
            "inputs": None if self.feeds is None else [asdict(f) for f in self.feeds],
            "note": self.note,
        }


def _cache_shape(pair: CachePair, tensor: TensorSig, length: str) -> str:
    axes = pair.axes
    if tensor.dims is None or axes is None:
        return f"[..., {length} on the cache axis, ...]"
    parts = []
    for axis, dim in enumerate(tensor.dims):
        if axis == axes.batch:
            parts.append("batch")
        elif axis == axes.cache:
            parts.append(length)
        elif axis == axes.heads:
            parts.append(f"kv_heads={dim}" if dim.is_static else str(dim))
        elif axis == axes.head_dim:
            parts.append(f"head_dim={dim}" if dim.is_static else str(dim))
        else:
            parts.append(str(dim))
    return "[" + ", ".join(parts) + "]"


def _simple_feed(tensor: TensorSig, step: int, kv: KVLayout | None) -> Feed:
    first = step == 0
    new = "prompt_len" if first else "1"
    past_len = "0" if first else "past_len"
    table: dict[str, tuple[str, str]] = {
        roles.INPUT_IDS: (f"[batch, {new}]", "prompt token ids" if first else "the token picked from the previous step's logits"),
        roles.INPUTS_EMBEDS: (f"[batch, {new}, hidden]", "embeddings of the new tokens"),
        roles.ATTENTION_MASK: (
            "[batch, prompt_len]" if first or kv is None else "[batch, past_len + 1]",
            "1 for real tokens, 0 for left padding" if first else "the previous mask with a 1 appended (covers past + new tokens)",
        ),
        roles.POSITION_IDS: (
            f"[batch, {new}]",
            "cumsum(attention_mask) - 1, padding positions set to 1 (0..prompt_len-1 without padding)"
            if first
            else "per row: the number of attended tokens so far (previous last position + 1)",
        ),
        roles.CACHE_POSITION: (f"[{new}]", "arange(0, prompt_len)" if first else f"[{past_len}] (the past length)"),
        roles.TOKEN_TYPE_IDS: (f"[batch, {new}]", "zeros"),
        roles.ENCODER_HIDDEN_STATES: ("[batch, encoder_len, hidden]", "last_hidden_state of the encoder, the same at every step"),
        roles.ENCODER_ATTENTION_MASK: ("[batch, encoder_len]", "the encoder's attention mask, the same at every step"),
        roles.USE_CACHE_BRANCH: ("[1]", "[False] (no-cache branch)" if first else "[True] (cache branch)"),
    }
    shape, value = table.get(tensor.role, ("as declared", "not recognized: feed what your exporter documents"))
    return Feed(tensor.name, tensor.role, tensor.dtype, shape, value)


def _past_feed(pair: CachePair, step: int, merged: bool, step0_file: Signature | None) -> Feed:
    past = pair.past
    assert past is not None
    present_name = pair.present.name if pair.present is not None else None
    if step == 0:
        if pair.attention == "cross" and merged:
            value = "dummy (ignored by the no-cache branch), any length; the branch computes it from encoder_hidden_states"
            length = "0"
        elif merged:
            value = "empty dummy (ignored by the no-cache branch)"
            length = "0"
        else:
            value = "empty: cache length 0, no zero-filled rows"
            length = "0"
        return Feed(past.name, past.role, past.dtype, _cache_shape(pair, past, length), value)
    if pair.attention == "cross":
        source = f"{present_name or 'the cross-attention present'} of step 0"
        if merged:
            source += " (keep it: the cache branch returns placeholders for it)"
        elif present_name is None:
            source = _step0_cross_source(pair, step0_file)
        return Feed(past.name, past.role, past.dtype, _cache_shape(pair, past, "encoder_len"), source)
    source = f"{present_name} of the previous step" if present_name else "the previous step's present (missing output!)"
    return Feed(past.name, past.role, past.dtype, _cache_shape(pair, past, "past_len"), source)


def _step0_cross_source(pair: CachePair, step0_file: Signature | None) -> str:
    """Where a decoder_with_past file's cross-attention past comes from: the step-0 file's present."""
    if step0_file is not None and step0_file.kv is not None:
        for other in step0_file.kv.pairs:
            if other.present is not None and (other.layer, other.attention, other.part) == (pair.layer, pair.attention, pair.part):
                return f"{other.present.name} of {step0_file.file} at step 0 (kept for every step)"
    return f"the layer {pair.layer} cross-attention {pair.part} returned at step 0 by the file without past inputs"


NO_CACHE_STEP0 = "no KV cache: every step recomputes the whole sequence"
NO_CACHE_STEPN = "no KV cache: run the full sequence again (step 0 contract with prompt_len = all tokens)"


def _names(pairs: list[CachePair], limit: int = 2) -> str:
    names = [p.present.name for p in pairs if p.present is not None]
    return ", ".join(names[:limit]) + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def build_contract(
    signature: Signature, step0_file: Signature | None = None, *, export: ExportFolder | None = None
) -> tuple[StepContract, StepContract]:
    """(step 0, step n) contracts for one file.

    `step0_file` is the export's file that computes the cross-attention cache at step 0; with `export`
    (every model file of the folder) it is looked up there, and a step no file can run is said so.
    """
    kv = signature.kv
    cross_source: Signature | None = step0_file
    if export is not None and kv is not None and step0_file is None:
        found = export.cross_cache_source(signature)
        cross_source = found if found is not signature else None
    if kv is None:
        feeds = tuple(_simple_feed(t, 0, None) for t in signature.inputs)
        return StepContract(feeds, NO_CACHE_STEP0), StepContract(None, NO_CACHE_STEPN)
    pairs_by_past = {p.past.name: p for p in kv.pairs if p.past is not None}
    has_cross_past = any(p.attention == "cross" and p.past is not None for p in kv.pairs)
    uncomputed_cross = export is not None and has_cross_past and not kv.merged and cross_source is None

    def feeds_for(step: int) -> tuple[Feed, ...]:
        feeds = []
        for tensor in signature.inputs:
            pair = pairs_by_past.get(tensor.name)
            if pair is not None and step > 0 and pair.attention == "cross" and uncomputed_cross:
                feeds.append(Feed(tensor.name, tensor.role, tensor.dtype, _cache_shape(pair, tensor, "encoder_len"),
                                  "this layer's cross-attention K/V computed from the encoder output at step 0: no file of this export computes it"))
            elif pair is not None:
                feeds.append(_past_feed(pair, step, kv.merged, cross_source))
            else:
                feeds.append(_simple_feed(tensor, step, kv))
        return tuple(feeds)

    if kv.mode == "no_past":
        taker = export.presents_taker(signature) if export is not None else None
        untaken = export.untaken_presents(signature) if export is not None else None
        if untaken is not None and untaken.cache_meant:
            step0 = StepContract(feeds_for(0), "no usable cache: every step recomputes the whole sequence, since no file takes its presents back")
            stepn = StepContract(
                None,
                "no cache: feed the whole prefix every step (step 0 contract with prompt_len = all tokens so far); "
                f"no file of this export takes {_names(kv.self_pairs())} back as past inputs (see ODS015)",
            )
            return step0, stepn
        step0 = StepContract(feeds_for(0), "this file computes step 0 and returns the first cache")
        if taker is not None:
            stepn = StepContract(None, f"step n runs {taker.file}, fed the presents of the previous step as its past inputs")
        else:
            stepn = StepContract(
                None,
                "step n runs the file with past inputs (optimum: decoder_with_past_model.onnx)"
                + ("; none in this folder" if untaken is not None else ""),
            )
        return step0, stepn
    if kv.mode == "past_only":
        note = "past inputs without present outputs: the cache cannot be carried to the next step"
        return StepContract(feeds_for(0), note), StepContract(feeds_for(1), note)
    if kv.mode == "with_past" and has_cross_past:
        if cross_source is not None and export is not None:
            note = f"step 0 runs {cross_source.file}, which computes the cross-attention cache from the encoder output"
        else:
            note = "step 0 runs the file without past inputs (optimum: decoder_model.onnx), which returns the cross-attention cache"
            if export is not None:
                note += "; no file of this export computes it"
        return StepContract(None, note), StepContract(feeds_for(1), "")
    note0 = "use_cache_branch False: the no-cache branch runs" if kv.merged else ""
    note_n = "use_cache_branch True: the cache branch runs" if kv.merged else ""
    return StepContract(feeds_for(0), note0), StepContract(feeds_for(1), note_n)
