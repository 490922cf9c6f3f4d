"""The one proof of an export attempt, shared by `fix` and `export`: inspect + replay, then verify.

An attempt is kept only when inspect + replay show its targeted findings gone and no new error
(`verdict.judge`), and, when the model it came from is at hand, verify finds no departure from it
(a trace that baked a Python number in agrees with itself, not with its source). `strict` (the
export pipeline) also refuses any remaining warning: a new export has no "before" to be better than.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onnxdoctor.errors import OnnxDoctorError, UnusableInputError
from onnxdoctor.findings import Severity
from onnxdoctor.recovery.verdict import judge

Progress = Callable[[str], None]


@dataclass
class Proof:
    """What proved (or refused) one attempt: the check that refused it, and the reports, for the caller's report."""

    failed: str | None  # None: proven; "replay": inspect + replay refused it; "verify": it departs from its source
    diagnosis: Any = None  # doctor.Report of the export (inspect + replay)
    fidelity: Any = None  # fidelity.verify.FidelityReport against the source, when one was given


def departures(report: Any) -> list[Any]:
    """What keeps an export from being kept or shipped: a departure outside the envelope, even where greedy
    tokens still agree (a sampling client sees other probabilities); drift inside the envelope (info) does not."""
    return [f for f in report.findings if f.severity in (Severity.ERROR, Severity.WARNING)]


def prove(
    attempt: Any,
    produced: Path,
    *,
    before_errors: Iterable[str] = (),
    source: str | None = None,
    adapter: str | None = None,
    steps: int = 2,
    replay_steps: int | None = None,
    strict: bool = False,
    progress: Progress | None = None,
) -> Proof:
    """Inspect + replay `produced`, judge it, then verify it against `source`; records the outcome on `attempt`.

    `steps`: decode steps of verify (and of replay unless `replay_steps` is given).

    `attempt` is a recovery.engine.Attempt: its result (kept | rejected | failed), reason, findings after,
    produced path and verify summary are set here. A source that verify cannot load is the user's input,
    not the attempt's fault: its UnusableInputError propagates (every attempt would fail the same way).
    """
    from onnxdoctor.doctor import diagnose
    from onnxdoctor.recovery.engine import decoder_signatures

    progress = progress or (lambda _m: None)
    attempt.produced = produced
    progress(f"attempt {attempt.index}: inspect + replay {produced}")
    try:
        after = diagnose(produced, steps=steps if replay_steps is None else replay_steps)
    except OnnxDoctorError as exc:  # e.g. ONNX Runtime cannot load the export: this attempt failed, not the engine
        attempt.result, attempt.reason = "failed", f"inspect + replay could not run on the export: {exc}"
        return Proof("replay")
    attempt.after = sorted({f.code for f in after.problems()})
    if attempt.settings.get("no_post_process") and any(s.kv is not None and s.kv.merged for s in decoder_signatures(after)):
        attempt.result, attempt.reason = "rejected", "the export still has a merged decoder"
        return Proof("replay", after)
    after_errors = {f.code for f in after.errors}
    kept, reason = judge(attempt.targets, set(before_errors), set(attempt.after), after_errors, safe=attempt.safe)
    if kept and strict and attempt.after:
        kept, reason = False, f"findings {', '.join(attempt.after)}"
    elif kept and not attempt.targets:  # a first export: nothing was targeted, so say what was seen
        reason = "no error" + ("" if attempt.after else " or warning") + ("; replay passes" if not after_errors else "")
    if not kept:
        attempt.result, attempt.reason = "rejected", f"inspect + replay: {reason}"
        return Proof("replay", after)
    attempt.reason = f"inspect + replay: {reason}"
    if source is None:
        attempt.result = "kept"
        return Proof(None, after)
    from onnxdoctor.fidelity.verify import FidelityOptions, verify

    progress(f"attempt {attempt.index}: verify against the source {source}")
    try:
        fidelity = verify(produced, source, adapter=adapter, options=FidelityOptions(steps=steps))
    except UnusableInputError as exc:
        if exc.path in (source, adapter) or (Path(exc.path).exists() and Path(exc.path).resolve() in {Path(p).resolve() for p in (source, adapter) if p}):
            raise
        return _unverified(attempt, exc, after)
    except OnnxDoctorError as exc:
        return _unverified(attempt, exc, after)
    failing = departures(fidelity)
    attempt.verified = {"verdict": fidelity.verdict(), "codes": sorted({f.code for f in fidelity.findings}), "exit_code": fidelity.exit_code}
    if failing:  # a re-export that departs from its source is not proven, even when no token changes
        attempt.after = sorted(set(attempt.after) | {f.code for f in failing})
        attempt.result = "rejected"
        attempt.reason = f"inspect + replay pass, but it departs from the source: {failing[0].code} {failing[0].message}"
        return Proof("verify", after, fidelity)
    attempt.result = "kept"
    attempt.reason += "; verify agrees with the source"
    return Proof(None, after, fidelity)


def _unverified(attempt: Any, exc: OnnxDoctorError, after: Any) -> Proof:
    """verify could not decode the export (its own failure, not the source's): not proven."""
    attempt.verified = {"error": str(exc)}
    attempt.result = "rejected"
    attempt.reason += f"; but verify could not decode the export: {exc}"
    return Proof("verify", after)
