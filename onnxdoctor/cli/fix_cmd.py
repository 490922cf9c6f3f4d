"""`onnxdoctor fix PATH --source SOURCE --out DIR`: re-export with patched settings, keep what replay proves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from onnxdoctor.cli.options import format_option, model_path_argument


def _load_config(path: Path | None) -> dict[str, Any]:
    """`--config export.json|.yaml`: settings the user knows (task, opset, dtype)."""
    from onnxdoctor.export.config import read_mapping_file

    return read_mapping_file(path)


@click.command("fix")
@model_path_argument
@click.option("--source", default=None, help="What the model was exported from: a local Hugging Face model folder, or file.py:function for torch.onnx.")
@click.option("--exporter", type=click.Choice(["optimum", "torch"]), default=None, help="Default: optimum for a folder, torch for file.py:function.")
@click.option("--adapter", default=None, help="A LoRA adapter folder merged into --source with peft before export.")
@click.option("--out", "out", type=click.Path(path_type=Path), default=Path("onnxdoctor-out"), show_default=True, help="New folder for the attempts (never the model's folder).")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None, help="Known export settings (JSON or YAML): task, opset, dtype.")
@click.option("--timeout", type=float, default=600.0, show_default=True, help="Seconds an exporter may run before it is stopped.")
@click.option("--dry-run", is_flag=True, help="Print the plan without exporting.")
@click.option("--unsafe-fixes", is_flag=True, help="Also try graph fixes labelled unsafe (kept only if replay then passes).")
@click.option("--feeds", "feeds", multiple=True, type=click.Path(path_type=Path), help="A client's recorded steps (stepK.npz|json|safetensors, a .npy or input_N.pb folder, or a folder of steps; repeat in order): its check-feeds findings are planned for too.")
@click.option("--steps", type=int, default=2, show_default=True, help="Replay steps used to verify each attempt.")
@format_option(("table", "json"))
def fix_command(
    path: str,
    source: str | None,
    exporter: str | None,
    adapter: str | None,
    out: Path,
    config_path: Path | None,
    timeout: float,
    dry_run: bool,
    unsafe_fixes: bool,
    steps: int,
    feeds: tuple[Path, ...],
    output_format: str,
) -> None:
    """Diagnose PATH, re-export it with patched settings (or mend the graph), and keep only what inspect + replay prove.

    Each attempt runs the real exporter in a subprocess with a time limit, into a fresh folder under
    --out. Exit code 0: a fix was kept (or nothing to fix); 1: no attempt fixed it; 2: usage error.
    """
    from tabulate import tabulate

    from onnxdoctor.recovery.engine import RecoveryEngine
    from onnxdoctor.report import to_json

    engine = RecoveryEngine(
        path, out=out, source=source, exporter=exporter, adapter=adapter, config=_load_config(config_path),
        timeout=timeout, unsafe_fixes=unsafe_fixes, steps=steps, feeds=list(feeds),
        progress=lambda message: click.echo(f"onnxdoctor: {message}", err=True),
    )
    report = engine.run(dry_run=dry_run)
    if output_format == "json":
        click.echo(to_json(report.to_dict()))
        raise SystemExit(report.exit_code)
    click.echo(f"Findings before: {', '.join(sorted({f.code for f in report.before.problems()})) or 'none'}")
    rows = [
        [a.index, a.name, "safe" if a.safe else "unsafe", a.command, a.result + (f": {a.reason}" if a.reason else ""), ", ".join(a.after) or "-", f"{a.seconds:.1f}"]
        for a in report.attempts
    ]
    if rows:
        click.echo(tabulate(rows, headers=["#", "patch", "", "exporter call", "result", "findings after", "s"], tablefmt="simple", maxcolwidths=[None, None, None, 48, 48, 24, None]))
    for attempt in report.attempts:
        if attempt.result in ("failed", "timeout") and attempt.log_tail:
            click.echo(f"\nattempt {attempt.index} ({attempt.name}) last lines:")
            click.echo("\n".join("  " + line for line in attempt.log_tail[-6:]))
    for note in report.notes:
        click.echo(f"\nnote: {note}")
    kept = report.kept
    if dry_run:
        click.echo("\n(dry run: nothing exported)")
    elif kept is not None:
        click.echo(f"\nKept: {kept.produced} ({kept.name}): inspect + replay confirm the targeted findings are gone.")
    elif report.before.problems():
        click.echo("\nNo attempt fixed the model.")
    raise SystemExit(report.exit_code)
