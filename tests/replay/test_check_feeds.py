"""check-feeds names the wrong input and step for each client mistake, from real naive client loops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from naive_clients import run_client

from support import FIXTURES, run_cli
from onnxdoctor.engine import inspect_path
from onnxdoctor.replay.feedcheck import FeedChecker

GQA = FIXTURES / "optimum-llama-gqa" / "model.onnx"
FP16 = FIXTURES / "optimum-llama-fp16" / "model.onnx"
MERGED = FIXTURES / "optimum-marian-merged" / "decoder_model_merged.onnx"
SPLIT = FIXTURES / "optimum-marian" / "decoder_with_past_model.onnx"  # optimum without post-processing
KEYS = [f"past_key_values.{layer}.{part}" for layer in (0, 1) for part in ("key", "value")]

# (model, mistake) -> the findings check-feeds must report: (code, step, input)
CASES: dict[tuple[Path, str | None], list[tuple[str, int, str]]] = {
    (GQA, None): [],
    (FP16, None): [],
    (MERGED, None): [],
    (GQA, "missing_position_ids"): [("ODF501", 0, "position_ids")],
    (FP16, "float32_for_fp16"): [("ODF502", 0, name) for name in KEYS],
    (GQA, "query_heads_in_past"): [("ODF503", 0, name) for name in KEYS],
    (GQA, "zero_dummy_past"): [("ODF504", 0, "past_key_values.0.key")],
    (GQA, "zero_dummy_past_masked_wrong"): [("ODF504", 0, "past_key_values.0.key")],
    (GQA, "mask_not_grown"): [("ODF505", 1, "attention_mask")],
    (GQA, "positions_restart"): [("ODF506", 1, "position_ids")],
    (FP16, "positions_restart"): [("ODF506", 1, "position_ids")],  # within fp16 logit tolerance, still caught
    (GQA, "stale_past"): [("ODF509", 2, "past_key_values.0.key")],
    (MERGED, "cache_branch_true_at_step0"): [("ODF507", 0, "use_cache_branch")],
    # the switch is the root cause, reported first; the pasts it makes wrong are named, never the encoder inputs
    (MERGED, "cache_branch_true_with_dummy_pasts"): [
        ("ODF507", 0, "use_cache_branch"), ("ODF503", 0, "past_key_values.0.encoder.key"), ("ODF504", 0, "past_key_values.0.decoder.key"),
    ],
    (MERGED, "placeholders_fed_back"): [("ODF508", 2, "past_key_values.0.encoder.key")],
    (MERGED, "stale_past"): [("ODF509", 2, "past_key_values.0.decoder.key")],
    (SPLIT, None): [],
    (SPLIT, "with_past_at_step0"): [("ODF514", 0, "past_key_values.0.encoder.key")],
}


def _target(model: Path) -> Path:
    """Seq2seq decoders are checked in their export folder (the encoder and the step-0 file are next to them)."""
    return model.parent if model in (MERGED, SPLIT) else model


@pytest.mark.parametrize("model,mistake", sorted(CASES, key=str), ids=lambda v: v.parent.name if isinstance(v, Path) else str(v))
def test_client_mistake_is_named_at_its_step(model: Path, mistake: str | None, tmp_path: Path) -> None:
    run = run_client(model, tmp_path, mistake)
    report = FeedChecker(inspect_path(_target(model))).run(run.files)
    observed = [(f.code, f.location.step, f.location.name) for f in report.findings]
    assert observed == CASES[(model, mistake)]
    if mistake is None:
        assert report.exit_code == 0 and "follow the contract" in report.verdict()
    else:
        assert report.exit_code == 1 and f"step {observed[0][1]}" in report.verdict()
        for finding in report.findings:
            assert finding.location.kind == "feed" and finding.evidence
            layer = _layer_of(finding.location.name)
            if layer is not None:  # a cache input: the explanation and the fix are about that layer and input
                assert f"layer {layer}'s" in finding.message, finding.message
                assert finding.location.name in finding.fix, finding.fix


def _layer_of(name: str | None) -> int | None:
    """The layer number of a past_key_values.N.* input, read from its name here (independently of roles.py)."""
    parts = (name or "").split(".")
    return int(parts[1]) if len(parts) > 2 and parts[0] == "past_key_values" and parts[1].isdigit() else None


def test_cli_reports_first_deviation_in_json(tmp_path: Path) -> None:
    run = run_client(GQA, tmp_path, "mask_not_grown")
    result = run_cli("check-feeds", GQA, *run.files, "--format", "json")
    assert result.returncode == 1, result.stderr
    data = result.json()
    assert data["command"] == "check-feeds" and data["schema"] == 1
    assert [s["verdict"] for s in data["steps"]] == ["ok", "deviates"]
    (finding,) = data["findings"]
    location = finding["location"]
    assert finding["code"] == "ODF505" and location["file"] == str(GQA)
    assert (location["kind"], location["name"], location["axis"], location["step"]) == ("feed", "attention_mask", 1, 1)
    assert finding["evidence"]["expected"] == finding["evidence"]["past_len"] + finding["evidence"]["new_tokens"]


def test_cli_table_and_bad_npz(tmp_path: Path) -> None:
    run = run_client(GQA, tmp_path, None)
    ok = run_cli("check-feeds", GQA, *run.files)
    assert ok.returncode == 0 and "Verdict: The 3 recorded steps follow the contract" in ok.stdout
    bogus = tmp_path / "bogus.npz"
    bogus.write_text("not numpy")
    bad = run_cli("check-feeds", GQA, bogus)
    assert bad.returncode == 2 and "not a readable .npz" in bad.stderr and "not a feeds dump" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_contract_command(tmp_path: Path) -> None:
    table = run_cli("contract", FIXTURES / "optimum-marian-merged")
    assert table.returncode == 0
    assert "encoder_model.onnx: encoder, run once before decoding" in table.stdout
    assert "[False] (no-cache branch)" in table.stdout and "keep it" in table.stdout
    data = run_cli("contract", GQA, "--format", "json").json()
    step0 = {f["name"]: f for f in data["files"][0]["step0"]["inputs"]}
    assert step0["past_key_values.0.key"]["shape"] == "[batch, kv_heads=2, 0, head_dim=8]"


@pytest.mark.parametrize("given", ["folder", "with-past file only"])
@pytest.mark.parametrize("split", [SPLIT, FIXTURES / "optimum-t5" / "decoder_with_past_model.onnx"], ids=["marian", "t5"])
def test_split_export_with_past_file_at_step0(split: Path, given: str, tmp_path: Path) -> None:
    """A client running decoder_with_past_model.onnx at step 0 on zeros: no error, wrong logits, and now a finding.

    With only the with-past file on the command line, the all-zero pasts of the first dump are the evidence.
    (The T5 folder also holds a merged decoder: the step-0 file is still decoder_model.onnx.)
    """
    run = run_client(split, tmp_path, "with_past_at_step0")
    assert run.error is None  # ORT runs it: nothing but check-feeds can tell
    report = FeedChecker(inspect_path(split.parent if given == "folder" else split)).run(run.files)
    (finding,) = report.findings
    assert (finding.code, finding.location.step, finding.location.name) == ("ODF514", 0, "past_key_values.0.encoder.key")
    assert report.steps[0].file.endswith("decoder_with_past_model.onnx") and report.exit_code == 1
    assert finding.evidence["zero_cross_pasts"] == [f"past_key_values.{i}.encoder.{p}" for i in (0, 1) for p in ("key", "value")]
    assert {tuple(shape) for shape in finding.evidence["self_pasts"].values()} == {(1, 2, 1, 8)}
    assert finding.evidence["step0_file"].startswith("decoder_model.onnx")
    assert finding.evidence["expected"] == "present.0.encoder.key"
    # the message says which file ran, that no present existed, that the pasts are zeros, which file is step 0's
    message = finding.message
    assert "decoder_with_past_model.onnx ran at the first step" in message and "no previous present" in message
    assert "zeros, not any present" in message and "layer 0's cross-attention key" in message
    assert "step 0 runs decoder_model.onnx" in message and "encoder_hidden_states" in message
    assert finding.fix.startswith("Run decoder_model.onnx at step 0") and "present.0.encoder.key" in finding.fix
    if given != "folder":
        assert "not given to check-feeds" in message


def test_split_export_correct_step0_against_the_with_past_file_alone(tmp_path: Path) -> None:
    """A correct client's step 0 ran decoder_model.onnx; checked against the with-past file, say so."""
    run = run_client(SPLIT, tmp_path)
    (finding,) = FeedChecker(inspect_path(SPLIT)).run(run.files).findings
    assert (finding.code, finding.location.step) == ("ODF501", 0)
    assert "step-0 feeds of decoder_model.onnx" in finding.message and "export folder" in finding.fix


