"""`onnxdoctor bench`: speed and memory of a real KV-cache decode, with the reference protocol.

A perf tool that times one call with random feeds cannot run a decode (step 0 with an empty past, the
presents fed back), so decoder numbers quoted from it are prefill-only. Here every run is a greedy
decode through the one driver (driver.decode.decode), and every latency is the time the backend
measured for its own call (driver.backend.Timing): feed building and argmax stay outside the numbers.

Per export: session creation, prefill (step 0), per-token decode latency (median and p90 over every
decode step of every timed run), tokens/s (batch x new tokens / the decode steps' time, median over
runs), peak resident memory of the process during the decode, self-attention KV-cache bytes per token
(from the Signature's KV layout), and the size on disk (graphs + external data). Warm-up runs are
discarded; the spread over the timed runs is reported, not hidden. Sessions are optimized by default
(the way they are deployed); replay's sessions are not (quick to create): `optimize=False` matches it.
"""

from __future__ import annotations

import gc
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from onnxdoctor import __version__
from onnxdoctor.errors import UsageError

Progress = Callable[[str], None]


@dataclass
class BenchOptions:
    prompt_len: int = 16
    new_tokens: int = 32  # decode steps after the prompt, one token per row each
    batch: int = 1
    provider: str = "cpu"
    threads: int | None = None  # intra-op threads; None: ONNX Runtime's default
    repeat: int = 5  # timed runs
    warmup: int = 1  # runs before them, discarded
    optimize: bool = True  # ONNX Runtime graph optimization (deployment); False: as replay runs
    encoder_len: int = 16
    seed: int = 0

    def check(self) -> None:
        if self.prompt_len < 1 or self.new_tokens < 1 or self.batch < 1 or self.repeat < 1 or self.warmup < 0:
            raise UsageError("--prompt-len, --new-tokens, --batch and --repeat must be at least 1 (--warmup at least 0)")
        if self.threads is not None and self.threads < 1:
            raise UsageError("--threads must be at least 1")

    def describe(self) -> str:
        optimized = "graph optimization ON (as deployed; --no-optimize runs sessions the way replay does)" if self.optimize else (
            "graph optimization OFF (--no-optimize: sessions as replay creates them, not as deployed)"
        )
        threads = f"{self.threads} intra-op threads" if self.threads else "ONNX Runtime's default threads"
        return (
            f"ONNX Runtime {self.provider}, {optimized}, {threads}; batch {self.batch}, a {self.prompt_len}-token prompt, "
            f"{self.new_tokens} new tokens (greedy); {self.warmup} warm-up + {self.repeat} timed runs"
        )


@dataclass
class Run:
    """One timed decode: what the backend measured for each of its calls."""

    prefill_s: float
    step_s: list[float]  # one per decode step after the prompt
    encoder_s: float = 0.0
    peak_rss: int | None = None  # bytes, the process's peak during this run


@dataclass
class Spread:
    """A figure over the timed runs: its median and the lowest and highest run."""

    median: float
    low: float
    high: float

    @property
    def relative(self) -> float:
        """(highest - lowest) / median: 0.04 reads as a 4% spread between runs."""
        return (self.high - self.low) / self.median if self.median else 0.0

    def to_dict(self) -> dict[str, float]:
        return {"median": self.median, "min": self.low, "max": self.high, "relative_spread": self.relative}


def spread(values: list[float]) -> Spread:
    return Spread(statistics.median(values), min(values), max(values))


