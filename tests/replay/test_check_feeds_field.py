"""check-feeds on feeds recorded by replay (must be clean) and on field mistakes planted into them."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from support import FIXTURES, run_cli
from onnxdoctor.engine import inspect_path
from onnxdoctor.replay.feedcheck import FeedChecker

Feeds = dict[str, np.ndarray]

# code -> the test below that plants it and asserts it (the catalog test reads this)
TRIGGERED = {
    "ODF503": "test_merged_encoder_mask_and_cross_cache",
    "ODF509": "test_merged_encoder_mask_and_cross_cache",
    "ODF510": "test_token_out_of_vocabulary",
    "ODF511": "test_new_token_masked",
    "ODF512": "test_tokens_fed_twice",
    "ODF513": "test_no_past_decoder_reused_after_step0",
}


def _record(target: Path, folder: Path, *extra: str) -> list[Path]:
    result = run_cli("replay", target, "--steps", "3", "--record", folder, *extra)
    assert result.returncode == 0, result.stdout + result.stderr
    return [folder / f"step{k}.npz" for k in range(4)]


def _check(target: Path, files: list[Path]) -> list[tuple[str, int | None, str | None]]:
    report = FeedChecker(inspect_path(target)).run(files)
    return [(f.code, f.location.step, f.location.name) for f in report.findings]


def _mutate(files: list[Path], step: int, change: Callable[[Feeds], None], folder: Path) -> list[Path]:
    """A copy of the recorded run with one step's feeds changed (recorded outputs dropped from that step on)."""
    folder.mkdir()
    copies = []
    for k, path in enumerate(files):
        target = folder / path.name
        if k != step:
            shutil.copy(path, target)
        else:
            with np.load(path) as data:
                feeds = {name: data[name] for name in data.files}
            change(feeds)
            np.savez(target, **feeds)
        if k < step:
            shutil.copy(path.with_name(path.stem + "_outputs.npz"), folder / (path.stem + "_outputs.npz"))
        copies.append(target)
    return copies


@pytest.mark.parametrize("fixture", ["optimum-llama-gqa", "optimum-gpt2", "torch-legacy", "optimum-marian", "optimum-marian-merged"])
def test_replays_own_feeds_pass(fixture: str, tmp_path: Path) -> None:
    """The reference protocol (batch 2, left padding, a chunked step) is exactly what check-feeds accepts."""
    files = _record(FIXTURES / fixture, tmp_path / "rec")
    assert _check(FIXTURES / fixture, files) == []


@pytest.fixture
def llama_run(tmp_path: Path) -> list[Path]:
    return _record(FIXTURES / "optimum-llama-gqa", tmp_path / "rec")


def test_token_out_of_vocabulary(llama_run: list[Path], tmp_path: Path) -> None:
    def change(feeds: Feeds) -> None:
        feeds["input_ids"][0, 0] = 128

    assert _check(FIXTURES / "optimum-llama-gqa", _mutate(llama_run, 0, change, tmp_path / "m")) == [("ODF510", 0, "input_ids")]


def test_new_token_masked(llama_run: list[Path], tmp_path: Path) -> None:
    def change(feeds: Feeds) -> None:
        feeds["attention_mask"][:, -1] = 0

    assert _check(FIXTURES / "optimum-llama-gqa", _mutate(llama_run, 1, change, tmp_path / "m")) == [("ODF511", 1, "attention_mask")]


def test_left_padding_lost(llama_run: list[Path], tmp_path: Path) -> None:
    def change(feeds: Feeds) -> None:
        feeds["attention_mask"][:] = 1

    assert _check(FIXTURES / "optimum-llama-gqa", _mutate(llama_run, 1, change, tmp_path / "m")) == [("ODF511", 1, "attention_mask")]


def test_tokens_fed_twice(llama_run: list[Path], tmp_path: Path) -> None:
    with np.load(llama_run[0]) as step0:
        prompt = step0["input_ids"]

    def change(feeds: Feeds) -> None:
        feeds["input_ids"] = np.concatenate([prompt, feeds["input_ids"]], axis=1)

    assert _check(FIXTURES / "optimum-llama-gqa", _mutate(llama_run, 1, change, tmp_path / "m")) == [("ODF512", 1, "input_ids")]


