"""The Signature of a model file: every input and output with its role, and the KV-cache layout.

Role recognition happens here and only here (names in `roles.py`, axes by arithmetic below), so
every inspector and the replay harness reason about roles, never about a convention's strings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from onnxdoctor.model import roles
from onnxdoctor.model.dims import Dim, dims_of, format_dims
from onnxdoctor.model.load import ModelFile
from onnxdoctor.model.roles import CacheSlot, RoleGuess, RoleMap

if TYPE_CHECKING:
    import onnx

    from onnxdoctor.model.graph import Scope

CONTRIB_ATTENTION_OPS = frozenset(
    {
        "GroupQueryAttention",
        "MultiHeadAttention",
        "Attention",
        "DecoderMaskedMultiHeadAttention",
        "DecoderMaskedSelfAttention",
        "PagedAttention",
        "SparseAttention",
    }
)
_SEQUENCE_WORDS = re.compile(r"seq|len|past|total|cache|kv|ctx|context|^s\d+$|time|step", re.IGNORECASE)


# TensorProto.DataType -> the numpy / ml_dtypes name (what onnx.helper.tensor_dtype_to_np_dtype gives),
# as a table: the signature is built for every file inspected and needs no numpy dtype objects.
_DTYPE_NAMES = (
    "undefined", "float32", "uint8", "int8", "uint16", "int16", "int32", "int64", "object", "bool", "float16",
    "float64", "uint32", "uint64", "complex64", "complex128", "bfloat16", "float8_e4m3fn", "float8_e4m3fnuz",
    "float8_e5m2", "float8_e5m2fnuz", "uint4", "int4", "float4_e2m1fn", "float8_e8m0fnu", "uint2", "int2",
    "float6_e2m3fn", "float6_e3m2fn",
)


def dtype_name(elem_type: int) -> str:
    if 0 <= elem_type < len(_DTYPE_NAMES):
        return _DTYPE_NAMES[elem_type]
    return f"elem_type {elem_type}"  # newer than this table (and than the onnx installed)


@dataclass(frozen=True)
class TensorSig:
    """One graph input or output with its recognized role."""

    name: str
    io: str  # input | output
    elem_type: int
    dims: tuple[Dim, ...] | None
    role: str
    cache: CacheSlot | None = None
    role_source: str = "name"

    @property
    def dtype(self) -> str:
        return dtype_name(self.elem_type)

    @property
    def rank(self) -> int | None:
        return None if self.dims is None else len(self.dims)

    @property
    def role_text(self) -> str:
        return self.cache.describe() if self.cache else self.role

    def static_axes(self) -> list[int]:
        return [i for i, d in enumerate(self.dims or ()) if d.is_static]

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "role": self.role,
            "cache": None
            if self.cache is None
            else {"layer": self.cache.layer, "attention": self.cache.attention, "part": self.cache.part},
            "role_source": self.role_source,
            "dtype": self.dtype,
            "dims": None if self.dims is None else [d.value if d.is_static else (d.param or None) for d in self.dims],
            "static_axes": self.static_axes(),
        }


@dataclass(frozen=True)
class CacheAxes:
    """Which axis of a cache tensor holds what; `how` says what evidence decided the cache axis."""

    rank: int
    batch: int
    heads: int | None
    cache: int
    head_dim: int
    stack: int | None  # axis of size 2 holding key and value in stacked layouts
    how: str

    def to_dict(self) -> dict[str, object]:
        return {
            "rank": self.rank,
            "batch": self.batch,
            "heads": self.heads,
            "cache": self.cache,
            "head_dim": self.head_dim,
            "stack": self.stack,
            "decided_by": self.how,
        }


@dataclass(frozen=True)
class CachePair:
    """A past input and the present output the next step feeds back into it (either may be missing)."""

    layer: int
    attention: str
    part: str
    past: TensorSig | None
    present: TensorSig | None
    axes: CacheAxes | None

    @property
    def any(self) -> TensorSig:
        tensor = self.past or self.present
        assert tensor is not None
        return tensor


@dataclass
class KVLayout:
    layers: int
    kv_heads: int | list[int | None] | None
    head_dim: int | None
    cache_axis: int
    axes: CacheAxes
    dtype: str
    merged: bool
    cross_attention: bool
    stacked: bool
    mode: str  # merged | with_past | no_past | past_only
    pairs: list[CachePair] = field(default_factory=list)
    _index: dict[tuple[str, str], CachePair] = field(default_factory=dict, init=False, repr=False, compare=False)
    _index_size: int = field(default=-1, init=False, repr=False, compare=False)

    def self_pairs(self) -> list[CachePair]:
        return [p for p in self.pairs if p.attention == "self"]

    def cross_pairs(self) -> list[CachePair]:
        return [p for p in self.pairs if p.attention == "cross"]

    def pair_of(self, tensor: TensorSig) -> CachePair | None:
        """The pair a past or present belongs to: a dict lookup, so per-tensor checks stay linear in layers."""
        if self._index_size != len(self.pairs):  # built on first use (and again if pairs were appended)
            self._index = {}
            for pair in self.pairs:
                for member in (pair.past, pair.present):
                    if member is not None:
                        self._index.setdefault((member.io, member.name), pair)
            self._index_size = len(self.pairs)
        pair = self._index.get((tensor.io, tensor.name))
        return pair if pair is not None and tensor in (pair.past, pair.present) else None


@dataclass
class Signature:
    file: str
    file_role: str
    kind: str  # decoder | encoder | other
    inputs: list[TensorSig]
    outputs: list[TensorSig]
    kv: KVLayout | None
    merged_if_node: str | None = None
    contrib_attention_ops: list[str] = field(default_factory=list)
    producer: str = ""
    opset: int | None = None

    def by_role(self, role: str, io: str | None = None) -> list[TensorSig]:
        return [t for t in self.inputs + self.outputs if t.role == role and (io is None or t.io == io)]

    def input(self, role: str) -> TensorSig | None:
        found = self.by_role(role, "input")
        return found[0] if found else None

    def output(self, role: str) -> TensorSig | None:
        found = self.by_role(role, "output")
        return found[0] if found else None

    def tensor(self, name: str) -> TensorSig | None:
        for tensor in self.inputs + self.outputs:
            if tensor.name == name:
                return tensor
        return None


# ------------------------------------------------------------------------------ building


def _tensor_sig(value: onnx.ValueInfoProto, io: str, role_map: RoleMap | None) -> TensorSig:
    dims = dims_of(value)
    elem_type = value.type.tensor_type.elem_type if value.type.HasField("tensor_type") else 0
    guess: RoleGuess | None = role_map.lookup(value.name) if role_map else None
    if guess is None:
        guess = roles.guess_role(value.name, is_input=io == "input", elem_type=elem_type, rank=None if dims is None else len(dims))
    cache = guess.cache
    role = guess.role
    if cache is not None and cache.direction != ("past" if io == "input" else "present"):
        # A map or name that says "present" on an input: the graph's direction wins.
        cache = CacheSlot("past" if io == "input" else "present", cache.layer, cache.attention, cache.part)
        role = cache.direction
    return TensorSig(value.name, io, elem_type, dims, role, cache, guess.source)


def _dedupe_cache_roles(tensors: list[TensorSig]) -> list[TensorSig]:
    """Two tensors claiming one cache slot cannot both be it: keep the first, mark the rest other."""
    seen: set[tuple[str, int, str, str]] = set()
    result = []
    for tensor in tensors:
        if tensor.cache is not None:
            slot = (tensor.cache.direction, *tensor.cache.key)
            if slot in seen:
                tensor = TensorSig(tensor.name, tensor.io, tensor.elem_type, tensor.dims, roles.OTHER, None, "duplicate")
            else:
                seen.add(slot)
        result.append(tensor)
    return result


def infer_cache_axes(past: TensorSig | None, present: TensorSig | None) -> CacheAxes | None:
    """Find batch, heads, cache-length and head_dim axes of one cache tensor pair by arithmetic."""
    reference = past if past is not None and past.dims is not None else present
    if reference is None or reference.dims is None or reference.cache is None:
        return None
    dims = reference.dims
    rank = len(dims)
    stack = 0 if reference.cache.part == "kv" else None
    body = list(range(rank))[1:] if stack is not None else list(range(rank))
    if len(body) < 2:
        return None
    batch, head_dim = body[0], body[-1]
    middle = body[1:-1]
    if not middle:
        return None
    if len(middle) == 1:
        return CacheAxes(rank, batch, None, middle[0], head_dim, stack, "only axis between batch and head_dim")

    def choose(axis: int, how: str) -> CacheAxes:
        heads = next((a for a in middle if a != axis), None) if len(middle) == 2 else None
        return CacheAxes(rank, batch, heads, axis, head_dim, stack, how)

    other_dims = present.dims if reference is past and present is not None else None
    if other_dims is not None and len(other_dims) == rank:
        differing = [a for a in middle if not dims[a].same_as(other_dims[a]) and not (dims[a].is_unknown and other_dims[a].is_unknown)]
        if len(differing) == 1:
            return choose(differing[0], "past and present differ only on this axis")
    dynamic = [a for a in middle if not dims[a].is_static]
    if len(dynamic) == 1:
        return choose(dynamic[0], "the only dynamic axis between batch and head_dim")
    named = [a for a in middle if _SEQUENCE_WORDS.search(dims[a].param or "")]
    if len(named) == 1:
        return choose(named[0], f"dim name {dims[named[0]].param!r}")
    return choose(middle[-1], "convention [batch, heads, sequence, head_dim]")


def _pairs(inputs: list[TensorSig], outputs: list[TensorSig]) -> list[CachePair]:
    pasts = {t.cache.key: t for t in inputs if t.cache is not None}
    presents = {t.cache.key: t for t in outputs if t.cache is not None}
    result = []
    for key in sorted(set(pasts) | set(presents), key=lambda k: (k[1] != "self", k[0], k[2])):
        past, present = pasts.get(key), presents.get(key)
        result.append(CachePair(key[0], key[1], key[2], past, present, infer_cache_axes(past, present)))
    return result


def _kv_heads(pairs: list[CachePair]) -> int | list[int | None] | None:
    per_layer: dict[int, int | None] = {}
    for pair in pairs:
        if pair.attention != "self" or pair.axes is None or pair.layer in per_layer:
            continue
        tensor = pair.past if pair.past is not None and pair.past.dims is not None else pair.present
        heads = None
        if tensor is not None and tensor.dims is not None and pair.axes.heads is not None:
            heads = tensor.dims[pair.axes.heads].value
        per_layer[pair.layer] = heads
    values = [per_layer[layer] for layer in sorted(per_layer)]
    if not values:
        return None
    if len(set(values)) == 1:
        return values[0]
    return values


def _kv_layout(inputs: list[TensorSig], outputs: list[TensorSig], merged: bool) -> KVLayout | None:
    pairs = _pairs(inputs, outputs)
    if not pairs:
        return None
    self_pairs = [p for p in pairs if p.attention == "self"] or pairs
    first = next((p for p in self_pairs if p.axes is not None), None)
    axes = first.axes if first is not None and first.axes is not None else CacheAxes(4, 0, 1, 2, 3, None, "unknown rank: convention")
    reference = first.any if first is not None else self_pairs[0].any
    head_dim = reference.dims[axes.head_dim].value if reference.dims is not None and axes.head_dim < len(reference.dims) else None
    has_past = any(p.past is not None for p in self_pairs)
    has_present = any(p.present is not None for p in self_pairs)
    if merged and has_past:
        mode = "merged"
    elif has_past and has_present:
        mode = "with_past"
    elif has_present:
        mode = "no_past"
    else:
        mode = "past_only"
    return KVLayout(
        layers=len({p.layer for p in self_pairs}),
        kv_heads=_kv_heads(pairs),
        head_dim=head_dim,
        cache_axis=axes.cache,
        axes=axes,
        dtype=reference.dtype,
        merged=merged,
        cross_attention=any(p.attention == "cross" for p in pairs),
        stacked=any(p.part == "kv" for p in pairs),
        mode=mode,
        pairs=pairs,
    )


_ALIAS_OPS = frozenset({"Identity", "Cast", "Not", "Squeeze", "Reshape"})


def _merged_if_node(main: Scope, switch: TensorSig | None) -> str | None:
    """The top-level If node switched by use_cache_branch (optimum's merged decoder)."""
    if switch is None:
        return None
    aliases = {switch.name}
    for node, op_type in zip(main.nodes, main.op_types):  # follow Identity/Cast/Not chains the exporters sometimes insert
        if op_type in _ALIAS_OPS and node.input and node.input[0] in aliases:
            aliases.update(node.output)
    for node, op_type in zip(main.nodes, main.op_types):
        if op_type == "If" and node.input and node.input[0] in aliases:
            return node.name or f"If({node.input[0]})"
    return None


def _kind(file_role: str, inputs: list[TensorSig], outputs: list[TensorSig], kv: KVLayout | None) -> str:
    if kv is not None:
        return "decoder"
    if file_role == "encoder":
        return "encoder"
    has_ids = any(t.role in (roles.INPUT_IDS, roles.INPUTS_EMBEDS) for t in inputs)
    if has_ids and any(t.role == roles.LOGITS for t in outputs):
        return "decoder"
    if any(t.role == roles.HIDDEN_STATES for t in outputs) and not any(t.role == roles.LOGITS for t in outputs):
        return "encoder"
    return "other"


def _promote_logits(outputs: list[TensorSig], has_cache: bool) -> list[TensorSig]:
    """A decoder with one unnamed rank-3 float output beside its cache: that output is the logits."""
    if not has_cache or any(t.role == roles.LOGITS for t in outputs):
        return outputs
    candidates = [t for t in outputs if t.role == roles.OTHER and t.rank == 3 and t.elem_type in (1, 10, 16)]
    if len(candidates) != 1:
        return outputs
    chosen = candidates[0]
    return [
        TensorSig(t.name, t.io, t.elem_type, t.dims, roles.LOGITS, None, "shape") if t is chosen else t for t in outputs
    ]


def build_signature(model_file: ModelFile, *, display_name: str | None = None, role_map: RoleMap | None = None) -> Signature:
    """Recognize roles and the KV layout of one model file."""
    graph = model_file.graph
    initializer_names = {t.name for t in graph.initializer}
    # Old exporters list initializers as graph inputs; those are weights, not feeds.
    inputs = _dedupe_cache_roles([_tensor_sig(v, "input", role_map) for v in graph.input if v.name not in initializer_names])
    outputs = _dedupe_cache_roles([_tensor_sig(v, "output", role_map) for v in graph.output])
    switch = next((t for t in inputs if t.role == roles.USE_CACHE_BRANCH), None)
    view = model_file.view
    if_node = _merged_if_node(view.main, switch)
    if switch is not None and switch.role_source == "shape" and if_node is None:
        # A BOOL[1] input that switches nothing is not a cache-branch switch.
        inputs = [TensorSig(t.name, t.io, t.elem_type, t.dims, roles.OTHER) if t is switch else t for t in inputs]
        switch = None
    kv = _kv_layout(inputs, outputs, merged=if_node is not None)
    outputs = _promote_logits(outputs, kv is not None)
    contrib = sorted({n.op_type for n, _scope in view.nodes(*CONTRIB_ATTENTION_OPS) if n.domain == "com.microsoft"})
    return Signature(
        file=display_name or model_file.name,
        file_role=model_file.file_role,
        kind=_kind(model_file.file_role, inputs, outputs, kv),
        inputs=inputs,
        outputs=outputs,
        kv=kv,
        merged_if_node=if_node,
        contrib_attention_ops=contrib,
        producer=model_file.producer,
        opset=model_file.opset,
    )


# What each axis of a role's tensor means (for non-cache roles; cache axes come from CacheAxes).
_ROLE_AXES: dict[str, dict[int, str]] = {
    roles.INPUT_IDS: {0: "batch", 1: "sequence"},
    roles.TOKEN_TYPE_IDS: {0: "batch", 1: "sequence"},
    roles.POSITION_IDS: {0: "batch", 1: "sequence"},
    roles.INPUTS_EMBEDS: {0: "batch", 1: "sequence"},
    roles.ATTENTION_MASK: {0: "batch", 1: "total"},
    roles.CACHE_POSITION: {0: "sequence"},
    roles.ENCODER_HIDDEN_STATES: {0: "batch", 1: "encoder"},
    roles.ENCODER_ATTENTION_MASK: {0: "batch", 1: "encoder"},
    roles.LOGITS: {0: "batch", 1: "sequence"},
    roles.HIDDEN_STATES: {0: "batch", 1: "sequence"},
}


def axis_roles(signature: Signature, tensor: TensorSig) -> dict[int, str]:
    """Axis -> batch | sequence | total | cache | encoder for one input or output.

    `total` is past + new tokens (attention_mask, self-attention presents), `cache` the past length,
    `encoder` the encoder sequence (cross-attention caches and encoder inputs).
    """
    if tensor.dims is None:
        return {}
    rank = len(tensor.dims)
    if tensor.cache is not None:
        kv = signature.kv
        pair = kv.pair_of(tensor) if kv else None
        if pair is None or pair.axes is None or pair.axes.rank != rank:
            return {}
        if tensor.cache.attention == "cross":
            length = "encoder"
        else:
            length = "cache" if tensor.io == "input" else "total"
        return {pair.axes.batch: "batch", pair.axes.cache: length}
    table = _ROLE_AXES.get(tensor.role, {})
    if tensor.role == roles.POSITION_IDS and rank == 3:
        return {1: "batch", 2: "sequence"}  # multimodal rope: [sections, batch, sequence]
    if tensor.role == roles.LOGITS and rank == 2:
        return {0: "batch"}  # last-token logits [batch, vocab]
    return {axis: meaning for axis, meaning in table.items() if axis < rank}


def describe_tensor(tensor: TensorSig) -> str:
    return f"{tensor.name} {tensor.dtype}{format_dims(tensor.dims)}"
