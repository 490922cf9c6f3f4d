"""The one decode loop: step 0 -> step N of a Scenario through any backend, one record per step.

Replay (ONNX Runtime and its oracles), verify (an export against its PyTorch source), compare (two
exports) and bench (timings) all drive their backends through `decode`; what they check is theirs,
how a decode is fed is decided here and in replay/protocol.py (the reference protocol, from the
Signature alone). With `choose`, the next tokens come from the step's outputs (greedy decoding);
without it, the given tokens are fed (teacher forcing), so several backends see the same tokens.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from onnxdoctor.driver.backend import Backend
from onnxdoctor.errors import UsageError
from onnxdoctor.model import roles
from onnxdoctor.model.dims import format_dims
from onnxdoctor.model.signature import Signature, TensorSig
from onnxdoctor.replay.protocol import DecodeState, Scenario, build_feeds, cache_shape, next_pasts, remap_pasts, vocab_size
from onnxdoctor.replay.runtime import numpy_dtype


@dataclass
class DecodeStep:
    """One call of a decode: what was fed, what came back (or what went wrong), how long it took."""

    step: int
    signature: Signature
    feeds: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray] | None
    new: int  # new tokens this step
    fed_new: int  # tokens fed: `new`, or the whole sequence when the scenario has no cache
    past_len: int
    use_cache: bool
    recompute: bool
    seconds: float = 0.0
    error: BaseException | None = None
    missing_pasts: list[str] = field(default_factory=list)  # self pasts no present fed (step > 0)
    state: DecodeState | None = None  # tokens and mask as of this step (for an uncached reference)

    def logits(self) -> np.ndarray | None:
        """Logits of this step's new tokens ([batch, new, vocab], or [batch, vocab] for last-token exports)."""
        tensor = self.signature.output(roles.LOGITS)
        if self.outputs is None or tensor is None or tensor.name not in self.outputs:
            return None
        value = self.outputs[tensor.name]
        return value[:, -self.new :] if value.ndim == 3 else value


@dataclass
class EncoderRun:
    """What the encoder produced (or was synthesized) for a seq2seq scenario."""

    feeds: dict[str, np.ndarray] = field(default_factory=dict)
    outputs: dict[str, np.ndarray] = field(default_factory=dict)


def _encoder_features(tensor: TensorSig, batch: int, rng: np.random.Generator) -> np.ndarray:
    """Seeded random values for an encoder's non-token input (Whisper's input_features, pixel_values).

    Their sizes are fixed by the model (mel bins x frames, channels x height x width), so every axis but
    the batch must be a number.
    """
    dtype = numpy_dtype(tensor.elem_type)
    if tensor.dims is None or not np.issubdtype(dtype, np.floating) or not all(d.is_static for d in tensor.dims[1:]):
        raise UsageError(
            f"encoder input {tensor.name} ({tensor.dtype} {format_dims(tensor.dims)}): replay can only synthesize "
            "float inputs whose non-batch dims are fixed"
        )
    shape = (batch, *(int(d.value or 0) for d in tensor.dims[1:]))
    return rng.standard_normal(shape).astype(dtype)


def encoder_feeds(encoder: Signature, batch: int, encoder_len: int, config_vocab: int | None, rng: np.random.Generator, mask: np.ndarray) -> dict[str, np.ndarray]:
    """Seeded source tokens (or features) for the encoder, with the encoder mask."""
    vocab = vocab_size(encoder, config_vocab)
    feeds: dict[str, np.ndarray] = {}
    for tensor in encoder.inputs:
        if tensor.role == roles.INPUT_IDS:
            feeds[tensor.name] = rng.integers(0, vocab, (batch, encoder_len)).astype(np.int64)
        elif tensor.role == roles.ATTENTION_MASK:
            feeds[tensor.name] = mask
        else:
            feeds[tensor.name] = _encoder_features(tensor, batch, rng)
    return feeds


