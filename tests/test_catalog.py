"""The findings catalog: every rule has a page and a committed fixture that triggers it, at the right place."""

from __future__ import annotations

import pytest

from support import FIXTURES
from onnxdoctor.engine import inspect_path
from onnxdoctor.findings import Severity, all_rules

# fixture -> (errors and warnings as (code, location kind, name, axis), info codes)
EXPECTED: dict[str, tuple[list[tuple[str, str, str, int | None]], list[str]]] = {
    "broken-fp16-io": ([], ["ODS011", "ODS013"]),
    "broken-fp16-partial": (
        [("ODS003", "output", f"present.{layer}.{part}", None) for layer in (0, 1) for part in ("key", "value")],
        ["ODS011", "ODS013"],
    ),
    "broken-gs-concat-swapped": (
        [
            ("ODP302", "node", "/model/layers.0/self_attn/Concat_5", None),
            ("ODP302", "node", "/model/layers.0/self_attn/Concat_6", None),
        ],
        ["ODS011"],
    ),
    "broken-gs-dropped-present": ([("ODS002", "input", "past_key_values.1.value", None)], ["ODS011"]),
    "broken-gs-present-is-new": (
        [
            ("ODA104", "output", "present.0.key", 2),
            ("ODA104", "output", "present.0.value", 2),
            ("ODP301", "output", "present.0.key", None),
            ("ODP301", "output", "present.0.value", None),
        ],
        ["ODS011"],
    ),
    "broken-optimum-no-dynamic-axes": (
        [
            ("ODA102", "input", "input_ids", 1),
            ("ODA103", "input", "past_key_values.0.key", 2),
            ("ODA101", "input", "input_ids", 0),
        ],
        ["ODS011"],
    ),
    "broken-torch-baked-view": (
        [("ODR201", "node", f"/layers.{layer}/Reshape{suffix}", None) for layer in (0, 1) for suffix in ("", "_1")],
        [],
    ),
    "broken-torch-no-dynamic-axes": (
        [("ODA102", "input", "input_ids", 1), ("ODA103", "input", "past_key_0", 2), ("ODA101", "input", "input_ids", 0)],
        [],
    ),
    "broken-torch-partial-dynamic-axes": (
        [("ODA103", "input", "past_key_0", 2), ("ODA101", "input", "past_key_0", 0)],
        [],
    ),
    "synthetic/defect-baked_reshape.onnx": (
        [("ODR201", "node", f"Reshape_node_{n}", None) for n in (22, 25, 28)],
        ["ODS011"],
    ),
    "synthetic/defect-concat_swapped.onnx": (
        [("ODP302", "node", "Concat_node_36", None), ("ODP302", "node", "Concat_node_37", None)],
        ["ODS011"],
    ),
    "synthetic/defect-concat_wrong_axis.onnx": (
        [
            ("ODA104", "output", "present.0.key", 2),
            ("ODA104", "output", "present.0.value", 2),
            ("ODP303", "node", "Concat_node_38", 3),
            ("ODP303", "node", "Concat_node_39", 3),
            ("ODS004", "output", "present.0.key", 3),
            ("ODS004", "output", "present.0.value", 3),
        ],
        ["ODS011"],
    ),
    "synthetic/defect-drop_present.onnx": ([("ODS002", "input", "past_key_values.0.value", None)], ["ODS011"]),
    "synthetic/defect-present_dtype_mismatch.onnx": ([("ODS003", "output", "present.0.key", None)], ["ODS011", "ODS013"]),
    "synthetic/defect-present_heads_mismatch.onnx": ([("ODS004", "output", "present.0.key", 1)], ["ODS011"]),
    "synthetic/defect-present_is_new.onnx": (
        [
            ("ODA104", "output", "present.0.key", 2),
            ("ODA104", "output", "present.0.value", 2),
            ("ODP301", "output", "present.0.key", None),
            ("ODP301", "output", "present.0.value", None),
        ],
        ["ODS011"],
    ),
    "synthetic/defect-reshape_zero.onnx": ([("ODR202", "node", "Reshape_node_37", None)], ["ODS011"]),
    "synthetic/no-kv-cache.onnx": ([], ["ODS001"]),
    "synthetic/unnamed-cache.onnx": ([("ODS005", "input", "past_0", None)], []),
    "synthetic/defect-fp16-overflow.onnx": ([], ["ODS011", "ODS013"]),
    "synthetic/defect-fp16-near-limit.onnx": ([], ["ODS011", "ODS013"]),
    "synthetic/defect-ignores-attention-mask.onnx": ([], ["ODS011"]),
    "synthetic/static-encoder-axis.onnx": ([("ODA105", "input", "encoder_attention_mask", 1)], ["ODS011"]),
    "synthetic/optimum-gqa.onnx": ([], ["ODS011"]),
    "synthetic/contrib-gqa.onnx": ([], []),
    "synthetic/contrib-mha.onnx": ([], []),
    "synthetic/optimum-seq2seq-merged.onnx": ([], ["ODP304", "ODS010", "ODS011"]),
    "synthetic/plain-kv.onnx": ([], ["ODS011"]),
    "synthetic/self-cross-whisper.onnx": ([], []),
    "synthetic/stacked-legacy.onnx": ([], ["ODS011"]),
}


