"""Quantized twins of the healthy fixtures, made once per session with ONNX Runtime's real quantizers."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pytest

from support import FIXTURES

SOURCES = ("optimum-qwen3", "optimum-gpt2", "optimum-marian-merged")


@pytest.fixture(scope="session")
def quantized(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    """(fixture, variant) -> folder; variants a layout cannot take are absent (see testing.quantized)."""
    from onnxdoctor.testing.quantized import quantized_twins

    root = tmp_path_factory.mktemp("quantized")
    made: dict[tuple[str, str], Path] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            for source in SOURCES:
                for variant, folder in quantized_twins(FIXTURES / source, root).items():
                    made[(source, variant)] = folder
        finally:
            logging.disable(logging.NOTSET)
    return made
