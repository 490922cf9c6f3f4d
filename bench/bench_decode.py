"""Benchmark: `onnxdoctor bench` against a bare, hand-written ONNX Runtime loop of the same calls.

bench times every call with the driver's per-call Timing (feeds built by the reference protocol,
presents fed back, greedy argmax). The floor is the same decode written by hand: one
InferenceSession with the same options, `session.run` on the same feeds, timed with perf_counter
around the call. Target: bench's per-token median within 10% of the bare loop's (the median of the per-round ratios). Each round runs one
decode of each, in a random order, with both sessions alive, so a loaded machine slows both alike;
medians and their spread are printed.
Also prints bench's medians and spread on the bundled fixtures.

    .venv/bin/python bench/bench_decode.py                          # Qwen3-shaped, 32 layers, hidden 512
    .venv/bin/python bench/bench_decode.py --layers 32 --hidden 256 --rounds 25 --threads 0
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

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def build(root: Path, layers: int, hidden: int, vocab: int) -> Path:
    """A medium decoder from a transformers config with random weights, exported by optimum."""
    import torch
    import transformers
    from optimum.exporters.onnx import main_export

    config = transformers.Qwen3Config(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=hidden // 64, num_key_value_heads=max(1, hidden // 128), head_dim=64, max_position_embeddings=1024,
    )
    torch.manual_seed(0)
    transformers.Qwen3ForCausalLM(config).eval().save_pretrained(root / "source")
    main_export(str(root / "source"), output=root / "onnx", task="text-generation-with-past", do_validation=False)
    return root / "onnx"


class BareLoop:
    """The decode by hand: optimum's decoder-only names, empty pasts at step 0, presents fed back, greedy."""

    def __init__(self, model: Path, prompt_len: int, new_tokens: int, threads: int | None, vocab: int, seed: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()  # graph optimization ON (ORT's default), as bench runs by default
        options.log_severity_level = 4
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(model), sess_options=options, providers=["CPUExecutionProvider"])
        self.names = [o.name for o in self.session.get_outputs()]
        self.pasts = [i.name for i in self.session.get_inputs() if i.name.startswith("past_key_values")]
        shape = next(i.shape for i in self.session.get_inputs() if i.name == self.pasts[0])
        self.heads, self.head_dim = shape[1], shape[3]
        self.prompt = np.random.default_rng(seed).integers(0, vocab, (1, prompt_len)).astype(np.int64)
        self.new_tokens = new_tokens

    def run(self) -> list[float]:
        """Seconds of each decode step's session.run (step 0, the prefill, left out)."""
        prompt_len = self.prompt.shape[1]
        feeds = {
            "input_ids": self.prompt,
            "attention_mask": np.ones((1, prompt_len), np.int64),
            "position_ids": np.arange(prompt_len, dtype=np.int64)[None],
            **{name: np.zeros((1, self.heads, 0, self.head_dim), np.float32) for name in self.pasts},
        }
        seconds = []
        length = prompt_len
        for _step in range(self.new_tokens + 1):
            started = time.perf_counter()
            values = self.session.run(self.names, feeds)
            seconds.append(time.perf_counter() - started)
            outputs = dict(zip(self.names, values))
            token = outputs["logits"][:, -1].argmax(-1).astype(np.int64)[:, None]
            length += 1
            feeds = {
                "input_ids": token,
                "attention_mask": np.ones((1, length), np.int64),
                "position_ids": np.array([[length - 1]], np.int64),
                **{name: outputs[name.replace("past_key_values", "present")] for name in self.pasts},
            }
        return seconds[1:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--prompt-len", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=41, help="rounds of one bench decode and one bare-loop decode, in a random order")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads on both sides (0: ONNX Runtime's default)")
    parser.add_argument("--export", type=Path, default=None, help="an existing export of the medium decoder (skips the build)")
    parser.add_argument("--skip-fixtures", action="store_true")
    args = parser.parse_args()
    args.threads = args.threads or None
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    from onnxdoctor.perf.bench import Bencher, BenchOptions, bench

    if not args.skip_fixtures:
        print("bench on the bundled fixtures (per-token median; spread = (max - min) / median of 5 per-run medians):")
        for fixture in ("optimum-gpt2", "optimum-qwen3", "optimum-llama-gqa", "optimum-marian", "optimum-t5"):
            result = bench(FIXTURES / fixture, BenchOptions(prompt_len=args.prompt_len, new_tokens=args.new_tokens, repeat=5, threads=args.threads))
            s = result.per_token_spread
            print(f"  {fixture:22s} {result.per_token_median_s * 1e3:7.3f} ms/token  runs {s.low * 1e3:.3f}-{s.high * 1e3:.3f} ms  spread {s.relative:5.1%}  "
                  f"{result.tokens_per_s:8.0f} tokens/s")

    with tempfile.TemporaryDirectory() as tmp:
        export = args.export
        if export is None:
            started = time.perf_counter()
            export = build(Path(tmp), args.layers, args.hidden, args.vocab)
            print(f"built and exported the medium decoder in {time.perf_counter() - started:.0f} s")
        options = BenchOptions(prompt_len=args.prompt_len, new_tokens=args.new_tokens, threads=args.threads)
        bare = BareLoop(export / "model.onnx", args.prompt_len, args.new_tokens, args.threads, args.vocab, 0)
        order = np.random.default_rng(1)
        with Bencher(export, options) as bencher:
            bencher.run(), bare.run()  # one warm-up each
            ours: list[float] = []  # per-decode medians
            theirs: list[float] = []
            for _ in range(args.rounds):  # one decode each per round, in a random order
                for side in order.permutation(2):
                    if side == 0:
                        ours.append(statistics.median(bencher.run().step_s))
                    else:
                        theirs.append(statistics.median(bare.run()))
            runs = [bencher.run() for _ in range(3)]
            result = bencher.result(runs)
        a, b = statistics.median(ours), statistics.median(theirs)
        ratios = sorted(o / t for o, t in zip(ours, theirs))
        print(f"model: Qwen3-shaped, {args.layers} layers, hidden {args.hidden}, vocab {args.vocab}; batch 1, {args.prompt_len}-token prompt, "
              f"{args.new_tokens} new tokens, threads {args.threads or 'default'}, graph optimization ON on both sides; "
              f"{args.rounds} rounds, one decode of each per round in a random order")
        print(f"bench per-token median: {a * 1e3:.3f} ms (per-decode medians {min(ours) * 1e3:.3f}-{max(ours) * 1e3:.3f}, "
              f"spread {(max(ours) - min(ours)) / a:.1%})")
        print(f"bare ORT loop per-token median: {b * 1e3:.3f} ms ({min(theirs) * 1e3:.3f}-{max(theirs) * 1e3:.3f}, "
              f"spread {(max(theirs) - min(theirs)) / b:.1%})")
        paired = statistics.median(ratios)
        print(f"ratio bench / bare loop, paired (median of the per-round ratios, the figure a loaded machine disturbs least): {paired:.3f} "
              f"({ratios[len(ratios) // 10]:.3f}-{ratios[-1 - len(ratios) // 10]:.3f} without the top and bottom 10%); "
              f"ratio of the two medians: {a / b:.3f}; target within 10%")
        print(f"bench's own figures (3 more runs): session {result.session_s:.2f} s, prefill {result.prefill.median * 1e3:.2f} ms, "
              f"{result.per_token_median_s * 1e3:.3f} ms/token (p90 {result.per_token_p90_s * 1e3:.3f}), {result.tokens_per_s:.1f} tokens/s, "
              f"KV {result.kv_bytes_per_token} B/token, {result.file_bytes / 2**20:.0f} MiB on disk, peak RSS {(result.peak_rss or 0) / 2**20:.0f} MiB")
    return 0 if abs(paired - 1) <= 0.10 else 1


if __name__ == "__main__":
    raise SystemExit(main())
