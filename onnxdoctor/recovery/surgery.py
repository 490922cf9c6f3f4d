"""Graph surgery: mend a model file in place of a re-export when no export source is given.

Each fix is a small protobuf edit on a copy of the model loaded with its weights, labelled safe or
unsafe as the rule pages say (`fix_safety`), and names the finding codes it targets. A fix never
writes over its input: `write_mended` writes a new folder, and `verify` keeps a fix only when
inspect + replay of the mended file show the targeted findings gone and no new error.

- expose-present (safe, ODS002): the Concat(past, new) of a dropped present still feeds attention;
  expose its output again under the name its sibling presents use.
- swap-concat-inputs (safe, ODP302): Concat(new, past) -> Concat(past, new).
- symbolic-batch (unsafe, ODA101): a fixed batch dim on the I/O becomes a symbol, refused when a
  constant in the graph carries the batch size (the graph would still only run that batch).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import onnx

from onnxdoctor.engine import InspectReport, inspect_path
from onnxdoctor.errors import OnnxDoctorError
from onnxdoctor.findings import Finding, Severity
from onnxdoctor.inspectors.reshape_tracer import trace_entries
from onnxdoctor.model import roles
from onnxdoctor.model.graph import PASS_THROUGH_OPS, GraphView, attribute_int
from onnxdoctor.model.load import ModelFile
from onnxdoctor.model.signature import CachePair, Signature, TensorSig, axis_roles
from onnxdoctor.recovery.verdict import judge

BATCH_SYMBOL = "batch_size"


class SurgeryRefused(OnnxDoctorError):
    """A fix does not apply to this graph; `reason` says why, `nodes` which nodes prevent it."""

    def __init__(self, fix: str, reason: str, nodes: Sequence[str] = ()) -> None:
        self.fix = fix
        self.reason = reason
        self.nodes = tuple(nodes)
        super().__init__(f"{fix} refused: {reason}")


@dataclass(frozen=True)
class SurgeryResult:
    fix: str
    safe: bool
    targets: tuple[str, ...]
    description: str
    model: onnx.ModelProto


@dataclass(frozen=True)
class VerifyResult:
    """Before/after finding codes (inspect + replay) and whether the fix is kept."""

    kept: bool
    reason: str
    before: tuple[str, ...]
    after: tuple[str, ...]
    new_errors: tuple[str, ...]
    replay_exit_code: int | None


# ------------------------------------------------------------------------------ helpers


def _load_full(model_file: ModelFile) -> onnx.ModelProto:
    """The model with its weights (inspection loads none; a written model needs them all)."""
    return onnx.load(str(model_file.path), load_external_data=True)


def _nodes_by_name(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    """Named nodes of a graph and its subgraphs (node names are what findings point to)."""
    found: dict[str, onnx.NodeProto] = {}
    for node in graph.node:
        if node.name:
            found.setdefault(node.name, node)
        for attribute in node.attribute:
            for subgraph in ([attribute.g] if attribute.HasField("g") else list(attribute.graphs)):
                for name, inner in _nodes_by_name(subgraph).items():
                    found.setdefault(name, inner)
    return found


def _all_tensor_names(graph: onnx.GraphProto) -> set[str]:
    names = {v.name for v in list(graph.input) + list(graph.output) + list(graph.value_info)}
    names.update(t.name for t in graph.initializer)
    for node in graph.node:
        names.update(node.input)
        names.update(node.output)
    return names


def _findings_of(report: InspectReport, signature: Signature, code: str) -> list[Finding]:
    return [f for f in report.findings if f.code == code and f.location.file == signature.file]


# ------------------------------------------------------------------------------ expose-present


def _past_concat(graph: onnx.GraphProto, past: str, cache_axis: int, rank: int) -> onnx.NodeProto | None:
    """The main-graph Concat on the cache axis that takes `past` directly or through Identity/Cast."""
    aliases = {past}
    for node in graph.node:  # nodes are topologically sorted: one pass follows pass-through chains
        if node.op_type in PASS_THROUGH_OPS and node.input and node.input[0] in aliases:
            aliases.update(node.output)
    candidates = []
    for node in graph.node:
        if node.op_type != "Concat" or not aliases & set(node.input):
            continue
        axis = attribute_int(node, "axis", 0)
        if (axis + rank if axis < 0 else axis) == cache_axis:
            candidates.append(node)
    return candidates[0] if len(candidates) == 1 else None


def _layer_name(sibling: TensorSig, layer: int) -> str | None:
    """The sibling's name with its layer number replaced, when the layer appears exactly once."""
    assert sibling.cache is not None
    pattern = re.compile(rf"(?<!\d){sibling.cache.layer}(?!\d)")
    if len(pattern.findall(sibling.name)) != 1:
        return None
    return pattern.sub(str(layer), sibling.name)


