"""The export pipeline: checkpoint -> merge -> export (with recovery) -> quantize -> verify -> report.

Each stage is a step of one plan over the recovery engine's parts: the same subprocess worker with its
time limit (`recovery.engine.export_attempt`), the same attempts table (`Attempt`), the same
keep-only-if-proven rule (`recovery.verdict.judge` on inspect + replay), plus verify against the
(merged) source. Everything is written under DIR (new or empty); SOURCE and the adapter are only read.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onnxdoctor import __version__
from onnxdoctor.errors import OnnxDoctorError, UnusableInputError, UsageError
from onnxdoctor.export.checkpoints import Checkpoint, find_adapter_next_to, resolve
from onnxdoctor.export.config import variant_for
from onnxdoctor.export.errors import CheckpointError, ExportFailed, ExportPipelineError, ValidationFailed
from onnxdoctor.export.recover import BY_NAME, REFUSED, classify, strategy_settings
from onnxdoctor.findings import Severity
from onnxdoctor.recovery.engine import Attempt
from onnxdoctor.recovery.proof import Proof, departures

Progress = Callable[[str], None]
FACTORY = re.compile(r"\.py:\w+$")


@dataclass
class Variant:
    """One quantized (or the fp32) export, what proved it, and what it costs."""

    name: str  # fp32 | fp16 | int8 | int4
    variant: str | None  # numerics.quantize's name
    path: Path | None = None
    size_bytes: int = 0
    reduction: float | None = None  # 1 - size / fp32 size
    status: str = "planned"  # verified | failed | planned
    reason: str = ""
    findings: list[str] = field(default_factory=list)
    drift: dict[str, Any] = field(default_factory=dict)  # against the source (verify) and the fp32 export (compare)
    speed: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    # the reports behind the numbers, for the report's inspect / replay / fidelity / bench sections
    diagnosis: Any = field(default=None, repr=False)  # doctor.Report (inspect + replay)
    fidelity: Any = field(default=None, repr=False)  # FidelityReport against the source
    bench: Any = field(default=None, repr=False)  # perf.bench.BenchResult
    bench_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "variant": self.variant, "path": str(self.path) if self.path else None,
            "size_bytes": self.size_bytes, "reduction": None if self.reduction is None else round(self.reduction, 4),
            "status": self.status, "reason": self.reason, "findings": self.findings, "drift": self.drift,
            "speed": self.speed, "settings": self.settings,
        }


@dataclass
class ExportResult:
    source: str
    out: Path
    settings: dict[str, Any]
    origins: dict[str, str]
    model: Checkpoint | None = None
    adapter: Checkpoint | None = None
    merge: dict[str, Any] | None = None
    attempts: list[Attempt] = field(default_factory=list)
    classes: list[dict[str, str]] = field(default_factory=list)  # failure classes seen, in order
    variants: list[Variant] = field(default_factory=list)
    stages: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # information, not a problem
    error: ExportPipelineError | None = None
    dry_run: bool = False
    report: Any = None  # report.validation.ReportPaths of DIR/report, once written

    @property
    def exit_code(self) -> int:
        return self.error.exit_code if self.error is not None else 0

    @property
    def export(self) -> Variant | None:
        return next((v for v in self.variants if v.name == "fp32" and v.status == "verified"), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": 1,
            "tool": {"name": "onnxdoctor", "version": __version__},
            "command": "export",
            "source": self.source,
            "out": str(self.out),
            "dry_run": self.dry_run,
            "settings": self.settings,
            "settings_from": self.origins,
            "checkpoint": self.model.to_dict() if self.model else None,
            "adapter": self.adapter.to_dict() if self.adapter else None,
            "merge": self.merge,
            "attempts": [a.to_dict() for a in self.attempts],
            "failure_classes": self.classes,
            "variants": [v.to_dict() for v in self.variants],
            "stages": self.stages,
            "warnings": self.warnings,
            "notes": self.notes,
            "error": {"stage": self.error.stage, "message": str(self.error)} if self.error else None,
            "exit_code": self.exit_code,
            "report": str(self.report.markdown) if self.report is not None else None,
        }


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.name.endswith(".json"))


def _inside(child: Path, parent: Path) -> bool:
    child, parent = child.resolve(), parent.resolve()
    return child == parent or parent in child.parents


def default_task(config: dict[str, Any]) -> str:
    """optimum's task for a Hugging Face config: decoder-only, seq2seq, Whisper (all with the KV cache)."""
    if config.get("model_type") == "whisper":
        return "automatic-speech-recognition-with-past"
    return ("text2text-generation" if config.get("is_encoder_decoder") else "text-generation") + "-with-past"


