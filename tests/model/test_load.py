"""The weight-less loader: large payloads skipped everywhere, small constants kept, external data located."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from support import FIXTURES
from onnxdoctor.errors import UnusableInputError
from onnxdoctor.model.load import load
from onnxdoctor.model.slim import KEEP_INLINE_BYTES, stripped_bytes


def _model_with_weights_everywhere() -> onnx.ModelProto:
    """Big weights as an initializer, a Constant node and inside If branches; one small shape constant."""
    big = np.arange(64 * 1024, dtype=np.float32).reshape(256, 256)
    shape = numpy_helper.from_array(np.array([1, -1], dtype=np.int64), "target_shape")

    def branch(name: str) -> onnx.GraphProto:
        weight = numpy_helper.from_array(big + 1, f"{name}_weight")
        return helper.make_graph(
            [helper.make_node("Identity", [f"{name}_weight"], [f"{name}_out"])],
            name,
            [],
            [helper.make_tensor_value_info(f"{name}_out", TensorProto.FLOAT, [256, 256])],
            [weight],
        )

    nodes = [
        helper.make_node("Constant", [], ["const_weight"], value=numpy_helper.from_array(big + 2, "c")),
        helper.make_node("If", ["flag"], ["chosen"], then_branch=branch("then"), else_branch=branch("else")),
        helper.make_node("Add", ["chosen", "const_weight"], ["sum"]),
        helper.make_node("Add", ["sum", "embed"], ["sum2"]),
        helper.make_node("Reshape", ["sum2", "target_shape"], ["out"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("flag", TensorProto.BOOL, [1])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 65536])],
        [numpy_helper.from_array(big, "embed"), shape],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_large_payloads_are_skipped_everywhere_and_small_constants_kept(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    onnx.save(_model_with_weights_everywhere(), path)
    model_file = load(path).files[0]
    graph = model_file.graph
    assert model_file.stripped_initializers() == {"embed": pytest.approx(256 * 256 * 4, rel=0.01)}
    shape = next(t for t in graph.initializer if t.name == "target_shape")
    assert stripped_bytes(shape) is None and list(numpy_helper.to_array(shape)) == [1, -1]
    constant = graph.node[0].attribute[0].t
    assert stripped_bytes(constant) is not None and list(constant.dims) == [256, 256]
    for branch in graph.node[1].attribute:
        (weight,) = branch.g.initializer
        assert stripped_bytes(weight) is not None and weight.data_type == TensorProto.FLOAT
    # the slim graph is tiny: structure only
    assert model_file.proto.ByteSize() < 4 * KEEP_INLINE_BYTES < path.stat().st_size // 50


def test_real_export_keeps_every_node_and_io(tmp_path: Path) -> None:
    original = onnx.load(FIXTURES / "optimum-llama-gqa" / "model.onnx")
    slim = load(FIXTURES / "optimum-llama-gqa" / "model.onnx").files[0].proto
    assert [n.op_type for n in slim.graph.node] == [n.op_type for n in original.graph.node]
    assert slim.graph.input == original.graph.input and slim.graph.output == original.graph.output
    assert {t.name for t in slim.graph.initializer} == {t.name for t in original.graph.initializer}


def test_external_data_over_2gb_is_located_not_read(tmp_path: Path) -> None:
    """A >2 GB model must use external data; a sparse data file proves nothing is read."""
    weight = numpy_helper.from_array(np.zeros((4, 4), dtype=np.float32), "embed")
    graph = helper.make_graph(
        [helper.make_node("Identity", ["embed"], ["out"])],
        "g",
        [],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [4, 4])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    weight = model.graph.initializer[0]
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    offset = 3 * 1024**3
    for key, value in {"location": "model.onnx.data", "offset": str(offset), "length": "64"}.items():
        weight.external_data.add(key=key, value=value)
    onnx.save(model, tmp_path / "model.onnx")
    with open(tmp_path / "model.onnx.data", "wb") as handle:
        handle.truncate(offset + 64)  # sparse: 3 GB on paper, nothing on disk
    bundle = load(tmp_path / "model.onnx")
    assert bundle.files[0].external_files == ["model.onnx.data"]
    os.truncate(tmp_path / "model.onnx.data", offset)
    with pytest.raises(UnusableInputError, match="truncated"):
        load(tmp_path / "model.onnx")


def test_symlinked_external_data_escaping_the_folder_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"\0" * 64)
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "weights.bin").symlink_to(outside)
    weight = helper.make_tensor("embed", TensorProto.FLOAT, [4, 4], vals=[0.0] * 16)
    graph = helper.make_graph([], "g", [], [helper.make_tensor_value_info("embed", TensorProto.FLOAT, [4, 4])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    tensor = model.graph.initializer[0]
    tensor.ClearField("float_data")
    tensor.data_location = TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value="weights.bin")
    onnx.save(model, folder / "model.onnx")
    with pytest.raises(UnusableInputError, match="outside the model's folder"):
        load(folder / "model.onnx")


def test_folder_lists_optimum_files_in_decoding_order() -> None:
    bundle = load(FIXTURES / "optimum-t5")
    assert [f.file_role for f in bundle.files] == ["encoder", "decoder_merged", "decoder", "decoder_with_past"]


def test_a_file_too_big_to_read_whole_is_walked_by_positioned_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past _LOCAL_BYTES the walk reads field headers from the file; the result is the in-memory one."""
    from onnxdoctor.model import slim

    path = tmp_path / "model.onnx"
    onnx.save(_model_with_weights_everywhere(), path)
    whole = slim.slim_model_bytes(path.read_bytes())
    monkeypatch.setattr(slim, "_LOCAL_BYTES", 1024)  # every message bigger than 1 KB stays on disk
    monkeypatch.setattr(slim, "_WINDOW_BYTES", 512)
    walked = slim.load_slim(path)
    assert walked.SerializeToString() == onnx.ModelProto.FromString(whole).SerializeToString()
    assert stripped_bytes(walked.graph.initializer[0]) is not None and len(walked.graph.node) == 5
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(UnusableInputError, match="truncated"):
        load(path)


