"""Two decodes of the same tokens, compared step by step and layer by layer; the rules for what that shows.

verify (export vs its PyTorch source) and compare (export vs export) both produce two lists of
driver steps fed the same tokens; this module measures every step (logits: scaled difference, top-1 /
top-5, greedy choice; every present: scaled difference per layer), finds the first departure and
turns it into findings (ODV7xx).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from onnxdoctor.driver.decode import DecodeStep
from onnxdoctor.findings import Finding, Location, Rule, Severity, register
from onnxdoctor.numerics.envelope import Drift, Envelope, judge
from onnxdoctor.numerics.metrics import Comparison, compare_logits

DEPARTS = register(
    Rule(
        "ODV701",
        "departs-from-source",
        Severity.ERROR,
        "the export's logits depart from the model it was exported from",
        what="Fed the same tokens as the PyTorch source (greedy tokens of the source, both teacher-forced), the "
        "export's logits differ beyond the precision envelope of its regime from the first step on; the finding "
        "names the step and the first layer whose present key/value departs.",
        why="Every self-check (cached vs uncached, padded vs alone) passes for an export that is consistently wrong: "
        "exported from another checkpoint, a converter pass that changed the math, a layer that computes something "
        "else. Only the source can tell.",
        example="Step 0: max |diff| 0.41 = 3.2 x the logits' spread (fp32 envelope 0.001); present.0.key departs "
        "first (2.1 x its spread): layer 0 already computes something else.",
        fix="Re-export from the checkpoint you verify against; if it is the right one, look at the first departing "
        "layer (onnxdoctor view --node) and at any graph pass applied after export.",
        fix_safety="Re-exporting is safe; verify again.",
    )
)

ADAPTER_MISSING = register(
    Rule(
        "ODV702",
        "adapter-not-in-export",
        Severity.ERROR,
        "the export matches the base model, not the base with the LoRA adapter merged",
        what="The export departs from the adapter-merged source but agrees with the base model run without the "
        "adapter: the fine-tuning is not in the export.",
        why="Exporting the base checkpoint (or a PeftModel whose adapter was never merged) gives a model that runs, "
        "passes every self-check and silently behaves like the untuned base.",
        example="Against base + adapter: 0.9 x the logits' spread at step 0; against the base: 2e-7.",
        fix="Merge the adapter before exporting (`PeftModel.from_pretrained(base, adapter).merge_and_unload()`, then "
        "export the merged model), or run `onnxdoctor fix --source BASE --adapter ADAPTER`.",
        fix_safety="Safe: the merged export is verified again.",
    )
)

DEPARTS_LATER = register(
    Rule(
        "ODV703",
        "departs-after-tokens",
        Severity.ERROR,
        "the export agrees with its reference for the first N tokens and departs after",
        what="Step 0 and the following steps agree within the envelope; from some step on (a total number of tokens) "
        "the logits depart.",
        why="A departure that starts late points at something that only matters past a length: a sliding window the "
        "export does not implement, a position limit, a cache that is truncated, a rope scaling baked at a length.",
        example="Agrees for 8 tokens, departs at step 5 (9 tokens): 0.6 x the logits' spread.",
        fix="Check the model's sliding_window / max_position_embeddings against the export; re-export with an "
        "exporter version that implements the window, or decode within the length that agrees.",
        fix_safety="Depends on the cause.",
    )
)

DRIFT = register(
    Rule(
        "ODV704",
        "drift-within-envelope",
        Severity.INFO,
        "the export differs from its reference, within the envelope of its precision",
        what="The logits differ by more than float32 rounding but stay inside the measured envelope of the export's "
        "regime (fp16, int8, int4 ...) against a float32 reference.",
        why="Reduced precision costs accuracy by design; the numbers (scaled difference, top-1 agreement, greedy "
        "agreement) say how much.",
        example="int4 block 32: up to 0.2 x the logits' spread, top-1 agreement 94%, greedy tokens agree for 8 steps.",
        fix="Nothing to fix; a tighter regime (per-channel int8, a smaller block size, fp16) costs less.",
        fix_safety="Not applicable.",
    )
)

EXPORTS_DISAGREE = register(
    Rule(
        "ODV705",
        "exports-disagree",
        Severity.ERROR,
        "two exports of one model disagree beyond the envelope of the less precise one",
        what="`onnxdoctor compare A B`: fed A's greedy tokens, B's logits differ from A's beyond the envelope of "
        "the less precise regime of the two.",
        why="An optimizer pass, a quantization or a second exporter changed the math, not only the precision.",
        example="fp32 vs int8 dynamic: 1.4 x the logits' spread at step 0 (int8-dynamic envelope 0.5).",
        fix="Verify each against the source (`onnxdoctor verify`) to see which one departs.",
        fix_safety="Not applicable.",
    )
)


@dataclass
class StepDrift:
    """How one step of the observed run compares with the same step of the reference."""

    step: int
    tokens: int  # tokens in the sequence after this step
    logits: Comparison | None
    greedy_agrees: bool | None  # same argmax at the last position of every row
    presents: dict[str, float] = field(default_factory=dict)  # present name -> scaled difference
    drift: str = "exact"
    first_layer: str | None = None  # the lowest layer whose present departs

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "tokens": self.tokens,
            "logits": self.logits.to_dict() if self.logits else None,
            "greedy_agrees": self.greedy_agrees,
            "presents": {k: round(v, 8) for k, v in self.presents.items()},
            "drift": self.drift,
            "first_departing_present": self.first_layer,
        }


def _real_positions(value: np.ndarray, mask: np.ndarray | None, batch_axis: int, cache_axis: int) -> np.ndarray:
    """The entries at attended positions only ([positions, ...]): padded positions hold whatever a runtime
    computes for tokens nobody reads, and differ between correct implementations."""
    moved = np.moveaxis(value, [batch_axis, cache_axis], [0, 1])
    if mask is None or mask.shape != moved.shape[:2]:
        return moved.reshape(-1, *moved.shape[2:])
    return moved[mask.astype(bool)]


def scaled_tensor_difference(
    observed: np.ndarray, expected: np.ndarray, axes: tuple[int, int] | None = None, mask: np.ndarray | None = None
) -> float:
    """max |observed - expected| / std(expected), over attended positions when `axes` (batch, cache) and the
    attention `mask` are given; caches of different lengths (a sliding window) are compared on their common tail."""
    if axes is not None and observed.ndim == expected.ndim and observed.ndim > max(axes):
        batch_axis, cache_axis = axes
        keep = min(observed.shape[cache_axis], expected.shape[cache_axis])
        observed = np.take(observed, range(observed.shape[cache_axis] - keep, observed.shape[cache_axis]), axis=cache_axis)
        expected = np.take(expected, range(expected.shape[cache_axis] - keep, expected.shape[cache_axis]), axis=cache_axis)
        tail = mask[:, mask.shape[1] - keep :] if mask is not None and mask.shape[1] >= keep else None
        if observed.shape == expected.shape:
            observed = _real_positions(observed, tail, batch_axis, cache_axis)
            expected = _real_positions(expected, tail, batch_axis, cache_axis)
    if observed.shape != expected.shape:
        return float("inf")
    if observed.size == 0:
        return 0.0
    a, b = observed.astype(np.float64), expected.astype(np.float64)
    finite = np.isfinite(a) & np.isfinite(b)
    if not finite.any():
        return 0.0
    diff = float(np.max(np.abs(a - b)[finite]))
    scale = max(float(np.std(b[finite])), 1e-6 * max(1.0, float(np.max(np.abs(b[finite])))))
    return diff / scale


def _attended_logits(logits: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """[rows, vocab] of the positions the mask attends (left padding's logits are nobody's)."""
    if mask is None:
        return logits.reshape(-1, logits.shape[-1])
    if logits.ndim == 3:
        real = mask[:, -logits.shape[1] :].astype(bool)
        return logits[real] if real.shape == logits.shape[:2] else logits.reshape(-1, logits.shape[-1])
    real = mask[:, -1].astype(bool)
    return logits[real] if real.shape[0] == logits.shape[0] else logits


def _layer_key(name: str, step: DecodeStep) -> tuple[int, int, str]:
    kv = step.signature.kv
    pair = next((p for p in kv.pairs if p.present is not None and p.present.name == name), None) if kv else None
    if pair is None:
        return (10**6, 0, name)
    return (pair.layer, 0 if pair.attention == "self" else 1, pair.part)


def compare_steps(reference: list[DecodeStep], observed: list[DecodeStep], envelope: Envelope) -> list[StepDrift]:
    """Step by step: logits and every present both runs returned (by name), judged by `envelope`."""
    rows: list[StepDrift] = []
    for ref, obs in zip(reference, observed):
        if ref.outputs is None or obs.outputs is None:
            break
        ref_logits, obs_logits = ref.logits(), obs.logits()
        comparison = None
        greedy = None
        mask = obs.state.mask if obs.state is not None else None
        if ref_logits is not None and obs_logits is not None and ref_logits.shape == obs_logits.shape:
            comparison = compare_logits(_attended_logits(obs_logits, mask), _attended_logits(ref_logits, mask))
            last_r = ref_logits[:, -1] if ref_logits.ndim == 3 else ref_logits
            last_o = obs_logits[:, -1] if obs_logits.ndim == 3 else obs_logits
            greedy = bool(np.array_equal(np.argmax(last_r, axis=-1), np.argmax(last_o, axis=-1)))
        row = StepDrift(obs.step, obs.state.tokens.shape[1] if obs.state is not None else 0, comparison, greedy)
        kv = obs.signature.kv
        for pair in kv.pairs if kv else []:
            name = pair.present.name if pair.present is not None else None
            if name is None or name not in obs.outputs or name not in ref.outputs:
                continue
            if pair.attention == "cross" and obs.use_cache:
                continue  # a merged decoder's cache branch returns placeholders for the cross cache
            axes = (pair.axes.batch, pair.axes.cache) if pair.axes is not None else None
            row.presents[name] = scaled_tensor_difference(
                obs.outputs[name], ref.outputs[name], axes, mask if pair.attention == "self" else None
            )
        departing = sorted((n for n, v in row.presents.items() if v > envelope.scaled), key=lambda n: _layer_key(n, obs))
        row.first_layer = departing[0] if departing else None
        row.drift = (judge(comparison, envelope) if comparison is not None else Drift.EXACT).value
        if row.drift != Drift.DEFECT.value and departing and comparison is None:
            row.drift = Drift.DEFECT.value
        rows.append(row)
    return rows


def first_departure(rows: list[StepDrift]) -> StepDrift | None:
    return next((r for r in rows if r.drift == Drift.DEFECT.value), None)


def greedy_divergence(rows: list[StepDrift]) -> int | None:
    """The first step whose greedy choice differs."""
    return next((r.step for r in rows if r.greedy_agrees is False), None)


def departure_findings(
    rows: list[StepDrift], envelope: Envelope, file: str, logits_name: str | None, *, against: str, rule: Rule = DEPARTS
) -> list[Finding]:
    """ODV701/ODV703 (or `rule`) at the first departing step, or ODV704 when every step stays in the envelope."""
    departure = first_departure(rows)
    diverged = greedy_divergence(rows)
    if departure is None:
        noisy = [r for r in rows if r.drift == Drift.NOISE.value and r.logits is not None]
        if not noisy:
            return []
        worst = max(noisy, key=lambda r: r.logits.scaled if r.logits else 0.0)
        assert worst.logits is not None
        top1 = min(r.logits.top1 for r in rows if r.logits is not None)
        return [
            DRIFT.finding(
                f"against {against}: up to {worst.logits.max_abs:.3g} ({worst.logits.scaled:.3g} x the logits' spread, step "
                f"{worst.step}) inside the {envelope.describe()}; top-1 agreement >= {top1:.0%}; greedy tokens "
                + ("agree at every step" if diverged is None else f"first differ at step {diverged}"),
                Location(file, "output", logits_name, None, worst.step),
                evidence={"steps": [r.to_dict() for r in rows], "envelope": envelope.name, "envelope_scaled": envelope.scaled},
            )
        ]
    later = departure.step > 0 and rule is DEPARTS
    agreed = rows[departure.step - 1].tokens if later else 0
    numbers = departure.logits.describe() if departure.logits else "the presents differ"
    layer = f"; {departure.first_layer} is the first present that departs ({departure.presents[departure.first_layer]:.3g} x its spread)" if departure.first_layer else ""
    changes_tokens = (departure.logits is not None and departure.logits.top1 < 1.0) or diverged is not None
    severity = Severity.ERROR if changes_tokens or departure.logits is None else Severity.WARNING
    consequence = (
        f"greedy tokens first differ at step {diverged}" if diverged is not None else
        ("the chosen tokens still agree" if not changes_tokens else "top-1 choices differ")
    )
    chosen = DEPARTS_LATER if later else rule
    where = (
        f"agrees with {against} for the first {agreed} tokens, then departs at step {departure.step} ({departure.tokens} tokens)"
        if later else f"step {departure.step}: departs from {against}"
    )
    return [
        chosen.finding(
            f"{where}: {numbers}, outside the {envelope.describe()}{layer}; {consequence}",
            Location(file, "output", departure.first_layer or logits_name, None, departure.step),
            evidence={
                "step": departure.step,
                "tokens": departure.tokens,
                "agreed_tokens": agreed,
                "first_layer": departure.first_layer,
                "greedy_divergence": diverged,
                "envelope": envelope.name,
                "envelope_scaled": envelope.scaled,
                "steps": [r.to_dict() for r in rows],
            },
            severity=severity,
        )
    ]

