"""Present defects planted at the first, a middle and the last layer: right code, place, explanation and fix.

Layer 0's past reaches every later layer's new K/V through the hidden states (attention -> residual ->
k_proj), so a check that reasons from value flow alone explains a defect at layer 0 correctly and the
same defect one layer later wrongly. The expected node names are read here from the ONNX graph itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from support import FIXTURES
from onnxdoctor.engine import InspectReport, inspect_path
from onnxdoctor.findings import Finding, Severity
from onnxdoctor.testing.synth import DecoderSpec, build_decoder, rename_tensors

LAYERS = 3
SWEEP = (0, 1, LAYERS - 1)


def _save(model: onnx.ModelProto, folder: Path) -> Path:
    path = folder / "model.onnx"
    onnx.save(model, path)
    return path


def _problems(report: InspectReport) -> list[Finding]:
    return [f for f in report.findings if f.severity is not Severity.INFO]


def _concat_taking(model: onnx.ModelProto, past: str, axis: int) -> onnx.NodeProto:
    """The one Concat that has `past` as a direct input and joins on `axis` (of a rank-4 cache)."""
    found = [
        node for node in model.graph.node
        if node.op_type == "Concat" and past in node.input
        and next(a.i for a in node.attribute if a.name == "axis") % 4 == axis
    ]
    assert len(found) == 1, [n.name for n in found]
    return found[0]


def _other_layers(layer: int) -> list[str]:
    return [f"past_key_values.{i}." for i in range(LAYERS) if i != layer] + [f"present.{i}." for i in range(LAYERS) if i != layer]


def _assert_only_layer(findings: list[Finding], layer: int) -> None:
    """Nothing in the findings points at, or blames, another layer."""
    for finding in findings:
        text = f"{finding.location.name} {finding.message} {finding.fix}"
        assert not any(other in text for other in _other_layers(layer)), text
        assert f"layer {layer}" in finding.message and f"layer {layer}" in finding.fix, finding


def _planted(defect: str, layer: int, folder: Path) -> tuple[onnx.ModelProto, InspectReport]:
    model = build_decoder(DecoderSpec(layers=LAYERS, defect=defect, defect_layer=layer))
    return model, inspect_path(_save(model, folder))


@pytest.mark.parametrize("layer", SWEEP)
def test_present_is_new_is_a_lost_cache_with_a_rewire_fix(layer: int, tmp_path: Path) -> None:
    model, report = _planted("present_is_new", layer, tmp_path)
    odp = [f for f in _problems(report) if f.code == "ODP301"]
    assert {f.location.name for f in odp} == {f"present.{layer}.key", f"present.{layer}.value"}
    assert all(f.location.kind == "output" for f in odp)
    _assert_only_layer(odp, layer)
    assert {f.location.name for f in _problems(report)} == {f"present.{layer}.key", f"present.{layer}.value"}  # + ODA104
    for finding in odp:
        part = finding.location.name.rsplit(".", 1)[1]
        past = f"past_key_values.{layer}.{part}"
        concat = _concat_taking(model, past, axis=2)
        assert "swapped" not in finding.message and "built_from" not in finding.evidence
        assert past in finding.message and finding.evidence["layer"] == layer
        # the fix points at the Concat that still exists for this layer, on the cache axis
        assert concat.name in finding.fix and "dim=-2" in finding.fix
        assert finding.remedy == {
            "graph_edit": "rewire_present_to_concat", "present": finding.location.name, "past": past,
            "layer": layer, "concat": f"{concat.name} (Concat)",
        }


@pytest.mark.parametrize("layer", SWEEP)
def test_concat_order_names_the_layers_concat_node(layer: int, tmp_path: Path) -> None:
    model, report = _planted("concat_swapped", layer, tmp_path)
    problems = _problems(report)
    assert {f.code for f in problems} == {"ODP302"}
    _assert_only_layer(problems, layer)
    for part in ("key", "value"):
        past = f"past_key_values.{layer}.{part}"
        concat = _concat_taking(model, past, axis=2)
        assert list(concat.input).index(past) == 1
        (finding,) = [f for f in problems if f.evidence["present"] == f"present.{layer}.{part}"]
        assert finding.location.kind == "node" and finding.location.name == concat.name
        assert "second input" in finding.message
        assert f"Swap the two inputs of {concat.name}" in finding.fix and f"{past} comes first" in finding.fix
        assert finding.remedy == {"graph_edit": "swap_concat_inputs", "node": concat.name, "present": f"present.{layer}.{part}"}


@pytest.mark.parametrize("layer", SWEEP)
def test_concat_axis_names_the_layer_and_the_right_axis(layer: int, tmp_path: Path) -> None:
    model, report = _planted("concat_wrong_axis", layer, tmp_path)
    problems = _problems(report)
    assert {f.code for f in problems} == {"ODP303", "ODS004", "ODA104"}
    _assert_only_layer([f for f in problems if f.code == "ODP303"], layer)
    assert {f.location.name for f in problems if f.location.kind == "output"} == {f"present.{layer}.key", f"present.{layer}.value"}
    for part in ("key", "value"):
        past = f"past_key_values.{layer}.{part}"
        wrong = _concat_taking(model, past, axis=3)
        (finding,) = [f for f in problems if f.code == "ODP303" and f.evidence["present"] == f"present.{layer}.{part}"]
        assert (finding.location.kind, finding.location.name, finding.location.axis) == ("node", wrong.name, 3)
        assert (finding.evidence["observed_axis"], finding.evidence["expected_axis"]) == (3, 2)
        assert "on axis 2" in finding.fix and "dim=-2" in finding.fix and past in finding.fix


@pytest.mark.parametrize("layer", SWEEP)
def test_dropped_present_names_the_layers_concat_to_expose(layer: int, tmp_path: Path) -> None:
    model, report = _planted("drop_present", layer, tmp_path)
    problems = _problems(report)
    (finding,) = problems
    past = f"past_key_values.{layer}.value"
    assert (finding.code, finding.location.kind, finding.location.name) == ("ODS002", "input", past)
    assert finding.remedy and finding.remedy["layer"] == layer and finding.remedy["part"] == "value"
    assert f"layer {layer}'s value present" in finding.fix
    assert _concat_taking(model, past, axis=2).name in finding.fix and "onnxdoctor fix" in finding.fix
    _assert_only_layer(problems, layer)


@pytest.mark.parametrize("layer", SWEEP)
def test_key_and_value_outputs_swapped_within_a_layer(layer: int, tmp_path: Path) -> None:
    key, value = f"present.{layer}.key", f"present.{layer}.value"
    model = rename_tensors(build_decoder(DecoderSpec(layers=LAYERS)), {key: value, value: key})
    problems = _problems(inspect_path(_save(model, tmp_path)))
    odp = [f for f in problems if f.code.startswith("ODP")]
    assert {(f.code, f.location.name) for f in odp} == {("ODP301", key), ("ODP301", value)}
    for finding, holder, other_part in ((f, *((value, "value") if f.location.name == key else (key, "key"))) for f in odp):
        assert finding.evidence["built_from"] == [f"past_key_values.{layer}.{other_part}"]
        assert finding.evidence["holds_own_past"] == holder
        assert "swapped" in finding.message and f"of layer {layer}" in finding.message
        assert f"Swap the names {finding.location.name} and {holder}" in finding.fix
        assert finding.remedy and finding.remedy["graph_edit"] == "fix_output_names" and finding.remedy["swap_with"] == holder
    assert not [f for f in problems if f.code == "ODP302"], "Concat(past of the other part, new) is not an order problem"


@pytest.mark.parametrize("first,second", [(0, 1), (1, LAYERS - 1), (0, LAYERS - 1)])
def test_outputs_swapped_between_layers(first: int, second: int, tmp_path: Path) -> None:
    renames = {}
    for part in ("key", "value"):
        renames[f"present.{first}.{part}"] = f"present.{second}.{part}"
        renames[f"present.{second}.{part}"] = f"present.{first}.{part}"
    model = rename_tensors(build_decoder(DecoderSpec(layers=LAYERS)), renames)
    problems = _problems(inspect_path(_save(model, tmp_path)))
    odp = [f for f in problems if f.code.startswith("ODP")]
    assert {f.location.name for f in odp} == set(renames) and {f.code for f in odp} == {"ODP301"}
    for finding in odp:
        _, layer, part = finding.location.name.split(".")
        other = second if int(layer) == first else first
        assert finding.evidence["built_from"] == [f"past_key_values.{other}.{part}"]
        assert finding.evidence["holds_own_past"] == f"present.{other}.{part}"
        assert f"layers {layer} and {other}" in finding.message and "swapped" in finding.message
        assert f"present.{other}.{part}" in finding.fix and f"past_key_values.{layer}.{part}" in finding.fix


@pytest.mark.parametrize(
    "spec",
    [
        DecoderSpec(layers=4),
        DecoderSpec(layers=4, naming="plain", kv_heads=4),
        DecoderSpec(layers=4, naming="stacked"),
        DecoderSpec(layers=4, naming="self_cross", seq2seq=True),
        DecoderSpec(layers=4, seq2seq=True, merged=True),
    ],
    ids=["optimum", "plain", "stacked", "self_cross-seq2seq", "merged-seq2seq"],
)
def test_deep_healthy_decoders_stay_quiet(spec: DecoderSpec, tmp_path: Path) -> None:
    """Every later layer's present depends on earlier pasts by value: that alone is never a finding."""
    report = inspect_path(_save(build_decoder(spec), tmp_path))
    assert _problems(report) == []
    assert not [f for f in report.findings if f.code in ("ODP301", "ODP302", "ODP303")]


