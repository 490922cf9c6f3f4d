"""compare: two exports of one model, step by step on the same tokens."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from support import FIXTURES, run_cli
from onnxdoctor.fidelity.verify import FidelityOptions, compare
from onnxdoctor.findings import Severity

FAST = FidelityOptions(steps=4)
TRIGGERED = {"ODV705": "test_an_edited_export_disagrees_from_the_first_step"}


def test_an_export_agrees_with_itself_exactly() -> None:
    report = compare(FIXTURES / "optimum-qwen3", FIXTURES / "optimum-qwen3", options=FAST)
    assert report.findings == [] and report.exit_code == 0
    (result,) = report.results
    assert all(r.drift == "exact" for r in result.rows)
    assert result.continuation["A"] == result.continuation["B"]


def test_fp32_against_its_quantized_twins_stays_in_the_looser_envelope(tmp_path: Path) -> None:
    from onnxdoctor.testing.quantized import quantized_twins

    for variant, folder in quantized_twins(FIXTURES / "optimum-qwen3", tmp_path, ["int8-dynamic", "int4-block16", "fp16"]).items():
        report = compare(FIXTURES / "optimum-qwen3", folder, options=FAST)
        assert [f.code for f in report.findings] == ["ODV704"], (variant, [f.message for f in report.findings])
        assert report.results[0].envelope.name != "fp32"
        assert len(report.results[0].continuation["B"]) == 2


def _edited_lm_head(tmp_path: Path, name: str, edit) -> Path:  # type: ignore[no-untyped-def]
    """The qwen3 fixture with its output projection edited after export (a pass that changed the math)."""
    model = onnx.load(FIXTURES / "optimum-qwen3" / "model.onnx")
    lm_head = next(n for n in model.graph.node if n.output[0] == "logits")
    weight = next(t for t in model.graph.initializer if t.name in lm_head.input)
    weight.CopyFrom(numpy_helper.from_array(edit(numpy_helper.to_array(weight)), weight.name))
    edited = tmp_path / name
    edited.mkdir()
    onnx.save(model, edited / "model.onnx")
    (edited / "config.json").write_bytes((FIXTURES / "optimum-qwen3" / "config.json").read_bytes())
    return edited


def test_an_edited_export_disagrees_from_the_first_step(tmp_path: Path) -> None:
    edited = _edited_lm_head(tmp_path, "rolled", lambda w: np.roll(w, 1, axis=1))  # every token's logit moves to the next id
    report = compare(FIXTURES / "optimum-qwen3", edited, options=FAST)
    errors = [f for f in report.findings if f.severity is Severity.ERROR]
    assert [f.code for f in errors] == ["ODV705"] and errors[0].location.step == 0
    assert errors[0].evidence["greedy_divergence"] == 0
    result = run_cli("compare", FIXTURES / "optimum-qwen3", edited, "--steps", "2", "--format", "json")
    assert result.returncode == 1 and result.json()["findings"][0]["code"] == "ODV705"


def test_a_departure_that_changes_no_token_is_a_warning(tmp_path: Path) -> None:
    """Logits scaled x3 (a temperature baked in): far outside the envelope, every greedy choice the same."""
    edited = _edited_lm_head(tmp_path, "scaled", lambda w: w * np.float32(3.0))
    report = compare(FIXTURES / "optimum-qwen3", edited, options=FAST)
    (finding,) = report.findings
    assert finding.code == "ODV705" and finding.severity is Severity.WARNING
    assert "the chosen tokens still agree" in finding.message and report.exit_code == 0


def test_exports_of_different_layouts_are_refused_with_one_line() -> None:
    result = run_cli("compare", FIXTURES / "optimum-qwen3", FIXTURES / "optimum-marian-merged", "--steps", "1")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "compare exports of one layout" in result.stderr
