"""Replay on every fixture: healthy exports decode cleanly, each broken one fails at the right step and node."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from support import FIXTURES, run_cli
from onnxdoctor.engine import inspect_path
from onnxdoctor.findings import Severity
from onnxdoctor.replay.harness import Replayer, ReplayOptions

HEALTHY = [
    "optimum-gpt2",
    "optimum-llama-gqa",
    "optimum-qwen3",
    "optimum-llama-fp16",
    "optimum-marian",
    "optimum-marian-merged",
    "optimum-t5",
    "torch-legacy",
    "torch-dynamo",
    "broken-fp16-io",  # fine when fed float16: the contract says so (ODS013)
    "synthetic/plain-kv.onnx",
    "synthetic/stacked-legacy.onnx",
    "synthetic/optimum-gqa.onnx",
    "synthetic/optimum-seq2seq-merged.onnx",
    "synthetic/self-cross-whisper.onnx",
    "synthetic/static-encoder-axis.onnx",
    "synthetic/contrib-gqa.onnx",
    "synthetic/contrib-mha.onnx",
    "synthetic/no-kv-cache.onnx",
    "synthetic/defect-present_heads_mismatch.onnx",  # only the declaration is wrong; outputs are right
]

# fixture -> (options, [(code, step, location name)]) : the replay findings, exactly
BROKEN: dict[str, tuple[dict[str, int], list[tuple[str, int, str | None]]]] = {
    "broken-torch-baked-view": ({"batch": 1, "prompt_len": 3}, [("ODX401", 1, "/layers.0/Reshape")]),
    # inside the export-time shapes step 1 is refused; the general protocol already at step 0
    "broken-torch-no-dynamic-axes": ({}, [("ODX401", 1, "input_ids"), ("ODX401", 0, "input_ids")]),
    "broken-optimum-no-dynamic-axes": ({}, [("ODX401", 1, "input_ids"), ("ODX401", 0, "input_ids")]),
    "broken-torch-partial-dynamic-axes": ({}, [("ODX401", 1, "past_key_0"), ("ODX401", 0, "past_key_0")]),
    "broken-gs-present-is-new": ({}, [("ODX403", 1, "present.0.key"), ("ODX401", 2, "/model/layers.1/self_attn/Add_2")]),
    "broken-gs-concat-swapped": ({"batch": 1}, [("ODX402", 2, "logits")]),
    "broken-gs-dropped-present": ({}, [("ODX401", 1, "/model/layers.1/self_attn/MatMul_1")]),
    "broken-fp16-partial": ({}, [("ODX401", 1, "past_key_values.0.key")]),
    "synthetic/defect-present_is_new.onnx": ({}, [("ODX403", 1, "present.0.key"), ("ODX401", 2, "And_node_19")]),
    "synthetic/defect-concat_swapped.onnx": ({"batch": 1}, [("ODX402", 2, "logits")]),
    "synthetic/defect-baked_reshape.onnx": ({"batch": 1, "prompt_len": 3}, [("ODX401", 1, "Reshape_node_25")]),
    "synthetic/defect-reshape_zero.onnx": ({}, [("ODX401", 0, "Reshape_node_37")]),
    "synthetic/defect-drop_present.onnx": ({}, [("ODX401", 1, "MatMul_node_45")]),
    "synthetic/defect-fp16-overflow.onnx": ({}, [("ODX404", 0, "logits"), ("ODX405", 0, "logits")]),
    "synthetic/defect-fp16-near-limit.onnx": ({}, [("ODX405", 0, "logits")]),
    "synthetic/defect-ignores-attention-mask.onnx": ({}, [("ODX406", 0, None)]),
}


def replay(fixture: str, **options: object):  # type: ignore[no-untyped-def]
    return Replayer(inspect_path(FIXTURES / fixture), ReplayOptions(**options)).run()  # type: ignore[arg-type]


@pytest.mark.parametrize("fixture", HEALTHY)
def test_healthy_fixture_replays_cleanly(fixture: str) -> None:
    report = replay(fixture)
    assert [f"{f.code} step {f.location.step}: {f.message}" for f in report.findings] == []
    assert report.exit_code == 0 and "decodes correctly" in report.verdict()
    assert all(r.export_shapes is None for r in report.results)  # nothing fixed at export: one general pass
    for result in report.results:
        assert len(result.steps) == 5  # step 0 + 4 steps
        decode_steps = [s for s in result.steps if s.step > 0]
        if result.scenario.stepn is not None:
            assert all(s.max_diff_uncached is not None for s in decode_steps)
            assert all(s.present_seen == s.present_expected for s in result.steps)


@pytest.mark.parametrize("fixture", sorted(BROKEN))
def test_broken_fixture_fails_at_the_right_step_and_place(fixture: str) -> None:
    options, expected = BROKEN[fixture]
    report = replay(fixture, **options)
    observed = [(f.code, f.location.step, f.location.name) for f in report.findings]
    assert sorted(observed, key=str) == sorted(expected, key=str)
    errors = [f for f in report.findings if f.severity is Severity.ERROR]
    if errors:
        assert report.exit_code == 1 and "broken" in report.verdict()


def test_baked_reshape_names_node_constant_and_input_shape() -> None:
    report = replay("broken-torch-baked-view", batch=1, prompt_len=3)
    (finding,) = report.findings
    assert finding.evidence["op"] == "Reshape"
    assert finding.evidence["input_values"]["/layers.0/Constant_output_0"] == [1, 3, 3, 2, 8]
    assert finding.evidence["input_shapes"]["/layers.0/qkv/Add_output_0"] == [1, 1, 48]
    assert "constant in the graph" in finding.message and "requested shape:{1,3,3,2,8}" in finding.message


def test_static_axes_list_every_mismatching_input() -> None:
    """ORT names one input; replay names them all."""
    (finding,) = [f for f in replay("broken-torch-no-dynamic-axes").findings if f.location.step == 0]
    names = {m["input"] for m in finding.evidence["mismatches"]}
    assert names == {"input_ids", "attention_mask", "past_key_0", "past_value_0", "past_key_1", "past_value_1"}


def test_cli_steps_2_as_users_type_it_and_json() -> None:
    result = run_cli("replay", FIXTURES / "optimum-marian", "--steps", "2", "--format", "json")
    assert result.returncode == 0, result.stderr
    data = result.json()
    assert data["schema"] == 1 and data["command"] == "replay" and data["summary"]["error"] == 0
    (scenario,) = data["scenarios"]
    assert [s["step"] for s in scenario["steps"]] == [0, 1, 2]
    assert [s["file"] for s in scenario["steps"]] == ["decoder_model.onnx", "decoder_with_past_model.onnx", "decoder_with_past_model.onnx"]
    assert "replaying" in result.stderr  # progress goes to stderr, never into the JSON


def test_cli_broken_model_exit_1_with_table() -> None:
    result = run_cli("replay", FIXTURES / "synthetic" / "defect-present_is_new.onnx", "--steps", "2")
    assert result.returncode == 1
    assert "ODX403" in result.stdout and "present.0.key" in result.stdout and "Verdict: The model is broken at step 1" in result.stdout


def test_record_writes_feeds_outputs_and_contract(tmp_path: Path) -> None:
    folder = tmp_path / "golden"
    result = run_cli("replay", FIXTURES / "optimum-llama-gqa", "--steps", "2", "--record", folder)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in folder.iterdir()) == [
        "contract.json", "step0.npz", "step0_outputs.npz", "step1.npz", "step1_outputs.npz", "step2.npz", "step2_outputs.npz",
    ]
    step1 = np.load(folder / "step1.npz")
    step0_out = np.load(folder / "step0_outputs.npz")
    assert np.array_equal(step1["past_key_values.0.key"], step0_out["present.0.key"])
    assert json.loads((folder / "contract.json").read_text())["files"][0]["stepn"]["inputs"]
    again = run_cli("replay", FIXTURES / "optimum-llama-gqa", "--record", folder)
    assert again.returncode == 2 and "not empty" in again.stderr


def test_unloadable_model_is_one_line_exit_2(tmp_path: Path) -> None:
    import onnx

    model = onnx.load(FIXTURES / "synthetic" / "plain-kv.onnx")
    model.graph.node[0].op_type = "NoSuchOp"
    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    result = run_cli("replay", path)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("onnxdoctor: error: ") and "ONNX Runtime cannot load" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
