"""The reference decoding protocol: which file runs each step and exactly what it is fed.

Built from the Signature alone (the same knowledge a client needs):
- decoder-only `model.onnx`: empty past (cache length 0) at step 0, mask = past + new, positions
  from the mask (left padding respected), presents fed back;
- seq2seq: the encoder first; `decoder_model` at step 0 then `decoder_with_past_model`, or the
  merged decoder with use_cache_branch False (empty dummies) then True, the cross-attention cache
  of step 0 kept for every later step;
- a with-past file whose cross-attention cache has no step-0 file: the encoder cache is
  synthesized (seeded random) and fed at every step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from onnxdoctor.engine import InspectReport
from onnxdoctor.errors import UsageError
from onnxdoctor.model import roles
from onnxdoctor.model.signature import CachePair, Signature, TensorSig
from onnxdoctor.replay.runtime import numpy_dtype


@dataclass
class Scenario:
    """Files that play each part of one decoding run."""

    name: str  # merged | split | single | recompute
    step0: Signature
    stepn: Signature | None  # None: no cache, every step recomputes the sequence
    uncached: Signature | None  # the reference for cached == uncached
    encoder: Signature | None
    paths: dict[str, Path] = field(default_factory=dict)  # signature.file -> path

    def path(self, signature: Signature) -> Path:
        return self.paths[signature.file]

    def describe(self) -> str:
        if self.stepn is None:
            return f"{self.step0.file} (no cache: every step recomputes the sequence)"
        if self.name == "merged":
            return f"{self.step0.file} (merged: use_cache_branch False at step 0, True after)"
        if self.name == "split":
            return f"{self.step0.file} at step 0, {self.stepn.file} after"
        return self.step0.file


def plan_scenarios(report: InspectReport) -> list[Scenario]:
    """Every decoding run the export supports (a T5 folder has a merged and a split one)."""
    by_role: dict[str, Signature] = {}
    paths: dict[str, Path] = {}
    decoders: list[Signature] = []
    for file_report in report.files:
        sig = file_report.signature
        paths[sig.file] = file_report.model_file.path
        by_role.setdefault(sig.file_role, sig)
        if sig.kind == "decoder":
            decoders.append(sig)
    encoder = next((r.signature for r in report.files if r.signature.kind == "encoder"), None)
    if not decoders:
        names = ", ".join(r.signature.file for r in report.files)
        raise UsageError(
            f"no decoder to replay in {report.path} (files: {names}): no token input, logits or KV cache recognized; "
            "if it is a decoder, name its inputs and outputs with --map (`onnxdoctor inspect` lists them)"
        )
    no_past = next((s for s in decoders if s.kv is not None and s.kv.mode == "no_past"), None)
    scenarios: list[Scenario] = []
    for sig in decoders:
        kv = sig.kv
        if kv is None:
            scenarios.append(Scenario("recompute", sig, None, None, encoder, paths))
        elif kv.mode == "merged":
            scenarios.append(Scenario("merged", sig, sig, sig, encoder, paths))
        elif kv.mode in ("with_past", "past_only"):
            has_cross_past = any(p.attention == "cross" and p.past is not None for p in kv.pairs)
            if has_cross_past and no_past is not None:
                scenarios.append(Scenario("split", no_past, sig, no_past, encoder, paths))
            else:
                scenarios.append(Scenario("single", sig, sig, sig, encoder, paths))
    if not scenarios and no_past is not None:
        scenarios.append(Scenario("recompute", no_past, None, None, encoder, paths))
    return scenarios


@dataclass
class Sizes:
    batch: int
    prompt_len: int
    encoder_len: int
    vocab: int


def vocab_size(signature: Signature, config_vocab: int | None) -> int:
    """From the logits' last dim, else the export's config.json, else a safe small id range."""
    logits = signature.output(roles.LOGITS)
    if logits is not None and logits.dims and logits.dims[-1].is_static:
        return int(logits.dims[-1].value or 2)
    return config_vocab or 2


@dataclass(frozen=True)
class Mismatch:
    """One way a fed array disagrees with its declared input."""

    kind: str  # dtype | rank | dim
    axis: int | None
    observed: Any
    expected: Any


def declaration_mismatches(tensor: TensorSig, value: np.ndarray) -> list[Mismatch]:
    """The dtype, else the rank, else every fixed dim that `value` gets wrong (what ORT rejects, all at once)."""
    if tensor.elem_type:
        expected = numpy_dtype(tensor.elem_type)
        if value.dtype != expected:
            return [Mismatch("dtype", None, str(value.dtype), str(expected))]
    if tensor.dims is None:
        return []
    if len(tensor.dims) != value.ndim:
        return [Mismatch("rank", None, list(value.shape), [str(d) for d in tensor.dims])]
    return [
        Mismatch("dim", axis, int(value.shape[axis]), int(dim.value or 0))
        for axis, dim in enumerate(tensor.dims)
        if dim.is_static and dim.value != value.shape[axis]
    ]


class FeedError(UsageError):
    """The reference protocol cannot be built for this signature (an input with no known role)."""


def _int_array(values: np.ndarray, tensor: TensorSig) -> np.ndarray:
    return values.astype(numpy_dtype(tensor.elem_type)) if tensor.elem_type else values.astype(np.int64)


def positions_from_mask(mask: np.ndarray) -> np.ndarray:
    """HF convention: cumsum(mask) - 1, padding positions set to 1."""
    positions = np.cumsum(mask, axis=1) - 1
    return np.where(mask == 0, 1, positions).astype(np.int64)


def cache_shape(pair: CachePair, tensor: TensorSig, batch: int, length: int) -> tuple[int, ...]:
    """A concrete cache shape: batch and length placed on their axes, static dims kept."""
    axes = pair.axes
    if axes is None or tensor.dims is None:
        raise FeedError(f"cannot build {tensor.name}: its rank or cache layout is unknown")
    shape = []
    for axis, dim in enumerate(tensor.dims):
        if axis == axes.batch:
            shape.append(batch)
        elif axis == axes.cache:
            shape.append(length)
        elif axis == axes.stack:
            shape.append(2)
        elif dim.is_static:
            shape.append(int(dim.value or 0))
        else:
            raise FeedError(
                f"cannot build {tensor.name}: axis {axis} ({dim}) is symbolic and is neither batch nor cache length"
            )
    return tuple(shape)


@dataclass
class DecodeState:
    """Tokens and mask so far, per row; what the reference client keeps between steps."""

    tokens: np.ndarray  # [batch, total]
    mask: np.ndarray  # [batch, total]
    encoder_hidden: np.ndarray | None = None
    encoder_mask: np.ndarray | None = None
    cross_cache: dict[str, np.ndarray] = field(default_factory=dict)  # past name -> array


EMBEDDING_SEED = 1234


def token_embeddings(tokens: np.ndarray, hidden: int, dtype: np.dtype[Any]) -> np.ndarray:
    """A fixed random embedding per token id, for models fed inputs_embeds (vision-language decoders).

    Row i of the table only depends on i (numpy fills it row by row), so a token gets the same
    vector in the cached run, the uncached reference and the padded-row solo run.
    """
    table = np.random.default_rng(EMBEDDING_SEED).standard_normal((int(tokens.max()) + 1, hidden))
    return (table[tokens] * 0.1).astype(dtype)


def build_feeds(
    signature: Signature,
    state: DecodeState,
    new_tokens: int,
    *,
    pasts: dict[str, np.ndarray] | None,
    use_cache: bool,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Feeds for one call: the last `new_tokens` of `state` are new, the rest are in `pasts`."""
    batch, total = state.tokens.shape
    past_len = total - new_tokens
    kv = signature.kv
    pairs = {p.past.name: p for p in kv.pairs if p.past is not None} if kv else {}
    feeds: dict[str, np.ndarray] = {}
    for tensor in signature.inputs:
        role = tensor.role
        if role == roles.INPUT_IDS:
            feeds[tensor.name] = _int_array(state.tokens[:, past_len:], tensor)
        elif role == roles.ATTENTION_MASK:
            feeds[tensor.name] = _int_array(state.mask, tensor)  # covers past + new tokens
        elif role == roles.POSITION_IDS:
            positions = positions_from_mask(state.mask)[:, past_len:]
            if tensor.rank == 3 and tensor.dims is not None and tensor.dims[0].is_static:
                # multimodal rope [sections, batch, seq]: text-only positions are the same in every section
                positions = np.broadcast_to(positions[None], (int(tensor.dims[0].value or 1), *positions.shape))
            feeds[tensor.name] = _int_array(np.ascontiguousarray(positions), tensor)
        elif role == roles.INPUTS_EMBEDS:
            if tensor.dims is None or len(tensor.dims) != 3 or not tensor.dims[2].is_static:
                raise FeedError(f"{tensor.name} needs a static hidden size to be synthesized, declared {tensor.dims}")
            feeds[tensor.name] = token_embeddings(state.tokens[:, past_len:], int(tensor.dims[2].value or 0), numpy_dtype(tensor.elem_type))
        elif role == roles.CACHE_POSITION:
            feeds[tensor.name] = _int_array(np.arange(past_len, total), tensor)
        elif role == roles.TOKEN_TYPE_IDS:
            feeds[tensor.name] = _int_array(np.zeros((batch, new_tokens), dtype=np.int64), tensor)
        elif role == roles.ENCODER_HIDDEN_STATES:
            if state.encoder_hidden is None:
                raise FeedError(f"{tensor.name} needs an encoder output: replay the export folder with encoder_model.onnx")
            feeds[tensor.name] = state.encoder_hidden.astype(numpy_dtype(tensor.elem_type))
        elif role == roles.ENCODER_ATTENTION_MASK:
            assert state.encoder_mask is not None
            feeds[tensor.name] = _int_array(state.encoder_mask, tensor)
        elif role == roles.USE_CACHE_BRANCH:
            feeds[tensor.name] = np.array([use_cache], dtype=np.bool_)
        elif role == roles.PAST and tensor.name in pairs:
            dummy_cross = bool(kv and kv.merged and not use_cache)
            feeds[tensor.name] = _past_feed(pairs[tensor.name], tensor, state, batch, pasts, dummy_cross, rng)
        else:
            raise FeedError(
                f"input {tensor.name} has role {tensor.role_text!r}: replay does not know what to feed it; "
                "name its role with --map (see `onnxdoctor inspect --help`)"
            )
    return feeds


