"""report.md and report.json of an export, in ONE function (to be switched to `onnxdoctor report`'s writer at merge)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _mb(size: int) -> str:
    return f"{size / 2**20:.2f} MB"


def write_export_report(result: Any, out: Path) -> tuple[Path, Path]:
    """Write `out`/report.json (the ExportResult as data) and `out`/report.md (the same for people)."""
    data = result.to_dict()
    json_path, md_path = out / "report.json", out / "report.md"
    json_path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    lines = [f"# onnxdoctor export: {data['source']}", ""]
    if data["error"]:
        lines += [f"**{data['error']['stage']} error:** {data['error']['message']}", ""]
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
    lines += ["", "## Export attempts", "", "| # | strategy | exporter call | result | findings after | s |", "|---|---|---|---|---|---|"]
    for a in data["attempts"]:
        reason = (a["result"] + (f": {a['reason']}" if a["reason"] else "")).replace("|", "/").replace("\n", " ")
        lines.append(f"| {a['index']} | {a['name']} | `{a['command']}` | {reason} | {', '.join(a['findings_after']) or '-'} | {a['seconds']} |")
    if data["failure_classes"]:
        lines += ["", "Failure classes: " + "; ".join(f"attempt {c['attempt']}: **{c['class']}** ({c['meaning']})" for c in data["failure_classes"])]
    lines += ["", "## Variants", "", "| variant | status | size | reduction | drift vs source | drift vs fp32 | decode ms/token | RSS growth |", "|---|---|---|---|---|---|---|---|"]
    for v in data["variants"]:
        drift = v["drift"] or {}
        source, fp32 = drift.get("vs_source") or {}, drift.get("vs_fp32") or {}
        speed = v["speed"] or {}
        reduction = "-" if v["reduction"] is None else f"{v['reduction']:.0%}"
        lines.append(
            f"| {v['name']} | {v['status']} | {_mb(v['size_bytes'])} | {reduction} | "
            f"{source.get('max_scaled_logits', '-')} | {fp32.get('max_scaled_logits', '-')} | {speed.get('decode_ms_per_token', '-')} | "
            f"{speed.get('rss_growth_mb', '-')} MB |"
        )
    failed = [v for v in data["variants"] if v["status"] != "verified"]
    lines += [f"- {v['name']} not shipped: {v['reason']}" for v in failed]
    lines += ["", "## Stages", ""] + [f"- {s['stage']}: {s['status']} ({s['seconds']} s)" for s in data["stages"]]
    if data["warnings"]:
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in data["warnings"]]
    lines += ["", "Settings: " + ", ".join(f"{k}={v} ({data['settings_from'].get(k, 'default')})" for k, v in data["settings"].items()), ""]
    md_path.write_text("\n".join(lines))
    return md_path, json_path
