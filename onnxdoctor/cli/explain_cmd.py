"""`onnxdoctor explain CODE`: a rule's page with fixed headings (ruff style)."""

from __future__ import annotations

import textwrap

import click


@click.command("explain")
@click.argument("code")
def explain_command(code: str) -> None:
    """Explain a rule: what it detects, why it breaks decoding, an example, the fix, its safety."""
    from onnxdoctor.errors import UsageError
    from onnxdoctor.findings import all_rules, get_rule

    rule = get_rule(code)
    if rule is None:
        known = ", ".join(r.code for r in all_rules())
        raise UsageError(f"unknown rule code {code!r}; known codes: {known}")
    sections = [
        ("What it detects", rule.what or rule.summary),
        ("Why it breaks decoding", rule.why),
        ("Example", rule.example),
        ("Fix", rule.fix),
        ("Fix safety", rule.fix_safety),
    ]
    click.echo(f"{rule.code} {rule.name} (default severity: {rule.severity.value})\n")
    for title, body in sections:
        click.echo(f"## {title}")
        click.echo(textwrap.fill(body or "-", 96))
        click.echo()