def synthesized_hidden(scenario: Scenario, batch: int, encoder_len: int, rng: np.random.Generator) -> np.ndarray:
    """No encoder file next to the decoder: seeded random encoder states of the declared width."""
    tensor = scenario.step0.input(roles.ENCODER_HIDDEN_STATES)
    assert tensor is not None
    if tensor.dims is None or len(tensor.dims) != 3 or not tensor.dims[2].is_static:
        raise UsageError(
            f"{tensor.name} has no static hidden size and there is no encoder_model.onnx next to "
            f"{scenario.step0.file}: replay the whole export folder"
        )
    return rng.standard_normal((batch, encoder_len, int(tensor.dims[2].value or 0))).astype(numpy_dtype(tensor.elem_type))


def encode(
    scenario: Scenario, backend: Backend, state: DecodeState, batch: int, encoder_len: int, config_vocab: int | None, rng: np.random.Generator
) -> EncoderRun:
    """Run the encoder (when the decoder reads encoder states) and keep its output in `state`."""
    needs_hidden = any(t.role == roles.ENCODER_HIDDEN_STATES for s in (scenario.step0, scenario.stepn) if s for t in s.inputs)
    state.encoder_mask = np.ones((batch, encoder_len), dtype=np.int64)
    run = EncoderRun()
    if not needs_hidden:
        return run
    encoder = scenario.encoder
    if encoder is None:
        state.encoder_hidden = synthesized_hidden(scenario, batch, encoder_len, rng)
        return run
    run.feeds = encoder_feeds(encoder, batch, encoder_len, config_vocab, rng, state.encoder_mask)
    run.outputs = backend.infer(encoder, run.feeds)
    hidden = next((run.outputs[t.name] for t in encoder.outputs if t.role == roles.HIDDEN_STATES and t.name in run.outputs), None)
    state.encoder_hidden = hidden if hidden is not None else next(iter(run.outputs.values()))
    return run


Chooser = Callable[[DecodeStep], np.ndarray]


def greedy(step: DecodeStep) -> np.ndarray:
    """The argmax of the last position of every row: greedy decoding, [batch, 1]."""
    logits = step.logits()
    if logits is None:
        raise UsageError(f"{step.signature.file} returns no logits: greedy decoding needs them")
    last = logits[:, -1] if logits.ndim == 3 else logits
    return np.argmax(last, axis=-1).astype(np.int64)[:, None]


def decode(
    scenario: Scenario,
    backend: Backend,
    tokens: np.ndarray,
    mask: np.ndarray,
    schedule: list[int],
    *,
    rng: np.random.Generator,
    state: DecodeState | None = None,
    choose: Chooser | None = None,
    prefilled: int = 0,
) -> Iterator[DecodeStep]:
    """Run `schedule` (new tokens per step) over `tokens`; stops after a step that fails.

    `tokens` and `mask` hold every position of the decode ([batch, sum(schedule)]); with `choose`, the
    positions after the prompt are overwritten by what it picks from each step (one token per step).
    `state` carries the encoder output (see `encode`); a fresh one is made when not given.
    `prefilled`: the first tokens are already "cached" at step 0 as a zero past the mask hides (a cache
    length fixed at export leaves a client no other way to call step 0).
    """
    if choose is not None and any(n != 1 for n in schedule[1:]):
        raise UsageError("greedy decoding feeds one token per step after the prompt")
    tokens = tokens.copy()
    if state is None:
        state = DecodeState(tokens[:, : prefilled + schedule[0]], mask[:, : prefilled + schedule[0]])
    pasts: dict[str, np.ndarray] | None = None
    if prefilled and scenario.step0.kv is not None:
        batch = tokens.shape[0]
        pasts = {
            p.past.name: np.zeros(cache_shape(p, p.past, batch, prefilled), dtype=numpy_dtype(p.past.elem_type))
            for p in scenario.step0.kv.self_pairs()
            if p.past is not None
        }
    position = prefilled
    recompute = scenario.stepn is None
    for step, new in enumerate(schedule):
        position += new
        state.tokens, state.mask = tokens[:, :position], mask[:, :position]
        past_len = position - new
        signature = scenario.step0 if step == 0 or recompute else scenario.stepn
        assert signature is not None
        use_cache = step > 0 and not recompute
        fed_new = position if recompute else new
        feeds = build_feeds(signature, state, fed_new, pasts=pasts, use_cache=use_cache, rng=rng)
        # the state as of this step (tokens and mask are views of this step's length)
        record = DecodeStep(step, signature, feeds, None, new, fed_new, past_len, use_cache, recompute, state=replace(state))
        if step > 0 and signature.kv is not None:
            record.missing_pasts = [
                p.past.name for p in signature.kv.self_pairs() if p.past is not None and (pasts is None or p.past.name not in pasts)
            ]
        calls = backend.timing.calls
        try:
            record.outputs = backend.infer(signature, feeds)
        except Exception as exc:  # noqa: BLE001 - runtimes raise many types; the caller judges
            record.error = exc
        record.seconds = backend.timing.per_call[-1] if backend.timing.calls > calls else 0.0
        yield record
        if record.error is not None or record.outputs is None:
            return
        if choose is not None and step + 1 < len(schedule):
            tokens[:, position : position + 1] = choose(record)
        if recompute:
            continue
        pasts = next_pasts(signature, record.outputs, state, first_step=step == 0)
        if step == 0 and scenario.stepn is not None and scenario.stepn is not signature:
            pasts = remap_pasts(scenario.stepn, signature, pasts, state)


