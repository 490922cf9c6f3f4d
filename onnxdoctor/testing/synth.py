"""Tiny, runnable decoder ONNX models with a KV cache, built from a spec.

Why: onnxdoctor's inspectors need real graphs in every common export convention
(optimum, legacy stacked GPT-2, ORT whisper, plain), merged/seq2seq/GQA/fp16
variants, and graphs with planted defects -- without torch or downloaded
checkpoints.  The models are numerically honest: decoding with the cache gives
the same logits as recomputing all tokens without it, so tests can check that.

Only onnx and numpy are imported here; running the models is up to the caller.

Graph outline (all compute is float32; ``dtype="float16"`` only changes the cache
tensors, ``encoder_hidden_states`` and ``logits``)::

    hidden = Gather(embed, input_ids) + Gather(pos_embed, positions)
    per layer: hidden += SelfAttention(hidden)   [+ CrossAttention(hidden)]
    logits = hidden @ lm_head

Cache tensors are ``[batch, kv_heads, cache_len, head_dim]`` (``stacked``:
``[2, batch, kv_heads, cache_len, head_dim]``, key at index 0).

Seq2seq models take the cross-attention K/V from ``encoder_hidden_states`` when
they have no past (``with_past=False``, or the merged no-cache branch) and from
the cross past inputs otherwise; a non-merged seq2seq model with past therefore
has no ``encoder_hidden_states`` input (like optimum's ``decoder_with_past``)
and returns its cross past unchanged as the cross present.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import Any, Iterator, NamedTuple, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8
MAX_POSITIONS = 64

NAMINGS = ("optimum", "stacked", "self_cross", "plain")
DTYPES = {"float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16}
DEFECTS = (
    "present_is_new",
    "concat_swapped",
    "concat_wrong_axis",
    "drop_present",
    "baked_reshape",
    "reshape_zero",
    "present_dtype_mismatch",
    "present_heads_mismatch",
)

BATCH = "batch_size"
SEQ = "sequence_length"
PAST = "past_sequence_length"
TOTAL = "past_sequence_length + sequence_length"
ENC = "encoder_sequence_length"
DIM_NAMES = (BATCH, SEQ, PAST, TOTAL, ENC)

# Export-time sizes that the "baked_reshape" defect freezes into its Reshape.
BAKED_BATCH = 1
BAKED_SEQ = 3

_MASKED_SCORE = -1e9


@dataclass(frozen=True)
class DecoderSpec:
    """What to build; invalid combinations raise ValueError on construction.

    ``attention_mask`` also controls ``encoder_attention_mask`` for seq2seq.
    ``static_dims`` maps graph I/O dim names (see DIM_NAMES) to fixed sizes.
    Positions are learned, so past plus new tokens must stay < MAX_POSITIONS.
    ``defect`` plants one of DEFECTS in layer ``defect_layer`` (decoder with
    past, not merged, not stacked); see build_decoder.
    """

    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    head_dim: int = 8
    vocab: int = 32
    naming: str = "optimum"
    seq2seq: bool = False
    merged: bool = False
    with_past: bool = True
    position_ids: bool = True
    attention_mask: bool = True
    static_dims: dict[str, int] = field(default_factory=dict, hash=False)
    dtype: str = "float32"
    defect: str | None = None
    defect_layer: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("layers", "heads", "kv_heads", "head_dim", "vocab"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.heads % self.kv_heads:
            raise ValueError(f"kv_heads={self.kv_heads} must divide heads={self.heads}")
        if self.naming not in NAMINGS:
            raise ValueError(f"naming must be one of {NAMINGS}, got {self.naming!r}")
        if self.seq2seq and self.naming in ("stacked", "plain"):
            raise ValueError(f"naming {self.naming!r} has no cross-attention names; seq2seq needs optimum or self_cross")
        if self.merged and not self.with_past:
            raise ValueError("a merged decoder always has past inputs; with_past=False contradicts merged=True")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {tuple(DTYPES)}, got {self.dtype!r}")
        unknown_dims = set(self.static_dims) - set(DIM_NAMES)
        if unknown_dims:
            raise ValueError(f"static_dims has unknown dim names {sorted(unknown_dims)}; known: {DIM_NAMES}")
        if any(size < 1 for size in self.static_dims.values()):
            raise ValueError(f"static_dims sizes must be >= 1, got {self.static_dims}")
        if self.defect is not None:
            if self.defect not in DEFECTS:
                raise ValueError(f"defect must be None or one of {DEFECTS}, got {self.defect!r}")
            if not self.with_past or self.merged or self.naming == "stacked":
                raise ValueError("defects are planted in a non-merged, non-stacked decoder with past inputs")
        if not 0 <= self.defect_layer < self.layers:
            raise ValueError(f"defect_layer must be in 0..{self.layers - 1}, got {self.defect_layer}")

    @property
    def hidden(self) -> int:
        """Model width: query heads times head_dim."""
        return self.heads * self.head_dim


class CacheName(NamedTuple):
    """One cache tensor pair: the past input name and the present output name."""

    layer: int
    cross: bool
    part: str  # "key", "value", or "stacked" (key and value in one tensor)
    past: str
    present: str


def cache_names(spec: DecoderSpec) -> list[CacheName]:
    """Past/present names for every cache tensor, in graph I/O order.

    Why: one source of truth for the naming conventions, shared by the builder
    and by tests that feed presents back as pasts.
    """
    parts = ("stacked",) if spec.naming == "stacked" else ("key", "value")
    kinds = (False, True) if spec.seq2seq else (False,)
    return [
        CacheName(
            layer, cross, part, _cache_name(spec, "past", layer, cross, part), _cache_name(spec, "present", layer, cross, part)
        )
        for layer in range(spec.layers)
        for cross in kinds
        for part in parts
    ]


def cross_placeholder_shape(spec: DecoderSpec) -> tuple[int, ...]:
    """Shape of a merged seq2seq cache branch's cross present placeholder.

    Follows optimum's merge_decoders: the declared output shape with axis 0 set
    to 0 and every other dynamic axis set to 1, i.e. (0, kv_heads, 1, head_dim),
    with static_dims sizes kept where they apply.
    """
    declared = _cache_shape(spec, "key", ENC)
    return (0, *(1 if isinstance(dim, str) else dim for dim in declared[1:]))


def _cache_name(spec: DecoderSpec, direction: str, layer: int, cross: bool, part: str) -> str:
    """Name of one cache tensor under spec.naming (direction is "past" or "present")."""
    if spec.naming == "optimum":
        base = "past_key_values" if direction == "past" else "present"
        if spec.seq2seq:
            return f"{base}.{layer}.{'encoder' if cross else 'decoder'}.{part}"
        return f"{base}.{layer}.{part}"
    if spec.naming == "stacked":
        return f"{direction}_{layer}"
    if spec.naming == "self_cross":
        return f"{direction}_{part}_{'cross' if cross else 'self'}_{layer}"
    return f"{direction}_{part}_{layer}"


def build_decoder(spec: DecoderSpec) -> onnx.ModelProto:
    """Build the decoder described by spec (weights drawn from spec.seed).

    Weights depend only on seed, layers, heads, kv_heads, head_dim, vocab and
    seq2seq, so e.g. the with_past=False and merged variants of a spec share them.

    Defects (all in the self-attention of layer spec.defect_layer, 0 unless
    set; every one loads in ORT):

    - present_is_new: present key/value are the new step's K/V (cache dim
      "sequence_length"); attention still uses the full Concat.
    - concat_swapped: Concat(new, past) for key and value, used by attention too.
    - concat_wrong_axis: present key/value = Concat(past, new, axis=3) (head_dim
      axis, declared [batch, kv_heads, sequence_length, 2*head_dim]); attention
      uses the right Concat.  ORT runs it with an empty past (it skips empty
      Concat inputs, still returning 2*head_dim) or past length == new length,
      and fails otherwise since Concat needs the other dims equal.
    - drop_present: present value is not a graph output (its Concat remains).
    - baked_reshape: q/k/v Reshape to the constant [1, 3, heads, head_dim];
      only runs with batch 1 and 3 new tokens (so step 0 of a 3-token prompt).
    - reshape_zero: past key goes through Reshape(past, [-1, kv_heads, 0,
      head_dim]) with allowzero=0 before the Concat.  The 0 copies the past
      length, so with an empty past the known dims multiply to 0 and the -1
      cannot be inferred: ORT fails at the empty-past step, works afterwards.
    - present_dtype_mismatch: present key cast to the other float type.
    - present_heads_mismatch: present key output declared with kv_heads + 1
      heads; ORT loads it (lenient output shape merge) and runs it, returning
      the real kv_heads.  onnx's full_check (strict shape inference) rejects it.
    """
    g = _Graph()
    for name, array in _make_weights(spec).items():
        g.initializers.append(numpy_helper.from_array(array, name))
    inputs = _graph_inputs(spec)
    outputs = _graph_outputs(spec)
    if spec.merged:
        cache_branch = g.branch("cache/")
        _decoder_body(cache_branch, spec, use_past=True)
        no_cache_branch = g.branch("no_cache/")
        _decoder_body(no_cache_branch, spec, use_past=False)
        g.nodes.append(
            helper.make_node(
                "If",
                ["use_cache_branch"],
                [out.name for out in outputs],
                name="optimum::if",
                then_branch=helper.make_graph(cache_branch.nodes, "with_past", [], outputs),
                else_branch=helper.make_graph(no_cache_branch.nodes, "no_past", [], outputs),
            )
        )
    else:
        _decoder_body(g, spec, use_past=spec.with_past)
    used = _referenced_names(g.nodes)
    initializers = [init for init in g.initializers if init.name in used]
    graph = helper.make_graph(g.nodes, "synthetic_decoder", inputs, outputs, initializers)
    return helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="onnxdoctor.testing.synth",
    )


def _referenced_names(nodes: Sequence[onnx.NodeProto]) -> set[str]:
    """Every tensor name read by nodes, including inside If branches.

    Why: weights are drawn for every projection (so variants share them), but
    e.g. a seq2seq decoder with past never projects the encoder; unused
    initializers would make ORT warn.
    """
    names: set[str] = set()
    for node in nodes:
        names.update(node.input)
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                names |= _referenced_names(attr.g.node)
    return names


class _Graph:
    """Nodes of one (sub)graph; initializers and the name counter are shared with If branches."""

    def __init__(self, prefix: str = "", parent: _Graph | None = None) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[TensorProto] = parent.initializers if parent else []
        self._counter: Iterator[int] = parent._counter if parent else itertools.count()
        self._constants: dict[tuple[str, tuple[int, ...], bytes], str] = parent._constants if parent else {}
        self._prefix = prefix
        self._renamed: dict[str, str] = {}

    def branch(self, prefix: str) -> _Graph:
        """A subgraph that shares this graph's initializers and never clashes with its names."""
        return _Graph(prefix, parent=self)

    def op(self, op_type: str, inputs: Sequence[str], **attrs: Any) -> str:
        """Append a single-output node and return its output name."""
        index = next(self._counter)
        out = f"{self._prefix}{op_type}_{index}"
        node_name = f"{self._prefix}{op_type}_node_{index}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=node_name, **attrs))
        return out

    def const(self, values: object, dtype: type = np.int64) -> str:
        """A (deduplicated) constant initializer."""
        array: np.ndarray = np.asarray(values, dtype=dtype)
        key = (array.dtype.str, array.shape, array.tobytes())
        if key not in self._constants:
            name = f"const_{next(self._counter)}"
            self.initializers.append(numpy_helper.from_array(array, name))
            self._constants[key] = name
        return self._constants[key]

    def shape(self, x: str, start: int, end: int) -> str:
        """1-D int64 slice of Shape(x): runtime dims, never export-time constants."""
        return self.op("Shape", [x], start=start, end=end)

    def expose(self, tensor: str, name: str) -> None:
        """Make `tensor` available as `name`: rename its producer's output (as real exports do), else Identity."""
        tensor = self._renamed.get(tensor, tensor)
        producers = [node for node in self.nodes if tensor in node.output]
        if producers and tensor not in self._renamed.values():
            for node in self.nodes:
                for seq in (node.input, node.output):
                    for i, item in enumerate(seq):
                        if item == tensor:
                            seq[i] = name
            self._renamed[tensor] = name
        else:
            self.nodes.append(helper.make_node("Identity", [tensor], [name], name=f"{self._prefix}expose_{name}"))


