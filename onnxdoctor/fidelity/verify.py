"""`verify`: an export against the PyTorch model it came from, and `compare`: two exports, step by step.

Both run the one decode driver: the reference decodes greedily (its own argmax each step), the other
side is teacher-forced on those tokens, so every step compares the same sequence. Batch 2 with a
left-padded row where the model has a mask and positions. For seq2seq the encoder output and the
cross-attention cache are compared too. Tolerances come from numerics (the fidelity envelope of the
export's regime against a float32 reference).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from onnxdoctor import __version__
from onnxdoctor.driver.backend import Backend, OrtBackend
from onnxdoctor.driver.decode import DecodeStep, EncoderRun, config_pad_ids, config_vocab, decode, encode, greedy, prompt_tokens
from onnxdoctor.engine import InspectReport, inspect_path
from onnxdoctor.errors import UnusableInputError, UsageError
from onnxdoctor.fidelity.trace import (
    ADAPTER_MISSING,
    DEPARTS,
    EXPORTS_DISAGREE,
    StepDrift,
    compare_steps,
    departure_findings,
    first_departure,
    scaled_tensor_difference,
)
from onnxdoctor.findings import Finding, Location, Rule, Severity, earliest_error, sort_findings
from onnxdoctor.model import roles
from onnxdoctor.numerics.envelope import Envelope, fidelity_envelope
from onnxdoctor.replay.protocol import DecodeState, Scenario, plan_scenarios

Progress = Callable[[str], None]


@dataclass
class FidelityOptions:
    steps: int = 8  # decode steps after the prompt
    batch: int = 2
    prompt_len: int = 4
    encoder_len: int = 5
    seed: int = 0


@dataclass
class Side:
    """One backend's decode of a scenario."""

    name: str
    steps: list[DecodeStep] = field(default_factory=list)
    encoder: EncoderRun = field(default_factory=EncoderRun)
    seconds: float = 0.0  # inference time its backend measured

    @property
    def tokens(self) -> np.ndarray | None:
        last = self.steps[-1] if self.steps else None
        return last.state.tokens if last is not None and last.state is not None else None


@dataclass
class ScenarioFidelity:
    scenario: Scenario
    rows: list[StepDrift]
    envelope: Envelope
    reference: Side
    observed: Side
    encoder_drift: float | None = None
    continuation: dict[str, list[list[int]]] = field(default_factory=dict)  # side -> greedy new tokens per row
    mask: np.ndarray | None = field(default=None, repr=False)  # the attention mask both sides were fed


@dataclass
class FidelityReport:
    command: str  # verify | compare
    path: str
    reference: str
    results: list[ScenarioFidelity]
    findings: list[Finding]
    options: FidelityOptions

    @property
    def exit_code(self) -> int:
        return 1 if any(f.severity is Severity.ERROR for f in self.findings) else 0

    def counts(self) -> dict[str, int]:
        return {s.value: sum(1 for f in self.findings if f.severity is s) for s in Severity}

    def verdict(self) -> str:
        first = earliest_error(self.findings)
        departed = next((f for f in self.findings if f.severity is Severity.WARNING), None)
        if first is None and departed is not None:
            return (
                f"Every token choice agrees with {self.reference}, but the logits depart beyond the envelope from step "
                f"{departed.location.step} ({departed.code} {departed.name}): sampling would differ."
            )
        if first is None:
            drifted = any(f.code == "ODV704" for f in self.findings)
            return (
                f"The export agrees with {self.reference} over {self.options.steps} steps after the prompt (batch "
                f"{self.options.batch}, same tokens on both sides)" + (", within the envelope of its precision." if drifted else ".")
            )
        where = f" from step {first.location.step}" if first.location.step is not None else ""
        return f"The export departs from {self.reference}{where}: {first.code} {first.name}."

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": 1,
            "tool": {"name": "onnxdoctor", "version": __version__},
            "command": self.command,
            "path": self.path,
            "reference": self.reference,
            "options": dict(self.options.__dict__),
            "scenarios": [
                {
                    "name": r.scenario.name,
                    "description": r.scenario.describe(),
                    "envelope": {"name": r.envelope.name, "scaled": r.envelope.scaled},
                    "encoder_drift": r.encoder_drift,
                    "steps": [row.to_dict() for row in r.rows],
                    "greedy_continuation": r.continuation,
                    "seconds": {r.reference.name: r.reference.seconds, r.observed.name: r.observed.seconds},
                }
                for r in self.results
            ],
            "summary": self.counts(),
            "verdict": self.verdict(),
            "findings": [f.to_dict() for f in self.findings],
        }