def _observed(fixture: str) -> tuple[list[tuple[str, str, str | None, int | None]], list[str]]:
    report = inspect_path(FIXTURES / fixture)
    problems = [
        (f.code, f.location.kind, f.location.name, f.location.axis) for f in report.findings if f.severity is not Severity.INFO
    ]
    info = sorted({f.code for f in report.findings if f.severity is Severity.INFO})
    return problems, info


@pytest.mark.parametrize("fixture", sorted(EXPECTED))
def test_fixture_produces_exactly_its_findings(fixture: str) -> None:
    problems, info = _observed(fixture)
    expected_problems, expected_info = EXPECTED[fixture]
    assert sorted(problems, key=str) == sorted(expected_problems, key=str)
    assert info == expected_info


def test_every_broken_and_synthetic_fixture_has_expectations() -> None:
    on_disk = {p.name for p in FIXTURES.glob("broken-*")} | {f"synthetic/{p.name}" for p in (FIXTURES / "synthetic").glob("*.onnx")}
    assert on_disk == set(EXPECTED)


@pytest.mark.parametrize("rule", all_rules(), ids=lambda r: r.code)
def test_every_rule_has_a_page_and_a_triggering_fixture(rule) -> None:  # type: ignore[no-untyped-def]
    for section in (rule.what, rule.why, rule.example, rule.fix, rule.fix_safety):
        assert section.strip(), f"{rule.code} page has an empty section"
    assert rule.name == rule.name.lower() and " " not in rule.name
    from inspectors.test_export_folder import TRIGGERED as FOLDER_TRIGGERED
    from replay.test_check_feeds import CASES
    from replay.test_check_feeds_field import TRIGGERED
    from replay.test_harness import BROKEN
    from numerics.test_quantized_replay import TRIGGERED as NUMERICS_TRIGGERED
    from fidelity.test_compare import TRIGGERED as COMPARE_TRIGGERED
    from fidelity.test_verify import TRIGGERED as VERIFY_TRIGGERED

    triggering = (
        [
            name
            for name, (problems, info) in EXPECTED.items()
            if rule.code in info or any(code == rule.code for code, *_ in problems)
        ]
        + [name for name, (_options, found) in BROKEN.items() if any(code == rule.code for code, *_ in found)]
        + [f"{model.name}: {mistake}" for (model, mistake), found in CASES.items() if any(c == rule.code for c, *_ in found)]
        + [test for code, test in TRIGGERED.items() if code == rule.code]
        + [test for code, test in NUMERICS_TRIGGERED.items() if code == rule.code]
        + [test for code, test in FOLDER_TRIGGERED.items() if code == rule.code]
        + [test for code, test in {**VERIFY_TRIGGERED, **COMPARE_TRIGGERED}.items() if code == rule.code]
    )
    assert triggering, f"no fixture triggers {rule.code}"


def test_codes_are_unique_and_well_formed() -> None:
    codes = [r.code for r in all_rules()]
    assert len(codes) == len(set(codes))
    families = {"ODS": "0", "ODA": "1", "ODR": "2", "ODP": "3", "ODX": "4", "ODF": "5", "ODV": "7"}
    for code in codes:
        assert code[:3] in families and code[3] == families[code[:3]] and len(code) == 6


@pytest.mark.parametrize("name,op", [("contrib-gqa.onnx", "GroupQueryAttention"), ("contrib-mha.onnx", "MultiHeadAttention")])
def test_contrib_attention_ops_are_understood(name: str, op: str) -> None:
    """The present comes out of the attention op itself: recognized as such, not flagged as detached."""
    from onnxdoctor.context import Context
    from onnxdoctor.model.load import load
    from onnxdoctor.model.signature import build_signature

    bundle = load(FIXTURES / "synthetic" / name)
    signature = build_signature(bundle.files[0])
    assert signature.contrib_attention_ops == [op]
    sources = Context(bundle, bundle.files[0], signature).present_sources
    assert sources and {s.kind for s in sources.values()} == {"contrib"}
