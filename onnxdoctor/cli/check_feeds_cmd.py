"""`onnxdoctor check-feeds PATH STEP0 STEP1 ...`: a client's recorded feeds vs the contract."""

from __future__ import annotations

from pathlib import Path

import click

from onnxdoctor.cli.options import file_option, format_option, model_path_argument, role_map_option


@click.command("check-feeds")
@model_path_argument
@click.argument("steps", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--provider", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@format_option()
@role_map_option
@file_option
def check_feeds_command(
    path: str, steps: tuple[Path, ...], provider: str, output_format: str, role_map: str | None, only_file: str | None
) -> None:
    """Check what a client fed at each step (one dump per step: input name -> array) and replay it.

    A step is a .npz, a JSON dump ({"name": {"dtype", "shape", "data"}}, data a list or base64),
    a safetensors file, a folder of NAME.npy files or an ONNX test-data folder (input_N.pb); the
    format is detected. A folder of such dumps (stepK.*, test_data_set_K/) gives every step in order.

    Reports the first step that deviates from the contract: missing input, dtype, shape (query vs
    KV heads), a non-empty dummy past at step 0, mask length, positions, use_cache_branch misuse,
    cross-attention placeholders fed back, a past that is not the previous present, a split seq2seq
    export's with-past file run at step 0 on zero pasts.
    Exit code 0: the feeds are right; 1: a deviation; 2: unusable input or usage error.
    """
    from tabulate import tabulate

    from onnxdoctor.cli.output import emit
    from onnxdoctor.engine import inspect_path
    from onnxdoctor.model.roles import load_role_map
    from onnxdoctor.replay.feedcheck import FeedChecker
    from onnxdoctor.report.table import render_findings

    report = inspect_path(path, role_map=load_role_map(role_map), only_file=only_file)
    result = FeedChecker(report, provider, progress=lambda m: click.echo(f"onnxdoctor: {m}", err=True)).run(list(steps))
    def table() -> str:
        rows = [[s.step, s.path.name, s.file, s.verdict] for s in result.steps]
        steps_table = tabulate(rows, headers=["step", "feeds", "model file", "verdict"], tablefmt="simple")
        return f"{steps_table}\n\n{render_findings(result.findings)}\n\nVerdict: {result.verdict()}"

    emit(
        output_format,
        title=f"check-feeds {path}",
        findings=result.findings,
        as_dict=result.to_dict,
        as_table=table,
        verdict=result.verdict(),
    )
    raise SystemExit(result.exit_code)