def _config(path: str | Path) -> dict[str, Any]:
    """config.json of an export folder (or of a model file's folder); {} when there is none or it does not parse."""
    folder = Path(path) if Path(path).is_dir() else Path(path).parent
    try:
        data = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def config_vocab(path: str | Path) -> int | None:
    """vocab_size from the export's config.json (folder or the model file's folder), if there is one."""
    data = _config(path)
    value = data.get("vocab_size") or data.get("decoder_vocab_size")
    return int(value) if isinstance(value, int) else None


def config_pad_ids(path: str | Path) -> tuple[int, ...]:
    """The pad token ids of the export's (or source's) config.json: ids a decode's drawn tokens avoid.

    Real text holds no pad token, and some models read it as "padding here" from the ids themselves
    (M2M100 numbers its decoder positions by `input_ids != pad_token_id`, counting only the tokens of
    the current call): a drawn pad id makes the model's own cached and uncached logits differ.
    """
    data = _config(path)
    found = [data.get(key) for key in ("pad_token_id", "decoder_pad_token_id")]
    return tuple(sorted({int(v) for v in found if isinstance(v, int) and not isinstance(v, bool) and v >= 0}))


def without_ids(tokens: np.ndarray, avoid: tuple[int, ...], size: int) -> np.ndarray:
    """Each avoided id replaced by the next id up (wrapping) that is not avoided."""
    if not avoid or len(avoid) >= size:
        return tokens
    for token in avoid:
        replacement = (token + 1) % size
        while replacement in avoid:
            replacement = (replacement + 1) % size
        tokens[tokens == token] = replacement
    return tokens


def prompt_tokens(
    scenario: Scenario, batch: int, schedule: list[int], vocab: int | None, rng: np.random.Generator, avoid: tuple[int, ...] = ()
) -> tuple[np.ndarray, np.ndarray, int]:
    """(tokens, mask, padding) for a decode: seeded ids (never one of `avoid`, the pad ids); with batch >= 2,
    row 1 is left-padded (decoder-only models with a mask and positions), since batched serving pads prompts."""
    total = sum(schedule)
    size = vocab_size(scenario.step0, vocab)
    tokens = without_ids(rng.integers(0, size, (batch, total)).astype(np.int64), avoid, size)
    mask = np.ones((batch, total), dtype=np.int64)
    pad = 0
    step0 = scenario.step0
    decoder_only = not step0.input(roles.ENCODER_HIDDEN_STATES) and not (step0.kv and step0.kv.cross_attention)
    if batch > 1 and decoder_only and step0.input(roles.ATTENTION_MASK) and step0.input(roles.POSITION_IDS):
        pad = min(2, schedule[0] - 1)
        mask[1, :pad] = 0
    return tokens, mask, pad
