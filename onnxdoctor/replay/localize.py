"""Turn an ONNX Runtime error into a place: the node, its inputs' actual shapes, where bad dims come from.

ORT names the failing node (also inside If branches) but not the shapes it saw. For a node of the
main graph the sub-model that computes the node's inputs is extracted and run with the same feeds,
so the finding can say "Reshape X got data {1,1,48} and target {1,3,3,2,8}; entries 0-1 are
constants baked at export".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from onnxdoctor.model.graph import GraphView, Scope

_NODE = re.compile(r"running (?P<op>\w+) node\. Name:'(?P<name>[^']*)'")
_INVALID_DIMS = re.compile(r"Got invalid dimensions for input: (?P<name>\S+)")
_BAD_TYPE = re.compile(r"Unexpected input data type")
_SOURCE_PREFIX = re.compile(r"^\S+\.(?:h|cc|cpp|cu):\d+\s+(?:[\w:~<>]+\((?:[^()]|\([^()]*\))*\)\s*)?")
_CXX_SIGNATURE = re.compile(r"^(?:[\w:<>~*&]+\s+)?onnxruntime::[\w:<>~]+\((?:[^()]|\([^()]*\))*\)\s*")
_MISSING = re.compile(r"Required inputs \((?P<names>\[[^\]]*\])\) are missing")


@dataclass
class FailurePlace:
    message: str
    op: str | None = None
    node: str | None = None
    graph: str | None = None
    input_shapes: dict[str, list[int]] = field(default_factory=dict)
    input_values: dict[str, list[int]] = field(default_factory=dict)  # small int inputs (shape targets)
    provenance: list[str] = field(default_factory=list)
    note: str = ""

    def summary(self) -> str:
        """ORT's own words without the source path and C++ signature it wraps them in."""
        text = " ".join(self.message.split())
        status = text.rsplit("Status Message: ", 1)[-1]  # the innermost node's own words
        status = _CXX_SIGNATURE.sub("", _SOURCE_PREFIX.sub("", status))
        return status[:500] or "ONNX Runtime failed"


def parse_error(message: str) -> FailurePlace:
    place = FailurePlace(message=message)
    matches = list(_NODE.finditer(message))
    if matches:
        # ORT names the If node first, then the node inside its branch that really failed
        innermost = matches[-1]
        place.op, place.node = innermost["op"], innermost["name"]
    return place


def _find_node(view: GraphView, name: str, feeds: dict[str, np.ndarray]) -> tuple[onnx.NodeProto, Scope] | None:
    """The node ORT named; when both If branches hold that name (optimum's merged decoders), the one that ran."""
    matches = [(node, scope) for node, scope in view.nodes() if node.name == name]
    if len(matches) <= 1:
        return matches[0] if matches else None
    for node, scope in matches:
        owner = scope.owner
        if owner is None or owner.op_type != "If" or not owner.input or owner.input[0] not in feeds:
            continue
        taken = "then_branch" if bool(np.asarray(feeds[owner.input[0]]).reshape(-1)[0]) else "else_branch"
        if scope.path.endswith(f".{taken}"):
            return node, scope
    return matches[0]


def localize(
    message: str,
    model_path: Path,
    view: GraphView,
    feeds: dict[str, np.ndarray],
    run_model: Any,
) -> FailurePlace:
    """Parse ORT's message and, for main-graph nodes, measure the failing node's actual inputs."""
    place = parse_error(message)
    if place.node is None:
        return place
    found = _find_node(view, place.node, feeds)
    if found is None:
        place.note = "the node named by ONNX Runtime is not in the graph (ORT renamed it while optimizing)"
        return place
    node, scope = found
    place.graph = scope.path or "main"
    if node.op_type == "Reshape" and len(node.input) > 1:
        from onnxdoctor.inspectors.reshape_tracer import trace_entries

        entries = trace_entries(node.input[1], scope)
        if entries is not None and entries and all(e.source == "constant" for e in entries):
            values = [e.value for e in entries]
            baked = all(v is not None and v > 0 for v in values)
            place.provenance.append(
                f"the whole target shape {values} is a constant in the graph"
                + (", fixed at export (see ODR201)" if baked else "")
            )
        elif entries is not None:
            for index, entry in enumerate(entries):
                if entry.source == "constant":
                    place.provenance.append(f"target entry {index} = {entry.value}: a constant in the graph")
                elif entry.dims:
                    sources = ", ".join(f"{tensor} axis {axis}" for tensor, axis in entry.dims)
                    place.provenance.append(f"target entry {index}: computed from the shape of {sources}")
    wanted = [name for name in node.input if name]
    try:
        if scope.path:
            if scope.owner is None or scope.parent is None or scope.parent.path:
                raise LookupError("only branches of main-graph nodes are measured")
            branch_attribute = scope.path.rsplit(".", 1)[-1]
            measured = _measure_in_branch(onnx.load(str(model_path)), scope.owner, branch_attribute, wanted, feeds, run_model)
        else:
            measured = _run_up_to(onnx.load(str(model_path)), feeds, wanted, run_model)
    except Exception as exc:  # noqa: BLE001 - measuring is best effort; the failure itself is already known
        place.note = f"could not measure the node's inputs ({type(exc).__name__})"
        return place
    for name, value in measured.items():
        place.input_shapes[name] = list(value.shape)
        if np.issubdtype(value.dtype, np.integer) and value.size <= 16:
            place.input_values[name] = [int(v) for v in value.reshape(-1)]
    return place


