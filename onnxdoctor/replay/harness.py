"""Replay: decode step 0 -> step N with ONNX Runtime under the reference protocol, checking every step.

"Run it the right way in Python first": if this passes, the model decodes correctly and a failing
client feeds it differently; if it fails, the finding says which step, which node and why.
Feeds are checked against the signature before each call (as Polygraphy's runners do), so a
mismatch lists every wrong input instead of ORT's first one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from onnxdoctor import __version__
from onnxdoctor.context import Context
from onnxdoctor.engine import InspectReport
from onnxdoctor.errors import UsageError
from onnxdoctor.findings import Finding, Location, Severity, earliest_error, sort_findings
from onnxdoctor.model import roles
from onnxdoctor.model.contract import build_contract
from onnxdoctor.model.dims import format_dims
from onnxdoctor.model.graph import GraphView
from onnxdoctor.model.signature import Signature, TensorSig
from onnxdoctor.replay import dumps, oracles
from onnxdoctor.replay.localize import localize
from onnxdoctor.replay.protocol import (
    DecodeState,
    Scenario,
    build_feeds,
    cache_shape,
    declaration_mismatches,
    describe_shapes,
    next_pasts,
    plan_scenarios,
    remap_pasts,
    vocab_size,
)
from onnxdoctor.replay.runtime import Runtime, numpy_dtype

Progress = Callable[[str], None]


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
    seconds: float = 0.0
    verdict: str = "ok"

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class ScenarioResult:
    scenario: Scenario
    steps: list[StepRecord] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    logits: list[np.ndarray] = field(default_factory=list)  # new-token logits per step


@dataclass
class ReplayReport:
    path: str
    options: ReplayOptions
    results: list[ScenarioResult]
    findings: list[Finding]
    static_findings: list[Finding]

    @property
    def exit_code(self) -> int:
        return 1 if any(f.severity is Severity.ERROR for f in self.findings) else 0

    def counts(self) -> dict[str, int]:
        return {s.value: sum(1 for f in self.findings if f.severity is s) for s in Severity}

    def verdict(self) -> str:
        first = earliest_error(self.findings)
        if first is None:
            steps = self.options.steps
            return (
                f"The model decodes correctly under the reference protocol ({steps} steps after the prompt, batch "
                f"{self.options.batch}, cached == uncached at every step). If your client fails, it feeds the model "
                "differently: see `onnxdoctor contract PATH` and check its feeds with `onnxdoctor check-feeds`."
            )
        where = f" at step {first.location.step}" if first.location.step is not None else ""
        return f"The model is broken{where}: {first.code} {first.name}. No client can decode it correctly until it is fixed."

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
                    "description": r.scenario.describe(),
                    "notes": r.notes,
                    "steps": [s.to_dict() for s in r.steps],
                }
                for r in self.results
            ],
            "summary": self.counts(),
            "verdict": self.verdict(),
            "findings": [f.to_dict() for f in self.findings],
        }


def _config_vocab(report: InspectReport) -> int | None:
    config = Path(report.path) / "config.json" if Path(report.path).is_dir() else Path(report.path).parent / "config.json"
    try:
        data = json.loads(config.read_text())
    except (OSError, ValueError):
        return None
    value = data.get("vocab_size") or data.get("decoder_vocab_size")
    return int(value) if isinstance(value, int) else None


class Replayer:
    """Runs every scenario of an export under the reference protocol and collects findings."""

    def __init__(self, report: InspectReport, options: ReplayOptions, progress: Progress | None = None) -> None:
        if options.steps < 1 or options.batch < 1 or options.prompt_len < 1 or (options.chunk is not None and options.chunk < 1):
            raise UsageError("--steps, --batch, --prompt-len and --chunk must be at least 1")
        self.report = report
        self.options = options
        self.progress = progress or (lambda _message: None)
        self.runtime = Runtime(options.provider)
        self.findings: list[Finding] = []
        self._half: dict[str, bool] = {}
        self._vocab = _config_vocab(report)

    # ------------------------------------------------------------------ helpers

    def _context(self, signature: Signature) -> Context:
        """The inspectors' context of this file: inspect already built its graph view and present tracing."""
        file_report = next(r for r in self.report.files if r.signature.file == signature.file)
        assert file_report.context is not None, "replay takes a report made by engine.inspect_bundle"
        return file_report.context

    def _view(self, signature: Signature) -> GraphView:
        return self._context(signature).graph

    def _reduced_precision(self, signature: Signature) -> bool:
        """Does the graph compute in fp16/bf16 inside (fp16 weights or casts), whatever its I/O dtype?"""
        if signature.file not in self._half:
            half = (onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16)
            view = self._view(signature)
            weights = any(t.data_type in half for scope in view.scopes for t in scope.initializers.values())
            casts = any(
                node.op_type == "Cast" and any(a.name == "to" and a.i in half for a in node.attribute) for node, _ in view.nodes()
            )
            self._half[signature.file] = weights or casts
        return self._half[signature.file]

    def _run_sub(self, model: Any, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        session = self.runtime.session_from_model(model)
        names = [o.name for o in session.get_outputs()]
        return dict(zip(names, session.run(names, feeds)))

    def _add(self, finding: Finding) -> None:
        """Record a finding; value oracles report only the first step where an output goes wrong
        (later steps inherit the damage)."""
        if finding.code in (oracles.NON_FINITE.code, oracles.FP16_RANGE.code, oracles.CACHE_DIVERGENCE.code):
            key = (finding.code, finding.location.file, finding.location.name)
            if any((f.code, f.location.file, f.location.name) == key for f in self.findings):
                return
        self.findings.append(finding)

    # ------------------------------------------------------------------ checks

    def _check_feeds(self, scenario: Scenario, signature: Signature, feeds: dict[str, np.ndarray], step: int) -> bool:
        """Every feed against the declared input: all mismatches at once (ORT names only the first)."""
        mismatches: list[dict[str, Any]] = []
        for tensor in signature.inputs:
            value = feeds.get(tensor.name)
            if value is None:
                continue
            for found in declaration_mismatches(tensor, value):
                expected = str(found.expected) if found.kind == "rank" else found.expected
                mismatches.append({"input": tensor.name, "axis": found.axis, "got": found.observed, "expected": expected})
        if not mismatches:
            return True
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
        return False

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

    def _encode(self, scenario: Scenario, batch: int, rng: np.random.Generator, state: DecodeState) -> None:
        needs_hidden = any(t.role == roles.ENCODER_HIDDEN_STATES for s in (scenario.step0, scenario.stepn) if s for t in s.inputs)
        state.encoder_mask = np.ones((batch, self.options.encoder_len), dtype=np.int64)
        if not needs_hidden:
            return
        encoder = scenario.encoder
        if encoder is None:
            state.encoder_hidden = self._synthesized_hidden(scenario, batch, rng)
            return
        enc_vocab = vocab_size(encoder, self._vocab)
        feeds: dict[str, np.ndarray] = {}
        for tensor in encoder.inputs:
            if tensor.role == roles.INPUT_IDS:
                feeds[tensor.name] = rng.integers(0, enc_vocab, (batch, self.options.encoder_len)).astype(np.int64)
            elif tensor.role == roles.ATTENTION_MASK:
                feeds[tensor.name] = state.encoder_mask
            else:
                feeds[tensor.name] = self._encoder_features(tensor, batch, rng)
        outputs = self.runtime.run(scenario.path(encoder), feeds)
        hidden = next((outputs[t.name] for t in encoder.outputs if t.role == roles.HIDDEN_STATES), None)
        if hidden is None:
            hidden = next(iter(outputs.values()))
        state.encoder_hidden = hidden

    def _encoder_features(self, tensor: TensorSig, batch: int, rng: np.random.Generator) -> np.ndarray:
        """Seeded random values for an encoder's non-token input (Whisper's input_features, pixel_values).

        Their sizes are fixed by the model (mel bins x frames, channels x height x width), so every
        axis but the batch must be a number.
        """
        dtype = numpy_dtype(tensor.elem_type)
        if tensor.dims is None or not np.issubdtype(dtype, np.floating) or not all(d.is_static for d in tensor.dims[1:]):
            raise UsageError(
                f"encoder input {tensor.name} ({tensor.dtype} {format_dims(tensor.dims)}): replay can only synthesize "
                "float inputs whose non-batch dims are fixed"
            )
        shape = (batch, *(int(d.value or 0) for d in tensor.dims[1:]))
        return rng.standard_normal(shape).astype(dtype)

    def _synthesized_hidden(self, scenario: Scenario, batch: int, rng: np.random.Generator) -> np.ndarray:
        """No encoder file next to the decoder: seeded random encoder states of the declared width."""
        tensor = scenario.step0.input(roles.ENCODER_HIDDEN_STATES)
        assert tensor is not None
        if tensor.dims is None or len(tensor.dims) != 3 or not tensor.dims[2].is_static:
            raise UsageError(
                f"{tensor.name} has no static hidden size and there is no encoder_model.onnx next to "
                f"{scenario.step0.file}: replay the whole export folder"
            )
        shape = (batch, self.options.encoder_len, int(tensor.dims[2].value or 0))
        return rng.standard_normal(shape).astype(numpy_dtype(tensor.elem_type))

    def _decode(
        self,
        scenario: Scenario,
        tokens: np.ndarray,
        mask: np.ndarray,
        schedule: list[int],
        *,
        check: bool,
        rng: np.random.Generator,
    ) -> ScenarioResult:
        """Run the schedule; with check=False only logits are collected (the padding reference)."""
        result = ScenarioResult(scenario)
        batch = tokens.shape[0]
        state = DecodeState(tokens[:, : schedule[0]], mask[:, : schedule[0]])
        self._encode(scenario, batch, rng, state)
        pasts: dict[str, np.ndarray] | None = None
        position = 0
        for step, new in enumerate(schedule):
            position += new
            state.tokens, state.mask = tokens[:, :position], mask[:, :position]
            past_len = position - new
            recompute = scenario.stepn is None
            signature = scenario.step0 if step == 0 or recompute else scenario.stepn
            assert signature is not None
            use_cache = step > 0 and not recompute
            feed_new = position if recompute else new
            feeds = build_feeds(signature, state, feed_new, pasts=pasts, use_cache=use_cache, rng=rng)
            record = StepRecord(scenario.name, step, signature.file, new, past_len, describe_shapes(feeds))
            if check and not self._check_feeds(scenario, signature, feeds, step):
                record.verdict = "feeds rejected"
                result.steps.append(record)
                return result
            started = time.perf_counter()
            try:
                outputs = self.runtime.run(scenario.path(signature), feeds)
            except Exception as exc:  # noqa: BLE001 - ORT raises Fail/InvalidArgument/RuntimeException
                record.seconds = time.perf_counter() - started
                record.verdict = "failed"
                result.steps.append(record)
                if check:
                    missing = [
                        p.past.name
                        for p in (signature.kv.self_pairs() if signature.kv else [])
                        if step > 0 and p.past is not None and (pasts is None or p.past.name not in pasts)
                    ]
                    self._step_failed(scenario, signature, feeds, step, str(exc), missing_pasts=missing)
                return result
            record.seconds = time.perf_counter() - started
            record.outputs = describe_shapes(outputs)
            logits_tensor = signature.output(roles.LOGITS)
            logits = outputs.get(logits_tensor.name) if logits_tensor else None
            if logits is not None:
                result.logits.append(logits[:, -new:] if logits.ndim == 3 else logits)
            if check:
                self._check_outputs(signature, outputs, step, past_len if not recompute else 0, feed_new, record, use_cache)
                if step > 0 and logits is not None and scenario.uncached is not None and not recompute:
                    self._compare_uncached(scenario, state, logits, new, step, record, rng)
                if self.options.record is not None:
                    self._record(step, feeds, outputs)
            result.steps.append(record)
            if recompute:
                continue
            pasts = next_pasts(signature, outputs, state, first_step=step == 0)
            if step == 0 and scenario.stepn is not None and scenario.stepn is not signature:
                pasts = remap_pasts(scenario.stepn, signature, pasts, state)
        return result

    def _compare_uncached(
        self, scenario: Scenario, state: DecodeState, logits: np.ndarray, new: int, step: int, record: StepRecord, rng: np.random.Generator
    ) -> None:
        reference = scenario.uncached
        assert reference is not None
        feeds = build_feeds(reference, state, state.tokens.shape[1], pasts=None, use_cache=False, rng=rng)
        try:
            outputs = self.runtime.run(scenario.path(reference), feeds)
        except Exception as exc:  # noqa: BLE001
            record.verdict = "uncached run failed"
            self._step_failed(scenario, reference, feeds, step, str(exc), uncached=True)
            return
        logits_tensor = reference.output(roles.LOGITS)
        if logits_tensor is None:
            return
        full = outputs[logits_tensor.name]
        expected = full[:, -new:] if full.ndim == 3 else full
        observed = logits[:, -new:] if logits.ndim == 3 else logits
        if expected.shape != observed.shape:
            return
        diff, allowed = oracles.max_difference(observed, expected, reduced_precision=self._reduced_precision(reference))
        record.max_diff_uncached = diff
        if diff > allowed:
            record.verdict = "diverged"
            self._add(
                oracles.CACHE_DIVERGENCE.finding(
                    f"step {step} ({new} new token{'s' if new > 1 else ''}, {state.tokens.shape[1] - new} cached): cached logits "
                    f"differ from an uncached recompute of the same tokens by {diff:.3g} (allowed {allowed:.2g})",
                    Location(scenario.stepn.file if scenario.stepn else None, "output", logits_tensor.name, None, step),
                    evidence={"max_abs_diff": diff, "allowed": allowed, "new_tokens": new, "reference": reference.file},
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

    def _tokens(self, scenario: Scenario, rng: np.random.Generator, schedule: list[int]) -> tuple[np.ndarray, np.ndarray, int]:
        batch = self.options.batch
        total = sum(schedule)
        vocab = vocab_size(scenario.step0, self._vocab)
        tokens = rng.integers(0, vocab, (batch, total)).astype(np.int64)
        mask = np.ones((batch, total), dtype=np.int64)
        pad = 0
        step0 = scenario.step0
        decoder_only = not step0.input(roles.ENCODER_HIDDEN_STATES) and not (step0.kv and step0.kv.cross_attention)
        if batch > 1 and decoder_only and step0.input(roles.ATTENTION_MASK) and step0.input(roles.POSITION_IDS):
            pad = min(2, schedule[0] - 1)
            mask[1, :pad] = 0
        return tokens, mask, pad

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
            self.progress(f"replaying {scenario.describe()}")
            notes: list[str] = []
            self.options = self._adapt(scenario, notes)
            rng = np.random.default_rng(self.options.seed)
            schedule = self.options.schedule()
            tokens, mask, pad = self._tokens(scenario, rng, schedule)
            result = self._decode(scenario, tokens, mask, schedule, check=True, rng=np.random.default_rng(self.options.seed + 1))
            result.notes.extend(notes)
            if scenario.encoder is None and any(t.role == roles.ENCODER_HIDDEN_STATES for t in scenario.step0.inputs):
                result.notes.append("no encoder_model.onnx next to the decoder: encoder states are seeded random")
            if pad:
                self._check_padding(scenario, tokens, mask, pad, schedule, result)
            else:
                result.notes.append("padding check skipped: needs batch >= 2 and a decoder-only model with attention_mask and position_ids")
            results.append(result)
        self.options = configured
        return ReplayReport(self.report.path, self.options, results, sort_findings(self.findings), self.report.findings)

    def _check_padding(self, scenario: Scenario, tokens: np.ndarray, mask: np.ndarray, pad: int, schedule: list[int], result: ScenarioResult) -> None:
        if len(result.logits) < len(schedule):
            return  # the padded run failed already
        solo_schedule = [schedule[0] - pad] + schedule[1:]
        solo = self._decode(scenario, tokens[1:2, pad:], mask[1:2, pad:], solo_schedule, check=False, rng=np.random.default_rng(self.options.seed + 1))
        for step, (batched, alone) in enumerate(zip(result.logits, solo.logits)):
            row = batched[1:2, -alone.shape[1]:] if batched.ndim == 3 else batched[1:2]
            if row.shape != alone.shape:
                continue
            diff, allowed = oracles.max_difference(row, alone, reduced_precision=self._reduced_precision(scenario.step0))
            if diff > allowed:
                self._add(
                    oracles.PADDING_DIVERGENCE.finding(
                        f"step {step}: row 1 (left-padded by {pad}) differs from the same tokens decoded alone by {diff:.3g} "
                        f"(allowed {allowed:.2g})",
                        Location(scenario.step0.file if step == 0 else (scenario.stepn or scenario.step0).file, "output", None, None, step),
                        evidence={"max_abs_diff": diff, "allowed": allowed, "padding": pad},
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
