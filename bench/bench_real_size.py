#!/usr/bin/env python
"""Benchmark: inspect, replay, verify and fix on a real-size decoder, each next to its floor.

Every figure is a whole process (Python start, imports, loading included), wall time and peak
resident memory (VmHWM), measured in this run beside the floor it is compared with:

  inspect  vs  `import onnx; onnx.load(model, load_external_data=False)` (a weight-less parse)
  replay   vs  a bare ONNX Runtime loop of the same steps (batch, prompt, session options as replay's)
  verify   vs  PyTorch alone: transformers' greedy decode of the same prompt and steps
  fix      vs  one optimum export of the same source (what the kept attempt costs at least)

Build the model first (gigabytes, not committed, not in CI), then run this once:

    .venv/bin/python bench/make_real_size.py --no-dynamic-axes --out /tmp/onnxdoctor-real
    .venv/bin/python bench/bench_real_size.py --root /tmp/onnxdoctor-real/qwen3-0.6b
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Runs the command (a module's main, or code) and writes the peak RSS on exit: of this process, or of
# any process it forked that ends through os._exit (inspect's shape-inference child, and inspect
# itself, which skips atexit), whichever is larger.
WRAPPER = """
import atexit, json, os, runpy, sys
def _peak():
    status = dict(line.split(":", 1) for line in open("/proc/self/status"))
    mine = int(status["VmHWM"].split()[0]) / 1024
    try:
        with open(os.environ["BENCH_PEAK"]) as handle:
            mine = max(mine, json.load(handle)["peak_rss_mb"])
    except (OSError, ValueError, KeyError):
        pass
    with open(os.environ["BENCH_PEAK"], "w") as handle:
        json.dump({"peak_rss_mb": mine}, handle)
atexit.register(_peak)
_exit = os._exit
def _exit_with_peak(code):
    _peak()
    _exit(code)
os._exit = _exit_with_peak
kind, what, *rest = sys.argv[1:]
if kind == "module":
    sys.argv = [what, *rest]
    runpy.run_module(what, run_name="__main__", alter_sys=True)
else:
    exec(compile(what, "<bench>", "exec"), {"__name__": "__main__", "ARGS": rest})
"""

BARE_ORT = """
import numpy as np, onnxruntime as ort
path, steps, batch, prompt = ARGS[0], int(ARGS[1]), int(ARGS[2]), int(ARGS[3])
options = ort.SessionOptions()
options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # as replay creates its sessions
options.add_session_config_entry("session.disable_prepacking", "1")
session = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
inputs = {i.name: i for i in session.get_inputs()}
pasts = [n for n in inputs if n.startswith("past_key_values.")]
shape = [d if isinstance(d, int) else None for d in inputs[pasts[0]].shape]
heads, head_dim = shape[1], shape[3]
names = [o.name for o in session.get_outputs()]
rng = np.random.default_rng(0)
ids = rng.integers(0, 1000, (batch, prompt)).astype(np.int64)
feeds = {n: np.zeros((batch, heads, 0, head_dim), np.float32) for n in pasts}
total = prompt
for step in range(steps + 1):
    feeds["input_ids"] = ids
    feeds["attention_mask"] = np.ones((batch, total), np.int64)
    if "position_ids" in inputs:
        feeds["position_ids"] = np.arange(total - ids.shape[1], total, dtype=np.int64)[None].repeat(batch, 0)
    out = dict(zip(names, session.run(names, feeds)))
    for n in pasts:
        feeds[n] = out[n.replace("past_key_values", "present")]
    ids = out["logits"][:, -1:].argmax(-1).astype(np.int64)
    total += 1
"""

TORCH_ALONE = """
import torch, transformers
source, steps, batch, prompt = ARGS[0], int(ARGS[1]), int(ARGS[2]), int(ARGS[3])
model = transformers.AutoModelForCausalLM.from_pretrained(source, attn_implementation="eager").eval()
with torch.no_grad():
    ids = torch.randint(0, 1000, (batch, prompt), generator=torch.Generator().manual_seed(0))
    attention = torch.ones_like(ids)
    out = model(input_ids=ids, attention_mask=attention, use_cache=True)
    for _ in range(steps):
        nxt = out.logits[:, -1].argmax(-1, keepdim=True)
        attention = torch.cat([attention, torch.ones_like(nxt)], dim=1)
        out = model(input_ids=nxt, attention_mask=attention, past_key_values=out.past_key_values, use_cache=True)
