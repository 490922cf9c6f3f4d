"""The recovery engine end to end: real exporters in subprocesses, verified by inspect + replay."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from support import FIXTURES, REPO, run_cli, snapshot
from onnxdoctor.errors import UsageError
from onnxdoctor.recovery.engine import RecoveryEngine

WRAPPERS = REPO / "tests" / "recovery" / "torch_wrappers.py"
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama (GQA) saved locally: the 'source' of an optimum export."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
    )
    folder = tmp_path_factory.mktemp("llama") / "source"
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def _optimum_export(source: Path, out: Path, **flags: object) -> Path:
    from optimum.exporters.onnx import main_export

    main_export(model_name_or_path=str(source), output=str(out), task="text-generation-with-past", do_validation=False, **flags)
    return out


def _fix(*args: object) -> dict[str, object]:
    result = run_cli("fix", *args, "--format", "json")
    assert result.returncode in (0, 1), result.stderr
    data = result.json()
    data["_returncode"] = result.returncode
    return data


def test_optimum_no_dynamic_axes_is_reexported_and_replays(tiny_llama: Path, tmp_path: Path) -> None:
    broken = _optimum_export(tiny_llama, tmp_path / "broken", no_dynamic_axes=True)
    before = snapshot(broken)
    data = _fix(broken, "--source", tiny_llama, "--out", tmp_path / "out")
    assert data["_returncode"] == 0 and {"ODA101", "ODA102", "ODA103"} <= set(data["findings_before"])
    kept = next(a for a in data["attempts"] if a["result"] == "kept")
    assert kept["exporter"] == "optimum" and kept["settings"]["no_dynamic_axes"] is False
    assert kept["findings_after"] == [] and data["kept"] == kept["produced"]
    replay = run_cli("replay", data["kept"], "--steps", "3")
    assert replay.returncode == 0, replay.stdout
    assert snapshot(broken) == before  # nothing written over or next to the input


@pytest.mark.parametrize("fixture", ["broken-torch-no-dynamic-axes", "broken-torch-partial-dynamic-axes"])
def test_torch_static_axes_get_dynamic_axes(fixture: str, tmp_path: Path) -> None:
    data = _fix(FIXTURES / fixture, "--source", f"{WRAPPERS}:tiny_decoder", "--out", tmp_path / "out")
    assert data["_returncode"] == 0
    kept = next(a for a in data["attempts"] if a["result"] == "kept")
    assert kept["name"] == "dynamic-axes" and kept["settings"]["dynamo"] is False
    axes = kept["settings"]["dynamic_axes"]
    assert axes["past_key_0"] == {"0": "batch_size", "2": "past_sequence_length"}
    assert axes["present_key_0"] == {"0": "batch_size", "2": "total_sequence_length"}
    assert run_cli("replay", data["kept"]).returncode == 0


def test_baked_reshape_is_reported_as_a_code_change_with_the_node(tmp_path: Path) -> None:
    config = tmp_path / "legacy.json"
    config.write_text(json.dumps({"dynamo": False}))
    data = _fix(
        FIXTURES / "broken-torch-baked-view", "--source", f"{WRAPPERS}:tiny_decoder_baked_view",
        "--out", tmp_path / "out", "--config", config,
    )
    assert data["_returncode"] == 1 and data["kept"] is None
    assert {a["result"] for a in data["attempts"]} == {"rejected"}
    assert all("ODR201" in a["findings_after"] for a in data["attempts"])
    (note,) = data["notes"]
    assert note.startswith("needs a code change") and "/layers.0/Reshape" in note and "layers.0" in note


def test_dynamo_keeps_sizes_symbolic_and_still_points_at_the_code(tmp_path: Path) -> None:
    data = _fix(FIXTURES / "broken-torch-baked-view", "--source", f"{WRAPPERS}:tiny_decoder_baked_view", "--out", tmp_path / "out")
    kept = next(a for a in data["attempts"] if a["result"] == "kept")
    assert kept["name"] == "dynamo+dynamic-shapes" and data["_returncode"] == 0
    assert any("/layers.0/Reshape" in note and "code change" in note for note in data["notes"])


@pytest.mark.parametrize(
    "path,fix",
    [
        (FIXTURES / "broken-gs-dropped-present", "expose-present"),
        (FIXTURES / "broken-gs-concat-swapped", "swap-concat-inputs"),
        (FIXTURES / "synthetic" / "defect-drop_present.onnx", "expose-present"),
    ],
)
def test_graph_surgery_without_source(path: Path, fix: str, tmp_path: Path) -> None:
    data = _fix(path, "--out", tmp_path / "out")
    assert data["_returncode"] == 0
    (attempt,) = data["attempts"]
    assert attempt["name"] == fix and attempt["safe"] and attempt["result"] == "kept"
    assert run_cli("replay", data["kept"], "--batch", "1").returncode == 0


def test_unsafe_fix_needs_the_flag(tmp_path: Path) -> None:
    import onnx

    from onnxdoctor.testing.synth import DecoderSpec, build_decoder

    model = tmp_path / "model" / "model.onnx"
    model.parent.mkdir()
    onnx.save(build_decoder(DecoderSpec(static_dims={"batch_size": 1})), model)
    skipped = _fix(model, "--out", tmp_path / "out1")
    assert [a["result"] for a in skipped["attempts"]] == ["skipped"] and skipped["_returncode"] == 1
    tried = _fix(model, "--out", tmp_path / "out2", "--unsafe-fixes")
    assert [(a["name"], a["result"]) for a in tried["attempts"]] == [("symbolic-batch", "kept")]


def test_crashing_and_hanging_exporters_are_failed_attempts(tmp_path: Path) -> None:
    crashed = _fix(FIXTURES / "broken-torch-no-dynamic-axes", "--source", f"{WRAPPERS}:crashing", "--out", tmp_path / "a")
    assert crashed["_returncode"] == 1 and len(crashed["attempts"]) >= 2
    for attempt in crashed["attempts"]:
        assert attempt["result"] == "failed" and "139" in attempt["reason"]
        assert any("simulated exporter crash" in line for line in attempt["log_tail"])
    hung = _fix(
        FIXTURES / "broken-torch-no-dynamic-axes", "--source", f"{WRAPPERS}:hanging", "--out", tmp_path / "b", "--timeout", "3",
    )
    assert {a["result"] for a in hung["attempts"]} == {"timeout"}
    assert all(a["log_tail"] == ["tracing the model"] for a in hung["attempts"])


def test_dry_run_plans_without_exporting(tmp_path: Path) -> None:
    result = run_cli("fix", FIXTURES / "broken-torch-no-dynamic-axes", "--source", f"{WRAPPERS}:tiny_decoder", "--out", tmp_path / "out", "--dry-run")
    assert result.returncode == 0 and "dry run" in result.stdout and "dynamic-axes" in result.stdout
    assert not (tmp_path / "out").exists()


def test_out_inside_the_model_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="never writes into or over your model"):
        RecoveryEngine(str(FIXTURES / "broken-gs-concat-swapped"), out=FIXTURES / "broken-gs-concat-swapped" / "fixed")
    result = run_cli("fix", FIXTURES / "optimum-gpt2", "--source", "nowhere.py:make", "--out", tmp_path / "o")
    assert result.returncode == 2 and "no such file" in result.stderr


def test_lora_adapter_is_merged_and_exported(tiny_llama: Path, tmp_path: Path) -> None:
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import LlamaForCausalLM

    torch.manual_seed(1)
    adapter_model = get_peft_model(
        LlamaForCausalLM.from_pretrained(tiny_llama),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    adapter = tmp_path / "adapter"
    adapter_model.save_pretrained(adapter)
    broken = _optimum_export(tiny_llama, tmp_path / "broken", no_dynamic_axes=True)
    data = _fix(broken, "--source", tiny_llama, "--adapter", adapter, "--out", tmp_path / "out")
    assert data["_returncode"] == 0
    kept = Path(str(data["kept"]))
    merged = PeftModel.from_pretrained(LlamaForCausalLM.from_pretrained(tiny_llama), str(adapter)).merge_and_unload().eval()
    base = LlamaForCausalLM.from_pretrained(tiny_llama).eval()
    ids = torch.tensor([[3, 14, 15, 9, 2]])
    with torch.no_grad():
        expected = merged(ids).logits.numpy()
        unmerged = base(ids).logits.numpy()
    import onnxruntime as ort

    session = ort.InferenceSession(str(kept / "model.onnx"))
    feeds = {"input_ids": ids.numpy(), "attention_mask": np.ones_like(ids.numpy()), "position_ids": np.arange(5)[None]}
    for value in session.get_inputs():
        if value.name.startswith("past_key_values"):
            feeds[value.name] = np.zeros((1, 2, 0, 4), dtype=np.float32)
    logits = session.run(["logits"], feeds)[0]
    np.testing.assert_allclose(logits, expected, atol=1e-4)
    assert np.abs(expected - unmerged).max() > 1e-3  # the adapter really changed the model


def test_partial_fp16_conversion_is_reexported_in_fp32(tiny_llama: Path, tmp_path: Path) -> None:
    """past float32 but presents float16 (convert_float_to_float16 with keep_io_types on the inputs only)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    good = _optimum_export(tiny_llama, tmp_path / "good")
    model = onnx.load(str(good / "model.onnx"))
    converted = OnnxModel(convert_float_to_float16(model, keep_io_types=[i.name for i in model.graph.input]))
    converted.topological_sort()
    broken = tmp_path / "fp16-partial"
    broken.mkdir()
    onnx.save(converted.model, str(broken / "model.onnx"))
    data = _fix(broken, "--source", tiny_llama, "--out", tmp_path / "out")
    assert "ODS003" in data["findings_before"] and data["_returncode"] == 0
    kept = next(a for a in data["attempts"] if a["result"] == "kept")
    assert kept["settings"]["dtype"] == "fp32" and "ODS003" not in kept["findings_after"]