def _present_name(signature: Signature, pair: CachePair) -> tuple[str, TensorSig]:
    """Name the missing present after a sibling present of the same part, and check it reads back as this slot."""
    kv = signature.kv
    assert kv is not None and pair.past is not None
    siblings = [
        p.present for p in kv.pairs
        if p.present is not None and p.attention == pair.attention and p.part == pair.part and p.layer != pair.layer
    ]
    taken = {t.name for t in signature.inputs + signature.outputs}
    for sibling in siblings:
        name = _layer_name(sibling, pair.layer)
        if name is None or name in taken:
            continue
        guess = roles.guess_role(name, is_input=False, elem_type=sibling.elem_type, rank=sibling.rank)
        if guess.cache is not None and guess.cache.key == (pair.layer, pair.attention, pair.part):
            return name, sibling
    raise SurgeryRefused(
        "expose-present",
        f"no sibling present of the same part ({pair.attention} {pair.part}) whose naming gives layer {pair.layer}",
    )


def _present_type(signature: Signature, pair: CachePair, sibling: TensorSig, graph: onnx.GraphProto) -> onnx.TypeProto:
    """The sibling's type; the cache-length dim from this layer's other present when there is one."""
    declared = next(v for v in graph.output if v.name == sibling.name)
    value_type = onnx.TypeProto()
    value_type.CopyFrom(declared.type)
    kv = signature.kv
    assert kv is not None and pair.axes is not None
    same_layer = next(
        (p.present for p in kv.pairs if p.present is not None and p.layer == pair.layer and p.attention == pair.attention),
        None,
    )
    if same_layer is not None:
        own = next(v for v in graph.output if v.name == same_layer.name)
        dims = own.type.tensor_type.shape.dim
        target = value_type.tensor_type.shape.dim
        if len(dims) == len(target) > pair.axes.cache:
            target[pair.axes.cache].CopyFrom(dims[pair.axes.cache])
    return value_type


def expose_present(model_file: ModelFile, signature: Signature, pasts: Sequence[str]) -> SurgeryResult:
    """Re-expose the Concat(past, new) of every named past input as the present output it lacks.

    Safe: the Concat already computes the present (attention consumes it); only its output is
    added (through an Identity when the internal tensor has another name, so it keeps that name).
    """
    kv = signature.kv
    if kv is None:
        raise SurgeryRefused("expose-present", "no KV cache recognized")
    model = _load_full(model_file)
    graph = model.graph
    changes = []
    for past_name in pasts:
        pair = next((p for p in kv.pairs if p.past is not None and p.past.name == past_name), None)
        if pair is None or pair.present is not None or pair.axes is None:
            raise SurgeryRefused("expose-present", f"{past_name} is not a past input without its present")
        concat = _past_concat(graph, past_name, pair.axes.cache, pair.axes.rank)
        if concat is None:
            raise SurgeryRefused(
                "expose-present",
                f"no single Concat of {past_name} on the cache axis {pair.axes.cache} in the main graph "
                "(inside a merged decoder's If, or removed); re-export instead",
            )
        name, sibling = _present_name(signature, pair)
        label = concat.name or concat.output[0]
        if concat.output[0] != name:  # an exporter may have kept the present's name on the internal tensor
            if name in _all_tensor_names(graph):
                raise SurgeryRefused("expose-present", f"the name {name} is already used by another tensor")
            graph.node.append(onnx.helper.make_node("Identity", [concat.output[0]], [name], name=f"onnxdoctor/expose/{name}"))
        output = onnx.ValueInfoProto(name=name)
        output.type.CopyFrom(_present_type(signature, pair, sibling, graph))
        graph.output.append(output)
        changes.append(f"output {name} = Concat {label} ({concat.output[0]}), typed like {sibling.name}")
    return SurgeryResult("expose-present", True, ("ODS002",), "; ".join(changes), model)


