"""The synthetic decoders load, check, and decode with the cache exactly like a full recompute."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onnxdoctor.testing.synth import (
    DEFECTS,
    FIXTURES,
    NAMINGS,
    DecoderSpec,
    build_decoder,
    cache_names,
    cross_placeholder_shape,
)

ENCODER_LEN = 3


def _session(spec: DecoderSpec) -> Any:
    """An ORT CPU session for the spec's model (onnxruntime is imported here only)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(build_decoder(spec).SerializeToString(), options, providers=["CPUExecutionProvider"])


def _np_dtype(spec: DecoderSpec) -> type:
    return np.float16 if spec.dtype == "float16" else np.float32


def _cache_array(spec: DecoderSpec, part: str, batch: int, length: int) -> np.ndarray:
    """A zero cache tensor of the given cache length (key and value stacked for 'stacked')."""
    shape = (batch, spec.kv_heads, length, spec.head_dim)
    return np.zeros((2, *shape) if part == "stacked" else shape, dtype=_np_dtype(spec))


def _attention_mask(batch: int, total: int) -> np.ndarray:
    """All ones except a left pad in row 1, so padding is exercised identically in both paths."""
    mask = np.ones((batch, total), dtype=np.int64)
    if batch > 1:
        mask[1, 0] = 0
    return mask