def _make_weights(spec: DecoderSpec) -> dict[str, np.ndarray]:
    """Random float32 weights in a fixed draw order, scaled to keep activations O(1)."""
    rng = np.random.default_rng(spec.seed)
    hidden, kv_width = spec.hidden, spec.kv_heads * spec.head_dim

    def dense(fan_in: int, fan_out: int) -> np.ndarray:
        return (rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)).astype(np.float32)

    weights = {
        "embed_tokens.weight": (0.5 * rng.standard_normal((spec.vocab, hidden))).astype(np.float32),
        "embed_positions.weight": (0.5 * rng.standard_normal((MAX_POSITIONS, hidden))).astype(np.float32),
    }
    attentions = ("self_attn", "cross_attn") if spec.seq2seq else ("self_attn",)
    for layer in range(spec.layers):
        for attn in attentions:
            prefix = f"layers.{layer}.{attn}"
            weights[f"{prefix}.q_proj.weight"] = dense(hidden, hidden)
            weights[f"{prefix}.k_proj.weight"] = dense(hidden, kv_width)
            weights[f"{prefix}.v_proj.weight"] = dense(hidden, kv_width)
            weights[f"{prefix}.o_proj.weight"] = dense(hidden, hidden)
    weights["lm_head.weight"] = dense(hidden, spec.vocab)
    return weights