# ---------------------------------------------------------------- a real export, edited with graphsurgeon


def _real_present_is_new(layer: int, folder: Path) -> Path:
    """The healthy optimum Llama GQA export with present.{layer}.key/value re-pointed at the new K/V."""
    gs = pytest.importorskip("onnx_graphsurgeon")
    graph = gs.import_onnx(onnx.load(str(FIXTURES / "optimum-llama-gqa" / "model.onnx")))
    for part in ("key", "value"):
        name = f"present.{layer}.{part}"
        (tensor,) = [t for t in graph.outputs if t.name == name]
        (concat,) = tensor.inputs
        assert concat.op == "Concat"
        _, new = concat.inputs
        concat.outputs[0].name = f"{concat.name}_output_0"  # still feeds the attention
        shape = list(tensor.shape)
        shape[2] = "sequence_length"
        new.name, new.dtype, new.shape = name, np.float32, shape
        graph.outputs[graph.outputs.index(concat.outputs[0])] = new
    path = folder / "model.onnx"
    onnx.save(gs.export_onnx(graph), str(path))
    return path


def test_real_export_layer_1_present_is_new_is_not_called_swapped(tmp_path: Path) -> None:
    """The reported case: layer 1 of a real export rewired to its new K/V, layer 0 intact."""
    report = inspect_path(_real_present_is_new(1, tmp_path))
    odp = [f for f in report.findings if f.code == "ODP301"]
    assert {f.location.name for f in odp} == {"present.1.key", "present.1.value"}
    for finding in odp:
        assert "swapped" not in finding.message and "past_key_values.0" not in finding.message + finding.fix
        assert "layer 1" in finding.message and "/model/layers.1/" in finding.fix
        assert finding.remedy and finding.remedy["graph_edit"] == "rewire_present_to_concat"


