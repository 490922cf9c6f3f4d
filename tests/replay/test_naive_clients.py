"""The naive clients must be trustworthy recordings before check-feeds is judged on them:
the correct loop reproduces an uncached run, and each mistake shows up at its step."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from naive_clients import (
    DECODER_ONLY_MISTAKES,
    MERGED_MISTAKES,
    PAST_PREFIX,
    SPLIT_MISTAKES,
    ClientRun,
    run_client,
    session,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
GQA = FIXTURES / "optimum-llama-gqa" / "model.onnx"
FP16 = FIXTURES / "optimum-llama-fp16" / "model.onnx"
MERGED = FIXTURES / "optimum-marian-merged" / "decoder_model_merged.onnx"
SPLIT = FIXTURES / "optimum-marian" / "decoder_with_past_model.onnx"  # with decoder_model.onnx beside it
ATOL = {GQA: 1e-4, FP16: 1e-2, MERGED: 1e-4, SPLIT: 1e-4}
STEPS = 3


def _last_logits(run: ClientRun) -> list[np.ndarray]:
    """Logits of the last fed token at every step that ran, in float64 for comparison."""
    return [np.load(f)["logits"][:, -1].astype(np.float64) for f in run.output_files]


def _uncached_last_logits(model: Path, feed_files: list[Path]) -> np.ndarray:
    """Run the whole token history fed so far in one no-cache call: the reference."""
    feeds = [dict(np.load(f)) for f in feed_files]
    ids = np.concatenate([f["input_ids"] for f in feeds], axis=1)
    batch, length = ids.shape
    if model == SPLIT:  # the no-past file of the split export computes the whole sequence
        first = feeds[0]
        inputs = {"encoder_attention_mask": first["encoder_attention_mask"], "encoder_hidden_states": first["encoder_hidden_states"]}
        (logits, *_) = session(model.parent / "decoder_model.onnx").run(None, {"input_ids": ids, **inputs})
        return logits[:, -1].astype(np.float64)
    sess = session(model)
    empty = {
        i.name: np.zeros((batch, i.shape[1], 0, i.shape[3]), feeds[0][i.name].dtype)
        for i in sess.get_inputs()
        if i.name.startswith(PAST_PREFIX)
    }
    if "use_cache_branch" in feeds[0]:
        first = feeds[0]
        inputs = {
            "encoder_attention_mask": first["encoder_attention_mask"],
            "encoder_hidden_states": first["encoder_hidden_states"],
            "use_cache_branch": np.array([False]),
        }
    else:
        inputs = {
            "attention_mask": np.ones((batch, length), np.int64),
            "position_ids": np.tile(np.arange(length), (batch, 1)),
        }
    (logits, *_) = sess.run(None, {"input_ids": ids, **inputs, **empty})
    return logits[:, -1].astype(np.float64)


@pytest.mark.parametrize("model", [GQA, FP16, MERGED, SPLIT], ids=["gqa", "fp16", "merged", "split"])
@pytest.mark.parametrize("batch", [1, 2])
def test_correct_protocol_matches_uncached_run(model: Path, batch: int, tmp_path: Path) -> None:
    run = run_client(model, tmp_path, steps=STEPS, batch=batch)
    assert run.error is None and run.failed_step is None
    assert [f.name for f in run.files] == [f"step{k}.npz" for k in range(STEPS)]
    assert [f.name for f in run.output_files] == [f"step{k}_outputs.npz" for k in range(STEPS)]
    for k, cached in enumerate(_last_logits(run)):
        reference = _uncached_last_logits(model, run.files[: k + 1])
        np.testing.assert_allclose(cached, reference, atol=ATOL[model], err_msg=f"step {k}")


# (model, mistake, step ORT fails at or None when silent, first step whose logits differ or None,
#  fragment of the ORT error)
OUTCOMES = [
    (GQA, "missing_position_ids", 0, None, "Required inputs (['position_ids']) are missing"),
    (FP16, "float32_for_fp16", 0, None, "Unexpected input data type"),
    (GQA, "query_heads_in_past", 0, None, "index: 1 Got: 4 Expected: 2"),
    (GQA, "zero_dummy_past", 0, None, "indices element out of data bounds"),
    (GQA, "zero_dummy_past_masked_wrong", None, 0, None),
    (GQA, "mask_not_grown", 1, None, "indices element out of data bounds"),
    (GQA, "positions_restart", None, 1, None),
    (GQA, "stale_past", None, 2, None),
    (MERGED, "cache_branch_true_at_step0", 1, 0, "MatMul dimension mismatch"),
    (MERGED, "cache_branch_true_with_dummy_pasts", 1, 0, "MatMul dimension mismatch"),
    (MERGED, "placeholders_fed_back", 2, None, "MatMul dimension mismatch"),
    (MERGED, "stale_past", None, 2, None),
    (SPLIT, "with_past_at_step0", None, 0, None),
]


def test_every_mistake_has_an_outcome() -> None:
    kind = {MERGED: "merged", SPLIT: "split"}
    assert {(kind.get(m, "decoder-only"), k) for m, k, *_ in OUTCOMES} == {
        *(("decoder-only", k) for k in DECODER_ONLY_MISTAKES),
        *(("merged", k) for k in MERGED_MISTAKES),
        *(("split", k) for k in SPLIT_MISTAKES),
    }


@pytest.mark.parametrize(
    ("model", "mistake", "failed_step", "first_deviation", "message"),
    OUTCOMES,
    ids=[f"{m.parent.name}-{k}" for m, k, *_ in OUTCOMES],
)
def test_mistake_outcome(
    model: Path,
    mistake: str,
    failed_step: int | None,
    first_deviation: int | None,
    message: str | None,
    tmp_path: Path,
) -> None:
    run = run_client(model, tmp_path / "bad", mistake, steps=STEPS)
    correct = run_client(model, tmp_path / "good", steps=STEPS)
    assert run.failed_step == failed_step
    ran = STEPS if failed_step is None else failed_step
    assert [f.name for f in run.files] == [f"step{k}.npz" for k in range(min(STEPS, ran + 1))]
    assert all(f.is_file() for f in run.files + run.output_files)
    assert len(run.output_files) == ran
    if message is None:
        assert run.error is None
    else:
        assert run.error is not None and message in run.error
    # Until the bug bites the loop is the correct one, bit for bit; then the logits move.
    for k, (bad, good) in enumerate(zip(_last_logits(run), _last_logits(correct))):
        if first_deviation is None or k < first_deviation:
            np.testing.assert_array_equal(bad, good, err_msg=f"step {k}")
        else:
            assert not np.array_equal(bad, good), f"step {k} unchanged"


@pytest.mark.parametrize(
    ("model", "mistake"),
    [
        (MERGED, "missing_position_ids"),
        (GQA, "cache_branch_true_at_step0"),
        (GQA, "float32_for_fp16"),
        (MERGED, "query_heads_in_past"),
        (SPLIT, "stale_past"),
        (GQA, "with_past_at_step0"),
    ],
)
def test_mistake_that_cannot_happen_on_this_model_is_refused(
    model: Path, mistake: str, tmp_path: Path
) -> None:
    """A keyword silently ignored would record a correct run under a mistake's name."""
    with pytest.raises(ValueError):
        run_client(model, tmp_path, mistake)
