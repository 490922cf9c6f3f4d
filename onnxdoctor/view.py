"""Show a model, or the few nodes around a finding, in Netron.

A decoder has thousands of nodes; the one Reshape a finding names is hard to find by scrolling.
`view` extracts the K-hop neighborhood of that node (also inside a merged decoder's `If` branches)
into a small standalone model that Netron opens instantly, and serves it on 127.0.0.1 only.

The extracted model is valid on its own: the nodes in their original order, only the initializers
they read (weights are copied, so the file never points back at the user's folder), a typed graph
input for every tensor read but not produced (outer-scope names of a branch included) and a graph
output for every tensor the rest of the model reads or nobody reads. It is written to a new file:
a fresh temporary folder, or a `--save` path that must not exist yet.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import onnx
from onnx import external_data_helper

from onnxdoctor.errors import MissingExtraError, UsageError
from onnxdoctor.model.graph import GraphView, Scope
from onnxdoctor.model.load import Bundle, ModelFile, load

# Above this many bytes of copied weights the extracted model keeps them in a `.data` file beside
# it: one protobuf message cannot exceed 2 GiB.
EXTERNAL_DATA_THRESHOLD = 1 << 30


@dataclass(frozen=True)
class Focus:
    """Where to look: seed nodes (indices into one graph of the file) and how they were chosen."""

    model_file: ModelFile
    view: GraphView
    scope_index: int
    seeds: tuple[int, ...]
    label: str


@dataclass(frozen=True)
class Extracted:
    """The neighborhood model, how many nodes it kept, and which graph (branch) they came from."""

    model: onnx.ModelProto
    nodes: int
    scope_path: str


def pick_model_file(bundle: Bundle, display_name: str | None = None) -> ModelFile:
    """The one file to show: a folder needs `--file` unless a finding or node already picked one."""
    if display_name is not None:
        for model_file in bundle.files:
            if bundle.display_name(model_file) == display_name:
                return model_file
    if len(bundle.files) == 1:
        return bundle.files[0]
    names = ", ".join(f.name for f in bundle.files)
    raise UsageError(f"{bundle.path} holds several model files; pick one with --file NAME ({names})")


def focus_on_finding(path: str, code: str, only_file: str | None) -> Focus:
    """The first finding with `code`, located on a node or on the tensor it names."""
    from onnxdoctor.engine import inspect_path

    report = inspect_path(path, only_file=only_file)
    code = code.upper()
    finding = next((f for f in report.findings if f.code == code), None)
    if finding is None:
        codes = ", ".join(sorted({f.code for f in report.findings})) or "none"
        raise UsageError(f"no finding {code} in {Path(path).name}; findings: {codes}")
    location = finding.location
    if location.kind not in ("node", "input", "output") or not location.name:
        raise UsageError(
            f"finding {code} is about {location.describe()}, not a node or tensor; run view without --finding "
            "to see the whole model"
        )
    bundle = load(path, only=only_file)
    model_file = pick_model_file(bundle, location.file)
    view = GraphView(model_file.proto)
    label = f"{code} at {location.kind} {location.name}"
    if location.kind == "node":
        branch = finding.evidence.get("graph") or finding.evidence.get("branch")
        found = _find_node(view, location.name, branch if isinstance(branch, str) and branch != "main" else None)
        if found is None:
            raise UsageError(f"finding {code} names node {location.name!r}, which is not in {model_file.name}")
        return Focus(model_file, view, found[0], (found[1],), label)
    seeds = _producer_seeds(view, location.name) if location.kind == "output" else _consumer_seeds(view, location.name)
    if seeds is None:
        raise UsageError(f"no node in {model_file.name} touches {location.kind} {location.name!r} of finding {code}")
    return Focus(model_file, view, seeds[0], seeds[1], label)


def focus_on_node(path: str, name: str, only_file: str | None, branch: str | None = None) -> Focus:
    """The node called `name`, in the first model file (and graph, branches included) that has it."""
    bundle = load(path, only=only_file)
    names: list[str] = []
    for model_file in bundle.files:
        view = GraphView(model_file.proto)
        found = _find_node(view, name, branch)
        if found is not None:
            return Focus(model_file, view, found[0], (found[1],), f"node {name}")
        names.extend(node.name for node, _scope in view.nodes() if node.name)
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    hint = f"; similar: {', '.join(close)}" if close else f"; nodes: {', '.join(names[:8])}, ... ({len(names)} in all)"
    raise UsageError(f"no node named {name!r} in {bundle.path.name}{hint}")


def _find_node(view: GraphView, name: str, branch: str | None = None) -> tuple[int, int] | None:
    """The node called `name`; optimum's merged branches share node names, so `branch` (a graph path
    such as `optimum::if.then_branch`, or just `then_branch`) picks the graph to look in first."""
    scopes = list(enumerate(view.scopes))
    if branch:
        scopes.sort(key=lambda item: not (item[1].path == branch or item[1].path.endswith(branch)))
    for scope_index, scope in scopes:
        for node_index, node in enumerate(scope.graph.node):
            if node.name == name:
                return scope_index, node_index
    return None


def _consumer_seeds(view: GraphView, name: str) -> tuple[int, tuple[int, ...]] | None:
    """The nodes reading a model input, in the first graph that reads it (a branch, when merged)."""
    for scope_index, scope in enumerate(view.scopes):
        if not scope.is_graph_input(name):
            continue
        seeds = tuple(i for i, node in enumerate(scope.graph.node) if name in node.input)
        if seeds:
            return scope_index, seeds
    return None


def _scope_index(view: GraphView, scope: Scope) -> int:
    """Position of `scope` in the view (by identity: dataclass equality would compare whole graphs)."""
    return next(i for i, candidate in enumerate(view.scopes) if candidate is scope)


def _producer_seeds(view: GraphView, name: str) -> tuple[int, tuple[int, ...]] | None:
    """The node producing a model output; through an `If` into the branch node that computes it."""
    scope_index = 0
    while True:
        scope = view.scopes[scope_index]
        index = next((i for i, node in enumerate(scope.graph.node) if name in node.output), None)
        if index is None:
            return None
        node = scope.graph.node[index]
        subgraph = next((a.g for a in node.attribute if a.HasField("g")), None)
        child = view.subgraph_scope(subgraph) if subgraph is not None else None
        if child is None or subgraph is None:
            return scope_index, (index,)
        inner = subgraph.output[list(node.output).index(name)].name
        if inner not in child.producers:
            return scope_index, (index,)
        scope_index, name = _scope_index(view, child), inner


def extract(focus: Focus, hops: int) -> Extracted:
    """The standalone model of every node within `hops` of the seeds, in the seeds' graph."""
    full = onnx.load(str(focus.model_file.path), load_external_data=False)
    graphs = list(_graphs_in_order(full.graph))
    graph = graphs[focus.scope_index]
    shapes_scope = focus.view.scopes[focus.scope_index]
    nodes = list(graph.node)
    producer = {out: i for i, node in enumerate(nodes) for out in node.output if out}
    consumers: dict[str, list[int]] = {}
    for i, node in enumerate(nodes):
        for name in _reads(node):
            consumers.setdefault(name, []).append(i)

    chosen = set(focus.seeds)
    frontier = set(focus.seeds)
    for _ in range(hops):
        reached: set[int] = set()
        for i in frontier:
            reached.update(producer[name] for name in _reads(nodes[i]) if name in producer)
            for out in nodes[i].output:
                reached.update(consumers.get(out, ()))
        frontier = reached - chosen
        chosen |= frontier
    # Constants at the edge stay nodes, not inputs: a Reshape's baked target is the point of a finding.
    # optimum's merged branches read shared weights through Identity nodes: those count as constants.
    chain = [graphs[_scope_index(focus.view, scope)] for scope in shapes_scope.chain()]
    weights = {t.name for g in chain for t in g.initializer}
    chosen |= {
        producer[name]
        for i in list(chosen)
        for name in _reads(nodes[i])
        if name in producer
        and (
            nodes[producer[name]].op_type == "Constant"
            or (nodes[producer[name]].op_type == "Identity" and nodes[producer[name]].input[0] in weights)
        )
    }
    selected = [nodes[i] for i in sorted(chosen)]

    produced = {out for node in selected for out in node.output if out}
    read_inside = {name for node in selected for name in _reads(node)}
    read_outside = {name for i, node in enumerate(nodes) if i not in chosen for name in _reads(node)}
    scope_outputs = {v.name for v in graph.output}
    needed = list(dict.fromkeys(name for node in selected for name in _reads(node) if name not in produced))
    # A constant read inside is a detail of the nodes shown, not a result, even if others read it too.
    outputs = [
        out
        for node in selected
        for out in node.output
        if out
        and (
            out not in read_inside
            or (node.op_type not in ("Constant", "Identity") and (out in read_outside or out in scope_outputs))
        )
    ]

    initializers, inputs = [], []
    for name in needed:
        tensor = _initializer(name, chain)
        if tensor is not None:
            initializers.append(_inline(tensor, focus.model_file.path.parent))
        else:
            inputs.append(_value_info(name, shapes_scope))
    new_graph = onnx.helper.make_graph(
        selected,
        f"{full.graph.name or 'graph'} neighborhood",
        inputs,
        [onnx.helper.make_empty_tensor_value_info(name) for name in outputs],
        initializer=initializers,
    )
    model = onnx.helper.make_model(
        new_graph,
        opset_imports=list(full.opset_import),
        ir_version=full.ir_version,
        producer_name="onnxdoctor view",
        functions=list(full.functions),
    )
    return Extracted(_typed(model, shapes_scope), len(selected), shapes_scope.path)


