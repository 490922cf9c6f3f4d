"""Every command speaks table, json, github annotations and markdown, with the same findings."""

from __future__ import annotations

import pytest

from support import FIXTURES, run_cli

BROKEN = FIXTURES / "synthetic" / "defect-present_is_new.onnx"


@pytest.mark.parametrize("command", [["inspect"], ["replay", "--steps", "2"]])
def test_markdown_is_a_pr_comment(command: list[str]) -> None:
    result = run_cli(*command, BROKEN, "--format", "markdown")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith("### onnxdoctor: ")
    assert "| | code | where | what | fix |" in lines
    rows = [line for line in lines if line.startswith("| :")]
    assert rows and all(line.count(" | ") >= 4 for line in rows)


@pytest.mark.parametrize("command", [["inspect"], ["replay", "--steps", "2"]])
def test_github_annotations_one_per_finding(command: list[str]) -> None:
    result = run_cli(*command, BROKEN, "--format", "github")
    data = run_cli(*command, BROKEN, "--format", "json").json()
    annotations = [line for line in result.stdout.splitlines() if line.startswith("::")]
    assert len(annotations) == len(data["findings"])
    assert all(line.startswith(("::error ", "::warning ", "::notice ")) for line in annotations)
    assert "title=ODP301 present-not-concatenated" in result.stdout or "title=ODX403 present-length-wrong" in result.stdout


def test_healthy_markdown_has_no_table() -> None:
    result = run_cli("inspect", FIXTURES / "optimum-gpt2", "--format", "markdown", "--select", "ODA")
    assert result.returncode == 0
    assert "0 errors, 0 warnings, 0 info" in result.stdout and "| | code |" not in result.stdout
