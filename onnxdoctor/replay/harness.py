"""Replay: decode step 0 -> step N with ONNX Runtime under the reference protocol, checking every step.

"Run it the right way in Python first": if this passes, the model decodes correctly and a failing
client feeds it differently; if it fails, the finding says which step, which node and why.
Feeds are checked against the signature before each call (as Polygraphy's runners do), so a
mismatch lists every wrong input instead of ORT's first one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from onnxdoctor import __version__
from onnxdoctor.context import Context
from onnxdoctor.driver.backend import DeclaredMismatch, FeedsRejected, OrtBackend
from onnxdoctor.driver.decode import DecodeStep, config_pad_ids, config_vocab, decode, encode, prompt_tokens, without_ids
from onnxdoctor.engine import InspectReport
from onnxdoctor.errors import UsageError
from onnxdoctor.findings import Finding, Location, Severity, earliest_error, sort_findings
from onnxdoctor.model import roles
from onnxdoctor.model.contract import build_contract
from onnxdoctor.model.graph import GraphView
from onnxdoctor.model.signature import Signature, axis_roles
from onnxdoctor.numerics.envelope import Drift, Envelope, envelope_for, judge, widened
from onnxdoctor.numerics.metrics import Comparison, compare_logits, position_sensitivity
from onnxdoctor.replay import dumps, oracles
from onnxdoctor.replay.localize import localize
from onnxdoctor.replay.protocol import DecodeState, Scenario, build_feeds, cache_shape, describe_shapes, plan_scenarios, vocab_size

Progress = Callable[[str], None]

# numerics.position_sensitivity of healthy decoders (bench/bench_envelope.py measures it in every regime)
# and the floor under which logits are reported as not depending on the input (ODX407).
SENSITIVITY_HEALTHY = 0.3
SENSITIVITY_FLOOR = 0.01


def _refusal_note(finding: Finding) -> str:
    missing = finding.evidence.get("missing_inputs") or []
    lacking = f" (the graph has no {', '.join(missing)})" if missing else ""
    return (
        f"not replayed: no file of this export computes the cross-attention cache {finding.location.file} takes"
        f"{lacking}; replay will not invent a cache the model must compute ({finding.code})"
    )


@dataclass
class ReplayOptions:
    steps: int = 4  # decode steps after step 0
    batch: int = 2
    prompt_len: int = 4
    chunk: int | None = None  # tokens per decode step; None: 1, with one 2-token step
    seed: int = 0
    provider: str = "cpu"
    encoder_len: int = 5
    record: Path | None = None
    record_format: str = "npz"  # npz | json | safetensors | pb (replay/dumps.py)

    def schedule(self) -> list[int]:
        """New tokens per step: the prompt, then 1 per step with step 2 chunked (swapped concats show only there)."""
        if self.chunk is not None:
            return [self.prompt_len] + [self.chunk] * self.steps
        counts = [1] * self.steps
        if self.steps >= 2:
            counts[1] = 2
        return [self.prompt_len] + counts


@dataclass
class StepRecord:
    scenario: str
    step: int
    file: str
    new_tokens: int
    past_len: int
    feeds: dict[str, list[int]] = field(default_factory=dict)
    outputs: dict[str, list[int]] = field(default_factory=dict)
    present_expected: int | None = None
    present_seen: int | None = None
    max_diff_uncached: float | None = None
    scaled_uncached: float | None = None  # max_diff_uncached / the logits' spread (numerics.compare_logits)
    seconds: float = 0.0
    verdict: str = "ok"

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class ExportShapes:
    """The sizes an export was traced with, read back from its fixed dims: the shapes its own user ran first.

    A trace without dynamic axes (or with sizes baked into Reshape targets) works at exactly these
    sizes at step 0 and fails at the first step that grows the cache; replaying inside them first
    reproduces what the user saw before the general protocol says what else fails.
    """

    batch: int
    prompt_len: int
    past_len: int
    fixed: list[tuple[str, int, int]]  # (tensor or node, axis or entry, value) the sizes were read from
    source: str  # where: "static input dims" and/or "baked Reshape targets"

    def describe(self) -> str:
        past = f", past {self.past_len}" if self.past_len else ""
        return f"batch {self.batch}, {self.prompt_len} token{'s' if self.prompt_len != 1 else ''}{past}"


@dataclass
class ScenarioResult:
    scenario: Scenario
    steps: list[StepRecord] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    logits: list[np.ndarray] = field(default_factory=list)  # new-token logits per step
    export_shapes: ExportShapes | None = None  # set on the pass that replays inside the export-time shapes

    @property
    def protocol(self) -> str:
        return "export-time shapes" if self.export_shapes is not None else "general"

    def describe(self) -> str:
        if self.export_shapes is None:
            return self.scenario.describe()
        return f"{self.scenario.describe()}, inside the export-time shapes ({self.export_shapes.describe()})"


@dataclass
class ReplayReport:
    path: str
    options: ReplayOptions
    results: list[ScenarioResult]
    findings: list[Finding]
    static_findings: list[Finding]
    # every logits comparison (cached vs uncached, padded vs alone): step, scaled drift, top-k, envelope
    comparisons: list[dict[str, Any]] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if any(f.severity is Severity.ERROR for f in self.findings) else 0

    def counts(self) -> dict[str, int]:
        return {s.value: sum(1 for f in self.findings if f.severity is s) for s in Severity}

    def _first_error(self) -> Finding | None:
        """The error the user hit: the export-time-shapes pass's first, else the earliest of the general protocol."""
        own = [f for f in self.findings if f.evidence.get("protocol") == EXPORT_SHAPES]
        return earliest_error(own) or earliest_error(self.findings)

    def _export_shapes_verdict(self) -> str:
        """What the export-time-shapes pass showed, in the user's terms: which step passed, which failed and why."""
        parts = []
        for result in self.results:
            shapes = result.export_shapes
            if shapes is None or not result.steps:
                continue
            failed = next((s for s in result.steps if s.verdict != "ok"), None)
            passed = [s.step for s in result.steps if s.verdict == "ok"]
            where = f"With the export-time shapes of {result.scenario.step0.file} ({shapes.describe()})"
            if failed is None:
                parts.append(f"{where} every replayed step passes; other shapes fail (below).")
                continue
            finding = next(
                (f for f in self.findings if f.evidence.get("protocol") == EXPORT_SHAPES and f.location.step == failed.step and f.severity is Severity.ERROR),
                None,
            )
            because = f" because {_failure_cause(finding)}" if finding is not None else f" ({failed.verdict})"
            if passed:
                steps = "step 0 passes" if passed == [0] else f"steps {', '.join(map(str, passed))} pass"
                tested = "step 0" if passed == [0] else f"steps 0-{passed[-1]}"
                parts.append(
                    f"{where} {steps}; step {failed.step} fails{because}. A client that tests only {tested} at these shapes "
                    "gets a false green."
                )
            else:
                parts.append(f"{where} step {failed.step} already fails{because}.")
        return " ".join(parts)

    def verdict(self) -> str:
        first = self._first_error()
        told = self._export_shapes_verdict()
        if told and first is not None:
            general = earliest_error([f for f in self.findings if f.evidence.get("protocol") != EXPORT_SHAPES])
            beyond = (
                f" Under the general protocol (a {self.options.prompt_len}-token prompt, then a growing cache) "
                f"it fails at step {general.location.step}: {general.code} {general.name}."
                if general is not None and general.location.step is not None
                else ""
            )
            where = f" at step {first.location.step}" if first.location.step is not None else ""
            return (
                f"{told} The model is broken{where}: {first.code} {first.name}.{beyond} "
                "No client can decode it correctly until it is fixed."
            )
        if first is None:
            steps = self.options.steps
            return (
                f"The model decodes correctly under the reference protocol ({steps} steps after the prompt, batch "
                f"{self.options.batch}, cached == uncached at every step"
                + (" within the precision envelope of its regime, see ODX408" if any(f.code == oracles.PRECISION_NOISE.code for f in self.findings) else "")
                + "). If your client fails, it feeds the model "
                "differently: see `onnxdoctor contract PATH` and check its feeds with `onnxdoctor check-feeds`."
            )
        where = f" at step {first.location.step}" if first.location.step is not None else ""
        return f"{told + ' ' if told else ''}The model is broken{where}: {first.code} {first.name}. No client can decode it correctly until it is fixed."

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": 1,
            "tool": {"name": "onnxdoctor", "version": __version__},
            "command": "replay",
            "path": self.path,
            "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in self.options.__dict__.items()},
            "scenarios": [
                {
                    "name": r.scenario.name,
                    "description": r.describe(),
                    "protocol": r.protocol,
                    "export_shapes": None if r.export_shapes is None else {
                        "batch": r.export_shapes.batch, "prompt_len": r.export_shapes.prompt_len, "past_len": r.export_shapes.past_len,
                        "source": r.export_shapes.source,
                        "fixed": [{"name": n, "axis": a, "value": v} for n, a, v in r.export_shapes.fixed],
                    },
                    "notes": r.notes,
                    "steps": [s.to_dict() for s in r.steps],
                }
                for r in self.results
            ],
            "comparisons": self.comparisons,
            "summary": self.counts(),
            "verdict": self.verdict(),
            "findings": [f.to_dict() for f in self.findings],
        }


