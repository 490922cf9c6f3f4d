"""Clients in other runtimes: the JavaScript package (onnxruntime-node) the `node` tests run against."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

JS = Path(__file__).resolve().parent / "js"


@pytest.fixture(scope="session")
def node_env() -> dict[str, str]:
    """An environment where `node` finds onnxruntime-node; installs the locked package once if it is missing.

    Skips (with the reason printed by -ra) only when Node.js or the npm registry is not there.
    """
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the JavaScript client tests need Node.js >= 18 (apt-get install nodejs npm)")
    if not (JS / "node_modules" / "onnxruntime-node").is_dir():
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("npm is not installed: cannot install tests/clients/js (onnxruntime-node)")
        done = subprocess.run(
            [npm, "ci", "--onnxruntime-node-install=skip", "--no-audit", "--no-fund"],
            cwd=JS, capture_output=True, text=True, timeout=900,
        )
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            pytest.skip(f"`npm ci` in tests/clients/js failed (is the npm registry reachable?): {last}")
    return dict(os.environ, NODE_PATH=str(JS / "node_modules"))
