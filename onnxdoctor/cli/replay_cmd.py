"""`onnxdoctor replay PATH`: decode step 0 -> step N under the reference protocol and check each step."""

from __future__ import annotations

from pathlib import Path

import click

from onnxdoctor.cli.options import decode_options, file_option, format_option, model_path_argument, progress_echo, role_map_option


@click.command("replay")
@model_path_argument
@decode_options(steps=4)
@click.option("--chunk", type=int, default=None, help="Tokens per decode step (default: 1, with step 2 fed 2 tokens).")
@click.option("--provider", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--record", type=click.Path(path_type=Path), default=None, help="Save each step's feeds and outputs and the contract to this new folder.")
@click.option(
    "--record-format", type=click.Choice(["npz", "json", "safetensors", "pb"]), default="npz", show_default=True,
    help="How --record writes each step: stepK.npz, stepK.json, stepK.safetensors, or test_data_set_K/input_N.pb (ONNX test data).",
)
@format_option()
@role_map_option
@file_option
def replay_command(
    path: str,
    steps: int,
    batch: int,
    prompt_len: int,
    chunk: int | None,
    seed: int,
    provider: str,
    record: Path | None,
    record_format: str,
    output_format: str,
    role_map: str | None,
    only_file: str | None,
) -> None:
    """Run PATH with ONNX Runtime from step 0 to step N, exactly as a correct client would.

    Checks at every step: the call succeeds (else: which node, its input shapes, where bad dims come
    from), presents have length past + new, logits equal an uncached recompute, no NaN/Inf, fp16
    range, and a left-padded row equals the same row run alone. Exit code 0: decodes correctly;
    1: the model is broken; 2: unusable input or usage error.
    """
    from onnxdoctor.cli.output import emit
    from onnxdoctor.engine import inspect_path
    from onnxdoctor.model.roles import load_role_map
    from onnxdoctor.replay.harness import Replayer, ReplayOptions
    from onnxdoctor.report.replay_table import render_replay

    report = inspect_path(path, role_map=load_role_map(role_map), only_file=only_file)
    options = ReplayOptions(steps=steps, batch=batch, prompt_len=prompt_len, chunk=chunk, seed=seed, provider=provider, record=record, record_format=record_format)
    result = Replayer(report, options, progress=progress_echo).run()
    emit(
        output_format,
        title=f"replay {path}",
        findings=result.findings,
        as_dict=result.to_dict,
        as_table=lambda: render_replay(result),
        verdict=result.verdict(),
    )
    raise SystemExit(result.exit_code)
