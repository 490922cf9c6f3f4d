"""`contract --emit js|python`: a complete greedy decode loop for one export, generated from its signature.

The loop is the contract made executable: which file runs at step 0 and at step n, an empty past
(cache length 0) at step 0, the mask covering past + new tokens, positions advancing with it,
`use_cache_branch` False then True, the cross-attention cache kept from step 0, presents fed back
by layer and part. A spec (plain JSON) is derived from the Signature here and embedded in a
template (`data/client_loop.js.tmpl`, `data/client_loop.py.tmpl`) whose interface is fixed:

    node loop.js MODEL_PATH --prompt 17,301,45 --max-new-tokens N [--source-ids 5,77,9] [--dump DIR]

It prints the new token ids as one JSON array; `--dump DIR` writes each step's feeds as
`stepK.json` in the JSON dump format check-feeds reads.
"""

from __future__ import annotations

import json
import pprint
from pathlib import Path
from typing import Any

from onnxdoctor import __version__
from onnxdoctor.engine import InspectReport
from onnxdoctor.errors import UsageError
from onnxdoctor.model import roles
from onnxdoctor.model.signature import CachePair, Signature, TensorSig

LANGUAGES = ("js", "python")
_TEMPLATES = {"js": "client_loop.js.tmpl", "python": "client_loop.py.tmpl"}
_SPEC_MARKER = "__ONNXDOCTOR_SPEC__"
_FEEDABLE = {
    roles.INPUT_IDS, roles.ATTENTION_MASK, roles.POSITION_IDS, roles.CACHE_POSITION, roles.TOKEN_TYPE_IDS,
    roles.ENCODER_HIDDEN_STATES, roles.ENCODER_ATTENTION_MASK, roles.USE_CACHE_BRANCH,
}
_PREFERENCE = {"merged": 0, "split": 1, "single": 2, "recompute": 3}  # optimum's recommended file first


def _cache_key(pair: CachePair) -> str:
    """Layer, attention and part: the same key links a present of one file to the past of another."""
    return f"{pair.layer}.{pair.attention}.{pair.part}"


def _cache_template(pair: CachePair, tensor: TensorSig) -> list[int | str]:
    axes = pair.axes
    if axes is None or tensor.dims is None:
        raise UsageError(f"{tensor.name}: its rank or cache layout is unknown, no loop can build it (see `onnxdoctor inspect`)")
    shape: list[int | str] = []
    for axis, dim in enumerate(tensor.dims):
        if axis == axes.batch:
            shape.append("batch")
        elif axis == axes.cache:
            shape.append("length")
        elif axis == axes.stack:
            shape.append(2)
        elif dim.is_static:
            shape.append(int(dim.value or 0))
        else:
            raise UsageError(f"{tensor.name}: axis {axis} ({dim}) is symbolic and is neither batch nor cache length")
    return shape


def _input_spec(sig: Signature, tensor: TensorSig, pairs: dict[str, CachePair]) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": tensor.name, "role": tensor.role, "dtype": tensor.dtype}
    pair = pairs.get(tensor.name)
    if pair is not None:
        entry["role"] = roles.PAST
        entry["cache"] = {"key": _cache_key(pair), "attention": pair.attention, "shape": _cache_template(pair, tensor)}
        return entry
    if tensor.role not in _FEEDABLE:
        raise UsageError(
            f"{sig.file}: input {tensor.name} has role {tensor.role_text!r}: the generated loop feeds token ids only "
            "(inputs_embeds, audio or image features are not generated); name its role with --map if it is one of the known roles"
        )
    if tensor.role == roles.POSITION_IDS and tensor.rank == 3 and tensor.dims is not None and tensor.dims[0].is_static:
        entry["sections"] = int(tensor.dims[0].value or 1)  # multimodal rope: [sections, batch, seq]
    return entry


