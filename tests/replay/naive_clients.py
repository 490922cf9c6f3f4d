"""Naive KV-cache client loops that dump exactly what they fed ORT at each step.

`onnxdoctor check-feeds` validates recorded feeds of a (Rust/C#/JS) client
against the model's contract. These loops stand in for such clients: each one
decodes with onnxruntime, writes `stepK.npz` (the feeds, keys = input names)
*before* calling ORT, so the failing step is on disk too, then
`stepK_outputs.npz` for every step that ran. `mistake` injects one real-world
client bug; everything else follows the correct protocol.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidArgument, RuntimeException

DECODER_ONLY_MISTAKES = frozenset(
    {
        "missing_position_ids",
        "float32_for_fp16",
        "query_heads_in_past",
        "zero_dummy_past",
        "zero_dummy_past_masked_wrong",
        "mask_not_grown",
        "positions_restart",
        "stale_past",
    }
)
MERGED_MISTAKES = frozenset(
    {"cache_branch_true_at_step0", "cache_branch_true_with_dummy_pasts", "placeholders_fed_back", "stale_past"}
)
# split seq2seq export (optimum without post-processing): decoder_model.onnx + decoder_with_past_model.onnx
SPLIT_MISTAKES = frozenset({"with_past_at_step0"})
MISTAKES = DECODER_ONLY_MISTAKES | MERGED_MISTAKES | SPLIT_MISTAKES

# ValueError: onnxruntime's Python layer rejects missing inputs before the C++ run.
_ORT_ERRORS = (ValueError, Fail, InvalidArgument, RuntimeException)
_NP_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}
PAST_PREFIX = "past_key_values."
PRESENT_PREFIX = "present."


@dataclass
class ClientRun:
    files: list[Path]  # step0.npz, step1.npz, ... (feeds, in order)
    output_files: list[Path]  # step0_outputs.npz ... for the steps that ran
    error: str | None  # ORT error text if a step failed
    failed_step: int | None


@lru_cache(maxsize=None)
def session(model: Path) -> ort.InferenceSession:
    """One CPU session per model file, shared by all runs to keep the tests fast."""
    options = ort.SessionOptions()
    options.log_severity_level = 4  # failing steps are expected: log only fatal errors
    return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


class _Recorder:
    """Dumps each step's feeds before running it and stops at the first ORT failure."""

    def __init__(self, sess: ort.InferenceSession, out_dir: Path) -> None:
        self.sess = sess
        self.out_dir = out_dir
        self.run_result = ClientRun([], [], None, None)

    def step(self, k: int, feeds: dict[str, np.ndarray], sess: ort.InferenceSession | None = None) -> dict[str, np.ndarray] | None:
        """Dump and run one step (on `sess` when a loop switches files, as split seq2seq clients do)."""
        sess = sess or self.sess
        feeds_file = self.out_dir / f"step{k}.npz"
        np.savez(feeds_file, **feeds)
        self.run_result.files.append(feeds_file)
        try:
            values = sess.run(None, feeds)
        except _ORT_ERRORS as exc:
            self.run_result.error = str(exc)
            self.run_result.failed_step = k
            return None
        outputs = {o.name: v for o, v in zip(sess.get_outputs(), values)}
        outputs_file = self.out_dir / f"step{k}_outputs.npz"
        np.savez(outputs_file, **outputs)
        self.run_result.output_files.append(outputs_file)
        return outputs


def _query_heads(model: Path) -> int:
    """Attention (query) head count from the config.json exported next to the model."""
    config = json.loads((model.parent / "config.json").read_text())
    return int(config.get("num_attention_heads") or config["decoder_attention_heads"])


