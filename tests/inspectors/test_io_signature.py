"""ODS checks on the committed synthetic fixtures: each planted signature defect gives its code, where."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from support import FIXTURES, run_cli
from onnxdoctor.engine import inspect_path
from onnxdoctor.findings import Severity
from onnxdoctor.testing.synth import rename_tensors

SYNTHETIC = FIXTURES / "synthetic"

EXPECTED_PROBLEMS = {
    "defect-drop_present.onnx": [("ODS002", "input", "past_key_values.0.value", None)],
    "defect-present_dtype_mismatch.onnx": [("ODS003", "output", "present.0.key", None)],
    "defect-present_heads_mismatch.onnx": [("ODS004", "output", "present.0.key", 1)],
    "defect-concat_wrong_axis.onnx": [
        ("ODS004", "output", "present.0.key", 3),
        ("ODS004", "output", "present.0.value", 3),
    ],
}
HEALTHY = ["stacked-legacy.onnx", "self-cross-whisper.onnx", "plain-kv.onnx", "optimum-gqa.onnx", "optimum-seq2seq-merged.onnx"]


@pytest.mark.parametrize("name", sorted(EXPECTED_PROBLEMS))
def test_signature_defects(name: str) -> None:
    report = inspect_path(SYNTHETIC / name, select=("ODS",))
    problems = [
        (f.code, f.location.kind, f.location.name, f.location.axis)
        for f in report.findings
        if f.severity is not Severity.INFO
    ]
    assert problems == EXPECTED_PROBLEMS[name]
    for finding in report.findings:
        if finding.severity is Severity.ERROR:
            assert finding.evidence and finding.fix and finding.location.file


@pytest.mark.parametrize("name", HEALTHY)
def test_healthy_synthetic_layouts_have_no_problem(name: str) -> None:
    report = inspect_path(SYNTHETIC / name)
    assert [f.code for f in report.findings if f.severity is not Severity.INFO] == []


def test_merged_decoder_info_and_position_ids_info() -> None:
    codes = [f.code for f in inspect_path(SYNTHETIC / "optimum-seq2seq-merged.onnx").findings]
    assert codes == ["ODP304", "ODS010", "ODS011"]


def test_fp16_io_is_reported_as_info() -> None:
    report = inspect_path(FIXTURES / "optimum-llama-fp16")
    (finding,) = [f for f in report.findings if f.code == "ODS013"]
    assert finding.severity is Severity.INFO and "float16" in finding.message


def test_error_exit_code_and_json_shape_through_cli() -> None:
    result = run_cli("inspect", SYNTHETIC / "defect-drop_present.onnx", "--format", "json")
    assert result.returncode == 1
    data = result.json()
    assert data["schema"] == 1 and data["summary"]["error"] == 1
    finding = next(f for f in data["findings"] if f["code"] == "ODS002")
    assert set(finding) == {"code", "name", "severity", "message", "location", "evidence", "fix", "remedy"}
    assert set(finding["location"]) == {"file", "kind", "name", "axis", "step"}
    kv = data["files"][0]["kv_layout"]
    assert {"layers", "kv_heads", "head_dim", "cache_axis", "merged", "cross_attention", "stacked"} <= set(kv)
    assert data["files"][0]["step0"]["inputs"] and data["files"][0]["stepn"]["inputs"]


def test_github_format_and_select_ignore() -> None:
    path = SYNTHETIC / "defect-drop_present.onnx"
    github = run_cli("inspect", path, "--format", "github")
    assert github.returncode == 1 and github.stdout.startswith("::error ") and "ODS002" in github.stdout
    ignored = run_cli("inspect", path, "--ignore", "ODS002", "--format", "json")
    assert ignored.returncode == 0 and all(f["code"] != "ODS002" for f in ignored.json()["findings"])
    selected = run_cli("inspect", path, "--select", "ODS01", "--format", "json")
    assert {f["code"] for f in selected.json()["findings"]} <= {"ODS010", "ODS011", "ODS013"}


def test_rules_and_explain() -> None:
    rules = run_cli("rules")
    assert rules.returncode == 0 and "ODS002" in rules.stdout and "unpaired-cache-tensor" in rules.stdout
    explain = run_cli("explain", "ods002")
    assert explain.returncode == 0
    for heading in ("What it detects", "Why it breaks decoding", "Example", "Fix", "Fix safety"):
        assert f"## {heading}" in explain.stdout
    unknown = run_cli("explain", "ODX999")
    assert unknown.returncode == 2 and "unknown rule code" in unknown.stderr


def test_role_map_names_unknown_cache_tensors(tmp_path: Path) -> None:
    model = onnx.load(SYNTHETIC / "plain-kv.onnx")
    renames = {}
    for value in list(model.graph.input) + list(model.graph.output):
        if value.name.startswith(("past_", "present_")):
            direction, part, layer = value.name.split("_")
            renames[value.name] = f"{'kin' if direction == 'past' else 'kout'}{part[0]}{layer}"
    rename_tensors(model, renames)
    path = tmp_path / "renamed.onnx"
    onnx.save(model, path)
    unknown = inspect_path(path)
    assert unknown.files[0].signature.kv is None and [f.code for f in unknown.findings] == ["ODS005"]
    mapping = "kink{i}=past.{i}.key,kinv{i}=past.{i}.value,koutk{i}=present.{i}.key,koutv{i}=present.{i}.value"
    result = run_cli("inspect", path, "--map", mapping, "--format", "json")
    assert result.returncode == 0, result.stderr
    kv = result.json()["files"][0]["kv_layout"]
    assert (kv["layers"], kv["kv_heads"], kv["head_dim"]) == (2, 4, 4)