# ---------------------------------------------------------------------------------------------- driving


def _schedule(options: FidelityOptions) -> list[int]:
    return [options.prompt_len] + [1] * options.steps


def run_side(
    name: str,
    scenario: Scenario,
    backend: Backend,
    tokens: np.ndarray,
    mask: np.ndarray,
    options: FidelityOptions,
    vocab: int | None,
    *,
    choose: bool,
    progress: Progress,
    source: str | None = None,
) -> Side:
    """One decode of `scenario` on `backend` (greedy when `choose`), encoder first; stops at a failing step.

    `source`: this side is the PyTorch source at that path. Its failure is not the export's: the export
    cannot be held against it (an UnusableInputError naming the source), rather than a failing decode."""
    rng = np.random.default_rng(options.seed + 1)  # the same encoder inputs and synthesized values on every side
    side = Side(name)
    state = DecodeState(tokens[:, : options.prompt_len], mask[:, : options.prompt_len])
    started = backend.timing.seconds
    progress(f"{name}: decoding {options.steps} steps after a {options.prompt_len}-token prompt" + (" (greedy)" if choose else " (the same tokens)"))
    side.encoder = encode(scenario, backend, state, tokens.shape[0], options.encoder_len, vocab, rng)
    for step in decode(scenario, backend, tokens, mask, _schedule(options), rng=rng, state=state, choose=greedy if choose else None):
        side.steps.append(step)
        if step.error is not None and source is not None:
            raise UnusableInputError(
                source, f"the source model failed at step {step.step} when fed the export's protocol ({step.signature.file}): "
                f"{_first_line(step.error)}; the export cannot be verified against it"
            )
        if step.error is not None:
            raise UsageError(
                f"{name} failed at step {step.step} ({step.signature.file}): {_first_line(step.error)}; "
                "run `onnxdoctor replay` on the export first"
            )
    side.seconds = backend.timing.seconds - started
    return side


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _continuation(side: Side, prompt_len: int) -> list[list[int]]:
    tokens = side.tokens
    return [] if tokens is None else tokens[:, prompt_len:].tolist()


def _regimes(report: InspectReport) -> list[Any]:
    """The compute regime of every encoder and decoder file: the envelope follows the least precise."""
    return [f.context.regime for f in report.files if f.context is not None and f.signature.kind in ("decoder", "encoder")]


def _encoder_drift(reference: Side, observed: Side) -> float | None:
    if not reference.encoder.outputs or not observed.encoder.outputs:
        return None
    name = next(iter(observed.encoder.outputs))
    if name not in reference.encoder.outputs:
        return None
    return scaled_tensor_difference(observed.encoder.outputs[name], reference.encoder.outputs[name])


def _encoder_finding(scenario: Scenario, drift: float | None, envelope: Envelope, against: str, rule: Rule = DEPARTS) -> Finding | None:
    if drift is None or drift <= envelope.scaled or scenario.encoder is None:
        return None
    hidden = next((t.name for t in scenario.encoder.outputs if t.role == roles.HIDDEN_STATES), None)
    return rule.finding(
        f"the encoder's output departs from {against}: {drift:.3g} x its spread, outside the {envelope.describe()}; "
        "every decoder step reads it",
        Location(scenario.encoder.file, "output", hidden, None, 0),
        evidence={"scaled": drift, "envelope": envelope.name, "envelope_scaled": envelope.scaled},
        fix="Check the encoder export (the same checkpoint, the same preprocessing of input_features / input_ids).",
    )


