"""`import onnxdoctor` and `onnxdoctor inspect` load neither torch nor onnxruntime (DESIGN: heavy imports late);
inspect does not import the onnx package either (its __init__ imports numpy and ml_dtypes: 0.2-1 s), only
its generated message classes and C++ extension (onnxdoctor.model.proto)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from support import FIXTURES

PROBE = """
import sys
{body}
heavy = sorted(m for m in ("torch", "onnxruntime", "transformers", "optimum") if m in sys.modules)
print(",".join(heavy))
"""


def _heavy_modules_after(body: str) -> str:
    out = subprocess.run([sys.executable, "-c", PROBE.format(body=body)], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_import_is_light() -> None:
    assert _heavy_modules_after("import onnxdoctor, onnxdoctor.engine, onnxdoctor.testing.synth") == ""


def test_inspect_is_light() -> None:
    body = f"from onnxdoctor.engine import inspect_path; inspect_path({str(FIXTURES / 'optimum-gpt2')!r})"
    assert _heavy_modules_after(body) == ""


CLI_PROBE = """
import contextlib, io, json, sys
from onnxdoctor.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        main({args!r})
    except SystemExit as exit:
        code = exit.code
loaded = sorted(m for m in {modules!r} if m in sys.modules)
print(json.dumps({{"exit": code, "loaded": loaded, "report": out.getvalue()[:1]}}))
"""

NOT_ON_THE_INSPECT_PATH = ("onnx", "ml_dtypes", "numpy", "torch", "onnxruntime", "matplotlib", "transformers", "optimum", "onnx_graphsurgeon")


@pytest.mark.parametrize("fixture", ["optimum-gpt2", "optimum-marian-merged", "broken-torch-baked-view", "optimum-llama-fp16"])
@pytest.mark.parametrize("extra", [[], ["--reshapes"], ["--format", "table"]])
def test_inspect_command_imports_no_onnx_package(fixture: str, extra: list[str]) -> None:
    args = ["inspect", str(FIXTURES / fixture), "--format", "json", *extra]
    out = subprocess.run(
        [sys.executable, "-c", CLI_PROBE.format(args=args, modules=NOT_ON_THE_INSPECT_PATH)], capture_output=True, text=True, check=True
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["exit"] in (0, 1) and result["report"]
    assert result["loaded"] == []
