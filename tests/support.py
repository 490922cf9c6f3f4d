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


def run_cli(*args: str | os.PathLike[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> CliResult:
    """Run `python -m onnxdoctor ARGS` as a user would (with `env` added to the environment), capturing output."""
    env = dict(os.environ, PYTHONWARNINGS="ignore", **(env or {}))
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



def run_python(body: str, *, env: dict[str, str] | None = None, timeout: int = 300) -> str:
    """Run `body` (dedented) in a fresh interpreter, with `env` added to the environment; its stdout,
    stripped. A fresh process: no module imported, no thread started by earlier tests."""
    import textwrap

    completed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(body)], capture_output=True, text=True, timeout=timeout, env=dict(os.environ, **(env or {}))
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout.strip()


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under `folder` with size and mtime, to prove a command wrote nothing."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# ------------------------------------------------------------------ real exports of tiny random models


def rebuild_source(fixture: str, out: Path, seed: int = 0) -> Path:
    """The Hugging Face model a committed fixture was exported from (scripts/make_fixtures.py seeds 0)."""
    import torch
    import transformers

    settings = json.loads((FIXTURES / fixture / "export_settings.json").read_text())
    config = transformers.AutoConfig.from_pretrained(FIXTURES / fixture)
    torch.manual_seed(seed)
    getattr(transformers, settings["model_class"])(config).eval().save_pretrained(out)
    return out


def optimum_export(source: Path, out: Path, task: str = "text-generation-with-past", **flags: Any) -> Path:
    """optimum's main_export of a local folder, quietly (HF_HUB_OFFLINE)."""
    import logging
    import warnings

    from optimum.exporters.onnx import main_export

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            main_export(model_name_or_path=str(source), output=str(out), task=task, do_validation=False, **flags)
        finally:
            logging.disable(logging.NOTSET)
    return out
