"""`onnxdoctor export` end to end: real peft merges, real exporters in the worker, real ORT quantizers, verify."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from support import REPO, run_cli, snapshot

FACTORIES = REPO / "tests" / "export" / "factories.py"


@pytest.mark.end_to_end
def test_training_folder_with_adapter_is_merged_exported_quantized_and_verified(training_run: dict[str, Path], tmp_path: Path) -> None:
    before = snapshot(training_run["root"])
    out = tmp_path / "out"
    result = run_cli("export", training_run["train"], "--adapter", "auto", "--out", out, "--quantize", "int8,int4,fp16", "--format", "json")
    assert result.returncode == 0, result.stderr
    data = result.json()
    assert data["checkpoint"]["path"].endswith("checkpoint-20") and data["checkpoint"]["step"] == 20
    (skipped,) = data["checkpoint"]["skipped"]
    assert skipped["folder"] == "checkpoint-30" and "truncated" in skipped["reason"]
    assert "latest complete checkpoint checkpoint-20" in result.stderr and "skipping checkpoint-30" in result.stderr
    adapter = data["adapter"]
    assert adapter["path"] == str(training_run["adapter"])
    assert adapter["metadata"]["rank"] == 4 and adapter["metadata"]["target_modules"] == ["q_proj", "v_proj"]
    assert adapter["metadata"]["base_model"].endswith("checkpoint-20")
    merge = data["merge"]
    assert Path(merge["merged"]) == out / "merged-source"
    assert merge["weights"] and all(w["max_abs_error"] <= 1e-5 < w["delta_max"] for w in merge["weights"])
    assert merge["probe"]["max_abs_logit_difference"] > 1e-3
    kept = [a for a in data["attempts"] if a["result"] == "kept"]
    assert len(kept) == 1 and kept[0]["reason"].startswith("inspect + replay: ") and kept[0]["reason"].endswith("verify agrees with the source")
    variants = {v["name"]: v for v in data["variants"]}
    assert set(variants) == {"fp32", "int8", "int4", "fp16"}
    for name, variant in variants.items():
        assert variant["status"] == "verified", (name, variant["reason"])
        assert variant["speed"]["decode_ms_per_token"] > 0 and variant["speed"]["runs"] == 3 and variant["speed"]["tokens_per_s"] > 0
        assert Path(variant["path"]).parent == out
    assert variants["fp16"]["settings"]["files"]["model.onnx"]["keep_io_types"] is True
    for name in ("int8", "int4", "fp16"):
        assert variants[name]["size_bytes"] < variants["fp32"]["size_bytes"] and variants[name]["reduction"] > 0
        assert variants[name]["drift"]["vs_fp32"]["departures"] == [] and variants[name]["drift"]["vs_source"]["departures"] == []
    assert variants["int4"]["settings"]["files"]["model.onnx"]["block_size"] == 32
    report = (out / "report" / "report.md").read_text()
    assert "checkpoint-30" in report and "| int4 | verified |" in report
    # `onnxdoctor report`'s sections and charts, for the three variants
    for heading in ("## Export attempts", "## Variants", "## Inspect (static checks)", "## Replay", "## Fidelity against the source", "## Speed and memory"):
        assert heading in report
    assert {p.name for p in (out / "report").glob("*.png")} == {"drift.png", "latency.png", "memory.png"}
    written = json.loads((out / "report" / "report.json").read_text())
    assert written["variants"] == data["variants"] and data["report"] == str(out / "report" / "report.md")
    assert set(written["sections"]["fidelity"]) == {str(out / f"onnx{s}") for s in ("", "-int8", "-int4", "-fp16")}
    assert len(written["sections"]["bench"]["exports"]) == 4
    assert [s["stage"] for s in data["stages"]] == ["checkpoint", "merge", "export", "quantize-int8", "quantize-int4", "quantize-fp16", "measure"]
    # transformers' own TracerWarnings (in every healthy optimum export) are a note, not a warning
    assert not any("TracerWarning" in w for w in data["warnings"]) and any("inside installed libraries" in n for n in data["notes"])
    assert snapshot(training_run["root"]) == before  # nothing written into the training run or the adapter


def test_partial_checkpoint_is_refused_in_one_line(partial_only: Path, tmp_path: Path) -> None:
    result = run_cli("export", partial_only, "--out", tmp_path / "out")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()[-1:]
    assert line.startswith("onnxdoctor: checkpoint error: ") and "checkpoint-30" in line and "truncated" in line
    assert not (tmp_path / "out").exists()


def test_list_checkpoints_says_which_is_used_and_why_others_are_not(training_run: dict[str, Path], tmp_path: Path) -> None:
    result = run_cli("export", training_run["train"], "--out", tmp_path / "out", "--list-checkpoints")
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}
    assert "incomplete" in lines["checkpoint-30"] and "<- used" in lines["checkpoint-20"] and "<- used" not in lines["checkpoint-10"]
    assert not (tmp_path / "out").exists()


def test_dry_run_and_out_rules_write_nothing(training_run: dict[str, Path], tmp_path: Path) -> None:
    before = snapshot(training_run["root"])
    dry = run_cli("export", training_run["train"], "--adapter", str(training_run["adapter"]), "--out", tmp_path / "out", "--dry-run")
    assert dry.returncode == 0 and "merge" in dry.stdout and not (tmp_path / "out").exists()
    inside = run_cli("export", training_run["train"], "--out", training_run["train"] / "onnx")
    assert inside.returncode == 2 and "never writes into your model" in inside.stderr
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    taken = run_cli("export", training_run["train"], "--out", full)
    assert taken.returncode == 2 and "new or empty folder" in taken.stderr
    assert snapshot(training_run["root"]) == before and (full / "keep.txt").read_text() == "mine"


def test_legacy_failure_is_recovered_by_the_other_exporter(tmp_path: Path) -> None:
    """aten::rms_norm has no legacy symbolic: the failure is classified and the dynamo exporter's export is kept."""
    out = tmp_path / "out"
    result = run_cli("export", f"{FACTORIES}:rms_norm_decoder", "--out", out, "--quantize", "none", "--format", "json")
    assert result.returncode == 0, result.stderr
    data = result.json()
    first, second = data["attempts"][:2]
    assert first["result"] == "failed" and first["settings"]["dynamo"] is False
    assert {"attempt": 1, "class": "unsupported-operator"}.items() <= data["failure_classes"][0].items()
    assert "aten::rms_norm" in (out / "attempts" / "attempt-1-first" / "export.log").read_text()
    assert second["name"] == "dynamo" and second["result"] == "kept" and "unsupported-operator" in second["why"]
    # dynamic axes were named by role before the first export
    assert first["settings"]["dynamic_axes"]["past_key_0"] == {"0": "batch_size", "2": "past_sequence_length"}
    (fp32,) = data["variants"]
    assert fp32["status"] == "verified" and Path(fp32["path"]) == out / "onnx"
    assert run_cli("replay", out / "onnx", "--steps", "3").returncode == 0


