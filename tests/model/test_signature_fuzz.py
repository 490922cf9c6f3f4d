"""Hypothesis: any I/O signature (names from every convention, any rank, any dtype) is inspected without crashing."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from onnxdoctor.engine import inspect_path
from onnxdoctor.model.contract import build_contract

NAMES = [
    "input_ids", "attention_mask", "position_ids", "cache_position", "encoder_hidden_states", "use_cache_branch",
    "logits", "past_key_values.0.key", "past_key_values.0.value", "present.0.key", "present.0.value",
    "past_0", "present_0", "past_key_self_0", "present_value_cross_1", "cache.3.k", "kv_heads", "x",
]
DTYPES = [TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.INT64, TensorProto.INT32, TensorProto.BOOL, TensorProto.STRING]
dims = st.lists(st.one_of(st.integers(0, 9), st.sampled_from(["batch", "seq", "past", "past + seq", "s1 + s2", ""])), max_size=6)


@st.composite
def signatures(draw: st.DrawFn) -> onnx.ModelProto:
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=8, unique=True))
    split = draw(st.integers(0, len(names)))
    values = []
    for name in names:
        shape = draw(st.one_of(st.none(), dims))
        values.append(helper.make_tensor_value_info(name, draw(st.sampled_from(DTYPES)), shape))
    inputs, outputs = values[:split], values[split:]
    if not outputs:
        outputs = [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)]
    graph = helper.make_graph([], "fuzz", inputs, outputs)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(model=signatures())
def test_inspect_never_crashes(model: onnx.ModelProto, tmp_path_factory: pytest.TempPathFactory) -> None:
    path: Path = tmp_path_factory.mktemp("fuzz") / "model.onnx"
    onnx.save(model, path)
    report = inspect_path(path, reshapes=True)
    report.to_dict()
    for file_report in report.files:
        build_contract(file_report.signature)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(model=signatures())
def test_replay_fails_only_with_a_clear_error(model: onnx.ModelProto, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Whatever the signature, replay either runs or raises onnxdoctor's own one-line error."""
    from onnxdoctor.errors import OnnxDoctorError
    from onnxdoctor.replay.harness import Replayer, ReplayOptions

    path: Path = tmp_path_factory.mktemp("fuzz") / "model.onnx"
    onnx.save(model, path)
    try:
        Replayer(inspect_path(path), ReplayOptions(steps=1)).run()
    except OnnxDoctorError as exc:
        assert str(exc) and "\n" not in str(exc)
