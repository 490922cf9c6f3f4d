"""Read an ONNX file's graph without its weights.

`onnx.load` materialises every inline weight: a 500 MB model costs 500 MB+ of memory and a second
of parsing before anything is inspected. Inspection needs names, types, dims, nodes and the few
tiny constants (shape targets), never the weights. This module walks the protobuf wire format with
positioned reads (os.pread) and re-encodes the ModelProto with the data of every large tensor left
out, so only the bytes of the graph structure are read. Not a memory map: touching a weight's
header in a mapped file can map far more than that page (a 500 MB inline-weight model read through
an mmap was 300 MB resident even with MADV_RANDOM; through pread it is under 90 MB).

Files up to 16 MB (weights kept outside, or a tiny model) are the exception: reading them whole and
letting protobuf parse them is faster than walking tens of thousands of small node fields in Python;
their large tensors are then emptied in place, exactly as the walk leaves them.

A stripped tensor keeps its name, dims and data type and carries a metadata_props entry
`onnxdoctor.stripped_bytes`, so later code can tell "weights not read" from "empty tensor".
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from onnxdoctor.model import proto

if TYPE_CHECKING:
    import onnx

STRIPPED_KEY = "onnxdoctor.stripped_bytes"
# Tensors (and messages that may contain them) up to this size are kept whole: shape targets,
# axes and other small constants are what the inspectors read.
KEEP_INLINE_BYTES = 4096

_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5

# Field numbers from onnx.proto (stable: protobuf field numbers never change).
_MODEL_GRAPH, _MODEL_FUNCTIONS = 7, 25
_GRAPH_NODE, _GRAPH_INITIALIZER, _GRAPH_SPARSE_INITIALIZER = 1, 5, 15
_NODE_ATTRIBUTE = 5
_ATTR_T, _ATTR_G, _ATTR_TENSORS, _ATTR_GRAPHS = 5, 6, 10, 11
_ATTR_SPARSE_TENSOR, _ATTR_SPARSE_TENSORS = 22, 23
_SPARSE_VALUES, _SPARSE_INDICES = 1, 2
_FUNCTION_NODE = 7
_TENSOR_KEEP_FIELDS = frozenset({1, 2, 3, 8, 12, 13, 14, 16})  # dims, type, segment, name, doc, external
_TENSOR_METADATA_PROPS = 16
# Read the file in windows of this size; a message up to _LOCAL_BYTES (a graph without inline weights)
# is read whole and walked in memory.
_WINDOW_BYTES = 64 * 1024
_LOCAL_BYTES = 16 * 1024 * 1024


class WireFormatError(ValueError):
    """The bytes are not a well-formed protobuf message (truncated, or not protobuf at all)."""


def _read_varint(buf: _Buffer, pos: int, end: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= end:
            raise WireFormatError("message ends inside a number (truncated file?)")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise WireFormatError("malformed number in message")


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def iter_fields(buf: _Buffer, start: int, end: int) -> Iterator[tuple[int, int, int, int, int]]:
    """Yield (field number, wire type, field start, payload start, payload end) for each field."""
    pos = start
    while pos < end:
        field_start = pos
        key, pos = _read_varint(buf, pos, end)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise WireFormatError("field number 0 is not valid protobuf")
        if wire_type == _VARINT:
            _, pos_after = _read_varint(buf, pos, end)
            yield number, wire_type, field_start, pos, pos_after
            pos = pos_after
        elif wire_type == _LEN:
            length, payload = _read_varint(buf, pos, end)
            pos = payload + length
            if pos > end:
                raise WireFormatError(
                    f"a field claims {length} bytes but the message ends {pos - end} bytes early "
                    "(truncated file?)"
                )
            yield number, wire_type, field_start, payload, pos
        elif wire_type == _FIXED64:
            if pos + 8 > end:
                raise WireFormatError("message ends inside a 64-bit field (truncated file?)")
            yield number, wire_type, field_start, pos, pos + 8
            pos += 8
        elif wire_type == _FIXED32:
            if pos + 4 > end:
                raise WireFormatError("message ends inside a 32-bit field (truncated file?)")
            yield number, wire_type, field_start, pos, pos + 4
            pos += 4
        else:
            raise WireFormatError(f"wire type {wire_type} is not used by ONNX (not an ONNX file?)")


class FileBytes:
    """Read-only random access to a file through os.pread, with one cached window.

    Supports what the walker needs from a memoryview: len, an index (a byte) and a slice (bytes).
    """

    def __init__(self, fd: int, size: int) -> None:
        self._fd, self._size = fd, size
        self._window, self._low = b"", 0

    def __len__(self) -> int:
        return self._size

    def _read(self, start: int, stop: int) -> bytes:
        data = os.pread(self._fd, stop - start, start)
        if len(data) != stop - start:
            raise WireFormatError("the file ended while it was being read (truncated or being written?)")
        return data

    def __getitem__(self, key: int | slice) -> int | bytes:
        low, window = self._low, self._window
        if isinstance(key, slice):
            start, stop = key.start, key.stop
            if low <= start and stop <= low + len(window):
                return window[start - low : stop - low]
            if stop - start <= _WINDOW_BYTES:
                self._window, self._low = self._read(start, min(start + _WINDOW_BYTES, self._size)), start
                return self._window[: stop - start]
            return self._read(start, stop)
        if not low <= key < low + len(window):
            self._window, self._low = self._read(key, min(key + _WINDOW_BYTES, self._size)), key
            return self._window[0]
        return window[key - low]


_Buffer = memoryview | bytes | FileBytes
_Slimmer = Callable[[_Buffer, int, int], bytes]


def _local(buf: _Buffer, start: int, end: int) -> memoryview | None:
    """A message small enough to read whole, as an in-memory view (walked at C speed); None otherwise."""
    if isinstance(buf, FileBytes) and end - start <= _LOCAL_BYTES:
        return memoryview(buf[start:end])  # type: ignore[arg-type]
    return None


def _rewrite(buf: _Buffer, start: int, end: int, children: dict[int, _Slimmer]) -> bytes:
    """Copy a message, passing the named length-delimited fields through their slimmer.

    Fields that need no slimming are copied in runs (one slice for thousands of nodes); their framing
    is validated by protobuf when the slim model is parsed.
    """
    if (local := _local(buf, start, end)) is not None:
        return _rewrite(local, 0, len(local), children)
    if end - start <= KEEP_INLINE_BYTES:
        return bytes(buf[start:end])  # type: ignore[arg-type]
    out: list[bytes] = []
    run_start = start
    for number, wire_type, field_start, payload, payload_end in iter_fields(buf, start, end):
        slimmer = children.get(number) if wire_type == _LEN else None
        if slimmer is None or payload_end - payload <= KEEP_INLINE_BYTES:
            continue  # kept whole: part of the current run
        if field_start > run_start:
            out.append(bytes(buf[run_start:field_start]))  # type: ignore[arg-type]
        child = slimmer(buf, payload, payload_end)
        out.append(_encode_varint((number << 3) | _LEN))
        out.append(_encode_varint(len(child)))
        out.append(child)
        run_start = payload_end
    if end > run_start:
        out.append(bytes(buf[run_start:end]))  # type: ignore[arg-type]
    return b"".join(out)


def _slim_tensor(buf: _Buffer, start: int, end: int) -> bytes:
    if end - start <= KEEP_INLINE_BYTES:
        return _rewrite(buf, start, end, {})
    out: list[bytes] = []
    skipped = 0
    for number, _wire_type, field_start, _payload, payload_end in iter_fields(buf, start, end):
        if number in _TENSOR_KEEP_FIELDS:
            out.append(bytes(buf[field_start:payload_end]))
        else:
            skipped += payload_end - field_start
    if skipped:
        marker = proto.StringStringEntryProto(key=STRIPPED_KEY, value=str(skipped)).SerializeToString()
        out.append(_encode_varint((_TENSOR_METADATA_PROPS << 3) | _LEN))
        out.append(_encode_varint(len(marker)))
        out.append(marker)
    return b"".join(out)


def _slim_sparse(buf: _Buffer, start: int, end: int) -> bytes:
    return _rewrite(buf, start, end, {_SPARSE_VALUES: _slim_tensor, _SPARSE_INDICES: _slim_tensor})


def _slim_attribute(buf: _Buffer, start: int, end: int) -> bytes:
    return _rewrite(
        buf,
        start,
        end,
        {
            _ATTR_T: _slim_tensor,
            _ATTR_G: _slim_graph,
            _ATTR_TENSORS: _slim_tensor,
            _ATTR_GRAPHS: _slim_graph,
            _ATTR_SPARSE_TENSOR: _slim_sparse,
            _ATTR_SPARSE_TENSORS: _slim_sparse,
        },
    )


def _slim_node(buf: _Buffer, start: int, end: int) -> bytes:
    return _rewrite(buf, start, end, {_NODE_ATTRIBUTE: _slim_attribute})


def _slim_graph(buf: _Buffer, start: int, end: int) -> bytes:
    return _rewrite(
        buf,
        start,
        end,
        {
            _GRAPH_NODE: _slim_node,
            _GRAPH_INITIALIZER: _slim_tensor,
            _GRAPH_SPARSE_INITIALIZER: _slim_sparse,
        },
    )


def _slim_function(buf: _Buffer, start: int, end: int) -> bytes:
    return _rewrite(buf, start, end, {_FUNCTION_NODE: _slim_node})


def _slim_model(buf: _Buffer, start: int, end: int) -> bytes:
    return _rewrite(buf, start, end, {_MODEL_GRAPH: _slim_graph, _MODEL_FUNCTIONS: _slim_function})


def slim_model_bytes(data: bytes | memoryview) -> bytes:
    """The serialized ModelProto with large tensor payloads removed (raises WireFormatError)."""
    view = memoryview(data)
    return _slim_model(view, 0, len(view))


def load_slim(path: Path) -> onnx.ModelProto:
    """Parse `path` into a ModelProto whose large tensors carry no data (see module docstring)."""
    return load_slim_with_bytes(path)[0]


def load_slim_with_bytes(path: Path) -> tuple[onnx.ModelProto, bytes]:
    """load_slim, and the serialized slim model it parsed (what shape inference takes, without re-serializing).

    A file up to _LOCAL_BYTES is read whole and parsed by protobuf, then its large tensors are emptied
    in place (the same tensors, fields and marker as the walk): walking 20,000 small node fields in
    Python costs more than parsing them in C. Larger files are walked, so their weights are never read.
    """
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size == 0:
            raise WireFormatError("the file is empty")
        if size <= _LOCAL_BYTES:
            data = handle.read()
            if len(data) != size:
                raise WireFormatError("the file ended while it was being read (truncated or being written?)")
            try:
                model = _parse(data)
            except WireFormatError:
                _slim_model(memoryview(data), 0, size)  # says where the bytes break (a truncated file, mostly)
                raise
            return model, (model.SerializeToString() if strip_large_tensors(model) else data)
        slim = _slim_model(FileBytes(handle.fileno(), size), 0, size)
    return _parse(slim), slim


def _parse(data: bytes) -> onnx.ModelProto:
    model = proto.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception as exc:  # protobuf raises DecodeError / RuntimeError depending on backend
        raise WireFormatError(f"protobuf could not parse it ({exc})") from exc
    return model


# TensorProto fields that hold the values (everything the walk does not keep)
_TENSOR_DATA_FIELDS = ("float_data", "int32_data", "string_data", "int64_data", "raw_data", "double_data", "uint64_data")


def _strip_tensor(tensor: onnx.TensorProto) -> bool:
    size = tensor.ByteSize()
    if size <= KEEP_INLINE_BYTES:
        return False
    for name in _TENSOR_DATA_FIELDS:
        tensor.ClearField(name)
    skipped = size - tensor.ByteSize()
    if skipped:
        tensor.metadata_props.add(key=STRIPPED_KEY, value=str(skipped))
    return True


def _strip_sparse(sparse: onnx.SparseTensorProto) -> bool:
    return _strip_tensor(sparse.values) | _strip_tensor(sparse.indices)


def _strip_nodes(nodes: Iterable[onnx.NodeProto]) -> bool:
    stripped = False
    for node in nodes:
        if node.ByteSize() <= KEEP_INLINE_BYTES:
            continue  # nothing inside can be larger (most nodes: one C call)
        for attribute in node.attribute:
            if attribute.HasField("t"):
                stripped |= _strip_tensor(attribute.t)
            for tensor in attribute.tensors:
                stripped |= _strip_tensor(tensor)
            if attribute.HasField("sparse_tensor"):
                stripped |= _strip_sparse(attribute.sparse_tensor)
            for sparse in attribute.sparse_tensors:
                stripped |= _strip_sparse(sparse)
            if attribute.HasField("g"):
                stripped |= _strip_graph(attribute.g)
            for graph in attribute.graphs:
                stripped |= _strip_graph(graph)
    return stripped


def _strip_graph(graph: onnx.GraphProto) -> bool:
    stripped = _strip_nodes(graph.node)
    for tensor in graph.initializer:
        stripped |= _strip_tensor(tensor)
    for sparse in graph.sparse_initializer:
        stripped |= _strip_sparse(sparse)
    return stripped


def strip_large_tensors(model: onnx.ModelProto) -> bool:
    """Empty, in place, every tensor the walk would leave unread (graph, subgraphs and functions, not
    training_info, as the walk); True if any was."""
    stripped = _strip_graph(model.graph)
    for function in model.functions:
        stripped |= _strip_nodes(function.node)
    return stripped


def stripped_bytes(tensor: onnx.TensorProto) -> int | None:
    """How many payload bytes were left unread for this tensor, or None if it is complete."""
    for entry in tensor.metadata_props:
        if entry.key == STRIPPED_KEY:
            return int(entry.value)
    return None
