"""ONNX's protobuf classes and its C++ shape inference, without running `onnx/__init__.py`.

`import onnx` costs 0.2 s of CPU with ml_dtypes 0.6 and about 1 s with ml_dtypes 0.7: the package's
`__init__` imports onnx.compose -> onnx.helper -> onnx._mapping -> numpy and ml_dtypes. The static
inspection needs none of that, only the generated message classes (`onnx/onnx_ml_pb2.py`, which
imports nothing but protobuf) and the C++ extension (`onnx.onnx_cpp2py_export`, for shape
inference). Both are loaded here from the installed onnx package, under their real module names
(`onnx.onnx_ml_pb2`, `onnx.onnx_cpp2py_export`), and registered in `sys.modules`; so a later
`import onnx` in the same process reuses them: one set of message classes (isinstance works across
both), one registration of the .proto file in protobuf's descriptor pool, one load of the extension
(which cannot be initialised twice). When the real package is imported afterwards, a one-shot import
hook sets the two modules as its attributes (`onnx.onnx_ml_pb2`), as a normal import would have.

When onnx is already imported, its modules are used as they are. If the installed onnx is laid out
differently (no generated file, no extension), this falls back to `import onnx`: slower, same result.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import signal
import sys
import weakref
from pathlib import Path
from types import ModuleType
from typing import Any

_PB2 = "onnx.onnx_ml_pb2"
_EXTENSION = "onnx.onnx_cpp2py_export"


class _AttachOnImport:
    """A meta-path hook that gives the real `onnx` package, when it is imported, the modules loaded here.

    A module found in sys.modules is never set as an attribute of its package by the import system,
    so without this `onnx.onnx_cpp2py_export` (an attribute lookup) would fail after `import onnx`.
    """

    def __init__(self, modules: dict[str, ModuleType]) -> None:
        self.modules = modules

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if name != "onnx":
            return None
        sys.meta_path.remove(self)  # one shot: find the real spec with the other finders
        spec = importlib.util.find_spec("onnx")
        if spec is None or spec.loader is None:
            return spec
        real_exec = spec.loader.exec_module  # type: ignore[union-attr]
        modules = self.modules

        def exec_module(module: ModuleType) -> None:
            for full_name, child in modules.items():
                setattr(module, full_name.rpartition(".")[2], child)
            real_exec(module)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign,union-attr]
        return spec


def _onnx_folder() -> Path | None:
    """The installed onnx package's folder, found without importing it."""
    spec = importlib.util.find_spec("onnx")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _load_light() -> tuple[ModuleType, ModuleType] | None:
    folder = _onnx_folder()
    if folder is None:
        return None
    generated = folder / "onnx_ml_pb2.py"
    extensions = [folder / f"onnx_cpp2py_export{suffix}" for suffix in importlib.machinery.EXTENSION_SUFFIXES]
    extension_path = next((p for p in extensions if p.is_file()), None)
    if not generated.is_file() or extension_path is None:
        return None
    loaded: dict[str, ModuleType] = {}
    specs = [
        importlib.util.spec_from_file_location(_PB2, generated),
        importlib.util.spec_from_file_location(
            _EXTENSION, extension_path, loader=importlib.machinery.ExtensionFileLoader(_EXTENSION, str(extension_path))
        ),
    ]
    for spec in specs:
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(spec.name, None)
            raise
        loaded[spec.name] = module
    sys.meta_path.insert(0, _AttachOnImport(loaded))
    return loaded[_PB2], loaded[_EXTENSION]


def _modules() -> tuple[ModuleType, ModuleType]:
    """(the generated message module, the C++ extension), loading as little as possible."""
    if "onnx" not in sys.modules:
        if _PB2 in sys.modules and _EXTENSION in sys.modules:  # loaded here before (module reloaded?)
            return sys.modules[_PB2], sys.modules[_EXTENSION]
        if _PB2 not in sys.modules and _EXTENSION not in sys.modules:
            light = _load_light()
            if light is not None:
                return light
    import onnx  # noqa: F401 - the fallback: the whole package

    return sys.modules[_PB2], sys.modules[_EXTENSION]


