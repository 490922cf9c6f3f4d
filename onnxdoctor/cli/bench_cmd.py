"""`onnxdoctor bench EXPORT [EXPORT ...]`: speed and memory of a KV-cache decode, side by side."""

from __future__ import annotations

import click

from onnxdoctor.cli.options import progress_echo


@click.command("bench")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("--prompt-len", type=int, default=16, show_default=True, help="Tokens fed at step 0 (the prefill).")
@click.option("--new-tokens", type=int, default=32, show_default=True, help="Decode steps after the prompt, one token per row each.")
@click.option("--batch", type=int, default=1, show_default=True, help="Sequences decoded together.")
@click.option("--provider", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True, help="ONNX Runtime execution provider.")
@click.option("--threads", type=int, default=None, help="Intra-op threads (default: ONNX Runtime's, one per core).")
@click.option("--repeat", type=int, default=5, show_default=True, help="Timed decodes per export (the spread between them is shown).")
@click.option("--warmup", type=int, default=1, show_default=True, help="Decodes run first and discarded.")
@click.option("--optimize/--no-optimize", default=True, show_default=True, help="ONNX Runtime graph optimization: on as deployed; off as replay runs.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for the prompt's token ids.")
@click.option("--format", "output_format", type=click.Choice(["table", "json", "markdown"]), default="table", show_default=True)
def bench_command(
    paths: tuple[str, ...],
    prompt_len: int,
    new_tokens: int,
    batch: int,
    provider: str,
    threads: int | None,
    repeat: int,
    warmup: int,
    optimize: bool,
    seed: int,
    output_format: str,
) -> None:
    """Time greedy KV-cache decodes of each export with ONNX Runtime and show them side by side.

    Every run is a real decode through the reference protocol (step 0 with an empty past, the presents
    fed back): session creation, prefill, per-token latency (median, p90), tokens/s, peak resident
    memory of the process, KV-cache bytes per token and size on disk. With several exports, ratios
    against the first. Exit code 0; 2: unusable input or usage error.
    """
    from onnxdoctor.perf.bench import BenchOptions, bench_many, render_bench
    from onnxdoctor.report import to_json

    options = BenchOptions(
        prompt_len=prompt_len, new_tokens=new_tokens, batch=batch, provider=provider, threads=threads,
        repeat=repeat, warmup=warmup, optimize=optimize, seed=seed,
    )
    comparison = bench_many(list(paths), options, progress=progress_echo)
    if output_format == "json":
        click.echo(to_json(comparison.to_dict()))
    elif output_format == "markdown":
        click.echo(render_bench(comparison, tablefmt="github"))
    else:
        click.echo(render_bench(comparison))
