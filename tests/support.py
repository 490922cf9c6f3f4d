"""Shared test helpers: fixture paths, running the real CLI in a subprocess, folder snapshots."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "fixtures"


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> dict[str, Any]:
        return json.loads(self.stdout)


def run_cli(*args: str | os.PathLike[str], cwd: Path | None = None) -> CliResult:
    """Run `python -m onnxdoctor ARGS` as a user would, capturing output."""
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    env.pop("ONNXDOCTOR_DEBUG", None)
    completed = subprocess.run(
        [sys.executable, "-m", "onnxdoctor", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd or REPO,
        env=env,
        timeout=300,
    )
    return CliResult(completed.returncode, completed.stdout, completed.stderr)



def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under `folder` with size and mtime, to prove a command wrote nothing."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }
