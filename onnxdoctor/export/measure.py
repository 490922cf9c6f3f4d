"""Speed and memory of one export, in one small function (to be switched to `onnxdoctor bench`'s at merge).

Per-call inference time comes from the driver's OrtBackend Timing (each call timed by the backend
itself); memory is this process's resident set growth (psutil) while the sessions load and decode.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def measure_decode(path: Path, *, steps: int = 8, prompt_len: int = 4, batch: int = 1, seed: int = 0) -> dict[str, Any]:
    """Greedy decode `steps` tokens after a prompt with the one driver; time per call and RSS growth."""
    import psutil

    from onnxdoctor.driver.backend import OrtBackend
    from onnxdoctor.driver.decode import config_vocab, decode, encode, greedy, prompt_tokens
    from onnxdoctor.engine import inspect_path
    from onnxdoctor.replay.protocol import DecodeState, plan_scenarios

    process = psutil.Process()
    report = inspect_path(path)
    scenario = plan_scenarios(report)[0]
    before = process.memory_info().rss
    backend = OrtBackend({r.signature.file: r.model_file.path for r in report.files})
    for file_report in report.files:
        backend.prepare(file_report.signature)
    loaded = process.memory_info().rss
    rng = np.random.default_rng(seed)
    schedule = [prompt_len] + [1] * steps
    vocab = config_vocab(path)
    tokens, mask, _pad = prompt_tokens(scenario, batch, schedule, vocab, rng)
    state = DecodeState(tokens[:, :prompt_len], mask[:, :prompt_len])
    encode(scenario, backend, state, batch, 5, vocab, rng)
    first_call = backend.timing.calls
    records = list(decode(scenario, backend, tokens, mask, schedule, rng=rng, state=state, choose=greedy))
    peak = process.memory_info().rss
    backend.deactivate()
    per_call = backend.timing.per_call[first_call:]
    failed = next((r for r in records if r.error is not None), None)
    return {
        "prompt_ms": round(per_call[0] * 1000, 3) if per_call else None,
        "decode_ms_per_token": round(float(np.median(per_call[1:])) * 1000, 3) if len(per_call) > 1 else None,
        "tokens_per_second": round(1.0 / float(np.median(per_call[1:])), 1) if len(per_call) > 1 else None,
        "calls": len(per_call),
        "load_rss_mb": round((loaded - before) / 2**20, 1),
        "rss_growth_mb": round((peak - before) / 2**20, 1),
        "error": str(failed.error).splitlines()[0] if failed is not None else None,
        "how": "driver OrtBackend Timing (per call, median over decode steps), psutil RSS; CPU, batch 1",
    }
