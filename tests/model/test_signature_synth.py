"""Hypothesis: random decoders in every naming convention are recognized exactly as built."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onnxdoctor.engine import inspect_path
from onnxdoctor.findings import Severity
from onnxdoctor.model import roles
from onnxdoctor.testing.synth import DecoderSpec, build_decoder, cache_names


@st.composite
def decoder_specs(draw: st.DrawFn) -> DecoderSpec:
    kv_heads = draw(st.integers(1, 4))
    heads = kv_heads * draw(st.integers(1, 3))
    naming = draw(st.sampled_from(["optimum", "stacked", "self_cross", "plain"]))
    seq2seq = naming in ("optimum", "self_cross") and draw(st.booleans())
    merged = seq2seq and naming == "optimum" and draw(st.booleans())
    if not seq2seq and naming == "optimum":
        merged = draw(st.booleans())
    return DecoderSpec(
        layers=draw(st.integers(1, 4)),
        heads=heads,
        kv_heads=kv_heads,
        head_dim=draw(st.integers(2, 8)),
        vocab=16,
        naming=naming,
        seq2seq=seq2seq,
        merged=merged,
        with_past=merged or draw(st.booleans()),
        position_ids=draw(st.booleans()),
        dtype=draw(st.sampled_from(["float32", "float16"])),
    )


def _save(spec: DecoderSpec, folder: Path) -> Path:
    path = folder / "model.onnx"
    onnx.save(build_decoder(spec), path)
    return path


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=decoder_specs())
def test_layout_is_recognized_as_built(spec: DecoderSpec, tmp_path_factory: pytest.TempPathFactory) -> None:
    report = inspect_path(_save(spec, tmp_path_factory.mktemp("synth")))
    signature = report.files[0].signature
    kv = signature.kv
    assert kv is not None and signature.kind == "decoder"
    assert kv.layers == spec.layers
    assert kv.kv_heads == spec.kv_heads
    assert kv.head_dim == spec.head_dim
    assert kv.stacked == (spec.naming == "stacked")
    assert kv.cache_axis == (3 if spec.naming == "stacked" else 2)
    assert kv.merged == spec.merged
    assert kv.cross_attention == spec.seq2seq
    assert kv.dtype == spec.dtype
    assert kv.mode == ("merged" if spec.merged else "with_past" if spec.with_past else "no_past")
    assert (signature.input(roles.POSITION_IDS) is not None) == spec.position_ids
    # every cache tensor the builder named is paired with its partner
    pairs = {(p.past.name if p.past else None, p.present.name if p.present else None) for p in kv.pairs}
    for name in cache_names(spec):
        past = name.past if spec.with_past else None
        present = name.present
        if spec.seq2seq and spec.with_past and not spec.merged and name.cross and spec.naming == "optimum":
            present = None  # like optimum's decoder_with_past: no cross presents
        assert (past, present) in pairs or (past, name.present) in pairs
    noisy = [f"{f.code}: {f.message}" for f in report.findings if f.severity is not Severity.INFO]
    assert noisy == []


SIGNATURE_DEFECTS = {
    "drop_present": ("ODS002", "input", "past_key_values.0.value"),
    "present_dtype_mismatch": ("ODS003", "output", "present.0.key"),
    "present_heads_mismatch": ("ODS004", "output", "present.0.key"),
}


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    defect=st.sampled_from(sorted(SIGNATURE_DEFECTS)),
    layers=st.integers(1, 3),
    kv_heads=st.integers(1, 3),
    head_dim=st.integers(2, 6),
)
def test_planted_signature_defect_is_the_only_problem(
    defect: str, layers: int, kv_heads: int, head_dim: int, tmp_path_factory: pytest.TempPathFactory
) -> None:
    spec = DecoderSpec(layers=layers, heads=kv_heads * 2, kv_heads=kv_heads, head_dim=head_dim, vocab=16, defect=defect)
    report = inspect_path(_save(spec, tmp_path_factory.mktemp("defect")))
    code, kind, name = SIGNATURE_DEFECTS[defect]
    problems = [f for f in report.findings if f.severity is not Severity.INFO]
    assert [(f.code, f.location.kind, f.location.name) for f in problems] == [(code, kind, name)]
    assert report.exit_code == 1


def test_dtype_names_match_onnx_for_every_known_element_type() -> None:
    """The signature's own table names each TensorProto type as onnx.helper maps it to numpy."""
    import onnx

    from onnxdoctor.model.signature import dtype_name

    for elem_type in onnx.TensorProto.DataType.values():
        if elem_type == onnx.TensorProto.UNDEFINED:
            assert dtype_name(elem_type) == "undefined"
            continue
        assert dtype_name(elem_type) == onnx.helper.tensor_dtype_to_np_dtype(elem_type).name
    assert dtype_name(999) == "elem_type 999"
