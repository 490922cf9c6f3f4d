"""Backends run one call of a model file; the decode driver decides what each call is fed.

Like Polygraphy's runners, a backend has a lifecycle (activate, infer, deactivate, as a context
manager), `infer` checks the feeds against the file's declared inputs before the backend runs (so
a mismatch lists every wrong input instead of the runtime's first one), and every call records its
own time, so comparisons read timings from the backends, not from a stopwatch around them.
Adding a backend (CUDA, another runtime) is one subclass implementing `infer_impl`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from onnxdoctor.model.signature import Signature


@dataclass(frozen=True)
class DeclaredMismatch:
    """One fed array that does not fit its declared input."""

    input: str
    axis: int | None
    got: Any
    expected: Any


class FeedsRejected(Exception):
    """The feeds of a call do not fit the file's declared inputs; the backend was not run."""

    def __init__(self, mismatches: list[DeclaredMismatch]) -> None:
        super().__init__(f"{len(mismatches)} feeds do not fit their declared inputs")
        self.mismatches = mismatches


def declared_mismatches(signature: Signature, feeds: dict[str, np.ndarray]) -> list[DeclaredMismatch]:
    """Every fed array against its declared input: dtype, rank, fixed dims (all of them at once)."""
    from onnxdoctor.replay.protocol import declaration_mismatches

    found: list[DeclaredMismatch] = []
    for tensor in signature.inputs:
        value = feeds.get(tensor.name)
        if value is None:
            continue
        for mismatch in declaration_mismatches(tensor, value):
            expected = str(mismatch.expected) if mismatch.kind == "rank" else mismatch.expected
            found.append(DeclaredMismatch(tensor.name, mismatch.axis, mismatch.observed, expected))
    return found


@dataclass
class Timing:
    """Inference time a backend measured for its own calls."""

    calls: int = 0
    seconds: float = 0.0
    per_call: list[float] = field(default_factory=list)


class Backend:
    """One way to run the files of an export: ONNX Runtime, a PyTorch model, ..."""

    name = "backend"
    check_declarations = True  # a PyTorch source has no declared input shapes to hold feeds against

    def __init__(self) -> None:
        self.timing = Timing()
        self.active = False

    # lifecycle -----------------------------------------------------------------
    def activate(self) -> None:
        if not self.active:
            self.activate_impl()
            self.active = True

    def deactivate(self) -> None:
        if self.active:
            self.deactivate_impl()
            self.active = False

    def __enter__(self) -> Backend:
        self.activate()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.deactivate()

    # one call ------------------------------------------------------------------
    def infer(self, signature: Signature, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Check the feeds against `signature`, run the call, record its time."""
        self.activate()
        if self.check_declarations:
            mismatches = declared_mismatches(signature, feeds)
            if mismatches:
                raise FeedsRejected(mismatches)
        started = time.perf_counter()
        try:
            return self.infer_impl(signature, feeds)
        finally:
            elapsed = time.perf_counter() - started
            self.timing.calls += 1
            self.timing.seconds += elapsed
            self.timing.per_call.append(elapsed)

    # for subclasses ------------------------------------------------------------
    def activate_impl(self) -> None:
        """Load what the backend needs (sessions, a model)."""

    def deactivate_impl(self) -> None:
        """Release it."""

    def infer_impl(self, signature: Signature, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError


class OrtBackend(Backend):
    """ONNX Runtime: one session per model file, created on first use and reused."""

    name = "onnxruntime"

    def __init__(self, paths: dict[str, Path], provider: str = "cpu", *, optimize: bool = False, threads: int | None = None) -> None:
        super().__init__()
        from onnxdoctor.replay.runtime import Runtime

        self.paths = paths
        self.runtime = Runtime(provider, optimize=optimize, threads=threads)

    def prepare(self, signature: Signature) -> None:
        """Create the file's session now (unloadable models are unusable input: said before any progress)."""
        self.runtime.session(self.paths[signature.file])

    def infer_impl(self, signature: Signature, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.runtime.run(self.paths[signature.file], feeds)

    def deactivate_impl(self) -> None:
        self.runtime.close()
