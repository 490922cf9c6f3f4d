"""Exporter habits that are not defects: no finding. Exporter annotations that lie: not believed."""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, helper

from support import FIXTURES
from onnxdoctor.engine import inspect_path
from onnxdoctor.findings import Severity


def test_last_token_logits_are_not_a_frozen_axis(tmp_path: Path) -> None:
    """onnxruntime-genai's prune_lm_head: logits [batch, 1, vocab] while input_ids is dynamic."""
    model = onnx.load(FIXTURES / "synthetic" / "plain-kv.onnx")
    logits = next(o for o in model.graph.output if o.name == "logits")
    logits.type.tensor_type.shape.dim[1].Clear()
    logits.type.tensor_type.shape.dim[1].dim_value = 1
    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    assert [f.code for f in inspect_path(path).findings if f.severity is not Severity.INFO] == []


def test_wrong_intermediate_annotations_are_not_believed(tmp_path: Path) -> None:
    """genai's fp16 builds annotate a cache tensor with the new-token length; believing it invents an ODR201.

    Here the GQA repeat_kv Reshape reads Shape(present.0.key) (declared total_sequence_length) while an
    annotation claims its data has sequence_length: only the annotation makes them disagree.
    """
    model = onnx.load(FIXTURES / "optimum-llama-gqa" / "model.onnx")
    for output in model.graph.output:
        if output.name.startswith("present."):
            output.type.tensor_type.shape.dim[2].dim_param = "total_sequence_length"
    reshape = next(n for n in model.graph.node if n.name == "/model/layers.0/self_attn/Reshape_4")  # GQA repeat_kv
    model.graph.value_info.append(
        helper.make_tensor_value_info(reshape.input[0], TensorProto.FLOAT, ["batch_size", 2, 2, "sequence_length", 8])
    )
    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    assert [f.code for f in inspect_path(path).findings if f.severity is not Severity.INFO] == []


def test_unsorted_graph_is_read_in_dependency_order(tmp_path: Path) -> None:
    """Some converters write nodes out of order (ORT still loads them): the findings must not change."""
    import random

    source = FIXTURES / "synthetic" / "defect-concat_swapped.onnx"
    model = onnx.load(source)
    nodes = list(model.graph.node)
    random.Random(0).shuffle(nodes)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    path = tmp_path / "model.onnx"
    onnx.save(model, path)

    def problems(target: Path) -> list[tuple[str, str | None]]:
        return sorted((f.code, f.location.name) for f in inspect_path(target).findings if f.severity is not Severity.INFO)

    assert problems(path) == problems(source) == [("ODP302", "Concat_node_36"), ("ODP302", "Concat_node_37")]


def test_constants_kept_in_external_data_are_not_read(tmp_path: Path) -> None:
    """torch.onnx's large-model save puts even 128-byte Constant values in the external data file (a real
    80-layer Llama export: the rotary inv_freq). Inspection reads no external data, so such a constant is
    unknown to the Reshape tracer: no crash reading it, no finding invented from it."""
    model = onnx.load(FIXTURES / "optimum-llama-gqa" / "model.onnx")
    inline = inspect_path(FIXTURES / "optimum-llama-gqa" / "model.onnx")
    onnx.save_model(
        model, tmp_path / "model.onnx", save_as_external_data=True, location="model.onnx_data", size_threshold=0, convert_attribute=True
    )
    saved = onnx.load(tmp_path / "model.onnx", load_external_data=False)
    external = [n for n in saved.graph.node if n.op_type == "Constant" and n.attribute[0].t.data_location == TensorProto.EXTERNAL]
    assert len(external) > 10  # shape constants of Reshape targets among them

    report = inspect_path(tmp_path / "model.onnx", reshapes=True)
    assert [f.code for f in report.findings if f.severity is not Severity.INFO] == [
        f.code for f in inline.findings if f.severity is not Severity.INFO
    ]
    unread = [e for r in report.files[0].reshapes or [] for e in r["target"] or [] if e["source"] == "unknown"]
    assert unread  # targets built from external constants are traced as unknown entries