def test_unsafe_fix_must_be_proven_by_replay(tmp_path: Path) -> None:
    """symbolic-batch applies to the partial-axes export, but its past length is still fixed: not kept."""
    data = _fix(FIXTURES / "broken-torch-partial-dynamic-axes", "--out", tmp_path / "out", "--unsafe-fixes")
    (attempt,) = data["attempts"]
    assert attempt["name"] == "symbolic-batch" and attempt["result"] == "rejected"
    assert "not proven" in attempt["reason"] and "ODA101" not in attempt["findings_after"]
    assert data["kept"] is None and data["_returncode"] == 1


def test_merged_decoder_misuse_is_fixed_by_an_unmerged_export(tmp_path: Path) -> None:
    """A client feeds the merged decoder's cross placeholders back (ODF508): export without the merged If."""
    import torch
    from naive_clients import run_client
    from transformers import MarianConfig, MarianMTModel

    torch.manual_seed(0)
    config = MarianConfig(
        vocab_size=128, decoder_vocab_size=128, d_model=16, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
        max_position_embeddings=64, pad_token_id=1, eos_token_id=0, decoder_start_token_id=1,
    )
    source = tmp_path / "source"
    MarianMTModel(config).save_pretrained(source)
    from optimum.exporters.onnx import main_export

    export = tmp_path / "export"
    main_export(model_name_or_path=str(source), output=str(export), task="text2text-generation-with-past", do_validation=False)
    client = run_client(export / "decoder_model_merged.onnx", tmp_path / "client", "placeholders_fed_back")
    feeds = [arg for path in client.files for arg in ("--feeds", path)]
    data = _fix(export, "--source", source, "--out", tmp_path / "out", *feeds)
    assert data["findings_before"] == ["ODF508"] and data["_returncode"] == 0
    kept = next(a for a in data["attempts"] if a["result"] == "kept")
    assert kept["name"] == "no-post-process"
    produced = sorted(p.name for p in Path(str(data["kept"])).glob("*.onnx"))
    assert produced == ["decoder_model.onnx", "decoder_with_past_model.onnx", "encoder_model.onnx"]


