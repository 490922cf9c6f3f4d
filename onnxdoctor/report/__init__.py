"""Rendering of reports: table for people, json (versioned) for machines, github annotations for CI."""

from __future__ import annotations

import json
from typing import Any

from onnxdoctor.findings import Finding, Severity

FORMATS = ("table", "json", "github", "markdown")


def to_json(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=False, default=str)


def _escape_github(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_github_property(text: str) -> str:
    return _escape_github(text).replace(":", "%3A").replace(",", "%2C")


def render_github(findings: list[Finding]) -> str:
    """GitHub workflow commands: one annotation per finding (info becomes notice)."""
    level = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "notice"}
    lines = []
    for finding in findings:
        props = []
        if finding.location.file:
            props.append(f"file={_escape_github_property(finding.location.file)}")
        props.append(f"title={_escape_github_property(finding.code + ' ' + finding.name)}")
        message = f"{finding.location.describe()}: {finding.message}"
        if finding.fix:
            message += f"\nfix: {finding.fix}"
        lines.append(f"::{level[finding.severity]} {','.join(props)}::{_escape_github(message)}")
    return "\n".join(lines)


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(title: str, findings: list[Finding], verdict: str = "") -> str:
    """A pull-request comment: counts, a findings table, the verdict."""
    counts = {s: sum(1 for f in findings if f.severity is s) for s in Severity}
    icon = {Severity.ERROR: ":x:", Severity.WARNING: ":warning:", Severity.INFO: ":information_source:"}
    lines = [
        f"### onnxdoctor: {title}",
        "",
        f"{counts[Severity.ERROR]} errors, {counts[Severity.WARNING]} warnings, {counts[Severity.INFO]} info",
    ]
    if findings:
        lines += ["", "| | code | where | what | fix |", "|---|---|---|---|---|"]
        for finding in findings:
            where = (f"`{finding.location.file}` " if finding.location.file else "") + finding.location.describe()
            fix = finding.fix if finding.severity is not Severity.INFO else ""
            lines.append(
                f"| {icon[finding.severity]} | `{finding.code}` {finding.name} | {_md(where)} | {_md(finding.message)} | {_md(fix)} |"
            )
    if verdict:
        lines += ["", f"**Verdict:** {_md(verdict)}"]
    return "\n".join(lines)