@dataclass
class BenchResult:
    """The numbers of one export."""

    path: str
    scenario: str
    options: BenchOptions
    session_s: float
    runs: list[Run]
    kv_bytes_per_token: int | None  # self-attention cache, all layers, key + value, one sequence
    file_bytes: int
    rss_before: int | None  # before the sessions were created
    memory_method: str  # how the peak was measured: VmHWM (exact, Linux) or sampled (psutil)
    files: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return Path(self.path).name or self.path

    @property
    def per_token_s(self) -> list[float]:
        """Every decode step of every timed run."""
        return [s for run in self.runs for s in run.step_s]

    @property
    def per_token_median_s(self) -> float:
        return statistics.median(self.per_token_s)

    @property
    def per_token_p90_s(self) -> float:
        return float(np.percentile(self.per_token_s, 90))

    @property
    def per_token_spread(self) -> Spread:
        """The per-run medians of the per-token latency."""
        return spread([statistics.median(run.step_s) for run in self.runs])

    @property
    def prefill(self) -> Spread:
        return spread([run.prefill_s for run in self.runs])

    @property
    def tokens_per_s_runs(self) -> list[float]:
        return [self.options.batch * len(run.step_s) / sum(run.step_s) for run in self.runs]

    @property
    def tokens_per_s(self) -> float:
        return statistics.median(self.tokens_per_s_runs)

    @property
    def tokens_per_s_spread(self) -> Spread:
        return spread(self.tokens_per_s_runs)

    @property
    def per_step_median_s(self) -> list[float]:
        """Decode step i's median over the timed runs (latency as the cache grows)."""
        return [statistics.median(run.step_s[i] for run in self.runs) for i in range(len(self.runs[0].step_s))]

    @property
    def peak_rss(self) -> int | None:
        peaks = [run.peak_rss for run in self.runs if run.peak_rss is not None]
        return max(peaks) if peaks else None

    @property
    def peak_rss_growth(self) -> int | None:
        """The peak above the process's resident memory before the sessions were created: what this export costs."""
        peak = self.peak_rss
        return None if peak is None or self.rss_before is None else max(0, peak - self.rss_before)

    @property
    def encoder_s(self) -> float | None:
        return statistics.median(run.encoder_s for run in self.runs) if any(run.encoder_s for run in self.runs) else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "scenario": self.scenario,
            "files": self.files,
            "session_creation_s": self.session_s,
            "encoder_s": self.encoder_s,
            "prefill_s": self.prefill.to_dict(),
            "per_token_s": {"median": self.per_token_median_s, "p90": self.per_token_p90_s, "per_run_median": self.per_token_spread.to_dict()},
            "tokens_per_s": {"median": self.tokens_per_s, **{k: v for k, v in self.tokens_per_s_spread.to_dict().items() if k != "median"}},
            "per_step_median_s": self.per_step_median_s,
            "runs": [{"prefill_s": r.prefill_s, "step_s": r.step_s, "encoder_s": r.encoder_s, "peak_rss_bytes": r.peak_rss} for r in self.runs],
            "memory": {"peak_rss_bytes": self.peak_rss, "peak_above_before_sessions_bytes": self.peak_rss_growth, "rss_before_sessions_bytes": self.rss_before, "method": self.memory_method},
            "kv_cache_bytes_per_token": self.kv_bytes_per_token,
            "file_bytes": self.file_bytes,
        }


# ---------------------------------------------------------------------------------------------- sizes


def kv_bytes_per_token(signature: Any) -> int | None:
    """Bytes the self-attention cache grows by per token of one sequence: every layer's key and value.

    From the declared cache tensors: the product of every axis but batch and cache length, times the
    element size. None when an axis is not a number (the heads or head_dim are symbolic).
    """
    from onnxdoctor.replay.runtime import numpy_dtype

    kv = signature.kv if signature is not None else None
    if kv is None:
        return None
    total, seen = 0, set()
    for pair in kv.self_pairs():
        tensor = pair.past or pair.present
        if tensor is None or tensor.name in seen or pair.axes is None or tensor.dims is None:
            continue
        seen.add(tensor.name)
        per_position = 1
        for axis, dim in enumerate(tensor.dims):
            if axis in (pair.axes.batch, pair.axes.cache):
                continue
            if not dim.is_static:
                return None
            per_position *= int(dim.value or 0)
        total += per_position * numpy_dtype(tensor.elem_type).itemsize
    return total or None


def file_bytes(model_files: list[Any]) -> int:
    """Graphs plus their external data files, each file counted once."""
    seen: dict[Path, int] = {}
    for model_file in model_files:
        seen[model_file.path.resolve()] = model_file.size_bytes
        for location in model_file.external_files:
            data = (model_file.path.parent / location).resolve()
            seen[data] = data.stat().st_size
    return sum(seen.values())


# ---------------------------------------------------------------------------------------------- memory


def _rss() -> int | None:
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.Process().memory_info().rss)


class PeakMemory:
    """The process's peak resident memory over a block.

    Linux: the kernel's own high-water mark (VmHWM), reset at the start by writing 5 to
    /proc/self/clear_refs: exact, no sampling. Elsewhere: psutil sampled every millisecond from a
    thread (ONNX Runtime releases the GIL while it runs, so the samples land during the calls).
    """

    def __init__(self) -> None:
        self.method = "VmHWM" if self._reset_hwm() else ("sampled" if _rss() is not None else "unavailable")
        self.peak: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def _reset_hwm() -> bool:
        if not sys.platform.startswith("linux"):
            return False
        try:
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")
            return PeakMemory._hwm() is not None
        except OSError:
            return False

    @staticmethod
    def _hwm() -> int | None:
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        except (OSError, ValueError):
            return None
        return None

    def __enter__(self) -> PeakMemory:
        if self.method == "VmHWM":
            self._reset_hwm()
        elif self.method == "sampled":
            self.peak = _rss()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.001):
            value = _rss()
            if value is not None and (self.peak is None or value > self.peak):
                self.peak = value

    def __exit__(self, *_exc: object) -> None:
        if self.method == "VmHWM":
            self.peak = self._hwm()
        elif self._thread is not None:
            self._stop.set()
            self._thread.join()