def _dims(spec: DecoderSpec, dims: Sequence[int | str]) -> list[int | str]:
    """Apply spec.static_dims to a list of I/O dims."""
    return [spec.static_dims.get(dim, dim) if isinstance(dim, str) else dim for dim in dims]


def _cache_len_dim(spec: DecoderSpec) -> str:
    """Dim name of the self-attention cache axis after this step."""
    return TOTAL if spec.with_past else SEQ


def _cache_shape(
    spec: DecoderSpec, part: str, length: int | str, heads: int | None = None, head_dim: int | None = None
) -> list[int | str]:
    """I/O shape of one cache tensor."""
    shape: list[int | str] = [BATCH, heads or spec.kv_heads, length, head_dim or spec.head_dim]
    return _dims(spec, [2, *shape] if part == "stacked" else shape)


def _graph_inputs(spec: DecoderSpec) -> list[onnx.ValueInfoProto]:
    """Graph inputs in optimum's order (use_cache_branch last)."""
    dtype = DTYPES[spec.dtype]
    inputs = [_value_info(spec, "input_ids", TensorProto.INT64, [BATCH, SEQ])]
    if spec.attention_mask:
        inputs.append(_value_info(spec, "attention_mask", TensorProto.INT64, [BATCH, _cache_len_dim(spec)]))
    if spec.position_ids:
        inputs.append(_value_info(spec, "position_ids", TensorProto.INT64, [BATCH, SEQ]))
    if spec.seq2seq:
        if spec.attention_mask:
            inputs.append(_value_info(spec, "encoder_attention_mask", TensorProto.INT64, [BATCH, ENC]))
        if spec.merged or not spec.with_past:
            inputs.append(_value_info(spec, "encoder_hidden_states", dtype, [BATCH, ENC, spec.hidden]))
    if spec.with_past:
        for cache in cache_names(spec):
            length = ENC if cache.cross else PAST
            inputs.append(helper.make_tensor_value_info(cache.past, dtype, _cache_shape(spec, cache.part, length)))
    if spec.merged:
        inputs.append(helper.make_tensor_value_info("use_cache_branch", TensorProto.BOOL, [1]))
    return inputs


