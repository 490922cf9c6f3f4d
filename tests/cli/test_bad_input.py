"""Every kind of unusable input gets one clear line and exit 2 through the real CLI, and nothing is written."""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from support import FIXTURES, run_cli, snapshot
from onnxdoctor.errors import UnusableInputError
from onnxdoctor.model.load import load

GPT2 = FIXTURES / "optimum-gpt2" / "model.onnx"


def _external_model(folder: Path) -> Path:
    """A small model whose weight lives in `weights.bin` next to it."""
    weight = numpy_helper.from_array(np.arange(4096, dtype=np.float32).reshape(64, 64), "embed")
    graph = helper.make_graph(
        [helper.make_node("Gather", ["embed", "input_ids"], ["hidden"])],
        "tiny",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch", "seq", 64])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = folder / "model.onnx"
    onnx.save(model, path, save_as_external_data=True, all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    return path


def _point_external_data(path: Path, location: str) -> None:
    model = onnx.load(path, load_external_data=False)
    for entry in model.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = location
    onnx.save(model, path)


def make_missing(tmp: Path) -> Path:
    return tmp / "does-not-exist.onnx"


def make_empty(tmp: Path) -> Path:
    path = tmp / "empty.onnx"
    path.write_bytes(b"")
    return path


def make_truncated(tmp: Path) -> Path:
    path = tmp / "truncated.onnx"
    data = GPT2.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def make_random_bytes(tmp: Path) -> Path:
    path = tmp / "random.onnx"
    path.write_bytes(random.Random(7).randbytes(4096))
    return path


def make_text_file(tmp: Path) -> Path:
    path = tmp / "readme.onnx"
    path.write_text("This is not a model.\nIt is a text file that someone named .onnx\n")
    return path


def make_empty_folder(tmp: Path) -> Path:
    folder = tmp / "export"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    return folder


def make_missing_external(tmp: Path) -> Path:
    path = _external_model(tmp)
    (tmp / "weights.bin").unlink()
    return path


def make_outside_external(tmp: Path) -> Path:
    inner = tmp / "model"
    inner.mkdir()
    path = _external_model(inner)
    shutil.move(inner / "weights.bin", tmp / "weights.bin")
    _point_external_data(path, "../weights.bin")
    return path


def make_absolute_external(tmp: Path) -> Path:
    path = _external_model(tmp)
    _point_external_data(path, str((tmp / "weights.bin").resolve()))
    return path


def make_truncated_external(tmp: Path) -> Path:
    path = _external_model(tmp)
    data = (tmp / "weights.bin").read_bytes()
    (tmp / "weights.bin").write_bytes(data[:100])
    return path


BAD_INPUTS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "missing file": (make_missing, "no such file or folder"),
    "empty file": (make_empty, "empty"),
    "truncated file": (make_truncated, "truncated"),
    "random bytes": (make_random_bytes, "not"),
    "text file named .onnx": (make_text_file, "not"),
    "folder with no model": (make_empty_folder, "no .onnx model file"),
    "missing external data": (make_missing_external, "missing"),
    "external data outside the folder": (make_outside_external, "outside the model's folder"),
    "external data at an absolute path": (make_absolute_external, "absolute path"),
    "truncated external data": (make_truncated_external, "truncated"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_and_exit_2(case: str, tmp_path: Path) -> None:
    make, phrase = BAD_INPUTS[case]
    path = make(tmp_path)
    before = snapshot(tmp_path)
    result = run_cli("inspect", path)
    assert result.returncode == 2, (case, result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("onnxdoctor: error: ")
    assert path.name in lines[0]
    assert phrase in lines[0].lower()
    assert "Traceback" not in result.stderr
    assert snapshot(tmp_path) == before  # nothing written, nothing changed


def test_bad_input_json_format_is_still_one_line(tmp_path: Path) -> None:
    result = run_cli("inspect", make_truncated(tmp_path), "--format", "json")
    assert result.returncode == 2 and result.stdout == "" and len(result.stderr.strip().splitlines()) == 1


def test_non_decoder_reports_no_kv_cache_and_dumps_signature(tmp_path: Path) -> None:
    path = _external_model(tmp_path)
    before = snapshot(tmp_path)
    result = run_cli("inspect", path, "--format", "json")
    assert result.returncode == 0, result.stderr
    report = result.json()
    assert [f["code"] for f in report["findings"]] == ["ODS001"]
    assert report["findings"][0]["severity"] == "info"
    (file_report,) = report["files"]
    assert [t["name"] for t in file_report["inputs"]] == ["input_ids"]
    assert file_report["kv_layout"] is None
    assert file_report["external_data"] == ["weights.bin"]
    assert snapshot(tmp_path) == before


def test_inspect_never_writes_next_to_the_model(tmp_path: Path) -> None:
    folder = tmp_path / "export"
    shutil.copytree(FIXTURES / "optimum-marian-merged", folder)
    before = snapshot(folder)
    assert run_cli("inspect", folder).returncode == 0
    assert snapshot(folder) == before


def test_unknown_file_in_folder_is_usage_error(tmp_path: Path) -> None:
    result = run_cli("inspect", FIXTURES / "optimum-marian", "--file", "nope.onnx")
    assert result.returncode == 2
    assert "decoder_model.onnx" in result.stderr  # says which files exist


def test_bad_role_map_is_usage_error() -> None:
    result = run_cli("inspect", GPT2, "--map", "input_ids=not-a-role")
    assert result.returncode == 2 and "unknown role" in result.stderr and "Traceback" not in result.stderr


@settings(max_examples=60, deadline=None)
@given(cut=st.integers(min_value=1, max_value=GPT2.stat().st_size - 1))
def test_any_truncation_is_unusable_input_not_a_crash(cut: int, tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("cut") / "model.onnx"
    path.write_bytes(GPT2.read_bytes()[:cut])
    try:
        bundle = load(path)
    except UnusableInputError:
        return
    # a cut that happens to end on a field boundary is still a parseable (partial) model
    assert bundle.files[0].proto.HasField("graph")


@settings(max_examples=60, deadline=None)
@given(data=st.binary(min_size=1, max_size=2048))
def test_arbitrary_bytes_never_crash_the_loader(data: bytes, tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("bytes") / "model.onnx"
    path.write_bytes(data)
    try:
        load(path)
    except UnusableInputError as exc:
        assert str(path) in str(exc)