def test_no_cache_decoding_is_valid(tmp_path: Path) -> None:
    """An empty past and the whole sequence at every step: slower, not wrong."""
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 128, (1, 6))
    files = []
    for step, length in enumerate((3, 4, 5, 6)):
        feeds = {
            "input_ids": tokens[:, :length],
            "attention_mask": np.ones((1, length), np.int64),
            "position_ids": np.arange(length)[None],
            **{f"past_key_values.{i}.{p}": np.zeros((1, 2, 0, 8), np.float32) for i in (0, 1) for p in ("key", "value")},
        }
        np.savez(tmp_path / f"step{step}.npz", **feeds)
        files.append(tmp_path / f"step{step}.npz")
    assert _check(FIXTURES / "optimum-llama-gqa", files) == []


def test_merged_encoder_mask_and_cross_cache(tmp_path: Path) -> None:
    target = FIXTURES / "optimum-marian-merged"
    run = _record(target, tmp_path / "rec")

    def short_mask(feeds: Feeds) -> None:
        feeds["encoder_attention_mask"] = feeds["encoder_attention_mask"][:, :3]

    def swapped(feeds: Feeds) -> None:
        key = feeds["past_key_values.0.encoder.key"].copy()
        feeds["past_key_values.0.encoder.key"] = feeds["past_key_values.0.encoder.value"]
        feeds["past_key_values.0.encoder.value"] = key

    assert _check(target, _mutate(run, 1, short_mask, tmp_path / "a")) == [("ODF503", 1, "encoder_attention_mask")]
    assert _check(target, _mutate(run, 1, swapped, tmp_path / "b")) == [("ODF509", 1, "past_key_values.0.encoder.key")]


def test_no_past_decoder_reused_after_step0(tmp_path: Path) -> None:
    target = FIXTURES / "optimum-marian"
    run = _record(target, tmp_path / "rec")
    with np.load(run[0]) as step0:
        reference = {name: step0[name] for name in step0.files}

    def back_to_decoder_model(feeds: Feeds) -> None:
        new = feeds["input_ids"]
        feeds.clear()
        feeds.update({"encoder_attention_mask": reference["encoder_attention_mask"], "input_ids": new,
                      "encoder_hidden_states": reference["encoder_hidden_states"]})

    assert _check(target, _mutate(run, 1, back_to_decoder_model, tmp_path / "m")) == [("ODF513", 1, "input_ids")]


def test_short_encoder_mask_is_blamed_not_the_encoder_cache_the_model_returned(tmp_path: Path) -> None:
    """decoder_with_past has no encoder_hidden_states: the cross pasts equal step 0's presents, so the mask is the odd one."""
    target = FIXTURES / "optimum-marian"
    run = _record(target, tmp_path / "rec")

    def short_mask(feeds: Feeds) -> None:
        feeds["encoder_attention_mask"] = feeds["encoder_attention_mask"][:, :3]

    assert _check(target, _mutate(run, 2, short_mask, tmp_path / "a")) == [("ODF503", 2, "encoder_attention_mask")]


def test_one_past_with_another_batch_is_blamed_not_the_others(tmp_path: Path) -> None:
    """Among inputs of one rank the majority is the reference: the single odd past is named."""
    target = FIXTURES / "optimum-llama-gqa"
    run = _record(target, tmp_path / "rec")

    def odd_batch(feeds: Feeds) -> None:
        feeds["past_key_values.1.value"] = feeds["past_key_values.1.value"][:1]

    (finding,) = FeedChecker(inspect_path(target)).run(_mutate(run, 1, odd_batch, tmp_path / "b")).findings
    assert (finding.code, finding.location.step, finding.location.name) == ("ODF503", 1, "past_key_values.1.value")
    assert [m["input"] for m in finding.evidence["mismatches"]] == ["past_key_values.1.value"]