def test_split_export_zero_pasts_after_a_real_step0_are_stale_not_step0(tmp_path: Path) -> None:
    """The with-past file with zero pasts *after* decoder_model.onnx ran is a stale past (ODF509), not ODF514."""
    run = run_client(SPLIT, tmp_path)
    with np.load(run.files[1]) as data:
        feeds = {name: (np.zeros_like(data[name]) if ".encoder." in name else data[name]) for name in data.files}
    np.savez(run.files[1], **feeds)
    observed = [(f.code, f.location.step, f.location.name) for f in FeedChecker(inspect_path(SPLIT.parent)).run(run.files).findings]
    assert observed == [("ODF509", 1, "past_key_values.0.encoder.key")]


def test_cli_split_export_with_past_file_at_step0(tmp_path: Path) -> None:
    run = run_client(SPLIT, tmp_path, "with_past_at_step0")
    result = run_cli("check-feeds", SPLIT, *run.files, "--format", "json")
    assert result.returncode == 1, result.stderr
    data = result.json()
    assert [s["verdict"] for s in data["steps"]] == ["deviates"]
    (finding,) = data["findings"]
    assert (finding["code"], finding["location"]["step"], finding["location"]["name"]) == ("ODF514", 0, "past_key_values.0.encoder.key")
    explained = run_cli("explain", "ODF514")
    assert explained.returncode == 0 and "decoder_model.onnx" in explained.stdout


