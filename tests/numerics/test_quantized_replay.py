"""Healthy quantized exports replay clean; planted defects, quantized afterwards, are still caught.

Everything is made with ONNX Runtime's real quantizers (see conftest.py and onnxdoctor.testing.quantized).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from naive_clients import run_client
from support import FIXTURES
from onnxdoctor.doctor import diagnose
from onnxdoctor.engine import inspect_path
from onnxdoctor.findings import Severity
from onnxdoctor.numerics.quantize import quantize_folder
from onnxdoctor.replay.feedcheck import FeedChecker
from onnxdoctor.replay.harness import Replayer, ReplayOptions

# codes first triggered here (the catalog test reads this)
TRIGGERED = {
    "ODX407": "test_qdq_with_collapsed_activation_scales_is_reported_as_insensitive",
    "ODX408": "test_every_quantized_twin_replays_clean",
}


def test_every_quantized_twin_replays_clean(quantized: dict[tuple[str, str], Path]) -> None:
    """inspect + replay --steps 8 (batch 2, a left-padded row, a 2-token step): no error, no warning."""
    assert len(quantized) >= 17  # 7 variants of each decoder-only fixture, 5 of the merged seq2seq one (no QDQ, no fp16)
    noisy = []
    for (source, variant), folder in sorted(quantized.items()):
        report = diagnose(folder, steps=8)
        assert [f"{f.code} {f.location.describe()}: {f.message}" for f in report.problems()] == [], (source, variant)
        assert "decodes correctly" in report.verdict
        noise = report.by_code("ODX408")
        kinds = {f.context.regime.kind for f in inspect_path(folder).files if f.context and f.signature.kind == "decoder"}
        if kinds <= {"fp32", "weight-only"}:
            assert not noise, (source, variant)  # exact computations have no noise to excuse
        for finding in noise:  # said as information, with the envelope of the regime that excuses it
            assert finding.severity is Severity.INFO and next(iter(kinds)) in finding.message, (source, variant, finding.message)
            assert finding.evidence["comparison"]["scaled"] <= finding.evidence["envelope_scaled"]
        if noise:
            noisy.append((source, variant))
    # dynamic scales make cached/uncached and padded/alone round differently in every decoder-only int8 twin
    assert {(s, v) for s, v in noisy} >= {(s, v) for s in ("optimum-qwen3", "optimum-gpt2") for v in ("int8-dynamic", "optimum-dynamic")}


def test_replay_json_names_every_comparison_and_its_envelope(quantized: dict[tuple[str, str], Path]) -> None:
    folder = quantized[("optimum-qwen3", "int8-dynamic")]
    report = Replayer(inspect_path(folder), ReplayOptions(steps=4)).run()
    data = report.to_dict()
    checks = {c["check"] for c in data["comparisons"]}
    assert {"cache", "padding", "self-noise"} <= checks
    cache = [c for c in data["comparisons"] if c["check"] == "cache"]
    assert [c["step"] for c in cache] == [1, 2, 3, 4]
    assert all(c["envelope"] == "int8-dynamic" and c["drift"] in ("noise", "exact") for c in cache)
    assert "precision envelope" in report.verdict()


# defect fixture (float32) -> replay options, the codes (step, location name) its replay must still give
DEFECTS = {
    "broken-gs-concat-swapped": ({"batch": 1}, {("ODX402", 2, "logits")}),
    "broken-gs-present-is-new": ({}, {("ODX403", 1, "present.0.key")}),
    "synthetic/defect-ignores-attention-mask.onnx": ({}, {("ODX406", 0, None)}),
}


# optimum's ORTQuantizer needs a model folder with a config, which the synthetic graph does not have
CASES = [(d, v) for d in sorted(DEFECTS) for v in ("int8-dynamic", "optimum-dynamic", "int4-block16", "fp16")
         if not (v == "optimum-dynamic" and d.endswith(".onnx"))]


@pytest.mark.parametrize("defect,variant", CASES)
def test_planted_defects_survive_quantization(defect: str, variant: str, tmp_path: Path) -> None:
    path = FIXTURES / defect
    if path.is_file():
        source = tmp_path / "source"
        source.mkdir()
        shutil.copy2(path, source / path.name)
    else:
        source = path
    folder = tmp_path / variant
    quantize_folder(source, folder, variant)
    options, expected = DEFECTS[defect]
    report = Replayer(inspect_path(folder), ReplayOptions(**options)).run()
    observed = {(f.code, f.location.step, f.location.name) for f in report.findings if f.severity is Severity.ERROR}
    assert expected <= observed, [f"{f.code} {f.message}" for f in report.findings]
    assert report.exit_code == 1 and "broken" in report.verdict()
    errors = [f for f in report.findings if f.code in ("ODX402", "ODX406")]
    for finding in errors:  # the message says which envelope it was judged by, and it is far outside it
        assert "envelope" in finding.message and finding.evidence["comparison"]["scaled"] > 2 * _envelope(folder)


def _envelope(folder: Path) -> float:
    from onnxdoctor.numerics.envelope import envelope_for

    report = inspect_path(folder)
    return max(envelope_for(f.context.regime).scaled for f in report.files if f.context and f.signature.kind == "decoder")


def test_qdq_with_collapsed_activation_scales_is_reported_as_insensitive(quantized: dict[tuple[str, str], Path], tmp_path: Path) -> None:
    """A calibration blown by outliers: every activation rounds to its zero point. Cached == uncached exactly,
    so only the sensitivity oracle can tell; the healthy QDQ twin stays quiet."""
    healthy = quantized[("optimum-qwen3", "qdq-static")]
    model = onnx.load(healthy / "model.onnx")
    initializers = {t.name: t for t in model.graph.initializer}
    scales = {n.input[1] for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in initializers}
    for name in scales:
        tensor = initializers[name]
        tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor) * np.float32(1e4), name))
    broken = tmp_path / "collapsed"
    broken.mkdir()
    shutil.copy2(healthy / "config.json", broken / "config.json")
    onnx.save(model, broken / "model.onnx")
    report = diagnose(broken, steps=4)
    (finding,) = report.by_code("ODX407")
    assert finding.severity is Severity.WARNING and finding.location.name == "logits" and finding.location.kind == "output"
    assert "qdq" in finding.message and finding.evidence["position_sensitivity"] < 0.01
    assert not report.by_code("ODX402") and not report.by_code("ODX406")  # self-consistent: nothing else sees it
    assert not diagnose(healthy, steps=4).by_code("ODX407")


@pytest.mark.parametrize("variant", ["int8-dynamic", "optimum-dynamic"])
def test_check_feeds_accepts_an_optimizing_client_of_a_dynamic_int8_model(quantized: dict[tuple[str, str], Path], variant: str, tmp_path: Path) -> None:
    """The client's ORT optimizes its graph (other kernels, other rounding of dynamic scales): the presents
    it feeds back are judged within the model's envelope, and a stale past is still caught."""
    model = quantized[("optimum-qwen3", variant)] / "model.onnx"
    good = run_client(model, tmp_path / "good", steps=4, batch=2)
    for outputs in good.output_files:
        outputs.unlink()  # judge against onnxdoctor's own run, the harder case
    report = FeedChecker(inspect_path(model)).run(good.files)
    assert [f"{f.code}: {f.message}" for f in report.findings] == []
    stale = run_client(model, tmp_path / "stale", "stale_past", steps=4)
    found = FeedChecker(inspect_path(model)).run(stale.files).findings
    assert [f.code for f in found if f.severity is Severity.ERROR][:1] == ["ODF509"]
