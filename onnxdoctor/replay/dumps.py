"""Feed dumps any client can write: `.npz`, JSON, a folder of `.npy`, safetensors, ONNX test data.

check-feeds must read what a Rust / C# / JS client finds easy to write, and replay must write its
golden record in the same forms so such a client can diff its own feeds against it. The format is
recognized from the content (zip, JSON, safetensors header, `.npy` or `input_N.pb` folder), never
from a flag. Only numpy is imported here; onnx is imported for the TensorProto layout only, and
safetensors is read and written directly (8-byte header length, JSON header, raw little-endian
bytes), so the base install needs no extra package.

JSON dump: `{"input name": {"dtype": "int64", "shape": [1, 5], "data": [...]}}`; `data` is a flat
or nested list (`null` reads as NaN, as `JSON.stringify` writes it), or a base64 string of the
raw little-endian bytes.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from onnxdoctor.errors import UnusableInputError

RECORD_FORMATS = ("npz", "json", "safetensors", "pb")
EXPECTED = (
    "expected a .npz, a JSON dump ({\"name\": {\"dtype\", \"shape\", \"data\"}}), a safetensors file, "
    "a folder of NAME.npy files or an ONNX test-data folder of input_N.pb TensorProtos"
)

_DTYPE_ALIASES = {
    "float": "float32", "double": "float64", "half": "float16", "long": "int64", "int": "int32",
    "boolean": "bool", "f16": "float16", "f32": "float32", "f64": "float64",
    "i8": "int8", "i16": "int16", "i32": "int32", "i64": "int64",
    "u8": "uint8", "u16": "uint16", "u32": "uint32", "u64": "uint64",
}
_SAFETENSORS = {
    "BOOL": "bool", "U8": "uint8", "I8": "int8", "U16": "uint16", "I16": "int16", "F16": "float16",
    "U32": "uint32", "I32": "int32", "F32": "float32", "U64": "uint64", "I64": "int64", "F64": "float64",
}
_SAFETENSORS_CODE = {numpy: code for code, numpy in _SAFETENSORS.items()}
_INPUT_PB = re.compile(r"input_(\d+)\.pb$")
_OUTPUT_PB = re.compile(r"output_(\d+)\.pb$")
_STEP = re.compile(r"^(?:step|test_data_set_)(\d+)(?:\.(?:npz|json|safetensors))?$")


def _dtype(name: object, where: str, path: Path) -> np.dtype:
    text = str(name).strip().lower()
    if text.startswith("tensor(") and text.endswith(")"):
        text = text[7:-1]
    text = _DTYPE_ALIASES.get(text, _SAFETENSORS.get(str(name), text))
    try:
        dtype = np.dtype(text)
    except TypeError:
        raise UnusableInputError(path, f"{where}: unknown dtype {name!r}") from None
    if dtype.kind not in "biuf":
        raise UnusableInputError(path, f"{where}: unsupported dtype {name!r}")
    return dtype


# ---------------------------------------------------------------------------- detection


def detect(path: Path) -> str | None:
    """npz | json | safetensors | npy | pb, from the content; None when it is none of them."""
    if path.is_dir():
        names = [p.name for p in path.iterdir() if p.is_file()]
        if any(_INPUT_PB.match(n) for n in names):
            return "pb"
        if any(n.endswith(".npy") for n in names):
            return "npy"
        return None
    if not path.is_file():
        return None
    with path.open("rb") as handle:
        head = handle.read(16)
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "npz"
    if head.lstrip()[:1] == b"{":
        return "json"
    if len(head) >= 9 and head[8:9] == b"{":
        (size,) = struct.unpack("<Q", head[:8])
        if 0 < size <= path.stat().st_size - 8:
            return "safetensors"
    return None


def expand_steps(paths: Sequence[Path]) -> list[Path]:
    """Each argument is a step dump, or a folder of them (stepK.*, stepK/, test_data_set_K/) taken in K order."""
    steps: list[Path] = []
    for path in paths:
        if not path.exists():
            raise UnusableInputError(path, "no such feeds file or folder")
        if detect(path) is not None or not path.is_dir():
            steps.append(path)
            continue
        numbered = []
        for child in path.iterdir():
            match = _STEP.match(child.name)
            if match and detect(child) is not None:
                numbered.append((int(match.group(1)), child))
        if not numbered:
            raise UnusableInputError(path, f"no step dumps in this folder (stepK.npz|json|safetensors, stepK/ or test_data_set_K/); {EXPECTED}")
        ordered = sorted(numbered, key=lambda item: item[0])
        if len({k for k, _ in ordered}) != len(ordered):
            raise UnusableInputError(path, "two dumps share a step number: keep one format per step in the folder")
        steps.extend(child for _, child in ordered)
    return steps


# ---------------------------------------------------------------------------- reading


def read_dump(path: Path, names: Sequence[Sequence[str]] = (), *, outputs: bool = False) -> dict[str, np.ndarray]:
    """Input name -> array from any supported dump.

    `names` are candidate input-name lists (in declaration order) for TensorProtos saved without a
    name, which the ONNX test-data layout allows: the first list of the right length names them.
    `outputs` reads a test-data folder's output_N.pb instead of its inputs.
    """
    if not path.exists():
        raise UnusableInputError(path, "no such feeds file or folder")
    kind = detect(path)
    if kind == "npz":
        return _read_npz(path)
    if kind == "json":
        return _read_json(path)
    if kind == "safetensors":
        return _read_safetensors(path)
    if kind == "npy":
        return _read_npy_folder(path)
    if kind == "pb":
        return _read_pb_folder(path, names, _OUTPUT_PB if outputs else _INPUT_PB)
    named = _SUFFIX_CLAIMS.get(path.suffix.lower()) if path.is_file() else None
    hint = f"named {path.suffix} but not a readable {named}; " if named else ""
    raise UnusableInputError(path, f"not a feeds dump: {hint}{EXPECTED}")


_SUFFIX_CLAIMS = {".npz": ".npz (zip archive)", ".json": "JSON object", ".safetensors": "safetensors file", ".npy": "dump (a single .npy: put one NAME.npy per input in a folder)"}


def outputs_of(feeds_path: Path) -> Path | None:
    """Where a client saved what it got at that step: stepK_outputs.EXT next to stepK.EXT, output_N.pb in a test-data folder."""
    if detect(feeds_path) == "pb":
        return feeds_path if any(_OUTPUT_PB.match(p.name) for p in feeds_path.iterdir()) else None
    suffix = feeds_path.suffix if feeds_path.is_file() else ""
    stem = feeds_path.name[: len(feeds_path.name) - len(suffix)] if suffix else feeds_path.name
    candidate = feeds_path.with_name(f"{stem}_outputs{suffix}")
    return candidate if candidate.exists() and detect(candidate) is not None else None


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except Exception as exc:  # noqa: BLE001 - numpy raises several types for a broken archive
        raise UnusableInputError(path, f"not a readable .npz of input name -> array ({type(exc).__name__})") from None


def _read_json(path: Path) -> dict[str, np.ndarray]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UnusableInputError(path, f"not valid JSON ({exc.__class__.__name__}: {exc}); {EXPECTED}") from None
    if not isinstance(document, dict) or not document:
        raise UnusableInputError(path, f"a JSON dump is an object of input name -> {{dtype, shape, data}}; {EXPECTED}")
    arrays = {}
    for name, entry in document.items():
        if not isinstance(entry, dict) or not {"dtype", "shape", "data"} <= set(entry):
            raise UnusableInputError(path, f"entry {name!r} needs the keys dtype, shape and data")
        arrays[name] = _json_array(path, name, entry)
    return arrays


def _json_array(path: Path, name: str, entry: Mapping[str, object]) -> np.ndarray:
    dtype = _dtype(entry["dtype"], f"entry {name!r}", path)
    shape = entry["shape"]
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise UnusableInputError(path, f"entry {name!r}: shape must be a list of non-negative integers, got {shape!r}")
    data = entry["data"]
    try:
        if isinstance(data, str):
            raw = base64.b64decode(data, validate=True)
            flat = np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype)
        elif isinstance(data, list):
            flat = np.asarray(_flatten(data), dtype=object)
            if dtype.kind == "f":
                flat = np.where(flat == None, np.nan, flat)  # noqa: E711 - JSON.stringify writes NaN as null
            flat = flat.astype(dtype)
        else:
            raise UnusableInputError(path, f"entry {name!r}: data must be a list or a base64 string")
    except (binascii.Error, ValueError, TypeError) as exc:
        raise UnusableInputError(path, f"entry {name!r}: data does not read as {dtype} ({exc})") from None
    count = int(np.prod(shape)) if shape else 1
    if flat.size != count:
        raise UnusableInputError(path, f"entry {name!r}: {flat.size} values for shape {shape} ({count} expected)")
    return flat.reshape(shape)


def _flatten(data: list[object]) -> list[object]:
    out: list[object] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    raw = path.read_bytes()
    (size,) = struct.unpack("<Q", raw[:8])
    try:
        header = json.loads(raw[8 : 8 + size].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise UnusableInputError(path, f"not a safetensors file (unreadable header); {EXPECTED}") from None
    if not isinstance(header, dict):
        raise UnusableInputError(path, f"not a safetensors file (header is not an object); {EXPECTED}")
    body = memoryview(raw)[8 + size :]
    arrays = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            code, shape, (begin, end) = str(entry["dtype"]), entry["shape"], entry["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise UnusableInputError(path, f"safetensors entry {name!r} lacks dtype, shape or data_offsets") from None
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape) or not all(isinstance(o, int) for o in (begin, end)):
            raise UnusableInputError(path, f"safetensors entry {name!r}: shape and data_offsets must be non-negative integers")
        if code not in _SAFETENSORS:
            raise UnusableInputError(path, f"safetensors entry {name!r}: dtype {code} is not supported (numpy has no {code})")
        dtype = np.dtype(_SAFETENSORS[code])
        count = int(np.prod(shape)) if shape else 1
        if not 0 <= begin <= end <= len(body) or end - begin != count * dtype.itemsize:
            raise UnusableInputError(path, f"safetensors entry {name!r}: data_offsets {begin}..{end} do not hold {shape} {code}")
        arrays[name] = np.frombuffer(body[begin:end], dtype=dtype.newbyteorder("<")).astype(dtype).reshape(shape)
    return arrays


def _read_npy_folder(path: Path) -> dict[str, np.ndarray]:
    arrays = {}
    for file in sorted(path.glob("*.npy")):
        try:
            arrays[file.name[:-4]] = np.load(file, allow_pickle=False)
        except Exception as exc:  # noqa: BLE001
            raise UnusableInputError(file, f"not a readable .npy ({type(exc).__name__})") from None
    return arrays


def _read_pb_folder(path: Path, names: Sequence[Sequence[str]], pattern: re.Pattern[str]) -> dict[str, np.ndarray]:
    import onnx
    from onnx import numpy_helper

    files = sorted(((int(m.group(1)), p) for p in path.iterdir() if (m := pattern.match(p.name))), key=lambda item: item[0])
    tensors = []
    for _, file in files:
        tensor = onnx.TensorProto()
        try:
            tensor.ParseFromString(file.read_bytes())
            tensors.append((tensor.name, numpy_helper.to_array(tensor)))
        except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError, numpy_helper ValueError
            raise UnusableInputError(file, f"not a TensorProto ({type(exc).__name__})") from None
    if all(name for name, _ in tensors):
        return dict(tensors)
    fitting = next((list(n) for n in names if len(n) == len(tensors)), None)
    if fitting is None:
        raise UnusableInputError(path, f"{len(tensors)} unnamed TensorProtos and no model file with {len(tensors)} inputs to name them by position")
    return {name or fitting[index]: value for index, (name, value) in enumerate(tensors)}


# ---------------------------------------------------------------------------- writing


def write_dump(folder: Path, stem: str, arrays: Mapping[str, np.ndarray], fmt: str, *, outputs_of_step: str | None = None) -> Path:
    """Write `arrays` as `folder/stem.EXT` (pb: `folder/stem/input_N.pb`, or output_N.pb with `outputs_of_step`).

    For pb, the feeds and the outputs of a step share one test-data folder, as ORT's test runner reads it.
    """
    if fmt == "npz":
        target = folder / f"{stem}.npz"
        np.savez(target, **arrays)  # type: ignore[arg-type]
    elif fmt == "json":
        target = folder / f"{stem}.json"
        target.write_text(json.dumps({name: to_json_entry(value) for name, value in arrays.items()}))
    elif fmt == "safetensors":
        target = folder / f"{stem}.safetensors"
        target.write_bytes(safetensors_bytes(arrays))
    elif fmt == "pb":
        from onnx import numpy_helper

        target = folder / (outputs_of_step or stem)
        target.mkdir(parents=True, exist_ok=True)
        prefix = "output" if outputs_of_step else "input"
        for index, (name, value) in enumerate(arrays.items()):
            (target / f"{prefix}_{index}.pb").write_bytes(numpy_helper.from_array(np.asarray(value), name).SerializeToString())
    else:
        raise ValueError(f"unknown dump format {fmt!r}; one of {', '.join(RECORD_FORMATS)}")
    return target


def to_json_entry(value: np.ndarray) -> dict[str, object]:
    value = np.asarray(value)
    data = value.reshape(-1).tolist()
    if value.dtype.kind == "f":
        data = [None if v != v else v for v in data]  # NaN -> null, as JSON.stringify writes it
    return {"dtype": str(value.dtype), "shape": list(value.shape), "data": data}


def safetensors_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """The safetensors layout: u64 header length, JSON header (8-byte aligned), contiguous little-endian data."""
    header: dict[str, object] = {"__metadata__": {"format": "onnxdoctor-feeds"}}
    chunks = []
    offset = 0
    for name, value in arrays.items():
        value = np.asarray(value)
        if value.dtype.name not in _SAFETENSORS_CODE:
            raise ValueError(f"{name}: dtype {value.dtype} has no safetensors code")
        data = np.ascontiguousarray(value, dtype=value.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": _SAFETENSORS_CODE[value.dtype.name], "shape": list(value.shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)