_pb2, _cpp = _modules()

ModelProto: Any = _pb2.ModelProto
GraphProto: Any = _pb2.GraphProto
NodeProto: Any = _pb2.NodeProto
AttributeProto: Any = _pb2.AttributeProto
TensorProto: Any = _pb2.TensorProto
ValueInfoProto: Any = _pb2.ValueInfoProto
StringStringEntryProto: Any = _pb2.StringStringEntryProto


# What the standard ops' schemas allow (onnx.defs, checked by tests/model/test_proto.py): only these
# standard ops have a graph-valued or a tensor-valued attribute. Looking at the attributes of every node
# (20,000 in an 80-layer decoder) costs more than building the rest of the graph view; nodes of any
# other domain (com.microsoft, ai.onnx.preview, custom) may hold anything and are always looked at.
STANDARD_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml"})
SUBGRAPH_OPS = frozenset({"If", "Loop", "Scan", "SequenceMap"})
TENSOR_ATTRIBUTE_OPS = frozenset({"Constant", "ConstantOfShape", "LabelEncoder", "TreeEnsemble", "TreeEnsembleClassifier", "TreeEnsembleRegressor"})


def may_hold_subgraphs(op_type: str, domain: str) -> bool:
    """Can this node have a graph attribute (If branches, Loop and Scan bodies)?"""
    return op_type in SUBGRAPH_OPS or domain not in STANDARD_DOMAINS


def may_hold_tensors(op_type: str, domain: str) -> bool:
    """Can this node have a tensor attribute, or a graph holding tensors?"""
    return op_type in SUBGRAPH_OPS or op_type in TENSOR_ATTRIBUTE_OPS or domain not in STANDARD_DOMAINS


def infer_shapes(model: bytes, *, data_prop: bool) -> Any:
    """ONNX shape inference (C++) of a serialized model: what `onnx.shape_inference.infer_shapes` does.

    Returns the inferred ModelProto; raises what the C++ inference raises (an inference error).
    """
    inferred = ModelProto()
    inferred.ParseFromString(_cpp.shape_inference.infer_shapes(model, False, False, data_prop))
    return inferred


# TensorProto.DataType -> (struct code of one element, the typed field that holds the values when there
# is no raw_data); the types the inspectors meet in shape tensors, indices and placeholders.
_ELEMENTS: dict[int, tuple[str, str]] = {
    1: ("f", "float_data"),  # FLOAT
    2: ("B", "int32_data"),  # UINT8
    3: ("b", "int32_data"),  # INT8
    4: ("H", "int32_data"),  # UINT16
    5: ("h", "int32_data"),  # INT16
    6: ("i", "int32_data"),  # INT32
    7: ("q", "int64_data"),  # INT64
    9: ("?", "int32_data"),  # BOOL
    10: ("e", "int32_data"),  # FLOAT16 (the typed field holds the 16 bits)
    11: ("d", "double_data"),  # DOUBLE
    12: ("I", "uint64_data"),  # UINT32
    13: ("Q", "uint64_data"),  # UINT64
}


