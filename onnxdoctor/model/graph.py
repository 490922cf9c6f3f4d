"""A navigable view of a model's graphs: producers, consumers, constants and inferred shapes.

Inspectors walk data flow backwards (where does this present come from? what feeds this Reshape's
shape?), also inside `If` branches that read outer-scope names. Shapes come from ONNX shape
inference with data propagation, run once per file on the weight-less model; when inference fails
the view still works, with fewer shapes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from onnxdoctor.model.dims import Dim, dims_of
from onnxdoctor.model.slim import stripped_bytes

# Ops through which only a tensor's *shape* flows, never its values.
SHAPE_ONLY_OPS = frozenset({"Shape", "Size"})
# Ops that pass their first input through without changing values or layout.
PASS_THROUGH_OPS = frozenset({"Identity", "Cast", "CastLike"})


@dataclass
class Scope:
    """One graph (the main graph or a subgraph) with lookups that fall back to enclosing graphs."""

    graph: onnx.GraphProto
    path: str
    parent: Scope | None = None
    owner: onnx.NodeProto | None = None  # the node whose attribute holds this subgraph
    producers: dict[str, onnx.NodeProto] = field(default_factory=dict)
    consumers: dict[str, list[onnx.NodeProto]] = field(default_factory=dict)
    initializers: dict[str, onnx.TensorProto] = field(default_factory=dict)
    graph_inputs: set[str] = field(default_factory=set)
    # name -> declared or inferred value; its dims are parsed on first ask (most are never asked for)
    values: dict[str, onnx.ValueInfoProto] = field(default_factory=dict)
    _dims: dict[str, tuple[Dim, ...] | None] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for node in self.graph.node:
            for output in node.output:
                if output:
                    self.producers[output] = node
            for name in node.input:
                if name:
                    self.consumers.setdefault(name, []).append(node)
        self.initializers = {t.name: t for t in self.graph.initializer}
        self.graph_inputs = {v.name for v in self.graph.input}
        for values in (self.graph.input, self.graph.output, self.graph.value_info):
            self.values.update((value.name, value) for value in values)

    def _declared_dims(self, name: str) -> tuple[Dim, ...] | None:
        if name not in self._dims:
            value = self.values.get(name)
            self._dims[name] = dims_of(value) if value is not None else None
        return self._dims[name]

    def chain(self) -> Iterator[Scope]:
        scope: Scope | None = self
        while scope is not None:
            yield scope
            scope = scope.parent

    def producer(self, name: str) -> tuple[onnx.NodeProto, Scope] | None:
        """The node producing `name`, searching enclosing graphs for outer-scope names."""
        for scope in self.chain():
            if name in scope.producers:
                return scope.producers[name], scope
            if name in scope.initializers or name in scope.graph_inputs:
                return None
        return None

    def is_graph_input(self, name: str) -> bool:
        for scope in self.chain():
            if name in scope.producers or name in scope.initializers:
                return False
            if name in scope.graph_inputs:
                return scope.parent is None
        return False

    def shape(self, name: str) -> tuple[Dim, ...] | None:
        for scope in self.chain():
            dims = scope._declared_dims(name)
            if dims is not None:
                return dims
            if name in scope.initializers:
                return tuple(Dim(value=int(d)) for d in scope.initializers[name].dims)
        return None

    def constant(self, name: str) -> np.ndarray | None:
        """The value of a constant tensor (initializer or Constant node), if it was read."""
        for scope in self.chain():
            if name in scope.initializers:
                tensor = scope.initializers[name]
                if stripped_bytes(tensor) is not None or tensor.data_location == onnx.TensorProto.EXTERNAL:
                    return None  # weights are never read to inspect, external data included
                return numpy_helper.to_array(tensor)
            node = scope.producers.get(name)
            if node is not None:
                return _constant_node_value(node) if node.op_type == "Constant" else None
        return None

    def node_label(self, node: onnx.NodeProto) -> str:
        """`name (OpType)` with the subgraph path, so users can find the node in Netron."""
        name = node.name or f"<unnamed {node.op_type} -> {node.output[0] if node.output else '?'}>"
        where = f" in {self.path}" if self.path else ""
        return f"{name} ({node.op_type}){where}"


def _constant_node_value(node: onnx.NodeProto) -> np.ndarray | None:
    for attribute in node.attribute:
        if attribute.name == "value":
            if stripped_bytes(attribute.t) is not None:
                return None
            return numpy_helper.to_array(attribute.t)
        if attribute.name == "value_int":
            return np.array(attribute.i, dtype=np.int64)
        if attribute.name == "value_ints":
            return np.array(list(attribute.ints), dtype=np.int64)
        if attribute.name == "value_float":
            return np.array(attribute.f, dtype=np.float32)
        if attribute.name == "value_floats":
            return np.array(list(attribute.floats), dtype=np.float32)
    return None


def attribute_int(node: onnx.NodeProto, name: str, default: int) -> int:
    for attribute in node.attribute:
        if attribute.name == name:
            return int(attribute.i)
    return default


def _without_value_info(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy without the exporter's intermediate shape annotations: shapes are inferred, not trusted.

    Exporters do write wrong ones (a present-derived tensor declared with the new-token length), and
    a check that believed them would blame the wrong node.
    """
    copy = onnx.ModelProto()
    copy.CopyFrom(model)

    def clear(graph: onnx.GraphProto) -> None:
        del graph.value_info[:]
        for node in graph.node:
            for attribute in node.attribute:
                if attribute.HasField("g"):
                    clear(attribute.g)
                for subgraph in attribute.graphs:
                    clear(subgraph)

    clear(copy.graph)
    return copy


