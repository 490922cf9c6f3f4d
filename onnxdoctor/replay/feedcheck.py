"""check-feeds (ODF5xx): what a client fed at each step, checked against the contract, then replayed.

A Rust / C# / JS client dumps its feeds per step (input name -> array, as `.npz`, JSON, safetensors,
a folder of `.npy` or ONNX test data: replay/dumps.py reads them all). Each step is
checked in order (names, dtypes, shapes, then the cache semantics: empty past at step 0, mask =
past + new, positions from the mask, the merged switch, placeholders, past = previous present) and
run in ONNX Runtime; the report stops at the first step that deviates, since later steps only
inherit the damage.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from onnxdoctor import __version__
from onnxdoctor.engine import InspectReport
from onnxdoctor.errors import UnusableInputError, UsageError
from onnxdoctor.findings import Finding, Location, Rule, Severity, earliest_error, register, sort_findings
from onnxdoctor.model import roles
from onnxdoctor.model.signature import CachePair, Signature
from onnxdoctor.numerics.envelope import STRICT, Envelope, envelope_for, same_values
from onnxdoctor.replay import dumps, oracles
from onnxdoctor.replay.protocol import Mismatch, declaration_mismatches, positions_from_mask
from onnxdoctor.driver.backend import OrtBackend

_CLIENT_FIX = "Follow the contract printed by `onnxdoctor contract PATH` for this input at this step."

MISSING_INPUT = register(
    Rule(
        "ODF501", "missing-input", Severity.ERROR, "a required input is not fed (or an unknown one is)",
        what="The client's feeds at a step lack an input the model declares, or carry a name the model does not have.",
        why="ORT rejects the call ('Required inputs ... are missing'); a misspelled name is silently ignored by some bindings.",
        example="position_ids omitted: the client only feeds input_ids, attention_mask and the pasts.",
        fix=_CLIENT_FIX, fix_safety="Client-side change only.",
    )
)
WRONG_DTYPE = register(
    Rule(
        "ODF502", "wrong-dtype", Severity.ERROR, "an input fed with another dtype than declared",
        what="A feed's element type differs from the model's declared input type.",
        why="ORT rejects it ('Unexpected input data type. Actual: (tensor(float)), expected: (tensor(float16))') and does not say which input.",
        example="float32 zeros fed as past_key_values.0.key of a float16 model.",
        fix=_CLIENT_FIX, fix_safety="Client-side change only.",
    )
)
WRONG_SHAPE = register(
    Rule(
        "ODF503", "wrong-shape", Severity.ERROR, "an input fed with the wrong rank or a wrong fixed dim (e.g. query heads for kv heads)",
        what="A feed's rank or a fixed dim (heads, head_dim, hidden) differs from the declaration, or batch sizes disagree between inputs.",
        why="ORT rejects it ('Got invalid dimensions for input ... index: 1 Got: 4 Expected: 2'), naming only one input.",
        example="An empty past built with num_attention_heads (4) instead of num_key_value_heads (2) for a GQA model.",
        fix=_CLIENT_FIX + " Cache tensors use the KV head count, not the query head count.", fix_safety="Client-side change only.",
    )
)
DUMMY_PAST = register(
    Rule(
        "ODF504", "non-empty-dummy-past", Severity.ERROR, "a zero-filled dummy past of length > 0 at step 0 that the mask does not hide",
        what="At step 0 the client feeds a past of length > 0 (usually zeros, as a workaround for empty tensors) and the attention mask does not mask those positions out.",
        why="Attention attends to the fake zero keys: every logit is silently shifted, or the mask/position arithmetic fails later.",
        example="past_key_values.*.key zeros of shape [1, 2, 1, 8] at step 0 with attention_mask [[1, 1, 1, 1]].",
        fix="Feed an empty past (cache length 0) at step 0; ORT accepts 0-sized tensors. If a binding cannot, mask the dummy positions with 0.",
        fix_safety="Client-side change only.",
    )
)
MASK_LENGTH = register(
    Rule(
        "ODF505", "mask-length", Severity.ERROR, "attention_mask length != past length + new tokens",
        what="The attention mask does not cover exactly the cached tokens plus the tokens fed at this step.",
        why="Masks are broadcast against the attention scores: a wrong length fails in a Gather/Add node or silently masks the wrong tokens.",
        example="Step 1 with a past of 3 and 1 new token but attention_mask still of length 3.",
        fix="Append a 1 to the mask for every new token; its length is past + new.", fix_safety="Client-side change only.",
    )
)
POSITIONS = register(
    Rule(
        "ODF506", "position-ids", Severity.ERROR, "position_ids inconsistent with the attention mask",
        what="position_ids of the new tokens are not cumsum(attention_mask) - 1 at those positions.",
        why="Nothing fails; rotary/learned position embeddings are applied at the wrong positions and the output silently degrades.",
        example="Step 3 feeds position_ids [[0]] (restarted) instead of [[5]].",
        fix="position_ids = cumsum(attention_mask) - 1 for the new tokens (the previous last position + 1 per row).",
        fix_safety="Client-side change only.",
    )
)
CACHE_BRANCH = register(
    Rule(
        "ODF507", "cache-branch-misuse", Severity.ERROR, "use_cache_branch True with a dummy past, or False after step 0",
        what="A merged decoder's use_cache_branch is True where no present came before (step 0, whatever dummy pasts are fed), or False once there is a cache. "
        "True at step 0 is reported first, as the root cause of the wrong pasts it goes with (ODF503/ODF504 marked caused_by ODF507).",
        why="True at step 0 runs the cache branch on empty or dummy encoder K/V and returns placeholders, which the next step feeds back (ODF508); False later recomputes from the new tokens only and forgets the past.",
        example="use_cache_branch=[True] at step 0 with 0-length pasts.",
        fix="Step 0: use_cache_branch=[False] with empty dummies; every later step: [True] with the previous presents.",
        fix_safety="Client-side change only.",
    )
)
PLACEHOLDER_FED_BACK = register(
    Rule(
        "ODF508", "placeholder-fed-back", Severity.ERROR, "cross-attention placeholders fed back as past",
        what="The cross-attention past fed at a step is the 0-sized placeholder a merged decoder's cache branch returns, not step 0's encoder K/V.",
        why="Cross attention then has no keys: the next step fails in a MatMul or decodes without the source.",
        example="past_key_values.0.encoder.key of shape (0, 2, 1, 8) at step 2.",
        fix="Keep the cross-attention presents returned at step 0 and feed those at every later step.",
        fix_safety="Client-side change only.",
    )
)
STALE_PAST = register(
    Rule(
        "ODF509", "stale-past", Severity.ERROR, "the past at step n is not the present of step n-1",
        what="A past input at step n differs from the matching present the model returned at step n-1.",
        why="The cache no longer matches the tokens: output is silently wrong (or lengths stop adding up).",
        example="Step 2 feeds the presents of step 0 again.",
        fix="Feed each present output of step n-1 to the past input of the same layer/part at step n.",
        fix_safety="Client-side change only.",
    )
)


TOKEN_RANGE = register(
    Rule(
        "ODF510", "token-out-of-range", Severity.ERROR, "a token id outside the model's vocabulary",
        what="input_ids holds an id below 0 or at least the vocabulary size (the logits' last dim).",
        why="The embedding Gather fails ('indices element out of data bounds'), which reads like a model bug; the cause is the tokenizer or the sampling code.",
        example="id 32000 fed to a model whose logits have 32000 entries (ids 0..31999).",
        fix="Use the tokenizer the model was trained with; sample ids from the logits' own range.",
        fix_safety="Client-side change only.",
    )
)
MASK_NOT_CARRIED = register(
    Rule(
        "ODF511", "mask-not-carried", Severity.ERROR, "the attention mask does not carry the previous step's mask, or masks the new tokens",
        what="At step n the mask's first part is not the mask fed at step n-1 (left-padding zeros lost or changed), or the new tokens are masked with 0.",
        why="Nothing fails: attention silently reads padding or ignores the token just fed, and outputs drift.",
        example="Row 1 was [0, 0, 1] at step 0 and became [1, 1, 1, 1] at step 1.",
        fix="At every step append 1 for each new token to the previous mask; never rebuild it.",
        fix_safety="Client-side change only.",
    )
)
FED_TWICE = register(
    Rule(
        "ODF512", "tokens-fed-twice", Severity.ERROR, "tokens already in the cache fed again as new tokens",
        what="input_ids at step n starts with the tokens fed before, while the past already holds them.",
        why="Every earlier token is attended twice: the output silently drifts, or shapes stop adding up.",
        example="Step 1 feeds the 3 prompt tokens again plus the new one, with the 3-token past of step 0.",
        fix="With a past, feed only the new tokens; or feed the whole sequence with an empty past (no cache).",
        fix_safety="Client-side change only.",
    )
)
CACHE_DROPPED = register(
    Rule(
        "ODF513", "cache-dropped", Severity.ERROR, "a step after step 0 runs the decoder without past inputs on the new tokens only",
        what="After step 0, the client runs the file that takes no past (optimum decoder_model.onnx) with only the new tokens.",
        why="The model sees only the new tokens and forgets the sequence: silently wrong output.",
        example="Marian: decoder_model.onnx at every step with one token instead of decoder_with_past_model.onnx.",
        fix="Run the with-past decoder at step n with step n-1's presents, or feed the whole sequence to the no-past file.",
        fix_safety="Client-side change only.",
    )
)

WITH_PAST_AT_STEP0 = register(
    Rule(
        "ODF514", "with-past-file-at-step-0", Severity.ERROR,
        "step 0 of a split seq2seq export runs the with-past decoder on made-up (zero) pasts",
        what="At the first step the client runs decoder_with_past_model.onnx, whose cross-attention pasts can only "
        "come from the step-0 file's presents, and feeds zero-filled pasts instead: no present exists yet.",
        why="Cross attention reads zero keys and values instead of the encoder's, and the zero decoder past is "
        "attended as a real token: every logit is wrong from step 0 on, and nothing fails.",
        example="Marian: decoder_with_past_model.onnx at step 0 with past_key_values.*.decoder.* zeros of length 1 "
        "and past_key_values.*.encoder.* zeros of the encoder length.",
        fix="Run decoder_model.onnx (the file that takes encoder_hidden_states and returns the cross-attention "
        "presents) at step 0; keep its encoder presents for every later step and feed its decoder presents to "
        "decoder_with_past_model.onnx from step 1 on.",
        fix_safety="Client-side change only.",
    )
)


@dataclass
class _History:
    """What a correct client carries between steps, as seen in the recorded feeds and outputs."""

    outputs: dict[str, np.ndarray] | None = None
    signature: Signature | None = None
    cross_at_step0: dict[tuple[int, str], np.ndarray] = field(default_factory=dict)
    tokens: np.ndarray | None = None  # every token the model has been fed, in order
    mask: np.ndarray | None = None  # the last attention mask fed

    @property
    def seen(self) -> int:
        return 0 if self.tokens is None else int(self.tokens.shape[1])


@dataclass
class StepCheck:
    step: int
    file: str
    path: Path
    feeds: dict[str, list[int]]
    verdict: str = "ok"


@dataclass
class FeedReport:
    path: str
    steps: list[StepCheck] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if any(f.severity is Severity.ERROR for f in self.findings) else 0

    def verdict(self) -> str:
        first = earliest_error(self.findings)
        if first is None:
            return f"The {len(self.steps)} recorded steps follow the contract and run: the feeds are right."
        caused = [f for f in self.findings if f.evidence.get("caused_by") == first.code and f.location.step == first.location.step]
        also = (
            f"; it also makes {', '.join(sorted({str(f.location.name) for f in caused}))} wrong "
            f"({', '.join(sorted({f.code for f in caused}))})"
            if caused
            else ""
        )
        return f"First deviation at step {first.location.step}: {first.code} {first.name} ({first.location.name}){also}."

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": 1,
            "tool": {"name": "onnxdoctor", "version": __version__},
            "command": "check-feeds",
            "path": self.path,
            "steps": [{"step": s.step, "file": s.file, "feeds": s.feeds, "verdict": s.verdict, "source": str(s.path)} for s in self.steps],
            "summary": {s.value: sum(1 for f in self.findings if f.severity is s) for s in Severity},
            "verdict": self.verdict(),
            "findings": [f.to_dict() for f in self.findings],
        }


def _causes_first(findings: list[Finding]) -> list[Finding]:
    """A root cause before the findings it explains (evidence `caused_by`), each group in report order."""
    return sorted(findings, key=lambda f: (f.severity.rank, "caused_by" in f.evidence))


def _linked(findings: list[Finding], cause: Finding) -> list[Finding]:
    """Mark findings as consequences of `cause`: the client fixes the cause, and these go away with it."""
    return [
        Finding(f.code, f.name, f.severity, f"{f.message} (a consequence of {cause.code} at step {cause.location.step})", f.location,
                {**f.evidence, "caused_by": cause.code}, f.fix, f.remedy)
        for f in findings
    ]


def load_feeds(path: Path, names: Sequence[Sequence[str]] = ()) -> dict[str, np.ndarray]:
    """One step's feeds from any dump a client can write (see replay/dumps.py); the format is detected."""
    return dumps.read_dump(path, names)