def test_trace_frozen_by_python_control_flow_is_caught_by_verify_not_shipped(tmp_path: Path) -> None:
    """The wrapper branches on input_ids.shape[1] (a TracerWarning): the export holds the prefill branch at decode."""
    out = tmp_path / "out"
    env = {"ONNXDOCTOR_EXPORT_MAX_ATTEMPTS": "1", "ONNXDOCTOR_EXPORT_QUANTIZE": "none"}
    result = run_cli("export", f"{FACTORIES}:branch_on_length_decoder", "--out", out, "--format", "json", env=env)
    assert result.returncode == 1, result.stderr
    data = result.json()
    first = data["attempts"][0]
    assert first["result"] == "rejected" and "departs from the source: ODV703" in first["reason"]
    assert "departs at step 1" in first["reason"]
    classes = [c["class"] for c in data["failure_classes"]]
    assert classes[:2] == ["tracer-warning-bool", "departs-at-decode"]
    refused = next(a for a in data["attempts"] if a["result"] == "refused")
    assert refused["name"] == "no-dynamic-axes" and "cannot yield a working decoder" in refused["reason"]
    assert data["settings_from"]["max_attempts"] == "environment" and data["settings"]["quantize"] == []
    assert data["error"]["stage"] == "export" and data["variants"] == []
    assert not (out / "onnx").exists()  # nothing shipped
    assert result.stderr.strip().splitlines()[-1].startswith("onnxdoctor: export error: no export attempt passed")


def test_a_source_that_cannot_run_the_decode_stops_export_without_more_attempts(tmp_path: Path) -> None:
    """verify's PyTorch side failing is not the export departing: no re-export can help, so none is tried."""
    out = tmp_path / "out"
    result = run_cli("export", f"{FACTORIES}:fails_at_decode_decoder", "--out", out, "--quantize", "none", "--format", "json")
    assert result.returncode == 1, result.stderr
    data = result.json()
    (attempt,) = data["attempts"]
    assert attempt["result"] == "rejected" and "verify cannot use the source" in attempt["reason"]
    assert "this module only runs prompts" in attempt["reason"] and data["failure_classes"] == []
    assert data["error"]["stage"] == "validation" and "cannot hold the export against its source" in data["error"]["message"]
    assert not (out / "onnx").exists() and (out / "report" / "report.md").is_file()