def _fed_back(presents: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Rename present.* outputs to the past_key_values.* inputs they feed."""
    return {
        PAST_PREFIX + name.removeprefix(PRESENT_PREFIX): value
        for name, value in presents.items()
        if name.startswith(PRESENT_PREFIX)
    }


def run_client(
    model: Path,
    out_dir: Path,
    mistake: str | None = None,
    steps: int = 3,
    batch: int = 1,
    prompt_len: int = 3,
    seed: int = 0,
) -> ClientRun:
    """Decode `steps` steps (prompt, then one random token each) and dump every step's feeds.

    Tokens are seeded random ids, not sampled from the logits, so a mistake never
    changes what is fed next and runs with the same seed stay comparable.
    """
    sess = session(model)
    merged = any(i.name == "use_cache_branch" for i in sess.get_inputs())
    split = is_split_with_past(sess)
    allowed = MERGED_MISTAKES if merged else SPLIT_MISTAKES if split else DECODER_ONLY_MISTAKES
    if mistake is not None and mistake not in allowed:
        raise ValueError(
            f"mistake {mistake!r} does not apply to {model.name}; pick from {sorted(allowed)}"
        )
    vocab = sess.get_outputs()[0].shape[-1]
    rng = np.random.default_rng(seed)
    tokens = [rng.integers(0, vocab, (batch, prompt_len))]
    tokens += [rng.integers(0, vocab, (batch, 1)) for _ in range(steps - 1)]
    out_dir.mkdir(parents=True, exist_ok=True)
    recorder = _Recorder(sess, out_dir)
    if merged:
        _merged_loop(model, recorder, tokens, mistake, rng)
    elif split:
        _split_loop(model, recorder, tokens, mistake, rng)
    else:
        _decoder_only_loop(model, recorder, tokens, mistake)
    return recorder.run_result


def is_split_with_past(sess: ort.InferenceSession) -> bool:
    """A seq2seq decoder_with_past file: cross-attention pasts, no encoder_hidden_states input."""
    names = [i.name for i in sess.get_inputs()]
    return any(".encoder." in n for n in names) and "encoder_hidden_states" not in names


def _encode(model: Path, batch: int, prompt_len: int, vocab: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(encoder last_hidden_state, source mask) of a random source 2 tokens longer than the decoder prompt,
    so encoder and decoder lengths never coincide."""
    encoder = session(model.parent / "encoder_model.onnx")
    source = rng.integers(0, vocab, (batch, prompt_len + 2))
    source_mask = np.ones_like(source)
    (hidden,) = encoder.run(None, {"input_ids": source, "attention_mask": source_mask})
    return hidden, source_mask


def _decoder_only_loop(
    model: Path, recorder: _Recorder, tokens: list[np.ndarray], mistake: str | None
) -> None:
    """Llama-style loop: mask = past + new ones, position_ids = cumsum(mask) - 1,
    presents fed back."""
    pasts = [i for i in recorder.sess.get_inputs() if i.name.startswith(PAST_PREFIX)]
    _, kv_heads, _, head_dim = pasts[0].shape
    dtype = np.float32 if mistake == "float32_for_fp16" else _NP_TYPES[pasts[0].type]
    if mistake == "float32_for_fp16" and _NP_TYPES[pasts[0].type] is not np.float16:
        raise ValueError("float32_for_fp16 needs a model with a float16 cache")
    heads = _query_heads(model) if mistake == "query_heads_in_past" else kv_heads
    if heads == kv_heads and mistake == "query_heads_in_past":
        raise ValueError("query_heads_in_past needs a GQA model (query heads != kv heads)")
    batch, prompt_len = tokens[0].shape
    dummy_len = 1 if mistake in ("zero_dummy_past", "zero_dummy_past_masked_wrong") else 0
    past = {p.name: np.zeros((batch, heads, dummy_len, head_dim), dtype) for p in pasts}
    mask_len = prompt_len + (1 if mistake == "zero_dummy_past_masked_wrong" else 0)
    mask = np.ones((batch, mask_len), np.int64)
    history: list[dict[str, np.ndarray]] = []
    for k, ids in enumerate(tokens):
        if k > 0:
            if mistake != "mask_not_grown":
                mask = np.concatenate([mask, np.ones((batch, 1), np.int64)], axis=1)
            source = history[0] if (mistake == "stale_past" and k == 2) else history[-1]
            past = {name: value.astype(dtype) for name, value in _fed_back(source).items()}
        positions = np.cumsum(mask, axis=1)[:, -ids.shape[1] :] - 1
        if mistake == "positions_restart" and k > 0:
            positions = np.zeros_like(positions)
        feeds = {"input_ids": ids, "attention_mask": mask, "position_ids": positions, **past}
        if mistake == "missing_position_ids":
            del feeds["position_ids"]
        outputs = recorder.step(k, feeds)
        if outputs is None:
            return
        history.append(outputs)


def _merged_loop(
    model: Path,
    recorder: _Recorder,
    tokens: list[np.ndarray],
    mistake: str | None,
    rng: np.random.Generator,
) -> None:
    """Merged seq2seq loop: no-cache branch with empty dummies at step 0, cache branch after,
    decoder presents fed back, step 0's encoder presents kept for every later step."""
    batch, prompt_len = tokens[0].shape
    hidden, source_mask = _encode(model, batch, prompt_len, recorder.sess.get_outputs()[0].shape[-1], rng)
    pasts = [i for i in recorder.sess.get_inputs() if i.name.startswith(PAST_PREFIX)]
    _, heads, _, head_dim = pasts[0].shape
    # the common workaround for bindings without 0-sized tensors: zero pasts of length 1
    dummy_len = 1 if mistake == "cache_branch_true_with_dummy_pasts" else 0
    past = {p.name: np.zeros((batch, heads, dummy_len, head_dim), np.float32) for p in pasts}
    history: list[dict[str, np.ndarray]] = []
    for k, ids in enumerate(tokens):
        if k > 0:
            source_step = history[0] if (mistake == "stale_past" and k == 2) else history[-1]
            past = _fed_back(source_step)
            if mistake != "placeholders_fed_back":
                past |= {n: v for n, v in _fed_back(history[0]).items() if ".encoder." in n}
        use_cache = k > 0 or mistake in ("cache_branch_true_at_step0", "cache_branch_true_with_dummy_pasts")
        feeds = {
            "encoder_attention_mask": source_mask,
            "input_ids": ids,
            "encoder_hidden_states": hidden,
            **past,
            "use_cache_branch": np.array([use_cache]),
        }
        outputs = recorder.step(k, feeds)
        if outputs is None:
            return
        history.append(outputs)


def _split_loop(
    model: Path,
    recorder: _Recorder,
    tokens: list[np.ndarray],
    mistake: str | None,
    rng: np.random.Generator,
) -> None:
    """Split seq2seq loop (`model` is decoder_with_past_model.onnx): step 0 runs decoder_model.onnx
    next to it on encoder_hidden_states; every later step runs the with-past file on the previous
    decoder presents and step 0's encoder presents.

    with_past_at_step0: the with-past file at step 0 too, on zero-filled pasts (decoder past of
    length 1, encoder past of the encoder length), its zeros kept as the encoder cache afterwards.
    """
    batch, prompt_len = tokens[0].shape
    hidden, source_mask = _encode(model, batch, prompt_len, recorder.sess.get_outputs()[0].shape[-1], rng)
    first = session(model.parent / "decoder_model.onnx")
    pasts = [i for i in recorder.sess.get_inputs() if i.name.startswith(PAST_PREFIX)]
    _, heads, _, head_dim = pasts[0].shape
    cross: dict[str, np.ndarray] = {}
    previous: dict[str, np.ndarray] = {}
    for k, ids in enumerate(tokens):
        if k == 0 and mistake != "with_past_at_step0":
            feeds = {"encoder_attention_mask": source_mask, "input_ids": ids, "encoder_hidden_states": hidden}
            outputs = recorder.step(k, feeds, first)
            if outputs is None:
                return
            cross = {n: v for n, v in _fed_back(outputs).items() if ".encoder." in n}
        else:
            if k == 0:  # the mistake: nothing ran before, so the client makes its pasts up
                zeros = {".encoder.": hidden.shape[1], ".decoder.": 1}
                made_up = {
                    p.name: np.zeros((batch, heads, length, head_dim), np.float32)
                    for p in pasts for part, length in zeros.items() if part in p.name
                }
                cross = {n: v for n, v in made_up.items() if ".encoder." in n}
                decoder = {n: v for n, v in made_up.items() if ".decoder." in n}
            else:
                decoder = {n: v for n, v in _fed_back(previous).items() if ".decoder." in n}
            feeds = {"encoder_attention_mask": source_mask, "input_ids": ids, **decoder, **cross}
            feeds = {p.name: feeds[p.name] for p in recorder.sess.get_inputs()}  # the file's input order
            outputs = recorder.step(k, feeds)
            if outputs is None:
                return
        previous = outputs
