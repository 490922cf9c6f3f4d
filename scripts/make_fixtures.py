#!/usr/bin/env python
"""Build tiny, deterministic ONNX decoder exports with a KV cache under ``fixtures/``.

Every fixture is a real export (optimum or torch.onnx) of a randomly initialised,
seeded model small enough to commit. Each fixture folder gets the ONNX file(s),
``export_settings.json`` (how it was made) and, for optimum exports, ``config.json``.

With ``--verify`` (the default) every model is run in onnxruntime: step 0 with an
empty past, step 1 with the presents of step 0 fed back, and the step-1 logits are
compared with an uncached run over all tokens.

Usage: python scripts/make_fixtures.py [--out fixtures] [--only NAME ...] [--no-verify]
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import argparse
import importlib.metadata
import json
import logging
import math
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

REPO_ROOT = Path(__file__).resolve().parent.parent
SEED = 0
VOCAB = 128
MAX_POSITIONS = 64
TEXT_GEN = "text-generation-with-past"
TEXT2TEXT = "text2text-generation-with-past"
ATOL = {"fp32": 1e-4, "fp16": 1e-2}
OPSET_TORCH_LEGACY = 17
OPSET_TORCH_DYNAMO = 18

Settings = dict[str, Any]


# --------------------------------------------------------------------------- models


class TinyAttentionLayer(nn.Module):
    """Pre-norm transformer block whose attention concatenates a KV cache on axis 2."""

    def __init__(self, d_model: int, heads: int, head_dim: int, ffn: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.ln1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * heads * head_dim)
        self.out = nn.Linear(heads * head_dim, d_model)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, ffn), nn.GELU(), nn.Linear(ffn, d_model))

    def forward(
        self, x: torch.Tensor, bias: torch.Tensor, past_key: torch.Tensor, past_value: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return the new hidden states and the present key/value (past ++ new)."""
        batch, seq, _ = x.shape
        qkv = self.qkv(self.ln1(x)).view(batch, seq, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        query, key, value = qkv[0], qkv[1], qkv[2]
        key = torch.cat([past_key, key], dim=2)
        value = torch.cat([past_value, value], dim=2)
        scores = query @ key.transpose(-1, -2) / math.sqrt(self.head_dim) + bias
        attended = torch.softmax(scores, dim=-1) @ value
        x = x + self.out(attended.transpose(1, 2).reshape(batch, seq, self.heads * self.head_dim))
        return x + self.mlp(self.ln2(x)), key, value


class TinyKVDecoder(nn.Module):
    """Two-layer causal decoder taking its KV cache as flat tensors (past_key_0, past_value_0, ...)."""

    DIMS = {"vocab_size": VOCAB, "d_model": 16, "heads": 2, "head_dim": 8, "layers": 2, "ffn": 32,
            "max_positions": MAX_POSITIONS}

    def __init__(self) -> None:
        super().__init__()
        d = self.DIMS
        self.embed = nn.Embedding(d["vocab_size"], d["d_model"])
        self.positions = nn.Embedding(d["max_positions"], d["d_model"])
        self.layers = nn.ModuleList(
            TinyAttentionLayer(d["d_model"], d["heads"], d["head_dim"], d["ffn"]) for _ in range(d["layers"])
        )
        self.ln_f = nn.LayerNorm(d["d_model"])
        self.lm_head = nn.Linear(d["d_model"], d["vocab_size"], bias=False)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        past_key_0: torch.Tensor,
        past_value_0: torch.Tensor,
        past_key_1: torch.Tensor,
        past_value_1: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        """Return logits and present_key_0, present_value_0, present_key_1, present_value_1."""
        seq = input_ids.shape[1]
        query_pos = torch.arange(seq) + past_key_0.shape[2]
        x = self.embed(input_ids) + self.positions(query_pos)[None]
        key_pos = torch.arange(attention_mask.shape[1])
        allowed = (key_pos[None, :] <= query_pos[:, None])[None, None] & (attention_mask[:, None, None, :] > 0)
        bias = torch.zeros(allowed.shape, dtype=x.dtype).masked_fill(~allowed, -1e9)
        presents: list[torch.Tensor] = []
        for layer, (past_key, past_value) in zip(self.layers, ((past_key_0, past_value_0), (past_key_1, past_value_1))):
            x, key, value = layer(x, bias, past_key, past_value)
            presents += [key, value]
        return (self.lm_head(self.ln_f(x)), *presents)


def _tiny_decoder_example() -> tuple[torch.Tensor, ...]:
    """Example inputs for tracing: batch 2, 3 new tokens, 4 cached positions.

    Each cache tensor must be a distinct object: torch.export merges aliased inputs, and the
    dynamo export then silently reads one past input for all layers.
    """
    d = TinyKVDecoder.DIMS
    past = [torch.randn(2, d["heads"], 4, d["head_dim"]) for _ in range(2 * d["layers"])]
    return (torch.randint(0, VOCAB, (2, 3)), torch.ones(2, 7, dtype=torch.int64), *past)


# --------------------------------------------------------------------------- export helpers


def _versions(*packages: str) -> dict[str, str]:
    """Installed versions of the given distributions."""
    return {name: importlib.metadata.version(name) for name in packages}


def _opset(path: Path) -> int:
    """Default-domain opset of an ONNX file."""
    return next(o.version for o in onnx.load(str(path), load_external_data=False).opset_import if o.domain in ("", "ai.onnx"))


def _export_optimum(
    out: Path,
    model_cls: type,
    config_cls: type,
    config: dict[str, Any],
    task: str,
    *,
    keep: tuple[str, ...] | None = None,
    no_post_process: bool = False,
    dtype: str = "fp32",
    extra_flags: dict[str, Any] | None = None,
) -> Settings:
    """Seed, build and save a random HF model, export it with optimum, copy the ONNX files (or only `keep`).

    `extra_flags` go to `main_export` as well (the broken fixtures use `no_dynamic_axes`).
    """
    from optimum.exporters.onnx import main_export

    torch.manual_seed(SEED)
    model = model_cls(config_cls(**config)).eval()
    flags = {"no_post_process": no_post_process, "dtype": dtype, "device": "cpu", "do_validation": True,
             **(extra_flags or {})}
    with tempfile.TemporaryDirectory() as tmp:
        src, exported = Path(tmp, "src"), Path(tmp, "onnx")
        model.save_pretrained(src)
        main_export(str(src), output=exported, task=task, **flags)
        produced = sorted(p.name for p in exported.glob("*.onnx"))
        files = [f for f in produced if keep is None or f in keep]
        if keep is not None and set(keep) - set(files):
            raise RuntimeError(f"optimum did not produce {sorted(set(keep) - set(files))}; got {produced}")
        for name in [*files, "config.json"]:
            shutil.copy2(exported / name, out / name)
    return {
        "exporter": "optimum.exporters.onnx.main_export",
        "versions": _versions("optimum", "optimum-onnx", "transformers", "torch", "onnx"),
        "task": task,
        "flags": flags,
        "opset": _opset(out / files[0]),
        "seed": SEED,
        "model_class": model_cls.__name__,
        "config": config,
        "exporter_produced": produced,
        "files": files,
    }


def _torch_settings(dynamo: bool, opset: int, io: dict[str, Any]) -> Settings:
    """export_settings.json content for a TinyKVDecoder export."""
    return {
        "exporter": "torch.onnx.export",
        "versions": _versions("torch", "onnx", *(("onnxscript",) if dynamo else ())),
        "task": "decoder with flat KV cache (hand-written TinyKVDecoder in scripts/make_fixtures.py)",
        "flags": {"dynamo": dynamo, "external_data": False, **io},
        "opset": opset,
        "seed": SEED,
        "model_class": "TinyKVDecoder",
        "config": TinyKVDecoder.DIMS,
        "files": ["model.onnx"],
    }


# --------------------------------------------------------------------------- fixture builders


GPT2 = {"vocab_size": VOCAB, "n_positions": MAX_POSITIONS, "n_embd": 16, "n_layer": 2, "n_head": 2, "n_inner": 32,
        "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1}
LLAMA_GQA = {"vocab_size": VOCAB, "max_position_embeddings": MAX_POSITIONS, "hidden_size": 32,
             "intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
             "head_dim": 8, "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1}
MARIAN = {"vocab_size": VOCAB, "decoder_vocab_size": VOCAB, "max_position_embeddings": MAX_POSITIONS, "d_model": 16,
          "encoder_layers": 2, "decoder_layers": 2, "encoder_attention_heads": 2, "decoder_attention_heads": 2,
          "encoder_ffn_dim": 32, "decoder_ffn_dim": 32, "pad_token_id": 1, "eos_token_id": 0,
          "decoder_start_token_id": 1}
T5 = {"vocab_size": VOCAB, "d_model": 16, "d_kv": 8, "num_heads": 2, "d_ff": 32, "num_layers": 2,
      "num_decoder_layers": 2, "pad_token_id": 0, "eos_token_id": 1, "decoder_start_token_id": 0}


def build_gpt2(out: Path) -> Settings:
    """Tiny GPT-2, decoder-only with past."""
    from transformers import GPT2Config, GPT2LMHeadModel

    return _export_optimum(out, GPT2LMHeadModel, GPT2Config, GPT2, TEXT_GEN)


def build_llama_gqa(out: Path) -> Settings:
    """Tiny Llama with grouped-query attention (4 query heads, 2 KV heads)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    return _export_optimum(out, LlamaForCausalLM, LlamaConfig, LLAMA_GQA, TEXT_GEN)


def build_qwen3(out: Path) -> Settings:
    """Tiny Qwen3 (GQA, q/k norm)."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    return _export_optimum(out, Qwen3ForCausalLM, Qwen3Config, LLAMA_GQA, TEXT_GEN)


def build_marian(out: Path) -> Settings:
    """Tiny Marian seq2seq, unmerged: encoder, decoder, decoder_with_past."""
    from transformers import MarianConfig, MarianMTModel

    return _export_optimum(out, MarianMTModel, MarianConfig, MARIAN, TEXT2TEXT, no_post_process=True)


def build_marian_merged(out: Path) -> Settings:
    """Tiny Marian seq2seq with optimum's default post-processing, keeping encoder + merged decoder."""
    from transformers import MarianConfig, MarianMTModel

    keep = ("encoder_model.onnx", "decoder_model_merged.onnx")
    return _export_optimum(out, MarianMTModel, MarianConfig, MARIAN, TEXT2TEXT, keep=keep)


def build_t5(out: Path) -> Settings:
    """Tiny T5 with optimum's default layout (all files it writes)."""
    from transformers import T5Config, T5ForConditionalGeneration

    return _export_optimum(out, T5ForConditionalGeneration, T5Config, T5, TEXT2TEXT)


def build_llama_fp16(out: Path) -> Settings:
    """Tiny GQA Llama exported in float16 on CPU (fp16 past/present/logits)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    return _export_optimum(out, LlamaForCausalLM, LlamaConfig, LLAMA_GQA, TEXT_GEN, dtype="fp16")


def build_torch_legacy(out: Path) -> Settings:
    """TinyKVDecoder via the TorchScript exporter, cache named past_key_{i} / present_key_{i}."""
    torch.manual_seed(SEED)
    model = TinyKVDecoder().eval()
    layers = TinyKVDecoder.DIMS["layers"]
    caches = [f"{kind}_{i}" for i in range(layers) for kind in ("key", "value")]
    inputs = ["input_ids", "attention_mask", *(f"past_{c}" for c in caches)]
    outputs = ["logits", *(f"present_{c}" for c in caches)]
    dynamic_axes = {
        "input_ids": {0: "batch", 1: "sequence"},
        "attention_mask": {0: "batch", 1: "total_sequence"},
        **{f"past_{c}": {0: "batch", 2: "past_sequence"} for c in caches},
        "logits": {0: "batch", 1: "sequence"},
        **{f"present_{c}": {0: "batch", 2: "total_sequence"} for c in caches},
    }
    torch.onnx.export(model, _tiny_decoder_example(), str(out / "model.onnx"), dynamo=False,
                      input_names=inputs, output_names=outputs, dynamic_axes=dynamic_axes,
                      opset_version=OPSET_TORCH_LEGACY)
    return _torch_settings(False, OPSET_TORCH_LEGACY, {"input_names": inputs, "output_names": outputs,
                                                       "dynamic_axes": dynamic_axes})


def build_torch_dynamo(out: Path) -> Settings:
    """TinyKVDecoder via the torch.export exporter, cache renamed to past_key_values.{i}.key / present.{i}.key."""
    torch.manual_seed(SEED)
    model = TinyKVDecoder().eval()
    layers = TinyKVDecoder.DIMS["layers"]
    caches = [f"{i}.{kind}" for i in range(layers) for kind in ("key", "value")]
    inputs = ["input_ids", "attention_mask", *(f"past_key_values.{c}" for c in caches)]
    outputs = ["logits", *(f"present.{c}" for c in caches)]
    past_args = [f"past_{kind}_{i}" for i in range(layers) for kind in ("key", "value")]
    dynamic_axes = {"input_ids": (0, 1), "attention_mask": (0, 1), **{name: (0, 2) for name in past_args}}
    dynamic_shapes = {arg: {axis: torch.export.Dim.DYNAMIC for axis in axes} for arg, axes in dynamic_axes.items()}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "model.onnx")
        torch.onnx.export(model, _tiny_decoder_example(), str(path), dynamo=True, external_data=False,
                          dynamic_shapes=dynamic_shapes, input_names=inputs, output_names=outputs,
                          opset_version=OPSET_TORCH_DYNAMO, verbose=False)
        onnx.save(onnx.load(str(path)), str(out / "model.onnx"), save_as_external_data=False)
    shapes_json = {arg: {axis: "torch.export.Dim.DYNAMIC" for axis in axes} for arg, axes in dynamic_axes.items()}
    return _torch_settings(True, OPSET_TORCH_DYNAMO, {"input_names": inputs, "output_names": outputs,
                                                      "dynamic_shapes": shapes_json})


# --------------------------------------------------------------------------- verification


class VerifyError(RuntimeError):
    """A fixture failed its onnxruntime check."""


def _session(path: Path) -> ort.InferenceSession:
    """CPU onnxruntime session for `path`."""
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _past_name(present: str) -> str:
    """Map a present output name to its past input name (optimum and flat styles)."""
    if present.startswith("present."):
        return "past_key_values." + present[len("present."):]
    return "past_" + present[len("present_"):]


def _is_past(name: str) -> bool:
    """True for KV-cache inputs."""
    return name.startswith(("past_key_values.", "past_key_", "past_value_"))


def _float_dtype(session: ort.InferenceSession) -> str:
    """'fp16' if the model takes or returns float16 tensors, else 'fp32'."""
    types = [a.type for a in [*session.get_inputs(), *session.get_outputs()]]
    return "fp16" if "tensor(float16)" in types else "fp32"


def _run(
    session: ort.InferenceSession,
    input_ids: np.ndarray,
    past: dict[str, np.ndarray],
    *,
    past_len: int,
    empty_past_len: int = 0,
    encoder: tuple[np.ndarray, np.ndarray] | None = None,
    use_cache_branch: bool | None = None,
) -> dict[str, np.ndarray]:
    """Run one step, building every input the session declares; missing past inputs get `empty_past_len`."""
    batch, seq = input_ids.shape
    feeds: dict[str, np.ndarray] = {}
    for arg in session.get_inputs():
        name = arg.name
        if name == "input_ids":
            feeds[name] = input_ids
        elif name == "attention_mask":
            feeds[name] = np.ones((batch, past_len + seq), dtype=np.int64)
        elif name == "position_ids":
            feeds[name] = np.broadcast_to(np.arange(past_len, past_len + seq, dtype=np.int64), (batch, seq)).copy()
        elif name == "encoder_hidden_states" and encoder is not None:
            feeds[name] = encoder[0]
        elif name == "encoder_attention_mask" and encoder is not None:
            feeds[name] = encoder[1]
        elif name == "use_cache_branch" and use_cache_branch is not None:
            feeds[name] = np.array([use_cache_branch])
        elif _is_past(name) and name in past:
            feeds[name] = past[name]
        elif _is_past(name):
            dtype = np.float16 if arg.type == "tensor(float16)" else np.float32
            feeds[name] = np.zeros((batch, arg.shape[1], empty_past_len, arg.shape[3]), dtype=dtype)
        else:
            raise VerifyError(f"don't know how to feed input {name!r}")
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


def _presents_as_past(outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Turn present.* outputs into the matching past inputs."""
    return {_past_name(k): v for k, v in outputs.items() if k.startswith("present")}


def _compare(label: str, actual: np.ndarray, expected: np.ndarray, atol: float) -> str:
    """Check logits agree within `atol`; return a one-line summary."""
    diff = float(np.max(np.abs(actual.astype(np.float32) - expected.astype(np.float32))))
    if not np.isfinite(diff) or diff > atol:
        raise VerifyError(f"{label}: max |diff| {diff:.3g} > atol {atol:g}")
    return f"{label} max|diff|={diff:.2g}"


def _check_present_len(outputs: dict[str, np.ndarray], expected: int) -> None:
    """Every self-attention present must cover `expected` positions on axis 2."""
    for name, value in outputs.items():
        if name.startswith("present") and ".encoder." not in name and value.shape[2] != expected:
            raise VerifyError(f"{name} has length {value.shape[2]} on axis 2, expected {expected}")


def _tokens(shape: tuple[int, int], start: int | None = None) -> np.ndarray:
    """Deterministic token ids in [2, VOCAB), optionally starting with `start`."""
    ids = np.random.default_rng(SEED).integers(2, VOCAB, size=shape, dtype=np.int64)
    if start is not None:
        ids[:, 0] = start
    return ids


def verify_decoder_only(folder: Path) -> list[str]:
    """model.onnx: uncached 6 tokens vs 5-token step 0 + 1-token step 1 with the cache fed back."""
    session = _session(folder / "model.onnx")
    atol = ATOL[_float_dtype(session)]
    ids = _tokens((2, 6))
    full = _run(session, ids, {}, past_len=0)
    step0 = _run(session, ids[:, :5], {}, past_len=0)
    step1 = _run(session, ids[:, 5:], _presents_as_past(step0), past_len=5)
    _check_present_len(step1, 6)
    return [
        _compare("step0 vs full", step0["logits"], full["logits"][:, :5], atol),
        _compare("step1 vs full", step1["logits"][:, -1], full["logits"][:, -1], atol),
    ]


def _encode(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """Run encoder_model.onnx on fixed tokens; return (hidden states, attention mask)."""
    encoder = _session(folder / "encoder_model.onnx")
    ids = _tokens((2, 7))
    mask = np.ones_like(ids)
    (hidden,) = encoder.run(["last_hidden_state"], {"input_ids": ids, "attention_mask": mask})
    return hidden, mask


def _decoder_ids(folder: Path) -> np.ndarray:
    """4 decoder tokens starting with the config's decoder_start_token_id."""
    start = json.loads((folder / "config.json").read_text())["decoder_start_token_id"]
    return _tokens((2, 4), start=start)


def verify_seq2seq_unmerged(folder: Path) -> list[str]:
    """encoder, then decoder_model on 3 tokens and decoder_with_past_model on the 4th vs decoder_model on 4."""
    encoder_out = _encode(folder)
    ids = _decoder_ids(folder)
    decoder = _session(folder / "decoder_model.onnx")
    with_past = _session(folder / "decoder_with_past_model.onnx")
    atol = ATOL[_float_dtype(decoder)]
    full = _run(decoder, ids, {}, past_len=0, encoder=encoder_out)
    step0 = _run(decoder, ids[:, :3], {}, past_len=0, encoder=encoder_out)
    step1 = _run(with_past, ids[:, 3:], _presents_as_past(step0), past_len=3, encoder=encoder_out)
    _check_present_len(step1, 4)
    return [
        _compare("unmerged step0 vs full", step0["logits"], full["logits"][:, :3], atol),
        _compare("unmerged step1 vs full", step1["logits"][:, -1], full["logits"][:, -1], atol),
    ]


def verify_seq2seq_merged(folder: Path) -> list[str]:
    """encoder, then decoder_model_merged: use_cache_branch False (empty past) then True with the cache."""
    encoder_out = _encode(folder)
    ids = _decoder_ids(folder)
    merged = _session(folder / "decoder_model_merged.onnx")
    atol = ATOL[_float_dtype(merged)]
    no_cache = {"past_len": 0, "encoder": encoder_out, "use_cache_branch": False}
    full = _run(merged, ids, {}, **no_cache)
    step0 = _run(merged, ids[:, :3], {}, **no_cache)
    step0_dummy1 = _run(merged, ids[:, :3], {}, empty_past_len=1, **no_cache)
    step1 = _run(merged, ids[:, 3:], _presents_as_past(step0), past_len=3, encoder=encoder_out,
                 use_cache_branch=True)
    _check_present_len(step1, 4)
    return [
        _compare("merged step0 vs full", step0["logits"], full["logits"][:, :3], atol),
        _compare("merged step0 past len 1 vs len 0", step0_dummy1["logits"], step0["logits"], atol),
        _compare("merged step1 vs full", step1["logits"][:, -1], full["logits"][:, -1], atol),
    ]


def verify_seq2seq_all(folder: Path) -> list[str]:
    """Verify both the unmerged pair and the merged decoder (optimum's default seq2seq layout)."""
    return verify_seq2seq_unmerged(folder) + verify_seq2seq_merged(folder)


# --------------------------------------------------------------------------- driver


@dataclass(frozen=True)
class Fixture:
    """A fixture folder: how to build it and how to check it."""

    name: str
    build: Callable[[Path], Settings]
    verify: Callable[[Path], list[str]]


FIXTURES: dict[str, Fixture] = {
    f.name: f
    for f in (
        Fixture("optimum-gpt2", build_gpt2, verify_decoder_only),
        Fixture("optimum-llama-gqa", build_llama_gqa, verify_decoder_only),
        Fixture("optimum-qwen3", build_qwen3, verify_decoder_only),
        Fixture("optimum-marian", build_marian, verify_seq2seq_unmerged),
        Fixture("optimum-marian-merged", build_marian_merged, verify_seq2seq_merged),
        Fixture("optimum-t5", build_t5, verify_seq2seq_all),
        Fixture("torch-legacy", build_torch_legacy, verify_decoder_only),
        Fixture("torch-dynamo", build_torch_dynamo, verify_decoder_only),
        Fixture("optimum-llama-fp16", build_llama_fp16, verify_decoder_only),
    )
}


def fresh_folder(root: Path, name: str) -> Path:
    """An empty fixture folder (rebuilt from scratch every time, so nothing stale survives)."""
    folder = root / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


def print_sizes(folder: Path) -> None:
    for path in sorted(folder.iterdir()):
        print(f"    {path.name:32s} {path.stat().st_size:>8,d} B")


def build_each(names: list[str], build: Callable[[str], None], what: str) -> int:
    """Build every named fixture, reporting and continuing past failures; the process exit code."""
    failed: list[str] = []
    started = time.perf_counter()
    for index, name in enumerate(names, 1):
        print(f"[{index}/{len(names)}] {name}", flush=True)
        t0 = time.perf_counter()
        try:
            build(name)
        except Exception as exc:  # report and continue with the other fixtures
            failed.append(name)
            print(f"    FAILED: {type(exc).__name__}: {exc}", flush=True)
        else:
            print(f"    ok ({time.perf_counter() - t0:.1f}s)", flush=True)
    print(f"{len(names) - len(failed)}/{len(names)} {what} ok in {time.perf_counter() - started:.1f}s")
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


def make_fixture(fixture: Fixture, root: Path, verify: bool) -> None:
    """(Re)build one fixture folder from scratch, write export_settings.json, optionally verify."""
    folder = fresh_folder(root, fixture.name)
    settings = fixture.build(folder)
    settings = {"fixture": fixture.name, **settings}
    (folder / "export_settings.json").write_text(json.dumps(settings, indent=2) + "\n")
    print_sizes(folder)
    strays = [p.name for p in folder.iterdir() if p.suffix not in (".onnx", ".json")]
    if strays:
        raise RuntimeError(f"unexpected files written: {strays}")
    for model in sorted(folder.glob("*.onnx")):
        onnx.checker.check_model(str(model))
    if verify:
        for line in fixture.verify(folder):
            print(f"    verify: {line}")


def _quiet() -> None:
    """Silence tracer/deprecation warnings and library chatter; keep optimum's own warnings."""
    warnings.simplefilter("ignore")
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "fixtures",
                        help="output root (default: fixtures/ in the repository)")
    parser.add_argument("--only", nargs="+", choices=sorted(FIXTURES), metavar="NAME",
                        help=f"build only these fixtures: {', '.join(FIXTURES)}")
    parser.add_argument("--verify", action=argparse.BooleanOptionalAction, default=True,
                        help="run each model in onnxruntime, cached vs uncached (default: on)")
    args = parser.parse_args(argv)
    _quiet()
    torch.set_num_threads(1)
    return build_each(args.only or list(FIXTURES), lambda name: make_fixture(FIXTURES[name], args.out, args.verify), "fixtures")


def _reexec_with_fixed_hash_seed() -> None:
    """Restart under PYTHONHASHSEED=0: optimum's merge_decoders names shared weights in set order."""
    if os.environ.get("PYTHONHASHSEED") != "0":
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable, *sys.argv])


if __name__ == "__main__":
    _reexec_with_fixed_hash_seed()
    sys.exit(main())
