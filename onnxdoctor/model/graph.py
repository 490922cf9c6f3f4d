"""A navigable view of a model's graphs: producers, consumers, constants and inferred shapes.

Inspectors walk data flow backwards (where does this present come from? what feeds this Reshape's
shape?), also inside `If` branches that read outer-scope names. Shapes come from ONNX shape
inference with data propagation, run once per file on the weight-less model when a shape is first
asked for; when inference fails the view still works, with fewer shapes.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cached_property
from typing import TYPE_CHECKING, Any

from onnxdoctor.model import proto
from onnxdoctor.model.dims import Dim, dims_of
from onnxdoctor.model.slim import stripped_bytes

if TYPE_CHECKING:
    import onnx

# Ops through which only a tensor's *shape* flows, never its values.
SHAPE_ONLY_OPS = frozenset({"Shape", "Size"})
# Ops that pass their first input through without changing values or layout.
PASS_THROUGH_OPS = frozenset({"Identity", "Cast", "CastLike"})


def subgraph_attributes(node: onnx.NodeProto) -> Iterator[tuple[onnx.AttributeProto, onnx.GraphProto]]:
    """(attribute, graph) for each subgraph a node holds (If branches, Loop and Scan bodies)."""
    for attribute in node.attribute:
        if attribute.HasField("g"):
            yield attribute, attribute.g
        else:
            for subgraph in attribute.graphs:
                yield attribute, subgraph


may_hold_subgraphs = proto.may_hold_subgraphs


class Scope:
    """One graph (the main graph or a subgraph) with lookups that fall back to enclosing graphs.

    The indexes (producers, consumers, initializers, inferred values) are built on first use.
    """

    def __init__(
        self, graph: onnx.GraphProto, path: str, parent: Scope | None = None, owner: onnx.NodeProto | None = None, view: GraphView | None = None
    ) -> None:
        self.graph = graph
        self.path = path
        self.parent = parent
        self.owner = owner  # the node whose attribute holds this subgraph
        self.nodes: list[onnx.NodeProto] = list(graph.node)
        self.op_types: list[str] = [node.op_type for node in self.nodes]
        self.domains: list[str] = [node.domain for node in self.nodes]
        self._view = view
        self._dims: dict[str, tuple[Dim, ...] | None] = {}
        self._constants: dict[str, Constant | None] = {}

    def __repr__(self) -> str:
        return f"Scope({self.path or 'main'!r}, {len(self.nodes)} nodes)"

    @cached_property
    def producers(self) -> dict[str, onnx.NodeProto]:
        producers = {}
        for node in self.nodes:
            outputs = node.output
            if len(outputs) == 1:  # most nodes: one index instead of an iterator
                name = outputs[0]
                if name:
                    producers[name] = node
                continue
            for output in outputs:
                if output:
                    producers[output] = node
        return producers

    @cached_property
    def consumers(self) -> dict[str, list[onnx.NodeProto]]:
        consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in self.nodes:
            for name in node.input:
                if name:
                    consumers.setdefault(name, []).append(node)
        return consumers

    @cached_property
    def initializers(self) -> dict[str, onnx.TensorProto]:
        return {t.name: t for t in self.graph.initializer}

    @cached_property
    def graph_inputs(self) -> set[str]:
        return {v.name for v in self.graph.input}

    @property
    def inferred_graph(self) -> onnx.GraphProto:
        """This graph as shape inference returned it (the graph itself when inference failed)."""
        return self._view.inferred_graph(self) if self._view is not None else self.graph

    @cached_property
    def values(self) -> dict[str, onnx.ValueInfoProto]:
        """name -> declared or inferred value; its dims are parsed on first ask (most are never asked for)."""
        graph = self.inferred_graph
        values = {value.name: value for value in graph.input}
        values.update({value.name: value for value in graph.output})
        values.update({value.name: value for value in graph.value_info})
        return values

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

    def constant(self, name: str) -> Constant | None:
        """The value of a constant tensor (initializer or Constant node), if it was read (memoized: the
        Reshape tracer asks for the same shape constants many times)."""
        try:
            return self._constants[name]
        except KeyError:
            found = self._constants[name] = self._find_constant(name)
            return found

    def _find_constant(self, name: str) -> Constant | None:
        for scope in self.chain():
            if name in scope.initializers:
                tensor = scope.initializers[name]
                if stripped_bytes(tensor) is not None or tensor.data_location == proto.TensorProto.EXTERNAL:
                    return None  # weights are never read to inspect, external data included
                return Constant.of(tensor)
            node = scope.producers.get(name)
            if node is not None:
                return _constant_node_value(node) if node.op_type == "Constant" else None
        return None

    def node_label(self, node: onnx.NodeProto) -> str:
        """`name (OpType)` with the subgraph path, so users can find the node in Netron."""
        name = node.name or f"<unnamed {node.op_type} -> {node.output[0] if node.output else '?'}>"
        where = f" in {self.path}" if self.path else ""
        return f"{name} ({node.op_type}){where}"


class Constant:
    """A constant tensor's dims and (read on first use) its values, flat in row-major order."""

    __slots__ = ("dims", "_tensor", "_values")

    def __init__(self, dims: tuple[int, ...], values: list[Any] | None = None, tensor: onnx.TensorProto | None = None) -> None:
        self.dims = dims
        self._values = values
        self._tensor = tensor

    @classmethod
    def of(cls, tensor: onnx.TensorProto) -> Constant:
        return cls(tuple(tensor.dims), tensor=tensor)

    @property
    def ndim(self) -> int:
        return len(self.dims)

    @property
    def values(self) -> list[Any]:
        if self._values is None:
            self._values = proto.tensor_values(self._tensor)
        return self._values

    def __repr__(self) -> str:
        return f"Constant(dims={list(self.dims)}, values={self.values!r})"


