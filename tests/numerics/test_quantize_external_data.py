"""Quantizing an export whose weights live in external data (every export past 2 GB): each variant keeps them there."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from support import FIXTURES


@pytest.fixture(scope="module")
def external_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """optimum-llama-gqa with every initializer moved to model.onnx.data, as optimum writes a large export."""
    import onnx

    folder = tmp_path_factory.mktemp("external") / "export"
    folder.mkdir()
    model = onnx.load(FIXTURES / "optimum-llama-gqa" / "model.onnx")
    onnx.save(model, folder / "model.onnx", save_as_external_data=True, all_tensors_to_one_file=True, location="model.onnx.data", size_threshold=0)
    shutil.copyfile(FIXTURES / "optimum-llama-gqa" / "config.json", folder / "config.json")
    return folder


@pytest.mark.parametrize("variant", ["int8-dynamic", "int4-block32", "fp16"])
def test_a_variant_of_an_external_data_export_keeps_external_data_and_replays_clean(external_export: Path, variant: str, tmp_path: Path) -> None:
    from onnxdoctor.doctor import diagnose
    from onnxdoctor.model.load import load_file
    from onnxdoctor.numerics.quantize import quantize_folder

    out = tmp_path / variant
    settings = quantize_folder(external_export, out, variant)
    assert settings["files"]["model.onnx"]["external_data"] is True
    assert load_file(out / "model.onnx").external_files == ["model.onnx.data"]
    assert (out / "model.onnx.data").stat().st_size > 0  # (ORT's tools keep tensors under 1 KB inline)
    report = diagnose(out, steps=3)
    assert not report.problems(), report.render()
    assert (external_export / "model.onnx.data").is_file() and not (external_export / "model.onnx.data.bak").exists()


def test_an_inline_export_stays_inline(tmp_path: Path) -> None:
    from onnxdoctor.model.load import load_file
    from onnxdoctor.numerics.quantize import quantize_folder

    settings = quantize_folder(FIXTURES / "optimum-llama-gqa", tmp_path / "int8", "int8-dynamic")
    assert settings["files"]["model.onnx"]["external_data"] is False
    assert load_file(tmp_path / "int8" / "model.onnx").external_files == [] and not list((tmp_path / "int8").glob("*.data"))