EXPORT_SHAPES = "export-time shapes"


def _failure_cause(finding: Finding) -> str:
    """Why a step failed, in a few words: the fixed dims that refused the feeds, else the node."""
    mismatches = finding.evidence.get("mismatches")
    if mismatches:
        # the cache length first: it is what every decode loop must grow, whatever prompt it feeds
        groups: dict[tuple[bool, Any, Any], list[str]] = {}
        for m in sorted(mismatches, key=lambda m: not m.get("cache")):
            if m.get("axis") is not None:
                groups.setdefault((bool(m.get("cache")), m["axis"], m["expected"]), []).append(str(m["input"]))
        fixed = [
            f"{names[0]}{f' (and {len(names) - 1} more cache inputs)' if cache and len(names) > 1 else ''} axis {axis} is fixed to {value}"
            + ("".join(f", {name} axis {axis} is fixed to {value}" for name in names[1:]) if not cache else "")
            for (cache, axis, value), names in groups.items()
        ]
        if fixed:
            return "; ".join(fixed[:4]) + (f" (+{len(fixed) - 4} more)" if len(fixed) > 4 else "")
    node = finding.evidence.get("node")
    if node:
        provenance = finding.evidence.get("provenance") or []
        why = f": {provenance[0]}" if provenance else f" ({finding.code})"
        return f"{finding.evidence.get('op') or 'its'} node {node!r} fails{why}"
    return f"{finding.code} {finding.name}"


