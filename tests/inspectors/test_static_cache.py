"""A fixed-size cache updated in place (StaticCache exports) is understood: its fixed cache axis is no alarm."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxdoctor.engine import inspect_path
from onnxdoctor.findings import Severity

MAX_LEN, HEADS, HEAD_DIM, HIDDEN = 16, 2, 4, 8


def _static_cache_decoder(scatter: bool) -> onnx.ModelProto:
    """One layer: K/V of the new tokens written at cache_position into a [1, heads, 16, head_dim] cache."""
    nodes, inits = [], [numpy_helper.from_array(np.ones((32, HIDDEN), np.float32), "embed")]
    nodes.append(helper.make_node("Gather", ["embed", "input_ids"], ["hidden"]))
    for part in ("key", "value"):
        inits.append(numpy_helper.from_array(np.ones((HIDDEN, HEADS * HEAD_DIM), np.float32), f"w_{part}"))
        nodes += [
            helper.make_node("MatMul", ["hidden", f"w_{part}"], [f"{part}_flat"]),
            helper.make_node("Reshape", [f"{part}_flat", "split_shape"], [f"{part}_split"]),
            helper.make_node("Transpose", [f"{part}_split"], [f"{part}_new"], perm=[0, 2, 1, 3]),
        ]
        if scatter:
            nodes.append(helper.make_node("ScatterElements", [f"past_key_values.0.{part}", f"{part}_index", f"{part}_new"], [f"present.0.{part}"], axis=2))
            nodes += [
                helper.make_node("Reshape", ["cache_position", "index_shape"], [f"{part}_pos"]),
                helper.make_node("Expand", [f"{part}_pos", f"{part}_expand"], [f"{part}_index"]),
                helper.make_node("Shape", [f"{part}_new"], [f"{part}_expand"]),
            ]
        else:
            nodes.append(helper.make_node("Identity", [f"{part}_new"], [f"present.0.{part}"]))
    inits += [
        numpy_helper.from_array(np.array([1, -1, HEADS, HEAD_DIM], np.int64), "split_shape"),
        numpy_helper.from_array(np.array([1, 1, -1, 1], np.int64), "index_shape"),
    ]
    nodes.append(helper.make_node("MatMul", ["hidden", "w_lm"], ["logits"]))
    inits.append(numpy_helper.from_array(np.ones((HIDDEN, 32), np.float32), "w_lm"))
    cache = [1, HEADS, MAX_LEN, HEAD_DIM]
    graph = helper.make_graph(
        nodes,
        "static_cache",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, "sequence_length"]),
            helper.make_tensor_value_info("cache_position", TensorProto.INT64, ["sequence_length"]),
            helper.make_tensor_value_info("past_key_values.0.key", TensorProto.FLOAT, cache),
            helper.make_tensor_value_info("past_key_values.0.value", TensorProto.FLOAT, cache),
        ],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, "sequence_length", 32]),
            helper.make_tensor_value_info("present.0.key", TensorProto.FLOAT, cache),
            helper.make_tensor_value_info("present.0.value", TensorProto.FLOAT, cache),
        ],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_static_cache_is_not_flagged(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    onnx.save(_static_cache_decoder(scatter=True), path)
    report = inspect_path(path)
    assert [f.code for f in report.findings if f.severity is not Severity.INFO] == []


def test_fixed_cache_without_scatter_is_still_an_error(tmp_path: Path) -> None:
    """Same fixed shapes, but the present is only the new K/V: that is broken, not a static cache."""
    path = tmp_path / "model.onnx"
    onnx.save(_static_cache_decoder(scatter=False), path)
    codes = {f.code for f in inspect_path(path).findings if f.severity is Severity.ERROR}
    assert {"ODA103", "ODP301"} <= codes


def test_replay_says_it_does_not_handle_static_caches(tmp_path: Path) -> None:
    from support import run_cli

    path = tmp_path / "model.onnx"
    onnx.save(_static_cache_decoder(scatter=True), path)
    result = run_cli("replay", path)
    assert result.returncode == 2 and result.stdout == ""
    assert "fixed-size cache updated in place" in result.stderr and len(result.stderr.strip().splitlines()) == 1
