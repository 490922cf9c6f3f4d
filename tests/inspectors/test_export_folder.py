"""ODS014-ODS016 on seq2seq exports made the way users make them (tests/naive_exports.py): a hand-written
wrapper with Python control flow on tensors, torch.onnx.export(dynamo=False), tiny random Marian, M2M100
and T5. Healthy optimum folders, a with-past file on its own, and a no-cache export stay quiet."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from naive_exports import ENCODER_LEN, cache_names, export_seq2seq, tiny_model
from support import FIXTURES, run_cli
from onnxdoctor.doctor import diagnose
from onnxdoctor.engine import inspect_path
from onnxdoctor.findings import Severity
from onnxdoctor.replay.harness import Replayer, ReplayOptions

# code -> the test that triggers it (read by tests/test_catalog.py)
TRIGGERED = {
    "ODS014": "test_frozen_cache_branch_is_an_error_naming_presents_and_missing_inputs",
    "ODS015": "test_presents_no_file_takes_back_are_an_error_and_the_contract_says_no_cache",
    "ODS016": "test_declared_input_names_say_what_the_trace_dropped",
}
FOLDER_CODES = ("ODS014", "ODS015", "ODS016")
CROSS_PASTS = [n for n in cache_names("past") if ".encoder." in n]
CROSS_PRESENTS = [n for n in cache_names("present") if ".encoder." in n]
SELF_PRESENTS = [n for n in cache_names("present") if ".decoder." in n]


@pytest.fixture(scope="module")
def frozen_marian(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`if use_cache_branch.item():` traced with True, saved under optimum's merged name, with its encoder."""
    return export_seq2seq("marian", "frozen_cache_branch", tmp_path_factory.mktemp("naive") / "marian", decoder_file="decoder_model_merged.onnx")


