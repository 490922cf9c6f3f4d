"""Decoders fed inputs_embeds (the language half of vision-language exports) replay like token decoders."""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, helper

from onnxdoctor.engine import inspect_path
from onnxdoctor.replay.harness import Replayer, ReplayOptions
from onnxdoctor.testing.synth import BATCH, SEQ, DecoderSpec, build_decoder


def _embeds_decoder(spec: DecoderSpec) -> onnx.ModelProto:
    """The synthetic decoder with its token embedding lookup replaced by an inputs_embeds input."""
    model = build_decoder(spec)
    graph = model.graph
    gather = next(n for n in graph.node if n.op_type == "Gather" and "input_ids" in n.input)
    embedded = gather.output[0]
    graph.node.remove(gather)
    for node in graph.node:
        node.input[:] = ["inputs_embeds" if name == embedded else name for name in node.input]
    position = [i for i, v in enumerate(graph.input) if v.name == "input_ids"][0]
    del graph.input[position]
    # other nodes read input_ids only for its shape: derive a [batch, seq] tensor from the embeddings
    axes = helper.make_tensor("reduce_axes", TensorProto.INT64, [1], [2])
    graph.initializer.append(axes)
    graph.node.insert(0, helper.make_node("Cast", ["ids_shape_source"], ["input_ids"], to=TensorProto.INT64))
    graph.node.insert(0, helper.make_node("ReduceSum", ["inputs_embeds", "reduce_axes"], ["ids_shape_source"], keepdims=0))
    graph.input.insert(position, helper.make_tensor_value_info("inputs_embeds", TensorProto.FLOAT, [BATCH, SEQ, spec.hidden]))
    return model


def test_inputs_embeds_decoder_replays_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    onnx.save(_embeds_decoder(DecoderSpec()), path)
    report = inspect_path(path)
    assert report.files[0].signature.input("inputs_embeds") is not None
    assert [f.code for f in report.findings if f.severity.value != "info"] == []
    replayed = Replayer(report, ReplayOptions(steps=3)).run()
    assert replayed.findings == [] and replayed.exit_code == 0
    steps = replayed.results[0].steps
    assert all(s.max_diff_uncached is not None and s.max_diff_uncached < 1e-4 for s in steps[1:])
