"""`onnxdoctor report`: inspect, replay, verify or compare, and bench of one or more exports, in one folder.

The numbers come from the commands themselves (engine.inspect_path, replay.harness.Replayer,
fidelity.verify.verify / compare, perf.bench.bench), run once each; this module only arranges
them into sections for the reusable writer (report.validation.write_report). Drift is against the
PyTorch source when one is given (verify), else against the first export (compare).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onnxdoctor.errors import UnusableInputError, UsageError
from onnxdoctor.findings import Finding, Severity
from onnxdoctor.perf.bench import BenchComparison, BenchOptions, BenchResult, bench, render_bench
from onnxdoctor.report.validation import Chart, ReportPaths, Section, check_out_dir, write_report

Progress = Callable[[str], None]


@dataclass
class ReportOptions:
    steps: int = 8  # decode steps of verify / compare after the prompt
    replay_steps: int = 4
    batch: int = 2  # verify / compare / replay batch (row 1 left-padded where the model allows)
    prompt_len: int = 4
    seed: int = 0
    bench: BenchOptions = field(default_factory=BenchOptions)


@dataclass
class ExportResults:
    """What each command found for one export."""

    path: str
    inspect: Any
    replay: Any | None
    fidelity: Any | None  # FidelityReport against the source or the first export; None for the first of a compare
    fidelity_error: str | None = None  # why verify / compare could not run (its decode fails: replay says why)


@dataclass
class ValidationReport:
    paths: ReportPaths
    exports: list[ExportResults]
    bench: BenchComparison | None  # None when no export could be decoded
    against: str  # "source" | "first export"
    not_benched: dict[str, str] = field(default_factory=dict)  # path -> why (its decode fails)

    @property
    def findings(self) -> list[Finding]:
        found: list[Finding] = []
        for export in self.exports:
            found += export.inspect.findings
            found += export.replay.findings if export.replay is not None else []
            found += export.fidelity.findings if export.fidelity is not None else []
        return found

    @property
    def exit_code(self) -> int:
        return 1 if any(f.severity is Severity.ERROR for f in self.findings) else 0


def _counts(findings: list[Finding]) -> str:
    counts = {s: sum(1 for f in findings if f.severity is s) for s in Severity}
    return f"{counts[Severity.ERROR]} errors, {counts[Severity.WARNING]} warnings, {counts[Severity.INFO]} info"


def _name(path: str, all_paths: list[str]) -> str:
    name = Path(path).name or path
    return name if [Path(p).name for p in all_paths].count(name) == 1 else path


def _replay_cell(replay: Any) -> str:
    """The replay verdict in a table cell: the first error (code, name, step), the full verdict below."""
    from onnxdoctor.findings import earliest_error

    first = earliest_error(replay.findings)
    if first is None:
        return "decodes correctly"
    step = f" at step {first.location.step}" if first.location.step is not None else ""
    return f"broken{step}: {first.code} {first.name}"


def _logits_drift(fidelity: Any) -> tuple[list[float], list[float]]:
    """(steps, scaled logits difference) of the first scenario: the per-step drift line of the chart."""
    rows = fidelity.results[0].rows if fidelity.results else []
    steps = [float(r.step) for r in rows if r.logits is not None]
    return steps, [float(r.logits.scaled) for r in rows if r.logits is not None]


def _worst_drift(fidelity: Any) -> float | None:
    values = [r.logits.scaled for result in fidelity.results for r in result.rows if r.logits is not None]
    return max(values) if values else None


def _fidelity_markdown(export: ExportResults, name: str) -> str:
    from onnxdoctor.report import render_markdown

    fidelity = export.fidelity
    lines = [f"**{name}** against {fidelity.reference}: {fidelity.verdict()}", ""]
    for result in fidelity.results:
        lines += [f"{result.scenario.describe()}; envelope: {result.envelope.describe()}", "",
                  "| step | tokens | logits max diff / spread | top-1 | top-5 | greedy agrees | drift |", "|---|---|---|---|---|---|---|"]
        for row in result.rows:
            c = row.logits
            lines.append(
                f"| {row.step} | {row.tokens} | {'-' if c is None else f'{c.scaled:.3g}'} | {'-' if c is None else f'{c.top1:.0%}'} | "
                f"{'-' if c is None else f'{c.top5:.0%}'} | {row.greedy_agrees} | {row.drift} |"
            )
        lines.append("")
    if fidelity.findings:
        lines.append(render_markdown(f"{fidelity.command} {name}", fidelity.findings))
    return "\n".join(lines)


def build_sections(
    exports: list[ExportResults], bench: BenchComparison | None, against: str, not_benched: dict[str, str] | None = None
) -> tuple[str, list[Section]]:
    """(summary, sections) of a validation report, for `write_report`; `not_benched`: path -> why it has no bench."""
    from onnxdoctor.report import render_markdown

    not_benched = not_benched or {}
    paths = [e.path for e in exports]
    names = [_name(p, paths) for p in paths]
    benched = bench.results if bench is not None else []
    by_path = {r.path: r for r in benched}
    ratios = dict(zip([r.path for r in benched], bench.ratios() if bench is not None else []))

    summary_rows = ["| export | inspect | replay | drift vs " + against + " (max logits diff / spread) | per-token latency | tokens/s | peak memory | size |",
                    "|---|---|---|---|---|---|---|---|"]
    for export, name in zip(exports, names):
        replay = "-" if export.replay is None else _replay_cell(export.replay)
        if export.fidelity_error is not None:
            drift = "not compared: its decode fails"
        elif export.fidelity is None:
            drift = "(reference)"
        else:
            worst = _worst_drift(export.fidelity)
            drift = ("agrees" if export.fidelity.exit_code == 0 else "departs") + ("" if worst is None else f", {worst:.3g}")
        result = by_path.get(export.path)
        if result is None:
            summary_rows.append(f"| {name} | {_counts(export.inspect.findings)} | {replay} | {drift} | not benched: its decode fails | - | - | - |")
            continue
        ratio = ratios[export.path]["per_token_median"]
        summary_rows.append(
            f"| {name} | {_counts(export.inspect.findings)} | {replay} | {drift} | {result.per_token_median_s * 1e3:.3g} ms"
            + ("" if ratio is None or result is benched[0] else f" ({ratio:.2f}x)")
            + f" | {result.tokens_per_s:.4g} | "
            + ("-" if result.peak_rss is None else f"{result.peak_rss / 2**20:.1f} MiB")
            + f" | {result.file_bytes / 2**20:.3g} MiB |"
        )
    summary = "\n".join(summary_rows)

    inspect_md = "\n\n".join(render_markdown(f"inspect {n}", e.inspect.findings) for e, n in zip(exports, names))
    replay_md = "\n\n".join(
        render_markdown(f"replay {n}", e.replay.findings, e.replay.verdict()) for e, n in zip(exports, names) if e.replay is not None
    ) or "No decoder to replay."
    with_fidelity = [(e, n) for e, n in zip(exports, names) if e.fidelity is not None]
    fidelity_md = "\n\n".join(
        [_fidelity_markdown(e, n) for e, n in with_fidelity]
        + [f"**{n}**: not compared: {e.fidelity_error}" for e, n in zip(exports, names) if e.fidelity_error is not None]
    ) or "Nothing to compare: give --source or a second export."
    drift_chart = Chart(
        "drift", f"Logits drift per decode step (against the {against})", "decode step", "max |diff| / logits spread",
        {n: _logits_drift(e.fidelity) for e, n in with_fidelity}, log_y=True,
    )
    bench_names = [_name(r.path, paths) for r in benched]
    latency_chart = Chart(
        "latency", "Per-token latency per decode step (median over runs)", "decode step after the prompt", "ms",
        {n: ([float(i + 1) for i in range(len(r.per_step_median_s))], [s * 1e3 for s in r.per_step_median_s]) for n, r in zip(bench_names, benched)},
    )
    memory_chart = Chart(
        "memory", "Memory and size", "export", "MiB",
        {
            "peak resident memory of the process": ([], [(r.peak_rss or 0) / 2**20 for r in benched]),
            "peak above the process before its sessions": ([], [(r.peak_rss_growth or 0) / 2**20 for r in benched]),
            "size on disk": ([], [r.file_bytes / 2**20 for r in benched]),
        },
        kind="bar", categories=bench_names,
    )
    # drop positive-only log scale for a drift of exactly 0 everywhere (identical exports)
    if not any(v > 0 for _x, ys in drift_chart.series.values() for v in ys):
        drift_chart.log_y = False
    sections = [
        Section("inspect", "Inspect (static checks)", inspect_md, {p: e.inspect.to_dict() for p, e in zip(paths, exports)}),
        Section("replay", "Replay (reference protocol, ONNX Runtime)", replay_md,
                {p: e.replay.to_dict() for p, e in zip(paths, exports) if e.replay is not None}),
        Section("fidelity", f"Fidelity against the {against}", fidelity_md,
                {
                    **{p: e.fidelity.to_dict() for p, e in zip(paths, exports) if e.fidelity is not None},
                    **{p: {"error": e.fidelity_error} for p, e in zip(paths, exports) if e.fidelity_error is not None},
                },
                charts=[drift_chart] if with_fidelity else []),
        Section(
            "bench", "Speed and memory",
            (render_bench(bench, tablefmt="github") if bench is not None else "No export could be decoded: nothing to time.")
            + "".join(f"\n\nNot benched: {_name(p, paths)}: {why}" for p, why in not_benched.items()),
            {**(bench.to_dict() if bench is not None else {}), "not_benched": not_benched},
            charts=[latency_chart, memory_chart] if bench is not None else [],
        ),
    ]
    return summary, sections


def validation_report(
    exports: list[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    source: str | os.PathLike[str] | None = None,
    options: ReportOptions | None = None,
    progress: Progress | None = None,
) -> ValidationReport:
    """Run inspect, replay, verify (with `source`) or compare (against the first export) and bench, write the folder."""
    from onnxdoctor.engine import inspect_path
    from onnxdoctor.fidelity.verify import FidelityOptions, compare, verify
    from onnxdoctor.replay.harness import Replayer, ReplayOptions

    options = options or ReportOptions()
    progress = progress or (lambda _m: None)
    if not exports:
        raise UsageError("give at least one export")
    paths = [str(p) for p in exports]
    check_out_dir(out_dir, protect=paths)  # before any work: a wrong --out is said at once
    fidelity_options = FidelityOptions(steps=options.steps, batch=options.batch, prompt_len=options.prompt_len, seed=options.seed)
    results: list[ExportResults] = []
    for index, path in enumerate(paths):
        progress(f"inspecting {path}")
        inspected = inspect_path(path)
        replayed = None
        if any(r.signature.kind == "decoder" for r in inspected.files):
            progress(f"replaying {path}")
            replayed = Replayer(inspected, ReplayOptions(steps=options.replay_steps, batch=options.batch, prompt_len=options.prompt_len, seed=options.seed)).run()
        fidelity, fidelity_error = None, None
        try:
            if source is not None:
                fidelity = verify(path, source, options=fidelity_options, progress=progress)
            elif index > 0:
                fidelity = compare(paths[0], path, options=fidelity_options, progress=progress)
        except UnusableInputError:
            raise  # a source that does not fit, an unloadable file: the user's input, one line
        except UsageError as exc:  # a decode that fails: the replay section says why; the report is still written
            fidelity_error = str(exc)
        results.append(ExportResults(path, inspected, replayed, fidelity, fidelity_error))
    timed: list[BenchResult] = []
    not_benched: dict[str, str] = {}
    for path in paths:
        try:
            timed.append(bench(path, options.bench, progress=progress))
        except UsageError as exc:  # its decode fails: replay above says why; the report is still written
            not_benched[path] = str(exc)
    comparison = BenchComparison(timed, options.bench) if timed else None
    against = "source" if source is not None else "first export"
    summary, sections = build_sections(results, comparison, against, not_benched)
    title = "onnxdoctor validation report: " + ", ".join(_name(p, paths) for p in paths)
    written = write_report(out_dir, title, sections, summary=summary, data={"command": "report", "exports": paths, "source": str(source) if source else None, "against": against}, protect=paths)
    return ValidationReport(written, results, comparison, against, not_benched)


__all__ = ["ExportResults", "ReportOptions", "ValidationReport", "build_sections", "validation_report"]
