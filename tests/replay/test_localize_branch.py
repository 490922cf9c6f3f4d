"""A failure inside a merged decoder's cache branch is localized with the node's measured input shapes."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from support import FIXTURES
from onnxdoctor.engine import inspect_path
from onnxdoctor.replay.harness import Replayer, ReplayOptions


def _break_cache_branch(folder: Path) -> str:
    """Bake a wrong constant target into layer 0's attention Reshape of the cache branch (then_branch) only."""
    path = folder / "decoder_model_merged.onnx"
    model = onnx.load(path)
    branch = next(a.g for a in model.graph.node[0].attribute if a.name == "then_branch")
    reshape = next(n for n in branch.node if n.name == "/model/decoder/layers.0/self_attn/Reshape")
    baked = onnx.helper.make_node(
        "Constant", [], ["baked_target"], value=numpy_helper.from_array(np.array([7, -1, 2, 8], dtype=np.int64))
    )
    position = list(branch.node).index(reshape)
    branch.node.insert(position, baked)
    reshape.input[1] = "baked_target"
    onnx.save(model, path)
    return reshape.name


def test_cache_branch_failure_has_measured_shapes(tmp_path: Path) -> None:
    folder = tmp_path / "export"
    shutil.copytree(FIXTURES / "optimum-marian-merged", folder)
    node = _break_cache_branch(folder)
    report = Replayer(inspect_path(folder), ReplayOptions(steps=2)).run()
    (finding,) = [f for f in report.findings if f.code == "ODX401"]
    assert finding.location.step == 1 and finding.location.name == node
    assert finding.evidence["graph"] and "then_branch" in finding.evidence["graph"]
    shapes = finding.evidence["input_shapes"]
    assert shapes and all(isinstance(v, list) for v in shapes.values())
    assert any(values[0] == 7 for values in finding.evidence["input_values"].values())