def _typed(model: onnx.ModelProto, scope: Scope) -> onnx.ModelProto:
    """Type the outputs and intermediates by inference on the small model itself.

    The source model's inferred shapes are not always consistent (a branch may record rank 3 for
    a rank-4 Reshape), so they are used for the inputs only, dropped to the bare dtype when they
    contradict the nodes, and as a last resort for outputs. An output nobody can type is left out
    of the graph outputs (it stays visible as its node's output); the checker requires typed I/O.
    """
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    except onnx.shape_inference.InferenceError:
        for value in model.graph.input:
            value.type.tensor_type.ClearField("shape")
        try:
            inferred = onnx.shape_inference.infer_shapes(model)
        except onnx.shape_inference.InferenceError:
            inferred = model
    known = {v.name: v.type for v in [*inferred.graph.value_info, *inferred.graph.output] if v.type.HasField("tensor_type")}
    outputs = []
    for value in inferred.graph.output:
        source = _known_value_info(value.name, scope)
        if value.name in known:
            value.type.CopyFrom(known[value.name])
        elif source is not None:
            value.type.tensor_type.elem_type = source.type.tensor_type.elem_type
        if value.type.HasField("tensor_type"):
            outputs.append(value)
    del inferred.graph.output[:]
    inferred.graph.output.extend(outputs)
    untyped = [v.name for v in inferred.graph.input if not v.type.HasField("tensor_type")]
    if untyped:
        raise UsageError(f"shape inference gives no type for {', '.join(untyped)}; try another --hops")
    return inferred