@pytest.mark.parametrize("fixture", ["contrib-gqa.onnx", "contrib-mha.onnx"])
def test_attention_op_outputs_swapped(fixture: str, tmp_path: Path) -> None:
    """An onnxruntime attention op returns the presents itself: its present_key output named as the value is a swap."""
    model = onnx.load(FIXTURES / "synthetic" / fixture)
    model = rename_tensors(model, {"present.1.key": "present.1.value", "present.1.value": "present.1.key"})
    odp = [f for f in _problems(inspect_path(_save(model, tmp_path))) if f.code.startswith("ODP")]
    assert {(f.code, f.location.name, tuple(f.evidence["built_from"])) for f in odp} == {
        ("ODP301", "present.1.key", ("past_key_values.1.value",)),
        ("ODP301", "present.1.value", ("past_key_values.1.key",)),
    }
    assert all("returned by layers.1." in f.message and "swapped" in f.message for f in odp)


def test_stacked_outputs_swapped_between_layers(tmp_path: Path) -> None:
    """Legacy stacked key+value presents: the past is unpacked by Gather before the Concat, still an operand."""
    model = rename_tensors(build_decoder(DecoderSpec(layers=LAYERS, naming="stacked")), {"present_0": "present_2", "present_2": "present_0"})
    odp = [f for f in _problems(inspect_path(_save(model, tmp_path))) if f.code.startswith("ODP")]
    assert {(f.location.name, tuple(f.evidence["built_from"]), f.evidence["holds_own_past"]) for f in odp} == {
        ("present_0", ("past_2",), "present_2"),
        ("present_2", ("past_0",), "present_0"),
    }
    assert all("key+value caches of layers" in f.message for f in odp)
