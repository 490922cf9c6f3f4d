"""Replay inside the export-time shapes first: a static export reproduces its user's "step 0 works, step 1 fails".

The torch exports here are made the way users make them: `torch.onnx.export` without dynamic_axes,
traced at one batch, prompt and past length (the TinyKVDecoder of the committed fixtures).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from support import FIXTURES, REPO, run_cli
from onnxdoctor.engine import inspect_path
from onnxdoctor.findings import Severity
from onnxdoctor.replay.harness import EXPORT_SHAPES, Replayer, ReplayOptions

sys.path.insert(0, str(REPO / "scripts"))

TRACE_BATCH, TRACE_PROMPT = 1, 5


@pytest.fixture(scope="module")
def empty_past_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Traced with batch 1, a 5-token prompt and an empty past, no dynamic_axes: the past length is frozen at 0."""
    import make_broken_fixtures as mbf
    import torch

    d = mbf.mf.TinyKVDecoder.DIMS
    example = (
        torch.randint(0, mbf.mf.VOCAB, (TRACE_BATCH, TRACE_PROMPT)),
        torch.ones(TRACE_BATCH, TRACE_PROMPT, dtype=torch.int64),
        *(torch.zeros(TRACE_BATCH, d["heads"], 0, d["head_dim"]) for _ in range(2 * d["layers"])),
    )
    inputs = ["input_ids", "attention_mask", *(f"past_{k}_{i}" for i in range(d["layers"]) for k in ("key", "value"))]
    outputs = ["logits", *(f"present_{k}_{i}" for i in range(d["layers"]) for k in ("key", "value"))]
    path = tmp_path_factory.mktemp("static-empty-past") / "model.onnx"
    torch.onnx.export(mbf._seeded_decoder(), example, str(path), dynamo=False, input_names=inputs, output_names=outputs, opset_version=17)
    return path


def _replay(path: Path, **options: int):  # type: ignore[no-untyped-def]
    return Replayer(inspect_path(path), ReplayOptions(**options)).run()  # type: ignore[arg-type]


def test_empty_past_export_passes_step_0_inside_its_shapes_and_fails_step_1(empty_past_export: Path) -> None:
    report = _replay(empty_past_export)
    inside, general = report.results
    assert inside.export_shapes is not None and general.export_shapes is None
    assert (inside.export_shapes.batch, inside.export_shapes.prompt_len, inside.export_shapes.past_len) == (TRACE_BATCH, TRACE_PROMPT, 0)
    assert [(s.step, s.new_tokens, s.past_len, s.verdict) for s in inside.steps] == [(0, 5, 0, "ok"), (1, 1, 5, "feeds rejected")]
    first = report.findings[0]
    assert (first.code, first.location.step, first.evidence["protocol"]) == ("ODX401", 1, EXPORT_SHAPES)
    frozen = {(m["input"], m["axis"], m["expected"]) for m in first.evidence["mismatches"]}
    assert ("past_key_0", 2, 0) in frozen and ("input_ids", 1, TRACE_PROMPT) in frozen
    verdict = report.verdict()
    assert "step 0 passes" in verdict and "step 1 fails" in verdict
    assert "past_key_0" in verdict and verdict.index("axis 2 is fixed to 0") < verdict.index("input_ids axis 1")  # the cache first
    assert "false green" in verdict and "broken at step 1" in verdict
    # the general protocol still runs and says what else fails (its 4-token prompt is refused at step 0)
    assert any(f.location.step == 0 and f.evidence.get("protocol") is None for f in report.findings)


def test_dummy_past_export_feeds_a_masked_past_of_the_traced_length() -> None:
    """fixtures/broken-torch-no-dynamic-axes was traced with a 5-token dummy past: step 0 needs exactly that."""
    report = _replay(FIXTURES / "broken-torch-no-dynamic-axes")
    inside = report.results[0]
    assert inside.export_shapes is not None and inside.export_shapes.describe() == "batch 1, 3 tokens, past 5"
    step0, step1 = inside.steps
    assert step0.verdict == "ok" and step0.feeds["past_key_0"] == [1, 2, 5, 8] and step0.feeds["attention_mask"] == [1, 8]
    assert step0.present_seen == step0.present_expected == 8
    assert step1.verdict == "feeds rejected"
    assert report.findings[0].location.step == 1 and "axis 2 is fixed to 5" in report.verdict()


def test_baked_reshape_export_replays_at_its_traced_batch_and_prompt() -> None:
    """No static input dim, but the Reshape targets hold batch 1 and 3 tokens (ODR201): step 1 fails in that node."""
    report = _replay(FIXTURES / "broken-torch-baked-view")
    inside = report.results[0]
    assert inside.export_shapes is not None and "Reshape" in inside.export_shapes.source
    assert (inside.export_shapes.batch, inside.export_shapes.prompt_len) == (1, 3)
    assert [s.verdict for s in inside.steps] == ["ok", "failed"]
    first = report.findings[0]
    assert (first.code, first.location.step, first.location.name) == ("ODX401", 1, "/layers.0/Reshape")
    assert first.evidence["input_shapes"]["/layers.0/qkv/Add_output_0"] == [1, 1, 48]
    assert "'/layers.0/Reshape'" in report.verdict() and "step 1 fails" in report.verdict()


def test_same_failure_under_both_protocols_is_reported_once() -> None:
    report = _replay(FIXTURES / "broken-torch-baked-view", batch=1, prompt_len=3)
    assert [(f.code, f.location.step) for f in report.findings if f.severity is Severity.ERROR] == [("ODX401", 1)]


def test_json_marks_the_export_shapes_pass(empty_past_export: Path) -> None:
    result = run_cli("replay", empty_past_export, "--steps", "2", "--format", "json")
    assert result.returncode == 1, result.stderr
    data = result.json()
    assert [s["protocol"] for s in data["scenarios"]] == ["export-time shapes", "general"]
    assert data["scenarios"][0]["export_shapes"]["past_len"] == 0
    assert data["findings"][0]["location"]["step"] == 1


def test_doctor_report_puts_the_users_step_first() -> None:
    from onnxdoctor.doctor import diagnose

    report = diagnose(FIXTURES / "broken-torch-no-dynamic-axes", steps=2)
    steps = [f.location.step for f in report.findings if f.code == "ODX401"]
    assert steps == [1, 0] and "step 0 passes" in report.verdict
