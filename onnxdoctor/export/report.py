"""The export's report, through `onnxdoctor report`'s writer (report.validation.write_report) into DIR/report/.

The export's own sections (checkpoint and merge, attempts and failure classes, variants) come first;
then the sections `onnxdoctor report` writes for the same exports (perf.report.build_sections):
inspect, replay, fidelity against the source with its drift chart, speed and memory with the latency
and memory charts. report.json holds the ExportResult's keys at its top level, as before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from onnxdoctor.report.validation import ReportPaths, Section, write_report


def _mb(size: int) -> str:
    return f"{size / 2**20:.2f} MB"


def _cell(text: str) -> str:
    return text.replace("|", "/").replace("\n", " ")


def _checkpoint_markdown(data: dict[str, Any]) -> str:
    lines = []
    for key, title in (("checkpoint", "Checkpoint"), ("adapter", "Adapter")):
        checkpoint = data[key]
        if checkpoint:
            meta = ", ".join(f"{k} {v}" for k, v in checkpoint["metadata"].items() if v not in (None, [], False))
            lines.append(f"- {title}: `{checkpoint['path']}`" + (f" (step {checkpoint['step']})" if checkpoint["step"] is not None else "") + f"; {meta}")
            lines += [f"  - skipped `{s['folder']}`: {s['reason']}" for s in checkpoint["skipped"]]
    if data["merge"]:
        merge = data["merge"]
        worst = max(w["max_abs_error"] for w in merge["weights"])
        lines.append(f"- Merge: `{merge['merged']}`; {len(merge['weights'])} sampled weights equal W + scale * B @ A (max error {worst:.2g}); "
                     f"logits differ from the base by up to {merge['probe']['max_abs_logit_difference']:.3g}")
    if not lines:
        lines.append(f"- Source: `{data['source']}`")
    return "\n".join(lines)


def _attempts_markdown(data: dict[str, Any]) -> str:
    lines = ["| # | strategy | exporter call | result | findings after | s |", "|---|---|---|---|---|---|"]
    for a in data["attempts"]:
        reason = _cell(a["result"] + (f": {a['reason']}" if a["reason"] else ""))
        lines.append(f"| {a['index']} | {a['name']} | `{a['command']}` | {reason} | {', '.join(a['findings_after']) or '-'} | {a['seconds']} |")
    if not data["attempts"]:
        lines = ["No export attempt ran."]
    if data["failure_classes"]:
        lines += ["", "Failure classes: " + "; ".join(f"attempt {c['attempt']}: **{c['class']}** ({c['meaning']})" for c in data["failure_classes"])]
    return "\n".join(lines)


def _variants_markdown(data: dict[str, Any]) -> str:
    lines = ["| variant | status | size | reduction | drift vs source | drift vs fp32 | decode ms/token | tokens/s | peak memory |",
             "|---|---|---|---|---|---|---|---|---|"]
    for v in data["variants"]:
        drift = v["drift"] or {}
        source, fp32 = drift.get("vs_source") or {}, drift.get("vs_fp32") or {}
        speed = v["speed"] or {}
        reduction = "-" if v["reduction"] is None else f"{v['reduction']:.0%}"
        peak = speed.get("peak_rss_mb")
        lines.append(
            f"| {v['name']} | {v['status']} | {_mb(v['size_bytes']) if v['path'] else '-'} | {reduction} | "
            f"{source.get('max_scaled_logits', '-')} | {fp32.get('max_scaled_logits', '-')} | {speed.get('decode_ms_per_token', '-')} | "
            f"{speed.get('tokens_per_s', '-')} | {'-' if peak is None else f'{peak} MB'} |"
        )
    if not data["variants"]:
        lines = ["No variant: nothing was exported."]
    lines += [f"- {v['name']} {'skipped' if v['status'] == 'skipped' else 'not shipped'}: {v['reason']}" for v in data["variants"] if v["status"] != "verified"]
    lines += ["", "Stages: " + "; ".join(f"{s['stage']} {s['status']} ({s['seconds']} s)" for s in data["stages"])]
    if data["warnings"]:
        lines += ["", "Warnings:", ""] + [f"- {w}" for w in data["warnings"]]
    if data["notes"]:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in data["notes"]]
    lines += ["", "Settings: " + ", ".join(f"{k}={v} ({data['settings_from'].get(k, 'default')})" for k, v in data["settings"].items())]
    return "\n".join(lines)


def _summary(data: dict[str, Any]) -> str:
    if data["error"]:
        return f"**{data['error']['stage']} error:** {data['error']['message']}"
    shipped = [v["name"] for v in data["variants"] if v["status"] == "verified"]
    return f"Exported and verified against the source: {', '.join(shipped)}." if shipped else "Nothing shipped."


def _command_sections(result: Any) -> tuple[str, list[Section]]:
    """`onnxdoctor report`'s sections (inspect, replay, fidelity, bench) for the variants that have the reports."""
    from onnxdoctor.perf.bench import BenchComparison, BenchOptions
    from onnxdoctor.perf.report import ExportResults, build_sections

    decoded = [v for v in result.variants if v.path is not None and v.diagnosis is not None]
    if not decoded:
        return "", []
    exports = [ExportResults(str(v.path), v.diagnosis.inspect, v.diagnosis.replay, v.fidelity) for v in decoded]
    benched = [v.bench for v in decoded if v.bench is not None]
    comparison = BenchComparison(benched, benched[0].options if benched else BenchOptions()) if benched else None
    not_benched = {str(v.path): v.bench_error or f"not benched: {v.status}" for v in decoded if v.bench is None}
    return build_sections(exports, comparison, "source", not_benched)


def write_export_report(result: Any, out: Path) -> ReportPaths:
    """DIR/report/: report.md (the export's sections, then inspect / replay / fidelity / bench), report.json, charts."""
    data = result.to_dict()
    table, command_sections = _command_sections(result)
    sections = [
        Section("checkpoint", "Checkpoint and merge", _checkpoint_markdown(data), {"checkpoint": data["checkpoint"], "adapter": data["adapter"], "merge": data["merge"]}),
        Section("attempts", "Export attempts", _attempts_markdown(data), {"attempts": data["attempts"], "failure_classes": data["failure_classes"]}),
        Section("variants", "Variants", _variants_markdown(data), data["variants"]),
        *command_sections,
    ]
    summary = _summary(data) + (f"\n\n{table}" if table else "")
    protect = [str(v.path) for v in result.variants if v.path is not None]
    return write_report(out, f"onnxdoctor export: {data['source']}", sections, summary=summary, data=data, protect=protect)