# ------------------------------------------------------------------------------ swap-concat-inputs


def _concat_of_present(graph: onnx.GraphProto, present: str) -> onnx.NodeProto | None:
    producers = {out: node for node in graph.node for out in node.output}
    name = present
    while name in producers and producers[name].op_type in PASS_THROUGH_OPS:
        name = producers[name].input[0]
    node = producers.get(name)
    return node if node is not None and node.op_type == "Concat" else None


def swap_concat_inputs(model_file: ModelFile, signature: Signature, targets: Sequence[tuple[str, str | None]]) -> SurgeryResult:
    """Swap the two inputs of each Concat(new, past) so the past comes first.

    `targets` are (node name, present) from the ODP302 remedies; the present finds unnamed nodes.
    Safe: the output shape is unchanged and cache positions match token positions again.
    """
    model = _load_full(model_file)
    named = _nodes_by_name(model.graph)
    swapped = []
    for node_name, present in targets:
        node = named.get(node_name) or (_concat_of_present(model.graph, present) if present else None)
        if node is None or node.op_type != "Concat" or len(node.input) != 2:
            raise SurgeryRefused("swap-concat-inputs", f"no two-input Concat named {node_name} in {signature.file}")
        first, second = node.input
        node.input[0], node.input[1] = second, first
        swapped.append(f"{node_name}: Concat({first}, {second}) -> Concat({second}, {first})")
    return SurgeryResult("swap-concat-inputs", True, ("ODP302",), "; ".join(swapped), model)


# ------------------------------------------------------------------------------ symbolic-batch


def _batch_axes(signature: Signature) -> list[tuple[TensorSig, int, int]]:
    """(tensor, axis, fixed size) of every I/O batch axis that is a number."""
    result = []
    for tensor in signature.inputs + signature.outputs:
        for axis, meaning in axis_roles(signature, tensor).items():
            dim = tensor.dims[axis] if tensor.dims is not None else None
            if meaning == "batch" and dim is not None and dim.is_static and dim.value is not None:
                result.append((tensor, axis, dim.value))
    return result


def _batch_symbol(signature: Signature) -> str:
    """An existing symbolic batch name when some I/O has one, so all batch axes agree."""
    for tensor in signature.inputs + signature.outputs:
        for axis, meaning in axis_roles(signature, tensor).items():
            dim = tensor.dims[axis] if tensor.dims is not None else None
            if meaning == "batch" and dim is not None and dim.param:
                return dim.param
    return BATCH_SYMBOL


