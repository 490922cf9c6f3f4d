"""verify: real optimum exports against the PyTorch models they came from (tiny random weights, no hub)."""

from __future__ import annotations

from pathlib import Path

import pytest

from support import FIXTURES, run_cli
from onnxdoctor.errors import UnusableInputError
from onnxdoctor.fidelity.verify import FidelityOptions, verify
from onnxdoctor.findings import Severity

FAST = FidelityOptions(steps=4)

TRIGGERED = {
    "ODV701": "test_export_of_another_checkpoint_departs_at_step_0_layer_0",
    "ODV702": "test_forgotten_adapter_is_named",
    "ODV703": "test_export_without_the_window_departs_after_the_window",
    "ODV704": "test_quantized_exports_stay_within_their_envelope",
}


def _problems(report) -> list[str]:  # type: ignore[no-untyped-def]
    return [f"{f.code} {f.location.describe()}: {f.message}" for f in report.findings if f.severity is not Severity.INFO]


@pytest.mark.parametrize("fixture", ["optimum-qwen3", "optimum-llama-gqa"])
def test_healthy_decoder_only_export_agrees_with_its_source(sources: dict[str, Path], fixture: str) -> None:
    report = verify(FIXTURES / fixture, sources[fixture], options=FAST)
    assert _problems(report) == [] and report.exit_code == 0
    (result,) = report.results
    assert [r.step for r in result.rows] == [0, 1, 2, 3, 4]
    assert all(r.logits is not None and r.logits.scaled < 1e-3 and r.greedy_agrees for r in result.rows)
    # every present of every layer was compared, padded positions excluded
    assert {name for r in result.rows for name in r.presents} == {f"present.{l}.{p}" for l in (0, 1) for p in ("key", "value")}
    assert result.continuation["source"] == result.continuation["export"]
    assert len(result.continuation["source"]) == 2  # batch 2, row 1 left-padded
    assert "agrees" in report.verdict()


@pytest.mark.parametrize("fixture", ["optimum-marian-merged", "optimum-marian", "optimum-t5"])
def test_seq2seq_exports_agree_and_their_encoder_is_compared(sources: dict[str, Path], fixture: str) -> None:
    report = verify(FIXTURES / fixture, sources[fixture], options=FAST)
    assert _problems(report) == []
    for result in report.results:
        assert result.encoder_drift is not None and result.encoder_drift < 1e-3
        cross = {name for r in result.rows for name in r.presents if "encoder" in name}
        assert cross, "the cross-attention cache of step 0 is compared"
    if fixture == "optimum-t5":
        assert {r.scenario.name for r in report.results} == {"merged", "split"}


def test_export_of_another_checkpoint_departs_at_step_0_layer_0(sources: dict[str, Path]) -> None:
    report = verify(FIXTURES / "optimum-qwen3", sources["optimum-qwen3-seed1"], options=FAST)
    (finding,) = [f for f in report.findings if f.severity is Severity.ERROR]
    assert finding.code == "ODV701" and finding.location.step == 0
    assert finding.location.name == "present.0.key" and finding.evidence["first_layer"] == "present.0.key"
    assert "outside the fp32 envelope" in finding.message
    assert report.exit_code == 1 and "departs" in report.verdict()


def test_forgotten_adapter_is_named(lora: dict[str, Path]) -> None:
    report = verify(lora["base_export"], lora["base"], adapter=lora["adapter"], options=FAST)
    codes = [f.code for f in report.findings if f.severity is Severity.ERROR]
    assert codes == ["ODV702"]
    (finding,) = report.findings
    assert "adapter" in finding.message and "matches the base model" in finding.message
    assert finding.evidence["against_base_max_scaled"] < 1e-3


def test_merged_adapter_export_agrees_with_base_plus_adapter(lora: dict[str, Path]) -> None:
    report = verify(lora["merged_export"], lora["base"], adapter=lora["adapter"], options=FAST)
    assert _problems(report) == []
    # and the same export held against the base alone departs: the adapter really changed the model
    without = verify(lora["merged_export"], lora["base"], options=FAST)
    assert [f.code for f in without.findings if f.severity is Severity.ERROR] == ["ODV701"]


@pytest.mark.parametrize("variant", ["int8-dynamic", "int4-block32", "fp16", "qdq-static"])
def test_quantized_exports_stay_within_their_envelope(sources: dict[str, Path], variant: str, tmp_path: Path) -> None:
    from onnxdoctor.testing.quantized import quantized_twins

    folder = quantized_twins(FIXTURES / "optimum-qwen3", tmp_path, [variant])[variant]
    report = verify(folder, sources["optimum-qwen3"], options=FAST)
    assert _problems(report) == []
    (info,) = report.findings
    assert info.code == "ODV704" and info.severity is Severity.INFO
    assert info.evidence["envelope"] != "fp32"
    # and another checkpoint is still far outside the same envelope
    wrong = verify(folder, sources["optimum-qwen3-seed1"], options=FAST)
    assert [f.code for f in wrong.findings if f.severity is Severity.ERROR] == ["ODV701"]


def test_cli_verify_table_json_and_exit_codes(sources: dict[str, Path]) -> None:
    ok = run_cli("verify", FIXTURES / "optimum-qwen3", "--source", sources["optimum-qwen3"], "--steps", "2")
    assert ok.returncode == 0, ok.stderr
    assert "Verdict: The export agrees" in ok.stdout and "loading the source" in ok.stderr
    bad = run_cli("verify", FIXTURES / "optimum-qwen3", "--source", sources["optimum-qwen3-seed1"], "--steps", "2", "--format", "json")
    assert bad.returncode == 1
    data = bad.json()
    assert data["command"] == "verify" and data["schema"] == 1
    assert data["findings"][0]["code"] == "ODV701" and data["scenarios"][0]["steps"][0]["drift"] == "defect"


