"""The human report of `replay`: one table per scenario, then findings and a plain verdict."""

from __future__ import annotations

import textwrap

from tabulate import tabulate

from onnxdoctor.replay.harness import ReplayReport, StepRecord
from onnxdoctor.report.table import closing_blocks


def _shapes(shapes: dict[str, list[int]], limit: int = 3) -> str:
    items = list(shapes.items())
    text = ", ".join(f"{name}{shape}" for name, shape in items[:limit])
    return text + (f" +{len(items) - limit}" if len(items) > limit else "")


def _row(step: StepRecord) -> list[object]:
    present = "-" if step.present_expected is None else f"{step.present_seen}/{step.present_expected}"
    diff = "-" if step.max_diff_uncached is None else f"{step.max_diff_uncached:.1e}"
    return [step.step, step.file, step.new_tokens, step.past_len, present, diff, f"{step.seconds * 1000:.1f}", step.verdict]


def render_replay(report: ReplayReport) -> str:
    blocks = []
    for result in report.results:
        rows = [_row(step) for step in result.steps]
        table = tabulate(
            rows,
            headers=["step", "file", "new", "past", "present len seen/expected", "|cached-uncached|", "ms", "verdict"],
            tablefmt="simple",
        )
        lines = [f"== replay: {result.scenario.describe()}", table if rows else "   no step run"]
        if result.steps:
            first = result.steps[0]
            lines.append("   step 0 feeds: " + textwrap.shorten(_shapes(first.feeds, 6), 140))
        lines.extend(f"   note: {note}" for note in result.notes)
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks + closing_blocks(report.findings, report.counts(), report.verdict()))