@pytest.fixture(scope="module")
def no_past_m2m100(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`if dec_key.sum() == 0:` traced with zero dummies: presents, no past inputs, no decoder_with_past."""
    return export_seq2seq("m2m100", "no_past_branch", tmp_path_factory.mktemp("naive") / "m2m100", decoder_file="decoder_model.onnx")


def _by_code(findings, code):  # type: ignore[no-untyped-def]
    return [f for f in findings if f.code == code]


def test_frozen_cache_branch_is_an_error_naming_presents_and_missing_inputs(frozen_marian: Path) -> None:
    report = inspect_path(frozen_marian)
    (finding,) = _by_code(report.findings, "ODS014")
    assert finding.severity is Severity.ERROR and report.exit_code == 1
    assert (finding.location.file, finding.location.kind, finding.location.name) == ("decoder_model_merged.onnx", "output", "present.0.encoder.key")
    assert finding.evidence["copied_presents"] == CROSS_PRESENTS and finding.evidence["cross_pasts"] == CROSS_PASTS
    assert finding.evidence["missing_inputs"] == ["encoder_hidden_states", "use_cache_branch"]
    assert finding.evidence["other_files"] == ["encoder_model.onnx"]
    assert "passed through unchanged" in finding.message and "encoder_hidden_states" in finding.message
    assert "use_cache_branch.item()" in finding.message  # points at the frozen branch
    assert "merged decoder" in finding.fix and "without Python control flow on tensors" in finding.fix
    (dropped,) = _by_code(report.findings, "ODS016")
    assert dropped.severity is Severity.WARNING and dropped.location.kind == "graph"
    assert dropped.evidence["missing_inputs"] == ["use_cache_branch", "encoder_hidden_states"]
    assert "drop inputs nothing reads" in dropped.message
    decoder = next(r for r in report.files if r.signature.file == "decoder_model_merged.onnx")
    assert decoder.step0.feeds is None and "no file of this export computes it" in decoder.step0.note
    cross_feed = next(f for f in decoder.stepn.feeds or () if f.name == "past_key_values.1.encoder.value")
    assert "no file of this export computes it" in cross_feed.value


def test_frozen_cache_branch_really_decodes_wrong(frozen_marian: Path) -> None:
    """What ODS014 claims, measured: zeros for the cross cache give other logits; PyTorch's K/V give the model's."""
    import onnxruntime as ort
    import torch

    model = tiny_model("marian", frozen_marian.parent / "marian-source")
    source = torch.tensor([[5, 6, 7, 8, 2]])
    prompt, step = torch.tensor([[1, 9, 10]]), torch.tensor([[11]])
    with torch.no_grad():
        encoded = model.get_encoder()(input_ids=source).last_hidden_state
        first = model(encoder_outputs=(encoded,), decoder_input_ids=prompt, use_cache=True)
        past = [t.numpy() for layer in first.past_key_values.to_legacy_cache() for t in layer]
        expected = model(encoder_outputs=(encoded,), decoder_input_ids=torch.cat([prompt, step], 1)).logits[:, -1].numpy()
    session = ort.InferenceSession(str(frozen_marian / "decoder_model_merged.onnx"), providers=["CPUExecutionProvider"])
    feeds = {"input_ids": step.numpy(), "encoder_attention_mask": np.ones((1, ENCODER_LEN), np.int64), **dict(zip(cache_names("past"), past))}
    right = session.run(["logits"], feeds)[0][:, -1]
    zeros = {**feeds, **{n: np.zeros_like(feeds[n]) for n in CROSS_PASTS}}
    wrong = session.run(["logits"], zeros)[0][:, -1]
    assert np.max(np.abs(right - expected)) < 1e-4
    assert np.max(np.abs(wrong - expected)) > 1e-3


def test_frozen_cache_branch_is_found_from_the_decoder_file_alone(frozen_marian: Path) -> None:
    """The folder is still the export: its encoder is read (without weights) to judge the file."""
    for report in (inspect_path(frozen_marian / "decoder_model_merged.onnx"), inspect_path(frozen_marian, only_file="decoder_model_merged.onnx")):
        assert [f.location.name for f in _by_code(report.findings, "ODS014")] == ["present.0.encoder.key"]
        assert [r.signature.file_role for r in report.files] == ["decoder_merged"]


def test_replay_refuses_to_invent_the_cross_cache(frozen_marian: Path) -> None:
    report = Replayer(inspect_path(frozen_marian), ReplayOptions(steps=2)).run()
    assert [(f.code, f.location.name) for f in report.findings] == [("ODS014", "present.0.encoder.key")]
    assert report.exit_code == 1 and "broken" in report.verdict() and "ODS014" in report.verdict()
    (result,) = report.results
    assert result.steps == [] and any("will not invent" in note and "encoder_hidden_states" in note for note in result.notes)
    doctor = diagnose(frozen_marian, steps=2)  # inspect + replay: the refused finding is not counted twice
    assert [f.code for f in doctor.findings if f.severity is not Severity.INFO] == ["ODS014", "ODS016"]


def test_declared_input_names_say_what_the_trace_dropped(tmp_path: Path) -> None:
    """T5 through the same wrapper, alone in its folder, with the script's input_names recorded beside it."""
    folder = export_seq2seq("t5", "frozen_cache_branch", tmp_path / "t5", decoder_file="decoder.onnx", encoder=False, declare=True)
    report = inspect_path(folder)
    (dropped,) = _by_code(report.findings, "ODS016")
    assert dropped.location.file == "decoder.onnx" and dropped.evidence["declared_in"] == "export_settings.json"
    assert dropped.evidence["missing_inputs"] == ["encoder_hidden_states", "use_cache_branch"]
    assert "12 names, the graph 10 inputs" in dropped.message
    (cross,) = _by_code(report.findings, "ODS014")  # a lone file, but its declaration says what it should compute
    assert cross.location.name == "present.0.encoder.key" and cross.evidence["other_files"] == []


def test_presents_no_file_takes_back_are_an_error_and_the_contract_says_no_cache(no_past_m2m100: Path) -> None:
    report = inspect_path(no_past_m2m100)
    (finding,) = _by_code(report.findings, "ODS015")
    assert finding.severity is Severity.ERROR
    assert (finding.location.file, finding.location.kind, finding.location.name) == ("decoder_model.onnx", "output", "present.0.decoder.key")
    assert sorted(finding.evidence["presents"]) == sorted(cache_names("present"))
    assert "decoder_with_past_model.onnx" in finding.evidence["missing_file"]
    assert finding.evidence["orphan_dim_symbols"] == ["past_decoder_sequence_length"]
    assert "past_decoder_sequence_length + 1" in finding.message and "Invalid input name" in finding.message
    assert "feed the whole prefix every step" in finding.message and "-with-past" in finding.fix
    (dropped,) = _by_code(report.findings, "ODS016")
    assert dropped.evidence["missing_inputs"] == ["past inputs"]
    decoder = next(r for r in report.files if r.signature.file == "decoder_model.onnx")
    assert decoder.stepn.feeds is None and decoder.stepn.note.startswith("no cache: feed the whole prefix every step")
    assert all(name in decoder.stepn.note for name in SELF_PRESENTS[:2])
    result = run_cli("contract", no_past_m2m100)
    assert result.returncode == 0 and "Step n feeds: no cache: feed the whole prefix every step" in result.stdout
    assert "decoder_with_past_model.onnx)" not in result.stdout  # no step runs a file that is not there
    (replayed,) = Replayer(report, ReplayOptions(steps=2)).run().results
    assert replayed.scenario.stepn is None and any("decoded without a cache" in note for note in replayed.notes)


def test_no_past_file_alone_is_a_step0_component(no_past_m2m100: Path, tmp_path: Path) -> None:
    """decoder_model.onnx copied on its own: info, and the contract says its step-n file is not there."""
    shutil.copy2(no_past_m2m100 / "decoder_model.onnx", tmp_path / "decoder_model.onnx")
    report = inspect_path(tmp_path / "decoder_model.onnx")
    assert [f.code for f in report.findings if f.severity is not Severity.INFO] == []
    (finding,) = _by_code(report.findings, "ODS015")
    assert finding.severity is Severity.INFO and "not in this folder" in finding.message
    assert report.files[0].stepn.note.endswith("none in this folder")


def test_no_cache_export_stays_quiet(tmp_path: Path) -> None:
    """A full encoder-decoder without any KV cache: nothing to take back, nothing to compute."""
    folder = export_seq2seq("marian", "no_cache", tmp_path / "marian", decoder_file="decoder_model.onnx")
    report = diagnose(folder, steps=2)
    assert [f"{f.code}: {f.message}" for f in report.problems()] == []
    assert "decodes correctly" in report.verdict


HEALTHY = ["optimum-marian", "optimum-marian-merged", "optimum-t5"]


@pytest.mark.parametrize("folder", HEALTHY)
def test_healthy_optimum_folders_and_their_files_stay_quiet(folder: str) -> None:
    path = FIXTURES / folder
    reports = [inspect_path(path)]
    for model in sorted(path.glob("*.onnx")):
        reports += [inspect_path(model), inspect_path(path, only_file=model.name)]
    for report in reports:
        assert [f.code for f in report.findings if f.code in FOLDER_CODES] == []
        assert [f.code for f in report.findings if f.severity is not Severity.INFO] == []


def test_with_past_file_on_its_own_is_a_component(tmp_path: Path) -> None:
    """decoder_with_past_model.onnx copied alone: no finding; replay synthesizes its cross cache and says so."""
    shutil.copy2(FIXTURES / "optimum-marian" / "decoder_with_past_model.onnx", tmp_path / "decoder_with_past_model.onnx")
    report = inspect_path(tmp_path / "decoder_with_past_model.onnx")
    assert [f.code for f in report.findings if f.severity is not Severity.INFO] == []
    assert report.files[0].step0.note.endswith("no file of this export computes it")
    replayed = Replayer(report, ReplayOptions(steps=2)).run()
    assert replayed.findings == [] and any("synthesized" in n for n in replayed.results[0].notes)


def test_folder_without_its_step0_file_cannot_compute_the_cross_cache(tmp_path: Path) -> None:
    """optimum's split export with decoder_model.onnx left out: nothing computes the cross cache, nothing was dropped."""
    for name in ("encoder_model.onnx", "decoder_with_past_model.onnx", "config.json"):
        shutil.copy2(FIXTURES / "optimum-marian" / name, tmp_path / name)
    report = inspect_path(tmp_path)
    assert [(f.code, f.location.kind, f.location.name) for f in report.findings if f.severity is not Severity.INFO] == [
        ("ODS014", "input", "past_key_values.0.encoder.key")
    ]
    (finding,) = report.findings
    assert finding.evidence["copied_presents"] == [] and finding.evidence["missing_inputs"] == ["encoder_hidden_states"]
    assert "decoder_model.onnx" in finding.message and "not in this folder" in finding.message
    assert [f.code for f in Replayer(report, ReplayOptions(steps=1)).run().findings] == ["ODS014"]


def test_contract_names_the_file_that_runs_each_step() -> None:
    report = inspect_path(FIXTURES / "optimum-marian")
    notes = {r.signature.file: (r.step0.note, r.stepn.note) for r in report.files}
    assert notes["decoder_model.onnx"][1] == "step n runs decoder_with_past_model.onnx, fed the presents of the previous step as its past inputs"
    assert notes["decoder_with_past_model.onnx"][0].startswith("step 0 runs decoder_model.onnx, which computes the cross-attention cache")


def test_fix_reexports_the_frozen_branch_with_optimum(frozen_marian: Path, tmp_path: Path) -> None:
    """The exporter-level fix ODS014 names, applied by `fix` from the model folder the wrapper was built on."""
    result = run_cli("fix", frozen_marian, "--source", frozen_marian.parent / "marian-source", "--out", tmp_path / "out", "--format", "json")
    assert result.returncode == 0, result.stderr
    data = result.json()
    assert {"ODS014", "ODS016"} <= set(data["findings_before"])
    kept = next(a for a in data["attempts"] if a["result"] == "kept")
    assert kept["exporter"] == "optimum" and "ODS014" not in kept["findings_after"]
