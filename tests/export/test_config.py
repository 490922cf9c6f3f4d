"""Export settings: YAML config < ONNXDOCTOR_EXPORT_* environment < command-line flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from onnxdoctor.errors import UsageError
from onnxdoctor.export.config import load_config_file, resolve_settings, variant_for


def test_environment_overrides_the_file_and_flags_override_both(tmp_path: Path) -> None:
    config = tmp_path / "export.yaml"
    config.write_text("quantize: [fp16, int8]\nopset: 17\nint4_block_size: 16\ntimeout: 120\n")
    settings, origins = resolve_settings(load_config_file(config), {"opset": 18}, {"ONNXDOCTOR_EXPORT_QUANTIZE": "int8,int4,none"})
    assert settings["quantize"] == ["int8", "int4"] and origins["quantize"] == "environment"
    assert settings["opset"] == 18 and origins["opset"] == "flag"
    assert settings["timeout"] == 120.0 and origins["timeout"] == "config"
    assert variant_for("int4", settings["int4_block_size"]) == "int4-block16" and variant_for("int8", 32) == "int8-dynamic"


@pytest.mark.parametrize(
    ("text", "environ", "said"),
    [
        ("quantise: int8\n", {}, "unknown key(s) quantise"),
        ("", {"ONNXDOCTOR_EXPORT_QUANTIZE": "int3"}, "unknown int3"),
        ("", {"ONNXDOCTOR_EXPORT_TIMEOUT": "soon"}, "ONNXDOCTOR_EXPORT_TIMEOUT: timeout must be float"),
        ("- a list\n", {}, "expected a mapping"),
        ("steps: [1\n", {}, "not valid yaml (while parsing a flow sequence"),
        ("", {"ONNXDOCTOR_EXPORT_STEPS": "0"}, "steps must be a positive number, got 0 (from environment)"),
        ("bench_repeat: -1\n", {}, "bench_repeat must be a positive number, got -1 (from config)"),
    ],
)
def test_bad_settings_are_one_line(tmp_path: Path, text: str, environ: dict[str, str], said: str) -> None:
    config = tmp_path / "export.yaml"
    config.write_text(text)
    with pytest.raises(UsageError) as raised:
        resolve_settings(load_config_file(config), {}, environ)
    assert said in str(raised.value) and "\n" not in str(raised.value)
