"""Recovery engine: findings -> patched export settings -> real re-export -> inspect + replay again.

Every attempt runs the real exporter in a subprocess with a time limit and writes to a fresh
folder under --out; it is kept only when the findings it targeted are gone and no new error
appears. Without an export source, graph surgery mends what can be mended in the file itself.
Nothing is ever written over or next to the input.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from onnxdoctor import __version__
from onnxdoctor.doctor import Report, diagnose
from onnxdoctor.errors import OnnxDoctorError, UsageError
from onnxdoctor.findings import Severity
from onnxdoctor.inspectors.dynamic_axes import DIM_NAMES
from onnxdoctor.model.signature import Signature, axis_roles

STATIC_AXES = ("ODA101", "ODA102", "ODA103", "ODA104", "ODA105")
MERGED_MISUSE = ("ODF507", "ODF508")  # clients driving use_cache_branch or the cross cache wrongly
FP16_TROUBLE = ("ODS003", "ODX404", "ODX405")
Progress = Callable[[str], None]


@dataclass
class Attempt:
    index: int
    name: str
    exporter: str  # optimum | torch | surgery
    targets: tuple[str, ...]
    settings: dict[str, Any]
    why: str
    safe: bool = True
    out: Path | None = None
    produced: Path | None = None  # the export (file or folder) inspect + replay verified
    result: str = "planned"  # planned | kept | rejected | failed | timeout | skipped
    reason: str = ""
    before: list[str] = field(default_factory=list)
    after: list[str] = field(default_factory=list)
    seconds: float = 0.0
    log_tail: list[str] = field(default_factory=list)
    verified: dict[str, Any] | None = None  # verify against the source: verdict, codes, worst drift

    @property
    def command(self) -> str:
        if self.exporter == "optimum":
            flags = [f"--task {self.settings['task']}"]
            if self.settings.get("opset"):
                flags.append(f"--opset {self.settings['opset']}")
            if self.settings.get("dtype", "fp32") != "fp32":
                flags.append(f"--dtype {self.settings['dtype']}")
            if self.settings.get("no_post_process"):
                flags.append("--no-post-process")
            if self.settings.get("no_dynamic_axes"):
                flags.append("--no-dynamic-axes")
            if self.settings.get("constant_folding") is False:
                flags.append("--no-constant-folding")
            if self.settings.get("attn_implementation"):
                flags.append(f"(model loaded with attn_implementation={self.settings['attn_implementation']})")
            return "optimum-cli export onnx --model SOURCE " + " ".join(flags) + " OUT"
        if self.exporter == "torch":
            dynamo = self.settings.get("dynamo", False)
            axes = len(self.settings.get("dynamic_axes", {}))
            shape = "dynamic_shapes" if dynamo else "dynamic_axes"
            extra = "".join(
                f", {key}={self.settings[key]}" for key in ("constant_folding", "external_data") if key in self.settings
            ).replace("constant_folding", "do_constant_folding")
            return f"torch.onnx.export(dynamo={dynamo}, opset_version={self.settings.get('opset')}, {shape} for {axes} tensors{extra})"
        return f"graph surgery: {self.name} ({'safe' if self.safe else 'unsafe'})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "name": self.name,
            "exporter": self.exporter,
            "command": self.command,
            "settings": self.settings,
            "targets": list(self.targets),
            "why": self.why,
            "safe": self.safe,
            "out": str(self.out) if self.out else None,
            "produced": str(self.produced) if self.produced else None,
            "result": self.result,
            "reason": self.reason,
            "findings_before": self.before,
            "findings_after": self.after,
            "seconds": round(self.seconds, 2),
            "log_tail": self.log_tail,
            "verify": self.verified,
        }


@dataclass
class FixReport:
    path: str
    source: str | None
    out: Path
    before: Report
    attempts: list[Attempt]
    notes: list[str] = field(default_factory=list)
    dry_run: bool = False

    @property
    def kept(self) -> Attempt | None:
        """The last kept attempt (graph fixes chain, so it holds every fix kept before it)."""
        kept = [a for a in self.attempts if a.result == "kept"]
        return kept[-1] if kept else None

    @property
    def exit_code(self) -> int:
        if self.dry_run or not self.before.problems():
            return 0
        return 0 if self.kept is not None else 1

    def to_dict(self) -> dict[str, Any]:
        kept = self.kept
        return {
            "schema": 1,
            "tool": {"name": "onnxdoctor", "version": __version__},
            "command": "fix",
            "path": self.path,
            "source": self.source,
            "dry_run": self.dry_run,
            "findings_before": sorted({f.code for f in self.before.problems()}),
            "kept": str(kept.produced) if kept and kept.produced else None,
            "attempts": [a.to_dict() for a in self.attempts],
            "notes": self.notes,
        }


def _problem_codes(report: Report) -> list[str]:
    return sorted({f.code for f in report.problems()})


def _error_codes(report: Report) -> set[str]:
    return {f.code for f in report.findings if f.severity is Severity.ERROR}


def decoder_signatures(report: Report) -> list[Signature]:
    assert report.inspect is not None
    return [r.signature for r in report.inspect.files if r.signature.kind == "decoder"]


def dynamic_axes_for(signatures: list[Signature]) -> dict[str, dict[int, str]]:
    """The dynamic_axes a torch.onnx export needs: every role axis of every input and output, named by role."""
    axes: dict[str, dict[int, str]] = {}
    for signature in signatures:
        for tensor in signature.inputs + signature.outputs:
            for axis, meaning in axis_roles(signature, tensor).items():
                axes.setdefault(tensor.name, {})[axis] = DIM_NAMES[meaning]
    return axes


def _source_kind(source: str | None, exporter: str | None) -> str | None:
    if source is None:
        return None
    if exporter is not None:
        return exporter
    if re.search(r"\.py:\w+$", source):
        return "torch"
    if Path(source).is_dir():
        return "optimum"
    raise UsageError(f"--source {source!r}: give a Hugging Face model folder (config + weights) or file.py:function")


def _check_source(source: str, kind: str) -> None:
    if kind == "optimum":
        if not (Path(source) / "config.json").is_file():
            raise UsageError(f"--source {source}: no config.json there; give the local Hugging Face model folder it was exported from")
    else:
        file_name = source.rpartition(":")[0]
        if not Path(file_name).is_file():
            raise UsageError(f"--source {source}: no such file {file_name!r}")


def _check_exporter_installed(kind: str, adapter: str | None) -> None:
    """Say which pip install is missing before any attempt fails on an import."""
    import importlib.util

    from onnxdoctor.errors import MissingExtraError

    needed = ["torch"] + (["optimum.exporters.onnx", "transformers"] if kind == "optimum" else []) + (["peft"] if adapter else [])
    for module in needed:
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            raise MissingExtraError(module.split(".")[0], "export")


def _optimum_task(source: str, signatures: list[Signature]) -> str:
    config = json.loads((Path(source) / "config.json").read_text())
    with_past = any(s.kv is not None for s in signatures)
    base = "text2text-generation" if config.get("is_encoder_decoder") else "text-generation"
    return base + ("-with-past" if with_past else "")


def plan_attempts(report: Report, source: str | None, kind: str | None, *, adapter: str | None, user: dict[str, Any]) -> tuple[list[Attempt], list[str]]:
    """Attempts most specific first; each attempt carries every targeted patch so far."""
    codes = set(_problem_codes(report))
    signatures = decoder_signatures(report)
    notes: list[str] = []
    attempts: list[Attempt] = []
    static = tuple(sorted(codes & set(STATIC_AXES)))
    fp16 = tuple(sorted(codes & set(FP16_TROUBLE)))
    merged = any(s.kv is not None and s.kv.merged for s in signatures)
    opset = next((s.opset for s in signatures if s.opset), None)
    if kind == "optimum":
        assert source is not None
        settings: dict[str, Any] = {
            "task": user.get("task") or _optimum_task(source, signatures),
            "opset": user.get("opset", opset),
            "dtype": "fp32" if fp16 else user.get("dtype", "fp16" if any(s.kv and s.kv.dtype == "float16" for s in signatures) else "fp32"),
            "no_post_process": not merged,
            "no_dynamic_axes": False,
        }
        why = []
        if static:
            why.append("dynamic axes on every input and output (no --no-dynamic-axes)")
        if fp16:
            why.append("fp32 export (fp16 I/O trouble)")
        misuse = tuple(sorted(codes & set(MERGED_MISUSE)))
        if merged and misuse:
            attempts.append(Attempt(
                0, "no-post-process", "optimum", tuple(sorted(codes)), {**settings, "no_post_process": True},
                f"clients misdrive the merged decoder ({', '.join(misuse)}): export decoder_model + decoder_with_past_model, "
                "which have no use_cache_branch and no cross-attention placeholders",
            ))
        attempts.append(Attempt(0, "re-export" + ("+dynamic-axes" if static else "") + ("+fp32" if fp16 else ""), "optimum", tuple(sorted(codes)), settings, "; ".join(why) or "re-export with default settings"))
        if merged and not misuse:
            attempts.append(Attempt(0, "no-post-process", "optimum", tuple(sorted(codes)), {**settings, "no_post_process": True}, "separate decoder_model / decoder_with_past_model instead of a merged If"))
        if opset != 17:
            attempts.append(Attempt(0, "opset-17", "optimum", tuple(sorted(codes)), {**settings, "opset": 17}, "another opset"))
    elif kind == "torch":
        axes = dynamic_axes_for(signatures)
        legacy_opset: int | None = user.get("opset", opset)
        dynamo_opset = max(legacy_opset or 18, 18)  # the dynamo exporter needs opset 18+
        base: dict[str, Any] = {"opset": legacy_opset, "dynamic_axes": {k: {str(a): n for a, n in v.items()} for k, v in axes.items()}}
        allow_dynamo = user.get("dynamo", True) is not False
        if "ODR201" in codes and allow_dynamo:
            attempts.append(Attempt(0, "dynamo+dynamic-shapes", "torch", tuple(sorted(codes)), {**base, "dynamo": True, "opset": dynamo_opset}, "the dynamo exporter keeps tensor sizes symbolic where the legacy trace baked them"))
        attempts.append(Attempt(0, "dynamic-axes", "torch", tuple(sorted(codes)), {**base, "dynamo": False}, "dynamic_axes for every input and output, named by role"))
        attempts.append(Attempt(0, "no-constant-folding", "torch", tuple(sorted(codes)), {**base, "dynamo": False, "constant_folding": False}, "constant folding can freeze shape arithmetic"))
        if "ODR201" not in codes and allow_dynamo:
            attempts.append(Attempt(0, "dynamo", "torch", tuple(sorted(codes)), {**base, "dynamo": True, "opset": dynamo_opset}, "the other exporter"))
    else:
        attempts = surgery_attempts(report)
        if not attempts:
            notes.append("no graph surgery applies to these findings; give --source (the model folder or file.py:function) to re-export")
    for index, attempt in enumerate(attempts, start=1):
        attempt.index = index
    if adapter and kind != "optimum":
        raise UsageError("--adapter needs an optimum source (a Hugging Face model folder)")
    return attempts, notes


def surgery_attempts(report: Report) -> list[Attempt]:
    """One attempt per graph fix that applies to the report's findings."""
    from onnxdoctor.recovery.surgery import describe_fix, plan_surgery

    assert report.inspect is not None
    attempts = []
    for make in plan_surgery(report.inspect):
        name, safe, targets = describe_fix(make)
        why = "mend the file itself: " + {"swap-concat-inputs": "Concat(past, new) order restored",
                                         "expose-present": "the dropped present re-exposed from its Concat",
                                         "symbolic-batch": "the fixed batch dim made symbolic"}[name]
        attempts.append(Attempt(0, name, "surgery", targets, {"make": make}, why, safe=safe))
    return attempts


