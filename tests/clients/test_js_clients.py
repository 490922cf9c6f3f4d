"""The model driven from JavaScript (onnxruntime-node): the generated loop and naive field clients.

The generated loop must decode every bundled layout to the tokens replay's protocol gives, and its
dumps must pass check-feeds; each naive client's mistake must be named by check-feeds at its step
and input from the JSON it dumped.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from loop_support import LAYOUTS, assert_dump_follows_contract, emitted, loop_arguments, reference

from support import FIXTURES, run_cli

pytestmark = pytest.mark.node

JS = Path(__file__).resolve().parent / "js"
# the layouts the issue names: decoder-only, GQA, merged seq2seq, split seq2seq (and fp16, a folder path, a merged file)
JS_LAYOUTS = ["decoder-only", "qk-norm", "gqa", "fp16", "merged-seq2seq", "merged-seq2seq-file", "split-seq2seq"]


def node(env: dict[str, str], script: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["node", str(script), *args], capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.parametrize("layout", JS_LAYOUTS)
def test_generated_js_loop_decodes_like_the_protocol(layout: str, node_env: dict[str, str], tmp_path: Path) -> None:
    fixture = LAYOUTS[layout][0]
    loop = emitted(fixture, "js", tmp_path)
    run = node(node_env, loop, *loop_arguments(layout, tmp_path / "dump"))
    assert run.returncode == 0, run.stderr
    tokens = json.loads(run.stdout)
    assert len(tokens) == 5 and tokens == reference(layout)
    assert_dump_follows_contract(fixture, tmp_path / "dump")


GQA = FIXTURES / "optimum-llama-gqa" / "model.onnx"
MERGED = FIXTURES / "optimum-marian-merged" / "decoder_model_merged.onnx"
# model, mistake, (code, step, input, axis) check-feeds must report first
MISTAKES = [
    (GQA, "zero_past_at_step0", ("ODF504", 0, "past_key_values.0.key", 2)),
    (GQA, "query_heads_in_past", ("ODF503", 0, "past_key_values.0.key", 1)),
    (GQA, "int32_ids", ("ODF502", 0, "input_ids", None)),
    (GQA, "positions_not_advanced", ("ODF506", 1, "position_ids", None)),
    (MERGED, "every_present_fed_back", ("ODF508", 2, "past_key_values.0.encoder.key", None)),
]


def _naive(env: dict[str, str], model: Path, mistake: str, dump: Path) -> subprocess.CompletedProcess[str]:
    args = ["--mistake", mistake, "--max-new-tokens", "4", "--dump", str(dump)]
    args += ["--source-ids", "5,77,9"] if model == MERGED else ["--prompt", "3,17,5"]
    return node(env, JS / "naive_loop.js", str(model), *args)


@pytest.mark.parametrize(("model", "mistake", "expected"), MISTAKES, ids=[m for _, m, _ in MISTAKES])
def test_check_feeds_names_the_step_and_input_of_each_js_mistake(
    model: Path, mistake: str, expected: tuple[str, int, str, int | None], node_env: dict[str, str], tmp_path: Path
) -> None:
    dump = tmp_path / "dump"
    _naive(node_env, model, mistake, dump)  # the failing ones exit 1 after dumping the step that failed
    code, step, name, axis = expected
    assert (dump / f"step{step}.json").is_file()
    result = run_cli("check-feeds", model.parent, dump, "--format", "json")
    assert result.returncode == 1, result.stdout + result.stderr
    first = result.json()["findings"][0]
    assert (first["code"], first["location"]["step"], first["location"]["name"]) == (code, step, name)
    if axis is not None:
        assert first["location"]["axis"] == axis
    assert f"step {step}" in first["message"] and name in first["message"]
    assert result.json()["verdict"].startswith(f"First deviation at step {step}: {code}")


@pytest.mark.parametrize("model", [GQA, MERGED], ids=["gqa", "merged"])
def test_naive_js_client_without_mistake_is_clean(model: Path, node_env: dict[str, str], tmp_path: Path) -> None:
    """The control: the same client, correct, passes; so each finding above is the mistake's."""
    run = _naive(node_env, model, "none", tmp_path / "dump")
    assert run.returncode == 0, run.stderr
    result = run_cli("check-feeds", model.parent, tmp_path / "dump", "--format", "json")
    assert result.returncode == 0 and result.json()["findings"] == []


def test_fix_plans_for_a_js_clients_json_dumps(node_env: dict[str, str], tmp_path: Path) -> None:
    """`fix --feeds` takes the same dumps: a folder of a JS client's stepK.json is its steps."""
    _naive(node_env, MERGED, "every_present_fed_back", tmp_path / "dump")
    source = tmp_path / "source"
    source.mkdir()
    (source / "config.json").write_text((MERGED.parent / "config.json").read_text())
    result = run_cli("fix", MERGED.parent, "--dry-run", "--source", source, "--out", tmp_path / "out", "--feeds", tmp_path / "dump", "--format", "json")
    data = result.json()
    assert data["findings_before"] == ["ODF508"]
    assert data["attempts"][0]["name"] == "no-post-process"
    assert "checking 3 recorded client steps" in result.stderr
