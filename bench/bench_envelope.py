"""Benchmark: the precision envelopes, measured. How far healthy decoders drift in each regime, how far defects do.

For tiny (the committed fixtures) and medium (exported here with optimum from a transformers config,
random weights) decoders, every regime ORT's tools produce (onnxdoctor.numerics.quantize: int8 dynamic
per-tensor and per-channel, optimum's dynamic config, int4 MatMulNBits, static QDQ, fp16) is replayed:
the drift between cached and uncached runs and between a left-padded row and the row alone is read
from replay's comparisons, in units of the logits' spread (numerics.compare_logits), together with
the position sensitivity of the logits (ODX407's measure). Then defects are planted in the fp32 model
(layer 0's Concat swapped, layer 0's present without its past, the attention mask ignored), quantized
the same ways, and replayed: their drift must stay far outside the envelope.

    .venv/bin/python bench/bench_envelope.py                       # tiny + medium, every regime (~3 min)
    .venv/bin/python bench/bench_envelope.py --sizes tiny --json out.json

The envelopes in onnxdoctor/numerics/envelope.py and the table in README.md ("Numerics") come from
this output.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import argparse
import json
import logging
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from onnxdoctor.engine import inspect_path
from onnxdoctor.numerics.envelope import envelope_for
from onnxdoctor.numerics.metrics import position_sensitivity
from onnxdoctor.numerics.quantize import VARIANTS, quantize_folder
from onnxdoctor.replay.harness import Replayer, ReplayOptions
from onnxdoctor.testing.quantized import recorded_calibration, skipped_reason

REPO = Path(__file__).resolve().parent.parent
TINY = ["optimum-qwen3", "optimum-llama-gqa", "optimum-gpt2", "optimum-marian-merged"]
MEDIUM = {
    "medium-qwen3": ("Qwen3ForCausalLM", "Qwen3Config", {"vocab_size": 2048, "hidden_size": 256, "intermediate_size": 512,
                     "num_hidden_layers": 4, "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 32,
                     "max_position_embeddings": 256}),
    "medium-llama": ("LlamaForCausalLM", "LlamaConfig", {"vocab_size": 2048, "hidden_size": 256, "intermediate_size": 512,
                     "num_hidden_layers": 4, "num_attention_heads": 8, "num_key_value_heads": 2,
                     "max_position_embeddings": 256}),
}
DEFECTS = ("concat-swapped", "present-without-past", "mask-ignored")


def export_medium(name: str, out: Path) -> Path:
    """A random-weight decoder of medium size exported with optimum (text-generation-with-past)."""
    import torch
    import transformers
    from optimum.exporters.onnx import main_export

    model_cls, config_cls, config = MEDIUM[name]
    torch.manual_seed(0)
    model = getattr(transformers, model_cls)(getattr(transformers, config_cls)(**config)).eval()
    source = out / f"{name}-src"
    model.save_pretrained(source)
    target = out / name
    main_export(str(source), output=target, task="text-generation-with-past", device="cpu", do_validation=False)
    return target


def plant(folder: Path, out: Path, defect: str) -> Path:
    """Copy a decoder-only export with one defect planted in layer 0 (onnx-graphsurgeon)."""
    import onnx_graphsurgeon as gs

    out.mkdir(parents=True)
    for extra in folder.glob("*.json"):
        shutil.copy2(extra, out / extra.name)
    graph = gs.import_onnx(onnx.load(str(folder / "model.onnx")))
    outputs = {t.name: t for t in graph.outputs}
    if defect == "mask-ignored":
        mask = next(t for t in graph.inputs if t.name == "attention_mask")
        consumers = list(mask.outputs)
        zeros = graph.layer(op="Mul", inputs=[mask, np.array(0, dtype=np.int64)], outputs=["mask_times_zero"])[0]
        ones = graph.layer(op="Add", inputs=[zeros, np.array(1, dtype=np.int64)], outputs=["mask_ignored"])[0]
        for node in consumers:
            node.inputs = [ones if t is mask else t for t in node.inputs]
    else:
        for name in ("present.0.key", "present.0.value"):
            concat = outputs[name].inputs[0]
            if concat.op != "Concat":
                raise RuntimeError(f"{name} is produced by {concat.op}, not Concat")
            if defect == "concat-swapped":
                concat.inputs = list(reversed(concat.inputs))
            else:  # present-without-past: the output is the new K/V only; attention still reads the Concat
                new = next(t for t in concat.inputs if not isinstance(t, gs.Constant) and t not in graph.inputs)
                kept = concat.outputs[0]
                kept.name = f"{name}_concat"
                new.name, new.dtype, new.shape = name, np.float32, None
                graph.outputs[graph.outputs.index(kept)] = new
    onnx.save(gs.export_onnx(graph.cleanup()), str(out / "model.onnx"))
    return out


def measure(folder: Path, steps: int) -> dict[str, Any]:
    report = inspect_path(folder)
    replay = Replayer(report, ReplayOptions(steps=steps)).run()
    regime = next(f.context.regime for f in report.files if f.signature.kind == "decoder" and f.context)
    by_check: dict[str, list[dict[str, Any]]] = {}
    for item in replay.comparisons:
        by_check.setdefault(item["check"], []).append(item)
    logits = [l.reshape(-1, l.shape[-1]) for r in replay.results for l in r.logits if l.size]
    return {
        "regime": regime.kind,
        "envelope": envelope_for(regime).name,
        "envelope_scaled": envelope_for(regime).scaled,
        "cache": max((c["scaled"] for c in by_check.get("cache", [])), default=None),
        "padding": max((c["scaled"] for c in by_check.get("padding", [])), default=None),
        "self_noise": max((c["scaled"] for c in by_check.get("self-noise", [])), default=None),
        "top1_min": min((c["top1"] for check in ("cache", "padding") for c in by_check.get(check, [])), default=None),
        "sensitivity": position_sensitivity(np.concatenate(logits)) if logits else None,
        "codes": sorted({f"{f.code}:{f.severity.value}" for f in replay.findings + report.findings if f.severity.value != "info"}),
    }


def _fmt(value: float | None) -> str:  # noqa: D103
    return "-" if value is None else f"{value:.2g}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="tiny,medium")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--cases", default=",".join(("healthy", *DEFECTS)), help="healthy and/or defects to plant")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    sizes = args.sizes.split(",")
    variants = args.variants.split(",")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        models: list[tuple[str, Path]] = []
        if "tiny" in sizes:
            models += [(name, REPO / "fixtures" / name) for name in TINY]
        if "medium" in sizes:
            for name in MEDIUM:
                print(f"exporting {name} ...", file=sys.stderr, flush=True)
                models.append((name, export_medium(name, scratch)))
        for name, folder in models:
            decoder_only = (folder / "model.onnx").exists()
            wanted = args.cases.split(",")
            cases = [("healthy", folder)] if "healthy" in wanted else []
            if decoder_only:
                cases += [(d, plant(folder, scratch / f"{name}-{d}", d)) for d in DEFECTS if d in wanted]
            for case, source in cases:
                calib = recorded_calibration(source) if decoder_only else None
                for variant in ["fp32", *variants]:
                    if variant != "fp32" and skipped_reason(source, variant, calib):
                        rows.append({"model": name, "case": case, "variant": variant, "error": f"skipped: {skipped_reason(source, variant, calib)}"})
                        continue
                    target = source if variant == "fp32" else scratch / f"{name}-{case}-{variant}"
                    try:
                        if variant != "fp32":
                            quantize_folder(source, target, variant, calibration=calib)
                        row = {"model": name, "case": case, "variant": variant, **measure(target, args.steps)}
                    except Exception as exc:  # noqa: BLE001 - a quantizer that refuses a model is a row, not a crash
                        row = {"model": name, "case": case, "variant": variant, "error": f"{type(exc).__name__}: {str(exc)[:160]}"}
                    rows.append(row)
                    print(json.dumps(row), file=sys.stderr, flush=True)
    print("| model | case | variant | regime | envelope | self-noise | cached vs uncached | padded vs alone | top-1 min | sensitivity | findings |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        if "error" in row:
            print(f"| {row['model']} | {row['case']} | {row['variant']} | {row['error']} | | | | | | | |")
            continue
        print(
            f"| {row['model']} | {row['case']} | {row['variant']} | {row['regime']} | {_fmt(row['envelope_scaled'])} | {_fmt(row['self_noise'])} | "
            f"{_fmt(row['cache'])} | {_fmt(row['padding'])} | {_fmt(row['top1_min'])} | {_fmt(row['sensitivity'])} | "
            f"{', '.join(row['codes']) or 'none'} |"
        )
    healthy = [r for r in rows if r.get("case") == "healthy" and "error" not in r]
    for regime in sorted({r["regime"] for r in healthy}):
        drifts = [d for r in healthy if r["regime"] == regime for d in (r["cache"], r["padding"]) if d is not None]
        print(f"healthy {regime}: max drift {_fmt(max(drifts, default=None))}, min sensitivity "
              f"{_fmt(min((r['sensitivity'] for r in healthy if r['regime'] == regime and r['sensitivity'] is not None), default=None))}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
