"""What the client-loop tests share: the layouts, running an emitted loop, and the reference tokens.

The reference is greedy decoding under replay's protocol (protocol.build_feeds / next_pasts /
remap_pasts): same files per step, same feeds, argmax of the last position. It shares no code with
the loop templates, only the protocol replay itself checks step by step.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from onnxdoctor.engine import inspect_path
from onnxdoctor.model import roles
from onnxdoctor.model.client_loop import emit_loop
from onnxdoctor.replay import dumps
from onnxdoctor.replay.feedcheck import FeedChecker
from onnxdoctor.replay.protocol import DecodeState, build_feeds, next_pasts, plan_scenarios, remap_pasts
from onnxdoctor.replay.runtime import Runtime
from support import FIXTURES

_PREFERENCE = {"merged": 0, "split": 1, "single": 2, "recompute": 3}


def greedy_tokens(path: Path, prompt: list[int], max_new: int, source_ids: list[int] | None = None) -> list[int]:
    report = inspect_path(path)
    scenario = min(plan_scenarios(report), key=lambda s: _PREFERENCE[s.name])
    runtime = Runtime("cpu")
    rng = np.random.default_rng(0)  # unused: every input of these exports is derived, none synthesized
    tokens = list(prompt)
    state = DecodeState(np.zeros((1, 0), np.int64), np.zeros((1, 0), np.int64))
    if scenario.encoder is not None:
        assert source_ids, "a seq2seq export needs source ids"
        config = json.loads(((path if path.is_dir() else path.parent) / "config.json").read_text())
        tokens = [config["decoder_start_token_id"], *tokens]
        state.encoder_mask = np.ones((1, len(source_ids)), np.int64)
        feeds = {}
        for tensor in scenario.encoder.inputs:
            feeds[tensor.name] = np.array([source_ids], np.int64) if tensor.role == roles.INPUT_IDS else state.encoder_mask
        outputs = runtime.run(scenario.path(scenario.encoder), feeds)
        hidden = next(t.name for t in scenario.encoder.outputs if t.role == roles.HIDDEN_STATES)
        state.encoder_hidden = outputs[hidden]
    generated: list[int] = []
    pasts: dict[str, np.ndarray] | None = None
    step = 0
    while len(generated) < max_new:
        recompute = scenario.stepn is None
        signature = scenario.step0 if step == 0 or recompute else scenario.stepn
        assert signature is not None
        new = len(tokens) if step == 0 or recompute else 1
        state.tokens = np.array([tokens], np.int64)
        state.mask = np.ones((1, len(tokens)), np.int64)
        feeds = build_feeds(signature, state, new, pasts=pasts, use_cache=step > 0 and not recompute, rng=rng)
        outputs = runtime.run(scenario.path(signature), feeds)
        logits = outputs[signature.output(roles.LOGITS).name]  # type: ignore[union-attr]
        generated.append(int(np.argmax(logits.reshape(-1, logits.shape[-1])[-1].astype(np.float32))))
        tokens.append(generated[-1])
        if not recompute:
            pasts = next_pasts(signature, outputs, state, first_step=step == 0)
            if step == 0 and scenario.stepn is not signature:
                pasts = remap_pasts(scenario.stepn, signature, pasts, state)  # type: ignore[arg-type]
        step += 1
    return generated


PROMPT = [17, 30, 45]
SOURCE = [5, 77, 9]
NEW_TOKENS = 5
# fixture folder, the MODEL_PATH handed to the loop (a file or the folder), seq2seq
LAYOUTS = {
    "decoder-only": ("optimum-gpt2", "model.onnx", False),
    "qk-norm": ("optimum-qwen3", "model.onnx", False),
    "gqa": ("optimum-llama-gqa", "model.onnx", False),
    "fp16": ("optimum-llama-fp16", "", False),
    "no-position-ids": ("torch-legacy", "model.onnx", False),
    "merged-seq2seq": ("optimum-marian-merged", "", True),
    "merged-seq2seq-file": ("optimum-marian-merged", "decoder_model_merged.onnx", True),
    "split-seq2seq": ("optimum-marian", "", True),
    "t5-all-files": ("optimum-t5", "", True),
}


def emitted(fixture: str, language: str, folder: Path) -> Path:
    """The loop `onnxdoctor contract FIXTURE --emit LANGUAGE` prints, saved to `folder` (in-process: the CLI is tested once)."""
    target = folder / ("loop.js" if language == "js" else "loop.py")
    target.write_text(emit_loop(inspect_path(FIXTURES / fixture), language))
    return target


def loop_arguments(layout: str, dump: Path | None = None) -> list[str]:
    fixture, model, seq2seq = LAYOUTS[layout]
    args = [str(FIXTURES / fixture / model), "--max-new-tokens", str(NEW_TOKENS)]
    args += ["--source-ids", ",".join(map(str, SOURCE))] if seq2seq else ["--prompt", ",".join(map(str, PROMPT))]
    return args + (["--dump", str(dump)] if dump is not None else [])


def reference(layout: str) -> list[int]:
    """The tokens replay's protocol decodes greedily for this layout's fixture."""
    fixture, _, seq2seq = LAYOUTS[layout]
    return greedy_tokens(FIXTURES / fixture, [] if seq2seq else PROMPT, NEW_TOKENS, SOURCE if seq2seq else None)


def assert_dump_follows_contract(fixture: str, dump: Path) -> None:
    steps = dumps.expand_steps([dump])
    assert [p.name for p in steps] == [f"step{k}.json" for k in range(NEW_TOKENS)]
    checked = FeedChecker(inspect_path(FIXTURES / fixture)).run([dump])
    assert checked.findings == [] and len(checked.steps) == NEW_TOKENS