def _recorded_outputs(feeds_path: Path, names: Sequence[Sequence[str]] = ()) -> dict[str, np.ndarray] | None:
    """What the client got at that step, if it saved it (`stepK_outputs.EXT`, or output_N.pb in a test-data folder)."""
    candidate = dumps.outputs_of(feeds_path)
    return dumps.read_dump(candidate, names, outputs=True) if candidate is not None else None


def _cache_text(pair: CachePair) -> str:
    """"layer 0's cross-attention key": how a feed finding names the cache tensor it is about."""
    part = "key+value" if pair.part in ("kv", "stacked") else pair.part
    return f"layer {pair.layer}'s {pair.attention}-attention {part}"


def _sibling_signature(path: Path) -> Signature | None:
    """The signature of a decoder file next to the checked one (no weights read), or None if it is unusable."""
    from onnxdoctor.model.load import load
    from onnxdoctor.model.signature import build_signature

    try:
        return build_signature(load(path).files[0])
    except Exception:  # noqa: BLE001 - a hint only; the checked file's own findings stand without it
        return None


def _same_as(value: np.ndarray, candidates: dict[Any, np.ndarray], envelope: Envelope) -> Any:
    """Which other cache tensor `value` equals (within the file's envelope), if any: tells a swap from a stale or made-up past."""
    for key, other in candidates.items():
        if same_values(value, other.astype(value.dtype), envelope):
            return key
    return None