def _file_spec(sig: Signature) -> dict[str, Any]:
    kv = sig.kv
    pairs = {p.past.name: p for p in kv.pairs if p.past is not None} if kv else {}
    logits = sig.output(roles.LOGITS)
    if logits is None:
        raise UsageError(f"{sig.file}: no logits output recognized, a greedy loop has nothing to pick tokens from")
    presents = {p.present.name: {"key": _cache_key(p), "attention": p.attention} for p in (kv.pairs if kv else []) if p.present is not None}
    return {
        "file": sig.file,
        "inputs": [_input_spec(sig, t, pairs) for t in sig.inputs],
        "logits": logits.name,
        "presents": presents,
    }


def _encoder_spec(encoder: Signature) -> dict[str, Any]:
    inputs = []
    for tensor in encoder.inputs:
        if tensor.role not in (roles.INPUT_IDS, roles.ATTENTION_MASK):
            raise UsageError(
                f"{encoder.file}: encoder input {tensor.name} ({tensor.role_text}) is not token ids or a mask: "
                "the generated loop feeds --source-ids only"
            )
        inputs.append({"name": tensor.name, "role": tensor.role, "dtype": tensor.dtype})
    hidden = next((t for t in encoder.outputs if t.role == roles.HIDDEN_STATES), encoder.outputs[0] if encoder.outputs else None)
    if hidden is None:
        raise UsageError(f"{encoder.file}: the encoder has no output")
    return {"file": encoder.file, "inputs": inputs, "output": hidden.name}


def _config(report: InspectReport) -> dict[str, Any]:
    root = Path(report.path)
    config = (root if root.is_dir() else root.parent) / "config.json"
    try:
        data = json.loads(config.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def loop_spec(report: InspectReport) -> dict[str, Any]:
    """What the generated loop needs, from the signatures alone (the same plan replay follows)."""
    from onnxdoctor.replay.protocol import plan_scenarios

    scenarios = sorted(plan_scenarios(report), key=lambda s: _PREFERENCE.get(s.name, 9))
    scenario = scenarios[0]
    step0, stepn = scenario.step0, scenario.stepn
    needs_encoder = any(t.role == roles.ENCODER_HIDDEN_STATES for s in (step0, stepn) if s for t in s.inputs)
    for sig in (step0, stepn):
        kv = sig.kv if sig is not None else None
        if kv is not None and scenario.name == "single" and any(p.attention == "cross" and p.past is not None for p in kv.pairs):
            raise UsageError(
                f"{sig.file} takes the cross-attention cache as a past but no file of {report.path} computes it at step 0 "  # type: ignore[union-attr]
                "(optimum: decoder_model.onnx): emit the loop for the whole export folder"
            )
    if needs_encoder and scenario.encoder is None:
        raise UsageError(f"{step0.file} needs encoder_hidden_states and {report.path} has no encoder_model.onnx: emit the loop for the whole export folder")
    config = _config(report)
    seq2seq = needs_encoder or bool(config.get("is_encoder_decoder"))
    start = config.get("decoder_start_token_id")
    if start is None and seq2seq:
        start = config.get("pad_token_id")  # Marian and T5 start from the pad token when the key is absent
    return {
        "generator": f"onnxdoctor {__version__}",
        "model": Path(report.path).name,
        "layout": scenario.name,
        "describe": scenario.describe(),
        "seq2seq": seq2seq,
        "decoder_start_token_id": start,
        "encoder": _encoder_spec(scenario.encoder) if needs_encoder and scenario.encoder is not None else None,
        "step0": _file_spec(step0),
        "stepn": _file_spec(stepn) if stepn is not None else None,
    }


def emit_loop(report: InspectReport, language: str) -> str:
    """The complete program text for `language` (js: onnxruntime-node, python: onnxruntime + numpy)."""
    if language not in _TEMPLATES:
        raise UsageError(f"--emit must be one of {', '.join(LANGUAGES)}, not {language!r}")
    spec = loop_spec(report)
    template = (Path(__file__).resolve().parents[1] / "data" / _TEMPLATES[language]).read_text()
    # JSON is a JS literal; for Python, pprint spells null/true/false as None/True/False
    text = json.dumps(spec, indent=2) if language == "js" else pprint.pformat(spec, sort_dicts=False, width=110)
    return template.replace(_SPEC_MARKER, text).replace("__ONNXDOCTOR_MODEL__", spec["model"]).replace("__ONNXDOCTOR_LAYOUT__", spec["describe"])
