"""Load a model file or an export folder into a Bundle: graphs without weights, checked for safety.

Nothing here writes anywhere. External data is never read, only located: its files must exist, lie
inside the model's folder and be long enough for the offsets the model names, because a model that
points elsewhere is either broken or unsafe to hand to a runtime.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from onnxdoctor.errors import UnusableInputError
from onnxdoctor.model.proto import InferenceJob, TensorProto, may_hold_tensors
from onnxdoctor.model.slim import WireFormatError, load_slim_with_bytes, stripped_bytes

if TYPE_CHECKING:
    import onnx

    from onnxdoctor.model.graph import GraphView, Scope

# Files up to this size are handed to background shape inference as they are (see load_file).
EARLY_INFERENCE_FILE_BYTES = 16 * 1024 * 1024

# optimum's file names, in the order a decoding client uses them.
OPTIMUM_FILE_ROLES: dict[str, str] = {
    "encoder_model.onnx": "encoder",
    "decoder_model_merged.onnx": "decoder_merged",
    "decoder_model.onnx": "decoder",
    "decoder_with_past_model.onnx": "decoder_with_past",
    "model.onnx": "model",
}


@dataclass
class ModelFile:
    """One .onnx file: its weight-less graph and where it came from."""

    path: Path
    proto: onnx.ModelProto
    file_role: str  # encoder | decoder | decoder_with_past | decoder_merged | model | other
    size_bytes: int
    external_files: list[str] = field(default_factory=list)
    # the bytes `proto` was parsed from, kept until the graph view hands them to shape inference
    _serialized: bytes | None = field(default=None, repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def graph(self) -> onnx.GraphProto:
        return self.proto.graph

    @property
    def opset(self) -> int | None:
        for entry in self.proto.opset_import:
            if entry.domain in ("", "ai.onnx"):
                return entry.version
        return None

    @property
    def producer(self) -> str:
        return f"{self.proto.producer_name} {self.proto.producer_version}".strip()

    @cached_property
    def view(self) -> GraphView:
        """The navigable view of its graphs (built once, shared by the signature and every check)."""
        from onnxdoctor.model.graph import GraphView

        serialized, self._serialized = self._serialized, None  # handed over: the view drops it after inference
        return GraphView(self.proto, serialized=serialized)

    def stripped_initializers(self) -> dict[str, int]:
        """Initializer name -> bytes left unread (weights are never needed to inspect)."""
        result: dict[str, int] = {}
        for tensor in self.graph.initializer:
            skipped = stripped_bytes(tensor)
            if skipped is not None:
                result[tensor.name] = skipped
        return result


@dataclass
class Bundle:
    """What the user pointed at: one file, or the model files of an export folder."""

    path: Path
    folder: Path
    files: list[ModelFile]

    def by_role(self, file_role: str) -> ModelFile | None:
        for model_file in self.files:
            if model_file.file_role == file_role:
                return model_file
        return None

    @property
    def encoder(self) -> ModelFile | None:
        return self.by_role("encoder")

    def display_name(self, model_file: ModelFile) -> str:
        """The file as reports name it: relative to the folder the user gave."""
        if self.path.is_dir():
            return model_file.name
        return str(self.path)


def load(path: str | os.PathLike[str], *, only: str | None = None, start_inference: bool = False) -> Bundle:
    """Load a .onnx file or an export folder; raise UnusableInputError with a one-line reason."""
    target = Path(path)
    if not target.exists():
        raise UnusableInputError(target, "no such file or folder")
    if target.is_dir():
        model_paths = _folder_models(target, only)
        folder = target
    else:
        if only is not None:
            raise UnusableInputError(target, "--file only applies to a folder")
        model_paths = [target]
        folder = target.parent
    files = [load_file(model_path, folder=folder, start_inference=start_inference) for model_path in model_paths]
    return Bundle(path=target, folder=folder, files=files)


def _folder_models(folder: Path, only: str | None) -> list[Path]:
    candidates = sorted(p for p in folder.iterdir() if p.suffix == ".onnx" and p.is_file())
    if only is not None:
        chosen = folder / only
        if chosen not in candidates:
            names = ", ".join(p.name for p in candidates) or "none"
            raise UnusableInputError(folder, f"no model file named {only!r} here (found: {names})")
        return [chosen]
    if not candidates:
        raise UnusableInputError(folder, "no .onnx model file in this folder")
    known = [folder / name for name in OPTIMUM_FILE_ROLES if (folder / name) in candidates]
    others = [p for p in candidates if p.name not in OPTIMUM_FILE_ROLES]
    return known + others


def load_file(path: Path, *, folder: Path | None = None, start_inference: bool = False) -> ModelFile:
    """Parse one file without weights and check its external data references.

    `start_inference`: start shape inference now (in the background where possible, see
    proto.InferenceJob), so it overlaps the rest of the inspection.
    """
    folder = folder or path.parent
    if not path.is_file():
        raise UnusableInputError(path, "not a regular file")
    size = path.stat().st_size
    if size == 0:
        raise UnusableInputError(path, "the file is empty (0 bytes); re-export or re-download it")
    # A file of a few MB (weights outside it) is inferred as it is, by a child that reads it while this
    # process parses it: no weight it holds decides a shape (those are small tensors). Larger files hold
    # weights: they are inferred from the slim bytes, once parsed (the view starts that job).
    early = InferenceJob(path, data_prop=True) if start_inference and size <= EARLY_INFERENCE_FILE_BYTES else None
    try:
        model_file = _parse(path, size)
        if start_inference:  # the view keeps the early job, or drops it when a graph declares value_info
            model_file.view.start_inference(early)
        model_file.external_files = _check_external_data(path, model_file.view, folder)
    except BaseException:
        if early is not None:
            early.close()
        raise
    return model_file


def _parse(path: Path, size: int) -> ModelFile:
    try:
        proto, serialized = load_slim_with_bytes(path)
    except WireFormatError as exc:
        raise UnusableInputError(path, f"not a readable ONNX model: {exc}") from None
    except OSError as exc:
        raise UnusableInputError(path, f"cannot read the file: {exc.strerror or exc}") from None
    _check_is_onnx(path, proto)
    model_file = ModelFile(path=path, proto=proto, file_role=OPTIMUM_FILE_ROLES.get(path.name, "other"), size_bytes=size)
    model_file._serialized = serialized
    return model_file


def _check_is_onnx(path: Path, proto: onnx.ModelProto) -> None:
    """Protobuf accepts many byte strings; an ONNX model has an IR version, opsets and a graph."""
    if not proto.HasField("graph") or proto.ir_version <= 0 or len(proto.opset_import) == 0:
        raise UnusableInputError(
            path, "not an ONNX model (no graph, IR version or opset inside; is it the right file?)"
        )
    if len(proto.graph.input) == 0 and len(proto.graph.output) == 0:
        raise UnusableInputError(path, "not a usable ONNX model: its graph has no inputs and no outputs")


def _external_tensors(view: GraphView, scope: Scope) -> Iterator[Any]:
    """Every TensorProto stored as external data in a graph, its node attributes and nested subgraphs
    (in file order). Reads each attribute's fields directly: an 80-layer decoder has 7,000 Constants."""
    from onnxdoctor.model.graph import Scope

    external = TensorProto.EXTERNAL
    graph = scope.graph
    for tensor in graph.initializer:
        if tensor.data_location == external:
            yield tensor
    for sparse in graph.sparse_initializer:
        for tensor in (sparse.values, sparse.indices):
            if tensor.data_location == external:
                yield tensor
    for node, op_type, domain in zip(scope.nodes, scope.op_types, scope.domains):
        if not may_hold_tensors(op_type, domain):
            continue  # no tensor attribute in its schema
        for attribute in node.attribute:
            if attribute.HasField("t") and attribute.t.data_location == external:
                yield attribute.t
            for tensor in attribute.tensors:
                if tensor.data_location == external:
                    yield tensor
            subgraphs = [attribute.g] if attribute.HasField("g") else []
            for subgraph in subgraphs + list(attribute.graphs):
                yield from _external_tensors(view, view.subgraph_scope(subgraph) or Scope(subgraph, "", parent=scope))


