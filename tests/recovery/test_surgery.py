"""Graph surgery on the broken fixtures: each fix removes its findings, replays clean, and never touches the input."""

from __future__ import annotations

import hashlib
from pathlib import Path

import onnx
import pytest
from support import FIXTURES

from onnxdoctor.engine import inspect_path
from onnxdoctor.errors import OnnxDoctorError
from onnxdoctor.recovery.surgery import SurgeryRefused, SurgeryResult, plan_surgery, symbolic_batch, verify, write_mended
from onnxdoctor.replay.harness import Replayer, ReplayOptions
from onnxdoctor.testing.synth import DecoderSpec, build_decoder


def _digest(path: Path) -> dict[str, str]:
    """Hash of every file of a fixture (the file itself or its whole folder)."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _model_path(path: Path) -> Path:
    return path / "model.onnx" if path.is_dir() else path


def _only_fix(path: Path) -> SurgeryResult:
    plan = plan_surgery(inspect_path(path))
    assert len(plan) == 1
    return plan[0]()


def _codes(path: Path) -> set[str]:
    return {f.code for f in inspect_path(path).findings}


@pytest.mark.parametrize("fixture", ["broken-gs-dropped-present", "synthetic/defect-drop_present.onnx"])
def test_expose_present(fixture: str, tmp_path: Path) -> None:
    source = FIXTURES / fixture
    before = _digest(source)
    result = _only_fix(source)
    assert (result.fix, result.safe, result.targets) == ("expose-present", True, ("ODS002",))
    mended = write_mended(result, _model_path(source), tmp_path / "mended")
    assert "ODS002" not in _codes(mended)
    signature = inspect_path(mended).files[0].signature
    assert all(p.present is not None for p in signature.kv.pairs)
    exposed = {p.layer: p.present for p in signature.kv.pairs if p.part == "value"}
    assert len({present.dims for present in exposed.values()}) == 1  # typed like its sibling
    assert Replayer(inspect_path(mended), ReplayOptions(steps=2)).run().exit_code == 0
    assert verify(source, mended, result.targets).kept
    assert _digest(source) == before


@pytest.mark.parametrize("fixture", ["broken-gs-concat-swapped", "synthetic/defect-concat_swapped.onnx"])
def test_swap_concat_inputs(fixture: str, tmp_path: Path) -> None:
    source = FIXTURES / fixture
    before = _digest(source)
    result = _only_fix(source)
    assert (result.fix, result.safe, result.targets) == ("swap-concat-inputs", True, ("ODP302",))
    mended = write_mended(result, _model_path(source), tmp_path / "mended")
    assert "ODP302" not in _codes(mended)
    replay = Replayer(inspect_path(mended), ReplayOptions(steps=2, batch=1)).run()  # step 2 is chunked
    assert replay.exit_code == 0 and not [f for f in replay.findings if f.code == "ODX402"]
    outcome = verify(source, mended, result.targets)
    assert outcome.kept and "ODX402" in outcome.before and "ODX402" not in outcome.after
    assert _digest(source) == before


def test_symbolic_batch_keeps_external_data(tmp_path: Path) -> None:
    source = tmp_path / "export" / "model.onnx"
    source.parent.mkdir()
    model = build_decoder(DecoderSpec(static_dims={"batch_size": 1}))  # internal shapes come from Shape()
    onnx.save_model(model, str(source), save_as_external_data=True, location="weights.bin")
    before = _digest(source.parent)
    result = _only_fix(source)
    assert (result.fix, result.safe, result.targets) == ("symbolic-batch", False, ("ODA101",))
    mended = write_mended(result, source, tmp_path / "mended")
    assert (mended.parent / "model.onnx.data").is_file()
    assert "ODA101" not in _codes(mended)
    replay = Replayer(inspect_path(mended), ReplayOptions(steps=2, batch=2)).run()
    assert replay.exit_code == 0 and replay.results[0].notes == []  # batch 2 really ran, padded row included
    assert verify(source, mended, result.targets, safe=result.safe).kept
    assert _digest(source.parent) == before


def test_symbolic_batch_refuses_baked_reshapes() -> None:
    report = inspect_path(FIXTURES / "broken-torch-no-dynamic-axes")
    with pytest.raises(SurgeryRefused, match="export-time batch 1") as refused:
        symbolic_batch(report.files[0].model_file, report.files[0].signature)
    assert "/layers.0/Reshape (Reshape)" in refused.value.nodes


def test_symbolic_batch_unproven_while_the_cache_axis_is_fixed(tmp_path: Path) -> None:
    source = FIXTURES / "broken-torch-partial-dynamic-axes"  # batch is Shape-derived, past length is not
    result = _only_fix(source)
    mended = write_mended(result, _model_path(source), tmp_path / "mended")
    outcome = verify(source, mended, result.targets, safe=result.safe)
    assert "ODA101" not in outcome.after and outcome.replay_exit_code == 1
    assert not outcome.kept and "not proven" in outcome.reason


def test_verify_rejects_a_fix_that_changes_nothing(tmp_path: Path) -> None:
    source = FIXTURES / "synthetic" / "defect-drop_present.onnx"
    copy = tmp_path / source.name
    copy.write_bytes(source.read_bytes())
    outcome = verify(source, copy, ("ODS002",))
    assert not outcome.kept and "ODS002" in outcome.after


def test_healthy_model_needs_no_surgery() -> None:
    assert plan_surgery(inspect_path(FIXTURES / "optimum-gpt2")) == []


def test_write_mended_never_writes_over_the_input(tmp_path: Path) -> None:
    source = tmp_path / "model.onnx"
    source.write_bytes((FIXTURES / "synthetic" / "defect-concat_swapped.onnx").read_bytes())
    result = _only_fix(source)
    with pytest.raises(OnnxDoctorError, match="new folder"):
        write_mended(result, source, tmp_path)
    write_mended(result, source, tmp_path / "out")
    with pytest.raises(OnnxDoctorError, match="exists"):
        write_mended(result, source, tmp_path / "out")