def test_cache_branch_at_step0_is_the_root_cause_of_the_wrong_pasts(tmp_path: Path) -> None:
    """use_cache_branch=[True] at step 0 with length-1 zero pasts: the mask and encoder states agree and are not blamed."""
    run = run_client(MERGED, tmp_path, "cache_branch_true_with_dummy_pasts")
    report = FeedChecker(inspect_path(_target(MERGED))).run(run.files)
    root, *consequences = report.findings
    assert root.code == "ODF507" and root.location.name == "use_cache_branch" and "caused_by" not in root.evidence
    # what it leads to at the next step: the cache branch's placeholder encoder presents
    assert any("present.0.encoder.key" in c and "step 1" in c for c in root.evidence["consequences"])
    assert all(c.evidence["caused_by"] == "ODF507" for c in consequences)
    blamed = {m["input"] for c in consequences for m in c.evidence.get("mismatches", [])}
    assert blamed == {f"past_key_values.{layer}.encoder.{part}" for layer in (0, 1) for part in ("key", "value")}
    shared = next(c for c in consequences if c.code == "ODF503")
    assert shared.evidence["reference"] in ("encoder_hidden_states", "encoder_attention_mask")
    assert not any(c.location.name in ("encoder_attention_mask", "encoder_hidden_states") for c in consequences)
    assert "ODF507" in report.verdict() and "past_key_values.0.encoder.key" in report.verdict()
