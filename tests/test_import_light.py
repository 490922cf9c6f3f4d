"""`import onnxdoctor` and `onnxdoctor inspect` load neither torch nor onnxruntime (DESIGN: heavy imports late)."""

from __future__ import annotations

import subprocess
import sys

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
