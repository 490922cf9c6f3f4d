"""The compute regime of a model file, read from the graph alone: what precision its numbers live in.

Two runs of one healthy model may differ by exactly as much as its regime allows: fp32 by rounding,
fp16 by half-precision rounding, int8 with dynamic activation scales by a scale that depends on the
tensor it is computed from (a 1-token step and a 6-token recompute, or a padded and an unpadded batch,
quantize differently). Oracles must know which regime they judge, so it is decided here once,
from node types and initializer types, never from file names.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from onnxdoctor.model import proto
from onnxdoctor.model.graph import GraphView

if TYPE_CHECKING:
    import onnx

# Activations quantized with a scale computed at run time from the tensor itself.
DYNAMIC_OPS = frozenset(
    {"DynamicQuantizeLinear", "MatMulInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QAttention", "DynamicQuantizeLSTM", "ConvInteger"}
)
# Weights stored in few bits, dequantized inside the op; activations stay float.
WEIGHT_ONLY_OPS = frozenset({"MatMulNBits", "GatherBlockQuantized", "MatMulBnb4", "MatMulFpQ4"})
# Quantized operators of the QOperator format (fixed scales, integer kernels).
QOPERATOR_OPS = frozenset({"QGemm", "QEmbedLayerNormalization", "QOrderedMatMul", "QOrderedAttention"})

HALF_TYPES = {proto.TensorProto.FLOAT16: "float16", proto.TensorProto.BFLOAT16: "bfloat16"}
INT_TYPES = {
    proto.TensorProto.INT8: "int8",
    proto.TensorProto.UINT8: "uint8",
    proto.TensorProto.INT16: "int16",
    proto.TensorProto.UINT16: "uint16",
    proto.TensorProto.INT4: "int4",
    proto.TensorProto.UINT4: "uint4",
}

# Every op the scan below counts or reads (besides QLinear*).
_LOOKED_AT = DYNAMIC_OPS | QOPERATOR_OPS | WEIGHT_ONLY_OPS | {"QuantizeLinear", "DequantizeLinear", "Cast"}

# Activation families, most specific first: the first present names the regime's kind.
ACTIVATION_KINDS = {"dynamic": "int8-dynamic", "qdq": "qdq", "qoperator": "qoperator"}


@dataclass(frozen=True)
class Regime:
    """What a file computes in: float precision, activation quantization (if any), weight storage."""

    float_compute: str = "float32"  # float32 | float16 | bfloat16 (the precision of its float math)
    activations: tuple[str, ...] = ()  # quantized activation families present: dynamic, qdq, qoperator
    activation_dtype: str | None = None  # int8 / uint8 / int16 of quantized activations
    weights: str = "float32"  # how weights are stored: float32, float16, int8 per-tensor, int4 block 32, ...
    weight_only: bool = False  # quantized weights behind float activations (MatMulNBits, DequantizeLinear of weights)
    ops: dict[str, int] = field(default_factory=dict)  # the quantization / precision ops counted
    io_dtype: str = "float32"  # dtype of the logits output

    @property
    def kind(self) -> str:
        """fp32 | fp16 | bf16 | int8-dynamic | qdq | qoperator | weight-only | mixed."""
        families = [ACTIVATION_KINDS[a] for a in self.activations]
        if len(families) > 1 or (families and self.float_compute != "float32"):
            return "mixed"
        if families:
            return families[0]
        if self.weight_only:
            return "weight-only"
        return {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}[self.float_compute]

    @property
    def components(self) -> tuple[str, ...]:
        """Every source of numerical noise, for the envelope: the float precision and each quantization."""
        parts = [{"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}[self.float_compute]]
        parts.extend(ACTIVATION_KINDS[a] for a in self.activations)
        if self.weight_only:
            parts.append("weight-only")
        return tuple(parts)

    def describe(self) -> str:
        """One line: `compute: int8 dynamic, 14 MatMulInteger; weights int8 per-channel; I/O float32`."""
        ops = ", ".join(f"{count} {op}" for op, count in sorted(self.ops.items(), key=lambda item: (-item[1], item[0])))
        names = {"dynamic": "int8 dynamic", "qdq": "static QDQ", "qoperator": "QOperator"}
        compute = [names[a] + (f" ({self.activation_dtype})" if a != "dynamic" and self.activation_dtype else "") for a in self.activations]
        if self.float_compute != "float32" or not compute:
            compute.append(self.float_compute)
        text = "compute: " + " + ".join(compute) + (f", {ops}" if ops else "")
        return f"{text}; weights {self.weights}; I/O {self.io_dtype}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "float_compute": self.float_compute,
            "activations": list(self.activations),
            "activation_dtype": self.activation_dtype,
            "weights": self.weights,
            "weight_only": self.weight_only,
            "ops": dict(self.ops),
            "io_dtype": self.io_dtype,
            "description": self.describe(),
        }


def _attribute(node: onnx.NodeProto, name: str, default: int) -> int:
    return next((a.i for a in node.attribute if a.name == name), default)


def _elements(dims: list[int] | tuple[int, ...]) -> int:
    count = 1
    for d in dims:
        count *= int(d)
    return count


class _Scan:
    """One pass over every node and constant of a model: the graph and every subgraph (If branches of
    merged decoders, Loop bodies)."""

    def __init__(self, view: GraphView) -> None:
        self.view = view
        self.nodes: list[tuple[onnx.NodeProto, str]] = []  # (node, op type)
        for scope in view.scopes:
            self.nodes.extend(zip(scope.nodes, scope.op_types))

    @cached_property
    def constants(self) -> dict[str, tuple[int, onnx.TensorProto]]:
        """name -> (elem type, the tensor: its dims are read when needed); built on the first question
        (only quantized models ask: a float model's scan never reads a Constant)."""
        constants: dict[str, tuple[int, onnx.TensorProto]] = {}
        for scope in self.view.scopes:
            for tensor in scope.graph.initializer:
                constants[tensor.name] = (tensor.data_type, tensor)
            for node, op_type in zip(scope.nodes, scope.op_types):
                if op_type != "Constant" or not node.output:
                    continue
                for attribute in node.attribute:
                    if attribute.name == "value":
                        value = attribute.t
                        constants[node.output[0]] = (value.data_type, value)
                        break
        return constants

    def constant(self, name: str) -> tuple[int, tuple[int, ...]] | None:
        """(elem type, dims) of a constant tensor."""
        found = self.constants.get(name)
        return None if found is None else (found[0], tuple(found[1].dims))


def _weight_granularity(scan: _Scan, scale: str, block: int) -> str:
    """per-tensor, per-channel, or block N, from the shape of a weight's scale."""
    found = scan.constant(scale)
    if block:
        return f"block {block}"
    if found is None or _elements(found[1]) <= 1:
        return "per-tensor"
    return "per-channel" if len(found[1]) <= 1 else "blockwise"


def detect_regime(model: onnx.ModelProto, io_dtype: str = "float32", view: GraphView | None = None) -> Regime:
    """The regime of a (weight-less) model: node types and initializer element types are enough.

    `io_dtype` is the logits' dtype, from the Signature (roles are recognized there, not here);
    `view`, the model's GraphView when one is built already.
    """
    scan = _Scan(view if view is not None else GraphView(model))
    ops: Counter[str] = Counter()
    activations: list[str] = []
    activation_dtypes: set[str] = set()
    weight_forms: Counter[str] = Counter()
    half_casts: Counter[str] = Counter()

    def family(name: str) -> None:
        if name not in activations:
            activations.append(name)

    for node, op in scan.nodes:
        if op not in _LOOKED_AT and not op.startswith("QLinear"):
            continue
        if op in DYNAMIC_OPS:
            ops[op] += 1
            family("dynamic")
            if op in ("MatMulInteger", "ConvInteger") and len(node.input) > 1:
                weight = scan.constant(node.input[1])
                if weight is not None and weight[0] in INT_TYPES:
                    zero_point = scan.constant(node.input[3]) if len(node.input) > 3 and node.input[3] else None
                    per_channel = zero_point is not None and _elements(zero_point[1]) > 1
                    weight_forms[f"{INT_TYPES[weight[0]]} {'per-channel' if per_channel else 'per-tensor'}"] += 1
        elif op.startswith("QLinear") or op in QOPERATOR_OPS:
            ops[op] += 1
            family("qoperator")
        elif op in WEIGHT_ONLY_OPS:
            ops[op] += 1
            bits = _attribute(node, "bits", 4)
            block = _attribute(node, "block_size", 0)
            weight_forms[f"int{bits}" + (f" block {block}" if block else "")] += 1
        elif op == "QuantizeLinear":
            ops[op] += 1
            if node.input and scan.constant(node.input[0]) is None:
                family("qdq")
                zero_point = scan.constant(node.input[2]) if len(node.input) > 2 and node.input[2] else None
                activation_dtypes.add(INT_TYPES.get(zero_point[0], "uint8") if zero_point else "uint8")
        elif op == "DequantizeLinear":
            ops[op] += 1
            data = scan.constant(node.input[0]) if node.input else None
            if data is not None and data[0] in INT_TYPES:
                granularity = _weight_granularity(scan, node.input[1] if len(node.input) > 1 else "", _attribute(node, "block_size", 0))
                weight_forms[f"{INT_TYPES[data[0]]} {granularity}"] += 1
        elif op == "Cast":
            target = _attribute(node, "to", 0)
            if target in HALF_TYPES:
                half_casts[HALF_TYPES[target]] += 1

    float_weights: Counter[str] = Counter()
    for elem_type, tensor in scan.constants.values():
        if elem_type in HALF_TYPES and _elements(tensor.dims) > 1:
            float_weights[HALF_TYPES[elem_type]] += 1
        elif elem_type == proto.TensorProto.FLOAT and _elements(tensor.dims) > 1:
            float_weights["float32"] += 1
    halves = float_weights + half_casts
    float_compute = max(("float16", "bfloat16"), key=lambda t: halves[t]) if halves["float16"] or halves["bfloat16"] else "float32"
    if float_compute != "float32":
        ops[f"{float_compute} weights"] = float_weights[float_compute]
        if half_casts[float_compute]:
            ops[f"Cast to {float_compute}"] = half_casts[float_compute]
        ops = Counter({k: v for k, v in ops.items() if v})

    quantized_weights = ", ".join(form for form, _ in weight_forms.most_common())
    stored_float = float_compute if float_weights[float_compute] or float_compute == "float32" else "float32"
    weights = quantized_weights or stored_float
    weight_only = bool(weight_forms) and not activations

    return Regime(
        float_compute=float_compute,
        activations=tuple(activations),
        activation_dtype=", ".join(sorted(activation_dtypes)) or ("uint8" if "dynamic" in activations else None),
        weights=weights,
        weight_only=weight_only,
        ops=dict(ops),
        io_dtype=io_dtype,
    )