# ---------------------------------------------------------------- torch factories in the forms torch.onnx.export takes


@pytest.mark.parametrize("factory", ["tiny_decoder_positional", "tiny_decoder_pair"])
def test_tuple_factories_reexport_and_verify(factory: str, tmp_path: Path) -> None:
    """(module, inputs, input_names, output_names) and (module, inputs) work like the dict form."""
    data = _fix(FIXTURES / "broken-torch-no-dynamic-axes", "--source", f"{WRAPPERS}:{factory}", "--out", tmp_path / "out")
    assert data["_returncode"] == 0
    kept = next(a for a in data["attempts"] if a["result"] == "kept")
    assert kept["name"] == "dynamic-axes"
    assert not any("Traceback" in line for a in data["attempts"] for line in a["log_tail"])
    import onnx

    exported = onnx.load(str(Path(str(data["kept"])) / "model.onnx"), load_external_data=False)
    original = onnx.load(str(FIXTURES / "broken-torch-no-dynamic-axes" / "model.onnx"), load_external_data=False)
    # the pair form takes its names from the model being fixed: the client's feeds keep working
    assert [i.name for i in exported.graph.input] == [i.name for i in original.graph.input]
    assert [o.name for o in exported.graph.output] == [o.name for o in original.graph.output]
    assert run_cli("replay", data["kept"]).returncode == 0


