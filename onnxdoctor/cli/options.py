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
