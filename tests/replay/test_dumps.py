"""Feed dumps in every format a client can write: read back exactly, detected from content, golden records in each."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import numpy_helper

from onnxdoctor.engine import inspect_path
from onnxdoctor.errors import UnusableInputError
from onnxdoctor.replay import dumps
from onnxdoctor.replay.feedcheck import FeedChecker
from support import FIXTURES, run_cli

GQA = FIXTURES / "optimum-llama-gqa"


def _arrays() -> dict[str, np.ndarray]:
    """The dtypes and shapes feeds have: int64 ids, bool switch, fp16/fp32 caches, an empty past."""
    rng = np.random.default_rng(0)
    return {
        "input_ids": np.array([[17, 301, 45]], np.int64),
        "attention_mask": np.ones((1, 3), np.int32),
        "use_cache_branch": np.array([True]),
        "past_key_values.0.key": rng.standard_normal((1, 2, 3, 4)).astype(np.float32),
        "past_key_values.0.value": rng.standard_normal((1, 2, 3, 4)).astype(np.float16),
        "past_key_values.1.key": np.zeros((1, 2, 0, 4), np.float32),
    }


def _assert_same(read: dict[str, np.ndarray], written: dict[str, np.ndarray]) -> None:
    assert list(read) == list(written) or sorted(read) == sorted(written)
    for name, value in written.items():
        assert read[name].dtype == value.dtype, name
        assert read[name].shape == value.shape, name
        np.testing.assert_array_equal(read[name], value, err_msg=name)


@pytest.mark.parametrize("fmt", dumps.RECORD_FORMATS)
def test_every_format_reads_back_exactly(fmt: str, tmp_path: Path) -> None:
    arrays = _arrays()
    target = dumps.write_dump(tmp_path, "step0", arrays, fmt)
    assert dumps.detect(target) == fmt
    _assert_same(dumps.read_dump(target), arrays)


def test_npy_folder_names_inputs_by_file(tmp_path: Path) -> None:
    arrays = _arrays()
    folder = tmp_path / "step0"
    folder.mkdir()
    for name, value in arrays.items():
        np.save(folder / f"{name}.npy", value)
    assert dumps.detect(folder) == "npy"
    _assert_same(dumps.read_dump(folder), arrays)


def test_safetensors_interoperates_with_the_reference_package(tmp_path: Path) -> None:
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    arrays = _arrays()
    ours = dumps.write_dump(tmp_path, "ours", arrays, "safetensors")
    _assert_same(safetensors_numpy.load_file(str(ours)), arrays)
    theirs = tmp_path / "theirs.safetensors"
    safetensors_numpy.save_file(arrays, str(theirs))
    _assert_same(dumps.read_dump(theirs), arrays)


def test_json_accepts_nested_lists_base64_null_and_runtime_dtype_names(tmp_path: Path) -> None:
    half = np.array([[0.5, -2.0]], np.float16)
    document = {
        "input_ids": {"dtype": "int64", "shape": [1, 3], "data": [[17, 301, 45]]},  # nested, as a 2-D array serializes
        "past": {"dtype": "float16", "shape": [1, 2], "data": base64.b64encode(half.astype("<f2").tobytes()).decode()},
        "scores": {"dtype": "tensor(float)", "shape": [2], "data": [1.5, None]},  # JSON.stringify writes NaN as null
        "flag": {"dtype": "boolean", "shape": [1], "data": [False]},
        "ids32": {"dtype": "I32", "shape": [2], "data": [1, 2]},
    }
    path = tmp_path / "feeds.dump"  # no extension: detected from the content
    path.write_text(json.dumps(document))
    read = dumps.read_dump(path)
    assert read["input_ids"].dtype == np.int64 and read["input_ids"].tolist() == [[17, 301, 45]]
    np.testing.assert_array_equal(read["past"], half)
    assert read["scores"].dtype == np.float32 and read["scores"][0] == 1.5 and np.isnan(read["scores"][1])
    assert read["flag"].dtype == np.bool_ and read["ids32"].dtype == np.int32


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"hello, not a dump", "not a feeds dump"),
        (b'{"input_ids": [1, 2]}', "needs the keys dtype, shape and data"),
        (b'{"input_ids": {"dtype": "int64", "shape": [1, 3], "data": [1, 2]}}', "2 values for shape [1, 3]"),
        (b'{"input_ids": {"dtype": "complex64", "shape": [1], "data": [1]}}', "unsupported dtype"),
        (b'{"input_ids": {"dtype": "int64", "shape": [1], "data": "@@@"}}', "does not read as int64"),
    ],
)
def test_unreadable_dumps_are_one_clear_error(content: bytes, fragment: str, tmp_path: Path) -> None:
    path = tmp_path / "step0.json"
    path.write_bytes(content)
    with pytest.raises(UnusableInputError, match=re.escape(fragment)):
        dumps.read_dump(path)
    result = run_cli("check-feeds", GQA, path)
    assert result.returncode == 2
    assert fragment in result.stderr and "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_unnamed_tensorprotos_take_the_model_input_order(tmp_path: Path) -> None:
    """The ONNX test-data layout may leave TensorProto.name empty: inputs are then positional."""
    record = tmp_path / "rec"
    assert run_cli("replay", GQA, "--steps", "1", "--batch", "1", "--record", record, "--record-format", "pb").returncode == 0
    step0 = record / "test_data_set_0"
    declared = [t.name for t in inspect_path(GQA).files[0].signature.inputs]
    named = dumps.read_dump(step0)
    assert sorted(named) == sorted(declared)
    for file in step0.glob("*.pb"):
        tensor = onnx.TensorProto()
        tensor.ParseFromString(file.read_bytes())
        file.write_bytes(numpy_helper.from_array(numpy_helper.to_array(tensor)).SerializeToString())  # name dropped
    with pytest.raises(UnusableInputError, match="unnamed TensorProtos"):
        dumps.read_dump(step0)
    unnamed = dumps.read_dump(step0, [["only_one"], declared])
    _assert_same(unnamed, named)
    report = FeedChecker(inspect_path(GQA)).run([step0, record / "test_data_set_1"])
    assert report.findings == [] and len(report.steps) == 2


def test_a_folder_of_steps_is_taken_in_step_order(tmp_path: Path) -> None:
    arrays = {"input_ids": np.array([[1]], np.int64)}
    for k in (0, 1, 2, 10):
        dumps.write_dump(tmp_path, f"step{k}", arrays, "json")
    dumps.write_dump(tmp_path, "step0_outputs", arrays, "json")
    (tmp_path / "contract.json").write_text("{}")
    assert [p.name for p in dumps.expand_steps([tmp_path])] == ["step0.json", "step1.json", "step2.json", "step10.json"]
    assert dumps.outputs_of(tmp_path / "step0.json") == tmp_path / "step0_outputs.json"
    assert dumps.outputs_of(tmp_path / "step1.json") is None
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UnusableInputError, match="no step dumps"):
        dumps.expand_steps([empty])
    with pytest.raises(UnusableInputError, match="no such feeds file"):
        dumps.expand_steps([tmp_path / "nothing-here"])


@pytest.mark.parametrize("fmt", dumps.RECORD_FORMATS)
def test_replay_records_in_each_format_and_check_feeds_accepts_it(fmt: str, tmp_path: Path) -> None:
    """The golden record a Rust / C# / JS client diffs against: every step, its outputs, the contract."""
    record = tmp_path / "rec"
    result = run_cli("replay", GQA, "--steps", "2", "--batch", "1", "--record", record, "--record-format", fmt)
    assert result.returncode == 0, result.stderr
    steps = dumps.expand_steps([record])
    assert len(steps) == 3 and {dumps.detect(p) for p in steps} == {fmt}
    assert all(dumps.outputs_of(p) is not None for p in steps)
    assert json.loads((record / "contract.json").read_text())["options"]["format"] == fmt
    feeds = dumps.read_dump(steps[1])
    assert feeds["past_key_values.0.key"].shape[2] == 4 and feeds["attention_mask"].shape == (1, 5)  # prompt of 4 cached, 1 new
    checked = run_cli("check-feeds", GQA, record, "--format", "json")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert [s["step"] for s in checked.json()["steps"]] == [0, 1, 2] and checked.json()["findings"] == []


