"""Static inspectors: one module each, pure functions of a Context yielding Findings.

A module declares its rules and decorates its check with `@inspector`; importing this package
imports every module in it, so adding a check needs no central switch.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable
from typing import overload

from onnxdoctor.context import Context
from onnxdoctor.findings import Finding

Check = Callable[[Context], Iterable[Finding]]
Prepare = Callable[[Context], None]
# (qualified name, check, needs inferred shapes, what it can do before the shapes are known)
_CHECKS: list[tuple[str, Check, bool, Prepare | None]] = []


@overload
def inspector(check: Check) -> Check: ...
@overload
def inspector(*, needs_shapes: bool, prepare: Prepare | None = None) -> Callable[[Check], Check]: ...


def inspector(check: Check | None = None, *, needs_shapes: bool = False, prepare: Prepare | None = None) -> Check | Callable[[Check], Check]:
    """Register a check; it runs once per model file of a bundle.

    `needs_shapes`: the check asks the graph view for inferred shapes. Such checks run after all the
    others, so the shape inference that loading started in the background (model.proto.InferenceJob)
    has the others' time to finish. `prepare`: the part of such a check that needs no shapes, which
    the engine runs while the inference is still running.
    """

    def register(function: Check) -> Check:
        _CHECKS.append((f"{function.__module__}.{function.__qualname__}", function, needs_shapes, prepare))
        return function

    return register(check) if check is not None else register


def registered_checks(*, needs_shapes: bool | None = None) -> list[tuple[str, Check]]:
    """Every check (or those that do / do not need inferred shapes), those that need shapes last."""
    ordered = sorted(_CHECKS, key=lambda entry: entry[2])  # stable: registration order otherwise
    return [(name, check) for name, check, shapes, _prepare in ordered if needs_shapes is None or shapes == needs_shapes]


def registered_preparations() -> list[Prepare]:
    """The shape-free first halves of the checks that need shapes."""
    return [prepare for _name, _check, shapes, prepare in _CHECKS if shapes and prepare is not None]


def _import_all() -> None:
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")


_import_all()