def _value_info(spec: DecoderSpec, name: str, elem_type: int, dims: Sequence[int | str]) -> onnx.ValueInfoProto:
    """Graph I/O declaration with spec.static_dims applied."""
    return helper.make_tensor_value_info(name, elem_type, _dims(spec, dims))


def _graph_outputs(spec: DecoderSpec) -> list[onnx.ValueInfoProto]:
    """Graph outputs: logits then presents, with the defects' declared types."""
    dtype = DTYPES[spec.dtype]
    outputs = [_value_info(spec, "logits", dtype, [BATCH, SEQ, spec.vocab])]
    for cache in cache_names(spec):
        planted = cache.layer == spec.defect_layer and not cache.cross
        if planted and spec.defect == "drop_present" and cache.part == "value":
            continue
        elem_type: int = dtype
        shape = _cache_shape(spec, cache.part, ENC if cache.cross else _cache_len_dim(spec))
        if planted and spec.defect == "present_is_new":
            shape = _cache_shape(spec, cache.part, SEQ)
        elif planted and spec.defect == "concat_wrong_axis":
            shape = _cache_shape(spec, cache.part, SEQ, head_dim=2 * spec.head_dim)
        elif planted and cache.part == "key" and spec.defect == "present_heads_mismatch":
            shape = _cache_shape(spec, cache.part, _cache_len_dim(spec), heads=spec.kv_heads + 1)
        elif planted and cache.part == "key" and spec.defect == "present_dtype_mismatch":
            elem_type = _other_float(dtype)
        outputs.append(helper.make_tensor_value_info(cache.present, elem_type, shape))
    return outputs


