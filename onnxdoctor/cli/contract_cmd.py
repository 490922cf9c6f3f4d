"""`onnxdoctor contract PATH`: the feeding protocol a client must follow, step 0 and step n."""

from __future__ import annotations

import click

from onnxdoctor.cli.options import file_option, format_option, model_path_argument, role_map_option


@click.command("contract")
@model_path_argument
@format_option(("table", "json"))
@role_map_option
@file_option
@click.option(
    "--emit", "emit_language", type=click.Choice(["js", "python"]), default=None,
    help="Print a complete greedy decode loop for this model instead (onnxruntime-node or onnxruntime): "
    "`node loop.js MODEL_PATH --prompt 17,301,45 --max-new-tokens N [--source-ids IDS] [--dump DIR]`.",
)
def contract_command(path: str, output_format: str, role_map: str | None, only_file: str | None, emit_language: str | None) -> None:
    """Print every input with dtype and shape formula at step 0 and step n, which output feeds which
    input, and what to keep from step 0 (for a Rust / C# / JS implementation).

    With --emit js|python, print a decode loop that follows the contract: run it as
    MODEL_PATH --prompt IDS --max-new-tokens N [--source-ids IDS] [--dump DIR]; it prints the new
    token ids as a JSON array and --dump writes each step's feeds as stepK.json for check-feeds."""
    from onnxdoctor import __version__
    from onnxdoctor.engine import inspect_path
    from onnxdoctor.model.roles import load_role_map
    from onnxdoctor.report import to_json
    from onnxdoctor.report.table import contract_lines

    report = inspect_path(path, role_map=load_role_map(role_map), only_file=only_file)
    if emit_language is not None:
        from onnxdoctor.model.client_loop import emit_loop

        click.echo(emit_loop(report, emit_language), nl=False)
        return
    if output_format == "json":
        files = [
            {"file": r.signature.file, "kind": r.signature.kind, "step0": r.step0.to_dict(), "stepn": r.stepn.to_dict()}
            for r in report.files
        ]
        click.echo(to_json({"schema": 1, "tool": {"name": "onnxdoctor", "version": __version__}, "command": "contract", "path": report.path, "files": files}))
        return
    blocks = []
    for file_report in report.files:
        if file_report.signature.kind != "decoder":
            blocks.append(f"== {file_report.signature.file}: {file_report.signature.kind}, run once before decoding")
            continue
        blocks.append("\n".join([f"== {file_report.signature.file}", *contract_lines(file_report)]))
    click.echo("\n\n".join(blocks))
