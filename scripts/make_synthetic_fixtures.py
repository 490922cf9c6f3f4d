"""Write the committed synthetic decoder fixtures (onnxdoctor.testing.synth.FIXTURES).

Why: inspectors and docs need small, real, deterministic ONNX files in each export
convention and with each planted defect; regenerating them from specs keeps them
reviewable.  Needs onnxdoctor importable (installed, or PYTHONPATH=repo root).

Usage: python scripts/make_synthetic_fixtures.py [--out fixtures/synthetic]
"""

from __future__ import annotations

import argparse
from dataclasses import fields, replace
from pathlib import Path

from collections.abc import Callable

import numpy as np
import onnx
from onnx import helper, numpy_helper

from onnxdoctor.testing import contrib
from onnxdoctor.testing.synth import FIXTURES, DecoderSpec, build_decoder, rename_tensors

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "fixtures" / "synthetic"


def describe(spec: DecoderSpec) -> str:
    """The spec's non-default fields, for a readable one-line log."""
    default = DecoderSpec()
    changed = [f for f in fields(spec) if getattr(spec, f.name) != getattr(default, f.name)]
    return ", ".join(f"{f.name}={getattr(spec, f.name)!r}" for f in changed)


def no_kv_cache_decoder() -> onnx.ModelProto:
    """A decoder exported without a cache (like optimum's `text-generation` task): logits only.

    Why: the no-kv-cache rule (ODS001) needs a real decoder that recomputes every step.
    """
    model = build_decoder(replace(FIXTURES["plain-kv.onnx"], with_past=False))
    logits = [o for o in model.graph.output if o.name == "logits"]
    del model.graph.output[:]
    model.graph.output.extend(logits)
    return model


def _rewire_logits(model: onnx.ModelProto, build: Callable[[str, str], list[onnx.NodeProto]]) -> onnx.ModelProto:
    """Insert nodes between the graph's logits and its output (the last node computing it is renamed)."""
    raw = "logits_before_edit"
    for node in model.graph.node:
        node.output[:] = [raw if name == "logits" else name for name in node.output]
    model.graph.node.extend(build(raw, "logits"))
    return model


def fp16_logits_scaled(clip: float | None) -> onnx.ModelProto:
    """fp16 logits multiplied by 30000: overflow to inf (no clip) or saturate just under 65504 (clip).

    Why: the replay oracles for non-finite outputs (ODX404) and the fp16 range (ODX405) need a
    model whose logits really reach those values.
    """
    model = build_decoder(replace(FIXTURES["plain-kv.onnx"], dtype="float16"))

    def build(raw: str, out: str) -> list[onnx.NodeProto]:
        scale = helper.make_node("Constant", [], ["logit_scale"], value=numpy_helper.from_array(np.array(30000.0, np.float16)))
        if clip is None:
            return [scale, helper.make_node("Mul", [raw, "logit_scale"], [out])]
        bounds = [
            helper.make_node("Constant", [], ["clip_low"], value=numpy_helper.from_array(np.array(-clip, np.float16))),
            helper.make_node("Constant", [], ["clip_high"], value=numpy_helper.from_array(np.array(clip, np.float16))),
        ]
        return [scale, *bounds, helper.make_node("Mul", [raw, "logit_scale"], ["scaled"]), helper.make_node("Clip", ["scaled", "clip_low", "clip_high"], [out])]

    return _rewire_logits(model, build)


def ignores_attention_mask() -> onnx.ModelProto:
    """Every use of attention_mask replaced by ones: padding is attended, as in exports that drop the mask.

    Why: the padding oracle (ODX406) needs a model whose padded rows really differ.
    """
    model = build_decoder(FIXTURES["plain-kv.onnx"])
    for node in model.graph.node:
        node.input[:] = ["mask_ignored" if name == "attention_mask" else name for name in node.input]
    zero = helper.make_node("Constant", [], ["mask_zero"], value=numpy_helper.from_array(np.array(0, np.int64)))
    one = helper.make_node("Constant", [], ["mask_one"], value=numpy_helper.from_array(np.array(1, np.int64)))
    times = helper.make_node("Mul", ["attention_mask", "mask_zero"], ["mask_times_zero"])
    plus = helper.make_node("Add", ["mask_times_zero", "mask_one"], ["mask_ignored"])
    nodes = [zero, one, times, plus, *model.graph.node]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model


def default_names() -> onnx.ModelProto:
    """Cache I/O left with exporter default names (dynamo's past_0.. for *args, cat_N for outputs).

    Why: the unrecognized-cache rule (ODS005) needs a cache nobody named.
    """
    model = build_decoder(FIXTURES["plain-kv.onnx"])
    renames: dict[str, str] = {}
    for index, value in enumerate(v for v in model.graph.input if v.name.startswith("past_")):
        renames[value.name] = f"past_{index}"
    for index, value in enumerate(v for v in model.graph.output if v.name.startswith("present_")):
        renames[value.name] = f"cat_{2 * index + 1}"
    return rename_tensors(model, renames)


EXTRA: dict[str, tuple[Callable[[], onnx.ModelProto], str]] = {
    "unnamed-cache.onnx": (default_names, "cache inputs and outputs with exporter default names"),
    "no-kv-cache.onnx": (lambda: no_kv_cache_decoder(), "decoder without a cache (logits only)"),
    "defect-fp16-overflow.onnx": (lambda: fp16_logits_scaled(None), "fp16 logits overflow to inf"),
    "defect-fp16-near-limit.onnx": (lambda: fp16_logits_scaled(62000.0), "fp16 logits saturate at 62000"),
    "defect-ignores-attention-mask.onnx": (ignores_attention_mask, "attention_mask fed but ignored"),
}


def main(argv: list[str] | None = None) -> None:
    """Build, check and save every fixture, printing one line per file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="output folder (default: <repo>/fixtures/synthetic)"
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, spec in FIXTURES.items():
        model = build_decoder(spec)
        onnx.checker.check_model(model, full_check=spec.defect != "present_heads_mismatch")
        path = args.out / name
        onnx.save(model, path)
        print(f"wrote {path} ({path.stat().st_size / 1024:.1f} KB): {describe(spec)}")
    for name, (build, what) in EXTRA.items():
        path = args.out / name
        model = build()
        onnx.checker.check_model(model, full_check=True)
        onnx.save(model, path)
        print(f"wrote {path} ({path.stat().st_size / 1024:.1f} KB): {what}")
    for name, build in contrib.FIXTURES.items():
        model = build()
        onnx.checker.check_model(model, full_check=True)  # onnx has no com.microsoft schemas: those nodes go unchecked
        path = args.out / name
        onnx.save(model, path)
        print(f"wrote {path} ({path.stat().st_size / 1024:.1f} KB): {build.func.__name__}, {build.keywords}")


if __name__ == "__main__":
    main()
