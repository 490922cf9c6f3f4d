"""Tiny runnable decoders whose attention is an onnxruntime contrib op (domain "com.microsoft").

Why: onnxruntime-genai models (and ORT-optimized exports) do not Concat past and
new K/V in the graph: ``com.microsoft.GroupQueryAttention`` or
``com.microsoft.MultiHeadAttention`` takes the past K/V and returns the present
K/V itself.  onnxdoctor must recognise that as a healthy cache, so it needs real
graphs of that shape.  Like onnxdoctor.testing.synth, the models are numerically
honest (a cached decode equals an uncached recompute) and only onnx and numpy
are imported here.

Graph I/O follows onnxruntime-genai: ``input_ids`` int64 [batch_size,
sequence_length], ``attention_mask`` int64 [batch_size, total_sequence_length],
``past_key_values.{i}.key/value`` float32 [batch_size, kv_heads,
past_sequence_length, head_dim] (BNSH), outputs ``logits`` [batch_size,
sequence_length, vocab] and ``present.{i}.key/value`` [batch_size, kv_heads,
total_sequence_length, head_dim].  The first step feeds a past of length 0.
Past and present are separate buffers (no past_present_share_buffer), so the
present is always past + new tokens long.

Contracts used (ORT contrib op schemas, com.microsoft opset 1; checked on ORT 1.32 CPU):

- GroupQueryAttention(query, key, value, past_key, past_value, seqlens_k,
  total_sequence_length[, cos_cache, sin_cache]) -> (output, present_key,
  present_value); attributes num_heads, kv_num_heads[, do_rotary=1].
  query/key/value are unsplit [batch, seq, heads*head_dim]; seqlens_k is int32
  [batch] = attended tokens per row - 1 (ReduceSum(attention_mask) - 1) and
  total_sequence_length an int32 scalar (Shape(attention_mask)[1]), both
  computed in the graph as genai's builder does.  With rotary=True the op
  rotates q/k itself at seqlens_k-based positions (cos/sin caches
  [MAX_POSITIONS, head_dim/2]); otherwise positions are learned embeddings.
  ORT's CPU kernel rejects head_dim % 8 != 0, and head_dim % 16 != 0 with
  do_rotary, at run time only.
- MultiHeadAttention(query, key, value, bias="", key_padding_mask,
  attention_bias="", past_key, past_value) -> (output, present_key,
  present_value); attributes num_heads, unidirectional=1 (causal).
  key_padding_mask is attention_mask cast to int32 [batch, total].

Both ops accept an empty (length 0) past on CPU, as genai feeds at step 0.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxdoctor.testing.synth import (
    BATCH,
    IR_VERSION,
    MAX_POSITIONS,
    OPSET,
    PAST,
    SEQ,
    DecoderSpec,
    _Graph,
    _make_weights,
    _referenced_names,
    cache_names,
)

MS_DOMAIN = "com.microsoft"
MS_OPSET = 1
TOTAL = "total_sequence_length"
ROPE_THETA = 10000.0

AttentionInputs = Callable[[str, str, str, str, str], list[str]]
"""(q, k, v, past_key, past_value) -> the attention op's inputs."""


def build_gqa_decoder(
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    head_dim: int = 8,
    vocab: int = 32,
    seed: int = 0,
    rotary: bool = False,
) -> onnx.ModelProto:
    """A genai-style decoder with GroupQueryAttention; rotary=True positions via the op's cos/sin caches.

    ORT's CPU kernel needs head_dim % 8 == 0, and % 16 == 0 with rotary
    (checked here, since ORT only fails at run time).
    """
    multiple = 16 if rotary else 8
    if head_dim % multiple:
        raise ValueError(
            f"ORT's CPU GroupQueryAttention needs head_dim % {multiple} == 0 (rotary={rotary}), got {head_dim}"
        )
    spec = DecoderSpec(layers=layers, heads=heads, kv_heads=kv_heads, head_dim=head_dim, vocab=vocab, seed=seed)
    g = _Graph()
    attended = g.op("ReduceSum", ["attention_mask", g.const([1])], keepdims=0)
    seqlens_k = g.op("Cast", [g.op("Sub", [attended, g.const(1)])], to=TensorProto.INT32)
    total_len = g.op("Gather", [g.op("Shape", ["attention_mask"]), g.const(1)], axis=0)  # int64 scalar
    total = g.op("Cast", [total_len], to=TensorProto.INT32)
    rope: list[str] = []
    if rotary:
        rope = ["cos_cache", "sin_cache"]
        g.initializers += [numpy_helper.from_array(array, name) for name, array in zip(rope, _rotary_caches(head_dim))]

    def attention(q: str, k: str, v: str, past_key: str, past_value: str) -> list[str]:
        return [q, k, v, past_key, past_value, seqlens_k, total, *rope]

    attrs = {"num_heads": heads, "kv_num_heads": kv_heads, **({"do_rotary": 1} if rotary else {})}
    return _decoder(g, spec, _embed(g, learned_positions=not rotary), "GroupQueryAttention", attention, **attrs)


