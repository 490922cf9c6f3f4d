"""Benchmark: `inspect` on a large model with inline weights must not read the weights.

Builds a decoder-shaped model of about --size-mb MB of inline weights in a temp folder (a real
optimum layout: past/present per layer), then times `inspect` in a fresh process and reports its
wall time and peak resident memory, next to `onnx.load` of the same file for scale.

    .venv/bin/python bench/bench_inspect.py --size-mb 500 --layers 80

--layers also times inspect on a synthetic 80-layer decoder (real attention graph, small weights):
the graph analyses (shape inference, present tracing, Reshape provenance) must stay linear in layers.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
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


def measure(body: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", CHILD.format(body=body)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=500)
    parser.add_argument("--layers", type=int, default=80)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        build_big_decoder(path, args.size_mb)
        size = path.stat().st_size / 1024 / 1024
        baseline = measure("import onnxdoctor.engine")
        inspect = measure(f"from onnxdoctor.engine import inspect_path; inspect_path({str(path)!r})")
        full = measure(f"import onnx; onnx.load({str(path)!r})")
    print(f"model: {size:.0f} MB of inline weights")
    print(f"import only         : {baseline['seconds']:.3f} s, peak RSS {baseline['peak_rss_mb']:.0f} MB")
    print(f"onnxdoctor inspect  : {inspect['seconds']:.3f} s, peak RSS {inspect['peak_rss_mb']:.0f} MB")
    print(f"onnx.load (for scale): {full['seconds']:.3f} s, peak RSS {full['peak_rss_mb']:.0f} MB")
    from onnxdoctor.testing.synth import DecoderSpec, build_decoder

    with tempfile.TemporaryDirectory() as tmp:
        deep = Path(tmp) / "deep.onnx"
        onnx.save(build_decoder(DecoderSpec(layers=args.layers, heads=8, kv_heads=2, head_dim=8, vocab=32)), deep)
        nodes = len(onnx.load(str(deep), load_external_data=False).graph.node)
        timing = measure(f"from onnxdoctor.engine import inspect_path; inspect_path({str(deep)!r})")
    print(f"inspect, {args.layers}-layer graph ({nodes} nodes): {timing['seconds']:.3f} s (import included)")


if __name__ == "__main__":
    main()
