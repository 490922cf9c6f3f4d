"""The one rule for keeping a fix, shared by the recovery engine and graph surgery's own verify."""

from __future__ import annotations

from collections.abc import Iterable


def judge(
    targets: Iterable[str], before_errors: set[str], after_problems: set[str], after_errors: set[str], *, safe: bool
) -> tuple[bool, str]:
    """(kept, reason): the targeted findings must be gone and no new error may appear; an unsafe fix
    is only proven by a model with no error left (a replay stopped by an older error exercised nothing)."""
    remaining = sorted(set(targets) & after_problems)
    new_errors = sorted(after_errors - before_errors)
    if remaining:
        return False, f"still has {', '.join(remaining)}"
    if not safe and after_errors:
        return False, f"unsafe fix not proven: replay still fails ({', '.join(sorted(after_errors))})"
    if new_errors:
        return False, f"new errors {', '.join(new_errors)}"
    return True, "targeted findings gone, no new error" + ("; replay passes" if not after_errors else "")
