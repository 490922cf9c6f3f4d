"""`onnxdoctor verify EXPORT --source SRC`: the export against the PyTorch model it came from, step by step."""

from __future__ import annotations

from pathlib import Path

import click

from onnxdoctor.cli.options import decode_options, file_option, format_option, model_path_argument, progress_echo


@click.command("verify")
@model_path_argument
@click.option("--source", required=True, type=click.Path(path_type=Path), help="The Hugging Face model folder the export came from.")
@click.option("--adapter", type=click.Path(path_type=Path), default=None, help="A LoRA adapter folder (peft) merged into the source first.")
@decode_options(steps=8)
@format_option()
@file_option
def verify_command(
    path: str,
    source: Path,
    adapter: Path | None,
    steps: int,
    batch: int,
    prompt_len: int,
    seed: int,
    output_format: str,
    only_file: str | None,
) -> None:
    """Decode PATH and its PyTorch SOURCE on the same tokens and say where the export first departs.

    The source decodes greedily; the export is fed the same tokens. Per step: the logits' difference
    scaled by their spread, top-1/top-5 agreement, the greedy choice; per layer: every present key/value
    against the source's cache (for seq2seq also the encoder output and the cross-attention cache).
    Tolerances follow the export's precision (fp16, int8 and int4 exports are judged as such). With
    --adapter, an export that matches the base model but not base + adapter is named as such.
    Exit code 0: agrees; 1: departs; 2: unusable input or usage error.
    """
    from onnxdoctor.cli.output import emit
    from onnxdoctor.fidelity.verify import FidelityOptions, verify
    from onnxdoctor.report.fidelity_table import render_fidelity

    options = FidelityOptions(steps=steps, batch=batch, prompt_len=prompt_len, seed=seed)
    report = verify(path, source, adapter=adapter, options=options, progress=progress_echo, only_file=only_file)
    emit(
        output_format,
        title=f"verify {path}",
        findings=report.findings,
        as_dict=report.to_dict,
        as_table=lambda: render_fidelity(report),
        verdict=report.verdict(),
    )
    raise SystemExit(report.exit_code)
