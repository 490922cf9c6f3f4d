"""bench: the numbers of a real KV-cache decode of the fixtures, through the driver (structure, not speed)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import onnx
import pytest

from support import FIXTURES, run_cli, snapshot
from onnxdoctor.perf.bench import BenchOptions, bench, bench_many
from onnxdoctor.replay.runtime import Runtime

SMALL = BenchOptions(prompt_len=4, new_tokens=5, repeat=2, warmup=1)


def _config_kv_bytes(fixture: str, itemsize: int) -> int:
    """Self-attention cache bytes per token from the model's own config: layers x (key + value) x kv heads x head_dim."""
    config = json.loads((FIXTURES / fixture / "config.json").read_text())
    layers = config.get("decoder_layers") or config.get("num_decoder_layers") or config.get("num_hidden_layers") or config.get("n_layer")
    heads = config.get("num_key_value_heads") or config.get("decoder_attention_heads") or config.get("num_heads") or config.get("n_head")
    hidden = config.get("d_model") or config.get("hidden_size") or config.get("n_embd")
    head_dim = config.get("head_dim") or config.get("d_kv") or hidden // (config.get("num_attention_heads") or config.get("decoder_attention_heads") or config.get("num_heads") or config.get("n_head"))
    return layers * 2 * heads * head_dim * itemsize


@pytest.mark.parametrize(
    ("fixture", "itemsize", "files"),
    [
        ("optimum-qwen3", 4, ["model.onnx"]),
        ("optimum-gpt2", 4, ["model.onnx"]),
        ("optimum-llama-fp16", 2, ["model.onnx"]),
        ("optimum-marian", 4, ["encoder_model.onnx", "decoder_model.onnx", "decoder_with_past_model.onnx"]),
    ],
)
def test_bench_decodes_every_fixture_and_reports_its_numbers(fixture: str, itemsize: int, files: list[str]) -> None:
    result = bench(FIXTURES / fixture, SMALL)
    assert len(result.runs) == SMALL.repeat  # the warm-up is not among them
    assert all(len(run.step_s) == SMALL.new_tokens and all(s > 0 for s in run.step_s) and run.prefill_s > 0 for run in result.runs)
    pooled = result.per_token_s
    assert min(pooled) <= result.per_token_median_s <= result.per_token_p90_s <= max(pooled)
    assert result.tokens_per_s == pytest.approx(statistics.median(SMALL.batch * SMALL.new_tokens / sum(r.step_s) for r in result.runs))
    assert result.per_token_spread.low <= result.per_token_spread.median <= result.per_token_spread.high
    assert len(result.per_step_median_s) == SMALL.new_tokens
    assert result.kv_bytes_per_token == _config_kv_bytes(fixture, itemsize)
    assert sorted(result.files) == sorted(files)
    assert result.file_bytes == sum((FIXTURES / fixture / name).stat().st_size for name in files)
    assert result.session_s > 0
    assert result.peak_rss is not None and result.peak_rss > 0
    assert (result.encoder_s is not None) == ("encoder_model.onnx" in files)


def test_size_on_disk_counts_external_data(tmp_path: Path) -> None:
    model = onnx.load(FIXTURES / "optimum-qwen3" / "model.onnx")
    onnx.save(model, tmp_path / "model.onnx", save_as_external_data=True, location="model.onnx_data", size_threshold=0)
    result = bench(tmp_path, BenchOptions(prompt_len=2, new_tokens=2, repeat=1, warmup=0))
    assert (tmp_path / "model.onnx_data").stat().st_size > 0  # the weights moved there
    assert result.file_bytes == (tmp_path / "model.onnx").stat().st_size + (tmp_path / "model.onnx_data").stat().st_size


def test_several_exports_have_ratios_against_the_first() -> None:
    comparison = bench_many([FIXTURES / "optimum-qwen3", FIXTURES / "optimum-llama-fp16"], SMALL)
    first, second = comparison.ratios()
    assert all(value == pytest.approx(1.0) for value in first.values() if value is not None)
    a, b = comparison.results
    assert second["kv_cache_bytes_per_token"] == pytest.approx(b.kv_bytes_per_token / a.kv_bytes_per_token)
    assert second["per_token_median"] == pytest.approx(b.per_token_median_s / a.per_token_median_s)
    assert second["file_bytes"] == pytest.approx(b.file_bytes / a.file_bytes)


def test_sessions_are_optimized_by_default_and_take_the_thread_count() -> None:
    import onnxruntime as ort

    deployed = Runtime("cpu", optimize=True, threads=2).options()
    assert deployed.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert deployed.intra_op_num_threads == 2
    assert Runtime("cpu").options().graph_optimization_level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # replay's
    assert BenchOptions().optimize is True


def test_cli_json_table_and_markdown() -> None:
    args = ["bench", FIXTURES / "optimum-qwen3", FIXTURES / "optimum-gpt2", "--prompt-len", "3", "--new-tokens", "3", "--repeat", "2"]
    data = run_cli(*args, "--format", "json", "--threads", "1").json()
    assert data["command"] == "bench" and data["schema"] == 1
    assert data["options"]["threads"] == 1 and data["options"]["optimize"] is True
    assert [Path(e["path"]).name for e in data["exports"]] == ["optimum-qwen3", "optimum-gpt2"]
    for export in data["exports"]:
        assert len(export["runs"]) == 2 and all(len(r["step_s"]) == 3 for r in export["runs"])
        assert export["per_token_s"]["median"] == pytest.approx(statistics.median(s for r in export["runs"] for s in r["step_s"]))
    assert data["ratios_to_first"][0]["per_token_median"] == pytest.approx(1.0)
    table = run_cli(*args, "--no-optimize")
    assert table.returncode == 0
    assert "graph optimization OFF" in table.stdout and "per-token latency, median" in table.stdout and "[" in table.stdout
    markdown = run_cli(*args, "--format", "markdown")
    assert markdown.returncode == 0 and "| per-token latency, median" in markdown.stdout and "graph optimization ON" in markdown.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["fixtures/nope"], "no such file or folder"),
        (["fixtures/optimum-qwen3", "--repeat", "0"], "--repeat must be at least 1"),
        (["fixtures/optimum-qwen3", "--threads", "0"], "--threads must be at least 1"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], says: str) -> None:
    before = snapshot(FIXTURES / "optimum-qwen3")
    result = run_cli("bench", *args)
    assert result.returncode == 2, result.stderr
    assert says in result.stderr and "Traceback" not in result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("onnxdoctor: error")] == [result.stderr.strip().splitlines()[-1]]
    assert snapshot(FIXTURES / "optimum-qwen3") == before