@pytest.mark.parametrize(("factory", "said"), [("raising", "FileNotFoundError"), ("three_tuple", "3-tuple")])
def test_bad_factory_is_one_line_exit_2_before_any_attempt(factory: str, said: str, tmp_path: Path) -> None:
    result = run_cli("fix", FIXTURES / "broken-torch-no-dynamic-axes", "--source", f"{WRAPPERS}:{factory}", "--out", tmp_path / "out")
    assert result.returncode == 2 and result.stdout == ""
    (line,) = result.stderr.strip().splitlines()[-1:]
    assert line.startswith("onnxdoctor: error: ") and factory in line and said in line
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()  # no attempt ran


def test_dynamo_attempt_fits_a_varargs_forward(tmp_path: Path) -> None:
    """forward(self, input_ids, attention_mask, *past): dynamic_shapes has one entry per parameter, a tuple for *past."""
    data = _fix(FIXTURES / "broken-torch-baked-view", "--source", f"{WRAPPERS}:varargs_baked_view", "--out", tmp_path / "out")
    first = data["attempts"][0]
    assert first["name"] == "dynamo+dynamic-shapes" and first["result"] == "kept", first["log_tail"]
    assert data["_returncode"] == 0
    log = (tmp_path / "out" / f"attempt-1-{first['name']}" / "export.log").read_text()
    assert "factory form 4-tuple" in log and "dynamic_shapes for parameters input_ids, attention_mask, past" in log
    assert run_cli("replay", data["kept"]).returncode == 0


@pytest.mark.parametrize("factory", ["keyword_only_baked_view", "dict_input_baked_view"])
def test_dynamo_export_of_keyword_only_and_dict_input_forwards(factory: str, tmp_path: Path) -> None:
    """The worker itself (in-process): dynamic_shapes keyed by parameter, a dict per dict input; the export replays cleanly."""
    from onnxdoctor.engine import inspect_path
    from onnxdoctor.recovery.engine import dynamic_axes_for
    from onnxdoctor.recovery.export_worker import export_torch
    from onnxdoctor.replay.harness import Replayer, ReplayOptions

    healthy = inspect_path(FIXTURES / "torch-legacy")
    axes = dynamic_axes_for([r.signature for r in healthy.files])
    spec = {
        "source": f"{WRAPPERS}:{factory}", "out": str(tmp_path), "names": {},
        "settings": {"dynamo": True, "opset": 18, "dynamic_axes": {k: {str(a): n for a, n in v.items()} for k, v in axes.items()}},
    }
    export_torch(spec)
    report = Replayer(inspect_path(tmp_path / "model.onnx"), ReplayOptions(steps=2)).run()
    assert [i.name for i in report.results[0].scenario.step0.inputs][:3] == ["input_ids", "attention_mask", "past_key_0"]
    assert report.exit_code == 0 and [r.protocol for r in report.results] == ["general"], [f.message for f in report.findings]


