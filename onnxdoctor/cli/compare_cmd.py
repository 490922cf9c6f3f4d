"""`onnxdoctor compare A B`: two exports of one model, step by step on the same tokens."""

from __future__ import annotations

import click

from onnxdoctor.cli.options import decode_options, format_option, progress_echo


@click.command("compare")
@click.argument("path_a", type=click.Path(path_type=str))
@click.argument("path_b", type=click.Path(path_type=str))
@decode_options(steps=8)
@format_option()
def compare_command(path_a: str, path_b: str, steps: int, batch: int, prompt_len: int, seed: int, output_format: str) -> None:
    """Decode A greedily, feed B the same tokens, and compare them step by step.

    For an fp32 export against its fp16 / int8 / int4 twin, before and after an optimizer pass, or two
    exporters: per step the scaled logits difference, top-1/top-5 agreement and every present, judged
    by the envelope of the less precise of the two; then the greedy continuation of each.
    Exit code 0: they agree; 1: they disagree; 2: unusable input or usage error.
    """
    from onnxdoctor.cli.output import emit
    from onnxdoctor.fidelity.verify import FidelityOptions, compare
    from onnxdoctor.report.fidelity_table import render_fidelity

    report = compare(path_a, path_b, options=FidelityOptions(steps=steps, batch=batch, prompt_len=prompt_len, seed=seed), progress=progress_echo)
    emit(
        output_format,
        title=f"compare {path_a} {path_b}",
        findings=report.findings,
        as_dict=report.to_dict,
        as_table=lambda: render_fidelity(report),
        verdict=report.verdict(),
    )
    raise SystemExit(report.exit_code)
