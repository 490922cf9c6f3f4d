"""Findings are data: what was seen in a model, where, what was expected, and how to fix it.

Each Finding comes from a Rule with a permanent code (ODS001, ODA102, ...). Rules are declared next
to the check that emits them (one module per inspector), never in a central switch; the registry
below only collects them so `rules` and `explain` can list every code.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any


class Severity(str, Enum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        """Sort key: errors first."""
        return {"error": 0, "warning": 1, "info": 2}[self.value]


LOCATION_KINDS = ("input", "output", "node", "graph", "feed")


@dataclass(frozen=True)
class Location:
    """Where a finding points: a file and an input, output, node, the graph, or a client feed."""

    file: str | None = None
    kind: str = "graph"
    name: str | None = None
    axis: int | None = None
    step: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in LOCATION_KINDS:
            raise ValueError(f"location kind must be one of {LOCATION_KINDS}, not {self.kind!r}")

    def describe(self) -> str:
        """Short human form: `input past_key_values.0.key axis 2 (step 1)`."""
        parts = [self.kind]
        if self.name:
            parts.append(self.name)
        if self.axis is not None:
            parts.append(f"axis {self.axis}")
        text = " ".join(parts)
        if self.step is not None:
            text += f" (step {self.step})"
        return text


@dataclass(frozen=True)
class Finding:
    code: str
    name: str
    severity: Severity
    message: str
    location: Location
    evidence: dict[str, Any] = field(default_factory=dict)
    fix: str = ""
    remedy: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["severity"] = self.severity.value
        return data


@dataclass(frozen=True)
class Rule:
    """A permanent check: its code and name never change meaning; its page feeds `explain`."""

    code: str
    name: str
    severity: Severity
    summary: str
    what: str = ""
    why: str = ""
    example: str = ""
    fix: str = ""
    fix_safety: str = ""

    def finding(
        self,
        message: str,
        location: Location,
        *,
        evidence: dict[str, Any] | None = None,
        fix: str | None = None,
        remedy: dict[str, Any] | None = None,
        severity: Severity | None = None,
    ) -> Finding:
        """A Finding of this rule; `fix` defaults to the rule's general fix."""
        return Finding(
            code=self.code,
            name=self.name,
            severity=severity or self.severity,
            message=message,
            location=location,
            evidence=dict(evidence or {}),
            fix=self.fix if fix is None else fix,
            remedy=remedy,
        )


_RULES: dict[str, Rule] = {}


def register(rule: Rule) -> Rule:
    """Declare a rule once, at import of the module that checks it."""
    existing = _RULES.get(rule.code)
    if existing is not None and existing != rule:
        raise ValueError(f"rule code {rule.code} declared twice ({existing.name}, {rule.name})")
    _RULES[rule.code] = rule
    return rule


def all_rules() -> list[Rule]:
    """Every declared rule, by code; imports the inspectors so their rules are declared."""
    import onnxdoctor.fidelity.trace  # noqa: F401  (declares rules on import)
    import onnxdoctor.inspectors  # noqa: F401
    import onnxdoctor.replay.feedcheck  # noqa: F401
    import onnxdoctor.replay.oracles  # noqa: F401

    return [_RULES[code] for code in sorted(_RULES)]


def get_rule(code: str) -> Rule | None:
    all_rules()
    return _RULES.get(code.upper())


def sort_findings(findings: list[Finding]) -> list[Finding]:
    """Errors first, then by file, code and location, so reports are stable."""
    return sorted(
        findings,
        key=lambda f: (
            f.severity.rank,
            f.location.file or "",
            f.code,
            f.location.step if f.location.step is not None else -1,
            f.location.name or "",
        ),
    )


def earliest_error(findings: list[Finding]) -> Finding | None:
    """The error at the earliest step (static errors, without a step, first): what a verdict names."""
    errors = [f for f in findings if f.severity is Severity.ERROR]
    if not errors:
        return None
    return min(errors, key=lambda f: f.location.step if f.location.step is not None else -1)
