"""PyTorch sources for the fidelity tests: the fixtures' own models rebuilt from their seed, a LoRA
adapter, and real optimum exports made from them (HF_HUB_OFFLINE, tiny random weights)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from support import optimum_export, rebuild_source

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """fixture name (and name + '-seed1' for another checkpoint of the same config) -> source folder."""
    root = tmp_path_factory.mktemp("sources")
    made = {}
    for fixture in ("optimum-qwen3", "optimum-llama-gqa", "optimum-marian-merged", "optimum-marian", "optimum-t5"):
        made[fixture] = rebuild_source(fixture, root / fixture)
    made["optimum-qwen3-seed1"] = rebuild_source("optimum-qwen3", root / "optimum-qwen3-seed1", seed=1)
    return made


@pytest.fixture(scope="session")
def lora(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny Llama base, a LoRA adapter with non-zero B, and optimum exports of base + adapter merged and of the base alone."""
    import torch
    import transformers
    from peft import LoraConfig, get_peft_model

    root = tmp_path_factory.mktemp("lora")
    config = transformers.LlamaConfig(
        vocab_size=128, hidden_size=48, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64,
    )
    torch.manual_seed(0)
    base = transformers.LlamaForCausalLM(config).eval()
    base.save_pretrained(root / "base")
    torch.manual_seed(1)
    peft_model = get_peft_model(
        transformers.LlamaForCausalLM.from_pretrained(root / "base"),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "o_proj"], init_lora_weights=False),
    )
    peft_model.save_pretrained(root / "adapter")
    peft_model.merge_and_unload().save_pretrained(root / "merged")
    return {
        "base": root / "base",
        "adapter": root / "adapter",
        "merged_export": optimum_export(root / "merged", root / "merged-onnx"),
        "base_export": optimum_export(root / "base", root / "base-onnx"),
    }
