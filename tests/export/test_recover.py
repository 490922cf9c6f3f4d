"""Failure classes from exporter messages, and the strategies each class calls for."""

from __future__ import annotations

import pytest

from onnxdoctor.export.recover import BY_NAME, classify, strategy_settings


@pytest.mark.parametrize(
    ("log", "expected"),
    [
        ("RuntimeError: invalid unordered_map<K, T> key", "unordered-map-key"),
        ("torch.onnx.errors.UnsupportedOperatorError: Exporting the operator 'aten::rms_norm' to ONNX opset version 17 is not supported.", "unsupported-operator"),
        ("torch._dynamo.exc.UserError: Constraints violated (past_sequence_length)!", "dynamic-shape"),
        ("GuardOnDataDependentSymNode: Could not guard on data-dependent expression Eq(u0, 1)", "dynamic-shape"),
        ("ValueError: Message onnx.ModelProto exceeds maximum protobuf size of 2GB", "too-large"),
        ("ValueError: The proto size is larger than the 2 GB limit. Please use save_as_external_data", "too-large"),
        ("google.protobuf.message.EncodeError: Failed to serialize proto", "too-large"),
        ("RuntimeError: The post-processing of the ONNX export failed. The export can still be performed by passing the option --no-post-process", "post-processing"),
        ("model.py:48: TracerWarning: Converting a tensor to a Python boolean might cause the trace to be incorrect.", "tracer-warning-bool"),
        ("modeling.py:9: TracerWarning: torch.tensor results are registered as constants in the trace (causal mask)", "tracer-warning-mask"),
    ],
)
def test_exporter_messages_are_classified(log: str, expected: str) -> None:
    found = classify(log, result="failed")
    assert found[0] == expected and "tracer-warning" not in found


def test_tracer_warnings_inside_installed_libraries_are_not_a_class() -> None:
    """optimum's exports of healthy models carry transformers' own TracerWarnings: only the user's code's count."""
    library = "/venv/lib/python3.11/site-packages/transformers/cache_utils.py:132: TracerWarning: Converting a tensor to a Python boolean might cause the trace to be incorrect."
    assert classify(library, result="rejected", verdict="verify") == ["departs-at-decode"]
    user = "/home/me/wrapper.py:12: TracerWarning: Converting a tensor to a Python boolean might cause the trace to be incorrect."
    assert classify(library + "\n" + user, result="failed") == ["tracer-warning-bool"]


def test_verdicts_add_their_class_after_the_log() -> None:
    log = "x.py:1: TracerWarning: Converting a tensor to a Python boolean might cause the trace to be incorrect."
    assert classify(log, result="rejected", verdict="verify") == ["tracer-warning-bool", "departs-at-decode"]
    assert classify("", result="rejected", verdict="replay") == ["replay-fails"]
    assert classify("", result="timeout") == ["timeout-or-crash"]


def test_strategies_fit_the_exporter() -> None:
    legacy = {"opset": None, "dynamo": False, "dynamic_axes": {"input_ids": {"0": "batch_size"}}}
    name, settings, _why = strategy_settings("other-exporter", "torch", legacy, {"legacy"}) or ("", {}, "")
    assert name == "dynamo" and settings["dynamo"] is True and settings["opset"] >= 18 and settings["dynamic_axes"] == legacy["dynamic_axes"]
    assert strategy_settings("other-exporter", "torch", legacy, {"legacy", "dynamo"}) is None  # tried already
    assert strategy_settings("eager-attention", "torch", legacy, set()) is None  # a transformers setting, not a factory's
    optimum = {"task": "text-generation-with-past", "opset": None}
    assert strategy_settings("eager-attention", "optimum", optimum, set())[1]["attn_implementation"] == "eager"  # type: ignore[index]
    assert strategy_settings("no-constant-folding", "optimum", optimum, set())[1]["constant_folding"] is False  # type: ignore[index]
    assert strategy_settings("external-data", "torch", legacy, set())[1]["external_data"] is True  # type: ignore[index]
    assert strategy_settings("no-post-process", "optimum", optimum, set())[1]["no_post_process"] is True  # type: ignore[index]
    assert strategy_settings("no-post-process", "optimum", {**optimum, "no_post_process": True}, set()) is None
    assert strategy_settings("no-post-process", "torch", legacy, set()) is None
    assert all(strategy in ("other-exporter", "other-opset", "no-constant-folding", "eager-attention", "external-data", "no-post-process")
               for c in BY_NAME.values() for strategy in c.strategies)
