"""The human report of `verify` and `compare`: one table per decoding scenario, findings, a plain verdict."""

from __future__ import annotations

import textwrap

from tabulate import tabulate

from onnxdoctor.fidelity.trace import StepDrift
from onnxdoctor.fidelity.verify import FidelityReport
from onnxdoctor.report.table import closing_blocks


def _row(row: StepDrift) -> list[object]:
    logits = row.logits
    worst = max(row.presents.items(), key=lambda item: item[1]) if row.presents else None
    return [
        row.step,
        row.tokens,
        "-" if logits is None else f"{logits.max_abs:.2e}",
        "-" if logits is None else f"{logits.scaled:.3g}",
        "-" if logits is None else f"{logits.top1:.0%}",
        "-" if logits is None else f"{logits.top5:.0%}",
        {True: "yes", False: "no", None: "-"}[row.greedy_agrees],
        "-" if worst is None else f"{worst[0]} {worst[1]:.3g}",
        row.drift,
    ]


def render_fidelity(report: FidelityReport) -> str:
    blocks = []
    for result in report.results:
        header = (
            f"== {report.command}: {result.scenario.describe()} against {report.reference}\n"
            f"   envelope: {result.envelope.describe()}"
            + (f"; encoder output {result.encoder_drift:.3g} x its spread" if result.encoder_drift is not None else "")
        )
        table = tabulate(
            [_row(r) for r in result.rows],
            headers=["step", "tokens", "max |diff|", "x spread", "top-1", "top-5", "greedy", "worst present (x spread)", "verdict"],
            tablefmt="simple",
        )
        lines = [header, table]
        for side, rows in result.continuation.items():
            lines.append(f"   greedy continuation of {side}: " + textwrap.shorten(str(rows), 120))
        lines.append(
            f"   inference time: {result.reference.name} {result.reference.seconds * 1000:.0f} ms, "
            f"{result.observed.name} {result.observed.seconds * 1000:.0f} ms"
        )
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks + closing_blocks(report.findings, report.counts(), report.verdict()))
