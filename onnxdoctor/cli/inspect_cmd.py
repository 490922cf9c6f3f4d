"""`onnxdoctor inspect PATH`: static diagnosis of a model file or export folder."""

from __future__ import annotations

import click

from onnxdoctor.cli.options import file_option, format_option, model_path_argument, role_map_option, select_ignore_options


@click.command("inspect")
@model_path_argument
@format_option()
@role_map_option
@file_option
@select_ignore_options
@click.option("--reshapes", is_flag=True, help="Also list every Reshape with the provenance of its target shape.")
def inspect_command(
    path: str,
    output_format: str,
    role_map: str | None,
    only_file: str | None,
    select: tuple[str, ...],
    ignore: tuple[str, ...],
    reshapes: bool,
) -> None:
    """Print the I/O signature, KV-cache layout, feeding contract and findings of PATH.

    PATH is a .onnx file or an export folder (optimum layout: every model file in it is inspected).
    Exit code 0: no error findings; 1: error findings; 2: unusable input or usage error.
    """
    from onnxdoctor.cli import exit_fast_when_done
    from onnxdoctor.model.load import load
    from onnxdoctor.model.roles import load_role_map

    exit_fast_when_done()

    roles = load_role_map(role_map)
    # load before importing the inspectors: shape inference starts here, in the background where the
    # platform allows (model.proto.InferenceJob), and overlaps the imports below
    bundle = load(path, only=only_file, start_inference=True)

    from onnxdoctor.cli.output import emit
    from onnxdoctor.engine import inspect_path

    def as_table() -> str:
        from onnxdoctor.report.table import render_inspect  # tabulate: only for the table format

        return render_inspect(report)

    report = inspect_path(bundle, role_map=roles, select=select, ignore=ignore, reshapes=reshapes)
    emit(
        output_format,
        title=f"inspect {path}",
        findings=report.findings,
        as_dict=report.to_dict,
        as_table=as_table,
    )
    raise SystemExit(report.exit_code)
