"""Writing a command's result in the format asked for, the same way for every command."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from onnxdoctor.findings import Finding


def emit(
    output_format: str,
    *,
    title: str,
    findings: list[Finding],
    as_dict: Callable[[], dict[str, Any]],
    as_table: Callable[[], str],
    verdict: str = "",
) -> None:
    from onnxdoctor.report import render_github, render_markdown, to_json

    if output_format == "json":
        click.echo(to_json(as_dict()))
    elif output_format == "github":
        text = render_github(findings)
        if text:
            click.echo(text)
    elif output_format == "markdown":
        click.echo(render_markdown(title, findings, verdict))
    else:
        click.echo(as_table())