def tensor_values(tensor: Any) -> list[Any]:
    """The values of a small, fully read tensor, flat in row-major order, as Python numbers.

    What `onnx.numpy_helper.to_array(tensor).reshape(-1).tolist()` gives, without numpy: the common
    element types from raw_data or the typed field. Anything else (strings, bfloat16, float8, 4-bit,
    external data, segments, a size that does not match the dims) goes through numpy_helper itself,
    so the answer (or the error) is always onnx's own.
    """
    import struct

    count = 1
    for dim in tensor.dims:
        count *= dim
    element = _ELEMENTS.get(tensor.data_type)
    if element is not None and tensor.data_location != TensorProto.EXTERNAL and not tensor.HasField("segment"):
        code, typed_field = element
        if tensor.HasField("raw_data"):
            raw = tensor.raw_data
            if len(raw) == count * struct.calcsize(code):
                return list(struct.unpack(f"<{count}{code}", raw))
        else:
            values = list(getattr(tensor, typed_field))
            if len(values) == count:
                if code == "e":
                    return list(struct.unpack(f"<{count}e", struct.pack(f"<{count}H", *values))) if _fits(values, "H") else _numpy_values(tensor)
                if code in "fdq" or _fits(values, code):
                    return [bool(v) for v in values] if code == "?" else values
    return _numpy_values(tensor)


def _fits(values: list[int], code: str) -> bool:
    import struct

    try:
        struct.pack(f"<{len(values)}{code}", *values)
    except struct.error:
        return False
    return True


def _numpy_values(tensor: Any) -> list[Any]:
    from onnx import numpy_helper  # the whole package: only for element types the table above leaves out

    return numpy_helper.to_array(tensor).reshape(-1).tolist()


class InferenceFailed(Exception):
    """Shape inference raised; the text is "ExceptionType: message" of what the C++ inference raised."""


# Below this size (about 2,500 nodes) inference takes a few milliseconds: not worth a process.
BACKGROUND_MIN_BYTES = 512 * 1024