class GraphView:
    """All scopes of a model; built once per file and shared by the inspectors."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.inference_error: str | None = None
        try:
            inferred = onnx.shape_inference.infer_shapes(_without_value_info(model), data_prop=True)
        except Exception as exc:  # noqa: BLE001 - inference is a help, never a requirement
            self.inference_error = f"{type(exc).__name__}: {exc}"
            inferred = model
        self.model = inferred
        self.main = Scope(inferred.graph, "")
        self.scopes: list[Scope] = [self.main]
        self._collect(self.main)
        # protobuf returns the same wrapper for a submessage each time, so ids identify subgraphs
        self._scope_by_graph = {id(scope.graph): scope for scope in self.scopes}

    def _collect(self, scope: Scope) -> None:
        for index, node in enumerate(scope.graph.node):
            for attribute in node.attribute:
                subgraphs = [attribute.g] if attribute.HasField("g") else list(attribute.graphs)
                for subgraph in subgraphs:
                    label = node.name or f"{node.op_type}#{index}"
                    path = f"{scope.path + ' / ' if scope.path else ''}{label}.{attribute.name}"
                    child = Scope(subgraph, path, parent=scope, owner=node)
                    self.scopes.append(child)
                    self._collect(child)

    def subgraph_scope(self, subgraph: onnx.GraphProto) -> Scope | None:
        return self._scope_by_graph.get(id(subgraph))

    def nodes(self) -> Iterator[tuple[onnx.NodeProto, Scope]]:
        for scope in self.scopes:
            for node in scope.graph.node:
                yield node, scope

    def source_masks(self, sources: list[str]) -> SourceMasks:
        """Which of `sources` (graph inputs) flow by value into each tensor, in one pass over the graph.

        Asking "does past X reach tensor T" for every present by a backward search costs a walk over
        the whole upstream network each time (quadratic in layers); bit masks computed once in
        topological order answer it in O(1).
        """
        return SourceMasks(self, sources)


class SourceMasks:
    """Per tensor, a bit mask of the source inputs whose values flow into it (not through Shape/Size)."""

    def __init__(self, view: GraphView, sources: list[str]) -> None:
        self.sources = list(sources)
        self.bits = {name: 1 << index for index, name in enumerate(self.sources)}
        self._masks: dict[int, dict[str, int]] = {}
        self._view = view
        self._fill(view.main)

    def _lookup(self, name: str, scope: Scope) -> int:
        for current in scope.chain():
            masks = self._masks.get(id(current.graph), {})
            if name in masks:
                return masks[name]
            if name in current.graph_inputs and current.parent is None:
                return self.bits.get(name, 0)
        return self.bits.get(name, 0)

    @staticmethod
    def _topological(scope: Scope) -> list[onnx.NodeProto]:
        """Nodes in dependency order: ONNX asks for it, but some tools write unsorted graphs that ORT still loads."""
        nodes = list(scope.graph.node)
        position = {id(node): index for index, node in enumerate(nodes)}
        waiting: dict[int, int] = {}
        dependents: dict[int, list[int]] = {}
        for index, node in enumerate(nodes):
            parents = {position[id(scope.producers[name])] for name in node.input if name in scope.producers}
            parents.discard(index)
            waiting[index] = len(parents)
            for parent in parents:
                dependents.setdefault(parent, []).append(index)
        ready = [index for index, count in waiting.items() if count == 0]
        order: list[int] = []
        while ready:
            index = ready.pop()
            order.append(index)
            for child in dependents.get(index, []):
                waiting[child] -= 1
                if waiting[child] == 0:
                    ready.append(child)
        if len(order) < len(nodes):  # a cycle: keep the stored order for what is left
            done = set(order)
            order += [index for index in range(len(nodes)) if index not in done]
        return [nodes[index] for index in order]

    def _fill(self, scope: Scope) -> None:
        masks = self._masks.setdefault(id(scope.graph), {})
        for node in self._topological(scope):
            if node.op_type in SHAPE_ONLY_OPS:
                mask = 0
            else:
                mask = 0
                for name in node.input:
                    if name:
                        mask |= self._lookup(name, scope)
                for attribute in node.attribute:
                    subgraphs = [attribute.g] if attribute.HasField("g") else list(attribute.graphs)
                    for subgraph in subgraphs:
                        child = self._view.subgraph_scope(subgraph)
                        if child is None:
                            continue
                        self._fill(child)
                        for output in subgraph.output:
                            mask |= self._lookup(output.name, child)
            for output in node.output:
                if output:
                    masks[output] = mask

    def mask(self, name: str, scope: Scope) -> int:
        return self._lookup(name, scope)

    def carries(self, name: str, scope: Scope, source: str) -> bool:
        """Do the values of `source` flow into tensor `name`?"""
        return bool(self.mask(name, scope) & self.bits.get(source, 0))

    def sources_in(self, name: str, scope: Scope) -> list[str]:
        mask = self.mask(name, scope)
        return [source for source, bit in self.bits.items() if mask & bit]