"""

OPTIMUM_EXPORT = """
import logging, warnings
warnings.simplefilter("ignore"); logging.disable(logging.WARNING)
from optimum.exporters.onnx import main_export
main_export(model_name_or_path=ARGS[0], output=ARGS[1], task="text-generation-with-past", do_validation=False, no_post_process=True)
"""


def run(kind: str, what: str, *args: str, quiet: bool = True) -> dict[str, object]:
    """One whole process: wall seconds, peak RSS in MB, exit status, its last stdout/stderr lines."""
    with tempfile.NamedTemporaryFile(suffix=".json") as peak:
        env = {**os.environ, "BENCH_PEAK": peak.name, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", WRAPPER, kind, what, *args], capture_output=True, text=True, env=env)
        wall = time.perf_counter() - started
        measured = json.loads(Path(peak.name).read_text() or "{}")
    result = {"seconds": wall, "peak_rss_mb": measured.get("peak_rss_mb"), "returncode": done.returncode}
    if done.returncode not in (0, 1) or not quiet:
        result["tail"] = (done.stdout + done.stderr).strip().splitlines()[-8:]
    return result


def line(name: str, measured: dict[str, object], floor: dict[str, object], target: str) -> str:
    seconds, floor_s = float(measured["seconds"]), float(floor["seconds"])  # type: ignore[arg-type]
    rss, floor_rss = measured["peak_rss_mb"], floor["peak_rss_mb"]
    memory = f", memory {float(rss) / float(floor_rss):.2f}x" if rss and floor_rss else ""  # type: ignore[arg-type]
    return (
        f"{name:<8} {seconds:8.2f} s {float(rss or 0):7.0f} MB (exit {measured['returncode']}) | floor {floor_s:8.2f} s "
        f"{float(floor_rss or 0):7.0f} MB | ratio {seconds / floor_s:.2f}x{memory}  [{target}]"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="a make_real_size.py preset folder (source, onnx, onnx-static)")
    parser.add_argument("--replay-steps", type=int, default=2)
    parser.add_argument("--verify-steps", type=int, default=8)
    parser.add_argument("--only", nargs="+", default=["inspect", "replay", "verify", "fix"])
    parser.add_argument("--json", type=Path, default=None, help="also write every measurement here")
    args = parser.parse_args()
    source, export, static = args.root / "source", args.root / "onnx", args.root / "onnx-static"
    model = str(export / "model.onnx")
    results: dict[str, object] = {}
    lines = []

    def progress(text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    if "inspect" in args.only:
        progress("inspect")
        floor = run("code", f"import onnx; onnx.load({model!r}, load_external_data=False)")
        measured = run("module", "onnxdoctor", "inspect", model, "--format", "json")
        results["inspect"] = {"measured": measured, "floor": floor}
        lines.append(line("inspect", measured, floor, "<= 0.5 s, <= 150 MB"))
    if "replay" in args.only:
        progress("replay")
        steps = str(args.replay_steps)
        floor = run("code", BARE_ORT, model, steps, "2", "4")
        measured = run("module", "onnxdoctor", "replay", model, "--steps", steps, "--format", "json")
        results["replay"] = {"measured": measured, "floor": floor}
        lines.append(line("replay", measured, floor, "<= 2x the bare loop, memory <= 1.2x"))
    if "verify" in args.only:
        progress("verify")
        steps = str(args.verify_steps)
        floor = run("code", TORCH_ALONE, str(source), steps, "2", "4")
        measured = run("module", "onnxdoctor", "verify", str(export), "--source", str(source), "--steps", steps, "--format", "json")
        results["verify"] = {"measured": measured, "floor": floor}
        lines.append(line("verify", measured, floor, "<= 1.5x PyTorch alone"))
    if "fix" in args.only:
        with tempfile.TemporaryDirectory(dir=args.root) as tmp:
            progress("fix: the floor, one optimum export")
            floor = run("code", OPTIMUM_EXPORT, str(source), str(Path(tmp) / "floor"))
            progress("fix of the --no-dynamic-axes export")
            measured = run("module", "onnxdoctor", "fix", str(static), "--source", str(source), "--out", str(Path(tmp) / "fix"), "--format", "json", quiet=False)
        results["fix"] = {"measured": measured, "floor": floor}
        lines.append(line("fix", measured, floor, "re-export + inspect + replay of the kept attempt"))
    for text in lines:
        print(text)
    for name, pair in results.items():
        for side in ("measured", "floor"):
            tail = pair[side].get("tail")  # type: ignore[index, union-attr]
            if tail:
                print(f"  {name} {side} output tail:", *tail, sep="\n    ")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
