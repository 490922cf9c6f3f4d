"""`--format json` output validates against the schema kept in the repo, for every fixture."""

from __future__ import annotations

import json
from importlib import resources

import jsonschema
import pytest

from support import FIXTURES, run_cli
from onnxdoctor.engine import inspect_path

SCHEMA = json.loads(resources.files("onnxdoctor").joinpath("data/report.schema.json").read_text())
TARGETS = sorted(p for p in FIXTURES.iterdir() if p.is_dir() and p.name != "synthetic") + sorted((FIXTURES / "synthetic").glob("*.onnx"))


def test_schema_is_valid() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("path", TARGETS, ids=lambda p: p.name)
def test_report_validates(path) -> None:  # type: ignore[no-untyped-def]
    data = json.loads(json.dumps(inspect_path(path, reshapes=True).to_dict(), default=str))
    jsonschema.validate(data, SCHEMA)


def test_cli_json_validates_and_reshapes_listed() -> None:
    result = run_cli("inspect", FIXTURES / "broken-torch-baked-view", "--format", "json", "--reshapes")
    assert result.returncode == 1
    data = result.json()
    jsonschema.validate(data, SCHEMA)
    (reshape, *_rest) = data["files"][0]["reshapes"]
    assert reshape["node"] == "/layers.0/Reshape" and reshape["findings"] == ["ODR201"]
    assert [e["value"] for e in reshape["target"]] == [1, 3, 3, 2, 8]
    assert all(e["source"] == "constant" for e in reshape["target"])
