"""A validation report folder: `report.md` for people, `report.json` for machines, PNG charts for both.

The writer knows nothing about how the numbers were made: a command (`onnxdoctor report`, the export
pipeline) hands it sections, and it writes one folder a person can read and a CI job can attach.

    from onnxdoctor.report.validation import Chart, Section, write_report

    paths = write_report(
        "out/report",
        "Validation of exports/qwen",
        [Section("bench", "Speed", markdown_text, data=bench.to_dict(),
                 charts=[Chart("latency", "Latency per decode step", "step", "ms", {"fp32": ([1, 2], [0.3, 0.31])})])],
        summary="All three exports agree with the source.",
        protect=["exports/qwen"],
    )
    paths.markdown, paths.json, paths.charts, paths.charts_missing

Charts need matplotlib (`pip install 'onnxdoctor[report]'`); without it the report is written without
them and says so (in the markdown, in the JSON's `charts_missing`, and in `ReportPaths.charts_missing`).
matplotlib is imported here only, inside the drawing function, through its object-oriented API (no
pyplot, no global backend change in the caller's process).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onnxdoctor import __version__
from onnxdoctor.errors import UsageError

CHARTS_EXTRA = "pip install 'onnxdoctor[report]'"


@dataclass
class Chart:
    """One PNG: a line chart (series label -> (x values, y values)) or a grouped bar chart.

    For `kind="bar"`, `categories` names the bars and each series holds one value per category (its x
    values are ignored); each series is drawn in its own panel, on its own scale. `log_y` for drifts spanning several orders of magnitude.
    """

    name: str  # file stem: <name>.png
    title: str
    xlabel: str
    ylabel: str
    series: dict[str, tuple[list[float], list[float]]]
    kind: str = "line"  # line | bar
    categories: list[str] = field(default_factory=list)
    log_y: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "file": f"{self.name}.png", "title": self.title, "kind": self.kind,
            "xlabel": self.xlabel, "ylabel": self.ylabel, "categories": self.categories,
            "series": {label: {"x": list(x), "y": list(y)} for label, (x, y) in self.series.items()},
        }


@dataclass
class Section:
    """One part of the report: a heading, its markdown, its data (under `key` in report.json), its charts."""

    key: str
    title: str
    markdown: str
    data: Any = None
    charts: list[Chart] = field(default_factory=list)


@dataclass
class ReportPaths:
    """What `write_report` wrote."""

    folder: Path
    markdown: Path
    json: Path
    charts: list[Path]
    charts_missing: str | None  # why no charts were drawn (matplotlib absent), or None


def check_out_dir(out_dir: str | os.PathLike[str], protect: Sequence[str | os.PathLike[str]] = ()) -> Path:
    """`out_dir` must be new or empty, and neither inside nor equal to a protected folder (an export's).

    A file in `protect` protects its folder. Raises UsageError (one line, exit 2) otherwise.
    """
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"--out {out}: give a new or empty folder (it {'is a file' if not out.is_dir() else 'is not empty'})")
    resolved = out.resolve()
    for item in protect:
        folder = Path(item).resolve()
        folder = folder if folder.is_dir() or not folder.suffix else folder.parent
        if resolved == folder or resolved.is_relative_to(folder):
            raise UsageError(f"--out {out} is inside the export {item}: write the report outside it (exports are never written)")
    return out


def _draw(chart: Chart, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = max(len(chart.series), 1) if chart.kind == "bar" else 1
    figure = Figure(figsize=(max(7, 3.2 * panels), 4), dpi=100)
    FigureCanvasAgg(figure)
    figure.suptitle(chart.title)
    if chart.kind == "bar":  # one panel per series: each keeps its own scale (memory in MiB, size in KiB)
        for index, (label, (_x, y)) in enumerate(chart.series.items()):
            axes = figure.add_subplot(1, panels, index + 1)
            axes.bar(range(len(chart.categories)), y, color=f"C{index}")
            axes.set_xticks(range(len(chart.categories)), chart.categories, rotation=20, ha="right", fontsize="small")
            axes.set_title(label, fontsize="medium")
            axes.set_ylabel(chart.ylabel)
            axes.grid(True, axis="y", alpha=0.3)
    else:
        axes = figure.add_subplot()
        for label, (x, y) in chart.series.items():
            axes.plot(x, y, marker="o", markersize=3, label=label)
        if chart.log_y:
            axes.set_yscale("log")
        axes.set_xlabel(chart.xlabel)
        axes.set_ylabel(chart.ylabel)
        axes.grid(True, alpha=0.3)
        if chart.series:
            axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, format="png")


def _charts_unavailable() -> str | None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return f"charts not drawn: matplotlib is not installed ({CHARTS_EXTRA} adds them)"
    return None


def write_report(
    out_dir: str | os.PathLike[str],
    title: str,
    sections: Sequence[Section],
    *,
    summary: str = "",
    data: dict[str, Any] | None = None,
    protect: Sequence[str | os.PathLike[str]] = (),
) -> ReportPaths:
    """Write `report.md`, `report.json` and one PNG per chart into `out_dir` (created; must be new or empty).

    `summary` opens the markdown; `data` adds top-level keys to the JSON (next to `schema`, `tool`,
    `title`, `summary`, `sections` (key -> the section's data), `charts` and `charts_missing`).
    `protect`: folders (exports) the report must not be written into. Returns the paths written.
    """
    out = check_out_dir(out_dir, protect)
    keys = [s.key for s in sections]
    if len(set(keys)) != len(keys):
        raise ValueError(f"section keys must be unique: {keys}")
    out.mkdir(parents=True, exist_ok=True)
    missing = _charts_unavailable()
    drawn: list[Path] = []
    lines = [f"# {title}", ""]
    if summary:
        lines += [summary, ""]
    if missing and any(s.charts for s in sections):
        lines += [f"> Note: {missing}.", ""]
    for section in sections:
        lines += [f"## {section.title}", "", section.markdown.rstrip(), ""]
        for chart in section.charts:
            if missing:
                continue
            path = out / f"{chart.name}.png"
            _draw(chart, path)
            drawn.append(path)
            lines += [f"![{chart.title}]({path.name})", ""]
    markdown = out / "report.md"
    markdown.write_text("\n".join(lines))
    document = {
        "schema": 1,
        "tool": {"name": "onnxdoctor", "version": __version__},
        "title": title,
        "summary": summary,
        **(data or {}),
        "sections": {s.key: s.data for s in sections},
        "charts": [c.to_dict() for s in sections for c in s.charts],
        "charts_missing": missing,
    }
    json_path = out / "report.json"
    json_path.write_text(json.dumps(document, indent=2, default=str))
    return ReportPaths(out, markdown, json_path, drawn, missing)


__all__ = ["CHARTS_EXTRA", "Chart", "ReportPaths", "Section", "check_out_dir", "write_report"]
