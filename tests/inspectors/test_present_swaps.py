"""Present outputs swapped between key and value (or layers) are named as such, not as a lost cache."""

from __future__ import annotations

from pathlib import Path

import onnx

from support import FIXTURES
from onnxdoctor.engine import inspect_path
from onnxdoctor.testing.synth import rename_tensors


def test_swapped_key_value_outputs(tmp_path: Path) -> None:
    model = onnx.load(FIXTURES / "synthetic" / "plain-kv.onnx")
    rename_tensors(model, {"present_key_0": "present_value_0", "present_value_0": "present_key_0"})
    path = tmp_path / "swapped.onnx"
    onnx.save(model, path)
    findings = [f for f in inspect_path(path).findings if f.code == "ODP301"]
    assert {(f.location.name, tuple(f.evidence["built_from"])) for f in findings} == {
        ("present_key_0", ("past_value_0",)),
        ("present_value_0", ("past_key_0",)),
    }
    assert all("swapped" in f.message for f in findings)