def _pick_file(decoders: list[Signature], feeds: dict[str, np.ndarray], step: int) -> Signature:
    """The decoder file these feeds are for: the one whose inputs they match best."""
    def score(sig: Signature) -> tuple[int, int, bool]:
        names = {t.name for t in sig.inputs}
        has_past = sig.kv is not None and sig.kv.mode != "no_past"
        return (len(names & set(feeds)), -len(names - set(feeds)), has_past == (step > 0))

    return max(decoders, key=score)


class FeedChecker:
    def __init__(self, report: InspectReport, provider: str = "cpu", progress: Callable[[str], None] | None = None) -> None:
        self.report = report
        self.backend = OrtBackend({r.signature.file: r.model_file.path for r in report.files}, provider)
        self.progress = progress or (lambda _m: None)
        self.paths = {r.signature.file: r.model_file.path for r in self.report.files}
        self.decoders = [r.signature for r in report.files if r.signature.kind == "decoder"]
        self._batches: dict[str, int] = {}
        if not self.decoders:
            raise UsageError(f"no decoder in {report.path}: check-feeds needs the decoder the client runs")

    def run(self, step_files: list[Path]) -> FeedReport:
        result = FeedReport(self.report.path)
        history = _History()
        for step, path in enumerate(dumps.expand_steps(step_files)):
            feeds = load_feeds(path, self._input_orders(step))
            sig = _pick_file(self.decoders, feeds, step)
            self.progress(f"step {step}: {path.name} -> {sig.file}")
            record = StepCheck(step, sig.file, path, {k: list(v.shape) for k, v in feeds.items()})
            result.steps.append(record)
            findings = self._check_step(sig, feeds, step, history)
            outputs = None
            if not findings:  # only feeds that follow the contract are worth running
                outputs, failure = self._run(sig, feeds, step)
                if failure is not None:
                    findings.append(failure)
            if findings:
                record.verdict = "deviates"
                result.findings = _causes_first(sort_findings(findings))
                return result
            assert outputs is not None
            # what the client really got, when it saved it
            outputs = _recorded_outputs(path, [[t.name for t in sig.outputs]]) or outputs
            self._remember(sig, feeds, outputs, step, history)
        return result

    def _input_orders(self, step: int) -> list[list[str]]:
        """Input names of each decoder in declaration order, the likelier file for this step first (names unnamed TensorProtos)."""
        def has_past(sig: Signature) -> bool:
            return sig.kv is not None and sig.kv.mode != "no_past"

        ordered = sorted(self.decoders, key=lambda sig: has_past(sig) != (step > 0))
        return [[t.name for t in sig.inputs] for sig in ordered]

    def _remember(self, sig: Signature, feeds: dict[str, np.ndarray], outputs: dict[str, np.ndarray], step: int, history: _History) -> None:
        if sig.kv is not None:
            for pair in sig.kv.cross_pairs():
                if step == 0 and pair.present is not None and pair.present.name in outputs:
                    history.cross_at_step0[(pair.layer, pair.part)] = outputs[pair.present.name]
        ids = sig.input(roles.INPUT_IDS)
        if ids is not None and feeds[ids.name].ndim == 2:
            fed = feeds[ids.name].astype(np.int64)
            if self._recomputes(sig, feeds, history) or history.tokens is None or self._past_len(sig, feeds) == 0:
                history.tokens = fed
            else:
                history.tokens = np.concatenate([history.tokens, fed], axis=1)
        mask = sig.input(roles.ATTENTION_MASK)
        history.mask = feeds[mask.name] if mask is not None else None
        history.outputs, history.signature = outputs, sig

    @staticmethod
    def _past_len(sig: Signature, feeds: dict[str, np.ndarray]) -> int:
        if sig.kv is None:
            return 0
        lengths = [
            int(feeds[p.past.name].shape[p.axes.cache])
            for p in sig.kv.self_pairs()
            if p.past is not None and p.axes is not None and p.past.name in feeds and feeds[p.past.name].ndim > p.axes.cache
        ]
        return max(lengths) if lengths else 0

    def _recomputes(self, sig: Signature, feeds: dict[str, np.ndarray], history: _History) -> bool:
        """No-cache decoding: an empty past and the whole sequence so far fed again (valid, just slower)."""
        ids = sig.input(roles.INPUT_IDS)
        if ids is None or history.tokens is None or self._past_len(sig, feeds) != 0:
            return False
        fed = feeds[ids.name]
        seen = history.seen
        return fed.ndim == 2 and fed.shape[1] > seen and np.array_equal(fed[:, :seen], history.tokens[: fed.shape[0], :seen])

    # ------------------------------------------------------------------ checks

    def _at(self, sig: Signature, name: str | None, step: int, axis: int | None = None) -> Location:
        return Location(sig.file, "feed", name, axis, step)

    def _check_step(self, sig: Signature, feeds: dict[str, np.ndarray], step: int, history: _History) -> list[Finding]:
        findings = self._check_io(sig, feeds, step)
        if findings:
            return findings
        findings += self._check_tokens(sig, feeds, step)
        if findings:
            return findings
        root = self._check_first_cache_branch(sig, feeds, step, history)
        if root is not None:
            return [root, *_linked(self._consequences_of_cache_branch(sig, feeds, step), root)]
        ids = sig.input(roles.INPUT_IDS)
        if step > 0 and ids is not None and history.tokens is not None and self._past_len(sig, feeds) > 0:
            findings += self._check_fed_twice(sig, feeds[ids.name], step, history)  # explains the shape mismatches it causes
        findings = findings or self._check_shared_dims(sig, feeds, step, self._batches, self._proven(sig, feeds, history))
        if findings:
            return findings
        kv = sig.kv
        recompute = step > 0 and self._recomputes(sig, feeds, history)
        new = int(feeds[ids.name].shape[1]) if ids is not None and feeds[ids.name].ndim > 1 else 1
        if kv is not None and kv.mode == "no_past" and step > 0 and not recompute:
            return [
                CACHE_DROPPED.finding(
                    f"step {step}: {sig.file} takes no past, and it was fed {new} new token(s) after {history.seen} "
                    "already decoded: the cache from the previous step is dropped",
                    self._at(sig, ids.name if ids else None, step),
                    evidence={"file": sig.file, "new_tokens": new, "decoded_before": history.seen},
                )
            ]
        if kv is None:
            return findings
        if step == 0 and history.outputs is None:
            findings += self._check_with_past_at_step0(sig, feeds)
            if findings:
                return findings
        switch = sig.input(roles.USE_CACHE_BRANCH)
        use_cache = bool(feeds[switch.name].reshape(-1)[0]) if switch is not None else True
        self_pairs = [p for p in kv.self_pairs() if p.past is not None and p.axes is not None]
        past_len = self._past_len(sig, feeds)
        mask_tensor = sig.input(roles.ATTENTION_MASK)
        mask = feeds[mask_tensor.name] if mask_tensor is not None else None
        if switch is not None and not recompute:
            findings += self._check_switch(sig, switch.name, use_cache, past_len, step)  # False after step 0
        findings += self._check_cross(sig, feeds, step, use_cache, history.cross_at_step0)
        if step > 0 and not recompute and history.outputs is not None and history.signature is not None and use_cache:
            findings += self._check_stale(sig, feeds, step, history.outputs, history.signature)
        effective_past = past_len if use_cache else 0
        if step == 0 and past_len > 0 and use_cache and mask is not None:
            findings += self._check_dummy(sig, feeds, self_pairs, past_len, new, mask, step)
        if mask is not None and mask_tensor is not None and not findings:
            if mask.shape[1] != effective_past + new:
                findings.append(
                    MASK_LENGTH.finding(
                        f"step {step}: {mask_tensor.name} has length {mask.shape[1]}, expected {effective_past + new} "
                        f"({effective_past} cached + {new} new)",
                        self._at(sig, mask_tensor.name, step, 1),
                        evidence={"observed": int(mask.shape[1]), "expected": effective_past + new, "past_len": effective_past, "new_tokens": new},
                    )
                )
            elif step > 0 and not recompute:
                findings += self._check_mask_carried(sig, mask_tensor.name, mask, new, step, history)
        positions = sig.input(roles.POSITION_IDS)
        if positions is not None and mask is not None and not findings and mask.shape[1] >= new:
            expected = positions_from_mask(mask)[:, -new:]
            fed = feeds[positions.name].astype(np.int64)
            real = mask[:, -new:] != 0
            if fed.shape == expected.shape and not np.array_equal(fed[real], expected[real]):
                findings.append(
                    POSITIONS.finding(
                        f"step {step}: {positions.name} = {fed.tolist()} but the mask implies {expected.tolist()} "
                        "(cumsum(attention_mask) - 1 for the new tokens)",
                        self._at(sig, positions.name, step),
                        evidence={"observed": fed.tolist(), "expected": expected.tolist()},
                    )
                )
        return findings

    def _other_file_hint(self, sig: Signature, feeds: dict[str, np.ndarray], step: int) -> tuple[str, str | None]:
        """Step-0 feeds of a split seq2seq export checked against the with-past file alone: name their file."""
        kv = sig.kv
        if step != 0 or kv is None or kv.mode != "with_past" or not kv.cross_pairs():
            return "", None
        step0_name, step0_sig = self._step0_file(sig)
        if step0_sig is None or not set(feeds) <= {t.name for t in step0_sig.inputs}:
            return "", None
        return (
            f": these are the step-0 feeds of {step0_name}",
            "Give check-feeds the export folder (or every decoder file) so each step is checked against the file it ran.",
        )

    def _step0_file(self, sig: Signature) -> tuple[str, Signature | None]:
        """The split export's step-0 decoder: in the checked bundle, else optimum's decoder_model.onnx beside `sig`."""
        for other in self.decoders:
            if other.kv is not None and other.kv.mode == "no_past" and other.input(roles.ENCODER_HIDDEN_STATES) is not None:
                return other.file, other
        sibling = Path(self.paths[sig.file]).with_name("decoder_model.onnx")
        if sibling.is_file() and sibling != Path(self.paths[sig.file]):
            return f"{sibling.name} (next to {Path(sig.file).name}, not given to check-feeds)", _sibling_signature(sibling)
        return "the export's decoder without past inputs (optimum: decoder_model.onnx)", None

    def _check_with_past_at_step0(self, sig: Signature, feeds: dict[str, np.ndarray]) -> list[Finding]:
        """A split seq2seq with-past file at the first step: its cross pasts can only be the step-0 file's presents.

        Encoder keys and values are never all zero, so all-zero cross pasts at the first recorded step are made
        up, not carried: the dumps alone show it, with or without the step-0 file on the command line.
        """
        kv = sig.kv
        assert kv is not None
        if kv.mode != "with_past" or sig.input(roles.ENCODER_HIDDEN_STATES) is not None:
            return []
        cross = [p for p in kv.cross_pairs() if p.past is not None and p.past.name in feeds]
        if not cross or any(np.any(feeds[p.past.name]) for p in cross):  # type: ignore[union-attr]
            return []
        own = [p for p in kv.self_pairs() if p.past is not None and p.past.name in feeds]
        step0_name, step0_sig = self._step0_file(sig)
        first = min(cross, key=lambda p: (p.layer, p.part != "key"))
        assert first.past is not None
        kept = self._step0_present(first, step0_sig)
        self_text = ""
        if own:
            lengths = sorted({int(feeds[p.past.name].shape[p.axes.cache]) for p in own if p.past is not None and p.axes is not None})  # type: ignore[union-attr]
            zero = all(not np.any(feeds[p.past.name]) for p in own)  # type: ignore[union-attr]
            self_text = (
                f"; the {len(own)} decoder self-attention pasts have cache length {', '.join(map(str, lengths))}"
                f"{' (zeros)' if zero else ''}"
            )
        file_name = Path(sig.file).name
        return [
            WITH_PAST_AT_STEP0.finding(
                f"step 0: {file_name} ran at the first step, with no previous present to feed it: its pasts are "
                f"zeros, not any present ({first.past.name}, layer {first.layer}'s cross-attention {first.part}, "
                f"{list(feeds[first.past.name].shape)} all zero, like the other {len(cross) - 1} cross-attention "
                f"pasts{self_text}). Cross attention reads zeros instead of the encoder's keys and values, so every "
                f"logit is wrong; step 0 runs {step0_name}, which takes encoder_hidden_states and returns the "
                "cross-attention presents",
                self._at(sig, first.past.name, 0),
                evidence={
                    "file": sig.file,
                    "step0_file": step0_name,
                    "zero_cross_pasts": [p.past.name for p in cross if p.past is not None],
                    "self_pasts": {p.past.name: list(feeds[p.past.name].shape) for p in own if p.past is not None},
                    "expected": kept,
                },
                fix=f"Run {step0_name.split(' ')[0]} at step 0 on input_ids, encoder_hidden_states and "
                f"encoder_attention_mask; feed {first.past.name} (layer {first.layer}) with its {kept} at every "
                f"later step, and its decoder presents as the pasts of step 1, the first step of {file_name}.",
            )
        ]

    @staticmethod
    def _step0_present(pair: CachePair, step0_sig: Signature | None) -> str:
        """The step-0 file's present that this cross past must carry."""
        if step0_sig is not None and step0_sig.kv is not None:
            for other in step0_sig.kv.pairs:
                if other.present is not None and (other.layer, other.attention, other.part) == (pair.layer, pair.attention, pair.part):
                    return other.present.name
        return f"layer {pair.layer} cross-attention {pair.part} present"

    def _check_tokens(self, sig: Signature, feeds: dict[str, np.ndarray], step: int) -> list[Finding]:
        ids = sig.input(roles.INPUT_IDS)
        logits = sig.output(roles.LOGITS)
        vocab = logits.dims[-1].value if logits is not None and logits.dims and logits.dims[-1].is_static else None
        if ids is None or vocab is None or feeds[ids.name].size == 0:
            return []
        fed = feeds[ids.name]
        low, high = int(fed.min()), int(fed.max())
        if 0 <= low and high < vocab:
            return []
        bad = high if high >= vocab else low
        return [
            TOKEN_RANGE.finding(
                f"step {step}: {ids.name} holds id {bad}, outside the vocabulary 0..{vocab - 1} (the logits' last dim)",
                self._at(sig, ids.name, step),
                evidence={"observed": bad, "vocab": int(vocab)},
            )
        ]

    def _check_mask_carried(self, sig: Signature, name: str, mask: np.ndarray, new: int, step: int, history: _History) -> list[Finding]:
        if (mask[:, -new:] == 0).any():
            rows = sorted({int(r) for r in np.nonzero((mask[:, -new:] == 0).any(axis=1))[0]})
            return [
                MASK_NOT_CARRIED.finding(
                    f"step {step}: {name} masks the {new} token(s) fed at this step with 0 (rows {rows}): they must be attended (1)",
                    self._at(sig, name, step, 1),
                    evidence={"new_tokens_mask": mask[:, -new:].tolist()},
                )
            ]
        previous = history.mask
        if previous is None or previous.shape[0] != mask.shape[0] or previous.shape[1] != mask.shape[1] - new:
            return []
        if not np.array_equal(mask[:, :-new], previous):
            rows = sorted({int(r) for r in np.nonzero((mask[:, :-new] != previous).any(axis=1))[0]})
            return [
                MASK_NOT_CARRIED.finding(
                    f"step {step}: {name} does not start with the mask fed at step {step - 1} (rows {rows} differ): "
                    "left-padding zeros must stay 0 at every step",
                    self._at(sig, name, step, 1),
                    evidence={"previous": previous.tolist(), "observed": mask[:, :-new].tolist()},
                )
            ]
        return []

    def _check_fed_twice(self, sig: Signature, fed: np.ndarray, step: int, history: _History) -> list[Finding]:
        seen = history.seen
        assert history.tokens is not None
        if fed.ndim != 2 or fed.shape[1] <= seen or not np.array_equal(fed[:, :seen], history.tokens[: fed.shape[0], :seen]):
            return []
        name = sig.input(roles.INPUT_IDS).name  # type: ignore[union-attr]
        return [
            FED_TWICE.finding(
                f"step {step}: {name} starts with the {seen} tokens fed before ({fed.shape[1]} fed in all) while the past "
                "already holds them: feed only the new tokens with a past",
                self._at(sig, name, step, 1),
                evidence={"fed": int(fed.shape[1]), "already_cached": seen},
            )
        ]

    def _check_io(self, sig: Signature, feeds: dict[str, np.ndarray], step: int) -> list[Finding]:
        findings = []
        declared = {t.name: t for t in sig.inputs}
        missing = [name for name in declared if name not in feeds]
        unknown = [name for name in feeds if name not in declared]
        if missing or unknown:
            hint, fix = self._other_file_hint(sig, feeds, step) if unknown else ("", None)
            findings.append(
                MISSING_INPUT.finding(
                    f"step {step}: " + "; ".join(
                        part for part in (
                            f"missing {', '.join(missing)}" if missing else "",
                            f"not an input of {sig.file}: {', '.join(unknown)}" if unknown else "",
                        ) if part
                    ) + hint,
                    self._at(sig, (missing or unknown)[0], step),
                    evidence={"missing": missing, "unknown": unknown, "declared": sorted(declared)},
                    fix=fix,
                )
            )
        batches: dict[str, int] = {}
        for name, value in feeds.items():
            tensor = declared.get(name)
            if tensor is None:
                continue
            mismatches = declaration_mismatches(tensor, value)
            pair = self._pair_of(sig, name)
            for found in mismatches:
                findings.append(self._declaration_finding(sig, name, value, found, pair, step))
            if mismatches and mismatches[0].kind != "dim":
                continue
            if tensor.dims is None:
                continue
            batch_axis = 0
            if pair is not None and pair.axes is not None:
                batch_axis = pair.axes.batch
            if tensor.role not in (roles.USE_CACHE_BRANCH, roles.CACHE_POSITION) and value.ndim > batch_axis:
                if not (pair is not None and pair.attention == "cross" and value.shape[batch_axis] == 0):
                    batches[name] = int(value.shape[batch_axis])
        self._batches = batches
        return findings

    def _declaration_finding(
        self, sig: Signature, name: str, value: np.ndarray, found: Mismatch, pair: CachePair | None, step: int
    ) -> Finding:
        label = f" ({_cache_text(pair)})" if pair is not None else ""
        if found.kind == "dtype":
            return WRONG_DTYPE.finding(
                f"step {step}: {name}{label} fed as {found.observed}, the model declares {found.expected}",
                self._at(sig, name, step),
                evidence={"observed": found.observed, "expected": found.expected},
                fix=f"Feed {name} as {found.expected}"
                + (" (build the empty past of step 0 in that dtype, and feed the presents back without casting)." if pair else "."),
            )
        if found.kind == "rank":
            return WRONG_SHAPE.finding(
                f"step {step}: {name}{label} has rank {value.ndim} {found.observed}, the model declares rank {len(found.expected)}",
                self._at(sig, name, step),
                evidence={"observed": found.observed, "expected": found.expected},
                fix=f"Feed {name} with rank {len(found.expected)} as the contract shows (`onnxdoctor contract PATH`).",
            )
        hint = ""
        heads = pair is not None and pair.axes is not None and found.axis == pair.axes.heads
        if heads and found.expected and found.observed % found.expected == 0:
            hint = " (the query head count? cache tensors carry the KV heads)"
        fix = f"Feed {name} with {found.expected} on axis {found.axis}, as the model declares"
        if heads:
            fix += f": {_cache_text(pair)} cache has {found.expected} KV heads (num_key_value_heads), not the query head count"  # type: ignore[arg-type]
        return WRONG_SHAPE.finding(
            f"step {step}: {name}{label} axis {found.axis} is {found.observed}, the model declares {found.expected}{hint}",
            self._at(sig, name, step, found.axis),
            evidence={"observed": found.observed, "expected": found.expected, "shape": list(value.shape)},
            fix=fix + ".",
        )

    def _check_shared_dims(
        self, sig: Signature, feeds: dict[str, np.ndarray], step: int, batches: dict[str, int], proven: frozenset[str] = frozenset()
    ) -> list[Finding]:
        """Inputs sharing a dim (one symbol, or the batch role) must agree; the ones that disagree with the reference are named.

        The reference is what the client cannot get wrong without everything else failing first: the
        tokens, then the encoder's output and its mask, then the decoder mask; a cache is the reference
        only where it is exactly what the model returned (`proven`), else it is the suspect. Among
        inputs of the same rank the majority wins. ORT does not enforce any of this: a mask of the
        wrong length is broadcast or fails deep in a node.
        """
        switch = sig.input(roles.USE_CACHE_BRANCH)
        dummies = switch is not None and not bool(feeds[switch.name].reshape(-1)[0])  # merged step 0: pasts are ignored
        priority = {roles.INPUT_IDS: 0, roles.INPUTS_EMBEDS: 0, roles.ENCODER_HIDDEN_STATES: 1, roles.ENCODER_ATTENTION_MASK: 2, roles.ATTENTION_MASK: 3}
        groups: dict[str, list[tuple[int, str, int, int]]] = {}
        for tensor in sig.inputs:
            value = feeds.get(tensor.name)
            if value is None or tensor.dims is None or value.ndim != len(tensor.dims):
                continue
            if tensor.cache is not None and (dummies or value.size == 0):
                continue  # dummies and empty or placeholder caches have their own checks
            rank = 0 if tensor.name in proven else priority.get(tensor.role, 5 if tensor.cache is not None else 4)
            for axis, dim in enumerate(tensor.dims):
                linear = dim.linear
                if dim.is_static or linear is None or linear.constant != 0 or len(linear.terms) != 1 or linear.terms[0][1] != 1:
                    continue
                groups.setdefault(linear.terms[0][0], []).append((rank, tensor.name, axis, int(value.shape[axis])))
        if len(set(batches.values())) > 1:
            groups["batch (by role)"] = [
                (0 if n in proven else priority.get(t.role, 5 if t.cache is not None else 4) if (t := sig.tensor(n)) else 4, n, 0, b)
                for n, b in batches.items()
            ]
        for symbol, entries in groups.items():
            if len({value for *_, value in entries}) < 2:
                continue
            best = min(rank for rank, *_ in entries)
            peers = [e for e in entries if e[0] == best]
            common = max({e[3] for e in peers}, key=lambda v: (sum(1 for e in peers if e[3] == v), -min(i for i, e in enumerate(peers) if e[3] == v)))
            anchor = next(e for e in peers if e[3] == common)
            odd = [e for e in entries if e[3] != anchor[3]]
            first = odd[0]
            def named(name: str) -> str:
                pair = self._pair_of(sig, name)
                return f"{name} ({_cache_text(pair)})" if pair is not None else name

            listed = ", ".join(f"{named(name) if i == 0 else name} axis {axis} = {value}" for i, (_, name, axis, value) in enumerate(odd[:4]))
            return [
                WRONG_SHAPE.finding(
                    f"step {step}: {listed}, but {anchor[1]} axis {anchor[2]} = {anchor[3]} and they share the dim {symbol!r}",
                    self._at(sig, first[1], step, first[2]),
                    evidence={"dim": symbol, "expected": anchor[3], "reference": anchor[1], "mismatches": [{"input": n, "axis": a, "observed": v} for _, n, a, v in odd]},
                    fix=f"Feed {first[1]} with axis {first[2]} = {anchor[3]}, the {symbol!r} of {anchor[1]} at this step "
                    "(`onnxdoctor contract PATH` gives every input's shape)",
                )
            ]
        return []

    @staticmethod
    def _pair_of(sig: Signature, name: str) -> CachePair | None:
        if sig.kv is None:
            return None
        return next((p for p in sig.kv.pairs if p.past is not None and p.past.name == name), None)

    def _proven(self, sig: Signature, feeds: dict[str, np.ndarray], history: _History) -> frozenset[str]:
        """Cache inputs fed exactly as the model returned them (step n-1's presents, step 0's encoder cache): right by construction."""
        if sig.kv is None or history.outputs is None or history.signature is None or history.signature.kv is None:
            return frozenset()
        returned = {(p.layer, p.attention, p.part): p.present.name for p in history.signature.kv.pairs if p.present is not None}
        proven = set()
        for pair in sig.kv.pairs:
            if pair.past is None or pair.past.name not in feeds:
                continue
            fed = feeds[pair.past.name]
            if pair.attention == "cross":
                kept = history.cross_at_step0.get((pair.layer, pair.part))
            else:
                name = returned.get((pair.layer, pair.attention, pair.part))
                kept = history.outputs.get(name) if name is not None else None
            if kept is not None and fed.size and fed.shape == kept.shape and np.array_equal(fed, kept.astype(fed.dtype)):
                proven.add(pair.past.name)
        return frozenset(proven)

    def _check_first_cache_branch(self, sig: Signature, feeds: dict[str, np.ndarray], step: int, history: _History) -> Finding | None:
        """use_cache_branch True where no present came before (step 0): the root cause of what else is wrong at this step."""
        switch = sig.input(roles.USE_CACHE_BRANCH)
        if switch is None or sig.kv is None or feeds[switch.name].size == 0 or not bool(feeds[switch.name].reshape(-1)[0]):
            return None
        previous = history.outputs or {}
        before = history.signature.kv if history.signature is not None else None
        had_presents = before is not None and any(p.present is not None and p.present.name in previous for p in before.self_pairs())
        if step > 0 and had_presents:
            return None
        past_len = self._past_len(sig, feeds)
        cross = [p for p in sig.kv.cross_pairs() if p.present is not None]
        when = "at step 0" if step == 0 else f"at step {step}, with no present returned before it"
        pasts = "empty pasts" if past_len == 0 else f"dummy pasts of length {past_len}"
        consequence = (
            f"; the cache branch does not compute the encoder cache, it returns placeholders for {cross[0].present.name} "  # type: ignore[union-attr]
            f"(+{len(cross) - 1} more), so the next step would feed those back (ODF508)" if cross else ""
        )
        return CACHE_BRANCH.finding(
            f"step {step}: {switch.name}=[True] {when}: there is no previous present to continue from, so the cache branch "
            f"runs on {pasts}{consequence}. Feed [False] here (with empty pasts), [True] from the next step on",
            self._at(sig, switch.name, step),
            evidence={
                "observed": True, "expected": False, "past_len": past_len,
                "consequences": [f"placeholder {p.present.name} at step {step}, fed back at step {step + 1}" for p in cross],  # type: ignore[union-attr]
            },
        )

    def _consequences_of_cache_branch(self, sig: Signature, feeds: dict[str, np.ndarray], step: int) -> list[Finding]:
        """What else the misused switch makes wrong at this step: pasts that disagree with the encoder inputs, a dummy past."""
        found = self._check_shared_dims(sig, feeds, step, self._batches)
        mask_tensor = sig.input(roles.ATTENTION_MASK)
        ids = sig.input(roles.INPUT_IDS)
        past_len = self._past_len(sig, feeds)
        pairs = [p for p in sig.kv.self_pairs() if p.past is not None and p.axes is not None] if sig.kv is not None else []
        if step == 0 and past_len > 0 and ids is not None and pairs:
            new = int(feeds[ids.name].shape[1]) if feeds[ids.name].ndim > 1 else 1
            if mask_tensor is not None:
                found += self._check_dummy(sig, feeds, pairs, past_len, new, feeds[mask_tensor.name], step)
            else:
                first = pairs[0].past
                assert first is not None and pairs[0].axes is not None
                found.append(
                    DUMMY_PAST.finding(
                        f"step 0: {first.name} ({_cache_text(pairs[0])}; +{len(pairs) - 1} more self-attention pasts) has cache "
                        f"length {past_len} instead of an empty cache, and {sig.file} has no attention_mask that could hide it: the "
                        "cache branch attends to it",
                        self._at(sig, first.name, step, pairs[0].axes.cache),
                        evidence={"past_len": past_len, "mask_length": None, "zero_filled": all(not np.any(feeds[p.past.name]) for p in pairs if p.past is not None)},
                        fix=f"Feed {first.name} and every self-attention past with cache length 0 at step 0 (axis "
                        f"{pairs[0].axes.cache} = 0), with use_cache_branch=[False]; ORT accepts 0-sized tensors.",
                    )
                )
        return found

    def _check_switch(self, sig: Signature, name: str, use_cache: bool, past_len: int, step: int) -> list[Finding]:
        if step > 0 and not use_cache and past_len > 0:
            return [
                CACHE_BRANCH.finding(
                    f"step {step}: {name}=[False] after step 0: the no-cache branch ignores the {past_len} cached tokens",
                    self._at(sig, name, step),
                    evidence={"observed": False, "expected": True, "past_len": past_len},
                )
            ]
        return []

    def _check_cross(self, sig: Signature, feeds: dict[str, np.ndarray], step: int, use_cache: bool, cross_at_step0: dict[tuple[int, str], np.ndarray]) -> list[Finding]:
        if sig.kv is None or step == 0 or not use_cache:
            return []
        for pair in sig.kv.cross_pairs():
            if pair.past is None or pair.axes is None:
                continue
            value = feeds[pair.past.name]
            kept = cross_at_step0.get((pair.layer, pair.part))
            placeholder = value.size == 0 or value.shape[pair.axes.batch] == 0
            source = self._cross_source(pair)
            if not placeholder and kept is not None and value.shape == kept.shape:
                if not same_values(value, kept.astype(value.dtype), self._envelope(sig)):
                    holds = _same_as(value, {k: v for k, v in cross_at_step0.items() if k != (pair.layer, pair.part)}, self._envelope(sig))
                    what = (
                        f"it holds layer {holds[0]}'s cross-attention {holds[1]} of step 0 instead (fed to the wrong past)"
                        if holds else "same shape, values of no cross-attention present of step 0"
                    )
                    return [
                        STALE_PAST.finding(
                            f"step {step}: {pair.past.name} ({_cache_text(pair)}) is not {source} returned at step 0: {what}",
                            self._at(sig, pair.past.name, step),
                            evidence={"fed_shape": list(value.shape), "expected": f"{source} of step 0", "holds": list(holds) if holds else None},
                            fix=f"Feed {source} returned at step 0 as {pair.past.name} at every later step "
                            f"(layer {pair.layer}'s {pair.part}, matched by layer and part, not by position in a list).",
                        )
                    ]
                continue
            if placeholder or (kept is not None and value.shape != kept.shape):
                return [
                    PLACEHOLDER_FED_BACK.finding(
                        f"step {step}: {pair.past.name} ({_cache_text(pair)}) is {list(value.shape)}"
                        + (f", not the {list(kept.shape)} encoder cache returned at step 0" if kept is not None else ", a placeholder")
                        + ": the cache branch's cross-attention presents were fed back",
                        self._at(sig, pair.past.name, step),
                        evidence={"observed": list(value.shape), "expected": list(kept.shape) if kept is not None else None},
                        fix=f"Keep {source} returned at step 0 and feed it as {pair.past.name} at every later step; "
                        "ignore the cross-attention presents of later steps.",
                    )
                ]
        return []

    def _envelope(self, sig: Signature) -> Envelope:
        """The tolerance envelope of the regime this file computes in (numerics)."""
        context = next(r.context for r in self.report.files if r.signature.file == sig.file)
        return envelope_for(context.regime) if context is not None else STRICT

    @staticmethod
    def _cross_source(pair: CachePair) -> str:
        """The present a cross past carries: its own present (merged, step 0) or the layer's, by role."""
        return pair.present.name if pair.present is not None else f"layer {pair.layer}'s cross-attention {pair.part} present"

    def _check_stale(self, sig: Signature, feeds: dict[str, np.ndarray], step: int, previous: dict[str, np.ndarray], previous_sig: Signature) -> list[Finding]:
        if sig.kv is None or previous_sig.kv is None:
            return []
        presents = {(p.layer, p.part): p.present.name for p in previous_sig.kv.self_pairs() if p.present is not None}
        stale = []
        for pair in sig.kv.self_pairs():
            if pair.past is None:
                continue
            present_name = presents.get((pair.layer, pair.part))
            if present_name is None or present_name not in previous:
                continue
            fed, returned = feeds[pair.past.name], previous[present_name]
            # the client's runtime may optimize (and, quantized, round) differently: equal within the file's envelope
            if not same_values(fed, returned.astype(fed.dtype), self._envelope(previous_sig)):
                stale.append((pair.past.name, present_name, list(fed.shape), list(returned.shape)))
        if not stale:
            return []
        past_name, present_name, fed_shape, returned_shape = stale[0]
        pair = self._pair_of(sig, past_name)
        assert pair is not None
        holds = _same_as(
            feeds[past_name], {n: previous[n] for n in presents.values() if n != present_name and n in previous}, self._envelope(previous_sig)
        )
        what = f": it is {holds} (presents fed to the wrong pasts)" if holds else ""
        return [
            STALE_PAST.finding(
                f"step {step}: {past_name} ({_cache_text(pair)}) {fed_shape} is not {present_name} {returned_shape} "
                f"returned at step {step - 1}{what}"
                + (f" (+{len(stale) - 1} more past inputs)" if len(stale) > 1 else ""),
                self._at(sig, past_name, step),
                evidence={"stale": [s[0] for s in stale], "fed_shape": fed_shape, "returned_shape": returned_shape, "holds": holds},
                fix=f"At step {step} feed {present_name} returned at step {step - 1} as {past_name} (layer {pair.layer}'s "
                f"{pair.part}), and each other layer's present of step {step - 1} to its own past, by layer and part.",
            )
        ]

    def _check_dummy(self, sig: Signature, feeds: dict[str, np.ndarray], pairs: list[CachePair], past_len: int, new: int, mask: np.ndarray, step: int) -> list[Finding]:
        dummy_masked = mask.shape[1] == past_len + new and not mask[:, :past_len].any()
        if dummy_masked:
            return []
        filled = [p for p in pairs if p.past is not None and p.axes is not None and feeds[p.past.name].shape[p.axes.cache] > 0]
        first_pair = filled[0] if filled else pairs[0]
        first = first_pair.past
        assert first is not None
        layers = sorted({p.layer for p in filled})
        zeros = all(not np.any(feeds[p.past.name]) for p in pairs if p.past is not None)
        covered = "the attention mask does not cover it" if mask.shape[1] != past_len + new else "the attention mask attends to it"
        where = f"layer {layers[0]}" if len(layers) == 1 else f"layers {', '.join(map(str, layers))}"
        return [
            DUMMY_PAST.finding(
                f"step 0: {first.name} ({_cache_text(first_pair)}) has cache length {past_len} ({'zeros' if zeros else 'values'}) "
                f"instead of an empty cache ({len(filled)} pasts of {where} are filled), and {covered} "
                f"(mask length {mask.shape[1]})",
                self._at(sig, first.name, step, first_pair.axes.cache if first_pair.axes else None),
                evidence={"past_len": past_len, "mask_length": int(mask.shape[1]), "zero_filled": zeros, "filled": [p.past.name for p in filled if p.past]},
                fix=f"Feed {first.name} and every other past of {where} with cache length 0 at step 0 (ORT accepts "
                f"0-sized tensors); if a binding cannot, set the first {past_len} entries of the attention mask "
                f"(length {past_len + new}) to 0 so the dummy positions are hidden.",
            )
        ]

    def _run(self, sig: Signature, feeds: dict[str, np.ndarray], step: int) -> tuple[dict[str, np.ndarray] | None, Finding | None]:
        try:
            return self.backend.infer(sig, feeds), None
        except UnusableInputError:
            raise
        except Exception as exc:  # noqa: BLE001
            from onnxdoctor.replay.localize import parse_error

            place = parse_error(str(exc))
            node = f" in {place.op} node {place.node!r}" if place.node else ""
            return None, oracles.STEP_FAILED.finding(
                f"step {step}: the recorded feeds pass the contract checks but ONNX Runtime failed{node}: {place.summary()}",
                Location(sig.file, "node" if place.node else "feed", place.node, None, step),
                evidence={"ort_message": str(exc)[:2000]},
            )
