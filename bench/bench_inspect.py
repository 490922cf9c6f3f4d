"""Benchmark: `inspect` is light (imports, memory) and linear in the graph, up to real sizes.

1. Import time: Python + `import onnx` (which imports ml_dtypes: 0.7 costs far more than 0.6) and
   `import onnxdoctor.engine`, each a fresh process.
2. A decoder-shaped model of about --size-mb MB of inline weights: inspect must not read them
   (wall time and peak RSS next to `onnx.load` of the same file).
3. Scaling: inspect (in-process, import excluded) on synthetic decoders of 20, 40, 80 and 160 layers
   (bench's real attention graph, small weights); prints ms per layer and the per-node cost at the
   largest size over the smallest (linear: about 1).
4. With --real-root: the Llama-style optimum exports of make_real_size.py (llama-32: 32 layers,
   ~8,000 nodes, ~0.5 GB inline weights; llama-80: 80 layers, ~20,000 nodes, ~3.9 GB external data),
   built there on first use (minutes, gigabytes); whole-process wall time and peak RSS, median of
   --repeat, with the target (<= 0.5 s, <= 150 MB).

    .venv/bin/python bench/bench_inspect.py                                   # 1-3
    .venv/bin/python bench/bench_inspect.py --real-root /tmp/onnxdoctor-real  # 1-4
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# VmHWM (peak resident memory of this process image) rather than ru_maxrss, which Linux carries
# over from the parent across fork + exec.
CHILD = """
import json, time
start = time.perf_counter()
{body}
elapsed = time.perf_counter() - start
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
print(json.dumps({{"seconds": elapsed, "peak_rss_mb": int(status["VmHWM"].split()[0]) / 1024}}))
"""


def build_big_decoder(path: Path, size_mb: int, layers: int = 8) -> None:
    """Layers of Gather-able weight matrices plus past/present Concat pairs, weights inline."""
    per_layer = size_mb * 1024 * 1024 // 4 // layers
    rows = per_layer // 1024
    nodes, inits, inputs, outputs = [], [], [], []
    inputs.append(helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]))
    for layer in range(layers):
        weight = numpy_helper.from_array(np.full((rows, 1024), layer, dtype=np.float32), f"w{layer}")
        inits.append(weight)
        for part in ("key", "value"):
            past, present = f"past_key_values.{layer}.{part}", f"present.{layer}.{part}"
            inputs.append(helper.make_tensor_value_info(past, TensorProto.FLOAT, ["batch", 2, "past", 8]))
            outputs.append(helper.make_tensor_value_info(present, TensorProto.FLOAT, ["batch", 2, "past + seq", 8]))
            nodes.append(helper.make_node("Concat", [past, past], [present], axis=2))
    nodes.append(helper.make_node("Gather", ["w0", "input_ids"], ["logits"]))
    outputs.insert(0, helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "seq", 1024]))
    graph = helper.make_graph(nodes, "big", inputs, outputs, inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def measure(body: str, repeat: int = 1) -> dict[str, float]:
    """A fresh process running `body`: median wall time (perf_counter inside, so Python start is
    excluded; see whole_process) and peak RSS."""
    runs = []
    for _ in range(repeat):
        out = subprocess.run([sys.executable, "-c", CHILD.format(body=body)], capture_output=True, text=True, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


def whole_process(args: list[str], repeat: int) -> dict[str, float]:
    """`python ARGS...` from start to exit: median wall time, CPU time (user + sys: on a shared machine
    it says more than wall time) and peak RSS (GNU time's %M is VmHWM)."""
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        out = subprocess.run(["/usr/bin/time", "-f", "%U %S %M", sys.executable, *args], capture_output=True, text=True)
        user, system, rss = out.stderr.strip().splitlines()[-1].split()
        runs.append({"seconds": time.perf_counter() - started, "cpu_seconds": float(user) + float(system), "peak_rss_mb": int(rss) / 1024})
        if out.returncode not in (0, 1):
            raise SystemExit(f"{' '.join(args)} failed: {out.stderr.strip().splitlines()[-3:]}")
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


def shown(timing: dict[str, float]) -> str:
    return f"{timing['seconds']:.3f} s wall, {timing['cpu_seconds']:.2f} s CPU, {timing['peak_rss_mb']:.0f} MB"


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def compile_bytecode() -> None:
    """Write onnxdoctor's .pyc files first, as an installed package has them: where PYTHONDONTWRITEBYTECODE
    is set (this build machine sets it), every run would otherwise recompile each edited module."""
    import compileall

    import onnxdoctor

    compileall.compile_dir(str(Path(onnxdoctor.__file__).parent), quiet=1)


def imports(repeat: int) -> None:
    version = importlib.metadata.version("ml_dtypes")
    python = whole_process(["-c", "pass"], repeat)
    onnx_only = whole_process(["-c", "import onnx"], repeat)
    engine = whole_process(["-c", "import onnxdoctor.engine"], repeat)
    tiny = whole_process(["-m", "onnxdoctor", "inspect", str(Path(__file__).resolve().parents[1] / "fixtures" / "optimum-gpt2"), "--format", "json"], repeat)
    print(f"## imports (whole process, median of {repeat}; ml_dtypes {version})")
    print(f"python -c pass                   : {shown(python)}")
    print(f"python -c 'import onnx'          : {shown(onnx_only)} (onnx imports onnx.helper -> ml_dtypes; inspect does not import onnx)")
    print(f"python -c 'import onnxdoctor.engine': {shown(engine)}")
    print(f"inspect fixtures/optimum-gpt2    : {shown(tiny)} (the CLI's fixed cost: imports, a 100 KB model)")


def inline_weights(size_mb: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        build_big_decoder(path, size_mb)
        size = path.stat().st_size / 1024 / 1024
        baseline = measure("import onnxdoctor.engine")
        inspect = measure(f"from onnxdoctor.engine import inspect_path; inspect_path({str(path)!r})")
        full = measure(f"import onnx; onnx.load({str(path)!r})")
    print(f"## inline weights: {size:.0f} MB")
    print(f"import only          : {baseline['seconds']:.3f} s, peak RSS {baseline['peak_rss_mb']:.0f} MB")
    print(f"onnxdoctor inspect   : {inspect['seconds']:.3f} s, peak RSS {inspect['peak_rss_mb']:.0f} MB")
    print(f"onnx.load (for scale): {full['seconds']:.3f} s, peak RSS {full['peak_rss_mb']:.0f} MB")


def scaling(layer_counts: list[int], repeat: int) -> None:
    from onnxdoctor.testing.synth import DecoderSpec, build_decoder

    print(f"## scaling: inspect_path in-process (import excluded), median of {repeat}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for layers in layer_counts:
            path = Path(tmp) / f"deep{layers}.onnx"
            onnx.save(build_decoder(DecoderSpec(layers=layers, heads=8, kv_heads=2, head_dim=8, vocab=32)), path)
            nodes = len(onnx.load(str(path), load_external_data=False).graph.node)
            timing = measure(f"import onnxdoctor.engine\nstart = time.perf_counter()\n"
                             f"from onnxdoctor.engine import inspect_path; inspect_path({str(path)!r})", repeat)
            rows.append((layers, nodes, timing["seconds"]))
            print(f"{layers:4d} layers, {nodes:6d} nodes: {timing['seconds'] * 1000:7.1f} ms ({timing['seconds'] / nodes * 1e6:.1f} us per node)")
    xs, ys = [r[0] for r in rows], [r[2] for r in rows]
    mean_x, mean_y = statistics.mean(xs), statistics.mean(ys)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sum((x - mean_x) ** 2 for x in xs)
    growth = (rows[-1][2] / rows[-1][1]) / (rows[0][2] / rows[0][1])
    print(f"slope: {slope * 1000:.2f} ms per layer; per-node cost at {xs[-1]} layers / at {xs[0]}: {growth:.2f}x "
          f"(target <= 1.5x: linear) {verdict(growth <= 1.5)}")


def real_sizes(root: Path, repeat: int) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from make_real_size import build

    print(f"## real sizes: `python -m onnxdoctor inspect MODEL --format json`, whole process, median of {repeat}")
    background = "a forked child (Linux)" if sys.platform.startswith("linux") else "in-process (not Linux)"
    print(f"shape inference runs in {background}; {os.cpu_count()} CPUs")
    for preset in ("llama-32", "llama-80"):
        folder = build(preset, root, no_dynamic_axes=False)["onnx"]
        model = folder / "model.onnx"
        nodes = len(onnx.load(str(model), load_external_data=False).graph.node)
        weights = sum(f.stat().st_size for f in folder.iterdir() if f.name.startswith("model.onnx")) / 1e9
        external = "external data" if (folder / "model.onnx_data").exists() else "inline weights"
        timing = whole_process(["-m", "onnxdoctor", "inspect", str(model), "--format", "json"], repeat)
        ok = timing["seconds"] <= 0.5 and timing["peak_rss_mb"] <= 150
        print(f"{preset}: {nodes} nodes, {weights:.2f} GB {external}: {shown(timing)} "
              f"(target <= 0.5 s, <= 150 MB) {verdict(ok)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=500)
    parser.add_argument("--layers", type=int, nargs="+", default=[20, 40, 80, 160])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--real-root", type=Path, default=None, help="where make_real_size.py's llama-32 / llama-80 live (built if missing)")
    args = parser.parse_args()
    compile_bytecode()
    imports(args.repeat)
    inline_weights(args.size_mb)
    scaling(args.layers, args.repeat)
    if args.real_root is not None:
        real_sizes(args.real_root, args.repeat)


if __name__ == "__main__":
    main()
