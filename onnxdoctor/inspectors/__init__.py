"""Static inspectors: one module each, pure functions of a Context yielding Findings.

A module declares its rules and decorates its check with `@inspector`; importing this package
imports every module in it, so adding a check needs no central switch.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable

from onnxdoctor.context import Context
from onnxdoctor.findings import Finding

Check = Callable[[Context], Iterable[Finding]]
_CHECKS: list[tuple[str, Check]] = []


def inspector(check: Check) -> Check:
    """Register a check; it runs once per model file of a bundle."""
    _CHECKS.append((f"{check.__module__}.{check.__qualname__}", check))
    return check


def registered_checks() -> list[tuple[str, Check]]:
    return list(_CHECKS)


def _import_all() -> None:
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")


_import_all()