class RecoveryEngine:
    def __init__(
        self,
        path: str,
        *,
        out: Path,
        source: str | None = None,
        exporter: str | None = None,
        adapter: str | None = None,
        config: dict[str, Any] | None = None,
        timeout: float = 600.0,
        unsafe_fixes: bool = False,
        steps: int = 2,
        progress: Progress | None = None,
        feeds: list[Path] | None = None,
    ) -> None:
        self.path = path
        self.feeds = list(feeds or [])
        self.out = out
        self.source = source
        self.kind = _source_kind(source, exporter)
        if source is not None and self.kind is not None:
            _check_source(source, self.kind)
            _check_exporter_installed(self.kind, adapter)
        if adapter is not None and not Path(adapter).is_dir():
            raise UsageError(f"--adapter {adapter}: no such folder")
        self.adapter = adapter
        self.user = dict(config or {})
        self.timeout = timeout
        self.unsafe_fixes = unsafe_fixes
        self.steps = steps
        self.progress = progress or (lambda _m: None)
        self._fixed_names: dict[str, list[str]] = {}
        if not Path(path).exists():
            from onnxdoctor.errors import UnusableInputError

            raise UnusableInputError(path, "no such file or folder")
        target = Path(path).resolve()
        resolved_out = out.resolve()
        # an export folder is the model: nothing goes into it; a single file's folder may hold a new subfolder
        inside = resolved_out == target or target in resolved_out.parents if target.is_dir() else resolved_out == target.parent
        if inside or resolved_out == target:
            raise UsageError(f"--out {out} would write into the model's folder: onnxdoctor never writes into or over your model")

    def _diagnose(self, path: Path | str) -> Report:
        return diagnose(path, steps=self.steps)

    def run(self, *, dry_run: bool = False) -> FixReport:
        self.progress(f"diagnosing {self.path}")
        before = self._diagnose(self.path)
        self._fixed_names = self._names(before)
        if self.feeds:
            from onnxdoctor.findings import sort_findings
            from onnxdoctor.replay.dumps import expand_steps
            from onnxdoctor.replay.feedcheck import FeedChecker

            assert before.inspect is not None
            steps = expand_steps(self.feeds)  # a folder of dumps counts as its steps
            self.progress(f"checking {len(steps)} recorded client steps")
            client = FeedChecker(before.inspect).run(steps)
            before.findings = sort_findings(before.findings + client.findings)
        if self.kind == "torch" and before.problems():
            self._check_factory(before)
        attempts, notes = ([], ["no error or warning findings: nothing to fix"]) if not before.problems() else plan_attempts(
            before, self.source, self.kind, adapter=self.adapter, user=self.user
        )
        report = FixReport(self.path, self.source, self.out, before, attempts, notes, dry_run)
        for attempt in attempts:
            attempt.before = _problem_codes(before)
        if dry_run or not attempts:
            return report
        if self.out.exists() and any(self.out.iterdir()):
            existing = sorted(p.name for p in self.out.iterdir())
            if any(name.startswith("attempt-") for name in existing):
                raise UsageError(f"--out {self.out} already holds attempts ({', '.join(existing[:3])}); give a new folder")
        self.out.mkdir(parents=True, exist_ok=True)
        if self.kind is None:
            self._run_surgery(report)
        else:
            for attempt in attempts:
                kept = report.kept
                if kept is not None:
                    attempt.result, attempt.reason = "skipped", f"not needed: attempt {kept.index} was kept"
                    continue
                self._attempt(attempt, before)
        self._explain_baked(report)
        return report

    def _names(self, report: Report) -> dict[str, list[str]]:
        """The fixed model's own input and output names: what its clients feed, so a re-export keeps them."""
        signatures = decoder_signatures(report)
        if not signatures:
            return {}
        return {"inputs": [t.name for t in signatures[0].inputs], "outputs": [t.name for t in signatures[0].outputs]}

    def _worker(self, spec: dict[str, Any], folder: Path, *flags: str) -> subprocess.CompletedProcess[str]:
        return run_worker(spec, folder, self.timeout, *flags)

    def _check_factory(self, before: Report) -> None:
        """Load the user's torch factory once, in a worker, before planning: a factory that raises or returns
        something torch.onnx.export does not take is bad input (one line, exit 2), not three failed attempts.

        A crash or a hang is left to the attempts, which record its last lines under the time limit.
        """
        from onnxdoctor.recovery.export_worker import FACTORY_ERROR

        self.progress(f"loading the factory {self.source}")
        spec = {"exporter": "torch", "source": self.source, "names": self._names(before)}
        with tempfile.TemporaryDirectory(prefix="onnxdoctor-check-") as folder:
            try:
                completed = self._worker(spec, Path(folder), "--check")
            except subprocess.TimeoutExpired:
                return
        if completed.returncode == FACTORY_ERROR:
            line = next((l for l in completed.stderr.splitlines() if l.startswith("factory error: ")), completed.stderr.strip()[-300:])
            raise UsageError(f"--source {self.source}: {line.removeprefix('factory error: ')}")
        if completed.returncode == 0:
            info = json.loads(completed.stdout.strip().splitlines()[-1])
            self.progress(
                f"factory returns a {info['form']} with {info['tensors']} input tensors; input names from {info['input_names_from']}"
            )

    def _run_surgery(self, report: FixReport) -> None:
        """Fixes chain: each kept fix becomes the input of the next plan, until nothing more applies."""
        current: Report = report.before
        current_path = Path(self.path)
        done: set[str] = set()
        planned = list(report.attempts)
        report.attempts = []
        for _round in range(8):
            progressed = False
            for attempt in planned:
                if attempt.name in done:
                    continue
                attempt.index = len(report.attempts) + 1
                attempt.before = _problem_codes(current)
                report.attempts.append(attempt)
                if not attempt.safe and not self.unsafe_fixes:
                    attempt.result, attempt.reason = "skipped", "unsafe fix: pass --unsafe-fixes to try it"
                    done.add(attempt.name)
                    continue
                self._attempt(attempt, current)
                done.add(attempt.name)
                if attempt.result == "kept" and attempt.out is not None:
                    current_path = self._kept_path(attempt)
                    current = self._diagnose(current_path)
                    progressed = True
                    break
            if not progressed:
                return
            planned = [a for a in surgery_attempts(current) if a.name not in done]
            if not planned:
                return

    def _kept_path(self, attempt: Attempt) -> Path:
        assert attempt.out is not None
        return attempt.out if Path(self.path).is_dir() else attempt.out / Path(self.path).name

    def _attempt(self, attempt: Attempt, before: Report) -> None:
        attempt.out = self.out / f"attempt-{attempt.index}-{attempt.name}"
        self.progress(f"attempt {attempt.index}: {attempt.command}")
        started = time.perf_counter()
        try:
            produced = self._export(attempt)
        finally:
            attempt.seconds = time.perf_counter() - started
        if produced is None:
            return
        from onnxdoctor.recovery.proof import prove

        verified_against = self.source if attempt.exporter in ("optimum", "torch") else None
        prove(
            attempt, produced, before_errors=_error_codes(before), source=verified_against,
            adapter=self.adapter if attempt.exporter == "optimum" else None, steps=self.steps, progress=self.progress,
        )

    def _export(self, attempt: Attempt) -> Path | None:
        assert attempt.out is not None
        if attempt.exporter == "surgery":
            attempt.out.mkdir(parents=True)
            return self._surgery(attempt)
        return export_attempt(attempt, source=self.source, adapter=self.adapter, names=self._fixed_names, timeout=self.timeout)

    def _surgery(self, attempt: Attempt) -> Path | None:
        from onnxdoctor.recovery.surgery import SurgeryRefused, write_mended

        assert attempt.out is not None
        make = attempt.settings["make"]
        try:
            result = make()
        except SurgeryRefused as exc:
            attempt.result, attempt.reason = "failed", str(exc)
            return None
        attempt.settings = {"description": result.description}
        attempt.why = result.description
        source = Path(getattr(make, "args", [None])[0].path)  # the model file the fix was planned on
        mended = write_mended(result, source, attempt.out)
        if not Path(self.path).is_dir():
            return mended
        for sibling in source.parent.glob("*.onnx"):  # an export folder keeps its other files (the encoder)
            if sibling.name != source.name and not (attempt.out / sibling.name).exists():
                _copy_with_external_data(sibling, attempt.out)
        return attempt.out

    def _explain_baked(self, report: FixReport) -> None:
        """A baked Reshape that survives every export needs a code change: say where."""
        if "ODR201" not in {f.code for f in report.before.problems()}:
            return
        kept = report.kept
        nodes = [f for f in report.before.findings if f.code == "ODR201"]
        names = ", ".join(str(f.location.name) for f in nodes[:4])
        modules = sorted({name.split("/")[1] for f in nodes if (name := str(f.location.name)).startswith("/") and name.count("/") > 1})
        lines = _stack_lines(report)
        if kept is not None and "ODR201" not in kept.after:
            message = (
                f"Reshape node(s) {names} had a constant target shape baked by the trace: the module turns a size "
                f"into a Python int; attempt {kept.index} ({kept.name}) keeps those sizes symbolic, but the code "
                "change (keep sizes as tensors, or -1) makes every exporter work"
            )
        else:
            message = (
                f"needs a code change: Reshape node(s) {names} have a constant target shape baked at export; the module "
                "turns a size into a Python int (int(x.shape[i]), x.size(i) in arithmetic)"
            )
        if modules:
            message += f"; look in module(s) {', '.join(modules)} of the exported wrapper"
        if lines:
            message += f"; source: {'; '.join(lines)}"
        report.notes.append(message)