def _constant_node_value(node: onnx.NodeProto) -> Constant | None:
    """A Constant node's value (read once: Scope.constant memoizes it), None when it was not read."""
    for attribute in node.attribute:
        name = attribute.name
        if name == "value":
            tensor = attribute.t  # an unset t reads as an empty tensor
            if stripped_bytes(tensor) is not None or tensor.data_location == proto.TensorProto.EXTERNAL:
                return None  # not read: a weight, or (torch.onnx puts even small ones there) external data
            return Constant.of(tensor)
        if name in ("value_int", "value_float"):
            return Constant((), [attribute.i if name == "value_int" else attribute.f])
        if name in ("value_ints", "value_floats"):
            values = list(attribute.ints if name == "value_ints" else attribute.floats)
            return Constant((len(values),), values)
    return None


def attribute_int(node: onnx.NodeProto, name: str, default: int) -> int:
    for attribute in node.attribute:
        if attribute.name == name:
            return int(attribute.i)
    return default


# Where a subgraph sits: (index of the enclosing scope, node index, attribute index, index in
# `graphs`, or -1 for `g`); the same in any copy of the model (inference adds no node).
Where = tuple[int, int, int, int]


def _same_graphs(root: onnx.GraphProto, wheres: list[Where | None]) -> list[onnx.GraphProto]:
    """The graphs of another copy of the model (a parsed inference result), in the order of `wheres`."""
    graphs = [root]
    for where in wheres[1:]:
        assert where is not None
        parent, node, attribute_index, graph_index = where
        attribute = graphs[parent].node[node].attribute[attribute_index]
        graphs.append(attribute.g if graph_index < 0 else attribute.graphs[graph_index])
    return graphs


def _inference_input(model: onnx.ModelProto, graphs: list[onnx.GraphProto], wheres: list[Where | None], serialized: bytes | None) -> bytes:
    """The model to infer shapes of, serialized, without the exporter's intermediate shape annotations:
    shapes are inferred, not trusted.

    Exporters do write wrong ones (a present-derived tensor declared with the new-token length), and
    a check that believed them would blame the wrong node.
    """
    if not any(len(graph.value_info) for graph in graphs):
        return serialized if serialized is not None else model.SerializeToString()
    copy = proto.ModelProto()
    copy.CopyFrom(model)
    for graph in _same_graphs(copy.graph, wheres):
        del graph.value_info[:]
    return copy.SerializeToString()


