"""The contrib-op decoders (GroupQueryAttention, MultiHeadAttention) check, run in ORT, and cache honestly."""

from __future__ import annotations

import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx
import pytest

from onnxdoctor.testing.contrib import FIXTURES, MS_DOMAIN, build_gqa_decoder, build_mha_decoder

PROMPT_LEN = 3

BUILDERS: dict[str, Callable[[], onnx.ModelProto]] = {
    "gqa": build_gqa_decoder,
    "gqa-rotary": partial(build_gqa_decoder, heads=2, kv_heads=1, head_dim=16, rotary=True),
    "gqa-mqa-1layer": partial(build_gqa_decoder, layers=1, heads=4, kv_heads=1),
    "mha": build_mha_decoder,
    **FIXTURES,
}


def _session(model: onnx.ModelProto) -> Any:
    """An ORT CPU session (onnxruntime is imported here only)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _cache_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    return [i for i in model.graph.input if i.name.startswith("past_key_values.")]


def _run(session: Any, ids: np.ndarray, past: dict[str, np.ndarray], past_len: int) -> dict[str, np.ndarray]:
    """One step of `ids` after `past_len` cached tokens (no padding)."""
    mask = np.ones((ids.shape[0], past_len + ids.shape[1]), dtype=np.int64)
    outputs = session.run(None, {"input_ids": ids, "attention_mask": mask, **past})
    return dict(zip([o.name for o in session.get_outputs()], outputs))


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_model_checks(name: str) -> None:
    # onnx has no com.microsoft schemas, so the checker validates everything but the attention
    # nodes themselves; ORT loading them (test below) is the check for those.
    onnx.checker.check_model(BUILDERS[name](), full_check=True)


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_cached_decode_matches_recompute(name: str, batch: int) -> None:
    """Step 0 (empty past, 3 tokens) then step 1 (fed-back presents, 1 token) == one uncached run of 4 tokens."""
    model = BUILDERS[name]()
    session = _session(model)
    vocab = model.graph.output[0].type.tensor_type.shape.dim[2].dim_value
    ids = np.random.default_rng(0).integers(0, vocab, size=(batch, PROMPT_LEN + 1), dtype=np.int64)
    empty = {}
    for past in _cache_inputs(model):
        kv_heads, head_dim = (d.dim_value for d in past.type.tensor_type.shape.dim[1::2])
        empty[past.name] = np.zeros((batch, kv_heads, 0, head_dim), dtype=np.float32)

    full = _run(session, ids, empty, 0)
    step0 = _run(session, ids[:, :PROMPT_LEN], empty, 0)
    fed_back = {name: step0[name.replace("past_key_values.", "present.")] for name in empty}
    step1 = _run(session, ids[:, PROMPT_LEN:], fed_back, PROMPT_LEN)

    np.testing.assert_allclose(step0["logits"], full["logits"][:, :PROMPT_LEN], atol=1e-4)
    np.testing.assert_allclose(step1["logits"], full["logits"][:, PROMPT_LEN:], atol=1e-4)
    for name, past in empty.items():
        present = name.replace("past_key_values.", "present.")
        assert step0[present].shape[2] == PROMPT_LEN
        assert step1[present].shape == (*past.shape[:2], PROMPT_LEN + 1, past.shape[3])
        np.testing.assert_allclose(step1[present], full[present], atol=1e-5)


@pytest.mark.parametrize(
    ("build", "op_type", "kv_heads"),
    [(build_gqa_decoder, "GroupQueryAttention", 2), (build_mha_decoder, "MultiHeadAttention", 4)],
)
def test_io_and_attention_nodes(build: Callable[[], onnx.ModelProto], op_type: str, kv_heads: int) -> None:
    """genai's I/O names and dims; the cache goes through the contrib op only (no Concat)."""
    model = build()

    def dims(value: onnx.ValueInfoProto) -> list[int | str]:
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    inputs = {i.name: dims(i) for i in model.graph.input}
    outputs = {o.name: dims(o) for o in model.graph.output}
    assert inputs == {
        "input_ids": ["batch_size", "sequence_length"],
        "attention_mask": ["batch_size", "total_sequence_length"],
        **{
            f"past_key_values.{layer}.{part}": ["batch_size", kv_heads, "past_sequence_length", 8]
            for layer in range(2)
            for part in ("key", "value")
        },
    }
    assert outputs == {
        "logits": ["batch_size", "sequence_length", 32],
        **{
            f"present.{layer}.{part}": ["batch_size", kv_heads, "total_sequence_length", 8]
            for layer in range(2)
            for part in ("key", "value")
        },
    }
    attention = [n for n in model.graph.node if n.domain == MS_DOMAIN]
    assert [n.op_type for n in attention] == [op_type, op_type]
    for layer, node in enumerate(attention):
        assert list(node.output[1:]) == [f"present.{layer}.key", f"present.{layer}.value"]
        assert f"past_key_values.{layer}.key" in node.input and f"past_key_values.{layer}.value" in node.input
    assert not any(n.op_type == "Concat" for n in model.graph.node)


def test_gqa_mask_derived_inputs_are_int32() -> None:
    """GQA's seqlens_k and total_sequence_length must be int32 (ORT rejects int64 at load)."""
    model = onnx.shape_inference.infer_shapes(build_gqa_decoder(), strict_mode=True)
    types = {v.name: v.type.tensor_type for v in model.graph.value_info}
    node = next(n for n in model.graph.node if n.op_type == "GroupQueryAttention")
    seqlens_k, total = (types[name] for name in node.input[5:7])
    assert seqlens_k.elem_type == total.elem_type == onnx.TensorProto.INT32
    assert len(seqlens_k.shape.dim) == 1 and len(total.shape.dim) == 0


@pytest.mark.parametrize("kwargs", [{"head_dim": 4}, {"head_dim": 8, "rotary": True}])
def test_gqa_head_dim_ort_cannot_run_raises(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="head_dim"):
        build_gqa_decoder(**kwargs)


def test_import_needs_no_runtime() -> None:
    code = "import sys, onnxdoctor.testing.contrib; assert not {'onnxruntime', 'torch'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_committed_fixture_is_current(name: str) -> None:
    """A committed fixture must equal what the builder makes now (rerun scripts/make_synthetic_fixtures.py)."""
    path = Path(__file__).resolve().parents[2] / "fixtures" / "synthetic" / name
    if not path.exists():
        pytest.skip(f"{path} not generated")
    assert path.read_bytes() == FIXTURES[name]().SerializeToString()
