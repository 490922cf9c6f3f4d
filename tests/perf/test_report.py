"""report: an fp32 + int8 + int4 trio in one folder; its PNGs open, its JSON holds compare's and bench's numbers."""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from support import FIXTURES, REPO, run_cli, snapshot
from onnxdoctor.fidelity.verify import FidelityOptions, compare
from onnxdoctor.perf.bench import BenchOptions, bench

QUICK = ["--steps", "4", "--new-tokens", "4", "--repeat", "2"]


@pytest.fixture(scope="module")
def trio(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """fp32 + int8 + int4 of one tiny model, by ONNX Runtime's real quantizers (no conftest here: the
    fidelity tests import theirs as `conftest`)."""
    from onnxdoctor.testing.quantized import quantized_twins

    twins = quantized_twins(FIXTURES / "optimum-qwen3", tmp_path_factory.mktemp("trio"), ["int8-dynamic", "int4-block32"])
    return [FIXTURES / "optimum-qwen3", twins["int8-dynamic"], twins["int4-block32"]]


@pytest.fixture(scope="module")
def written(trio: list[Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("report") / "report"
    result = run_cli("report", *trio, "--out", out, *QUICK)
    assert result.returncode == 0, result.stderr
    return out, json.loads((out / "report.json").read_text())


def test_the_folder_has_markdown_json_and_charts(written: tuple[Path, dict[str, Any]], trio: list[Path]) -> None:
    out, data = written
    assert sorted(p.name for p in out.iterdir()) == ["drift.png", "latency.png", "memory.png", "report.json", "report.md"]
    markdown = (out / "report.md").read_text()
    for path in trio:
        assert path.name in markdown
    for heading in ("## Inspect", "## Replay", "## Fidelity against the first export", "## Speed and memory"):
        assert heading in markdown
    assert "![Logits drift per decode step" in markdown and "(latency.png)" in markdown and "(memory.png)" in markdown
    assert data["charts_missing"] is None and [c["file"] for c in data["charts"]] == ["drift.png", "latency.png", "memory.png"]
    assert data["against"] == "first export" and data["exports"] == [str(p) for p in trio]


def test_the_pngs_are_valid_non_empty_images(written: tuple[Path, dict[str, Any]]) -> None:
    pytest.importorskip("PIL", reason="the report extra (matplotlib, which brings pillow) is not installed")
    from PIL import Image

    out, _data = written
    for name in ("drift.png", "latency.png", "memory.png"):
        with Image.open(out / name) as image:
            image.verify()  # a well-formed PNG
        with Image.open(out / name) as image:
            assert image.format == "PNG" and image.width >= 300 and image.height >= 200
            low, high = image.convert("L").getextrema()
            assert high - low > 100  # something is drawn on the white background
            assert len(image.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 20  # lines, text, not a blank box


def test_the_drift_is_compares(written: tuple[Path, dict[str, Any]], trio: list[Path]) -> None:
    _out, data = written
    fidelity = data["sections"]["fidelity"]
    assert sorted(fidelity) == sorted(str(p) for p in trio[1:])  # the first export is the reference
    chart = next(c for c in data["charts"] if c["name"] == "drift")
    for twin in trio[1:]:
        report = compare(trio[0], twin, options=FidelityOptions(steps=4))
        expected = [row.logits.scaled for row in report.results[0].rows]
        stored = [step["logits"]["scaled"] for step in fidelity[str(twin)]["scenarios"][0]["steps"]]
        assert stored == pytest.approx(expected, rel=1e-6, abs=1e-7)
        assert chart["series"][twin.name]["y"] == pytest.approx(expected, rel=1e-6, abs=1e-7)
        assert [f["code"] for f in fidelity[str(twin)]["findings"]] == [f.code for f in report.findings]


def test_the_bench_numbers_are_bench_s(written: tuple[Path, dict[str, Any]], trio: list[Path]) -> None:
    _out, data = written
    benched = data["sections"]["bench"]
    assert [e["path"] for e in benched["exports"]] == [str(p) for p in trio]
    latency = next(c for c in data["charts"] if c["name"] == "latency")
    memory = next(c for c in data["charts"] if c["name"] == "memory")
    for index, path in enumerate(trio):
        stored = benched["exports"][index]
        fresh = bench(path, BenchOptions(prompt_len=16, new_tokens=4, repeat=1, warmup=0))
        # what does not depend on the machine's load is bench's exactly
        assert stored["kv_cache_bytes_per_token"] == fresh.kv_bytes_per_token
        assert stored["file_bytes"] == fresh.file_bytes
        assert stored["files"] == fresh.files
        # timings: the stored figures are those of the stored runs, and the chart draws them
        steps = [s for run in stored["runs"] for s in run["step_s"]]
        assert len(steps) == 2 * 4
        assert stored["per_token_s"]["median"] == pytest.approx(statistics.median(steps))
        assert latency["series"][path.name]["y"] == pytest.approx([s * 1e3 for s in stored["per_step_median_s"]])
        assert memory["series"]["size on disk"]["y"][index] == pytest.approx(fresh.file_bytes / 2**20)
    assert benched["exports"][2]["file_bytes"] < benched["exports"][0]["file_bytes"]  # int4 weights are smaller
    assert benched["ratios_to_first"][2]["file_bytes"] == pytest.approx(benched["exports"][2]["file_bytes"] / benched["exports"][0]["file_bytes"])


def test_out_must_be_new_or_empty_and_outside_every_export(tmp_path: Path, trio: list[Path]) -> None:
    export = tmp_path / "export"
    shutil.copytree(FIXTURES / "optimum-qwen3", export)
    before = snapshot(export)
    inside = run_cli("report", export, "--out", export / "report", *QUICK)
    assert inside.returncode == 2 and "inside the export" in inside.stderr and "Traceback" not in inside.stderr
    same = run_cli("report", export, "--out", export, *QUICK)
    assert same.returncode == 2
    assert snapshot(export) == before and not (export / "report").exists()
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    refused = run_cli("report", export, "--out", busy, *QUICK)
    assert refused.returncode == 2 and "new or empty folder" in refused.stderr
    assert [p.name for p in busy.iterdir()] == ["notes.txt"]


def test_against_the_source(tmp_path: Path, trio: list[Path]) -> None:
    from support import rebuild_source

    source = rebuild_source("optimum-qwen3", tmp_path / "source")
    out = tmp_path / "report"
    result = run_cli("report", trio[0], trio[2], "--source", source, "--out", out, *QUICK)
    assert result.returncode == 0, result.stderr
    data = json.loads((out / "report.json").read_text())
    assert data["against"] == "source" and sorted(data["sections"]["fidelity"]) == sorted([str(trio[0]), str(trio[2])])
    assert all(v["command"] == "verify" for v in data["sections"]["fidelity"].values())
    assert "## Fidelity against the source" in (out / "report.md").read_text()


def test_without_matplotlib_the_report_says_which_install_adds_the_charts(tmp_path: Path) -> None:
    """matplotlib made unimportable in a fresh interpreter (sys.modules entry None), as on a machine without the extra."""
    out = tmp_path / "report"
    script = f"""
import sys
sys.modules["matplotlib"] = None
from onnxdoctor.perf.bench import BenchOptions
from onnxdoctor.perf.report import ReportOptions, validation_report
report = validation_report([{str(FIXTURES / 'optimum-qwen3')!r}], {str(out)!r},
                           options=ReportOptions(steps=2, replay_steps=2, bench=BenchOptions(new_tokens=2, repeat=1)))
print(report.paths.charts_missing)
"""
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO)
    assert completed.returncode == 0, completed.stderr
    assert "pip install 'onnxdoctor[report]'" in completed.stdout
    assert sorted(p.name for p in out.iterdir()) == ["report.json", "report.md"]
    assert "pip install 'onnxdoctor[report]'" in (out / "report.md").read_text()
    data = json.loads((out / "report.json").read_text())
    assert "matplotlib is not installed" in data["charts_missing"]
    assert [c["name"] for c in data["charts"]] == ["latency", "memory"]  # the numbers are still there; one export: no drift


def test_a_broken_export_is_reported_not_benched(tmp_path: Path) -> None:
    broken = FIXTURES / "broken-torch-baked-view"
    out = tmp_path / "report"
    result = run_cli("report", FIXTURES / "optimum-gpt2", broken, "--out", out, "--steps", "2", "--new-tokens", "2", "--repeat", "1")
    assert result.returncode == 1, result.stderr  # replay found errors; the folder is still written
    data = json.loads((out / "report.json").read_text())
    assert list(data["sections"]["bench"]["not_benched"]) == [str(broken)]
    assert [e["path"] for e in data["sections"]["bench"]["exports"]] == [str(FIXTURES / "optimum-gpt2")]
    assert "Reshape" in data["sections"]["fidelity"][str(broken)]["error"]
    assert data["sections"]["replay"][str(broken)]["summary"]["error"] >= 1
    markdown = (out / "report.md").read_text()
    assert "not benched: its decode fails" in markdown and "ODX401" in markdown
