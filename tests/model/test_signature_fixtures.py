"""Roles and KV layout recognized on every committed real export, checked against its source config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support import FIXTURES
from onnxdoctor.engine import inspect_path
from onnxdoctor.findings import Severity
from onnxdoctor.model import roles

# fixture folder, file -> (kind, mode, merged, cross-attention, stacked, position_ids input, cache dtype)
EXPECTED = {
    ("optimum-gpt2", "model.onnx"): ("decoder", "with_past", False, False, False, True, "float32"),
    ("optimum-llama-gqa", "model.onnx"): ("decoder", "with_past", False, False, False, True, "float32"),
    ("optimum-qwen3", "model.onnx"): ("decoder", "with_past", False, False, False, True, "float32"),
    ("optimum-llama-fp16", "model.onnx"): ("decoder", "with_past", False, False, False, True, "float16"),
    ("optimum-marian", "encoder_model.onnx"): ("encoder", None, None, None, None, False, None),
    ("optimum-marian", "decoder_model.onnx"): ("decoder", "no_past", False, True, False, False, "float32"),
    ("optimum-marian", "decoder_with_past_model.onnx"): ("decoder", "with_past", False, True, False, False, "float32"),
    ("optimum-marian-merged", "encoder_model.onnx"): ("encoder", None, None, None, None, False, None),
    ("optimum-marian-merged", "decoder_model_merged.onnx"): ("decoder", "merged", True, True, False, False, "float32"),
    ("optimum-t5", "encoder_model.onnx"): ("encoder", None, None, None, None, False, None),
    ("optimum-t5", "decoder_model.onnx"): ("decoder", "no_past", False, True, False, False, "float32"),
    ("optimum-t5", "decoder_with_past_model.onnx"): ("decoder", "with_past", False, True, False, False, "float32"),
    ("optimum-t5", "decoder_model_merged.onnx"): ("decoder", "merged", True, True, False, False, "float32"),
    ("torch-legacy", "model.onnx"): ("decoder", "with_past", False, False, False, False, "float32"),
    ("torch-dynamo", "model.onnx"): ("decoder", "with_past", False, False, False, False, "float32"),
}


def _source_dims(folder: Path) -> tuple[int, int, int]:
    """(decoder layers, kv heads, head_dim) from the config the fixture was exported from."""
    config_path = folder / "config.json"
    if not config_path.exists():
        config = json.loads((folder / "export_settings.json").read_text())["config"]
        return config["layers"], config["heads"], config["head_dim"]
    config = json.loads(config_path.read_text())
    kind = config["model_type"]
    if kind == "marian":
        return config["decoder_layers"], config["decoder_attention_heads"], config["d_model"] // config["decoder_attention_heads"]
    if kind == "t5":
        return config.get("num_decoder_layers") or config["num_layers"], config["num_heads"], config["d_kv"]
    if kind == "gpt2":
        return config["n_layer"], config["n_head"], config["n_embd"] // config["n_head"]
    heads = config["num_attention_heads"]
    return (
        config["num_hidden_layers"],
        config.get("num_key_value_heads") or heads,
        config.get("head_dim") or config["hidden_size"] // heads,
    )


def test_every_fixture_model_is_listed() -> None:
    """A new fixture must get expectations here, or it would be checked by nothing."""
    real = {
        (p.parent.name, p.name)
        for p in FIXTURES.glob("*/*.onnx")
        if p.parent.name != "synthetic" and not p.parent.name.startswith("broken-")
    }
    assert real == set(EXPECTED)


@pytest.mark.parametrize("folder,file", sorted(EXPECTED), ids=lambda v: str(v))
def test_layout_matches_source_config(folder: str, file: str) -> None:
    kind, mode, merged, cross, stacked, needs_positions, dtype = EXPECTED[(folder, file)]
    report = inspect_path(FIXTURES / folder, only_file=file)
    (file_report,) = report.files
    signature = file_report.signature
    assert signature.kind == kind
    if kind == "encoder":
        assert signature.kv is None
        return
    kv = signature.kv
    assert kv is not None
    layers, kv_heads, head_dim = _source_dims(FIXTURES / folder)
    assert (kv.layers, kv.kv_heads, kv.head_dim) == (layers, kv_heads, head_dim)
    assert (kv.mode, kv.merged, kv.cross_attention, kv.stacked, kv.dtype) == (mode, merged, cross, stacked, dtype)
    assert kv.cache_axis == 2
    assert (signature.input(roles.POSITION_IDS) is not None) == needs_positions
    assert signature.input(roles.INPUT_IDS) is not None
    assert signature.output(roles.LOGITS) is not None
    # every past and present tensor is paired by layer, attention and part
    for pair in kv.pairs:
        if pair.attention == "self" and mode == "with_past":
            assert pair.past is not None and pair.present is not None


def test_gqa_kv_heads_smaller_than_query_heads() -> None:
    config = json.loads((FIXTURES / "optimum-llama-gqa" / "config.json").read_text())
    kv = inspect_path(FIXTURES / "optimum-llama-gqa").files[0].signature.kv
    assert kv is not None
    assert kv.kv_heads == config["num_key_value_heads"] < config["num_attention_heads"]


@pytest.mark.parametrize("folder", sorted({f for f, _ in EXPECTED}))
def test_healthy_exports_have_no_error_or_warning(folder: str) -> None:
    report = inspect_path(FIXTURES / folder)
    noisy = [f for f in report.findings if f.severity is not Severity.INFO]
    assert noisy == [], [f"{f.code} {f.message}" for f in noisy]
    assert report.exit_code == 0


def test_merged_decoder_contract_switches_cache_branch() -> None:
    report = inspect_path(FIXTURES / "optimum-marian-merged", only_file="decoder_model_merged.onnx")
    file_report = report.files[0]
    step0 = {f.name: f for f in file_report.step0.feeds or ()}
    stepn = {f.name: f for f in file_report.stepn.feeds or ()}
    assert "False" in step0["use_cache_branch"].value and "True" in stepn["use_cache_branch"].value
    assert ", 0," in step0["past_key_values.0.decoder.key"].shape
    assert "step 0" in stepn["past_key_values.0.encoder.key"].value
    assert "present.0.decoder.key" in stepn["past_key_values.0.decoder.key"].value
    assert [f.code for f in report.findings] == ["ODP304", "ODS010"]


def test_unmerged_seq2seq_contract_points_to_decoder_model_for_cross_cache() -> None:
    report = inspect_path(FIXTURES / "optimum-marian")
    with_past = next(r for r in report.files if r.signature.file_role == "decoder_with_past")
    assert with_past.step0.feeds is None and "decoder_model.onnx" in with_past.step0.note
    cross_feed = next(f for f in with_past.stepn.feeds or () if f.name == "past_key_values.1.encoder.value")
    assert "present.1.encoder.value of decoder_model.onnx" in cross_feed.value


def test_dynamo_dim_names_are_reasoned_by_arithmetic() -> None:
    """dynamo names the cache length s15 and the present s15 + s70: the cache axis follows from that."""
    kv = inspect_path(FIXTURES / "torch-dynamo").files[0].signature.kv
    assert kv is not None
    pair = kv.self_pairs()[0]
    assert pair.present is not None and pair.past is not None
    present_len = pair.present.dims[2].linear
    past_len = pair.past.dims[2].linear
    assert present_len is not None and past_len is not None
    assert present_len.minus(past_len).constant == 0 and len(present_len.minus(past_len).terms) == 1
    assert kv.axes.how.startswith("past and present differ")
