"""Replay oracles (ODX4xx): what must hold at every step of a correct decode.

Declared here; the comparisons and their tolerance envelopes live in `onnxdoctor.numerics`. This
module imports numpy only; the harness runs the models.
"""

from __future__ import annotations

import numpy as np

from onnxdoctor.findings import Rule, Severity, register

STEP_FAILED = register(
    Rule(
        "ODX401",
        "step-failed",
        Severity.ERROR,
        "ONNX Runtime raised at a step of the reference protocol",
        what="Running a step with feeds built exactly by the model's own contract failed in ONNX Runtime.",
        why="If the reference protocol fails, the model itself is broken for that step: no client can succeed.",
        example="Step 1: Reshape node '/layers.0/Reshape' cannot reshape {1,1,48} to the constant {1,3,3,2,8}.",
        fix="Follow the static findings on the same node or input (ODR201, ODA10x); the finding names the node, "
        "the shapes of its inputs and where each bad dim comes from.",
        fix_safety="Depends on the cause; re-export and replay again.",
    )
)

CACHE_DIVERGENCE = register(
    Rule(
        "ODX402",
        "cache-divergence",
        Severity.ERROR,
        "logits from cached decoding differ from an uncached recompute of the same tokens",
        what="At some step the logits of the new tokens, computed with the KV cache, differ from the logits the "
        "model gives when it recomputes the whole sequence without a cache.",
        why="The cache is supposed to be an optimization only; a difference means the cache is built or read "
        "wrongly (wrong concat order, missing layer, wrong positions) and generation silently degrades.",
        example="Step 2 (2 tokens): max |cached - uncached| = 0.08 after Concat(new, past) in layer 0.",
        fix="Look at the ODP3xx findings of the same file; check positions and the concat of every present.",
        fix_safety="Depends on the cause; replay proves the fix.",
    )
)

PRESENT_LENGTH = register(
    Rule(
        "ODX403",
        "present-length-wrong",
        Severity.ERROR,
        "a present's cache length is not past + new at some step",
        what="After a step, a present output's cache-length axis is not the past length plus the new tokens.",
        why="The next step feeds it back; a wrong length drops or duplicates cached tokens, and a later step fails "
        "or decodes garbage. Caught at the step where it happens, not where it explodes.",
        example="Step 1: present.0.key has length 1, expected 4 (3 cached + 1 new): it returns the new K only.",
        fix="The present must be Concat(past, new) on the cache axis (see ODP301).",
        fix_safety="Depends on the cause.",
    )
)

NON_FINITE = register(
    Rule(
        "ODX404",
        "non-finite-output",
        Severity.ERROR,
        "NaN or Inf in logits or presents",
        what="Logits or a present contain NaN or infinite values.",
        why="Sampling from NaN logits is undefined; a NaN in the cache poisons every later step.",
        example="fp16 logits overflow to inf after the final projection.",
        fix="Check fp16 overflow (ODX405), masks filled with -inf on fully masked rows, division by zero in norms.",
        fix_safety="Depends on the cause.",
    )
)

FP16_RANGE = register(
    Rule(
        "ODX405",
        "fp16-range",
        Severity.WARNING,
        "float16 outputs close to the float16 limit (65504)",
        what="A float16 output holds values near 65504, the largest float16.",
        why="Slightly larger inputs overflow to inf; this model is one prompt away from ODX404.",
        example="fp16 logits with max |x| = 61000.",
        fix="Keep the last layers or the I/O in float32 (keep_io_types, op_block_list), or scale down.",
        fix_safety="Changing precision needs a re-export or conversion; verify with replay.",
    )
)

PADDING_DIVERGENCE = register(
    Rule(
        "ODX406",
        "padding-divergence",
        Severity.ERROR,
        "a left-padded row gives other logits than the same row run alone",
        what="With left padding in a batch, a row's logits differ from the logits of the same tokens decoded "
        "alone without padding.",
        why="Batched serving pads prompts; if padding changes results, masks or positions are not applied "
        "consistently (e.g. positions from arange instead of the mask, or a mask the model ignores).",
        example="Row 1 (2 padding tokens) differs by 0.3 at step 0 because position_ids ignore the mask.",
        fix="Compute position_ids from the attention mask; make sure every attention layer reads the mask.",
        fix_safety="Depends on the cause.",
    )
)

LOGITS_INSENSITIVE = register(
    Rule(
        "ODX407",
        "logits-insensitive",
        Severity.WARNING,
        "the logits barely change across positions and tokens",
        what="Over every step and row of the replay, the logits at different positions (different tokens, "
        "different contexts) are nearly the same vector.",
        why="A model whose output no longer depends on its input decodes the same token forever, and it does so "
        "consistently: cached and uncached runs agree, so no other replay check can see it. A static quantization "
        "with a poor calibration (every activation collapsed to one value) or a graph edit that cut the residual "
        "stream does this.",
        example="Position sensitivity 0.0004 (healthy tiny decoders read 0.5 or more): every position predicts the "
        "same distribution.",
        fix="Compare with the unquantized export (`onnxdoctor compare`) or the source model; re-quantize with a "
        "representative calibration set or exclude the layers that collapse.",
        fix_safety="Re-quantizing changes the model; verify against the source.",
    )
)

PRECISION_NOISE = register(
    Rule(
        "ODX408",
        "precision-noise",
        Severity.INFO,
        "cached/uncached or padded/alone runs differ, within the envelope of the model's precision",
        what="Two computations of the same tokens differ by more than float32 rounding but less than the "
        "measured envelope of the regime the graph computes in (fp16, int8 dynamic, static QDQ, ...).",
        why="Reduced precision is a deliberate choice: dynamic int8 computes each activation scale from the tensor "
        "it sees, so a 1-token step and a recompute of the whole sequence, or a padded and an unpadded batch, "
        "round differently. That is noise, not a broken cache; the numbers are shown so you can judge them.",
        example="int8-dynamic: cached vs uncached up to 0.0035 (0.04 x the logits' spread, envelope 0.1), top-1 "
        "agreement 100%.",
        fix="Nothing to fix; to measure what quantization costs against the source, use `onnxdoctor compare`.",
        fix_safety="Not applicable.",
    )
)

FP16_LIMIT = 60000.0


def non_finite_count(values: np.ndarray) -> int:
    if not np.issubdtype(values.dtype, np.floating):
        return 0
    return int(values.size - np.count_nonzero(np.isfinite(values)))
