"""onnxdoctor.model.proto: ONNX's message classes and shape inference without `import onnx`, and a real
`import onnx` afterwards in the same process still works (one set of classes, one extension)."""

from __future__ import annotations

import pytest

from support import FIXTURES, run_python

MODEL = FIXTURES / "optimum-gpt2" / "model.onnx"


def test_light_path_imports_neither_onnx_nor_ml_dtypes() -> None:
    out = run_python(
        f"""
        import sys
        from onnxdoctor.model import proto
        model = proto.ModelProto()
        model.ParseFromString(open({str(MODEL)!r}, "rb").read())
        inferred = proto.infer_shapes(model.SerializeToString(), data_prop=True)
        assert len(inferred.graph.value_info) > 0
        print(sorted(m for m in ("onnx", "ml_dtypes", "numpy") if m in sys.modules))
        """
    )
    assert out == "[]"


def test_real_onnx_after_the_light_path_reuses_its_modules() -> None:
    out = run_python(
        f"""
        import sys
        from onnxdoctor.model import proto
        light = proto.ModelProto()
        light.ParseFromString(open({str(MODEL)!r}, "rb").read())
        pb2, extension = sys.modules["onnx.onnx_ml_pb2"], sys.modules["onnx.onnx_cpp2py_export"]

        import onnx
        from onnx import helper, numpy_helper
        assert onnx.ModelProto is proto.ModelProto and isinstance(light, onnx.ModelProto)
        assert onnx.onnx_ml_pb2 is pb2 and onnx.onnx_cpp2py_export is extension
        assert onnx.onnx_cpp2py_export.shape_inference is sys.modules["onnx.onnx_cpp2py_export.shape_inference"]
        onnx.checker.check_model(light)
        assert len(onnx.shape_inference.infer_shapes(light, data_prop=True).graph.value_info) > 0
        graph = helper.make_graph(
            [helper.make_node("Relu", ["x"], ["y"])], "g",
            [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2])],
            [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["n"])],
        )
        model = helper.make_model(graph)
        onnx.checker.check_model(model)
        assert onnx.shape_inference.infer_shapes(model).graph.output[0].type.tensor_type.shape.dim[0].dim_value == 2
        assert numpy_helper.to_array(numpy_helper.from_array(__import__("numpy").arange(3))).tolist() == [0, 1, 2]
        reloaded = onnx.load_from_string(model.SerializeToString())
        assert type(reloaded) is proto.ModelProto
        import onnxruntime
        session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        print(session.run(None, {{"x": __import__("numpy").array([-1.0, 2.0], dtype="float32")}})[0].tolist())
        """
    )
    assert out == "[0.0, 2.0]"


def test_light_path_after_real_onnx_uses_the_loaded_package() -> None:
    out = run_python(
        """
        import onnx
        from onnxdoctor.model import proto
        assert proto.ModelProto is onnx.ModelProto
        print(proto.TensorProto.EXTERNAL == onnx.TensorProto.EXTERNAL)
        """
    )
    assert out == "True"


def test_inference_errors_are_raised() -> None:
    from onnxdoctor.model import proto

    with pytest.raises(Exception):  # noqa: B017 - whatever the C++ side raises: the caller treats any as "no shapes"
        proto.infer_shapes(b"\x08\x07\x3a\x05\x0a\x03\x12\x01x", data_prop=True)  # a node without opset import


@pytest.mark.parametrize(
    "dtype",
    ["float32", "float64", "float16", "int8", "uint8", "int16", "uint16", "int32", "int64", "uint32", "uint64", "bool"],
)
@pytest.mark.parametrize("shape", [(), (0,), (3,), (2, 3)])
def test_tensor_values_match_numpy_helper(dtype: str, shape: tuple[int, ...]) -> None:
    import numpy as np
    from onnx import helper, numpy_helper

    from onnxdoctor.model import proto

    array = (np.arange(int(np.prod(shape))) * 7 - 5).reshape(shape)
    array = (array % 2 == 0) if dtype == "bool" else (np.abs(array) if dtype.startswith("u") else array).astype(dtype)
    raw = numpy_helper.from_array(array, "t")
    typed = helper.make_tensor("t", helper.np_dtype_to_tensor_dtype(array.dtype), shape, array.reshape(-1).tolist())
    for tensor in (raw, typed):
        assert tensor.HasField("raw_data") == (tensor is raw)
        expected = numpy_helper.to_array(tensor).reshape(-1).tolist()
        values = proto.tensor_values(tensor)
        assert values == expected and [type(v) for v in values] == [type(v) for v in expected]


def test_tensor_values_of_other_types_are_onnx_own() -> None:
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    from onnxdoctor.model import proto

    bf16 = helper.make_tensor("t", TensorProto.BFLOAT16, [2], [1.5, -2.0])
    assert proto.tensor_values(bf16) == numpy_helper.to_array(bf16).reshape(-1).tolist()
    strings = numpy_helper.from_array(np.array(["a", "bc"], dtype=object), "s")
    assert proto.tensor_values(strings) == ["a", "bc"]
    short = numpy_helper.from_array(np.arange(4, dtype=np.int64), "x")
    short.dims[:] = [5]  # raw_data of 4 values for 5 dims: onnx's own error
    with pytest.raises(ValueError):
        proto.tensor_values(short)


def test_attribute_tables_match_the_installed_onnx_schemas() -> None:
    """The standard ops that may hold a graph or a tensor attribute are exactly those the schemas allow."""
    import onnx
    import onnx.defs

    from onnxdoctor.model import proto

    kinds = onnx.AttributeProto
    tensors, graphs = set(), set()
    for schema in onnx.defs.get_all_schemas_with_history():
        if schema.domain not in proto.STANDARD_DOMAINS:
            continue  # other domains are always looked at
        for attribute in schema.attributes.values():
            if attribute.type in (kinds.TENSOR, kinds.SPARSE_TENSOR, kinds.TENSORS, kinds.SPARSE_TENSORS):
                tensors.add(schema.name)
            if attribute.type in (kinds.GRAPH, kinds.GRAPHS):
                graphs.add(schema.name)
    assert graphs == proto.SUBGRAPH_OPS
    assert tensors == proto.TENSOR_ATTRIBUTE_OPS
    assert proto.may_hold_subgraphs("Relu", "com.microsoft") and not proto.may_hold_subgraphs("Relu", "")
    assert proto.may_hold_tensors("If", "") and not proto.may_hold_tensors("Add", "ai.onnx")
