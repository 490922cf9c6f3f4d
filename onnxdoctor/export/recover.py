"""What went wrong with an export attempt (a class), and which recovery strategies that class calls for.

The exporter's messages and TracerWarnings (the worker's export.log) and the verdict of inspect + replay
+ verify are classified; each class maps to strategies tried in order, each a patch of the first
attempt's settings. A strategy that cannot give a working decoder (dropping dynamic axes freezes the
cache length: step 1 no longer fits) is listed as refused with its reason and never run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FailureClass:
    name: str
    pattern: re.Pattern[str] | None  # matched against the exporter's log; None: set from a verdict
    meaning: str
    strategies: tuple[str, ...]


def _rx(text: str) -> re.Pattern[str]:
    return re.compile(text, re.IGNORECASE)


CLASSES: tuple[FailureClass, ...] = (
    FailureClass("unordered-map-key", _rx(r"invalid unordered_map<K, T> key"),
                 "the legacy TorchScript exporter lost track of a value (control flow, in-place ops or a cache object in the trace)",
                 ("other-exporter", "eager-attention", "no-constant-folding", "other-opset")),
    FailureClass("unsupported-operator", _rx(r"UnsupportedOperatorError|Unsupported: ONNX export of|to ONNX opset version \d+ is not supported|No symbolic function|not supported by the exporter|DispatchError"),
                 "an operator the exporter cannot translate at this opset",
                 ("other-exporter", "other-opset", "eager-attention")),
    FailureClass("dynamic-shape", _rx(r"Constraints violated|GuardOnDataDependentSymNode|data-dependent|Could not guard|dynamic_shapes|specialized to a constant|symbolic shape|Dim\.DYNAMIC"),
                 "the exporter could not keep an axis dynamic (a guard on a symbolic size or on data)",
                 ("other-exporter", "eager-attention", "other-opset")),
    FailureClass("too-large", _rx(r"2\s?GB|2GiB|exceeds maximum protobuf size|larger than (the )?2|Failed to serialize proto"),
                 "the model is above protobuf's 2 GB limit (one .onnx message cannot hold its weights)",
                 ("external-data", "no-post-process")),
    FailureClass("post-processing", _rx(r"post-processing of the ONNX export failed"),
                 "optimum's post-processing (tied-weight de-duplication, decoder merging) failed after the export itself succeeded",
                 ("no-post-process",)),
    FailureClass("tracer-warning-bool", _rx(r"TracerWarning: Converting a tensor to a Python (boolean|index|integer|float|number)"),
                 "the trace took one branch of Python control flow on a tensor: the export holds that branch for every input",
                 ("other-exporter", "eager-attention", "no-constant-folding")),
    FailureClass("tracer-warning-mask", _rx(r"TracerWarning:.*(mask|causal|sliding)"),
                 "mask construction was traced at one shape",
                 ("eager-attention", "other-exporter")),
    FailureClass("tracer-warning", _rx(r"TracerWarning"),
                 "the trace may not generalize to other inputs",
                 ("other-exporter", "eager-attention")),
    FailureClass("timeout-or-crash", None, "the exporter hung or died",
                 ("other-exporter", "other-opset")),
    FailureClass("replay-fails", None, "the export loads but inspect + replay find errors",
                 ("other-exporter", "eager-attention", "no-constant-folding", "other-opset")),
    FailureClass("departs-at-decode", None, "the export runs but verify finds it departs from the source",
                 ("other-exporter", "eager-attention", "no-constant-folding", "other-opset")),
)
BY_NAME = {c.name: c for c in CLASSES}

REFUSED = {
    "no-dynamic-axes": "dropping dynamic axes freezes the batch, sequence and cache lengths at the export-time values: "
                       "step 1 (one new token, a longer cache) no longer fits, so it cannot yield a working decoder",
}


def library_tracer_warning(line: str) -> bool:
    """A TracerWarning raised inside an installed library (transformers, torch): optimum's own exports of healthy
    models carry several (transformers' cache and mask code), so alone they say nothing about this attempt; a
    departure they cause is still caught by verify (departs-at-decode)."""
    return "TracerWarning" in line and ("site-packages" in line or "dist-packages" in line)


def classify(log: str, *, result: str, verdict: str | None = None) -> list[str]:
    """Classes seen in an attempt: the log's first, then what its result or verdict says."""
    log = "\n".join(line for line in log.splitlines() if not library_tracer_warning(line))
    found = [c.name for c in CLASSES if c.pattern is not None and c.pattern.search(log)]
    if any(name.startswith("tracer-warning-") for name in found) and "tracer-warning" in found:
        found.remove("tracer-warning")
    if result in ("timeout",) or (result == "failed" and not found and "exited with -" in (verdict or "")):
        found.append("timeout-or-crash")
    if verdict == "replay":
        found.append("replay-fails")
    elif verdict == "verify":
        found.append("departs-at-decode")
    return found


def strategy_settings(name: str, exporter: str, base: dict[str, Any], tried_exporters: set[str]) -> tuple[str, dict[str, Any], str] | None:
    """(attempt name, settings, why) of strategy `name` for this exporter; None where it does not apply."""
    if exporter == "torch":
        if name == "other-exporter":
            dynamo = not base.get("dynamo", False)
            label = "dynamo" if dynamo else "legacy"
            if label in tried_exporters:
                return None
            opset = max(base.get("opset") or 18, 18) if dynamo else base.get("opset")
            return label, {**base, "dynamo": dynamo, "opset": opset}, f"the other exporter ({'torch.export-based dynamo' if dynamo else 'legacy TorchScript trace'})"
        if name == "other-opset":
            opset = 18 if (base.get("opset") or 17) < 18 else 17
            if base.get("dynamo") and opset < 18:
                opset = 20
            return f"opset-{opset}", {**base, "opset": opset}, "another opset"
        if name == "no-constant-folding" and not base.get("dynamo"):
            return "no-constant-folding", {**base, "constant_folding": False}, "constant folding can freeze shape arithmetic"
        if name == "external-data":
            return "external-data", {**base, "dynamo": True, "opset": max(base.get("opset") or 18, 18), "external_data": True}, "weights in external data files (over 2 GB)"
        return None  # eager-attention is a transformers setting: not a factory's
    if name == "other-opset":
        opset = 17 if (base.get("opset") or 18) != 17 else 18
        return f"opset-{opset}", {**base, "opset": opset}, "another opset"
    if name == "no-constant-folding":
        return "no-constant-folding", {**base, "constant_folding": False}, "constant folding can freeze shape arithmetic"
    if name == "eager-attention":
        return "eager-attention", {**base, "attn_implementation": "eager"}, "transformers' eager attention: explicit mask arithmetic the exporter traces faithfully (no SDPA fast paths)"
    if name == "external-data":
        return None  # optimum's exporter writes external data by itself above 2 GB
    if name == "no-post-process" and not base.get("no_post_process"):
        # optimum's post-processing (tied-weight de-duplication, decoder merging) loads the export whole and saves it as
        # one protobuf: past 2 GB that fails ("Failed to serialize proto") although the exporter's own files were fine
        return "no-post-process", {**base, "no_post_process": True}, "optimum without post-processing: the exporter's external-data files stand as written"
    return None  # optimum has one exporter (the legacy trace)