def _branch_of(graph: onnx.GraphProto, owner: onnx.NodeProto, attribute_name: str) -> onnx.GraphProto | None:
    """The same branch in the full model (the view was built on the weight-less copy)."""
    for node in graph.node:
        same = (node.name == owner.name) if owner.name else (node.op_type == owner.op_type and list(node.output) == list(owner.output))
        if same:
            for attribute in node.attribute:
                if attribute.name == attribute_name and attribute.HasField("g"):
                    return attribute.g
    return None


def _measure_in_branch(
    model: onnx.ModelProto, owner: onnx.NodeProto, attribute_name: str, names: list[str], feeds: dict[str, np.ndarray], run_model: Any
) -> dict[str, np.ndarray]:
    """Inputs of a node inside an If branch: the branch becomes a model whose inputs are the outer values it reads.

    The outer values (main-graph inputs and tensors) are measured first, then the branch is run up to the node.
    """
    branch = _branch_of(model.graph, owner, attribute_name)
    if branch is None:
        raise LookupError(f"no {attribute_name} under {owner.name or owner.op_type}")
    produced = {o for n in branch.node for o in n.output} | {t.name for t in branch.initializer}
    outer: list[str] = []
    for node in branch.node:
        for name in node.input:
            if name and name not in produced and name not in outer:
                outer.append(name)
    main_initializers = {t.name: t for t in model.graph.initializer}
    values = _run_up_to(model, feeds, [n for n in outer if n not in main_initializers], run_model)
    inputs = [
        onnx.helper.make_tensor_value_info(name, onnx.helper.np_dtype_to_tensor_dtype(value.dtype), list(value.shape))
        for name, value in values.items()
    ]
    graph = onnx.helper.make_graph(
        list(branch.node), "branch", inputs, [], list(branch.initializer) + [main_initializers[n] for n in outer if n in main_initializers]
    )
    standalone = onnx.helper.make_model(graph, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    return _run_up_to(standalone, values, names, run_model)


def _run_up_to(
    model: onnx.ModelProto, known: dict[str, np.ndarray], names: list[str], run_model: Any
) -> dict[str, np.ndarray]:
    """Values of `names` in `model`, given `known` values of its graph inputs: fed, stored, or computed by
    running the sub-model that produces them (the failing node is not in it)."""
    graph_inputs = {v.name for v in model.graph.input}
    initializers = {t.name: t for t in model.graph.initializer}
    result = {name: known[name] for name in names if name in graph_inputs and name in known}
    result.update({name: onnx.numpy_helper.to_array(initializers[name]) for name in names if name in initializers})
    computed = [name for name in names if name not in graph_inputs and name not in initializers]
    if computed:
        # the extractor needs a type for every output it exposes: infer them first
        model = onnx.shape_inference.infer_shapes(model)
        typed = {v.name for v in list(model.graph.value_info) + list(model.graph.output)}
        computed = [name for name in computed if name in typed]
    if computed:
        sub = onnx.utils.Extractor(model).extract_model([n for n in graph_inputs if n in known], computed)
        needed = {v.name for v in sub.graph.input}
        result.update(run_model(sub, {k: v for k, v in known.items() if k in needed}))
    return result