def build_mha_decoder(
    layers: int = 2, heads: int = 4, head_dim: int = 8, vocab: int = 32, seed: int = 0
) -> onnx.ModelProto:
    """A decoder with causal MultiHeadAttention (kv heads == heads) and learned positions."""
    spec = DecoderSpec(layers=layers, heads=heads, kv_heads=heads, head_dim=head_dim, vocab=vocab, seed=seed)
    g = _Graph()
    padding = g.op("Cast", ["attention_mask"], to=TensorProto.INT32)

    def attention(q: str, k: str, v: str, past_key: str, past_value: str) -> list[str]:
        return [q, k, v, "", padding, "", past_key, past_value]

    hidden = _embed(g, learned_positions=True)
    return _decoder(g, spec, hidden, "MultiHeadAttention", attention, num_heads=heads, unidirectional=1)


def _embed(g: _Graph, learned_positions: bool) -> str:
    """Token embedding, plus learned position embedding at past_len .. total-1 (past_len = total - new tokens)."""
    tokens = g.op("Gather", ["embed_tokens.weight", "input_ids"])
    if not learned_positions:
        return tokens
    total = g.op("Shape", ["attention_mask"], start=1, end=2)
    past_len = g.op("Sub", [total, g.op("Shape", ["input_ids"], start=1, end=2)])
    positions = g.op("Range", [g.op("Squeeze", [past_len]), g.op("Squeeze", [total]), g.const(1)])
    return g.op("Add", [tokens, g.op("Gather", ["embed_positions.weight", positions])])


def _rotary_caches(head_dim: int) -> tuple[np.ndarray, np.ndarray]:
    """cos/sin caches [MAX_POSITIONS, head_dim/2] for non-interleaved rotary (as genai's builder makes)."""
    inv_freq = ROPE_THETA ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    angles = np.outer(np.arange(MAX_POSITIONS, dtype=np.float64), inv_freq)
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def _decoder(
    g: _Graph, spec: DecoderSpec, hidden: str, op_type: str, attention_inputs: AttentionInputs, **attrs: Any
) -> onnx.ModelProto:
    """Per layer: hidden += o_proj(op_type(q, k, v, past...)), then logits; wraps the model.

    attention_inputs(q, k, v, past_key, past_value) gives the op's input list.
    """
    weights = _make_weights(spec)
    g.initializers += [numpy_helper.from_array(array, name) for name, array in weights.items()]
    for layer in range(spec.layers):
        prefix = f"layers.{layer}.self_attn"
        q, k, v = (g.op("MatMul", [hidden, f"{prefix}.{proj}.weight"]) for proj in ("q_proj", "k_proj", "v_proj"))
        key, value = (c for c in cache_names(spec) if c.layer == layer)
        context = f"{prefix}.attn_output"
        g.nodes.append(
            helper.make_node(
                op_type,
                attention_inputs(q, k, v, key.past, value.past),
                [context, key.present, value.present],
                name=f"{prefix}.attn",
                domain=MS_DOMAIN,
                **attrs,
            )
        )
        hidden = g.op("Add", [hidden, g.op("MatMul", [context, f"{prefix}.o_proj.weight"])])
    g.nodes.append(helper.make_node("MatMul", [hidden, "lm_head.weight"], ["logits"], name="lm_head"))
    graph = helper.make_graph(g.nodes, f"contrib_{op_type}_decoder", _inputs(spec), _outputs(spec), _used(g))
    return helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(MS_DOMAIN, MS_OPSET)],
        ir_version=IR_VERSION,
        producer_name="onnxdoctor.testing.contrib",
    )


def _used(g: _Graph) -> list[TensorProto]:
    """Initializers the nodes read (e.g. GQA's rotary model has no embed_positions)."""
    used = _referenced_names(g.nodes)
    return [init for init in g.initializers if init.name in used]


def _inputs(spec: DecoderSpec) -> list[onnx.ValueInfoProto]:
    """input_ids, attention_mask, then past key/value per layer (genai order)."""
    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, [BATCH, SEQ]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, [BATCH, TOTAL]),
    ]
    shape: list[str | int] = [BATCH, spec.kv_heads, PAST, spec.head_dim]
    inputs += [helper.make_tensor_value_info(c.past, TensorProto.FLOAT, shape) for c in cache_names(spec)]
    return inputs


def _outputs(spec: DecoderSpec) -> list[onnx.ValueInfoProto]:
    """logits, then present key/value per layer."""
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [BATCH, SEQ, spec.vocab])]
    shape: list[str | int] = [BATCH, spec.kv_heads, TOTAL, spec.head_dim]
    outputs += [helper.make_tensor_value_info(c.present, TensorProto.FLOAT, shape) for c in cache_names(spec)]
    return outputs


FIXTURES: dict[str, partial[onnx.ModelProto]] = {
    "contrib-gqa.onnx": partial(build_gqa_decoder, heads=2, kv_heads=1, head_dim=16, rotary=True),
    "contrib-mha.onnx": partial(build_mha_decoder, heads=2, head_dim=8),
}
"""Committed fixtures (file name -> builder call), small so each file is a few tens of KB.

Written by scripts/make_synthetic_fixtures.py.
"""