def _graphs_in_order(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """Every graph, in the order GraphView lists its scopes, so scope indices carry over."""
    yield graph
    for node in graph.node:
        for attribute in node.attribute:
            for subgraph in [attribute.g] if attribute.HasField("g") else list(attribute.graphs):
                yield from _graphs_in_order(subgraph)


def _reads(node: onnx.NodeProto) -> list[str]:
    """Explicit inputs plus the outer-scope names its subgraphs read (an `If` reads those too)."""
    names = [name for name in node.input if name]
    for attribute in node.attribute:
        for subgraph in [attribute.g] if attribute.HasField("g") else list(attribute.graphs):
            names.extend(_outer_names(subgraph))
    return list(dict.fromkeys(names))


def _outer_names(graph: onnx.GraphProto) -> list[str]:
    defined = {v.name for v in graph.input} | {t.name for t in graph.initializer}
    defined |= {out for node in graph.node for out in node.output}
    names = [name for node in graph.node for name in _reads(node) if name not in defined]
    names.extend(v.name for v in graph.output if v.name not in defined)
    return names


def _initializer(name: str, chain: list[onnx.GraphProto]) -> onnx.TensorProto | None:
    """The initializer `name` resolves to, looking outwards from the focus graph as ONNX scoping does."""
    for graph in chain:
        tensor = next((t for t in graph.initializer if t.name == name), None)
        if tensor is not None:
            return tensor
        if any(v.name == name for v in graph.input) or any(name in node.output for node in graph.node):
            return None
    return None


def _inline(tensor: onnx.TensorProto, base_dir: Path) -> onnx.TensorProto:
    """A copy with its weights read in, so the new model does not depend on the user's folder."""
    copy = onnx.TensorProto()
    copy.CopyFrom(tensor)
    if external_data_helper.uses_external_data(copy):
        # load() already refused locations outside the model's folder
        external_data_helper.load_external_data_for_tensor(copy, str(base_dir))
        copy.data_location = onnx.TensorProto.DEFAULT
        del copy.external_data[:]
    return copy


def _known_value_info(name: str, scope: Scope) -> onnx.ValueInfoProto | None:
    for current in scope.chain():
        graph = current.inferred_graph  # the shapes inference found, not only those the file declares
        for value in [*graph.value_info, *graph.input, *graph.output]:
            if value.name == name and value.type.HasField("tensor_type"):
                return value
    return None


def _value_info(name: str, scope: Scope) -> onnx.ValueInfoProto:
    """The inferred type and shape of `name`; a bare name where inference did not reach it."""
    known = _known_value_info(name, scope)
    if known is None:
        return onnx.helper.make_empty_tensor_value_info(name)
    value = onnx.ValueInfoProto()
    value.CopyFrom(known)
    return value


def write_model(model: onnx.ModelProto, target: Path) -> None:
    """Write to a path that must not exist yet; big weights go to `<name>.data` beside it."""
    weight_bytes = sum(len(t.raw_data) for t in model.graph.initializer)
    if weight_bytes > EXTERNAL_DATA_THRESHOLD:
        data_name = target.name + ".data"
        if (target.parent / data_name).exists():
            raise UsageError(f"{target.parent / data_name} already exists; refusing to overwrite it")
        onnx.save(model, str(target), save_as_external_data=True, location=data_name)
    else:
        onnx.save(model, str(target))


def check_save_target(save: Path, model_path: Path) -> None:
    """Never write over the user's model or any existing file."""
    if save.resolve() == model_path.resolve():
        raise UsageError(f"--save {save} is the model itself; pick a new file")
    if save.exists():
        raise UsageError(f"--save {save} already exists; refusing to overwrite it")
    if not save.parent.is_dir():
        raise UsageError(f"--save {save}: folder {save.parent} does not exist")


def import_netron() -> ModuleType:
    """netron is an optional extra: its absence is a one-line message, not a traceback."""
    try:
        import netron
    except ImportError:
        raise MissingExtraError("netron", "view") from None
    # netron logs "Serving ..." itself; onnxdoctor prints the URL once, on stdout
    logging.getLogger("netron").setLevel(logging.WARNING)
    return netron


def start_server(netron: ModuleType, file: Path, port: int | None, browse: bool) -> tuple[str, int]:
    """Serve `file` with Netron on 127.0.0.1 only (never on other interfaces)."""
    try:
        host, bound = netron.start(str(file), address=("127.0.0.1", port), browse=browse)
    except OSError as exc:
        raise UsageError(f"cannot serve on 127.0.0.1:{port}: {exc.strerror or exc}") from None
    return str(host), int(bound)