def _copy_with_external_data(model: Path, folder: Path) -> None:
    """Copy a model file and the external data files it names (a model past 2 GB keeps its weights there)."""
    from onnxdoctor.model.load import load_file

    for name in [model.name, *load_file(model).external_files]:
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            shutil.copyfile(model.parent / name, target)


def _stack_lines(report: FixReport) -> list[str]:
    """Source lines recorded by the dynamo exporter on baked Reshape nodes, when an attempt produced them."""
    found: list[str] = []
    for attempt in report.attempts:
        if attempt.out is None or "ODR201" not in attempt.after:
            continue
        for path in attempt.out.rglob("*.onnx"):
            model = onnx.load(str(path), load_external_data=False)
            for node in model.graph.node:
                if node.op_type != "Reshape":
                    continue
                for prop in node.metadata_props:
                    if "stack_trace" in prop.key and prop.value:
                        frame = [line.strip() for line in prop.value.splitlines() if line.strip().startswith("File ")]
                        if frame and frame[-1] not in found:
                            found.append(frame[-1])
    return found[:3]


def run_worker(spec: dict[str, Any], folder: Path, timeout: float, *flags: str) -> subprocess.CompletedProcess[str]:
    """The export worker in its own process with a time limit (a crash or a hang cannot take onnxdoctor down)."""
    spec_path = folder / "export_spec.json"
    spec_path.write_text(json.dumps(spec, indent=2))
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    command = [sys.executable, "-m", "onnxdoctor.recovery.export_worker", *flags, str(spec_path)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)