def hold(
    names: tuple[str, str],
    scenarios: tuple[Scenario, Scenario],
    backends: tuple[Backend, Backend],
    options: FidelityOptions,
    vocab: int | None,
    envelope: Envelope,
    progress: Progress,
    *,
    own_continuation: bool,
    avoid: tuple[int, ...] = (),
    reference_source: str | None = None,
) -> ScenarioFidelity:
    """The reference decodes greedily, the other side is fed its tokens; with `own_continuation` it then
    decodes greedily on its own too (compare shows both continuations)."""
    (ref_name, obs_name), (ref_scenario, obs_scenario), (ref_backend, obs_backend) = names, scenarios, backends
    rng = np.random.default_rng(options.seed)
    tokens, mask, _pad = prompt_tokens(ref_scenario, options.batch, _schedule(options), vocab, rng, avoid)
    reference = run_side(ref_name, ref_scenario, ref_backend, tokens, mask, options, vocab, choose=True, progress=progress, source=reference_source)
    assert reference.tokens is not None
    observed = run_side(obs_name, obs_scenario, obs_backend, reference.tokens, mask, options, vocab, choose=False, progress=progress)
    result = ScenarioFidelity(obs_scenario, compare_steps(reference.steps, observed.steps, envelope), envelope, reference, observed, mask=mask)
    result.encoder_drift = _encoder_drift(reference, observed)
    if own_continuation:
        own = run_side(f"{obs_name} (greedy)", obs_scenario, obs_backend, tokens, mask, options, vocab, choose=True, progress=progress)
        result.continuation = {ref_name: _continuation(reference, options.prompt_len), obs_name: _continuation(own, options.prompt_len)}
    else:  # what the observed side would pick at each step of the reference's sequence
        result.continuation = {ref_name: _continuation(reference, options.prompt_len), obs_name: _choices(observed)}
    return result


def _choices(side: Side) -> list[list[int]]:
    """The argmax of the last position at every step but the last, per row: the side's own pick of each next token."""
    picks = [greedy(step)[:, 0] for step in side.steps[:-1] if step.logits() is not None]
    return np.stack(picks, axis=1).tolist() if picks else []


def findings_of(result: ScenarioFidelity, against: str, rule: Rule = DEPARTS) -> list[Finding]:
    """The departure (or drift) findings of one held scenario, the encoder's first."""
    scenario = result.scenario
    decoder = scenario.stepn or scenario.step0
    logits = decoder.output(roles.LOGITS)
    found = departure_findings(result.rows, result.envelope, decoder.file, logits.name if logits else None, against=against, rule=rule)
    encoder_finding = _encoder_finding(scenario, result.encoder_drift, result.envelope, against, rule)
    return ([encoder_finding] if encoder_finding is not None else []) + found


# ---------------------------------------------------------------------------------------------- verify


def _config_number(config: dict[str, Any], *keys: str) -> int | None:
    for key in keys:
        value = config.get(key)
        if isinstance(value, int):
            return value
    return None


def check_source_fits(report: InspectReport, source: Path, config: dict[str, Any]) -> None:
    """Architecture, layers, KV heads and vocabulary of the source's config against the export (before any run)."""
    from onnxdoctor.driver.torch_backend import describe_source

    folder = Path(report.path) if Path(report.path).is_dir() else Path(report.path).parent
    if (folder / "config.json").is_file():
        exported = describe_source(folder)
        if exported.get("model_type") and config.get("model_type") and exported["model_type"] != config["model_type"]:
            raise UnusableInputError(
                source, f"this source is a {config['model_type']} model; the export's config.json says {exported['model_type']}"
            )
    for file_report in report.files:
        sig = file_report.signature
        if sig.kind != "decoder":
            continue
        problems = []
        kv = sig.kv
        seq2seq_export = any(t.role == roles.ENCODER_HIDDEN_STATES for t in sig.inputs) or bool(kv and kv.cross_attention)
        if bool(config.get("is_encoder_decoder")) != seq2seq_export:
            kinds = ("an encoder-decoder model", "a decoder-only one") if config.get("is_encoder_decoder") else ("a decoder-only model", "an encoder-decoder one")
            raise UnusableInputError(source, f"this source does not match {sig.file}: it is {kinds[0]}, the export {kinds[1]}")
        layers = _config_number(config, "decoder_layers", "num_decoder_layers", "num_hidden_layers", "n_layer", "num_layers")
        if kv is not None and layers is not None and kv.layers != layers:
            problems.append(f"{layers} layers, the export {kv.layers}")
        heads = _config_number(config, "num_key_value_heads", "decoder_attention_heads", "num_heads", "num_attention_heads", "n_head")
        if config.get("multi_query"):
            heads = 1
        if kv is not None and heads is not None and isinstance(kv.kv_heads, int) and kv.kv_heads != heads:
            problems.append(f"{heads} KV heads, the export {kv.kv_heads}")
        logits = sig.output(roles.LOGITS)
        vocab = _config_number(config, "vocab_size")
        if logits is not None and logits.dims and logits.dims[-1].is_static and vocab is not None and logits.dims[-1].value != vocab:
            problems.append(f"a vocabulary of {vocab}, the export's logits {logits.dims[-1].value}")
        if problems:
            raise UnusableInputError(source, f"this source does not match {sig.file}: its config has " + "; ".join(problems))