class ExportPipeline:
    def __init__(self, source: str, out: Path, settings: dict[str, Any], origins: dict[str, str], *, progress: Progress | None = None) -> None:
        self.source = source
        self.out = out
        self.settings = settings
        self.progress = progress or (lambda _m: None)
        self.result = ExportResult(source, out, settings, origins)
        self.kind = settings.get("exporter") or ("torch" if FACTORY.search(source) else "optimum")
        self.export_source: Path | str = source
        self.factory_info: dict[str, Any] = {}
        self._kept_proof: Proof | None = None

    # ------------------------------------------------------------------ stages
    def _stage(self, name: str, run: Callable[[], None]) -> None:
        started = time.perf_counter()
        self.progress(f"[{name}] started")
        status = "done"
        try:
            run()
        except ExportPipelineError:
            status = "failed"
            raise
        finally:
            seconds = round(time.perf_counter() - started, 2)
            self.result.stages.append({"stage": name, "status": status, "seconds": seconds})
            self.progress(f"[{name}] {status} in {seconds:.1f} s")

    def checkpoints(self) -> None:
        """Which folders are exported, checked before anything is written."""
        if self.kind == "torch":
            if not FACTORY.search(self.source):
                raise UsageError(f"--exporter torch takes SOURCE as file.py:function, got {self.source!r}")
            if not Path(self.source.rpartition(":")[0]).is_file():
                raise CheckpointError(f"SOURCE {self.source}: no such file {self.source.rpartition(':')[0]!r}")
            if self.settings.get("adapter"):
                raise UsageError("--adapter needs a Hugging Face model folder as SOURCE (a factory returns its own module)")
            return
        model = resolve(Path(self.source), "model")
        self.result.model = model
        self.export_source = model.path
        for folder, reason in model.skipped:
            self.progress(f"skipping {folder}: {reason}")
        self.progress(f"using {model.describe()}")
        self.result.warnings += model.warnings
        adapter = self.settings.get("adapter")
        if adapter == "auto":
            found = find_adapter_next_to(Path(self.source), model.path)
            if found is None:
                self.progress("--adapter auto: no adapter next to SOURCE; exporting the model alone")
                return
            adapter = str(found)
        if adapter:
            checkpoint = resolve(Path(adapter), "adapter")
            for folder, reason in checkpoint.skipped:
                self.progress(f"skipping adapter {folder}: {reason}")
            self.progress(f"using {checkpoint.describe()} (rank {checkpoint.metadata.get('rank')}, targets {checkpoint.metadata.get('target_modules')})")
            self.result.adapter = checkpoint

    def check_out(self) -> None:
        """DIR must be new or empty and outside SOURCE and the adapter: nothing is written anywhere else."""
        readonly = [p for p in (self.result.model, self.result.adapter) if p is not None]
        for checkpoint in readonly:
            if _inside(self.out, checkpoint.given) or _inside(self.out, checkpoint.path):
                raise UsageError(f"--out {self.out} is inside {checkpoint.given}: onnxdoctor never writes into your {checkpoint.kind}")
        if self.kind == "torch" and self.out.resolve() == Path(self.source.rpartition(":")[0]).resolve().parent:
            raise UsageError(f"--out {self.out} is the factory's own folder; give a new folder")
        if self.out.exists() and (not self.out.is_dir() or any(self.out.iterdir())):
            raise UsageError(f"--out {self.out}: give a new or empty folder (it holds {', '.join(sorted(p.name for p in self.out.iterdir())[:3]) if self.out.is_dir() else 'a file'})")

    def merge(self) -> None:
        from onnxdoctor.export.merge import merge

        assert self.result.model is not None and self.result.adapter is not None
        self.progress(f"merging {self.result.adapter.path} into {self.result.model.path} with peft")
        self.result.merge = merge(self.result.model, self.result.adapter, self.out)
        self.export_source = Path(self.result.merge["merged"])
        worst = max(w["max_abs_error"] for w in self.result.merge["weights"])
        self.progress(
            f"merge checked: {len(self.result.merge['weights'])} weights equal W + scale * B @ A (max error {worst:.2g}); "
            f"logits differ from the base by up to {self.result.merge['probe']['max_abs_logit_difference']:.3g}"
        )

    # ------------------------------------------------------------------ export with recovery
    def _first_settings(self) -> dict[str, Any]:
        if self.kind == "optimum":
            config = json.loads((Path(self.export_source) / "config.json").read_text())
            return {"task": self.settings.get("task") or default_task(config), "opset": self.settings.get("opset"), "dtype": "fp32",
                    "no_post_process": False, "no_dynamic_axes": False}
        return {"opset": self.settings.get("opset"), "dynamo": False, "dynamic_axes": self._factory_axes()}

    def _factory_axes(self) -> dict[str, dict[str, str]]:
        """Load the factory once (the worker's --check) and name its dynamic axes by role from the example's shapes."""
        import onnx
        from onnx import TensorProto, helper

        from onnxdoctor.engine import inspect_path
        from onnxdoctor.recovery.engine import dynamic_axes_for, run_worker
        from onnxdoctor.recovery.export_worker import FACTORY_ERROR

        self.progress(f"loading the factory {self.source}")
        with _scratch(self.out / "attempts" / "factory-check") as scratch:
            completed = run_worker({"exporter": "torch", "source": self.source, "names": {}, "shapes": True}, Path(scratch), self.settings["timeout"], "--check")
            if completed.returncode != 0:
                line = next((l for l in completed.stderr.splitlines() if l.startswith("factory error: ")), completed.stderr.strip()[-300:])
                if completed.returncode == FACTORY_ERROR:
                    raise CheckpointError(f"SOURCE {self.source}: {line.removeprefix('factory error: ')}")
                raise CheckpointError(f"SOURCE {self.source}: loading the factory failed: {line}")
            info = json.loads(completed.stdout.strip().splitlines()[-1])
            self.factory_info = info
            types = {"float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16, "bfloat16": TensorProto.BFLOAT16,
                     "int64": TensorProto.INT64, "int32": TensorProto.INT32, "bool": TensorProto.BOOL}
            if len(info["output_names"]) != len(info["output_shapes"]):
                raise CheckpointError(f"SOURCE {self.source}: give output_names for its {len(info['output_shapes'])} outputs (logits, present_...)")
            stub = helper.make_model(helper.make_graph(
                [], "factory-io",
                [helper.make_tensor_value_info(n, types.get(s["dtype"], TensorProto.FLOAT), s["shape"]) for n, s in zip(info["input_names"], info["input_shapes"])],
                [helper.make_tensor_value_info(n, types.get(s["dtype"], TensorProto.FLOAT), s["shape"]) for n, s in zip(info["output_names"], info["output_shapes"])],
            ), opset_imports=[helper.make_opsetid("", 17)])
            onnx.save(stub, str(Path(scratch) / "model.onnx"))
            signatures = [r.signature for r in inspect_path(Path(scratch) / "model.onnx").files if r.signature.kind == "decoder"]
        axes = dynamic_axes_for(signatures)
        self.progress(f"dynamic axes by role: {', '.join(f'{name}{sorted(v.values())}' for name, v in list(axes.items())[:3])}, ...")
        return {k: {str(a): n for a, n in v.items()} for k, v in axes.items()}

    def _prove(self, attempt: Attempt, produced: Path) -> Proof:
        """The engine's proof (recovery.proof.prove), strict: inspect + replay with no finding left, then verify."""
        from onnxdoctor.recovery.proof import prove

        try:
            proof = prove(attempt, produced, source=self._source_for_verify(), steps=self.settings["steps"], replay_steps=2, strict=True, progress=self.progress)
        except UnusableInputError as exc:
            attempt.result, attempt.reason = "rejected", f"verify cannot use the source: {exc.reason}"
            raise ValidationFailed(f"verify cannot hold the export against its source {exc.path}: {exc.reason}") from None
        if proof.failed is None:
            self._kept_proof = proof
        return proof

    def _source_for_verify(self) -> str:
        """The (merged) Hugging Face folder, or the factory's `file.py:function`."""
        return str(self.export_source) if self.kind == "optimum" else self.source

    def _verify(self, path: Path) -> Any:
        """onnxdoctor verify against the (merged) Hugging Face folder, or the factory's own module."""
        from onnxdoctor.fidelity.verify import FidelityOptions, verify

        return verify(path, self._source_for_verify(), options=FidelityOptions(steps=self.settings["steps"]))

    def export(self) -> None:
        from onnxdoctor.recovery.engine import export_attempt

        attempts_root = self.out / "attempts"
        attempts_root.mkdir(parents=True)
        base = self._first_settings()
        queue: list[tuple[str, dict[str, Any], str, str | None]] = [("first", base, "the default export", None)]
        tried: set[str] = set()
        exporters_tried: set[str] = {"dynamo" if base.get("dynamo") else "legacy"} if self.kind == "torch" else set()
        refused_listed: set[str] = set()
        while queue and len([a for a in self.result.attempts if a.result != "refused"]) < self.settings["max_attempts"]:
            name, settings, why, because = queue.pop(0)
            if name in tried:
                continue
            tried.add(name)
            index = len(self.result.attempts) + 1
            attempt = Attempt(index, name, self.kind, (), settings, why + (f" (for {because})" if because else ""))
            attempt.out = attempts_root / f"attempt-{index}-{name}"
            self.result.attempts.append(attempt)
            self.progress(f"attempt {index} ({name}): {attempt.command}")
            started = time.perf_counter()
            produced = export_attempt(attempt, source=str(self.export_source), adapter=None, names={}, timeout=self.settings["timeout"])
            attempt.seconds = time.perf_counter() - started
            failed_check = self._prove(attempt, produced).failed if produced is not None else None
            if attempt.result == "kept":
                self.progress(f"attempt {index} ({name}) kept: {attempt.reason}")
                warnings, notes = _tracer_warnings(attempt)
                self.result.warnings += warnings
                self.result.notes += notes
                return
            self.progress(f"attempt {index} ({name}) {attempt.result}: {attempt.reason}")
            log_path = attempt.out / "export.log"
            log = log_path.read_text() if log_path.is_file() else "\n".join(attempt.log_tail)
            classes = classify(log, result=attempt.result, verdict=failed_check or attempt.reason)
            for class_name in classes:
                known = BY_NAME[class_name]
                if not any(c["class"] == class_name and c["attempt"] == index for c in self.result.classes):
                    self.result.classes.append({"attempt": index, "class": class_name, "meaning": known.meaning})
                    self.progress(f"attempt {index}: failure class {class_name}: {known.meaning}")
                for strategy in known.strategies:
                    planned = strategy_settings(strategy, self.kind, base, exporters_tried)
                    if planned is None:
                        continue
                    label, patched, reason = planned
                    if label in ("dynamo", "legacy"):
                        exporters_tried.add(label)
                    queue.append((label, patched, reason, class_name))
                if class_name in ("dynamic-shape", "departs-at-decode", "tracer-warning-bool", "tracer-warning-mask") and "no-dynamic-axes" not in refused_listed:
                    refused_listed.add("no-dynamic-axes")
                    self.result.attempts.append(Attempt(len(self.result.attempts) + 1, "no-dynamic-axes", self.kind, (), {**base, "no_dynamic_axes": True},
                                                        f"considered for {class_name}", result="refused", reason=REFUSED["no-dynamic-axes"]))
                    self.progress(f"refused strategy no-dynamic-axes: {REFUSED['no-dynamic-axes']}")
        tried_names = ", ".join(f"{a.index} {a.name}: {a.result}" for a in self.result.attempts if a.result != "refused")
        classes = ", ".join(dict.fromkeys(c["class"] for c in self.result.classes)) or "none"
        raise ExportFailed(f"no export attempt passed inspect + replay + verify ({tried_names}; failure classes: {classes}); see {self.out / 'report' / 'report.md'}")

    def publish(self) -> None:
        """The kept attempt's export becomes DIR/onnx (the attempts keep their logs)."""
        kept = next(a for a in self.result.attempts if a.result == "kept")
        assert kept.produced is not None
        final = self.out / "onnx"
        shutil.move(str(kept.produced), final)
        kept.produced = final
        if self.kind == "optimum" and not (final / "config.json").exists():
            shutil.copyfile(Path(self.export_source) / "config.json", final / "config.json")
        proof = self._kept_proof
        assert proof is not None
        fp32 = Variant("fp32", None, final, _size(final), 0.0, "verified", kept.reason, kept.after, {"vs_source": _drift(proof.fidelity)})
        fp32.diagnosis, fp32.fidelity = proof.diagnosis, proof.fidelity
        self.result.variants.insert(0, fp32)

    # ------------------------------------------------------------------ quantize and verify
    def quantize(self, name: str) -> None:
        from onnxdoctor.doctor import diagnose
        from onnxdoctor.fidelity.verify import FidelityOptions, compare
        from onnxdoctor.numerics.quantize import quantize_folder

        fp32 = self.result.variants[0]
        assert fp32.path is not None
        variant = Variant(name, variant_for(name, self.settings["int4_block_size"]))
        self.result.variants.append(variant)
        target = self.out / f"onnx-{name}"
        try:
            variant.settings = quantize_folder(fp32.path, target, variant.variant or "")
        except Exception as exc:  # noqa: BLE001 - ORT's quantizers raise many types
            variant.status, variant.reason = "failed", f"quantizing failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            self._skip_if_unsupported(variant, fp32)
            return
        variant.path, variant.size_bytes = target, _size(target)
        variant.reduction = 1 - variant.size_bytes / fp32.size_bytes if fp32.size_bytes else None
        try:
            after = diagnose(target, steps=2)
        except OnnxDoctorError as exc:  # ONNX Runtime refuses the quantized file
            variant.status, variant.reason = "failed", f"inspect + replay could not run: {exc}"
            self._skip_if_unsupported(variant, fp32)
            return
        variant.diagnosis = after
        variant.findings = sorted({f.code for f in after.problems()})
        if any(f.severity is Severity.ERROR for f in after.findings):
            variant.status, variant.reason = "failed", f"inspect + replay: {', '.join(variant.findings)}"
            self._skip_if_unsupported(variant, fp32)
            return
        options = FidelityOptions(steps=self.settings["steps"])
        against_fp32 = compare(fp32.path, target, options=options)
        against_source = self._verify(target)
        variant.fidelity = against_source
        variant.drift = {"vs_fp32": _drift(against_fp32), "vs_source": _drift(against_source)}
        failing = departures(against_fp32) + departures(against_source)
        variant.findings = sorted(set(variant.findings) | {f.code for f in against_fp32.findings + against_source.findings})
        if failing:
            variant.status, variant.reason = "failed", f"{failing[0].code}: {failing[0].message}"
        else:
            variant.status, variant.reason = "verified", f"inspect + replay pass; within the {variant.drift['vs_source']['envelope']} against the source and the fp32 export"

    def _skip_if_unsupported(self, variant: Variant, fp32: Variant) -> None:
        """fp16 of a merged decoder: ORT's float16 converter breaks If branches (ONNX Runtime refuses the file,
        measured with onnxruntime 1.32). That is the tool's limit, not the export's fault: skipped, with the reason."""
        merged = fp32.diagnosis is not None and any(
            r.signature.kv is not None and r.signature.kv.merged for r in fp32.diagnosis.inspect.files
        )
        if variant.name != "fp16" or not merged:
            return
        # ORT's message after its source location ("...graph.cc:1621 void onnxruntime::Graph::...() This is an invalid model...")
        refusal = re.sub(r"^.*?\S+\.cc:\d+ [^(]*\([^)]*\)\s*", "", variant.reason.rsplit("failed:", 1)[-1]).strip()[:200]
        variant.status = "skipped"
        variant.reason = (
            "onnxruntime.transformers.float16 breaks a merged decoder's use_cache_branch If: ONNX Runtime refuses the result "
            f"({refusal}); for an fp16 variant, export without merging (optimum no_post_process) and quantize that"
        )
        self.result.warnings.append("fp16 variant skipped: the float16 converter breaks merged decoders (see Variants)")
        self.progress(f"fp16 skipped: {variant.reason}")
        if variant.path is not None:
            shutil.rmtree(variant.path, ignore_errors=True)  # an unloadable file is not shipped
            variant.path, variant.size_bytes, variant.reduction = None, 0, None

    def measure(self) -> None:
        """Speed and memory of every verified variant with `onnxdoctor bench` (one greedy decode protocol, backend timing)."""
        from onnxdoctor.perf.bench import BenchOptions, bench

        options = BenchOptions(prompt_len=8, new_tokens=self.settings["bench_tokens"], repeat=self.settings["bench_repeat"])
        for variant in self.result.variants:
            if variant.path is None or variant.status != "verified":
                continue
            try:
                variant.bench = bench(variant.path, options, progress=self.progress)
            except OnnxDoctorError as exc:  # replay passed, so this is rare: say it, do not hide the variant
                variant.bench_error = str(exc)
                continue
            result = variant.bench
            variant.speed = {
                "decode_ms_per_token": round(result.per_token_median_s * 1e3, 4),
                "decode_ms_per_token_p90": round(result.per_token_p90_s * 1e3, 4),
                "tokens_per_s": round(result.tokens_per_s, 2),
                "prefill_ms": round(result.prefill.median * 1e3, 4),
                "session_creation_s": round(result.session_s, 4),
                "peak_rss_mb": None if result.peak_rss is None else round(result.peak_rss / 2**20, 1),
                "peak_above_before_sessions_mb": None if result.peak_rss_growth is None else round(result.peak_rss_growth / 2**20, 1),
                "kv_cache_bytes_per_token": result.kv_bytes_per_token,
                "runs": len(result.runs),
                "new_tokens": options.new_tokens,
                "how": f"onnxdoctor bench: {options.describe()}",
            }

    # ------------------------------------------------------------------ the whole plan
    def run(self, *, dry_run: bool = False) -> ExportResult:
        result = self.result
        result.dry_run = dry_run
        self._stage("checkpoint", self.checkpoints)
        self.check_out()
        if dry_run:
            self.progress("dry run: nothing is written")
            return result
        from onnxdoctor.export.report import write_export_report

        self.out.mkdir(parents=True, exist_ok=True)
        try:
            if result.adapter is not None:
                self._stage("merge", self.merge)
            self._stage("export", self.export)
            self.publish()
            for name in self.settings["quantize"]:
                self._stage(f"quantize-{name}", lambda n=name: self.quantize(n))
            self._stage("measure", self.measure)
            broken = [v for v in result.variants if v.status not in ("verified", "skipped")]
            if broken:
                raise ValidationFailed("; ".join(f"{v.name} not shipped: {v.reason}" for v in broken))
        except ExportPipelineError as exc:
            result.error = exc
        finally:
            self.progress(f"writing the report into {self.out / 'report'}")
            result.report = write_export_report(result, self.out / "report")
        return result


