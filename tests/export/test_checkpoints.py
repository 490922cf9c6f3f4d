"""Checkpoint detection and integrity, read from the files (no weights loaded)."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest

from onnxdoctor.export.checkpoints import find_adapter_next_to, resolve, safetensors_problem
from onnxdoctor.export.errors import CheckpointError


def _safetensors(path: Path, tensors: dict[str, list[int]]) -> Path:
    """A real safetensors file of float32 zeros (the format: u64 header length, JSON header, data)."""
    header, offset = {}, 0
    for name, shape in tensors.items():
        size = 4
        for dim in shape:
            size *= dim
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * offset)
    return path


def _model(folder: Path, *, step: int | None = None) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "_name_or_path": "base"}))
    _safetensors(folder / "model.safetensors", {"w": [4, 4]})
    if step is not None:
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return folder


def _adapter(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ["v_proj", "q_proj"], "base_model_name_or_path": "base"}))
    _safetensors(folder / "adapter_model.safetensors", {"a.lora_A.weight": [8, 4], "a.lora_B.weight": [4, 8]})
    return folder


def test_safetensors_headers_and_sizes(tmp_path: Path) -> None:
    good = _safetensors(tmp_path / "good.safetensors", {"w": [2, 3]})
    assert safetensors_problem(good) is None
    truncated = tmp_path / "short.safetensors"
    truncated.write_bytes(good.read_bytes()[:-5])
    assert "truncated" in (safetensors_problem(truncated) or "")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\xff" * 64)
    assert "header length" in (safetensors_problem(garbage) or "")
    lying = tmp_path / "lying.safetensors"
    raw = json.dumps({"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 8]}}).encode()
    lying.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * 8)
    assert "needs 24" in (safetensors_problem(lying) or "")


def test_latest_complete_checkpoint_wins_and_the_skipped_say_why(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _model(run / "checkpoint-100")
    _model(run / "checkpoint-900")
    (run / "checkpoint-900" / "model.safetensors").unlink()
    broken = _model(run / "checkpoint-500")
    (broken / "config.json").write_text("{not json")
    chosen = resolve(run, "model")
    assert chosen.path.name == "checkpoint-100" and chosen.step == 100
    assert [name for name, _ in chosen.skipped] == ["checkpoint-900", "checkpoint-500"]
    assert "no weights" in chosen.skipped[0][1] and "not valid JSON" in chosen.skipped[1][1]
    assert chosen.metadata["model_type"] == "llama" and any("tokenizer" in w for w in chosen.warnings)


def test_sharded_weights_need_every_shard(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    _safetensors(folder / "model-00001-of-00002.safetensors", {"a": [2]})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}))
    with pytest.raises(CheckpointError, match="shard model-00002-of-00002.safetensors .* is missing"):
        resolve(folder, "model")
    _safetensors(folder / "model-00002-of-00002.safetensors", {"b": [2]})
    assert resolve(folder, "model").path == folder


def test_adapter_training_folder_and_auto(tmp_path: Path) -> None:
    model = _model(tmp_path / "base")
    _adapter(tmp_path / "lora-run" / "checkpoint-3")
    _adapter(tmp_path / "lora-run" / "checkpoint-7")
    (tmp_path / "lora-run" / "checkpoint-7" / "adapter_model.safetensors").write_bytes(b"")
    found = find_adapter_next_to(model, model)
    assert found == tmp_path / "lora-run"
    adapter = resolve(found, "adapter")
    assert adapter.path.name == "checkpoint-3" and adapter.skipped[0][0] == "checkpoint-7"
    assert adapter.metadata["rank"] == 8 and adapter.metadata["target_modules"] == ["q_proj", "v_proj"]
    _adapter(tmp_path / "other-adapter")
    with pytest.raises(CheckpointError, match="several adapters"):
        find_adapter_next_to(model, model)
    shutil.rmtree(tmp_path / "other-adapter")
    shutil.rmtree(tmp_path / "lora-run")
    assert find_adapter_next_to(model, model) is None


def test_no_model_at_all_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no config.json and no checkpoint-N/ subfolders"):
        resolve(tmp_path / "empty", "model")
    with pytest.raises(CheckpointError, match="no such folder"):
        resolve(tmp_path / "missing", "adapter")
