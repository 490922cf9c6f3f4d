"""Benchmark: verify's wall time next to running the PyTorch model alone on the same tokens.

verify inspects the export, decodes the source greedily (PyTorch, through the driver's HF backend),
then the export on the same tokens (ONNX Runtime, optimized session), and compares every step and layer. The floor is
the PyTorch model alone: a bare transformers loop (model(...) with its DynamicCache) over the same
prompt and the same number of steps. Target: verify <= 1.5x that floor.

    .venv/bin/python bench/bench_verify.py                          # Qwen3-shaped, 4 layers, hidden 512
    .venv/bin/python bench/bench_verify.py --layers 8 --hidden 1024 --steps 16
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import argparse
import logging
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np


def build(root: Path, layers: int, hidden: int, vocab: int) -> tuple[Path, Path]:
    import torch
    import transformers
    from optimum.exporters.onnx import main_export

    config = transformers.Qwen3Config(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=hidden // 64, num_key_value_heads=max(1, hidden // 128), head_dim=64, max_position_embeddings=512,
    )
    torch.manual_seed(0)
    transformers.Qwen3ForCausalLM(config).eval().save_pretrained(root / "source")
    main_export(str(root / "source"), output=root / "onnx", task="text-generation-with-past", do_validation=False)
    return root / "source", root / "onnx"


def torch_alone(source: Path, tokens: np.ndarray, mask: np.ndarray, steps: int, prompt_len: int) -> float:
    """The same greedy decode with transformers directly: the floor verify is measured against."""
    import torch
    import transformers

    started = time.perf_counter()  # loading counts on both sides: verify loads the source too
    model = transformers.AutoModelForCausalLM.from_pretrained(source, attn_implementation="eager").eval()
    with torch.no_grad():
        ids = torch.from_numpy(tokens[:, :prompt_len])
        attention = torch.from_numpy(mask[:, :prompt_len])
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        out = model(input_ids=ids, attention_mask=attention, position_ids=positions, use_cache=True)
        for _ in range(steps):
            nxt = out.logits[:, -1].argmax(-1, keepdim=True)
            attention = torch.cat([attention, torch.ones_like(nxt)], dim=1)
            positions = attention.sum(-1, keepdim=True) - 1
            out = model(input_ids=nxt, attention_mask=attention, position_ids=positions, past_key_values=out.past_key_values, use_cache=True)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--vocab", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    from onnxdoctor.fidelity.verify import FidelityOptions, verify

    with tempfile.TemporaryDirectory() as tmp:
        source, export = build(Path(tmp), args.layers, args.hidden, args.vocab)
        options = FidelityOptions(steps=args.steps, batch=2, prompt_len=4)
        rng = np.random.default_rng(0)
        tokens = rng.integers(0, args.vocab, (2, 4 + args.steps)).astype(np.int64)
        mask = np.ones_like(tokens)
        mask[1, :2] = 0
        floors, walls = [], []
        for _ in range(args.repeat):
            floors.append(torch_alone(source, tokens, mask, args.steps, 4))
            started = time.perf_counter()
            report = verify(export, source, options=options)
            walls.append(time.perf_counter() - started)
            assert report.exit_code == 0, [f.message for f in report.findings]
        floor, wall = statistics.median(floors), statistics.median(walls)
        result = report.results[0]
        print(f"model: Qwen3-shaped, {args.layers} layers, hidden {args.hidden}, vocab {args.vocab}; {args.steps} steps, batch 2")
        print(f"PyTorch alone (greedy, same tokens): {floor:.2f} s (median of {args.repeat}: {', '.join(f'{x:.2f}' for x in floors)})")
        print(f"verify (inspect + load + source + export + compare): {wall:.2f} s ({', '.join(f'{x:.2f}' for x in walls)})")
        print(f"  inference inside it: source {result.reference.seconds:.2f} s, export {result.observed.seconds:.2f} s")
        print(f"ratio verify / PyTorch alone: {wall / floor:.2f}x (target <= 1.5x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