# ---------------------------------------------------------------------------------------------- running


def _pick_scenario(scenarios: list[Any]) -> Any:
    """The decode a deployment runs: the first with a cache (a cacheless export recomputes every step)."""
    return next((s for s in scenarios if s.stepn is not None), scenarios[0])


class Bencher:
    """One export's sessions, created once; each `run()` is one timed greedy decode through the driver.

    `bench()` is warm-ups and repeats of it; a benchmark can interleave `run()` with another loop so a
    loaded machine slows both alike (bench/bench_decode.py). Close it (or use it as a context manager).
    """

    def __init__(self, path: str | Path, options: BenchOptions | None = None) -> None:
        from onnxdoctor.driver.backend import OrtBackend
        from onnxdoctor.driver.decode import config_pad_ids, config_vocab
        from onnxdoctor.engine import inspect_path
        from onnxdoctor.replay.protocol import plan_scenarios

        self.path = path
        self.options = options or BenchOptions()
        self.options.check()
        report = inspect_path(path)
        self.scenario = _pick_scenario(plan_scenarios(report))
        signatures = [s for s in (self.scenario.encoder, self.scenario.step0, self.scenario.stepn) if s is not None]
        unique = list({s.file: s for s in signatures}.values())
        self.models = [r.model_file for r in report.files if r.signature.file in {s.file for s in unique}]
        self.schedule = [self.options.prompt_len] + [1] * self.options.new_tokens
        self.vocab = config_vocab(path)
        self.avoid = config_pad_ids(path)
        self.rss_before = _rss()
        self.memory_method = "unavailable"
        self.backend = OrtBackend(dict(self.scenario.paths), self.options.provider, optimize=self.options.optimize, threads=self.options.threads)
        started = time.perf_counter()
        for signature in unique:
            self.backend.prepare(signature)
        self.session_s = time.perf_counter() - started

    def run(self) -> Run:
        """One greedy decode of the seeded prompt (the same tokens every run), timed by the backend."""
        from onnxdoctor.driver.decode import decode, encode, greedy, prompt_tokens
        from onnxdoctor.replay.protocol import DecodeState

        options, backend = self.options, self.backend
        rng = np.random.default_rng(options.seed)
        tokens, mask, _pad = prompt_tokens(self.scenario, options.batch, self.schedule, self.vocab, rng, self.avoid)
        state = DecodeState(tokens[:, : options.prompt_len], mask[:, : options.prompt_len])
        with PeakMemory() as memory:
            calls = backend.timing.calls
            encode(self.scenario, backend, state, options.batch, options.encoder_len, self.vocab, rng)
            encoder_s = sum(backend.timing.per_call[calls:])
            steps = []
            for step in decode(self.scenario, backend, tokens, mask, self.schedule, rng=rng, state=state, choose=greedy):
                if step.error is not None:
                    first = str(step.error).strip().splitlines()[0] if str(step.error).strip() else type(step.error).__name__
                    raise UsageError(
                        f"{self.path}: step {step.step} ({step.signature.file}) failed: {first}; run `onnxdoctor replay {self.path}` first"
                    )
                steps.append(step.seconds)
        self.memory_method = memory.method
        return Run(steps[0], steps[1:], encoder_s, memory.peak)

    def result(self, runs: list[Run]) -> BenchResult:
        return BenchResult(
            str(self.path), self.scenario.describe(), self.options, self.session_s, runs,
            kv_bytes_per_token(self.scenario.stepn or self.scenario.step0), file_bytes(self.models), self.rss_before,
            self.memory_method, [m.path.name for m in self.models],
        )

    def close(self) -> None:
        self.backend.deactivate()
        gc.collect()

    def __enter__(self) -> Bencher:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def bench(path: str | Path, options: BenchOptions | None = None, *, progress: Progress | None = None) -> BenchResult:
    """Time `options.warmup + options.repeat` greedy decodes of the export at `path` (warm-ups discarded)."""
    progress = progress or (lambda _m: None)
    with Bencher(path, options) as bencher:
        options = bencher.options
        runs: list[Run] = []
        for index in range(options.warmup + options.repeat):
            timed = index >= options.warmup
            label = f"run {index - options.warmup + 1}/{options.repeat}" if timed else f"warm-up {index + 1}/{options.warmup}"
            progress(f"{Path(path).name}: {label}: {bencher.scenario.describe()}, {options.new_tokens} tokens after a {options.prompt_len}-token prompt")
            run = bencher.run()
            if timed:
                runs.append(run)
        return bencher.result(runs)


# ---------------------------------------------------------------------------------------------- several