def _baked_sizes(evidence: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(batch | sequence, target entry, value) an ODR201 Reshape target holds for the traced sizes.

    The tracer names the entries it could tie to a batch or sequence dim of the data. Past a batch
    entry at 0, an activation [batch, tokens, ...] keeps its token axis at 1: a constant entry there
    facing a symbolic data dim the tracer could not name is the traced token count.
    """
    sizes: list[tuple[str, int, int]] = []
    named = {b.get("index"): b for b in evidence.get("baked", []) if isinstance(b.get("value"), int)}
    for index, entry in named.items():
        if entry.get("stands_for") in ("batch", "sequence"):
            sizes.append((str(entry["stands_for"]), int(index), int(entry["value"])))
    data, target = evidence.get("data_shape") or [], evidence.get("target") or []
    batch_first = named.get(0, {}).get("stands_for") == "batch"
    if batch_first and 1 not in named and len(data) > 1 and len(target) > 1 and isinstance(target[1], int):
        if not str(data[1]).lstrip("-").isdigit() and target[1] > 0:
            sizes.append(("sequence", 1, int(target[1])))
    return sizes


def _drift_evidence(comparison: Comparison, envelope: Envelope, **extra: Any) -> dict[str, Any]:
    """What a divergence finding carries: the numbers, the absolute allowance and the envelope that judged them."""
    return {
        "max_abs_diff": comparison.max_abs,
        "allowed": envelope.scaled * comparison.spread,
        "comparison": comparison.to_dict(),
        "envelope": envelope.name,
        **extra,
    }


class Replayer:
    """Runs every scenario of an export under the reference protocol and collects findings."""

    def __init__(self, report: InspectReport, options: ReplayOptions, progress: Progress | None = None) -> None:
        if options.steps < 1 or options.batch < 1 or options.prompt_len < 1 or (options.chunk is not None and options.chunk < 1):
            raise UsageError("--steps, --batch, --prompt-len and --chunk must be at least 1")
        self.report = report
        self.options = options
        self.progress = progress or (lambda _message: None)
        self.backend = OrtBackend({r.signature.file: r.model_file.path for r in report.files}, options.provider)
        self.runtime = self.backend.runtime  # sessions for localizing failures in extracted sub-models
        self.findings: list[Finding] = []
        self._noise: dict[tuple[str, str], tuple[int, Comparison, Envelope]] = {}
        self._self_noise: dict[str, float] = {}  # file -> largest drift of the prompt's logits between two of its runs
        self._comparisons: list[dict[str, Any]] = []  # every logits comparison, for the report and bench/
        self._vocab = config_vocab(report.path)
        self._avoid = config_pad_ids(report.path)  # drawn tokens are never a pad id (see config_pad_ids)
        self._pass: ExportShapes | None = None  # set while replaying inside the export-time shapes

    # ------------------------------------------------------------------ helpers

    def _context(self, signature: Signature) -> Context:
        """The inspectors' context of this file: inspect already built its graph view and present tracing."""
        file_report = next(r for r in self.report.files if r.signature.file == signature.file)
        assert file_report.context is not None, "replay takes a report made by engine.inspect_bundle"
        return file_report.context

    def _view(self, signature: Signature) -> GraphView:
        return self._context(signature).graph

    def _envelope(self, signature: Signature) -> Envelope:
        """The tolerance envelope of the regime this file computes in (fp32, fp16, int8 dynamic, QDQ, ...),
        widened to this model's own measured noise where that noise depends on the call (dynamic int8)."""
        regime = self._context(signature).regime
        return widened(envelope_for(regime), regime, max(self._self_noise.values(), default=0.0))

    def _judge(self, signature: Signature, check: str, step: int, comparison: Comparison) -> Drift:
        """Judge one comparison by the file's envelope; noise is remembered for one info finding per check."""
        envelope = self._envelope(signature)
        drift = judge(comparison, envelope)
        self._comparisons.append(
            {"file": signature.file, "check": check, "step": step, "envelope": envelope.name, "drift": drift.value, **comparison.to_dict()}
        )
        if drift is Drift.NOISE:
            key = (signature.file, check)
            worst = self._noise.get(key)
            if worst is None or comparison.scaled > worst[1].scaled:
                self._noise[key] = (step, comparison, envelope)
        return drift

    def _noise_findings(self) -> None:
        """One info finding per file and check whose drift stayed inside a reduced-precision envelope."""
        what = {"cache": "cached vs uncached logits", "padding": "the left-padded row vs the same row alone"}
        for (file, check), (step, comparison, envelope) in sorted(self._noise.items()):
            if any(f.location.file == file and f.code == (oracles.CACHE_DIVERGENCE.code if check == "cache" else oracles.PADDING_DIVERGENCE.code) for f in self.findings):
                continue  # a defect on the same check says more than its noise
            self._add(
                oracles.PRECISION_NOISE.finding(
                    f"{what[check]} differ by up to {comparison.max_abs:.3g} (step {step}): {comparison.scaled:.3g} x the "
                    f"logits' spread, inside the {envelope.describe()}; top-1 agreement {comparison.top1:.0%}. "
                    "Precision noise of this regime, not a defect",
                    Location(file, "output", None, None, step),
                    evidence={"check": check, "comparison": comparison.to_dict(), "envelope": envelope.name, "envelope_scaled": envelope.scaled},
                )
            )

    def _run_sub(self, model: Any, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        session = self.runtime.session_from_model(model)
        names = [o.name for o in session.get_outputs()]
        return dict(zip(names, session.run(names, feeds)))

    def _add(self, finding: Finding) -> None:
        """Record a finding; value oracles report only the first step where an output goes wrong
        (later steps inherit the damage). Findings of the export-time-shapes pass say so, in the message and evidence."""
        if self._pass is not None:
            finding = replace(
                finding,
                message=f"with the export-time shapes ({self._pass.describe()}): {finding.message}",
                evidence={**finding.evidence, "protocol": EXPORT_SHAPES, "export_shapes": self._pass.describe()},
            )
        if finding.code in (oracles.NON_FINITE.code, oracles.FP16_RANGE.code, oracles.CACHE_DIVERGENCE.code):
            key = (finding.code, finding.location.file, finding.location.name)
            if any((f.code, f.location.file, f.location.name) == key for f in self.findings):
                return
        self.findings.append(finding)

    # ------------------------------------------------------------------ checks

    def _feeds_rejected(self, scenario: Scenario, signature: Signature, rejected: list[DeclaredMismatch], step: int) -> None:
        """Feeds that do not fit the declared inputs: all mismatches at once (ORT names only the first)."""
        mismatches: list[dict[str, Any]] = []
        for found in rejected:
            tensor = signature.tensor(found.input)
            mismatches.append(
                {"input": found.input, "axis": found.axis, "got": found.got, "expected": found.expected, "cache": bool(tensor and tensor.cache is not None)}
            )
        shown = "; ".join(
            f"{m['input']}{' axis ' + str(m['axis']) if m['axis'] is not None else ''}: got {m['got']}, declared {m['expected']}"
            for m in mismatches[:4]
        ) + (f" (+{len(mismatches) - 4} more)" if len(mismatches) > 4 else "")
        first = mismatches[0]
        self._add(
            oracles.STEP_FAILED.finding(
                f"step {step}: the reference feeds do not fit {len(mismatches)} declared inputs of {signature.file}, "
                f"so ONNX Runtime rejects the call: {shown}. The protocol feeds back what the model returned and "
                "grows the cache each step, so these declarations are the problem (see ODA10x, ODS003)",
                Location(signature.file, "input", str(first["input"]), first["axis"] if isinstance(first["axis"], int) else None, step),
                evidence={"mismatches": mismatches, "scenario": scenario.name},
                remedy={"export_setting": "dynamic_axes", "inputs": sorted({str(m["input"]) for m in mismatches})},
            )
        )

    def _check_outputs(self, signature: Signature, outputs: dict[str, np.ndarray], step: int, past_len: int, new: int, record: StepRecord, use_cache: bool) -> None:
        kv = signature.kv
        if kv is not None:
            for pair in kv.self_pairs():
                if pair.present is None or pair.axes is None or pair.present.name not in outputs:
                    continue
                value = outputs[pair.present.name]
                if value.ndim <= pair.axes.cache:
                    continue
                seen = int(value.shape[pair.axes.cache])
                expected = past_len + new if use_cache or kv.mode != "merged" else new
                record.present_expected, record.present_seen = expected, seen
                if seen != expected:
                    record.verdict = "wrong present length"
                    self._add(
                        oracles.PRESENT_LENGTH.finding(
                            f"step {step}: {pair.present.name} has cache length {seen} on axis {pair.axes.cache}, expected "
                            f"{expected} ({past_len} cached + {new} new)",
                            Location(signature.file, "output", pair.present.name, pair.axes.cache, step),
                            evidence={"observed": seen, "expected": expected, "past_len": past_len, "new_tokens": new},
                        )
                    )
                    break
        for name, value in outputs.items():
            tensor = signature.tensor(name)
            if tensor is None or (tensor.cache is not None and tensor.cache.attention == "cross"):
                continue
            bad = oracles.non_finite_count(value)
            if bad:
                record.verdict = "non-finite"
                self._add(
                    oracles.NON_FINITE.finding(
                        f"step {step}: {name} has {bad} NaN/Inf values out of {value.size}",
                        Location(signature.file, "output", name, None, step),
                        evidence={"non_finite": bad, "size": int(value.size)},
                    )
                )
            if value.dtype == np.float16 and value.size:
                peak = float(np.max(np.abs(value[np.isfinite(value)]))) if np.isfinite(value).any() else 0.0
                if peak > oracles.FP16_LIMIT:
                    self._add(
                        oracles.FP16_RANGE.finding(
                            f"step {step}: float16 output {name} reaches {peak:.0f}, close to the float16 limit 65504",
                            Location(signature.file, "output", name, None, step),
                            evidence={"max_abs": peak, "limit": 65504},
                        )
                    )

    # ------------------------------------------------------------------ decoding

    def _decode(
        self,
        scenario: Scenario,
        tokens: np.ndarray,
        mask: np.ndarray,
        schedule: list[int],
        *,
        check: bool,
        rng: np.random.Generator,
        prefilled: int = 0,
    ) -> ScenarioResult:
        """Run the schedule through the decode driver; with check=False only logits are collected (the padding
        reference). The oracles observe each step; cached == uncached is judged once the decode is done."""
        result = ScenarioResult(scenario)
        state = DecodeState(tokens[:, : prefilled + schedule[0]], mask[:, : prefilled + schedule[0]])
        encode(scenario, self.backend, state, tokens.shape[0], self.options.encoder_len, self._vocab, rng)
        cached: list[tuple[StepRecord, DecodeStep]] = []  # steps to hold against the uncached reference
        for step in decode(scenario, self.backend, tokens, mask, schedule, rng=rng, state=state, prefilled=prefilled):
            signature = step.signature
            record = StepRecord(scenario.name, step.step, signature.file, step.new, step.past_len, describe_shapes(step.feeds))
            record.seconds = step.seconds
            if step.error is not None:
                record.verdict = "feeds rejected" if isinstance(step.error, FeedsRejected) else "failed"
                result.steps.append(record)
                if check and isinstance(step.error, FeedsRejected):
                    self._feeds_rejected(scenario, signature, step.error.mismatches, step.step)
                elif check:
                    self._step_failed(scenario, signature, step.feeds, step.step, str(step.error), missing_pasts=step.missing_pasts)
                break
            assert step.outputs is not None
            record.outputs = describe_shapes(step.outputs)
            logits = step.logits()
            if logits is not None:
                result.logits.append(logits)
            if check:
                past_len = step.past_len if not step.recompute else 0
                self._check_outputs(signature, step.outputs, step.step, past_len, step.fed_new, record, step.use_cache)
                if step.step > 0 and logits is not None and scenario.uncached is not None and not step.recompute:
                    cached.append((record, step))
                if self.options.record is not None:
                    self._record(step.step, step.feeds, step.outputs)
            result.steps.append(record)
        if cached:
            self._compare_uncached(scenario, cached, rng, prefill=result.logits[0])
        return result

    def _uncached_logits(self, scenario: Scenario, state: DecodeState, rng: np.random.Generator, step: int) -> np.ndarray | None:
        """Logits of every position of `state`'s tokens, recomputed without a cache (None: the run failed)."""
        reference = scenario.uncached
        assert reference is not None
        feeds = build_feeds(reference, state, state.tokens.shape[1], pasts=None, use_cache=False, rng=rng)
        try:
            outputs = self.backend.infer(reference, feeds)
        except Exception as exc:  # noqa: BLE001 - runtimes raise many types; FeedsRejected included
            self._step_failed(scenario, reference, feeds, step, str(exc), uncached=True)
            return None
        logits_tensor = reference.output(roles.LOGITS)
        return outputs.get(logits_tensor.name) if logits_tensor is not None else None

    def _compare_uncached(
        self, scenario: Scenario, cached: list[tuple[StepRecord, DecodeStep]], rng: np.random.Generator, *, prefill: np.ndarray
    ) -> None:
        """Every cached step against an uncached recompute of the same tokens.

        A causal model's logits at a position depend on the tokens up to it only, so one recompute of the
        whole decoded sequence serves every step; exports that return the last position's logits only
        are recomputed once per step.
        """
        reference = scenario.uncached
        assert reference is not None
        logits_tensor = reference.output(roles.LOGITS)
        if logits_tensor is None:
            return
        last_record, last = cached[-1]
        assert last.state is not None
        full = self._uncached_logits(scenario, last.state, rng, last.step) if logits_tensor.rank != 2 else None
        if full is None and logits_tensor.rank != 2:
            last_record.verdict = "uncached run failed"
            return
        if full is not None and full.ndim == 3 and prefill.ndim == 3 and full.shape[0] == prefill.shape[0]:
            # the prompt's logits twice, from step 0 and from the recompute: equal in exact arithmetic whatever
            # the cache does, so their difference is this model's own noise (numerics.envelope)
            noise = compare_logits(full[:, : prefill.shape[1]], prefill)
            self._self_noise[reference.file] = max(noise.scaled, self._self_noise.get(reference.file, 0.0))
            self._comparisons.append({"file": reference.file, "check": "self-noise", "step": last.step, **noise.to_dict()})
        for record, step in cached:
            observed = step.logits()
            assert observed is not None and step.state is not None
            if full is not None and full.ndim == 3:
                end = step.state.tokens.shape[1]
                expected = full[:, end - step.new : end]
            else:
                recomputed = self._uncached_logits(scenario, step.state, rng, step.step)
                if recomputed is None:
                    record.verdict = "uncached run failed"
                    return
                expected = recomputed[:, -step.new :] if recomputed.ndim == 3 else recomputed
            if expected.shape != observed.shape:
                continue
            self._judge_cached(scenario, record, step, compare_logits(observed, expected))

    def _judge_cached(self, scenario: Scenario, record: StepRecord, step: DecodeStep, comparison: Comparison) -> None:
        reference = scenario.uncached
        assert reference is not None and step.state is not None
        logits_tensor = reference.output(roles.LOGITS)
        record.max_diff_uncached = comparison.max_abs
        record.scaled_uncached = comparison.scaled
        if self._judge(reference, "cache", step.step, comparison) is Drift.DEFECT:
            record.verdict = "diverged"
            envelope = self._envelope(reference)
            new = step.new
            self._add(
                oracles.CACHE_DIVERGENCE.finding(
                    f"step {step.step} ({new} new token{'s' if new > 1 else ''}, {step.state.tokens.shape[1] - new} cached): cached "
                    f"logits differ from an uncached recompute of the same tokens: {comparison.describe()}; outside the "
                    f"{envelope.describe()} of this {self._context(reference).regime.kind} model",
                    Location(scenario.stepn.file if scenario.stepn else None, "output", logits_tensor.name if logits_tensor else None, None, step.step),
                    evidence=_drift_evidence(comparison, envelope, new_tokens=new, reference=reference.file),
                )
            )

    def _step_failed(
        self,
        scenario: Scenario,
        signature: Signature,
        feeds: dict[str, np.ndarray],
        step: int,
        message: str,
        uncached: bool = False,
        missing_pasts: list[str] | None = None,
    ) -> None:
        place = localize(message, scenario.path(signature), self._view(signature), feeds, self._run_sub)
        details = []
        if place.input_shapes:
            details.append("Its inputs were " + ", ".join(f"{k} {v}" for k, v in place.input_shapes.items()))
        if place.input_values:
            details.append("values " + ", ".join(f"{k} = {v}" for k, v in place.input_values.items()))
        if place.provenance:
            details.append("; ".join(place.provenance))
        what = "the uncached reference run" if uncached else "the step"
        node = f" in {place.op} node {place.node!r}" + (f" ({place.graph})" if place.graph and place.graph != "main" else "") if place.node else ""
        if missing_pasts:
            details.append(
                f"no present output feeds {', '.join(missing_pasts)}, so the protocol could only feed an empty cache there (see ODS002)"
            )
        self._add(
            oracles.STEP_FAILED.finding(
                f"step {step}: {what} failed{node}: {place.summary().rstrip('.')}." + (" " + "; ".join(details) + "." if details else ""),
                Location(signature.file, "node" if place.node else "graph", place.node, None, step),
                evidence={
                    "ort_message": place.message.strip()[:2000],
                    "node": place.node,
                    "op": place.op,
                    "graph": place.graph,
                    "input_shapes": place.input_shapes,
                    "input_values": place.input_values,
                    "provenance": place.provenance,
                    "feeds": describe_shapes(feeds),
                    "note": place.note,
                },
            )
        )

    def _record(self, step: int, feeds: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> None:
        folder = self.options.record
        assert folder is not None
        fmt = self.options.record_format
        if fmt == "pb":  # the ONNX test-data layout: feeds and outputs of a step in one folder
            dumps.write_dump(folder, f"test_data_set_{step}", feeds, fmt)
            dumps.write_dump(folder, f"test_data_set_{step}", outputs, fmt, outputs_of_step=f"test_data_set_{step}")
            return
        dumps.write_dump(folder, f"step{step}", feeds, fmt)
        dumps.write_dump(folder, f"step{step}_outputs", outputs, fmt)

    # ------------------------------------------------------------------ entry

    def _adapt(self, scenario: Scenario, result_notes: list[str]) -> ReplayOptions:
        """Options for one scenario: a batch or encoder length fixed at export is used, not fought.

        Those are deliberate export choices more often than not (ODA101/ODA105 say so as warnings);
        the cache and sequence axes must grow, so they are never adapted.
        """
        options = ReplayOptions(**self.options.__dict__)
        signature = scenario.step0
        static_batch = {t.dims[0].value for t in signature.inputs if t.dims and t.role in (roles.INPUT_IDS, roles.ATTENTION_MASK) and t.dims[0].is_static}
        if len(static_batch) == 1 and options.batch != next(iter(static_batch)):
            options.batch = int(next(iter(static_batch)) or 1)
            result_notes.append(f"batch {options.batch}: the model's batch axis is fixed to it (see ODA101)")
        encoder_lengths = {
            t.dims[1].value
            for s in (scenario.step0, scenario.stepn) if s
            for t in s.inputs
            if t.dims and len(t.dims) > 1 and t.role in (roles.ENCODER_HIDDEN_STATES, roles.ENCODER_ATTENTION_MASK) and t.dims[1].is_static
        }
        if len(encoder_lengths) == 1:
            options.encoder_len = int(next(iter(encoder_lengths)) or 1)
            result_notes.append(f"encoder length {options.encoder_len}: fixed in the model (see ODA105)")
        uses_gqa = any("GroupQueryAttention" in s.contrib_attention_ops for s in (scenario.step0, scenario.stepn) if s)
        if uses_gqa and options.batch > 1 and self.options.chunk is None:
            options.chunk = 1
            result_notes.append(
                "no chunked step: ONNX Runtime's GroupQueryAttention needs batch 1 for several new tokens with a past "
                "(use --batch 1 --chunk 2 to exercise chunked decoding)"
            )
        return options

    def _export_shapes(self, scenario: Scenario) -> ExportShapes | None:
        """The trace-time sizes, when the export fixed a sequence, total or cache length (or baked one into a Reshape).

        A fixed batch alone is adapted by `_adapt` and changes nothing here; only a length that must
        grow between steps makes the user's step 0 pass and their step 1 fail.
        """
        signatures = [s for s in {id(s): s for s in (scenario.step0, scenario.stepn) if s}.values()]
        found: dict[str, set[int]] = {"batch": set(), "sequence": set(), "total": set(), "cache": set()}
        fixed: list[tuple[str, int, int]] = []
        lengths = False
        for signature in signatures[:1]:  # the step-0 file: what the user calls first
            for tensor in signature.inputs:
                if tensor.role == roles.POSITION_IDS or (tensor.cache is not None and tensor.cache.attention == "cross"):
                    continue  # positions follow input_ids; an encoder length is adapted, not grown
                for axis, meaning in axis_roles(signature, tensor).items():
                    dim = tensor.dims[axis] if tensor.dims is not None else None
                    if dim is None or not dim.is_static or meaning not in found:
                        continue
                    found[meaning].add(int(dim.value or 0))
                    if meaning != "batch":
                        lengths = True
                        fixed.append((tensor.name, axis, int(dim.value or 0)))
        sources = ["static input dims"] if lengths else []
        files = {s.file for s in signatures}
        baked = [f for f in self.report.findings if f.code == "ODR201" and f.location.file in files]
        for finding in baked:
            for meaning, index, value in _baked_sizes(finding.evidence):
                found[meaning].add(value)
                fixed.append((f"Reshape {finding.location.name}", index, value))
        if baked and any(f[0].startswith("Reshape ") for f in fixed):
            sources.append("baked Reshape targets")
        if not sources:
            return None
        if any(len(values) > 1 for values in found.values()):
            return None  # the fixed dims disagree with each other: no single export-time shape to reproduce
        batch = next(iter(found["batch"]), self.options.batch)
        past = next(iter(found["cache"]), None)
        prompt = next(iter(found["sequence"]), None)
        total = next(iter(found["total"]), None)
        if prompt is None:
            prompt = total - (past or 0) if total is not None and total > (past or 0) else self.options.prompt_len
        if past is None:
            past = total - prompt if total is not None and total >= prompt else 0
        if scenario.stepn is None:
            past = 0  # no cache: every step feeds the whole sequence
        if batch < 1 or prompt < 1:
            return None
        return ExportShapes(batch, prompt, past, fixed, " and ".join(sources))

    def _replay_export_shapes(self, scenario: Scenario, shapes: ExportShapes) -> ScenarioResult:
        """The reference protocol inside the export-time shapes: the user's own first run, one token per step after the prompt."""
        self.progress(f"replaying {scenario.describe()} inside the export-time shapes ({shapes.describe()})")
        configured = self.options
        self.options = ReplayOptions(**{**configured.__dict__, "batch": shapes.batch, "prompt_len": shapes.prompt_len})
        notes: list[str] = []
        self.options = self._adapt(scenario, notes)
        self.options.batch, self.options.prompt_len = shapes.batch, shapes.prompt_len
        schedule = [shapes.prompt_len] + [1] * self.options.steps
        rng = np.random.default_rng(self.options.seed)
        vocab = vocab_size(scenario.step0, self._vocab)
        tokens = without_ids(rng.integers(0, vocab, (shapes.batch, shapes.past_len + sum(schedule))).astype(np.int64), self._avoid, vocab)
        mask = np.ones_like(tokens)
        mask[:, : shapes.past_len] = 0
        self._pass = shapes
        # an uncached recompute of the whole sequence is longer than any export-time shape: the general pass does it
        inside = replace(scenario, uncached=None)
        try:
            result = self._decode(
                inside, tokens, mask, schedule, check=True, rng=np.random.default_rng(self.options.seed + 1), prefilled=shapes.past_len
            )
        finally:
            self._pass = None
            self.options = configured
        result.export_shapes = shapes
        read = ", ".join(f"{name} {'entry' if name.startswith('Reshape ') else 'axis'} {axis} = {value}" for name, axis, value in shapes.fixed[:4])
        more = f" (+{len(shapes.fixed) - 4} more)" if len(shapes.fixed) > 4 else ""
        result.notes.append(f"export-time shapes from the {shapes.source}: {read}{more}")
        if shapes.past_len:
            hidden = "hidden by the attention mask" if scenario.step0.input(roles.ATTENTION_MASK) else "(no attention_mask can hide it)"
            result.notes.append(f"step 0 feeds a zero past of length {shapes.past_len} {hidden}: the cache length is fixed at export")
        result.notes.append("cached == uncached is checked by the general pass: a recompute of the whole sequence exceeds these shapes")
        result.notes.extend(n for n in notes if not n.startswith("batch "))
        return result

    def _refuse_static_cache(self, scenario: Scenario) -> None:
        """A preallocated cache updated in place needs another protocol (cache_position writes); say so, do not misjudge it."""
        for signature in (scenario.step0, scenario.stepn):
            if signature is None or signature.kv is None:
                continue
            if self._context(signature).static_cache:
                raise UsageError(
                    f"{signature.file} keeps a fixed-size cache updated in place (presents are scattered into the pasts "
                    "at cache_position): replay does not implement that protocol yet; `inspect` and `contract` apply"
                )

    def run(self) -> ReplayReport:
        scenarios = plan_scenarios(self.report)
        for scenario in scenarios:
            self._refuse_static_cache(scenario)
            for signature in (scenario.step0, scenario.stepn):
                for pair in signature.kv.pairs if signature is not None and signature.kv is not None else []:
                    if pair.past is not None:
                        cache_shape(pair, pair.past, 1, 0)  # a cache replay cannot build is unusable input: say it now
        if self.options.record is not None:
            self._prepare_record(scenarios)
        results = []
        for scenario in scenarios:  # unloadable files are unusable input: say so before any progress
            for signature in {s.file: s for s in (scenario.step0, scenario.stepn, scenario.uncached, scenario.encoder) if s}.values():
                self.runtime.session(scenario.path(signature))
        configured = self.options
        for scenario in scenarios:
            refusal = self._uncomputed_cross_cache(scenario)
            if refusal is not None:  # the model must compute this cache; inventing one would prove nothing
                self._add(refusal)
                results.append(ScenarioResult(scenario, notes=[_refusal_note(refusal)]))
                continue
            shapes = self._export_shapes(scenario)
            if shapes is not None:
                results.append(self._replay_export_shapes(scenario, shapes))
            self.progress(f"replaying {scenario.describe()}")
            notes: list[str] = self._cache_notes(scenario)
            self.options = self._adapt(scenario, notes)
            rng = np.random.default_rng(self.options.seed)
            schedule = self.options.schedule()
            tokens, mask, pad = prompt_tokens(scenario, self.options.batch, schedule, self._vocab, rng, self._avoid)
            result = self._decode(scenario, tokens, mask, schedule, check=True, rng=np.random.default_rng(self.options.seed + 1))
            result.notes.extend(notes)
            if scenario.encoder is None and any(t.role == roles.ENCODER_HIDDEN_STATES for t in scenario.step0.inputs):
                result.notes.append("no encoder_model.onnx next to the decoder: encoder states are seeded random")
            if pad:
                self._check_padding(scenario, tokens, mask, pad, schedule, result)
            else:
                result.notes.append("padding check skipped: needs batch >= 2 and a decoder-only model with attention_mask and position_ids")
            self._check_sensitivity(scenario, result)
            results.append(result)
        self.options = configured
        self._noise_findings()
        # the user's own shapes first; a general-protocol finding that repeats one of them adds nothing
        seen = {(f.code, f.location) for f in self.findings if f.evidence.get("protocol") == EXPORT_SHAPES}
        kept = [f for f in self.findings if f.evidence.get("protocol") == EXPORT_SHAPES or (f.code, f.location) not in seen]
        findings = sorted(sort_findings(kept), key=lambda f: (f.severity.rank, f.evidence.get("protocol") != EXPORT_SHAPES))
        return ReplayReport(self.report.path, self.options, results, findings, self.report.findings, self._comparisons)

    def _check_sensitivity(self, scenario: Scenario, result: ScenarioResult) -> None:
        """Logits that hardly move across positions and tokens: a model that no longer reads its input."""
        if len(result.logits) < 2 or any(s.verdict == "failed" for s in result.steps):
            return
        rows = [step.reshape(-1, step.shape[-1]) for step in result.logits if step.size]
        sensitivity = position_sensitivity(np.concatenate(rows, axis=0)) if rows else float("inf")
        if sensitivity < SENSITIVITY_FLOOR:
            logits = result.scenario.step0.output(roles.LOGITS)
            self._add(
                oracles.LOGITS_INSENSITIVE.finding(
                    f"over {sum(r.shape[0] for r in rows)} decoded positions the logits "
                    + ("are the same vector at every position" if sensitivity == 0 else f"move by only {sensitivity:.2g} x their spread across the vocabulary")
                    + f" (healthy decoders measure {SENSITIVITY_HEALTHY} or more): the output hardly depends on the tokens "
                    f"({self._context(result.scenario.step0).regime.kind} model: {self._context(result.scenario.step0).regime.describe()})",
                    Location(result.scenario.step0.file, "output", logits.name if logits else None, None, None),
                    evidence={"position_sensitivity": sensitivity, "floor": SENSITIVITY_FLOOR, "positions": sum(r.shape[0] for r in rows)},
                )
            )

    def _uncomputed_cross_cache(self, scenario: Scenario) -> Finding | None:
        """ODS014 for a scenario whose cross-attention cache replay would have to synthesize: no file of the export
        computes it, so the model cannot decode and a made-up cache would hide that."""
        from onnxdoctor.inspectors.export_folder import cross_gap_finding

        if scenario.name != "single" or scenario.stepn is None or scenario.stepn.kv is None or not scenario.stepn.kv.cross_pairs():
            return None
        return cross_gap_finding(self._context(scenario.stepn))

    def _cache_notes(self, scenario: Scenario) -> list[str]:
        """What replay had to assume about the cache, said in the scenario's notes."""
        export = self._context(scenario.step0).export
        kv = scenario.step0.kv
        notes = []
        if scenario.name == "single" and kv is not None and any(p.past is not None for p in kv.cross_pairs()):
            notes.append(
                "cross-attention cache synthesized (seeded random): no file replayed here computes it; replay the whole "
                "export folder to use the real one"
            )
        if scenario.stepn is None and kv is not None and kv.mode == "no_past" and export is not None and export.presents_taker(scenario.step0) is None:
            notes.append(
                "decoded without a cache (the whole prefix every step): no file of this export takes the presents back "
                "as past inputs (see ODS015)"
            )
        return notes

    def _check_padding(self, scenario: Scenario, tokens: np.ndarray, mask: np.ndarray, pad: int, schedule: list[int], result: ScenarioResult) -> None:
        if len(result.logits) < len(schedule):
            return  # the padded run failed already
        solo_schedule = [schedule[0] - pad] + schedule[1:]
        solo = self._decode(scenario, tokens[1:2, pad:], mask[1:2, pad:], solo_schedule, check=False, rng=np.random.default_rng(self.options.seed + 1))
        for step, (batched, alone) in enumerate(zip(result.logits, solo.logits)):
            row = batched[1:2, -alone.shape[1]:] if batched.ndim == 3 else batched[1:2]
            if row.shape != alone.shape:
                continue
            signature = scenario.step0 if step == 0 else (scenario.stepn or scenario.step0)
            comparison = compare_logits(row, alone)
            if self._judge(signature, "padding", step, comparison) is Drift.DEFECT:
                envelope = self._envelope(signature)
                self._add(
                    oracles.PADDING_DIVERGENCE.finding(
                        f"step {step}: row 1 (left-padded by {pad}) differs from the same tokens decoded alone: "
                        f"{comparison.describe()}; outside the {envelope.describe()}",
                        Location(signature.file, "output", None, None, step),
                        evidence=_drift_evidence(comparison, envelope, padding=pad),
                    )
                )
                return

    def _prepare_record(self, scenarios: list[Scenario]) -> None:
        folder = self.options.record
        assert folder is not None
        if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
            raise UsageError(f"--record {folder}: the folder exists and is not empty; give a new folder")
        target = Path(self.report.path).resolve()
        record = folder.resolve()
        inside = record == target or target in record.parents if target.is_dir() else record == target.parent
        if inside:
            raise UsageError(f"--record {folder} would write into the model's folder: onnxdoctor never writes into or over your model")
        if len(scenarios) > 1:
            raise UsageError(
                f"--record needs one decoding scenario, this export has {len(scenarios)} "
                f"({', '.join(s.describe() for s in scenarios)}): pick one with --file"
            )
        folder.mkdir(parents=True, exist_ok=True)
        contract = []
        for file_report in self.report.files:
            step0, stepn = build_contract(file_report.signature)
            contract.append({"file": file_report.signature.file, "step0": step0.to_dict(), "stepn": stepn.to_dict()})
        (folder / "contract.json").write_text(json.dumps({"schema": 1, "files": contract, "options": {"steps": self.options.steps, "schedule": self.options.schedule(), "format": self.options.record_format}}, indent=2))