def _past_feed(
    pair: CachePair,
    tensor: TensorSig,
    state: DecodeState,
    batch: int,
    pasts: dict[str, np.ndarray] | None,
    dummy_cross: bool,
    rng: np.random.Generator,
) -> np.ndarray:
    dtype = numpy_dtype(tensor.elem_type)
    if pair.attention == "cross":
        if dummy_cross:  # a merged decoder's no-cache branch computes it from encoder_hidden_states
            return np.zeros(cache_shape(pair, tensor, batch, 0), dtype=dtype)
        if tensor.name not in state.cross_cache:
            # no step-0 file computes the encoder cache: synthesize one, kept for every step
            assert state.encoder_mask is not None
            shape = cache_shape(pair, tensor, batch, state.encoder_mask.shape[1])
            state.cross_cache[tensor.name] = rng.standard_normal(shape).astype(dtype)
        return state.cross_cache[tensor.name]
    if pasts is not None and tensor.name in pasts:
        return pasts[tensor.name]
    return np.zeros(cache_shape(pair, tensor, batch, 0), dtype=dtype)


def next_pasts(signature: Signature, outputs: dict[str, np.ndarray], state: DecodeState, *, first_step: bool) -> dict[str, np.ndarray]:
    """Self-attention presents become the next pasts; cross-attention presents are kept from step 0."""
    kv = signature.kv
    result: dict[str, np.ndarray] = {}
    if kv is None:
        return result
    for pair in kv.pairs:
        if pair.present is None or pair.present.name not in outputs:
            continue
        if pair.attention == "cross":
            if first_step:
                state.cross_cache[_past_name_for(pair)] = outputs[pair.present.name]
            continue
        result[_past_name_for(pair)] = outputs[pair.present.name]
    return result


