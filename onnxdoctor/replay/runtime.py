"""ONNX Runtime sessions for replay: one per file, built for short runs, errors as one clear line.

onnxruntime is imported here and only here (and in the modules that run models), so `import
onnxdoctor` and `inspect` stay light. Short replays spend most of their time creating sessions, so
graph optimization and weight prepacking are off by default: external weights stay memory-mapped.
"""

from __future__ import annotations

import time
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from onnxdoctor.errors import UnusableInputError, UsageError

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


@lru_cache(maxsize=None)
def numpy_dtype(elem_type: int) -> np.dtype[Any]:
    """The numpy dtype ONNX Runtime expects for an ONNX element type."""
    if elem_type == onnx.TensorProto.BOOL:
        return np.dtype(np.bool_)
    return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type))


def _ort() -> Any:
    import onnxruntime

    return onnxruntime


class Runtime:
    """Creates and reuses one InferenceSession per model file."""

    def __init__(self, provider: str = "cpu", *, optimize: bool = False, threads: int | None = None) -> None:
        ort = _ort()
        if provider not in PROVIDERS:
            raise UsageError(f"--provider must be one of {', '.join(PROVIDERS)}, not {provider!r}")
        wanted = PROVIDERS[provider]
        if wanted not in ort.get_available_providers():
            raise UsageError(
                f"--provider {provider}: this onnxruntime has no {wanted} "
                f"(available: {', '.join(ort.get_available_providers())}); pip install onnxruntime-gpu"
            )
        self.provider = provider
        self.providers = [wanted] + (["CPUExecutionProvider"] if wanted != "CPUExecutionProvider" else [])
        self.optimize = optimize
        self.threads = threads  # intra-op threads (None: ONNX Runtime's default, one per core)
        self._sessions: dict[str, Any] = {}
        self._output_names: dict[str, list[str]] = {}
        self.run_seconds = 0.0  # time inside session.run, for the overhead benchmark
        self.calls = 0

    def options(self) -> Any:
        ort = _ort()
        options = ort.SessionOptions()
        options.log_severity_level = 4  # ORT's own log lines would duplicate the findings on stderr
        if not self.optimize:
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            options.add_session_config_entry("session.disable_prepacking", "1")
        if self.threads:
            options.intra_op_num_threads = self.threads
        return options

    def session(self, path: Path) -> Any:
        key = str(path)
        if key not in self._sessions:
            try:
                self._sessions[key] = _ort().InferenceSession(key, sess_options=self.options(), providers=self.providers)
            except Exception as exc:  # noqa: BLE001 - ORT raises several types for unloadable models
                first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise UnusableInputError(path, f"ONNX Runtime cannot load this model: {first_line}") from None
        return self._sessions[key]

    def close(self) -> None:
        """Drop every session (their memory goes back when nothing else holds them)."""
        self._sessions.clear()
        self._output_names.clear()

    def session_from_model(self, model: onnx.ModelProto) -> Any:
        """A throw-away session for an extracted sub-model (used to localize failures)."""
        return _ort().InferenceSession(model.SerializeToString(), sess_options=self.options(), providers=self.providers)

    def run(self, path: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        session = self.session(path)
        key = str(path)
        if key not in self._output_names:
            self._output_names[key] = [o.name for o in session.get_outputs()]
        names = self._output_names[key]
        started = time.perf_counter()
        try:
            values = session.run(names, feeds)
        finally:
            self.run_seconds += time.perf_counter() - started
            self.calls += 1
        return dict(zip(names, values))
