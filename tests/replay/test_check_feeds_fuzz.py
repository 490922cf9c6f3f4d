"""Hypothesis: whatever a client dumped (names, dtypes, ranks, sizes), check-feeds reports, never crashes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support import FIXTURES
from onnxdoctor.engine import inspect_path
from onnxdoctor.errors import OnnxDoctorError
from onnxdoctor.replay.feedcheck import FeedChecker

TARGETS = [FIXTURES / "optimum-llama-gqa", FIXTURES / "optimum-marian-merged"]
NAMES = [
    "input_ids", "attention_mask", "position_ids", "use_cache_branch", "encoder_hidden_states", "encoder_attention_mask",
    "past_key_values.0.key", "past_key_values.0.value", "past_key_values.1.key", "past_key_values.1.value",
    "past_key_values.0.decoder.key", "past_key_values.0.encoder.value", "bogus",
]
DTYPES = [np.int64, np.int32, np.float32, np.float16, np.bool_]


@st.composite
def feeds(draw: st.DrawFn) -> dict[str, np.ndarray]:
    result = {}
    for name in draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=10, unique=True)):
        shape = tuple(draw(st.lists(st.integers(0, 4), max_size=4)))
        dtype = draw(st.sampled_from(DTYPES))
        result[name] = (np.arange(int(np.prod(shape)) if shape else 1) % 3).reshape(shape).astype(dtype)
    return result


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(target=st.sampled_from(TARGETS), steps=st.lists(feeds(), min_size=1, max_size=3))
def test_any_recorded_feeds_are_judged_not_crashed(
    target: Path, steps: list[dict[str, np.ndarray]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = tmp_path_factory.mktemp("feeds")
    files = []
    for index, step in enumerate(steps):
        path = folder / f"step{index}.npz"
        np.savez(path, **step)  # type: ignore[arg-type]
        files.append(path)
    try:
        report = FeedChecker(inspect_path(target)).run(files)
    except OnnxDoctorError:
        return
    report.to_dict()
    assert all(f.code.startswith(("ODF", "ODX")) for f in report.findings)
