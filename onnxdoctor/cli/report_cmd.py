"""`onnxdoctor report EXPORT... --out DIR`: one validation folder (markdown, JSON, charts)."""

from __future__ import annotations

from pathlib import Path

import click

from onnxdoctor.cli.options import progress_echo


@click.command("report")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("--source", type=click.Path(path_type=Path), default=None, help="The Hugging Face folder the exports came from: drift against it (verify); without it, against the first export (compare).")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path), help="A new or empty folder, outside every export.")
@click.option("--steps", type=int, default=8, show_default=True, help="Decode steps of verify / compare after the prompt.")
@click.option("--new-tokens", type=int, default=32, show_default=True, help="Decode steps the bench times.")
@click.option("--repeat", type=int, default=5, show_default=True, help="Timed bench decodes per export.")
@click.option("--threads", type=int, default=None, help="Intra-op threads for the bench (default: ONNX Runtime's).")
@click.option("--optimize/--no-optimize", default=True, show_default=True, help="Bench with ONNX Runtime graph optimization (as deployed) or without (as replay).")
def report_command(
    paths: tuple[str, ...], source: Path | None, out_dir: Path, steps: int, new_tokens: int, repeat: int, threads: int | None, optimize: bool
) -> None:
    """Inspect, replay, verify (or compare) and bench every export, and write one report folder.

    OUT gets report.md (a page a person reads, a CI job attaches), report.json (every number, versioned)
    and PNG charts: logits drift per step, latency per decode step, memory and size. Charts need
    `pip install 'onnxdoctor[report]'`; without it the report is written without them and says so.
    Exit code 0: no error findings; 1: some; 2: unusable input or usage error.
    """
    from onnxdoctor.perf.bench import BenchOptions
    from onnxdoctor.perf.report import ReportOptions, validation_report

    options = ReportOptions(steps=steps, bench=BenchOptions(new_tokens=new_tokens, repeat=repeat, threads=threads, optimize=optimize))
    report = validation_report(list(paths), out_dir, source=source, options=options, progress=progress_echo)
    click.echo(f"wrote {report.paths.markdown}, {report.paths.json}" + "".join(f", {p}" for p in report.paths.charts))
    if report.paths.charts_missing:
        click.echo(f"onnxdoctor: {report.paths.charts_missing}", err=True)
    raise SystemExit(report.exit_code)