def is_factory(source: str | Path) -> bool:
    """`file.py:function`, as `fix --source` takes a torch factory (a folder is a Hugging Face model)."""
    text = str(source)
    file_name, _, function = text.rpartition(":")
    return bool(file_name) and file_name.endswith(".py") and function.isidentifier()


def factory_backend(entry: str, report: InspectReport) -> Backend:
    """The user's torch factory as a backend; names default to the export's inputs and outputs."""
    from onnxdoctor.driver.torch_backend import FactoryBackend
    from onnxdoctor.recovery.export_worker import FactoryError, load_factory

    decoder = next((r.signature for r in report.files if r.signature.kind == "decoder"), report.files[0].signature)
    names = {"inputs": [t.name for t in decoder.inputs], "outputs": [t.name for t in decoder.outputs]}
    try:
        loaded = load_factory(entry, names)
    except FactoryError as exc:
        raise UsageError(f"--source {entry}: {exc}") from None
    return FactoryBackend(loaded)


def verify(
    path: str | Path,
    source: str | Path,
    *,
    adapter: str | Path | None = None,
    options: FidelityOptions | None = None,
    progress: Progress | None = None,
    only_file: str | None = None,
) -> FidelityReport:
    """Hold the export at `path` against `source`: a Hugging Face folder (with `adapter` merged) or a torch
    factory `file.py:function` returning what torch.onnx.export took."""
    from onnxdoctor.driver.torch_backend import HFBackend, describe_source

    options = options or FidelityOptions()
    progress = progress or (lambda _m: None)
    if options.steps < 1 or options.batch < 1 or options.prompt_len < 1:
        raise UsageError("--steps, --batch and --prompt-len must be at least 1")
    adapter_path = Path(adapter) if adapter is not None else None
    report = inspect_path(path, only_file=only_file)
    factory = is_factory(source)
    if factory and adapter_path is not None:
        raise UsageError("--adapter merges into a Hugging Face folder; a torch factory returns the module to verify as it is")
    if not factory and not Path(source).exists():
        raise UnusableInputError(source, "no such source folder")
    if adapter_path is not None and not adapter_path.exists():
        raise UnusableInputError(adapter_path, "no such adapter folder")
    if not factory:
        check_source_fits(report, Path(source), describe_source(Path(source)))
    scenarios = plan_scenarios(report)
    paths = {r.signature.file: r.model_file.path for r in report.files}
    ort_backend = OrtBackend(paths, optimize=True)  # as deployed; the decode is long enough to repay the optimization
    for file_report in report.files:
        ort_backend.prepare(file_report.signature)
    progress(f"loading the source {source}" + (f" with the adapter {adapter_path} merged" if adapter_path else ""))
    torch_backend: Backend = factory_backend(str(source), report) if factory else HFBackend(Path(source), adapter=adapter_path)
    torch_backend.activate()
    base_backend = HFBackend(Path(source)) if adapter_path is not None else None
    against = f"the source {Path(str(source)).name}" + (f" + adapter {adapter_path.name}" if adapter_path else "")
    envelope = fidelity_envelope(*_regimes(report))
    vocab = config_vocab(path) or (None if factory else config_vocab(source))
    avoid = config_pad_ids(path) or (() if factory else config_pad_ids(source))
    results: list[ScenarioFidelity] = []
    findings: list[Finding] = []
    for scenario in scenarios:
        progress(f"verifying {scenario.describe()}")
        result = hold(("source", "export"), (scenario, scenario), (torch_backend, ort_backend), options, vocab, envelope, progress, own_continuation=False, avoid=avoid,
                      reference_source=str(source))
        results.append(result)
        found = findings_of(result, against)
        if base_backend is not None and any(f.severity is Severity.ERROR for f in found):
            found = _adapter_check(found, result, base_backend, options, vocab, adapter_path, progress)
        findings.extend(found)
    torch_backend.deactivate()
    if base_backend is not None:
        base_backend.deactivate()
    return FidelityReport("verify", str(path), against, results, sort_findings(findings), options)


