"""A training run on disk: tiny random Llama checkpoints and a LoRA adapter (non-zero B), no hub."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _llama(seed: int):  # type: ignore[no-untyped-def]
    import torch
    import transformers

    config = transformers.LlamaConfig(
        vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64,
    )
    torch.manual_seed(seed)
    return transformers.LlamaForCausalLM(config).eval()


@pytest.fixture(scope="session")
def training_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """run/train/checkpoint-{10,20} (complete), checkpoint-30 (interrupted: truncated weights), run/adapter (LoRA on checkpoint-20)."""
    import torch
    from peft import LoraConfig, get_peft_model

    root = tmp_path_factory.mktemp("run")
    train = root / "train"
    for step, seed in ((10, 0), (20, 1)):
        _llama(seed).save_pretrained(train / f"checkpoint-{step}")
    partial = train / "checkpoint-30"
    _llama(2).save_pretrained(partial)
    weights = partial / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # an interrupted save
    torch.manual_seed(3)
    from transformers import LlamaForCausalLM

    peft_model = get_peft_model(
        LlamaForCausalLM.from_pretrained(train / "checkpoint-20"),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    peft_model.save_pretrained(root / "adapter")
    return {"root": root, "train": train, "adapter": root / "adapter", "partial": partial}


@pytest.fixture()
def partial_only(training_run: dict[str, Path], tmp_path: Path) -> Path:
    """A training folder whose only checkpoint is the interrupted one."""
    folder = tmp_path / "train"
    shutil.copytree(training_run["partial"], folder / "checkpoint-30")
    return folder