def _other_float(dtype: int) -> int:
    """The float type a present_dtype_mismatch defect casts to."""
    return TensorProto.FLOAT if dtype == TensorProto.FLOAT16 else TensorProto.FLOAT16


def _decoder_body(g: _Graph, spec: DecoderSpec, use_past: bool) -> None:
    """Nodes from the graph inputs to logits and presents (use_past=False ignores past inputs)."""
    past_len = _past_length(g, spec) if use_past else g.const([0])
    total_len = g.op("Add", [past_len, g.shape("input_ids", 1, 2)])
    hidden = _embed(g, spec, past_len, total_len)
    self_mask = _self_attention_mask(g, spec, past_len, total_len)
    cross_mask = _cross_attention_mask(g, spec) if spec.seq2seq else None
    presents: dict[str, str] = {}
    for layer in range(spec.layers):
        hidden = _self_attention(g, spec, layer, hidden, self_mask, use_past, presents)
        if spec.seq2seq:
            hidden = _cross_attention(g, spec, layer, hidden, cross_mask, use_past, presents)
    logits = g.op("MatMul", [hidden, "lm_head.weight"])
    g.expose(_from_float32(g, logits, DTYPES[spec.dtype]), "logits")
    for name, tensor in presents.items():
        g.expose(tensor, name)


def _from_float32(g: _Graph, x: str, to: int) -> str:
    """Cast a float32 compute tensor to `to` (no node when `to` is float32)."""
    return x if to == TensorProto.FLOAT else g.op("Cast", [x], to=to)


def _to_float32(g: _Graph, spec: DecoderSpec, x: str) -> str:
    """Cast a tensor of the spec's dtype to float32 for compute."""
    return x if spec.dtype == "float32" else g.op("Cast", [x], to=TensorProto.FLOAT)