def _check_external_data(path: Path, view: GraphView, folder: Path) -> list[str]:
    """Refuse external data that is missing, too short, or outside the model's folder."""
    base = path.parent.resolve()
    allowed_root = folder.resolve()
    lengths: dict[Path, int] = {}
    checked: dict[str, Path] = {}  # location -> its resolved path, once it passed the checks below
    for tensor in _external_tensors(view, view.main):
        info = {entry.key: entry.value for entry in tensor.external_data}
        location = info.get("location", "")
        label = f"external data of tensor {tensor.name!r}"
        resolved = checked.get(location)
        if resolved is None:  # the checks depend on the location only: once per file named
            resolved = checked[location] = _check_location(path, base, allowed_root, location, label)
        try:
            offset = int(info.get("offset", "0") or 0)
            length = int(info["length"]) if info.get("length") else None
        except ValueError:
            raise UnusableInputError(path, f"{label} has a non-numeric offset or length") from None
        if length is not None:
            lengths[resolved] = max(lengths.get(resolved, 0), offset + length)
        else:
            lengths.setdefault(resolved, offset)
    for data_file, needed in lengths.items():
        actual = data_file.stat().st_size
        if actual < needed:
            raise UnusableInputError(
                path,
                f"external data file {data_file.name!r} is truncated: {actual} bytes, the model needs {needed}",
            )
    return sorted(str(p.relative_to(base)) for p in lengths)


def _check_location(path: Path, base: Path, allowed_root: Path, location: str, label: str) -> Path:
    """The resolved path of an external data location, refused when missing or outside the model's folder."""
    if not location:
        raise UnusableInputError(path, f"{label} names no file (empty 'location')")
    if os.path.isabs(location):
        raise UnusableInputError(
            path, f"{label} points to an absolute path {location!r}; refused (must stay in the model's folder)"
        )
    resolved = (base / location).resolve()
    if not resolved.is_relative_to(allowed_root) or not resolved.is_relative_to(base):
        raise UnusableInputError(
            path, f"{label} points outside the model's folder ({location!r}); refused"
        )
    if not resolved.is_file():
        raise UnusableInputError(path, f"{label}: file {location!r} is missing next to the model")
    return resolved