def test_a_reexport_that_departs_from_its_source_is_not_kept(tmp_path: Path) -> None:
    """inspect + replay pass (the trace is consistent with itself), verify against the module does not:
    a tensor value read into Python at trace time. fix keeps nothing, and says why."""
    data = _fix(FIXTURES / "broken-torch-no-dynamic-axes", "--source", f"{WRAPPERS}:traced_constant", "--out", tmp_path / "out")
    assert data["kept"] is None and data["_returncode"] != 0
    verified = [a for a in data["attempts"] if a.get("verify")]
    assert verified, data["attempts"]
    for attempt in verified:
        assert attempt["result"] == "rejected"
        assert "departs from the source" in attempt["reason"] and attempt["verify"]["exit_code"] == 1
        assert {"ODV701", "ODV703"} & set(attempt["verify"]["codes"])


def test_a_kept_reexport_agrees_with_its_source(tmp_path: Path) -> None:
    data = _fix(FIXTURES / "broken-torch-no-dynamic-axes", "--source", f"{WRAPPERS}:tiny_decoder", "--out", tmp_path / "out")
    kept = next(a for a in data["attempts"] if a["result"] == "kept")
    assert "verify agrees with the source" in kept["reason"] and kept["verify"]["exit_code"] == 0


def test_dynamo_reexport_past_the_inline_limit_writes_external_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model over 2 GB cannot be one protobuf: the worker switches dynamo to external data by the weights' size.

    The limit is lowered so a tiny model takes the path a real-size one takes; the export must still load and replay.
    """
    import onnx

    from onnxdoctor.engine import inspect_path
    from onnxdoctor.recovery import export_worker
    from onnxdoctor.recovery.engine import dynamic_axes_for
    from onnxdoctor.replay.harness import Replayer, ReplayOptions

    monkeypatch.setattr(export_worker, "INLINE_LIMIT_BYTES", 0)
    axes = dynamic_axes_for([r.signature for r in inspect_path(FIXTURES / "torch-legacy").files])
    spec = {
        "source": f"{WRAPPERS}:keyword_only_baked_view", "out": str(tmp_path), "names": {},
        "settings": {"dynamo": True, "opset": 18, "dynamic_axes": {k: {str(a): n for a, n in v.items()} for k, v in axes.items()}},
    }
    export_worker.export_torch(spec)
    model = onnx.load(str(tmp_path / "model.onnx"), load_external_data=False)
    external = [t.name for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    assert external and (tmp_path / "model.onnx.data").is_file()
    report = Replayer(inspect_path(tmp_path / "model.onnx"), ReplayOptions(steps=2)).run()
    assert report.exit_code == 0, [f.message for f in report.findings]


def test_a_folder_file_copied_beside_a_mended_model_keeps_its_external_data(tmp_path: Path) -> None:
    """Surgery copies the export's other files (the encoder); one with external data needs its data file too."""
    import onnx

    from onnxdoctor.recovery.engine import _copy_with_external_data

    source = tmp_path / "export"
    source.mkdir()
    model = onnx.load(str(FIXTURES / "optimum-llama-gqa" / "model.onnx"))
    onnx.save_model(model, str(source / "encoder_model.onnx"), save_as_external_data=True, location="encoder_model.onnx_data", size_threshold=0)
    (tmp_path / "out").mkdir()
    _copy_with_external_data(source / "encoder_model.onnx", tmp_path / "out")
    assert (tmp_path / "out" / "encoder_model.onnx_data").is_file()
    copied = onnx.load(str(tmp_path / "out" / "encoder_model.onnx"))
    original = onnx.load(str(FIXTURES / "optimum-llama-gqa" / "model.onnx"))  # save_model emptied `model`'s tensors
    assert [t.raw_data for t in copied.graph.initializer] == [t.raw_data for t in original.graph.initializer]