def _past_length(g: _Graph, spec: DecoderSpec) -> str:
    """Past length [1] read from the cache axis of layer 0's self past."""
    first = cache_names(spec)[0]
    axis = 3 if first.part == "stacked" else 2
    return g.shape(first.past, axis, axis + 1)


def _positions(g: _Graph, past_len: str, total_len: str) -> str:
    """Absolute positions past_len .. total_len-1 of the new tokens, shape [seq]."""
    return g.op("Range", [g.op("Squeeze", [past_len]), g.op("Squeeze", [total_len]), g.const(1)])


def _embed(g: _Graph, spec: DecoderSpec, past_len: str, total_len: str) -> str:
    """Token plus position embedding, [batch, seq, hidden]."""
    tokens = g.op("Gather", ["embed_tokens.weight", "input_ids"])
    position_ids = "position_ids" if spec.position_ids else _positions(g, past_len, total_len)
    return g.op("Add", [tokens, g.op("Gather", ["embed_positions.weight", position_ids])])


def _self_attention_mask(g: _Graph, spec: DecoderSpec, past_len: str, total_len: str) -> str:
    """Bool mask [batch or 1, 1, seq, total]: causal, and attention_mask if present (1 = attend)."""
    key_pos = g.op("Range", [g.const(0), g.op("Squeeze", [total_len]), g.const(1)])
    query_pos = g.op("Unsqueeze", [_positions(g, past_len, total_len), g.const([1])])
    causal = g.op("LessOrEqual", [key_pos, query_pos])
    if not spec.attention_mask:
        return causal
    return g.op("And", [causal, _padding_mask(g, "attention_mask")])


def _cross_attention_mask(g: _Graph, spec: DecoderSpec) -> str | None:
    """Bool mask [batch, 1, 1, encoder_seq] from encoder_attention_mask, or None to attend everywhere."""
    return _padding_mask(g, "encoder_attention_mask") if spec.attention_mask else None


def _padding_mask(g: _Graph, mask: str) -> str:
    """int64 [batch, len] mask (1 = attend) -> bool [batch, 1, 1, len]."""
    return g.op("Unsqueeze", [g.op("Cast", [mask], to=TensorProto.BOOL), g.const([1, 2])])


def _split_heads(g: _Graph, x: str, heads: int, head_dim: int, baked: bool) -> str:
    """[batch, seq, heads*head_dim] -> [batch, heads, seq, head_dim] (baked: export-time constant shape)."""
    if baked:
        target = g.const([BAKED_BATCH, BAKED_SEQ, heads, head_dim])
    else:
        target = g.op("Concat", [g.shape(x, 0, 2), g.const([heads, head_dim])], axis=0)
    return g.op("Transpose", [g.op("Reshape", [x, target])], perm=[0, 2, 1, 3])


def _repeat_kv(g: _Graph, spec: DecoderSpec, x: str) -> str:
    """GQA: [batch, kv_heads, len, head_dim] -> [batch, heads, len, head_dim] by repeating each kv head."""
    repeats = spec.heads // spec.kv_heads
    if repeats == 1:
        return x
    expanded = g.op("Expand", [g.op("Unsqueeze", [x, g.const([2])]), g.const([1, 1, repeats, 1, 1])])
    target = g.op("Concat", [g.shape(x, 0, 1), g.const([spec.heads]), g.shape(x, 2, 4)], axis=0)
    return g.op("Reshape", [expanded, target])


def _attend(g: _Graph, spec: DecoderSpec, prefix: str, hidden: str, q: str, k: str, v: str, mask: str | None) -> str:
    """Scaled dot-product attention on float32 [batch, heads, len, head_dim] plus output projection and residual."""
    k, v = _repeat_kv(g, spec, k), _repeat_kv(g, spec, v)
    scores = g.op("MatMul", [q, g.op("Transpose", [k], perm=[0, 1, 3, 2])])
    scores = g.op("Mul", [scores, g.const(1.0 / np.sqrt(spec.head_dim), np.float32)])
    if mask is not None:
        scores = g.op("Where", [mask, scores, g.const(_MASKED_SCORE, np.float32)])
    context = g.op("MatMul", [g.op("Softmax", [scores], axis=-1), v])
    context = g.op("Transpose", [context], perm=[0, 2, 1, 3])
    merged = g.op("Reshape", [context, g.op("Concat", [g.shape(hidden, 0, 2), g.const([spec.hidden])], axis=0)])
    return g.op("Add", [hidden, g.op("MatMul", [merged, f"{prefix}.o_proj.weight"])])


