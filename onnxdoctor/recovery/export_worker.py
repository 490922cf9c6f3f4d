"""Runs one real export in its own process: `python -m onnxdoctor.recovery.export_worker SPEC.json`.

The recovery engine starts this with a time limit, so an exporter that crashes (segfault, OOM) or
hangs cannot take onnxdoctor down; the last lines it printed become the failed attempt's evidence.
The spec (JSON) says which exporter, which source and which settings; outputs go to spec["out"].

torch sources are a user's own entry `file.py:function`, returning a dict with `model` (the
module), `args` (example inputs, a tuple), `input_names`, `output_names`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _log(message: str) -> None:
    print(f"[export] {message}", flush=True)


def _merge_adapter(source: Path, adapter: Path, work: Path) -> Path:
    """Merge a LoRA adapter into the base weights with peft and save the merged model next to the export."""
    import transformers
    from peft import PeftModel

    config = transformers.AutoConfig.from_pretrained(source)
    auto = transformers.AutoModelForSeq2SeqLM if getattr(config, "is_encoder_decoder", False) else transformers.AutoModelForCausalLM
    _log(f"merging LoRA adapter {adapter} into {source}")
    base = auto.from_pretrained(source)
    merged = PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
    target = work / "merged-source"
    merged.save_pretrained(target)
    for extra in ("generation_config.json",):
        if (source / extra).is_file() and not (target / extra).exists():
            (target / extra).write_bytes((source / extra).read_bytes())
    return target


def export_optimum(spec: dict[str, Any]) -> None:
    from optimum.exporters.onnx import main_export

    source = Path(spec["source"])
    out = Path(spec["out"])
    settings = spec["settings"]
    if spec.get("adapter"):
        source = _merge_adapter(source, Path(spec["adapter"]), Path(spec["work"]))
    _log(f"optimum main_export {source} task={settings['task']} {json.dumps({k: v for k, v in settings.items() if k != 'task'})}")
    main_export(
        model_name_or_path=str(source),
        output=str(out),
        task=settings["task"],
        opset=settings.get("opset"),
        device="cpu",
        dtype=settings.get("dtype", "fp32"),
        no_post_process=settings.get("no_post_process", False),
        no_dynamic_axes=settings.get("no_dynamic_axes", False),
        do_validation=False,
    )


def _load_entry(entry: str) -> dict[str, Any]:
    file_name, _, function = entry.rpartition(":")
    if not file_name or not function:
        raise SystemExit(f"torch source must be file.py:function, got {entry!r}")
    spec = importlib.util.spec_from_file_location("onnxdoctor_user_entry", file_name)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot import {file_name}")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(Path(file_name).resolve().parent))
    spec.loader.exec_module(module)
    result = getattr(module, function)()
    missing = {"model", "args", "input_names", "output_names"} - set(result)
    if missing:
        raise SystemExit(f"{entry} must return a dict with model, args, input_names, output_names (missing {sorted(missing)})")
    return result


def export_torch(spec: dict[str, Any]) -> None:
    import torch

    settings = spec["settings"]
    entry = _load_entry(spec["source"])
    model = entry["model"].eval()
    args = tuple(entry["args"])
    out = Path(spec["out"]) / "model.onnx"
    input_names, output_names = list(entry["input_names"]), list(entry["output_names"])
    dynamic_axes = {name: {int(k): v for k, v in axes.items()} for name, axes in settings.get("dynamic_axes", {}).items()}
    if settings.get("dynamo"):
        # torch.export wants shapes per positional argument; names follow the ONNX input names
        shapes = tuple(
            {axis: torch.export.Dim.DYNAMIC for axis in dynamic_axes.get(name, {})} or None
            for name in input_names[: len(args)]
        )
        _log(f"torch.onnx.export dynamo=True opset={settings.get('opset')} dynamic_shapes for {sum(1 for s in shapes if s)} inputs")
        torch.onnx.export(
            model, args, str(out), dynamo=True, external_data=False, dynamic_shapes=shapes,
            input_names=input_names, output_names=output_names, opset_version=settings.get("opset"),
        )
    else:
        _log(f"torch.onnx.export dynamo=False opset={settings.get('opset')} dynamic_axes for {len(dynamic_axes)} tensors")
        torch.onnx.export(
            model, args, str(out), dynamo=False, input_names=input_names, output_names=output_names,
            dynamic_axes=dynamic_axes or None, opset_version=settings.get("opset") or 17,
            do_constant_folding=settings.get("constant_folding", True),
        )


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    Path(spec["out"]).mkdir(parents=True, exist_ok=True)
    if spec["exporter"] == "optimum":
        export_optimum(spec)
    elif spec["exporter"] == "torch":
        export_torch(spec)
    else:
        raise SystemExit(f"unknown exporter {spec['exporter']!r}")
    _log("done")


if __name__ == "__main__":
    main()