def _past_name_for(pair: CachePair) -> str:
    """The past input that receives this pair's present (its own past, else the conventional key)."""
    return pair.past.name if pair.past is not None else f"{pair.layer}.{pair.attention}.{pair.part}"


def remap_pasts(target: Signature, produced_by: Signature, pasts: dict[str, np.ndarray], state: DecodeState) -> dict[str, np.ndarray]:
    """Map pasts keyed for one file (decoder_model) onto another's input names (decoder_with_past)."""
    if target.kv is None or produced_by is target:
        return pasts
    result: dict[str, np.ndarray] = {}
    by_key = {(p.layer, p.attention, p.part): p for p in produced_by.kv.pairs} if produced_by.kv else {}
    for pair in target.kv.pairs:
        if pair.past is None:
            continue
        source = by_key.get((pair.layer, pair.attention, pair.part))
        if source is None:
            continue
        key = _past_name_for(source)
        if pair.attention == "cross":
            if key in state.cross_cache:
                state.cross_cache[pair.past.name] = state.cross_cache.pop(key)
        elif key in pasts:
            result[pair.past.name] = pasts[key]
    return result


def describe_shapes(arrays: dict[str, Any]) -> dict[str, list[int]]:
    return {name: list(np.shape(value)) for name, value in arrays.items()}