_DTYPES = ["int64", "int32", "int8", "uint8", "float32", "float16", "float64", "bool"]


@st.composite
def _dumps(draw: st.DrawFn) -> dict[str, np.ndarray]:
    arrays = {}
    names = draw(st.lists(st.from_regex(r"[a-z][a-z0-9_.]{0,20}", fullmatch=True), min_size=1, max_size=5, unique=True))
    for name in names:
        shape = tuple(draw(st.lists(st.integers(0, 3), max_size=4)))
        dtype = np.dtype(draw(st.sampled_from(_DTYPES)))
        values = draw(st.lists(st.integers(-100, 100), min_size=int(np.prod(shape)), max_size=int(np.prod(shape))))
        arrays[name] = np.array(values, dtype=np.int64).astype(dtype).reshape(shape)
    return arrays


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(arrays=_dumps(), fmt=st.sampled_from(dumps.RECORD_FORMATS))
def test_any_arrays_survive_every_format(arrays: dict[str, np.ndarray], fmt: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp("dump")
    _assert_same(dumps.read_dump(dumps.write_dump(folder, "step0", arrays, fmt)), arrays)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    prefix=st.sampled_from([b"", b"PK\x03\x04", b"{", b'{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}', b"\x10\x00\x00\x00\x00\x00\x00\x00{"]),
    tail=st.binary(max_size=64),
)
def test_malformed_dumps_are_unusable_input_never_a_crash(prefix: bytes, tail: bytes, tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("bad") / "step0"
    path.write_bytes(prefix + tail)
    try:
        arrays = dumps.read_dump(path)
    except UnusableInputError:
        return
    assert all(isinstance(v, np.ndarray) for v in arrays.values())