def _read_past(g: _Graph, spec: DecoderSpec, layer: int, cross: bool) -> tuple[str, str]:
    """Past key and value tensors (spec dtype) of one attention."""
    names = [c for c in cache_names(spec) if c.layer == layer and c.cross == cross]
    if names[0].part == "stacked":
        stacked = names[0].past
        return g.op("Gather", [stacked, g.const(0)], axis=0), g.op("Gather", [stacked, g.const(1)], axis=0)
    return names[0].past, names[1].past


def _write_present(
    g: _Graph, spec: DecoderSpec, layer: int, cross: bool, key: str, value: str, presents: dict[str, str]
) -> None:
    """Record the present outputs of one attention (stacking key and value for the stacked naming)."""
    names = [c for c in cache_names(spec) if c.layer == layer and c.cross == cross]
    if names[0].part == "stacked":
        parts = [g.op("Unsqueeze", [t, g.const([0])]) for t in (key, value)]
        presents[names[0].present] = g.op("Concat", parts, axis=0)
        return
    presents[names[0].present] = key
    if not (layer == spec.defect_layer and not cross and spec.defect == "drop_present"):
        presents[names[1].present] = value


def _project_heads(g: _Graph, x: str, weight: str, heads: int, head_dim: int, baked: bool = False) -> str:
    """x @ weight split into heads: [batch, heads, seq, head_dim]."""
    return _split_heads(g, g.op("MatMul", [x, weight]), heads, head_dim, baked)


def _new_key_value(g: _Graph, spec: DecoderSpec, x: str, prefix: str, baked: bool = False) -> tuple[str, str]:
    """Key and value projections of x, in the cache dtype: [batch, kv_heads, seq, head_dim]."""
    key, value = (
        _project_heads(g, x, f"{prefix}.{proj}.weight", spec.kv_heads, spec.head_dim, baked)
        for proj in ("k_proj", "v_proj")
    )
    cache_type = DTYPES[spec.dtype]
    return _from_float32(g, key, cache_type), _from_float32(g, value, cache_type)


def _self_attention(
    g: _Graph, spec: DecoderSpec, layer: int, hidden: str, mask: str, use_past: bool, presents: dict[str, str]
) -> str:
    """Causal self-attention with the KV cache; plants spec.defect when layer == spec.defect_layer."""
    prefix = f"layers.{layer}.self_attn"
    defect = spec.defect if layer == spec.defect_layer else None
    baked = defect == "baked_reshape"
    q = _project_heads(g, hidden, f"{prefix}.q_proj.weight", spec.heads, spec.head_dim, baked)
    k_new, v_new = _new_key_value(g, spec, hidden, prefix, baked)
    if not use_past:
        _write_present(g, spec, layer, False, k_new, v_new, presents)
        return _attend(g, spec, prefix, hidden, q, _to_float32(g, spec, k_new), _to_float32(g, spec, v_new), mask)
    k_past, v_past = _read_past(g, spec, layer, False)
    if defect == "reshape_zero":
        k_past = g.op("Reshape", [k_past, g.const([-1, spec.kv_heads, 0, spec.head_dim])], allowzero=0)
    if defect == "concat_swapped":
        k_all, v_all = g.op("Concat", [k_new, k_past], axis=2), g.op("Concat", [v_new, v_past], axis=2)
    else:
        k_all, v_all = g.op("Concat", [k_past, k_new], axis=2), g.op("Concat", [v_past, v_new], axis=2)
    k_present, v_present = k_all, v_all
    if defect == "present_is_new":
        k_present, v_present = k_new, v_new
    elif defect == "concat_wrong_axis":
        k_present, v_present = g.op("Concat", [k_past, k_new], axis=3), g.op("Concat", [v_past, v_new], axis=3)
    elif defect == "present_dtype_mismatch":
        k_present = g.op("Cast", [k_all], to=_other_float(DTYPES[spec.dtype]))
    _write_present(g, spec, layer, False, k_present, v_present, presents)
    return _attend(g, spec, prefix, hidden, q, _to_float32(g, spec, k_all), _to_float32(g, spec, v_all), mask)


