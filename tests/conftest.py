"""Puts tests/ (and tests/replay) on sys.path so test modules share `support` and `naive_clients`."""

from __future__ import annotations

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))
sys.path.insert(0, str(TESTS / "replay"))  # naive_clients, also used by the catalog test

pytest_plugins = ["pytester"]