@dataclass
class BenchComparison:
    """Several exports benched the same way; ratios against the first."""

    results: list[BenchResult]
    options: BenchOptions

    def ratios(self) -> list[dict[str, float | None]]:
        base = self.results[0]

        def ratio(a: float | None, b: float | None) -> float | None:
            return a / b if a is not None and b else None

        return [
            {
                "per_token_median": ratio(r.per_token_median_s, base.per_token_median_s),
                "tokens_per_s": ratio(r.tokens_per_s, base.tokens_per_s),
                "prefill_median": ratio(r.prefill.median, base.prefill.median),
                "session_creation": ratio(r.session_s, base.session_s),
                "peak_rss": ratio(r.peak_rss, base.peak_rss),
                "kv_cache_bytes_per_token": ratio(r.kv_bytes_per_token, base.kv_bytes_per_token),
                "file_bytes": ratio(r.file_bytes, base.file_bytes),
            }
            for r in self.results
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": 1,
            "tool": {"name": "onnxdoctor", "version": __version__},
            "command": "bench",
            "options": dict(self.options.__dict__),
            "protocol": self.options.describe(),
            "exports": [r.to_dict() for r in self.results],
            "ratios_to_first": self.ratios(),
        }


def bench_many(paths: list[str | Path], options: BenchOptions | None = None, *, progress: Progress | None = None) -> BenchComparison:
    """`bench` each export in turn (one at a time, sessions closed in between), same options for all."""
    options = options or BenchOptions()
    if not paths:
        raise UsageError("give at least one export to bench")
    return BenchComparison([bench(p, options, progress=progress) for p in paths], options)


# ---------------------------------------------------------------------------------------------- rendering


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.3g} ms"


def _bytes(value: int | None) -> str:
    if value is None:
        return "-"
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= size:
            return f"{value / size:.3g} {unit}"
    return f"{value} B"


def _with_spread(s: Spread, fmt: Callable[[float], str]) -> str:
    return f"{fmt(s.median)} ({fmt(s.low)}-{fmt(s.high)}, spread {s.relative:.0%})"


def rows(comparison: BenchComparison) -> tuple[list[str], list[list[str]]]:
    """(header, rows): one column per export, one row per figure; ratios against the first in brackets."""
    results, ratios = comparison.results, comparison.ratios()

    def cell(i: int, text: str, key: str) -> str:
        value = ratios[i][key]
        return text if i == 0 or value is None else f"{text} [{value:.2f}x]"

    def line(label: str, key: str | None, render: Callable[[BenchResult], str]) -> list[str]:
        return [label] + [cell(i, render(r), key) if key else render(r) for i, r in enumerate(results)]

    table = [
        line("decode", None, lambda r: r.scenario),
        line("per-token latency, median", "per_token_median", lambda r: _ms(r.per_token_median_s)),
        line("per-token latency, p90", None, lambda r: _ms(r.per_token_p90_s)),
        line("per-token median over runs", None, lambda r: _with_spread(r.per_token_spread, lambda v: f"{v * 1e3:.3g}")),
        line("tokens/s (decode steps)", "tokens_per_s", lambda r: _with_spread(r.tokens_per_s_spread, lambda v: f"{v:.4g}")),
        line("prefill (step 0)", "prefill_median", lambda r: _with_spread(r.prefill, lambda v: f"{v * 1e3:.3g} ms")),
        line("session creation", "session_creation", lambda r: f"{r.session_s:.3g} s"),
        line("peak resident memory", "peak_rss", lambda r: _bytes(r.peak_rss) + (f" ({r.memory_method})" if r.peak_rss is not None else "")),
        line("peak above the process before its sessions", None, lambda r: _bytes(r.peak_rss_growth)),
        line("KV cache per token", "kv_cache_bytes_per_token", lambda r: _bytes(r.kv_bytes_per_token)),
        line("size on disk", "file_bytes", lambda r: _bytes(r.file_bytes)),
    ]
    if any(r.encoder_s for r in results):
        table.insert(6, line("encoder", None, lambda r: _ms(r.encoder_s)))
    header = [""] + [r.name if [x.name for x in results].count(r.name) == 1 else r.path for r in results]
    return header, table


def render_bench(comparison: BenchComparison, tablefmt: str = "simple") -> str:
    from tabulate import tabulate

    header, table = rows(comparison)
    notes = [
        comparison.options.describe() + ".",
        "Latencies are the time ONNX Runtime spent in each call (the driver's per-call timing); ranges are the lowest and "
        "highest of the timed runs" + ("; [x] is the ratio to the first export" if len(comparison.results) > 1 else "") + ".",
    ]
    return tabulate(table, headers=header, tablefmt=tablefmt) + "\n\n" + "\n".join(notes)


__all__ = ["BenchComparison", "BenchOptions", "BenchResult", "Bencher", "PeakMemory", "bench", "bench_many", "kv_bytes_per_token", "render_bench"]