def test_bad_sources_are_one_line_and_exit_2(sources: dict[str, Path], lora: dict[str, Path], tmp_path: Path) -> None:
    from support import snapshot

    before = snapshot(sources["optimum-qwen3"]), snapshot(FIXTURES / "optimum-qwen3")
    import shutil

    no_weights = tmp_path / "no-weights"
    no_weights.mkdir()
    shutil.copy2(FIXTURES / "optimum-qwen3" / "config.json", no_weights / "config.json")
    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy2(FIXTURES / "optimum-qwen3" / "model.onnx", lone / "model.onnx")  # no config.json beside it
    export = FIXTURES / "optimum-qwen3"
    cases = [
        (["--source", tmp_path / "missing"], "no such source folder"),
        (["--source", no_weights], "does not load"),
        (["--source", FIXTURES / "optimum-gpt2"], "export's config.json says qwen3"),  # another model, shapes alike
        (["--source", sources["optimum-marian"]], "a marian model"),
        ([lone, "--source", sources["optimum-marian"]], "an encoder-decoder model, the export a decoder-only one"),
        (["--source", sources["optimum-qwen3"], "--adapter", lora["adapter"]], "adapter does not fit"),  # made for a wider base
        (["--source", sources["optimum-qwen3"], "--adapter", no_weights], "not a peft adapter folder"),
    ]
    for args, words in cases:
        target, args = (args[0], args[1:]) if args[0] == lone else (export, args)
        result = run_cli("verify", target, *args, "--steps", "1")
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        lines = [l for l in result.stderr.splitlines() if l.startswith("onnxdoctor: error")]
        assert len(lines) == 1 and words in lines[0] and "Traceback" not in result.stderr, result.stderr
    assert (snapshot(sources["optimum-qwen3"]), snapshot(FIXTURES / "optimum-qwen3")) == before


def test_source_whose_config_does_not_fit_is_refused_before_running(tmp_path: Path) -> None:
    import transformers

    import json

    values = json.loads((FIXTURES / "optimum-qwen3" / "config.json").read_text())
    values.pop("layer_types", None)
    values["num_hidden_layers"] = 3
    transformers.Qwen3ForCausalLM(transformers.Qwen3Config(**values)).save_pretrained(tmp_path / "deeper")
    with pytest.raises(UnusableInputError, match="3 layers, the export 2"):
        verify(FIXTURES / "optimum-qwen3", tmp_path / "deeper", options=FAST)


@pytest.fixture(scope="module")
def gemma2(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Gemma2 with a 4-token sliding window, exported as it is, and the same weights exported without the window."""
    import torch
    import transformers

    import importlib.util

    # `from conftest import ...` picks whichever conftest the whole suite imported last (tests/numerics')
    spec = importlib.util.spec_from_file_location("fidelity_conftest", Path(__file__).with_name("conftest.py"))
    assert spec is not None and spec.loader is not None
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)
    optimum_export = helpers.optimum_export

    root = tmp_path_factory.mktemp("gemma2")
    values = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  head_dim=8, vocab_size=128, max_position_embeddings=128)
    torch.manual_seed(0)
    model = transformers.Gemma2ForCausalLM(transformers.Gemma2Config(sliding_window=4, **values)).eval()
    model.save_pretrained(root / "windowed")
    model.config.sliding_window = 64  # the same weights; the export will not know the window
    model.save_pretrained(root / "unwindowed")
    return {
        "source": root / "windowed",
        "export": optimum_export(root / "windowed", root / "windowed-onnx"),
        "export_without_window": optimum_export(root / "unwindowed", root / "unwindowed-onnx"),
    }


PAST_THE_WINDOW = FidelityOptions(steps=8, batch=1, prompt_len=2)  # 10 tokens through a 4-token window


def test_sliding_window_export_decoded_past_its_window_agrees(gemma2: dict[str, Path]) -> None:
    """Measured: optimum's Gemma2 export implements the window (the PyTorch side is checked against an
    uncached full-sequence forward, so the agreement is not two wrong caches agreeing)."""
    import numpy as np
    import torch
    import transformers

    report = verify(gemma2["export"], gemma2["source"], options=PAST_THE_WINDOW)
    assert _problems(report) == []
    (result,) = report.results
    assert result.rows[-1].tokens == 10
    model = transformers.Gemma2ForCausalLM.from_pretrained(gemma2["source"], attn_implementation="eager").eval()
    tokens = result.reference.tokens
    assert tokens is not None
    for step in result.reference.steps:
        length = step.state.tokens.shape[1] if step.state is not None else 0
        with torch.no_grad():
            full = model(input_ids=torch.from_numpy(tokens[:, :length]), use_cache=False).logits[:, -1].numpy()
        logits = step.logits()
        assert logits is not None and np.abs(logits[:, -1] - full).max() < 1e-5


def test_export_without_the_window_departs_after_the_window(gemma2: dict[str, Path]) -> None:
    report = verify(gemma2["export_without_window"], gemma2["source"], options=PAST_THE_WINDOW)
    (finding,) = [f for f in report.findings if f.severity is Severity.ERROR]
    assert finding.code == "ODV703"
    # identical while the sequence fits the window (prompt 2 + steps 0-2 = 4 tokens), departs after
    assert finding.evidence["agreed_tokens"] == 4 and finding.location.step == 3
    assert "first 4 tokens" in finding.message