def _adapter_check(
    found: list[Finding],
    result: ScenarioFidelity,
    base_backend: Backend,
    options: FidelityOptions,
    vocab: int | None,
    adapter: Path | None,
    progress: Progress,
) -> list[Finding]:
    """The export departs from base + adapter: does it match the base alone? Then the adapter is missing."""
    progress("the export departs: decoding the base model without the adapter to see whether it matches that")
    tokens = result.reference.tokens
    assert tokens is not None and result.mask is not None
    base = run_side("base", result.scenario, base_backend, tokens, result.mask, options, vocab, choose=False, progress=progress)
    rows = compare_steps(base.steps, result.observed.steps, result.envelope)
    if first_departure(rows) is not None:
        return found
    against_merged = next((f for f in found if f.severity is Severity.ERROR), None)
    assert against_merged is not None
    worst = max((r.logits.scaled for r in rows if r.logits is not None), default=0.0)
    return [
        ADAPTER_MISSING.finding(
            f"the export departs from the source with the adapter {adapter.name if adapter else ''} merged "
            f"({against_merged.message.split(': ', 1)[-1]}) but matches the base model without it (at most {worst:.3g} x "
            "the logits' spread): the LoRA adapter is not in this export",
            Location(against_merged.location.file, "graph", None, None, 0),
            evidence={"against_merged": against_merged.evidence, "against_base_max_scaled": worst, "adapter": str(adapter)},
        )
    ]


# ---------------------------------------------------------------------------------------------- compare


def compare(
    path_a: str | Path,
    path_b: str | Path,
    *,
    options: FidelityOptions | None = None,
    progress: Progress | None = None,
) -> FidelityReport:
    """Two exports of one model: A decodes greedily, B is fed A's tokens; both greedy continuations shown."""
    options = options or FidelityOptions()
    progress = progress or (lambda _m: None)
    report_a, report_b = inspect_path(path_a), inspect_path(path_b)
    scenarios_a, scenarios_b = plan_scenarios(report_a), plan_scenarios(report_b)
    backend_a = OrtBackend({r.signature.file: r.model_file.path for r in report_a.files})
    backend_b = OrtBackend({r.signature.file: r.model_file.path for r in report_b.files})
    for r in report_a.files:
        backend_a.prepare(r.signature)
    for r in report_b.files:
        backend_b.prepare(r.signature)
    envelope = fidelity_envelope(*_regimes(report_a), *_regimes(report_b))
    vocab = config_vocab(path_a) or config_vocab(path_b)
    avoid = config_pad_ids(path_a) or config_pad_ids(path_b)
    results: list[ScenarioFidelity] = []
    findings: list[Finding] = []
    by_name_b = {s.name: s for s in scenarios_b}
    for scenario_a in scenarios_a:
        scenario_b = by_name_b.get(scenario_a.name)
        if scenario_b is None:
            raise UsageError(
                f"{path_b} has no {scenario_a.describe()} to compare with (its decoding: "
                f"{', '.join(s.describe() for s in scenarios_b)}); compare exports of one layout, or pick files with --file"
            )
        progress(f"comparing {scenario_a.describe()} with {scenario_b.describe()}")
        result = hold(("A", "B"), (scenario_a, scenario_b), (backend_a, backend_b), options, vocab, envelope, progress, own_continuation=True, avoid=avoid)
        results.append(result)
        findings.extend(findings_of(result, f"A ({Path(path_a).name})", EXPORTS_DISAGREE))
    return FidelityReport("compare", str(path_b), f"A ({path_a})", results, sort_findings(findings), options)