def batch_constants(model: onnx.ModelProto, batch: int) -> list[str]:
    """Nodes whose constant shape input carries the batch size at the batch position.

    Reshape targets and ConstantOfShape shapes with `batch` as first entry (a traced
    `view(int(x.shape[0]), ...)`); Expand shapes too, except 1, which broadcasts.
    """
    view = GraphView(model)
    culprits = []
    for node, scope in view.nodes():
        if node.op_type not in ("Reshape", "Expand", "ConstantOfShape") or not node.input:
            continue
        shape_input = node.input[0] if node.op_type == "ConstantOfShape" else (node.input[1] if len(node.input) > 1 else "")
        entries = trace_entries(shape_input, scope) if shape_input else None
        if not entries or entries[0].source != "constant" or entries[0].value != batch:
            continue
        if node.op_type == "Expand" and batch == 1:
            continue
        if node.op_type == "ConstantOfShape" and len(entries) < 2:
            continue  # a 1-D fill of length `batch` is a vector, not a batch-shaped tensor
        culprits.append(scope.node_label(node))
    return culprits


def symbolic_batch(model_file: ModelFile, signature: Signature) -> SurgeryResult:
    """Make every fixed batch dim of the inputs and outputs symbolic.

    Unsafe: the I/O declaration is only half of it; a constant computed from the export-time batch
    still fixes the batch inside the graph. Refused when such a constant is found; otherwise
    only replay with another batch size proves the fix.
    """
    frozen = _batch_axes(signature)
    if not frozen:
        raise SurgeryRefused("symbolic-batch", "no input or output has a fixed batch dim")
    sizes = {value for _, _, value in frozen}
    if len(sizes) != 1:
        raise SurgeryRefused("symbolic-batch", f"the batch axes are fixed to different sizes {sorted(sizes)}")
    batch = sizes.pop()
    model = _load_full(model_file)
    culprits = batch_constants(model, batch)
    if culprits:
        raise SurgeryRefused(
            "symbolic-batch",
            f"{len(culprits)} node(s) take a constant shape holding the export-time batch {batch} "
            f"({', '.join(culprits[:4])}{', ...' if len(culprits) > 4 else ''}); re-export with dynamic shapes",
            culprits,
        )
    symbol = _batch_symbol(signature)
    declared = {v.name: v for v in list(model.graph.input) + list(model.graph.output)}
    for tensor, axis, _ in frozen:
        declared[tensor.name].type.tensor_type.shape.dim[axis].dim_param = symbol  # clears dim_value (oneof)
    stale = [v for v in model.graph.value_info if _leading_dim(v) == batch]
    for value in stale:  # intermediate shapes recorded at export time hold the old batch
        model.graph.value_info.remove(value)
    names = sorted({tensor.name for tensor, _, _ in frozen})
    description = (
        f"batch dim {batch} -> {symbol!r} on {len(names)} inputs/outputs ({', '.join(names[:4])}"
        f"{', ...' if len(names) > 4 else ''}); {len(stale)} value_info entries with batch {batch} dropped"
    )
    return SurgeryResult("symbolic-batch", False, ("ODA101",), description, model)


def _leading_dim(value: onnx.ValueInfoProto) -> int | None:
    dims = value.type.tensor_type.shape.dim if value.type.HasField("tensor_type") else []
    return dims[0].dim_value if dims and dims[0].HasField("dim_value") else None


# ------------------------------------------------------------------------------ plan, write, verify


# fix function -> (name, safe, finding codes it targets): what a plan says before anything runs
FIXES: dict[str, tuple[str, bool, tuple[str, ...]]] = {
    "swap_concat_inputs": ("swap-concat-inputs", True, ("ODP302",)),
    "expose_present": ("expose-present", True, ("ODS002",)),
    "symbolic_batch": ("symbolic-batch", False, ("ODA101",)),
}


def describe_fix(make: Callable[[], SurgeryResult]) -> tuple[str, bool, tuple[str, ...]]:
    """(name, safe, targets) of a planned fix, without running it."""
    function = getattr(make, "func", make)
    return FIXES[function.__name__]


