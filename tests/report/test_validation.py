"""The report writer as another command (the export pipeline) uses it: its own sections and data, one folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from onnxdoctor.errors import UsageError
from onnxdoctor.report.validation import Chart, Section, check_out_dir, write_report


def test_a_pipeline_writes_its_own_sections(tmp_path: Path) -> None:
    chart = Chart("stages", "Seconds per stage", "stage", "s", {"run": ([], [1.5, 0.25])}, kind="bar", categories=["export", "quantize"])
    sections = [
        Section("stages", "Stages", "| stage | s |\n|---|---|\n| export | 1.5 |", data={"export": 1.5, "quantize": 0.25}, charts=[chart]),
        Section("verdict", "Verdict", "All stages passed.", data={"ok": True}),
    ]
    paths = write_report(tmp_path / "out", "Export of qwen", sections, summary="One export, verified.", data={"command": "export"})
    assert paths.folder == tmp_path / "out" and paths.markdown.name == "report.md" and paths.json.name == "report.json"
    markdown = paths.markdown.read_text()
    assert markdown.startswith("# Export of qwen\n\nOne export, verified.")
    assert markdown.index("## Stages") < markdown.index("![Seconds per stage](stages.png)") < markdown.index("## Verdict")
    data = json.loads(paths.json.read_text())
    assert data["schema"] == 1 and data["command"] == "export" and data["summary"] == "One export, verified."
    assert data["sections"] == {"stages": {"export": 1.5, "quantize": 0.25}, "verdict": {"ok": True}}
    assert data["charts"][0]["series"] == {"run": {"x": [], "y": [1.5, 0.25]}} and data["charts"][0]["categories"] == ["export", "quantize"]
    if paths.charts_missing is None:  # with the report extra
        assert paths.charts == [tmp_path / "out" / "stages.png"] and paths.charts[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_out_folder_rules(tmp_path: Path) -> None:
    export = tmp_path / "export"
    export.mkdir()
    (export / "model.onnx").write_bytes(b"x")
    with pytest.raises(UsageError, match="inside the export"):
        check_out_dir(export / "report", protect=[export])
    with pytest.raises(UsageError, match="inside the export"):
        check_out_dir(export / "sub" / "report", protect=[export / "model.onnx"])  # a file protects its folder
    with pytest.raises(UsageError, match="new or empty folder"):
        check_out_dir(export / "model.onnx")
    (tmp_path / "empty").mkdir()
    assert check_out_dir(tmp_path / "empty", protect=[export]) == tmp_path / "empty"
    with pytest.raises(ValueError, match="unique"):
        write_report(tmp_path / "twice", "t", [Section("a", "A", ""), Section("a", "A again", "")])
