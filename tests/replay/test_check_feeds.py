"""check-feeds names the wrong input and step for each client mistake, from real naive client loops."""

from __future__ import annotations

from pathlib import Path

import pytest
from naive_clients import run_client

from support import FIXTURES, run_cli
from onnxdoctor.engine import inspect_path
from onnxdoctor.replay.feedcheck import FeedChecker

GQA = FIXTURES / "optimum-llama-gqa" / "model.onnx"
FP16 = FIXTURES / "optimum-llama-fp16" / "model.onnx"
MERGED = FIXTURES / "optimum-marian-merged" / "decoder_model_merged.onnx"
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
    (MERGED, "placeholders_fed_back"): [("ODF508", 2, "past_key_values.0.encoder.key")],
    (MERGED, "stale_past"): [("ODF509", 2, "past_key_values.0.decoder.key")],
}


def _target(model: Path) -> Path:
    """A merged decoder is checked in its export folder (the encoder is next to it)."""
    return model.parent if model == MERGED else model


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
