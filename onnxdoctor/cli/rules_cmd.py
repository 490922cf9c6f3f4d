"""`onnxdoctor rules`: every check with its permanent code, name and default severity."""

from __future__ import annotations

import click

from onnxdoctor.cli.options import format_option


@click.command("rules")
@format_option(("table", "json"))
def rules_command(output_format: str) -> None:
    """List every rule (code, name, default severity, summary)."""
    from tabulate import tabulate

    from onnxdoctor.findings import all_rules
    from onnxdoctor.report import to_json

    rules = all_rules()
    if output_format == "json":
        click.echo(
            to_json(
                {
                    "schema": 1,
                    "rules": [
                        {"code": r.code, "name": r.name, "severity": r.severity.value, "summary": r.summary} for r in rules
                    ],
                }
            )
        )
        return
    rows = [[r.code, r.name, r.severity.value, r.summary] for r in rules]
    click.echo(tabulate(rows, headers=["code", "name", "severity", "detects"], tablefmt="simple"))