def _cross_attention(
    g: _Graph, spec: DecoderSpec, layer: int, hidden: str, mask: str | None, use_past: bool, presents: dict[str, str]
) -> str:
    """Cross-attention: K/V from encoder_hidden_states without past, else from the cross past.

    In a merged model's cache branch the cross presents are empty placeholders
    (see cross_placeholder_shape), because the client keeps step 0's encoder K/V.
    """
    prefix = f"layers.{layer}.cross_attn"
    q = _project_heads(g, hidden, f"{prefix}.q_proj.weight", spec.heads, spec.head_dim)
    if not use_past:
        k, v = _new_key_value(g, spec, _to_float32(g, spec, "encoder_hidden_states"), prefix)
        _write_present(g, spec, layer, True, k, v, presents)
    else:
        k, v = _read_past(g, spec, layer, True)
        if spec.merged:
            _write_present(g, spec, layer, True, _cross_placeholder(g, spec), _cross_placeholder(g, spec), presents)
        else:
            _write_present(g, spec, layer, True, k, v, presents)
    return _attend(g, spec, prefix, hidden, q, _to_float32(g, spec, k), _to_float32(g, spec, v), mask)


def _cross_placeholder(g: _Graph, spec: DecoderSpec) -> str:
    """Empty constant standing in for a cross present (one per use, as each output needs its own tensor)."""
    array = np.zeros(cross_placeholder_shape(spec), dtype=np.float16 if spec.dtype == "float16" else np.float32)
    return g.op("Constant", [], value=numpy_helper.from_array(array))


# Small dims shared by the committed fixtures, so each file stays ~10-30 KB.
_FIXTURE_BASE = DecoderSpec(heads=4, kv_heads=4, head_dim=4)

FIXTURES: dict[str, DecoderSpec] = {
    "stacked-legacy.onnx": replace(_FIXTURE_BASE, naming="stacked"),
    "self-cross-whisper.onnx": replace(
        _FIXTURE_BASE, naming="self_cross", seq2seq=True, position_ids=False, attention_mask=False
    ),
    "plain-kv.onnx": replace(_FIXTURE_BASE, naming="plain"),
    "optimum-gqa.onnx": replace(_FIXTURE_BASE, kv_heads=2),
    "optimum-seq2seq-merged.onnx": replace(_FIXTURE_BASE, seq2seq=True, merged=True),
    "static-encoder-axis.onnx": replace(_FIXTURE_BASE, seq2seq=True, static_dims={ENC: 7}),
    **{f"defect-{defect}.onnx": replace(_FIXTURE_BASE, defect=defect) for defect in DEFECTS},
}
"""Committed fixtures (file name -> spec), written by scripts/make_synthetic_fixtures.py."""


def rename_tensors(model: onnx.ModelProto, renames: dict[str, str]) -> onnx.ModelProto:
    """Rename graph inputs/outputs and every node reference to them (in place; returns the model).

    Why: tests reproduce other exporters' naming (defaults, swapped outputs) on a known-good graph.
    """
    for value in [*model.graph.input, *model.graph.output]:
        value.name = renames.get(value.name, value.name)
    for node in model.graph.node:
        node.input[:] = [renames.get(name, name) for name in node.input]
        node.output[:] = [renames.get(name, name) for name in node.output]
    return model
