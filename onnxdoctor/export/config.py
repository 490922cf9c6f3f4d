"""Export settings: defaults < `--config export.yaml` < ONNXDOCTOR_EXPORT_* environment variables < command-line flags.

Every key has an environment variable named ONNXDOCTOR_EXPORT_<KEY> (upper case), e.g.
ONNXDOCTOR_EXPORT_QUANTIZE=int8 or ONNXDOCTOR_EXPORT_TIMEOUT=300.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from onnxdoctor.errors import UsageError

ENV_PREFIX = "ONNXDOCTOR_EXPORT_"
QUANTIZE_NAMES = ("none", "fp16", "int8", "int4")

# key -> (default, type, what it sets); the README's table is this one
KEYS: dict[str, tuple[Any, type, str]] = {
    "adapter": (None, str, "LoRA adapter folder or training folder, or `auto` (the adapter next to SOURCE)"),
    "task": (None, str, "optimum task; default from config.json (text-generation-with-past, text2text-generation-with-past, ...)"),
    "exporter": (None, str, "optimum | torch; default optimum for a folder, torch for file.py:function"),
    "quantize": ("int8,int4", str, "comma-separated variants: none, fp16, int8, int4"),
    "int4_block_size": (32, int, "block size of int4 MatMulNBits (32 or 16)"),
    "opset": (None, int, "opset of the first attempt (recovery may try another)"),
    "timeout": (600.0, float, "seconds one exporter run may take before it is stopped"),
    "max_attempts": (6, int, "export attempts tried at most (the first plus recovery strategies)"),
    "steps": (6, int, "decode steps verify and compare check after the prompt"),
    "bench_tokens": (16, int, "tokens each timed decode of the speed and memory measure generates (`onnxdoctor bench --new-tokens`)"),
    "bench_repeat": (3, int, "timed decodes per variant (after one warm-up); the report gives their median and spread"),
}


def _coerce(key: str, value: Any, origin: str) -> Any:
    default, kind, _what = KEYS[key]
    if value is None or (isinstance(value, str) and value.strip() == "" and default is None):
        return None
    if key == "quantize" and isinstance(value, (list, tuple)):
        value = ",".join(map(str, value))
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise UsageError(f"{origin}: {key} must be {kind.__name__}, got {value!r}") from None


def read_mapping_file(path: Path | None) -> dict[str, Any]:
    """A `--config` file (YAML or JSON) as a mapping; `fix` and `export` read their settings through this."""
    if path is None:
        return {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"--config {path}: {exc.strerror or exc}") from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # noqa: BLE001 - json and yaml raise different types
        detail = " ".join(str(exc).split())  # yaml's messages span lines (with a caret): one line here
        raise UsageError(f"--config {path}: not valid {path.suffix.lstrip('.') or 'JSON'} ({detail[:240]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"--config {path}: expected a mapping of setting -> value")
    return data


def load_config_file(path: Path | None) -> dict[str, Any]:
    """`--config export.yaml|.json`: a mapping of the keys above."""
    data = read_mapping_file(path)
    unknown = sorted(set(map(str, data)) - set(KEYS))
    if unknown:
        raise UsageError(f"--config {path}: unknown key(s) {', '.join(unknown)}; known: {', '.join(KEYS)}")
    return {key: _coerce(key, value, f"--config {path}") for key, value in data.items()}


def resolve_settings(
    file_settings: Mapping[str, Any], flags: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """(settings, origin of each key): flags given on the command line win over the environment, which wins over the file."""
    environ = os.environ if environ is None else environ
    settings: dict[str, Any] = {key: default for key, (default, _t, _w) in KEYS.items()}
    origins = {key: "default" for key in KEYS}
    for key, value in file_settings.items():
        settings[key], origins[key] = value, "config"
    for key in KEYS:
        name = ENV_PREFIX + key.upper()
        if name in environ:
            settings[key], origins[key] = _coerce(key, environ[name], name), "environment"
    for key, value in flags.items():
        if value is not None:
            settings[key], origins[key] = _coerce(key, value, f"--{key.replace('_', '-')}"), "flag"
    settings["quantize"] = parse_quantize(settings["quantize"] or "none")
    if settings["exporter"] not in (None, "optimum", "torch"):
        raise UsageError(f"exporter must be optimum or torch, got {settings['exporter']!r} (from {origins['exporter']})")
    for key in ("max_attempts", "steps", "bench_tokens", "bench_repeat", "timeout"):
        if settings[key] is None or settings[key] <= 0:
            raise UsageError(f"{key} must be a positive number, got {settings[key]} (from {origins[key]})")
    if settings["int4_block_size"] not in (16, 32):
        raise UsageError(f"int4_block_size must be 16 or 32, got {settings['int4_block_size']}")
    return settings, origins


def parse_quantize(value: str | list[str]) -> list[str]:
    names = [n.strip().lower() for n in (value.split(",") if isinstance(value, str) else value) if n.strip()]
    unknown = [n for n in names if n not in QUANTIZE_NAMES]
    if unknown:
        raise UsageError(f"--quantize {','.join(names)}: unknown {', '.join(unknown)}; use {', '.join(QUANTIZE_NAMES)}")
    return [n for n in dict.fromkeys(names) if n != "none"]


def variant_for(name: str, int4_block_size: int) -> str:
    """The CLI name -> numerics.quantize's variant (fp16 keeps float32 inputs and outputs)."""
    return {"fp16": "fp16", "int8": "int8-dynamic", "int4": f"int4-block{int4_block_size}"}[name]
