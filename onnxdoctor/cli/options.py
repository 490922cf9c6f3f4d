"""Options shared by several commands, defined once (pip-tools style)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from onnxdoctor.report import FORMATS

F = TypeVar("F", bound=Callable[..., Any])


def _split_codes(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
    codes: list[str] = []
    for value in values:
        codes.extend(part.strip().upper() for part in value.split(",") if part.strip())
    return tuple(codes)


def format_option(choices: tuple[str, ...] = FORMATS) -> Callable[[F], F]:
    return click.option(
        "--format",
        "output_format",
        type=click.Choice(choices),
        default="table",
        show_default=True,
        help="table for people, json (versioned schema) for machines, github for workflow annotations.",
    )


def model_path_argument(func: F) -> F:
    return click.argument("path", type=click.Path(path_type=str))(func)


def role_map_option(func: F) -> F:
    return click.option(
        "--map",
        "role_map",
        metavar="FILE.json|NAME=ROLE,...",
        help="Name roles onnxdoctor does not recognize: a JSON object or NAME=ROLE pairs; "
        "NAME may be a glob or use {i} for the layer, ROLE e.g. input_ids, logits, past.{i}.key, "
        "present.{i}.cross.value, past.{i}.kv.",
    )(func)


def file_option(func: F) -> F:
    return click.option("--file", "only_file", metavar="NAME", help="In an export folder, only this model file.")(func)


def select_ignore_options(func: F) -> F:
    func = click.option(
        "--ignore", multiple=True, callback=_split_codes, metavar="CODES", help="Drop findings with these codes or prefixes."
    )(func)
    return click.option(
        "--select", multiple=True, callback=_split_codes, metavar="CODES", help="Only findings with these codes or prefixes (e.g. ODS,ODA101)."
    )(func)


def decode_options(steps: int) -> Callable[[F], F]:
    """--steps, --batch, --prompt-len, --seed: the size of a decode (replay, verify, compare)."""

    def decorate(func: F) -> F:
        func = click.option("--seed", type=int, default=0, show_default=True, help="Seed for token ids and synthesized encoder inputs.")(func)
        func = click.option("--prompt-len", type=int, default=4, show_default=True, help="Tokens fed at step 0.")(func)
        func = click.option("--batch", type=int, default=2, show_default=True, help="Batch size; row 1 is left-padded when the model allows it.")(func)
        return click.option("--steps", type=int, default=steps, show_default=True, help="Decode steps after step 0 (the prompt).")(func)

    return decorate


def progress_echo(message: str) -> None:
    """Progress of long work, on stderr so stdout stays the report."""
    click.echo(f"onnxdoctor: {message}", err=True)