def plan_surgery(report: InspectReport) -> list[Callable[[], SurgeryResult]]:
    """The graph fixes that address the report's findings, most specific first.

    Each call loads the model with its weights and returns the edited copy, or raises
    SurgeryRefused with the reason (symbolic-batch refuses when a constant holds the batch).
    """
    plan: list[Callable[[], SurgeryResult]] = []
    for file_report in report.files:
        model_file, signature = file_report.model_file, file_report.signature
        swaps = [
            (str(f.remedy["node"]), f.remedy.get("present"))
            for f in _findings_of(report, signature, "ODP302")
            if f.remedy and f.remedy.get("graph_edit") == "swap_concat_inputs"
        ]
        if swaps:
            plan.append(partial(swap_concat_inputs, model_file, signature, swaps))
        pasts = [
            f.location.name
            for f in _findings_of(report, signature, "ODS002")
            if f.remedy and f.remedy.get("graph_edit") == "expose_present" and f.location.name
        ]
        if pasts:
            plan.append(partial(expose_present, model_file, signature, pasts))
        if _findings_of(report, signature, "ODA101"):
            plan.append(partial(symbolic_batch, model_file, signature))
    return plan


def write_mended(result: SurgeryResult, source: Path, out_dir: Path) -> Path:
    """Write the mended model into a new folder under the source file's name; never over the input.

    Weights stored as external data stay external (one data file beside the model); the source
    folder's config.json is copied so replay draws tokens from the real vocabulary.
    """
    out_dir = Path(out_dir)
    source = Path(source)
    if out_dir.resolve() == source.parent.resolve():
        raise OnnxDoctorError(f"{out_dir}: the mended model must go to a new folder, not next to {source.name}")
    target = out_dir / source.name
    if target.exists():
        raise OnnxDoctorError(f"{target} exists; refusing to overwrite it")
    out_dir.mkdir(parents=True, exist_ok=True)
    external = any(
        t.data_location == onnx.TensorProto.EXTERNAL for t in onnx.load(str(source), load_external_data=False).graph.initializer
    )
    model = onnx.ModelProto()
    model.CopyFrom(result.model)  # saving as external data edits the proto it is given
    onnx.save_model(model, str(target), save_as_external_data=external, location=f"{source.name}.data" if external else None)
    config = source.parent / "config.json"
    if config.is_file():
        shutil.copyfile(config, out_dir / "config.json")
    return target


def _codes(findings: Iterable[Finding], severity: Severity | None = None) -> tuple[str, ...]:
    return tuple(sorted({f.code for f in findings if severity is None or f.severity is severity}))


def _inspect_and_replay(path: Path, batch: int) -> tuple[list[Finding], int | None]:
    """Static findings plus replay findings; replay errors that stop the run count as its failure."""
    from onnxdoctor.replay.harness import Replayer, ReplayOptions

    report = inspect_path(path)
    try:
        replay = Replayer(report, ReplayOptions(steps=2, batch=batch)).run()
    except OnnxDoctorError:
        return list(report.findings), None
    return list(report.findings) + list(replay.findings), replay.exit_code


def verify(original: Path, mended: Path, targets: Sequence[str], *, safe: bool = True) -> VerifyResult:
    """Inspect + replay both files; keep the fix only if the targets are gone and no new error appears.

    Replay runs 2 steps after the prompt (step 2 is chunked, where swapped concats show) with batch 2
    when the batch axis is targeted (that is what the fix claims), else batch 1. An unsafe fix
    (`safe=False`) is only proven by a replay that passes: a replay stopped by an older error has
    not exercised it.
    """
    batch = 2 if "ODA101" in targets else 1
    before, _ = _inspect_and_replay(Path(original), batch)
    after, replay_exit = _inspect_and_replay(Path(mended), batch)
    before_errors, after_errors = set(_codes(before, Severity.ERROR)), set(_codes(after, Severity.ERROR))
    new_errors = tuple(sorted(after_errors - before_errors))
    if replay_exit is None:
        kept, reason = False, "replay of the mended model could not run"
    else:
        kept, reason = judge(targets, before_errors, set(_codes(after)), after_errors, safe=safe)
    return VerifyResult(kept, reason, _codes(before), _codes(after), new_errors, replay_exit)