def _model_with_every_tensor_place() -> onnx.ModelProto:
    """_model_with_weights_everywhere plus large tensors in the other places ONNX allows them: a sparse
    initializer, typed (non-raw) data, a tensor list attribute, a function body, and training_info."""
    model = _model_with_weights_everywhere()
    values = numpy_helper.from_array(np.arange(2048, dtype=np.float32), "sparse_values")
    indices = numpy_helper.from_array(np.arange(2048, dtype=np.int64), "sparse_indices")
    model.graph.sparse_initializer.append(helper.make_sparse_tensor(values, indices, [4096]))
    model.graph.initializer.append(helper.make_tensor("typed", TensorProto.INT64, [2048], [2**40 + i for i in range(2048)]))  # int64_data
    model.graph.node.append(helper.make_node("Custom", ["out"], ["custom_out"], domain="example.custom", tables=[numpy_helper.from_array(np.ones(2048, np.float32), "t")]))
    body = helper.make_node("Constant", [], ["y"], value=numpy_helper.from_array(np.ones(2048, np.float32), "fc"))
    model.functions.append(helper.make_function("example.fn", "Fn", [], ["y"], [body], [helper.make_opsetid("", 17)]))
    training = onnx.TrainingInfoProto()
    training.initialization.CopyFrom(helper.make_graph([], "init", [], [], [numpy_helper.from_array(np.ones(2048, np.float32), "state")]))
    model.training_info.append(training)
    return model


@pytest.mark.parametrize("source", ["every place", *[p.relative_to(FIXTURES).as_posix() for p in sorted(FIXTURES.rglob("*.onnx"))]])
def test_files_parsed_whole_are_stripped_exactly_like_the_walk(source: str, tmp_path: Path) -> None:
    """Up to 16 MB a file is parsed by protobuf and emptied in place instead of walked field by field:
    the same tensors, the same kept fields, the same markers, and bytes that parse to that model."""
    from onnxdoctor.model import slim

    if source == "every place":
        path = tmp_path / "model.onnx"
        onnx.save(_model_with_every_tensor_place(), path)
    else:
        path = FIXTURES / source
    data = path.read_bytes()
    walked = onnx.ModelProto.FromString(slim.slim_model_bytes(data))
    parsed, serialized = slim.load_slim_with_bytes(path)
    assert parsed.SerializeToString(deterministic=True) == walked.SerializeToString(deterministic=True)
    assert onnx.ModelProto.FromString(serialized).SerializeToString(deterministic=True) == walked.SerializeToString(deterministic=True)
    if source == "every place":
        places = [parsed.graph.sparse_initializer[0].values, next(t for t in parsed.graph.initializer if t.name == "typed"),
                  parsed.graph.node[-1].attribute[0].tensors[0], parsed.functions[0].node[0].attribute[0].t]
        assert all(stripped_bytes(t) is not None for t in places)
        assert stripped_bytes(parsed.training_info[0].initialization.initializer[0]) is None  # the walk keeps it too
