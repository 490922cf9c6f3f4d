"""Merge a LoRA adapter into its base with peft (the recovery worker's `_merge_adapter`), then prove the merge.

Proof, from the saved files: for a sample of adapted layers the merged weight equals W + scale * B @ A
(scale = lora_alpha / r, or / sqrt(r) with rsLoRA), and the merged model's logits differ from the base's
on a probe (an adapter whose B is still zero changes nothing: exporting it would ship the base model).
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import sys
from pathlib import Path
from typing import Any

from onnxdoctor.export.checkpoints import TOKENIZER_FILES, Checkpoint
from onnxdoctor.export.errors import MergeError

SAMPLE = 4  # adapted layers whose merged weights are recomputed


def _state(folder: Path, stem: str) -> dict[str, Any]:
    from safetensors.torch import load_file

    single = folder / f"{stem}.safetensors"
    if single.is_file():
        return load_file(str(single))
    state: dict[str, Any] = {}
    for shard in sorted(folder.glob(f"{stem}-*.safetensors")):
        state.update(load_file(str(shard)))
    if not state:
        import torch

        binary = folder / ("pytorch_model.bin" if stem == "model" else "adapter_model.bin")
        state = torch.load(binary, map_location="cpu", weights_only=True)
    return state


def merge(model: Checkpoint, adapter: Checkpoint, out: Path) -> dict[str, Any]:
    """Merge `adapter` into `model`, save under `out`/merged-source, check it; returns the merge's evidence."""
    from onnxdoctor.recovery.export_worker import _merge_adapter

    try:
        with contextlib.redirect_stdout(sys.stderr):  # the worker's progress lines; stdout stays for --format json
            merged = _merge_adapter(model.path, adapter.path, out)
    except Exception as exc:  # noqa: BLE001 - peft and transformers raise many types for an adapter that does not fit
        text = str(exc).strip().splitlines()
        raise MergeError(f"merging {adapter.path} into {model.path}: {type(exc).__name__}: {text[0] if text else ''}") from None
    for name in TOKENIZER_FILES + ("special_tokens_map.json", "merges.txt"):
        if (model.path / name).is_file() and not (merged / name).exists():
            shutil.copyfile(model.path / name, merged / name)
    evidence = {"merged": str(merged), "weights": check_weights(model.path, adapter, merged)}
    evidence["probe"] = check_probe(model.path, merged)
    return evidence


def check_weights(base_folder: Path, adapter: Checkpoint, merged_folder: Path) -> list[dict[str, Any]]:
    """merged == W + scale * B @ A on a sample of adapted layers (MergeError naming the first that is not)."""
    base, lora, merged = _state(base_folder, "model"), _state(adapter.path, "adapter_model"), _state(merged_folder, "model")
    config = adapter.metadata
    rank, alpha = config.get("rank") or 8, config.get("lora_alpha") or 8
    scale = alpha / (math.sqrt(rank) if config.get("use_rslora") else rank)
    modules = sorted(k.removesuffix(".lora_A.weight") for k in lora if k.endswith(".lora_A.weight"))
    if not modules:
        raise MergeError(f"{adapter.path}: the adapter holds no lora_A / lora_B weights")
    picks = [modules[round(i * (len(modules) - 1) / max(SAMPLE - 1, 1))] for i in range(min(SAMPLE, len(modules)))]
    checked = []
    fan_in_fan_out = bool(json.loads((adapter.path / "adapter_config.json").read_text()).get("fan_in_fan_out"))  # GPT-2's Conv1D
    for module in dict.fromkeys(picks):
        key = module.removeprefix("base_model.model.") + ".weight"
        if key not in base or key not in merged:
            raise MergeError(f"adapted layer {key} is not in the base and merged weights: the adapter was trained on another model")
        delta = lora[module + ".lora_B.weight"].float() @ lora[module + ".lora_A.weight"].float()
        if fan_in_fan_out:
            delta = delta.T
        expected = base[key].float() + scale * delta
        worst = float((merged[key].float() - expected).abs().max())
        bound = 1e-5 * max(1.0, float(expected.abs().max()))
        if worst > bound:
            raise MergeError(f"merged weight {key} differs from W + {scale:g} * B @ A by {worst:.3g} (allowed {bound:.1g})")
        checked.append({"weight": key, "max_abs_error": worst, "delta_max": float((scale * delta).abs().max())})
    return checked


def check_probe(base_folder: Path, merged_folder: Path) -> dict[str, Any]:
    """The merged model's logits must differ from the base's: otherwise the adapter changes nothing."""
    import torch
    import transformers

    config = transformers.AutoConfig.from_pretrained(base_folder)
    auto = transformers.AutoModelForSeq2SeqLM if getattr(config, "is_encoder_decoder", False) else transformers.AutoModelForCausalLM
    vocab = int(getattr(config, "vocab_size", 32) or 32)
    ids = torch.tensor([[(7 * i + 3) % vocab for i in range(6)]])
    logits = []
    for folder in (base_folder, merged_folder):
        model = auto.from_pretrained(folder, attn_implementation="eager").eval()
        extra = {"decoder_input_ids": ids[:, :2]} if getattr(config, "is_encoder_decoder", False) else {}
        with torch.no_grad():
            logits.append(model(input_ids=ids, **extra).logits.float())
    difference = float((logits[0] - logits[1]).abs().max())
    if difference == 0.0:
        raise MergeError(
            "the merged model's logits equal the base model's on a probe: the adapter changes nothing "
            "(lora_B all zero, an untrained adapter?); export without --adapter if that is intended"
        )
    return {"max_abs_logit_difference": difference, "probe_tokens": ids.tolist()[0]}
