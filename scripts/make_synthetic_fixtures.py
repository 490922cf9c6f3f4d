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

import onnx

from onnxdoctor.testing import contrib
from onnxdoctor.testing.synth import FIXTURES, DecoderSpec, build_decoder

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
    path = args.out / "no-kv-cache.onnx"
    model = no_kv_cache_decoder()
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, path)
    print(f"wrote {path} ({path.stat().st_size / 1024:.1f} KB): decoder without a cache (logits only)")
    for name, build in contrib.FIXTURES.items():
        model = build()
        onnx.checker.check_model(model, full_check=True)  # onnx has no com.microsoft schemas: those nodes go unchecked
        path = args.out / name
        onnx.save(model, path)
        print(f"wrote {path} ({path.stat().st_size / 1024:.1f} KB): {build.func.__name__}, {build.keywords}")


if __name__ == "__main__":
    main()
