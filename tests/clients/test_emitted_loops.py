"""`contract --emit python|js`: the printed loop decodes every bundled layout like replay's protocol does.

The Python loop runs here; the JavaScript one under the `node` marker (tests/clients/test_js_clients.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from loop_support import LAYOUTS, assert_dump_follows_contract, emitted, loop_arguments, reference

from support import FIXTURES, run_cli


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_python_loop_decodes_like_the_protocol(layout: str, tmp_path: Path) -> None:
    fixture = LAYOUTS[layout][0]
    loop = emitted(fixture, "python", tmp_path)
    run = subprocess.run([sys.executable, str(loop), *loop_arguments(layout, tmp_path / "dump")], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == reference(layout)
    assert_dump_follows_contract(fixture, tmp_path / "dump")


def test_emitted_loop_carries_the_layout_of_the_model(tmp_path: Path) -> None:
    """Generated from the signature: the files per step, the cross cache and the switch come from the export."""
    merged = emitted("optimum-marian-merged", "js", tmp_path).read_text()
    spec = json.loads(merged.split("const SPEC = ", 1)[1].split(";\n", 1)[0])
    assert spec["layout"] == "merged" and spec["encoder"]["file"] == "encoder_model.onnx"
    assert spec["decoder_start_token_id"] == json.loads((FIXTURES / "optimum-marian-merged" / "config.json").read_text())["decoder_start_token_id"]
    roles = {i["name"]: i["role"] for i in spec["step0"]["inputs"]}
    assert roles["use_cache_branch"] == "use_cache_branch" and roles["encoder_hidden_states"] == "encoder_hidden_states"
    cross = [i for i in spec["step0"]["inputs"] if i.get("cache", {}).get("attention") == "cross"]
    assert cross and all(i["cache"]["shape"][2] == "length" for i in cross)
    split = json.loads(emitted("optimum-marian", "js", tmp_path).read_text().split("const SPEC = ", 1)[1].split(";\n", 1)[0])
    assert (split["step0"]["file"], split["stepn"]["file"]) == ("decoder_model.onnx", "decoder_with_past_model.onnx")
    assert not any(p["attention"] == "cross" for p in split["stepn"]["presents"].values())
    gqa = json.loads(emitted("optimum-llama-gqa", "js", tmp_path).read_text().split("const SPEC = ", 1)[1].split(";\n", 1)[0])
    config = json.loads((FIXTURES / "optimum-llama-gqa" / "config.json").read_text())
    past = next(i for i in gqa["step0"]["inputs"] if i["role"] == "past")
    assert past["cache"]["shape"] == ["batch", config["num_key_value_heads"], "length", config["hidden_size"] // config["num_attention_heads"]]


def test_loop_refuses_bad_arguments_in_one_line(tmp_path: Path) -> None:
    printed = run_cli("contract", FIXTURES / "optimum-marian-merged", "--emit", "python")
    assert printed.returncode == 0 and printed.stdout.startswith("#!/usr/bin/env python3")
    loop = tmp_path / "loop.py"
    loop.write_text(printed.stdout)
    run = subprocess.run([sys.executable, str(loop), str(FIXTURES / "optimum-marian-merged"), "--max-new-tokens", "2"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "--source-ids" in run.stderr and "Traceback" not in run.stderr


@pytest.mark.parametrize(
    ("model", "fragment"),
    [
        (FIXTURES / "synthetic" / "self-cross-whisper.onnx", "no file"),  # a with-past file alone: nothing computes the cross cache
        (FIXTURES / "optimum-marian" / "decoder_model.onnx", "encoder"),  # the decoder without its encoder
    ],
)
def test_emit_says_why_it_cannot_generate(model: Path, fragment: str) -> None:
    result = run_cli("contract", model, "--emit", "js")
    assert result.returncode == 2 and fragment in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
