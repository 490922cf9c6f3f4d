"""Which checkpoint to export: a model or adapter folder, or a training output folder with checkpoint-N/ subfolders.

The latest complete checkpoint wins; incomplete ones are skipped with the reason. Integrity is read from
the files themselves, without loading weights: config.json parses, every safetensors header is readable
and the file is exactly as long as the header says (a truncated copy fails), the shards of an index exist,
adapter_config.json and adapter weights are there. Missing tokenizer files are a warning (the export does
not need them; the user's runtime does).
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onnxdoctor.export.errors import CheckpointError

CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "spiece.model", "vocab.txt")
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
                "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8}


@dataclass
class Checkpoint:
    """The folder chosen for a model or an adapter, why, and what it says about itself."""

    kind: str  # model | adapter
    given: Path
    path: Path
    step: int | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (checkpoint folder, why it was skipped)
    candidates: list[tuple[str, str]] = field(default_factory=list)  # (folder, complete | reason) for --list-checkpoints
    metadata: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def describe(self) -> str:
        step = f" (step {self.step})" if self.step is not None else ""
        if self.path == self.given:
            return f"{self.kind} {self.path}{step}"
        return f"{self.kind} {self.given}: latest complete checkpoint {self.path.name}{step}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "given": str(self.given), "path": str(self.path), "step": self.step,
            "skipped": [{"folder": f, "reason": r} for f, r in self.skipped], "metadata": self.metadata, "warnings": self.warnings,
        }


def safetensors_problem(path: Path) -> str | None:
    """Why a .safetensors file is unusable (None when its header reads and its size matches)."""
    size = path.stat().st_size
    if size < 8:
        return f"{path.name} is {size} bytes: not a safetensors file"
    with path.open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        if length > size - 8 or length > 100_000_000:
            return f"{path.name}: header length {length} exceeds the file ({size} bytes): truncated or not safetensors"
        try:
            header = json.loads(handle.read(length))
        except ValueError:
            return f"{path.name}: the header is not readable JSON"
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, stop = info["data_offsets"]
        count = 1
        for dim in info["shape"]:
            count *= dim
        if stop - begin != count * _DTYPE_BYTES.get(info["dtype"], 0) and info["dtype"] in _DTYPE_BYTES:
            return f"{path.name}: tensor {name} holds {stop - begin} bytes, its shape {info['shape']} {info['dtype']} needs {count * _DTYPE_BYTES[info['dtype']]}"
        end = max(end, stop)
    if size != 8 + length + end:
        return f"{path.name} is {size} bytes, its header says {8 + length + end}: truncated (an interrupted save or copy)"
    return None


def _weights_problem(folder: Path, stem: str) -> str | None:
    """`stem` is model or adapter_model: single file, sharded index, or a .bin."""
    single = folder / f"{stem}.safetensors"
    index = folder / f"{stem}.safetensors.index.json"
    if single.is_file():
        return safetensors_problem(single)
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (ValueError, KeyError):
            return f"{index.name} is not a readable shard index"
        for shard in shards:
            if not (folder / shard).is_file():
                return f"shard {shard} named by {index.name} is missing"
            problem = safetensors_problem(folder / shard)
            if problem:
                return problem
        return None
    binary = folder / ("pytorch_model.bin" if stem == "model" else "adapter_model.bin")
    if binary.is_file():
        return None if binary.stat().st_size > 0 else f"{binary.name} is empty"
    return f"no weights ({stem}.safetensors, its index or a .bin)"


def _read_json(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None, f"no {path.name}"
    except ValueError as exc:
        return None, f"{path.name} is not valid JSON ({exc})"
    return (data, None) if isinstance(data, dict) else (None, f"{path.name} is not a JSON object")


def folder_problem(folder: Path, kind: str) -> str | None:
    """Why `folder` is not a complete model (or adapter) folder; None when it is."""
    config_name, stem = ("config.json", "model") if kind == "model" else ("adapter_config.json", "adapter_model")
    _data, problem = _read_json(folder / config_name)
    return problem or _weights_problem(folder, stem)


def _is_candidate(folder: Path, kind: str) -> bool:
    return (folder / ("config.json" if kind == "model" else "adapter_config.json")).is_file()


def _step(folder: Path) -> int | None:
    match = CHECKPOINT.match(folder.name)
    if match:
        return int(match.group(1))
    state, _ = _read_json(folder / "trainer_state.json")
    step = (state or {}).get("global_step")
    return step if isinstance(step, int) else None


def checkpoints_in(folder: Path) -> list[Path]:
    """checkpoint-N subfolders, latest (highest N) first."""
    found = [p for p in folder.iterdir() if p.is_dir() and CHECKPOINT.match(p.name)] if folder.is_dir() else []
    return sorted(found, key=lambda p: int(CHECKPOINT.match(p.name).group(1)), reverse=True)  # type: ignore[union-attr]


def resolve(given: Path, kind: str) -> Checkpoint:
    """The folder to use for `given` (a model / adapter folder, or a training folder): the latest complete checkpoint."""
    what = "SOURCE" if kind == "model" else "--adapter"
    if not given.exists():
        raise CheckpointError(f"{what} {given}: no such folder")
    if not given.is_dir():
        raise CheckpointError(f"{what} {given}: not a folder (give a {kind} folder or a training output folder with checkpoint-N/)")
    checkpoints = checkpoints_in(given)
    if not checkpoints:
        problem = folder_problem(given, kind)
        if problem:
            hint = "" if _is_candidate(given, kind) else " and no checkpoint-N/ subfolders"
            raise CheckpointError(f"{what} {given}: not a complete {kind} folder: {problem}{hint}")
        chosen = Checkpoint(kind, given, given, _step(given), candidates=[(given.name, "complete")])
    else:
        skipped: list[tuple[str, str]] = []
        candidates: list[tuple[str, str]] = []
        picked: Path | None = None
        for folder in checkpoints:
            problem = folder_problem(folder, kind)
            candidates.append((folder.name, problem or "complete"))
            if problem is None and picked is None:
                picked = folder
            elif picked is None:
                skipped.append((folder.name, problem or ""))
        if picked is None:
            reasons = "; ".join(f"{name}: {reason}" for name, reason in skipped)
            raise CheckpointError(f"{what} {given}: no complete {kind} checkpoint ({reasons})")
        chosen = Checkpoint(kind, given, picked, _step(picked), skipped, candidates)
    chosen.metadata = model_metadata(chosen.path, chosen.step) if kind == "model" else adapter_metadata(chosen.path, chosen.step)
    if kind == "model" and not any((chosen.path / name).is_file() for name in TOKENIZER_FILES):
        chosen.warnings.append(f"{chosen.path.name} has no tokenizer files ({', '.join(TOKENIZER_FILES[:2])}): the export does not need them, your runtime will")
    return chosen


def model_metadata(folder: Path, step: int | None) -> dict[str, Any]:
    config, _ = _read_json(folder / "config.json")
    config = config or {}
    return {
        "model_type": config.get("model_type"),
        "architectures": config.get("architectures"),
        "base_model": config.get("_name_or_path") or None,
        "step": step,
        "is_encoder_decoder": bool(config.get("is_encoder_decoder")),
        "tokenizer_files": sorted(name for name in TOKENIZER_FILES if (folder / name).is_file()),
    }


def adapter_metadata(folder: Path, step: int | None) -> dict[str, Any]:
    config, _ = _read_json(folder / "adapter_config.json")
    config = config or {}
    if config.get("peft_type", "LORA") != "LORA":
        raise CheckpointError(f"--adapter {folder}: a {config.get('peft_type')} adapter; only LoRA adapters are merged")
    targets = config.get("target_modules")
    return {
        "base_model": config.get("base_model_name_or_path"),
        "step": step,
        "peft_type": config.get("peft_type", "LORA"),
        "rank": config.get("r"),
        "lora_alpha": config.get("lora_alpha"),
        "use_rslora": bool(config.get("use_rslora")),
        "target_modules": sorted(targets) if isinstance(targets, list) else targets,
    }


def find_adapter_next_to(source: Path, chosen_model: Path) -> Path | None:
    """`--adapter auto`: an adapter (or adapter training folder) inside SOURCE or beside it; None when there is none."""
    seen: list[Path] = []
    places = [source, source.parent] if source.parent != source else [source]
    for place in places:
        for folder in sorted(p for p in place.iterdir() if p.is_dir()):
            if folder.resolve() in (chosen_model.resolve(), source.resolve()) or CHECKPOINT.match(folder.name):
                continue
            if _is_candidate(folder, "adapter") or any(_is_candidate(c, "adapter") for c in checkpoints_in(folder)):
                seen.append(folder)
    if (source / "adapter_config.json").is_file():
        seen.insert(0, source)
    unique = list(dict.fromkeys(seen))
    if len(unique) > 1:
        raise CheckpointError(f"--adapter auto: several adapters next to {source} ({', '.join(str(p) for p in unique)}); name one with --adapter DIR")
    return unique[0] if unique else None