def export_attempt(attempt: Attempt, *, source: str | None, adapter: str | None, names: dict[str, list[str]], timeout: float) -> Path | None:
    """Run one attempt's exporter into `attempt.out/export`; None (with result and reason set) when it produced nothing.

    Shared by `fix` and the `export` pipeline: the log goes to `attempt.out/export.log`, its last lines to the attempt.
    """
    assert attempt.out is not None
    attempt.out.mkdir(parents=True)
    export_dir = attempt.out / "export"
    spec = {
        "exporter": attempt.exporter,
        "source": source,
        "adapter": adapter,
        "settings": attempt.settings,
        "out": str(export_dir),
        "work": str(attempt.out),
        "names": names,
    }
    try:
        completed = run_worker(spec, attempt.out, timeout)
    except subprocess.TimeoutExpired as exc:
        output = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        errors = (exc.stderr or b"").decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        attempt.log_tail = (output + errors).strip().splitlines()[-15:]
        attempt.result, attempt.reason = "timeout", f"the exporter ran past {timeout:.0f} s and was stopped"
        return None
    (attempt.out / "export.log").write_text(completed.stdout + completed.stderr)
    attempt.log_tail = (completed.stdout + completed.stderr).strip().splitlines()[-15:]
    if completed.returncode != 0:
        attempt.result = "failed"
        attempt.reason = f"the exporter exited with {completed.returncode}" + (" (killed by a signal)" if completed.returncode < 0 else "")
        return None
    models = sorted(export_dir.glob("*.onnx"))
    if not models:
        attempt.result, attempt.reason = "failed", "the exporter wrote no .onnx file"
        return None
    for clutter in ("export_spec.json",):
        (attempt.out / clutter).unlink(missing_ok=True)
    return export_dir
