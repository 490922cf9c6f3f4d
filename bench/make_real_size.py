#!/usr/bin/env python
"""Build, on demand, random-weight decoders of real sizes and export them with optimum.

Not committed and not run by CI: the outputs are gigabytes. Each preset is a transformers config
with random weights (seed 0), saved with save_pretrained (the folder `verify` takes as its source),
then exported with optimum (which writes external data by itself past 2 GB). --no-dynamic-axes
also writes a static-shape export (optimum `no_dynamic_axes=True`) for `fix` to repair.

    .venv/bin/python bench/make_real_size.py --out /tmp/onnxdoctor-real                 # qwen3-0.6b
    .venv/bin/python bench/make_real_size.py --preset llama-32 llama-80 --out /tmp/onnxdoctor-real

Presets:
  qwen3-0.6b  Qwen3-0.6B shape: 28 layers, hidden 1024, 16 query / 8 KV heads, head_dim 128,
              vocab 151,936 (about 2.4 GB fp32: external data)
  llama-32    Llama-style, 32 layers, hidden 512 (about 0.5 GB, inline weights)
  llama-80    Llama-style, 80 layers, hidden 1024 (about 3.9 GB, external data)
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import argparse
import logging
import sys
import time
import warnings
from pathlib import Path
from typing import Any

PRESETS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "qwen3-0.6b": ("Qwen3Config", "Qwen3ForCausalLM", {
        "vocab_size": 151_936, "hidden_size": 1024, "intermediate_size": 3072, "num_hidden_layers": 28,
        "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128, "max_position_embeddings": 40_960,
        "tie_word_embeddings": True, "rope_theta": 1_000_000.0,
    }),
    "llama-32": ("LlamaConfig", "LlamaForCausalLM", {
        "vocab_size": 32_000, "hidden_size": 512, "intermediate_size": 1536, "num_hidden_layers": 32,
        "num_attention_heads": 8, "num_key_value_heads": 2, "max_position_embeddings": 2048,
    }),
    "llama-80": ("LlamaConfig", "LlamaForCausalLM", {
        "vocab_size": 32_000, "hidden_size": 1024, "intermediate_size": 2816, "num_hidden_layers": 80,
        "num_attention_heads": 16, "num_key_value_heads": 4, "max_position_embeddings": 2048,
    }),
}
TASK = "text-generation-with-past"


def save_source(preset: str, out: Path) -> Path:
    """The random-weight Hugging Face checkpoint (config + safetensors), the source `verify` reads."""
    if (out / "config.json").exists():
        return out
    import torch
    import transformers

    config_class, model_class, kwargs = PRESETS[preset]
    config = getattr(transformers, config_class)(**kwargs)
    torch.manual_seed(0)
    model = getattr(transformers, model_class)(config).eval()
    model.save_pretrained(out)
    del model
    return out


def export(source: Path, out: Path, no_dynamic_axes: bool = False) -> Path:
    """optimum export; a static one (batch 1, sequence 1 with past, as optimum's dummy inputs) on request."""
    if (out / "model.onnx").exists() and (out / ".complete").exists():
        return out
    from optimum.exporters.onnx import main_export

    # no_post_process: optimum's post-processing (deduplicating tied embeddings) re-serializes the model
    # in one protobuf and fails past 2 GB ("Failed to serialize proto") for tied Qwen3 weights.
    flags: dict[str, Any] = {"no_post_process": True}
    if no_dynamic_axes:
        flags["no_dynamic_axes"] = True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            main_export(model_name_or_path=str(source), output=str(out), task=TASK, do_validation=False, **flags)
        finally:
            logging.disable(logging.NOTSET)
    (out / ".complete").touch()
    return out


def build(preset: str, root: Path, no_dynamic_axes: bool) -> dict[str, Path]:
    """root/<preset>/{source,onnx[,onnx-static]}; what exists already is kept (re-runs are cheap)."""
    base = root / preset
    made = {"source": save_source(preset, base / "source")}
    made["onnx"] = export(made["source"], base / "onnx")
    if no_dynamic_axes:
        made["onnx-static"] = export(made["source"], base / "onnx-static", no_dynamic_axes=True)
    return made


def folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1024 / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", nargs="+", default=["qwen3-0.6b"], choices=sorted(PRESETS))
    parser.add_argument("--out", type=Path, required=True, help="where to build (gigabytes; not the repository)")
    parser.add_argument("--no-dynamic-axes", action="store_true", help="also write a static-shape export for `fix`")
    args = parser.parse_args()
    for preset in args.preset:
        started = time.perf_counter()
        made = build(preset, args.out, args.no_dynamic_axes)
        listing = ", ".join(f"{kind} {folder_mb(path):.0f} MB" for kind, path in made.items())
        print(f"{preset}: {listing} in {time.perf_counter() - started:.0f} s -> {args.out / preset}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