class GraphView:
    """All scopes of a model; built once per file and shared by the inspectors.

    Shapes come from ONNX shape inference with data propagation, run on first use (one C++ call on the
    weight-less model); when inference fails the view still works, with the shapes the file declares.
    """

    def __init__(self, model: onnx.ModelProto, *, serialized: bytes | None = None) -> None:
        """`serialized`: the bytes `model` was parsed from, if at hand (saves serializing it for inference)."""
        self.model = model
        self._serialized = serialized
        self.main = Scope(model.graph, "", view=self)
        self.scopes: list[Scope] = [self.main]
        self._wheres: list[Where | None] = [None]
        self._collect(self.main, 0)
        # protobuf returns the same wrapper for a submessage each time, so ids identify subgraphs
        self._scope_by_graph = {id(scope.graph): scope for scope in self.scopes}
        self._inference_error: str | None = None
        self._job: proto.InferenceJob | None = None

    def start_inference(self, early: proto.InferenceJob | None = None) -> None:
        """Start shape inference now, in the background where the platform allows (proto.InferenceJob):
        the inspect path calls this at load, so the inference overlaps what needs no shapes.

        `early`: a job the loader started on the file itself before it was parsed (model.load); kept
        when no graph declares value_info (the file is then what inference takes, its few small inline
        weights aside), else dropped for a job on the model without those declarations.
        """
        if self._job is not None or "_inferred_graphs" in self.__dict__:
            if early is not None:
                early.close()
            return
        if early is not None and not any(len(scope.graph.value_info) for scope in self.scopes):
            self._job, self._serialized = early, None
            return
        if early is not None:
            early.close()
        try:
            self._job = self._new_job(background=True)
        except Exception:  # noqa: BLE001 - the lazy path meets the same problem and records it
            self._job = None

    @property
    def inference_running(self) -> bool:
        """Is shape inference running in the background (started, not yet collected)?"""
        return self._job is not None and self._job.in_background

    def _new_job(self, *, background: bool) -> proto.InferenceJob:
        graphs = [scope.graph for scope in self.scopes]
        serialized, self._serialized = self._serialized, None
        return proto.InferenceJob(_inference_input(self.model, graphs, self._wheres, serialized), data_prop=True, background=background)

    def _collect(self, scope: Scope, scope_index: int) -> None:
        for index, (node, op_type, domain) in enumerate(zip(scope.nodes, scope.op_types, scope.domains)):
            if not may_hold_subgraphs(op_type, domain):
                continue
            for attribute_index, attribute in enumerate(node.attribute):
                graphs = [(-1, attribute.g)] if attribute.HasField("g") else list(enumerate(attribute.graphs))
                for graph_index, subgraph in graphs:
                    label = node.name or f"{node.op_type}#{index}"
                    path = f"{scope.path + ' / ' if scope.path else ''}{label}.{attribute.name}"
                    child = Scope(subgraph, path, parent=scope, owner=node, view=self)
                    self.scopes.append(child)
                    self._wheres.append((scope_index, index, attribute_index, graph_index))
                    self._collect(child, len(self.scopes) - 1)

    @cached_property
    def _inferred_graphs(self) -> list[onnx.GraphProto]:
        graphs = [scope.graph for scope in self.scopes]
        try:
            job, self._job = self._job or self._new_job(background=False), None
            inferred = job.result()
        except Exception as exc:  # noqa: BLE001 - inference is a help, never a requirement
            self._inference_error = str(exc) if isinstance(exc, proto.InferenceFailed) else f"{type(exc).__name__}: {exc}"
            return graphs
        try:
            return _same_graphs(inferred.graph, self._wheres)
        except (IndexError, AssertionError):  # inference adds no node or graph; if it ever did, trust none
            self._inference_error = "shape inference returned a model with other subgraphs"
            return graphs

    def inferred_graph(self, scope: Scope) -> onnx.GraphProto:
        return self._inferred_graphs[self.scopes.index(scope)]

    @property
    def inference_error(self) -> str | None:
        """Why shape inference failed (None when it ran); runs it if it has not run yet."""
        self._inferred_graphs  # noqa: B018
        return self._inference_error

    def subgraph_scope(self, subgraph: onnx.GraphProto) -> Scope | None:
        return self._scope_by_graph.get(id(subgraph))

    def nodes(self, *op_types: str) -> Iterator[tuple[onnx.NodeProto, Scope]]:
        """Every node (of these op types, when given) with its scope: graph by graph, in node order."""
        for scope in self.scopes:
            if not op_types:
                for node in scope.nodes:
                    yield node, scope
                continue
            for node, op_type in zip(scope.nodes, scope.op_types):
                if op_type in op_types:
                    yield node, scope

    def source_masks(self, sources: list[str]) -> SourceMasks:
        """Which of `sources` (graph inputs) flow by value into each tensor, in one pass over the graph.

        Asking "does past X reach tensor T" for every present by a backward search costs a walk over
        the whole upstream network each time (quadratic in layers); bit masks computed once in
        topological order answer it in O(1). The pass runs on the first question.
        """
        return SourceMasks(self, sources)


class SourceMasks:
    """Per tensor, a bit mask of the source inputs whose values flow into it (not through Shape/Size)."""

    def __init__(self, view: GraphView, sources: list[str]) -> None:
        self.sources = list(sources)
        self.bits = {name: 1 << index for index, name in enumerate(self.sources)}
        self._masks: dict[int, dict[str, int]] = {}
        self._view = view
        self._filled = False

    def _lookup(self, name: str, scope: Scope) -> int:
        if not self._filled:  # one pass over the whole graph, on the first question
            self._filled = True
            self._fill(self._view.main)
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
        nodes = scope.nodes
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
                for _attribute, subgraph in subgraph_attributes(node) if may_hold_subgraphs(node.op_type, node.domain) else ():
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
