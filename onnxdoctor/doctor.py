"""The library API other repos use: inspect + replay a path, one Report, one assertion.

    from onnxdoctor.doctor import diagnose
    diagnose("exports/marian", steps=4).assert_healthy()

onnxruntime is imported only when replay runs (inside the harness).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from typing import Any

from onnxdoctor.engine import InspectReport, filter_findings, inspect_path
from onnxdoctor.errors import UsageError
from onnxdoctor.findings import Finding, Severity, sort_findings


@dataclass
class Report:
    """Findings of inspect (and replay) for one path, with the helpers tests want."""

    path: str
    findings: list[Finding]
    verdict: str = ""
    inspect: InspectReport | None = field(default=None, repr=False)
    replay: Any = field(default=None, repr=False)  # replay.harness.ReplayReport, when replay ran

    def by_code(self, *codes: str) -> list[Finding]:
        """Findings whose code starts with one of `codes` (`by_code("ODX4")` for all replay findings)."""
        return filter_findings(self.findings, select=codes) if codes else []

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.ERROR]

    def problems(self, allow: tuple[str, ...] | list[str] = ()) -> list[Finding]:
        """Errors and warnings, minus the allowed codes (prefixes)."""
        return filter_findings([f for f in self.findings if f.severity is not Severity.INFO], ignore=tuple(allow))

    def assert_healthy(self, allow: tuple[str, ...] | list[str] = ()) -> None:
        """Fail with the findings table (step and node included) when any error or warning remains."""
        problems = self.problems(allow)
        if problems:
            raise AssertionError(f"onnxdoctor found {len(problems)} problem(s) in {self.path}\n{self.render(problems)}")

    def render(self, findings: list[Finding] | None = None) -> str:
        from onnxdoctor.report.table import render_findings

        text = render_findings(self.findings if findings is None else findings)
        return text + (f"\n\nVerdict: {self.verdict}" if self.verdict else "")

    def __str__(self) -> str:
        return self.render()


def decoder_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Every decoder model file of an export folder (for parametrizing tests over them)."""
    return [r.model_file.path for r in inspect_path(folder).files if r.signature.kind == "decoder"]


def _keep_for(report: InspectReport, file: str) -> list[Any]:
    """The chosen decoder plus what it needs to run: the encoder, and the step-0 decoder of a with-past file."""
    chosen = [r for r in report.files if r.model_file.path.name == file]
    if not chosen:
        names = ", ".join(r.model_file.path.name for r in report.files)
        raise UsageError(f"no model file {file!r} in {report.path} (found: {names})")
    kv = chosen[0].signature.kv
    needs_step0 = kv is not None and kv.mode == "with_past" and any(p.attention == "cross" and p.past for p in kv.pairs)
    return [
        r for r in report.files
        if r is chosen[0]
        or r.signature.kind == "encoder"
        or (needs_step0 and r.signature.kv is not None and r.signature.kv.mode == "no_past")
    ]


def diagnose(
    path: str | os.PathLike[str],
    *,
    steps: int = 4,
    replay: bool = True,
    batch: int = 2,
    prompt_len: int = 4,
    chunk: int | None = None,
    seed: int = 0,
    provider: str = "cpu",
    file: str | None = None,
) -> Report:
    """Inspect `path` (a .onnx file or export folder) and, unless replay=False, replay it.

    `file` keeps one decoder of a folder (the encoder stays, so seq2seq replays still run it).
    """
    report = inspect_path(path)
    if file is not None:
        keep = _keep_for(report, file)
        report.files = keep
        report.findings = [f for f in report.findings if f.location.file in {r.signature.file for r in keep}]
    findings = list(report.findings)
    verdict = ""
    replayed = None
    if replay and any(r.signature.kind == "decoder" for r in report.files):
        from onnxdoctor.replay.harness import Replayer, ReplayOptions

        options = ReplayOptions(steps=steps, batch=batch, prompt_len=prompt_len, chunk=chunk, seed=seed, provider=provider)
        replayed = Replayer(report, options).run()
        findings += [f for f in replayed.findings if f not in findings]  # replay repeats a static ODS014 it refused on
        verdict = replayed.verdict()
    ordered = sorted(  # within a code, replay's export-time-shapes finding (the step the user hit) first
        sort_findings(findings),
        key=lambda f: (f.severity.rank, f.location.file or "", f.code, f.evidence.get("protocol") != "export-time shapes"),
    )
    return Report(str(path), ordered, verdict, report, replayed)


__all__ = ["Report", "decoder_files", "diagnose"]
