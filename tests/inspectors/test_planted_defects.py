"""Hypothesis: random decoders with one planted defect get exactly that defect's findings, at the planted layer."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onnxdoctor.engine import inspect_path
from onnxdoctor.findings import Severity
from onnxdoctor.testing.synth import BATCH, ENC, PAST, SEQ, TOTAL, DecoderSpec, build_decoder, cache_names

DEFECT_CODES = {
    "present_is_new": {"ODP301", "ODA104"},
    "concat_swapped": {"ODP302"},
    "concat_wrong_axis": {"ODP303", "ODS004", "ODA104"},
    "drop_present": {"ODS002"},
    "baked_reshape": {"ODR201"},
    "reshape_zero": {"ODR202"},
    "present_dtype_mismatch": {"ODS003"},
    "present_heads_mismatch": {"ODS004"},
}
STATIC_CODES = {BATCH: {"ODA101"}, SEQ: {"ODA102"}, PAST: {"ODA103"}, TOTAL: {"ODA102", "ODA103"}, ENC: {"ODA105"}}


def _inspect(spec: DecoderSpec, folder: Path):  # type: ignore[no-untyped-def]
    path = folder / "model.onnx"
    onnx.save(build_decoder(spec), path)
    return inspect_path(path)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    defect=st.sampled_from(sorted(DEFECT_CODES)),
    naming=st.sampled_from(["optimum", "plain", "self_cross"]),
    layers=st.integers(1, 3),
    planted=st.integers(0, 2),
    kv_heads=st.integers(1, 3),
    group=st.integers(1, 2),
    head_dim=st.integers(2, 8),
)
def test_planted_graph_defect_is_found_exactly(
    defect: str, naming: str, layers: int, planted: int, kv_heads: int, group: int, head_dim: int,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    spec = DecoderSpec(
        layers=layers, heads=kv_heads * group, kv_heads=kv_heads, head_dim=head_dim, vocab=16, naming=naming,
        defect=defect, defect_layer=min(planted, layers - 1),
    )
    report = _inspect(spec, tmp_path_factory.mktemp("defect"))
    problems = [f for f in report.findings if f.severity is not Severity.INFO]
    assert {f.code for f in problems} == DEFECT_CODES[defect], [f"{f.code} {f.message}" for f in problems]
    layer = spec.defect_layer
    planted_io = {n.past for n in cache_names(spec) if n.layer == layer} | {n.present for n in cache_names(spec) if n.layer == layer}
    for finding in problems:
        if finding.location.kind in ("input", "output"):
            assert finding.location.name in planted_io
        else:
            assert finding.location.kind == "node" and finding.location.name


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    frozen=st.sets(st.sampled_from([BATCH, SEQ, PAST, TOTAL, ENC]), min_size=1, max_size=3),
    naming=st.sampled_from(["optimum", "self_cross"]),
    layers=st.integers(1, 3),
    kv_heads=st.integers(1, 3),
    head_dim=st.integers(2, 8),
    sizes=st.integers(1, 9),
)
def test_frozen_axes_are_found_exactly(
    frozen: set[str], naming: str, layers: int, kv_heads: int, head_dim: int, sizes: int, tmp_path_factory: pytest.TempPathFactory
) -> None:
    seq2seq = ENC in frozen
    spec = DecoderSpec(
        layers=layers, heads=kv_heads, kv_heads=kv_heads, head_dim=head_dim, vocab=16, naming=naming,
        seq2seq=seq2seq, static_dims={name: sizes + i for i, name in enumerate(sorted(frozen))},
    )
    report = _inspect(spec, tmp_path_factory.mktemp("static"))
    expected = set().union(*(STATIC_CODES[name] for name in frozen))
    problems = [f for f in report.findings if f.severity is not Severity.INFO]
    assert {f.code for f in problems} == expected, [f"{f.code} {f.message}" for f in problems]
    for finding in problems:
        frozen_values = {item["value"] for item in finding.evidence["frozen"]}
        assert frozen_values <= set(spec.static_dims.values())
        assert finding.remedy and finding.remedy["dynamic_axes"]