def test_untrained_adapter_is_a_merge_error(training_run: dict[str, Path], tmp_path: Path) -> None:
    """lora_B still zero: the merge is exact but changes nothing; exporting it would ship the base model."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    untrained = tmp_path / "untrained-adapter"
    get_peft_model(LlamaForCausalLM.from_pretrained(training_run["train"] / "checkpoint-20"), LoraConfig(r=2, target_modules=["q_proj"])).save_pretrained(untrained)
    result = run_cli("export", training_run["train"], "--adapter", untrained, "--out", tmp_path / "out", "--quantize", "none")
    assert result.returncode == 2, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("onnxdoctor: merge error: ") and "changes nothing" in line
    report = json.loads((tmp_path / "out" / "report" / "report.json").read_text())
    assert report["error"]["stage"] == "merge" and report["attempts"] == []


def _seq2seq_source(kind: str, folder: Path) -> Path:
    import torch
    import transformers

    torch.manual_seed(0)
    common = {"d_model": 16, "encoder_layers": 1, "decoder_layers": 1, "encoder_attention_heads": 2, "decoder_attention_heads": 2,
              "encoder_ffn_dim": 32, "decoder_ffn_dim": 32, "pad_token_id": 1, "eos_token_id": 0, "decoder_start_token_id": 1}
    if kind == "marian":
        model = transformers.MarianMTModel(transformers.MarianConfig(vocab_size=128, decoder_vocab_size=128, max_position_embeddings=64, **common))
    else:  # optimum's dummy audio is 3000 frames: max_source_positions 1500
        model = transformers.WhisperForConditionalGeneration(transformers.WhisperConfig(
            vocab_size=128, num_mel_bins=8, max_source_positions=1500, max_target_positions=32, bos_token_id=0, **common))
    model.eval().save_pretrained(folder)
    return folder


@pytest.mark.parametrize(("kind", "task", "quantize"), [
    ("marian", "text2text-generation-with-past", "fp16"),
    ("whisper", "automatic-speech-recognition-with-past", "none"),
])
def test_seq2seq_and_whisper_folders_export_and_verify(kind: str, task: str, quantize: str, tmp_path: Path) -> None:
    source = _seq2seq_source(kind, tmp_path / kind)
    result = run_cli("export", source, "--out", tmp_path / "out", "--quantize", quantize, "--format", "json")
    assert result.returncode == 0, result.stderr
    data = result.json()
    (attempt,) = data["attempts"]
    assert attempt["settings"]["task"] == task and attempt["result"] == "kept"
    fp32, *quantized = data["variants"]
    assert fp32["drift"]["vs_source"]["departures"] == [] and (tmp_path / "out" / "onnx" / "encoder_model.onnx").is_file()
    if quantize == "fp16":
        # the float16 converter breaks a merged decoder's If branches: skipped with ORT's reason, not shipped, not an error
        (fp16,) = quantized
        assert fp16["status"] == "skipped" and "merged decoder" in fp16["reason"] and "outer scope value" in fp16["reason"]
        assert fp16["path"] is None and not (tmp_path / "out" / "onnx-fp16").exists()
        assert any(w.startswith("fp16 variant skipped") for w in data["warnings"])


def test_eager_attention_recovers_an_export_whose_sdpa_trace_departs(tmp_path: Path) -> None:
    """Gemma2 caps its attention logits (attn_logit_softcapping) in eager attention only: transformers' SDPA path
    skips the cap, so optimum's default export (SDPA) departs from the model, and the eager-attention strategy is kept.

    Found by a sweep over optimum's architectures; large initial weights make the cap bite in a tiny model.
    """
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.Gemma2Config(
        vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
        intermediate_size=128, max_position_embeddings=64, query_pre_attn_scalar=16, initializer_range=0.5,
    )
    transformers.Gemma2ForCausalLM(config).eval().save_pretrained(tmp_path / "gemma2")
    out = tmp_path / "out"
    result = run_cli("export", tmp_path / "gemma2", "--out", out, "--quantize", "none", "--format", "json")
    assert result.returncode == 0, result.stderr
    data = result.json()
    first = data["attempts"][0]
    assert first["result"] == "rejected" and "departs from the source: ODV701" in first["reason"]
    assert "departs-at-decode" in [c["class"] for c in data["failure_classes"]]
    kept = next(a for a in data["attempts"] if a["result"] == "kept")
    assert kept["name"] == "eager-attention" and kept["settings"]["attn_implementation"] == "eager"
    assert "attn_implementation='eager'" in (out / "attempts" / f"attempt-{kept['index']}-eager-attention" / "export.log").read_text()
    (fp32,) = data["variants"]
    assert fp32["status"] == "verified" and fp32["drift"]["vs_source"]["departures"] == []
