"""pytest plugin: guard an export in another repo with a few lines.

    def test_export_decodes(onnx_decoder_doctor):
        onnx_decoder_doctor("exports/marian", steps=4).assert_healthy()

    def test_decode_speed(onnxdoctor_bench):
        result = onnxdoctor_bench("exports/qwen-int4", new_tokens=32, repeat=5)
        assert result.tokens_per_s > 50  # your floor, on your machine: onnxdoctor ships no timed test

This module only declares options, a marker and fixtures; the engine (and onnxruntime) is imported
inside the fixtures, so installing onnxdoctor costs nothing to test sessions that do not use it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("onnxdoctor")
    group.addoption(
        "--onnxdoctor-model",
        action="append",
        default=[],
        metavar="PATH",
        help="Model file or export folder for tests using the onnxdoctor_model fixture (repeatable).",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "onnxdoctor_decoders(folder): run the test once per decoder file of an export folder "
        "(the test takes the onnxdoctor_model fixture)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "onnxdoctor_model" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("onnxdoctor_decoders")
    if marker is not None:
        from onnxdoctor.doctor import decoder_files

        folder = Path(marker.args[0])
        files = decoder_files(folder)
        metafunc.parametrize("onnxdoctor_model", [(folder, f.name) for f in files], ids=[f.name for f in files])
        return
    paths = metafunc.config.getoption("onnxdoctor_model")
    if paths:
        metafunc.parametrize("onnxdoctor_model", [(Path(p), None) for p in paths], ids=[str(p) for p in paths])
    else:
        metafunc.parametrize(
            "onnxdoctor_model",
            [pytest.param(None, marks=pytest.mark.skip(reason="no --onnxdoctor-model given"))],
            ids=["no-model"],
        )


@pytest.fixture
def onnx_decoder_doctor() -> Callable[..., Any]:
    """`onnx_decoder_doctor(path, steps=4, replay=True, file=None, ...)` -> Report (inspect + replay)."""
    from onnxdoctor.doctor import diagnose

    return diagnose


@pytest.fixture
def onnxdoctor_report(onnxdoctor_model: tuple[Path, str | None], onnx_decoder_doctor: Callable[..., Any]) -> Any:
    """The Report of the model this test is parametrized with (--onnxdoctor-model or the marker)."""
    path, file = onnxdoctor_model
    return onnx_decoder_doctor(path, file=file)


@pytest.fixture
def onnxdoctor_bench() -> Callable[..., Any]:
    """`onnxdoctor_bench(path, new_tokens=32, prompt_len=16, batch=1, repeat=5, warmup=1, threads=None,
    provider="cpu", optimize=True)` -> BenchResult, the numbers of `onnxdoctor bench`: tokens_per_s,
    per_token_median_s, per_token_p90_s, prefill (median/low/high), session_s, peak_rss, kv_bytes_per_token,
    file_bytes, per_token_spread. Asserting a floor is the caller's choice."""

    def run(path: str | Path, **options: Any) -> Any:
        from onnxdoctor.perf.bench import BenchOptions, bench

        return bench(path, BenchOptions(**options))

    return run
