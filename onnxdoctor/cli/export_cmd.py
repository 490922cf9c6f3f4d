"""`onnxdoctor export SOURCE --out DIR`: a training folder to a verified, quantized ONNX decoder (onnxdoctor.export)."""

from __future__ import annotations

from pathlib import Path

import click

from onnxdoctor.cli.options import format_option


@click.command("export")
@click.argument("source")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="New or empty folder: everything is written there.")
@click.option("--adapter", default=None, help="LoRA adapter folder or its training folder (checkpoint-N/), or 'auto': the adapter next to SOURCE.")
@click.option("--task", default=None, help="optimum task (default from config.json).")
@click.option("--quantize", default=None, help="Comma-separated: none, fp16, int8, int4 (default int8,int4).")
@click.option("--exporter", type=click.Choice(["optimum", "torch"]), default=None, help="Default: optimum for a folder, torch for file.py:function.")
@click.option("--opset", type=int, default=None, help="Opset of the first attempt (recovery may try another).")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None, help="export.yaml (or .json) with the same keys; ONNXDOCTOR_EXPORT_<KEY> overrides it.")
@click.option("--timeout", type=float, default=None, help="Seconds one exporter run may take (default 600).")
@click.option("--dry-run", is_flag=True, help="Detect and check the checkpoints, print the plan; write nothing.")
@click.option("--list-checkpoints", is_flag=True, help="List SOURCE's (and the adapter's) checkpoints, complete or why not, and exit.")
@format_option(("table", "json"))
def export_command(
    source: str, out: Path, adapter: str | None, task: str | None, quantize: str | None, exporter: str | None,
    opset: int | None, config_path: Path | None, timeout: float | None, dry_run: bool, list_checkpoints: bool, output_format: str,
) -> None:
    """Find SOURCE's latest complete checkpoint, merge the LoRA adapter, export to ONNX (recovering from exporter
    failures), quantize, verify every result against the source, and write report.md, report.json and charts under --out/report/.

    SOURCE: a Hugging Face model folder, a training output folder with checkpoint-N/ subfolders, or file.py:function
    (a torch factory, as `fix` takes it). Exit code 0: exported and verified; 1: no attempt or a variant did not
    pass verification (report written); 2: bad input (checkpoint, merge, usage).
    """
    from onnxdoctor.export.config import load_config_file, resolve_settings
    from onnxdoctor.export.errors import ExportPipelineError
    from onnxdoctor.export.pipeline import ExportPipeline
    from onnxdoctor.report import to_json

    flags = {"adapter": adapter, "task": task, "quantize": quantize, "exporter": exporter, "opset": opset, "timeout": timeout}
    settings, origins = resolve_settings(load_config_file(config_path), flags)
    pipeline = ExportPipeline(source, out, settings, origins, progress=lambda m: click.echo(f"onnxdoctor: {m}", err=True))
    if list_checkpoints:
        _list(pipeline)
        return
    try:
        result = pipeline.run(dry_run=dry_run)
    except ExportPipelineError as exc:  # before DIR exists: one line, its stage named
        click.echo(f"onnxdoctor: {exc.stage} error: {exc}", err=True)
        raise SystemExit(exc.exit_code) from None
    if output_format == "json":
        click.echo(to_json(result.to_dict()))
    else:
        _table(result)
    if result.error is not None:
        click.echo(f"onnxdoctor: {result.error.stage} error: {result.error}", err=True)
    raise SystemExit(result.exit_code)


def _list(pipeline: object) -> None:
    from onnxdoctor.export.checkpoints import checkpoints_in, folder_problem

    from onnxdoctor.export.pipeline import ExportPipeline

    assert isinstance(pipeline, ExportPipeline)
    pipeline.checkpoints()
    for checkpoint in (pipeline.result.model, pipeline.result.adapter):
        if checkpoint is None:
            continue
        click.echo(f"{checkpoint.kind} {checkpoint.given}:")
        folders = checkpoints_in(checkpoint.given) or [checkpoint.given]
        for folder in folders:
            problem = folder_problem(folder, checkpoint.kind)
            mark = "<- used" if folder == checkpoint.path else ""
            click.echo(f"  {folder.name:<20} {'complete' if problem is None else 'incomplete: ' + problem} {mark}".rstrip())


def _table(result: object) -> None:
    from tabulate import tabulate

    from onnxdoctor.export.pipeline import ExportResult

    assert isinstance(result, ExportResult)
    if result.model is not None:
        click.echo(f"Checkpoint: {result.model.describe()}")
    if result.adapter is not None:
        click.echo(f"Adapter: {result.adapter.describe()}, rank {result.adapter.metadata.get('rank')}")
    if result.dry_run:
        stages = ["checkpoint"] + (["merge"] if result.adapter else []) + ["export (with recovery)"] + [f"quantize-{q}" for q in result.settings["quantize"]] + ["measure", "report"]
        click.echo(f"Plan: {' -> '.join(stages)} into {result.out}\n(dry run: nothing written)")
        return
    rows = [[a.index, a.name, a.result + (f": {a.reason}" if a.reason else ""), f"{a.seconds:.1f}"] for a in result.attempts]
    if rows:
        click.echo(tabulate(rows, headers=["#", "attempt", "result", "s"], tablefmt="simple", maxcolwidths=[None, None, 90, None]))
    if result.variants:
        click.echo("")
        click.echo(tabulate(
            [[v.name, v.status, f"{v.size_bytes / 2**20:.2f} MB" if v.path else "-", "-" if v.reduction is None else f"{v.reduction:.0%}",
              (v.drift.get("vs_source") or {}).get("max_scaled_logits", "-"), v.speed.get("decode_ms_per_token", "-")] for v in result.variants],
            headers=["variant", "status", "size", "reduction", "drift vs source", "ms/token"], tablefmt="simple",
        ))
    if result.report is not None:
        click.echo(f"\nReport: {result.report.markdown}" + (f" ({len(result.report.charts)} charts)" if result.report.charts else ""))