@contextlib.contextmanager
def _scratch(folder: Path) -> Iterator[str]:
    """A scratch folder under DIR (nothing is written outside it), removed afterwards."""
    folder.mkdir(parents=True)
    try:
        yield str(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _tracer_warnings(attempt: Attempt) -> tuple[list[str], list[str]]:
    """The kept export's TracerWarnings: (warnings, notes). Those raised in the user's code are warnings (verify
    passed, but they say where the trace is input-specific); those inside installed libraries (transformers'
    cache and mask code, in every optimum export of a healthy model) are counted in one note."""
    from onnxdoctor.export.recover import library_tracer_warning

    log = attempt.out / "export.log" if attempt.out else None
    if log is None or not log.is_file():
        return [], []
    lines = [line for line in log.read_text().splitlines() if "TracerWarning" in line]
    found = []
    for line in lines:
        if not library_tracer_warning(line):
            where = line.split(": TracerWarning")[0].strip()
            found.append(f"attempt {attempt.index} ({attempt.name}) TracerWarning at {where}: {line.split('TracerWarning: ', 1)[-1][:160]}")
    library = len({line for line in lines if library_tracer_warning(line)})
    notes = [f"attempt {attempt.index} ({attempt.name}): {library} TracerWarning(s) inside installed libraries (transformers, torch), "
             f"as in exports of healthy models; verify passed; listed in {log}"] if library else []
    return list(dict.fromkeys(found))[:10], notes


def _drift(report: Any) -> dict[str, Any]:
    """The worst logits drift of a verify / compare, its envelope and greedy agreement (per variant)."""
    worst, top1, envelope = 0.0, 1.0, None
    for scenario in report.results:
        envelope = scenario.envelope.describe()
        for row in scenario.rows:
            if row.logits is not None:
                worst = max(worst, float(row.logits.scaled))
                top1 = min(top1, float(getattr(row.logits, "top1", 1.0)))
    failing = [f.code for f in departures(report)]
    return {"max_scaled_logits": round(worst, 6), "min_top1_agreement": round(top1, 4), "envelope": envelope, "departures": failing, "verdict": report.verdict()}