class InferenceJob:
    """Shape inference of a serialized model, started now and collected later.

    The C++ inference holds the GIL for its whole run (0.15-0.3 s on an 80-layer decoder), so a thread
    would overlap nothing. On Linux, in a process that runs no other thread, a model of at least
    `min_background_bytes` is inferred in a forked child while the caller goes on (importing the
    checks, checking external data, building the signature, the checks that need no shapes); the
    child leaves the serialized result in an anonymous in-memory file (memfd). Otherwise the inference
    runs when the result is asked for. Either way the answer is the same C++ call on the same bytes.
    """

    def __init__(self, model: bytes | Path, *, data_prop: bool, background: bool = True, min_background_bytes: int | None = None) -> None:
        """`model`: the serialized model, or a file holding it (read by whoever infers: the child reads it
        while the caller parses the same file)."""
        self._model: bytes | Path | None = model
        self._data_prop = data_prop
        self._pid: int | None = None
        self._result_fd: int | None = None
        threshold = BACKGROUND_MIN_BYTES if min_background_bytes is None else min_background_bytes
        size = model.stat().st_size if isinstance(model, Path) else len(model)
        if background and size >= threshold and can_fork():
            self._start()

    @property
    def in_background(self) -> bool:
        """Is a child process inferring (not yet collected)?"""
        return self._pid is not None

    def _start(self) -> None:
        # the result goes through an anonymous in-memory file, written once by the child and read once
        # after it exits: a pipe would make the child wait for the reader 64 KB at a time
        try:
            result_fd = os.memfd_create("onnxdoctor-shapes", os.MFD_CLOEXEC)
        except (AttributeError, OSError):  # a kernel or build without memfd: infer when asked
            return
        try:
            pid = os.fork()
        except OSError:  # no fork allowed here (limits, sandbox): infer when asked
            os.close(result_fd)
            return
        if pid == 0:  # the child: infer, leave the bytes in the file, exit without any Python cleanup
            status = _CHILD_CRASHED
            try:
                try:
                    payload = _cpp.shape_inference.infer_shapes(_read(self._model), False, False, self._data_prop)
                    status = _CHILD_INFERRED
                except Exception as exc:  # noqa: BLE001 - handed to the parent, raised there
                    payload = f"{type(exc).__name__}: {exc}".encode("utf-8", "replace")
                    status = _CHILD_FAILED
                # the header goes last: a child killed half-way leaves zeros there, never a valid length
                os.pwrite(result_fd, bytes(_HEADER), 0)
                os.lseek(result_fd, _HEADER, os.SEEK_SET)
                view = memoryview(payload)
                while view:
                    view = view[os.write(result_fd, view) :]
                os.pwrite(result_fd, bytes([status]) + len(payload).to_bytes(_HEADER - 1, "little"), 0)
            except BaseException:  # noqa: BLE001 - nothing may escape a forked child
                status = _CHILD_CRASHED
            finally:
                os._exit(0 if status != _CHILD_CRASHED else 1)
        self._pid, self._result_fd, self._model = pid, result_fd, None
        _RUNNING.add(self)

    def result(self) -> Any:
        """The inferred ModelProto; raises InferenceFailed with what the inference raised ("TypeName: message",
        the same text wherever it ran)."""
        if self._result_fd is None:
            model, self._model = self._model, None
            if model is None:
                raise InferenceFailed("this shape inference was already collected or dropped")
            try:
                return infer_shapes(_read(model), data_prop=self._data_prop)
            except Exception as exc:  # noqa: BLE001 - whatever the C++ inference raises
                raise InferenceFailed(f"{type(exc).__name__}: {exc}") from exc
        status, payload = self._collect()
        if status == _CHILD_FAILED:
            raise InferenceFailed(payload.decode("utf-8", "replace"))
        if status != _CHILD_INFERRED:
            raise InferenceFailed("shape inference ended without a result (its process was stopped or crashed)")
        inferred = ModelProto()
        inferred.ParseFromString(payload)
        return inferred

    def _collect(self) -> tuple[int, bytes]:
        """(the status the child wrote, its payload), once it has exited; _CHILD_CRASHED without a
        complete result. The file's header decides, not the exit code: where SIGCHLD is ignored, the
        child is reaped by the kernel and waitpid only says that it has ended."""
        assert self._pid is not None and self._result_fd is not None
        _RUNNING.discard(self)
        pid, self._pid = self._pid, None
        result_fd, self._result_fd = self._result_fd, None
        try:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:  # SIGCHLD ignored by the embedding program: it has ended all the same
                pass
            data = os.pread(result_fd, os.fstat(result_fd).st_size, 0)
        finally:
            os.close(result_fd)
        if len(data) < _HEADER or data[0] not in (_CHILD_INFERRED, _CHILD_FAILED):
            return _CHILD_CRASHED, b""
        if int.from_bytes(data[1:_HEADER], "little") != len(data) - _HEADER:
            return _CHILD_CRASHED, b""
        return data[0], data[_HEADER:]

    def close(self) -> None:
        """Drop the job; a child still inferring is stopped and reaped."""
        _RUNNING.discard(self)
        if self._pid is not None:
            pid, self._pid = self._pid, None
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ChildProcessError, ProcessLookupError):
                pass
        if self._result_fd is not None:
            os.close(self._result_fd)
            self._result_fd = None
        self._model = None

    def __del__(self) -> None:
        self.close()

    @staticmethod
    def close_all() -> None:
        """Stop and reap every child still inferring (a process about to os._exit would orphan them)."""
        for job in list(_RUNNING):
            job.close()


# jobs whose child may still run (a weak set: a job dropped by its owner closes itself)
_RUNNING: weakref.WeakSet[InferenceJob] = weakref.WeakSet()

# what the inferring child reports (the first byte of its result file; 0 there means it never finished)
_CHILD_INFERRED, _CHILD_FAILED, _CHILD_CRASHED = 1, 3, 4
# the result file: status (1 byte), payload length (8 bytes, little-endian), payload
_HEADER = 9


def _read(model: bytes | Path) -> bytes:
    return model.read_bytes() if isinstance(model, Path) else model


def can_fork() -> bool:
    """Forking is only safe when this process runs no other thread (counted by the kernel: ONNX Runtime's
    or torch's native threads are invisible to the threading module)."""
    if not sys.platform.startswith("linux") or not hasattr(os, "fork"):
        return False
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False