def _encoder(spec: DecoderSpec, batch: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    mask = np.ones((batch, ENCODER_LEN), dtype=np.int64)
    mask[-1, -1] = 0
    return {
        "encoder_hidden_states": rng.standard_normal((batch, ENCODER_LEN, spec.hidden)).astype(_np_dtype(spec)),
        "encoder_attention_mask": mask,
    }


def _run(
    session: Any, spec: DecoderSpec, ids: np.ndarray, past: dict[str, np.ndarray], past_len: int, use_cache: bool = True
) -> dict[str, np.ndarray]:
    """Run one step of `ids` after `past_len` cached tokens, feeding only the inputs the model has."""
    batch, seq = ids.shape
    feeds: dict[str, Any] = {
        "input_ids": ids,
        "attention_mask": _attention_mask(batch, past_len + seq),
        "position_ids": np.tile(np.arange(past_len, past_len + seq, dtype=np.int64), (batch, 1)),
        "use_cache_branch": np.array([use_cache]),
        **_encoder(spec, batch),
        **past,
    }
    names = [i.name for i in session.get_inputs()]
    outputs = session.run(None, {name: feeds[name] for name in names})
    return dict(zip([o.name for o in session.get_outputs()], outputs))


def _fed_back(spec: DecoderSpec, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The next step's past inputs: this step's presents."""
    return {c.past: outputs[c.present] for c in cache_names(spec)}


def _empty_past(spec: DecoderSpec, batch: int, length: int = 0) -> dict[str, np.ndarray]:
    return {c.past: _cache_array(spec, c.part, batch, length) for c in cache_names(spec)}


def _uncached(spec: DecoderSpec, ids: np.ndarray) -> dict[str, np.ndarray]:
    """Run without using any cache: empty past, the merged no-cache branch, or the with_past=False variant."""
    batch = ids.shape[0]
    if spec.merged:  # the no-cache branch must ignore the (length 1) dummy past
        return _run(_session(spec), spec, ids, _empty_past(spec, batch, length=1), 0, use_cache=False)
    if spec.with_past and not spec.seq2seq:
        return _run(_session(spec), spec, ids, _empty_past(spec, batch), 0)
    no_past = replace(spec, with_past=False)
    return _run(_session(no_past), no_past, ids, {}, 0)


def _check_cached_equals_uncached(spec: DecoderSpec, batch: int, prompt_len: int) -> None:
    """Step 0 over the prompt, step 1 with one token and the fed-back cache == recompute over all tokens."""
    rng = np.random.default_rng(spec.seed)
    ids = rng.integers(0, spec.vocab, size=(batch, prompt_len + 1), dtype=np.int64)
    atol = 1e-2 if spec.dtype == "float16" else 1e-4
    full = _uncached(spec, ids)["logits"].astype(np.float32)
    step0 = _uncached(spec, ids[:, :prompt_len])
    step1 = _run(_session(spec), spec, ids[:, prompt_len:], _fed_back(spec, step0), prompt_len)

    attended = _attention_mask(batch, prompt_len).astype(bool)  # a padded query's logits are meaningless
    np.testing.assert_allclose(step0["logits"][attended].astype(np.float32), full[:, :prompt_len][attended], atol=atol)
    np.testing.assert_allclose(step1["logits"].astype(np.float32), full[:, prompt_len:], atol=atol)
    for cache in cache_names(spec):
        present = step1[cache.present]
        assert present.dtype == _np_dtype(spec)
        if cache.cross and spec.merged:
            assert present.shape == cross_placeholder_shape(spec)
        elif cache.cross:
            assert present.shape[2] == ENCODER_LEN
        else:
            assert present.shape[3 if cache.part == "stacked" else 2] == prompt_len + 1


VARIANTS = [
    DecoderSpec(),
    DecoderSpec(naming="stacked"),
    DecoderSpec(naming="self_cross"),
    DecoderSpec(naming="plain"),
    DecoderSpec(kv_heads=1),
    DecoderSpec(kv_heads=4),
    DecoderSpec(dtype="float16"),
    DecoderSpec(naming="stacked", dtype="float16"),
    DecoderSpec(position_ids=False, attention_mask=False),
    DecoderSpec(merged=True),
    DecoderSpec(merged=True, naming="stacked", position_ids=False),
    DecoderSpec(seq2seq=True),
    DecoderSpec(seq2seq=True, naming="self_cross", attention_mask=False),
    DecoderSpec(seq2seq=True, merged=True),
    DecoderSpec(seq2seq=True, merged=True, naming="self_cross", dtype="float16"),
    DecoderSpec(seq2seq=True, merged=True, position_ids=False, attention_mask=False),
    DecoderSpec(static_dims={"batch_size": 2}),
]


def _spec_id(spec: DecoderSpec) -> str:
    defaults = DecoderSpec()
    changed = [f for f in fields(spec) if getattr(spec, f.name) != getattr(defaults, f.name)]
    return ",".join(f"{f.name}={getattr(spec, f.name)}" for f in changed) or "default"


@pytest.mark.parametrize("spec", VARIANTS, ids=_spec_id)
def test_model_checks(spec: DecoderSpec) -> None:
    onnx.checker.check_model(build_decoder(spec), full_check=True)
    onnx.checker.check_model(build_decoder(replace(spec, merged=False, with_past=False)), full_check=True)


@pytest.mark.parametrize("spec", VARIANTS, ids=_spec_id)
def test_cached_decode_matches_recompute(spec: DecoderSpec) -> None:
    _check_cached_equals_uncached(spec, batch=2, prompt_len=3)


@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_cached_decode_matches_recompute_random(data: st.DataObject) -> None:
    naming = data.draw(st.sampled_from(NAMINGS))
    kv_heads = data.draw(st.integers(1, 3))
    spec = DecoderSpec(
        layers=data.draw(st.integers(1, 3)),
        heads=kv_heads * data.draw(st.integers(1, 3)),
        kv_heads=kv_heads,
        head_dim=data.draw(st.integers(2, 8)),
        naming=naming,
        seq2seq=naming in ("optimum", "self_cross") and data.draw(st.booleans()),
        merged=data.draw(st.booleans()),
        position_ids=data.draw(st.booleans()),
        attention_mask=data.draw(st.booleans()),
        dtype=data.draw(st.sampled_from(["float32", "float16"])),
        seed=data.draw(st.integers(0, 2**16)),
    )
    _check_cached_equals_uncached(spec, batch=data.draw(st.integers(1, 2)), prompt_len=data.draw(st.integers(1, 4)))


def test_import_needs_no_runtime() -> None:
    code = "import sys, onnxdoctor.testing.synth; assert not {'onnxruntime', 'torch'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_io_names_and_dims() -> None:
    model = build_decoder(DecoderSpec(seq2seq=True, merged=True, static_dims={"batch_size": 1}))
    inputs = {i.name: i for i in model.graph.input}
    outputs = {o.name: o for o in model.graph.output}

    def dims(value: onnx.ValueInfoProto) -> list[int | str]:
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    assert dims(inputs["attention_mask"]) == [1, "past_sequence_length + sequence_length"]
    assert dims(inputs["past_key_values.1.decoder.key"]) == [1, 2, "past_sequence_length", 8]
    assert dims(inputs["past_key_values.1.encoder.value"]) == [1, 2, "encoder_sequence_length", 8]
    assert dims(inputs["encoder_hidden_states"]) == [1, "encoder_sequence_length", 32]
    assert inputs["use_cache_branch"].type.tensor_type.elem_type == onnx.TensorProto.BOOL
    assert dims(outputs["logits"]) == [1, "sequence_length", 32]
    assert dims(outputs["present.0.decoder.value"]) == [1, 2, "past_sequence_length + sequence_length", 8]
    assert dims(outputs["present.0.encoder.key"]) == [1, 2, "encoder_sequence_length", 8]
    assert [n.op_type for n in model.graph.node] == ["If"]
    assert cross_placeholder_shape(DecoderSpec(seq2seq=True, merged=True)) == (0, 2, 1, 8)

    no_past = build_decoder(DecoderSpec(with_past=False))
    assert not any(i.name.startswith("past") for i in no_past.graph.input)
    assert [d.dim_param for d in no_past.graph.output[1].type.tensor_type.shape.dim][2] == "sequence_length"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"naming": "stacked", "seq2seq": True},
        {"naming": "plain", "seq2seq": True},
        {"heads": 4, "kv_heads": 3},
        {"layers": 0},
        {"naming": "gpt"},
        {"dtype": "bfloat16"},
        {"merged": True, "with_past": False},
        {"static_dims": {"batch": 1}},
        {"defect": "nope"},
        {"defect": "drop_present", "merged": True},
        {"defect": "drop_present", "with_past": False},
        {"defect": "drop_present", "naming": "stacked"},
    ],
    ids=str,
)
def test_invalid_spec_raises(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        DecoderSpec(**kwargs)


def _decode_two_steps(spec: DecoderSpec, prompt_len: int = 3) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Step 0 over a batch-1 prompt with an empty past, step 1 with one token and step 0's presents."""
    session = _session(spec)
    ids = np.arange(1, prompt_len + 2, dtype=np.int64)[None]
    step0 = _run(session, spec, ids[:, :prompt_len], _empty_past(spec, 1), 0)
    return step0, _run(session, spec, ids[:, prompt_len:], _fed_back(spec, step0), prompt_len)


def _declared(model: onnx.ModelProto, name: str) -> onnx.TypeProto.Tensor:
    return next(o for o in model.graph.output if o.name == name).type.tensor_type


@pytest.mark.parametrize("defect", DEFECTS)
def test_defect_builds_checks_and_loads(defect: str) -> None:
    spec = DecoderSpec(defect=defect)
    model = build_decoder(spec)
    # Strict shape inference rightly rejects a declared heads dim that contradicts the graph.
    onnx.checker.check_model(model, full_check=defect != "present_heads_mismatch")
    _session(spec)


def test_defect_present_is_new() -> None:
    spec = DecoderSpec(defect="present_is_new")
    assert _declared(build_decoder(spec), "present.0.key").shape.dim[2].dim_param == "sequence_length"
    _, step1 = _decode_two_steps(spec)
    assert step1["present.0.key"].shape[2] == 1
    assert step1["present.0.value"].shape[2] == 1
    assert step1["present.1.key"].shape[2] == 4


def test_defect_concat_swapped() -> None:
    model = build_decoder(DecoderSpec(defect="concat_swapped"))
    concats = [n for n in model.graph.node if n.op_type == "Concat" and "past_key_values.0.key" in n.input]
    assert [list(n.input).index("past_key_values.0.key") for n in concats] == [1]
    _decode_two_steps(DecoderSpec(defect="concat_swapped"))


def test_defect_concat_wrong_axis() -> None:
    spec = DecoderSpec(defect="concat_wrong_axis")
    assert _declared(build_decoder(spec), "present.0.key").shape.dim[3].dim_value == 2 * spec.head_dim
    step0, _ = _decode_two_steps(replace(spec, defect=None))
    out = _run(_session(spec), spec, np.array([[1, 2, 3]]), _fed_back(spec, step0), 3)
    assert out["present.0.key"].shape == (1, spec.kv_heads, 3, 2 * spec.head_dim)  # runs when past len == new len
    with pytest.raises(Exception, match="invalid dimensions for input: past_key_values.0"):
        _decode_two_steps(spec)  # feeding the present back as past


def test_defect_drop_present() -> None:
    model = build_decoder(DecoderSpec(defect="drop_present"))
    assert "present.0.value" not in {o.name for o in model.graph.output}
    assert any(n.op_type == "Concat" and "past_key_values.0.value" in n.input for n in model.graph.node)


def test_defect_baked_reshape() -> None:
    spec = DecoderSpec(defect="baked_reshape")
    session = _session(spec)
    step0 = _run(session, spec, np.array([[1, 2, 3]]), _empty_past(spec, 1), 0)  # the export-time shape runs
    with pytest.raises(Exception, match="Reshape"):
        _run(session, spec, np.array([[4]]), _fed_back(spec, step0), 3)


def test_defect_reshape_zero() -> None:
    spec = DecoderSpec(defect="reshape_zero")
    with pytest.raises(Exception, match="cannot be reshaped"):
        _decode_two_steps(spec)
    out = _run(_session(spec), spec, np.array([[1]]), _empty_past(spec, 1, length=2), 2)
    assert out["present.0.key"].shape[2] == 3


def test_defect_present_dtype_mismatch() -> None:
    spec = DecoderSpec(defect="present_dtype_mismatch")
    assert _declared(build_decoder(spec), "present.0.key").elem_type == onnx.TensorProto.FLOAT16
    out = _run(_session(spec), spec, np.array([[1]]), _empty_past(spec, 1, length=2), 2)
    assert out["present.0.key"].dtype == np.float16
    assert out["present.0.value"].dtype == np.float32


def test_defect_present_heads_mismatch() -> None:
    spec = DecoderSpec(defect="present_heads_mismatch")
    assert _declared(build_decoder(spec), "present.0.key").shape.dim[1].dim_value == spec.kv_heads + 1
    _, step1 = _decode_two_steps(spec)
    assert step1["present.0.key"].shape[1] == spec.kv_heads


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_committed_fixture_is_current(name: str) -> None:
    """A committed fixture must equal what the generator builds now (rerun scripts/make_synthetic_fixtures.py)."""
    path = Path(__file__).resolve().parents[2] / "fixtures" / "synthetic" / name
    if not path.exists():
        pytest.skip(f"{path} not generated")
    assert path.read_bytes() == build_decoder(FIXTURES[name]).SerializeToString()
