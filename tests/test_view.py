"""`onnxdoctor view`: the extracted neighborhood is a valid model, and Netron serves it on 127.0.0.1."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import onnx
import pytest
from support import FIXTURES, REPO, run_cli, snapshot

BAKED = FIXTURES / "broken-torch-baked-view"
MERGED = FIXTURES / "optimum-marian-merged" / "decoder_model_merged.onnx"


def _checked(path: Path) -> onnx.ModelProto:
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    return model


def _branch_nodes(branch: str) -> dict[str, onnx.NodeProto]:
    (if_node,) = (n for n in onnx.load(str(MERGED), load_external_data=False).graph.node if n.op_type == "If")
    graph = next(a.g for a in if_node.attribute if a.name == branch)
    return {node.name: node for node in graph.node}


def test_finding_neighborhood_is_a_valid_small_model(tmp_path: Path) -> None:
    before = snapshot(BAKED)
    out = tmp_path / "odr201.onnx"
    result = run_cli("view", BAKED, "--finding", "ODR201", "--no-browser", "--save", out, "--no-serve")
    assert result.returncode == 0, result.stderr
    model = _checked(out)
    names = [node.name for node in model.graph.node]
    assert "/layers.0/Reshape" in names
    # its baked target shape stays a Constant node, not a graph input
    reshape = next(node for node in model.graph.node if node.name == "/layers.0/Reshape")
    assert reshape.input[1] not in {v.name for v in model.graph.input}
    original = onnx.load(str(BAKED / "model.onnx"))
    assert len(names) < len(original.graph.node) / 4
    assert {t.name for t in model.graph.initializer} < {t.name for t in original.graph.initializer}
    assert snapshot(BAKED) == before


def test_node_inside_an_if_branch_is_extracted_from_that_branch(tmp_path: Path) -> None:
    then_nodes = _branch_nodes("then_branch")
    only_then = sorted(set(then_nodes) - set(_branch_nodes("else_branch")))
    name = next(n for n in only_then if then_nodes[n].op_type == "Concat")
    out = tmp_path / "branch.onnx"
    result = run_cli("view", MERGED, "--node", name, "--hops", "3", "--save", out, "--no-serve")
    assert result.returncode == 0, result.stderr
    assert "then_branch" in result.stdout
    model = _checked(out)
    assert name in {node.name for node in model.graph.node}
    assert {node.name for node in model.graph.node} <= set(then_nodes)
    # outer-scope tensors (the decoder's own inputs such as the past) became graph inputs
    produced_in_branch = {out for node in then_nodes.values() for out in node.output}
    assert any(v.name not in produced_in_branch for v in model.graph.input)


def test_served_url_answers_on_localhost(tmp_path: Path) -> None:
    pytest.importorskip("netron")
    out = tmp_path / "served.onnx"
    args = ["view", str(BAKED), "--finding", "ODR201", "--no-browser", "--save", str(out), "--port", "0"]
    process = subprocess.Popen(
        [sys.executable, "-m", "onnxdoctor", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()  # type: ignore[union-attr]
    try:
        url = None
        while url is None:
            try:
                line = lines.get(timeout=10)
            except queue.Empty:
                process.kill()
                pytest.fail(f"no URL on stdout within 10 s; stderr: {process.communicate()[1]}")
            match = re.search(r"http://127\.0\.0\.1:\d+/", line)
            url = match.group(0) if match else None
        with urllib.request.urlopen(url, timeout=5) as response:
            assert response.status == 200
            assert f'/data/{out.name}"' in response.read().decode("utf-8")
        with urllib.request.urlopen(f"{url}data/{out.name}", timeout=5) as response:
            assert response.read() == out.read_bytes()
    finally:
        process.terminate()
        process.wait(timeout=10)
    _checked(out)


def test_missing_node_is_a_usage_error_naming_near_matches() -> None:
    result = run_cli("view", BAKED, "--node", "/layers.0/Reshap", "--save", "unused.onnx", "--no-serve")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "no node named '/layers.0/Reshap'" in result.stderr and "/layers.0/Reshape" in result.stderr


def test_unknown_finding_lists_the_findings_there() -> None:
    result = run_cli("view", MERGED, "--finding", "ODR201", "--no-browser")
    assert result.returncode == 2
    assert "no finding ODR201 in decoder_model_merged.onnx; findings: ODP304, ODS010" in result.stderr


def test_save_never_overwrites(tmp_path: Path) -> None:
    existing = tmp_path / "taken.onnx"
    existing.write_bytes(b"mine")
    for target in (existing, BAKED / "model.onnx"):
        result = run_cli("view", BAKED, "--finding", "ODR201", "--save", target, "--no-serve")
        assert result.returncode == 2 and "--save" in result.stderr
    assert existing.read_bytes() == b"mine"


def test_without_netron_serving_says_how_to_install_and_save_still_works(tmp_path: Path) -> None:
    shim = tmp_path / "shim" / "netron"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('netron is hidden for this test')\n")
    env = dict(os.environ, PYTHONPATH=str(shim.parent))
    env.pop("ONNXDOCTOR_DEBUG", None)

    def view(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "onnxdoctor", "view", str(BAKED), "--finding", "ODR201", *args]
        return subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env, timeout=60)

    served = view("--no-browser")
    assert served.returncode == 2
    assert "pip install 'onnxdoctor[view]'" in served.stderr and served.stderr.count("\n") == 1
    saved = view("--save", str(tmp_path / "n.onnx"), "--no-serve")
    assert saved.returncode == 0, saved.stderr
    _checked(tmp_path / "n.onnx")


def test_branch_picks_the_cache_branch_copy_of_a_shared_node_name(tmp_path: Path) -> None:
    """optimum's merged decoder has the same node names in both branches: --branch chooses."""
    merged = FIXTURES / "optimum-marian-merged" / "decoder_model_merged.onnx"
    name = "/model/decoder/layers.0/self_attn/Reshape"
    for branch in ("then_branch", "else_branch"):
        target = tmp_path / f"{branch}.onnx"
        result = run_cli("view", merged, "--node", name, "--branch", branch, "--hops", "0", "--save", target, "--no-serve")
        assert result.returncode == 0, result.stderr
        assert f"in optimum::if.{branch}:" in result.stdout
        assert [n.name for n in onnx.load(str(target)).graph.node] == [name]
