"""The compute regime is read from the graph: real quantizer outputs and hand-built graphs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from support import FIXTURES
from onnxdoctor.engine import inspect_path
from onnxdoctor.numerics.envelope import ENVELOPES, envelope_for
from onnxdoctor.numerics.regime import detect_regime


def _decoder_regimes(folder: Path) -> list[object]:
    report = inspect_path(folder)
    return [f.context.regime for f in report.files if f.context is not None and f.signature.kind == "decoder"]


# variant -> (kind, words the weights description holds, op that must be counted)
EXPECTED = {
    "int8-dynamic": ("int8-dynamic", "int8 per-tensor", "MatMulInteger"),
    "uint8-dynamic-per-channel": ("int8-dynamic", "uint8 per-channel", "MatMulInteger"),
    "optimum-dynamic": ("int8-dynamic", "uint8", "DynamicQuantizeLinear"),
    "int4-block16": ("weight-only", "int4 block 16", "MatMulNBits"),
    "int4-block32": ("weight-only", "int4 block 32", "MatMulNBits"),
    "qdq-static": ("qdq", "int8 per-tensor", "QuantizeLinear"),
    "fp16": ("fp16", "float16", "Cast to float16"),
}


@pytest.mark.parametrize("variant", sorted(EXPECTED))
def test_real_quantizer_outputs_are_named_by_their_regime(quantized: dict[tuple[str, str], Path], variant: str) -> None:
    kind, weights, op = EXPECTED[variant]
    for (source, made), folder in quantized.items():
        if made != variant:
            continue
        for regime in _decoder_regimes(folder):
            if variant.startswith("int4") and source == "optimum-gpt2":
                # MatMulNBitsQuantizer takes MatMul weights only: GPT-2's projections are Gemm, nothing changes
                assert regime.kind == "fp32" and regime.weights == "float32", regime.describe()
                continue
            assert regime.kind == kind, (source, regime.describe())
            assert weights in regime.weights, (source, regime.describe())
            assert regime.ops.get(op, 0) > 0, (source, regime.describe())
            assert regime.io_dtype == "float32"


def test_merged_decoder_branches_are_quantized_and_seen(quantized: dict[tuple[str, str], Path]) -> None:
    """quantize_dynamic only touches If branches with EnableSubgraph; the regime looks inside them."""
    regimes = _decoder_regimes(quantized[("optimum-marian-merged", "int8-dynamic")])
    assert [r.kind for r in regimes] == ["int8-dynamic"]
    assert regimes[0].ops["MatMulInteger"] >= 12


@pytest.mark.parametrize("fixture", ["optimum-gpt2", "optimum-qwen3", "optimum-marian-merged", "torch-dynamo"])
def test_float32_exports_are_fp32(fixture: str) -> None:
    for regime in _decoder_regimes(FIXTURES / fixture):
        assert regime.kind == "fp32" and regime.weights == "float32" and not regime.ops
        assert envelope_for(regime) is ENVELOPES["fp32"]


def test_fp16_export_with_fp16_io() -> None:
    (regime,) = _decoder_regimes(FIXTURES / "optimum-llama-fp16")
    assert regime.kind == "fp16" and regime.io_dtype == "float16" and regime.weights == "float16"


def _matmul_model(*nodes: onnx.NodeProto, initializers: list[onnx.TensorProto], half: bool = False) -> onnx.ModelProto:
    dtype = TensorProto.FLOAT16 if half else TensorProto.FLOAT
    graph = helper.make_graph(
        list(nodes),
        "g",
        [helper.make_tensor_value_info("x", dtype, [1, 4])],
        [helper.make_tensor_value_info("logits", dtype, [1, 4])],
        initializer=initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)])


def _init(name: str, values: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(values, name)


def test_qoperator_graph() -> None:
    model = _matmul_model(
        helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
        helper.make_node("QLinearMatMul", ["xq", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["yq"]),
        helper.make_node("DequantizeLinear", ["yq", "ys", "yz"], ["logits"]),
        initializers=[
            _init("xs", np.array(0.1, np.float32)), _init("xz", np.array(0, np.uint8)),
            _init("w", np.ones((4, 4), np.int8)), _init("ws", np.array(0.1, np.float32)), _init("wz", np.array(0, np.int8)),
            _init("ys", np.array(0.1, np.float32)), _init("yz", np.array(0, np.uint8)),
        ],
    )
    regime = detect_regime(model)
    assert regime.kind == "mixed" or regime.kind == "qoperator"
    assert "qoperator" in regime.activations and regime.ops["QLinearMatMul"] == 1


def test_fp16_compute_with_dynamic_int8_is_mixed_and_takes_the_loosest_envelope() -> None:
    model = _matmul_model(
        helper.make_node("Cast", ["x"], ["x32"], to=TensorProto.FLOAT),
        helper.make_node("DynamicQuantizeLinear", ["x32"], ["xq", "xs", "xz"]),
        helper.make_node("MatMulInteger", ["xq", "w", "xz", "wz"], ["acc"]),
        helper.make_node("Cast", ["acc"], ["logits"], to=TensorProto.FLOAT16),
        initializers=[_init("w", np.ones((4, 4), np.uint8)), _init("wz", np.array([0, 0, 0, 0], np.uint8)),
                      _init("bias", np.ones(4, np.float16))],
        half=True,
    )
    regime = detect_regime(model, "float16")
    assert regime.kind == "mixed" and regime.float_compute == "float16" and regime.weights == "uint8 per-channel"
    envelope = envelope_for(regime)
    assert envelope.scaled == ENVELOPES["int8-dynamic"].scaled and "fp16" in envelope.name and "int8-dynamic" in envelope.name


def test_bfloat16_weights() -> None:
    weight = helper.make_tensor("w", TensorProto.BFLOAT16, [4, 4], np.zeros(16, np.uint16).tobytes(), raw=True)
    model = _matmul_model(helper.make_node("MatMul", ["x", "w"], ["logits"]), initializers=[weight])
    regime = detect_regime(model)
    assert regime.kind == "bf16" and envelope_for(regime) is ENVELOPES["bf16"]


def test_weight_only_dequantize_of_initializers_is_not_activation_quantization() -> None:
    model = _matmul_model(
        helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["w"], axis=0),
        helper.make_node("MatMul", ["x", "w"], ["logits"]),
        initializers=[_init("wq", np.ones((4, 4), np.int8)), _init("ws", np.full(4, 0.1, np.float32)), _init("wz", np.zeros(4, np.int8))],
    )
    regime = detect_regime(model)
    assert regime.kind == "weight-only" and regime.weights == "int8 per-channel" and not regime.activations


def test_inspect_shows_the_regime_in_table_and_json(quantized: dict[tuple[str, str], Path]) -> None:
    from support import run_cli

    folder = quantized[("optimum-qwen3", "int8-dynamic")]
    table = run_cli("inspect", folder)
    line = next(l for l in table.stdout.splitlines() if l.startswith("Numerics:"))
    assert "int8 dynamic" in line and "MatMulInteger" in line and "weights int8 per-tensor" in line
    data = run_cli("inspect", folder, "--format", "json").json()
    numerics = data["files"][0]["numerics"]
    assert numerics["kind"] == "int8-dynamic" and numerics["ops"]["MatMulInteger"] > 0
