"""An fp32 + int8 + int4 trio of one tiny model (ONNX Runtime's real quantizers), shared by the report tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from support import FIXTURES


@pytest.fixture(scope="session")
def trio(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    from onnxdoctor.testing.quantized import quantized_twins

    twins = quantized_twins(FIXTURES / "optimum-qwen3", tmp_path_factory.mktemp("trio"), ["int8-dynamic", "int4-block32"])
    return [FIXTURES / "optimum-qwen3", twins["int8-dynamic"], twins["int4-block32"]]
