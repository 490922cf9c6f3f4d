"""The human report of `inspect`: signature, KV layout, feeding contract, findings, on one screen.

Cache tensors of a 32-layer model would fill pages, so layers with the same form are folded into
one row naming the layer range.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterable

from tabulate import tabulate

from onnxdoctor.engine import FileReport, InspectReport
from onnxdoctor.findings import Finding
from onnxdoctor.model.contract import StepContract
from onnxdoctor.model.dims import format_dims
from onnxdoctor.model.signature import KVLayout, TensorSig


def _size(num_bytes: int) -> str:
    size = float(num_bytes)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def _fold_cache_rows(tensors: list[TensorSig]) -> list[tuple[TensorSig, str]]:
    """(tensor, extra note) rows; cache tensors identical but for the layer fold into the first."""
    groups: dict[tuple[object, ...], list[TensorSig]] = {}
    order: list[tuple[object, ...]] = []
    for tensor in tensors:
        if tensor.cache is None:
            key: tuple[object, ...] = ("single", tensor.name)
        else:
            key = ("cache", tensor.cache.attention, tensor.cache.part, tensor.elem_type, format_dims(tensor.dims))
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(tensor)
    if all(len(members) <= 2 for members in groups.values()):
        return [(tensor, "") for tensor in tensors]  # nothing to fold: keep the graph's order
    rows: list[tuple[TensorSig, str]] = []
    for key in order:
        members = groups[key]
        if len(members) <= 2:
            rows.extend((m, "") for m in members)
        else:
            layers = sorted(m.cache.layer for m in members if m.cache)
            rows.append((members[0], f"+{len(members) - 1} more: layers {layers[1]}..{layers[-1]} alike"))
    return rows


def _io_table(tensors: list[TensorSig]) -> str:
    rows = []
    for tensor, note in _fold_cache_rows(tensors):
        static = ",".join(str(a) for a in tensor.static_axes()) or "-"
        role = tensor.role_text + (f" [{tensor.role_source}]" if tensor.role_source not in ("name",) else "")
        rows.append([tensor.name + (f"  ({note})" if note else ""), role, tensor.dtype, format_dims(tensor.dims), static])
    return tabulate(rows, headers=["name", "role", "dtype", "dims", "static axes"], tablefmt="simple")


def _kv_lines(kv: KVLayout | None, if_node: str | None, contrib: list[str]) -> list[str]:
    if kv is None:
        return ["KV cache: none recognized"]
    heads = kv.kv_heads if not isinstance(kv.kv_heads, list) else "per layer " + str(kv.kv_heads)
    axes = kv.axes
    layout = ["?"] * axes.rank
    layout[axes.batch] = "batch"
    layout[axes.cache] = "cache"
    layout[axes.head_dim] = "head_dim"
    if axes.heads is not None:
        layout[axes.heads] = "heads"
    if axes.stack is not None:
        layout[axes.stack] = "k|v"
    lines = [
        f"KV cache: {kv.layers} layers, kv heads {heads}, head_dim {kv.head_dim}, dtype {kv.dtype}",
        f"  layout [{', '.join(layout)}], cache axis {kv.cache_axis} (decided by: {axes.how})",
        f"  mode {kv.mode}; merged {'yes, If node ' + str(if_node) if kv.merged else 'no'}; "
        f"cross-attention {'yes' if kv.cross_attention else 'no'}; stacked key+value {'yes' if kv.stacked else 'no'}",
    ]
    if contrib:
        lines.append(f"  attention ops: {', '.join(contrib)} (onnxruntime contrib)")
    return lines


def _contract_table(title: str, contract: StepContract) -> list[str]:
    if contract.feeds is None:
        return [f"{title}: {contract.note}"]
    header = f"{title}" + (f" ({contract.note})" if contract.note else "")
    seen_forms: dict[tuple[str, str], int] = {}
    rows = []
    for feed in contract.feeds:
        form = (feed.shape, re.sub(r"\d+", "#", feed.value))
        if feed.role in ("past",) and form in seen_forms:
            seen_forms[form] += 1
            continue
        seen_forms[form] = 0
        rows.append([feed.name, feed.dtype, feed.shape, feed.value])
    folded = sum(seen_forms.values())
    lines = [header + ":", textwrap.indent(tabulate(rows, headers=["input", "dtype", "shape", "value"], tablefmt="simple"), "  ")]
    if folded:
        lines.append(f"  (+{folded} more past inputs of the same form)")
    return lines


def contract_lines(report: FileReport) -> list[str]:
    """The step 0 and step n feed tables of one file."""
    return _contract_table("Step 0 feeds", report.step0) + _contract_table("Step n feeds", report.stepn)


def render_file(report: FileReport) -> str:
    sig = report.signature
    model = report.model_file
    head = f"== {sig.file}  [{sig.kind}"
    if sig.file_role not in ("other", sig.kind):
        head += f", {sig.file_role}"
    head += f"]  {sig.producer or 'unknown producer'}, opset {sig.opset}, {_size(model.size_bytes)}"
    if model.external_files:
        head += f", external data: {', '.join(model.external_files)}"
    parts = [head, "", "Inputs", _io_table(sig.inputs), "", "Outputs", _io_table(sig.outputs), ""]
    parts.extend(_kv_lines(sig.kv, sig.merged_if_node, sig.contrib_attention_ops))
    if report.context is not None:
        regime = report.context.regime
        parts.append(f"Numerics: {regime.kind}; {regime.describe()}")
    if sig.kind == "decoder":
        parts.append("")
        parts.extend(contract_lines(report))
    if report.reshapes is not None:
        parts.extend(["", _reshape_table(report.reshapes)])
    return "\n".join(parts)


def _entry_text(entry: dict[str, object]) -> str:
    if entry["value"] is not None:
        return str(entry["value"]) + ("" if entry["source"] == "constant" else "*")
    return str(entry["symbol"] or entry["text"])


def _reshape_table(reshapes: list[dict[str, object]]) -> str:
    if not reshapes:
        return "Reshapes: none"
    rows = []
    for item in reshapes:
        target = item["target"]
        if isinstance(target, list):
            shown = "[" + ", ".join(_entry_text(e) for e in target) + "]"  # type: ignore[arg-type]
        else:
            shown = "? (not traceable)"
        data_shape = item["data_shape"]
        node = str(item["node"]) + ("" if item["graph"] == "main" else f"  (in {item['graph']})")
        rows.append(
            [
                node,
                "[" + ", ".join(data_shape) + "]" if isinstance(data_shape, list) else "?",  # type: ignore[arg-type]
                textwrap.shorten(shown, 70),
                item["allowzero"],
                ", ".join(item["findings"]) or "ok",  # type: ignore[arg-type]
            ]
        )
    return f"Reshapes ({len(rows)})\n" + tabulate(rows, headers=["node", "data shape", "target shape", "allowzero", "verdict"], tablefmt="simple") + (
        "\n  (target entries: numbers are constants, n* a static dim read with Shape(), names the symbolic dims "
        "read with Shape(), ? untraced; --format json has each entry's full provenance)"
    )


def render_findings(findings: Iterable[Finding]) -> str:
    findings = list(findings)
    if not findings:
        return "Findings: none"
    lines = ["Findings"]
    for finding in findings:
        where = finding.location.describe()
        prefix = f"{finding.location.file}: " if finding.location.file else ""
        lines.append(f"  {finding.severity.value.upper():7} {finding.code} {finding.name}  {prefix}{where}")
        lines.append(textwrap.indent(textwrap.fill(finding.message, 96), "          "))
        if finding.fix and finding.severity.value != "info":
            lines.append(textwrap.indent(textwrap.fill("fix: " + finding.fix, 96), "          "))
    return "\n".join(lines)


def closing_blocks(findings: list[Finding], counts: dict[str, int], verdict: str | None = None) -> list[str]:
    """Findings, the summary line and the verdict: how every command's table ends."""
    blocks = [render_findings(findings), f"Summary: {counts['error']} errors, {counts['warning']} warnings, {counts['info']} info"]
    if verdict is not None:
        blocks.append("Verdict: " + textwrap.fill(verdict, 100, subsequent_indent="         "))
    return blocks


def render_inspect(report: InspectReport) -> str:
    blocks = [render_file(f) for f in report.files]
    return "\n\n".join(blocks + closing_blocks(report.findings, report.counts()))
