#!/usr/bin/env python
"""Build tiny, deterministic BROKEN ONNX decoder exports under ``fixtures/broken-*/``.

Each folder holds one defect made the way users make it: a torch.onnx export with missing or
partial ``dynamic_axes``, a shape baked into a Reshape by ``int()`` on a traced size, optimum's
``no_dynamic_axes``, a hand edit of the healthy ``optimum-llama-gqa`` export with
onnx-graphsurgeon, or a float16 conversion of it with ``onnxruntime.transformers.float16``.

Every folder gets ``export_settings.json`` with how it was made, a ``defect`` sentence and an
``observed`` record: the model is decoded in onnxruntime with the ordinary client protocol
(batch 1; step 0 a 3-token prompt with every past input empty; steps 1 and 2 one token each with
the presents fed back by name) and each step's error text or max |logits diff| against the
healthy twin's uncached recompute is stored.

Usage: python scripts/make_broken_fixtures.py [--out fixtures] [--only NAME ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import make_fixtures as mf  # noqa: E402  (sets the offline environment before transformers loads)

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import shutil  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402

Settings = dict[str, Any]
Outputs = dict[str, np.ndarray]

HEALTHY_OPTIMUM = "optimum-llama-gqa"
HEALTHY_TORCH = "torch-legacy"
TRACE_BATCH, TRACE_SEQ, TRACE_PAST = 1, 3, 5  # the dummy most users trace with: a non-empty past
PROMPT = 3  # step-0 prompt length of the client protocol (equal to TRACE_SEQ on purpose)
CLIENT = ("batch 1; step 0: 3-token prompt, every past input empty (length 0, declared dtype); "
          "steps 1 and 2: one new token, each present fed back as returned to the past input of the "
          "same name; attention_mask ones over past + new; position_ids past .. past + new - 1")
LAYERS = mf.TinyKVDecoder.DIMS["layers"]
CACHES = [f"{kind}_{i}" for i in range(LAYERS) for kind in ("key", "value")]
TORCH_INPUTS = ["input_ids", "attention_mask", *(f"past_{c}" for c in CACHES)]
TORCH_OUTPUTS = ["logits", *(f"present_{c}" for c in CACHES)]


# --------------------------------------------------------------------------- onnxruntime client


def _session(path: Path) -> ort.InferenceSession:
    """Single-threaded CPU session (deterministic floats) that keeps ORT's own error log quiet."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.log_severity_level = 4
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _np_dtype(ort_type: str) -> type:
    """numpy dtype for an ORT tensor type string."""
    return {"tensor(float16)": np.float16, "tensor(float)": np.float32, "tensor(int64)": np.int64}[ort_type]


def _feeds(session: ort.InferenceSession, ids: np.ndarray, past: Outputs, past_len: int, *,
           empty_dtype: str = "declared", cast_back: bool = False) -> dict[str, np.ndarray]:
    """Inputs a generic client builds; a past input with no value in `past` is left out at steps > 0."""
    batch, seq = ids.shape
    feeds: dict[str, np.ndarray] = {}
    for arg in session.get_inputs():
        name = arg.name
        if name == "input_ids":
            feeds[name] = ids
        elif name == "attention_mask":
            feeds[name] = np.ones((batch, past_len + seq), dtype=np.int64)
        elif name == "position_ids":
            feeds[name] = np.arange(past_len, past_len + seq, dtype=np.int64)[None].repeat(batch, 0)
        elif mf._is_past(name):
            declared = _np_dtype(arg.type)
            if past_len == 0:
                dtype = declared if empty_dtype == "declared" else np.float32
                feeds[name] = np.zeros((batch, arg.shape[1], 0, arg.shape[3]), dtype=dtype)
            elif name in past:
                feeds[name] = past[name].astype(declared) if cast_back else past[name]
        else:
            raise RuntimeError(f"don't know how to feed input {name!r}")
    return feeds


def _step(session: ort.InferenceSession, ids: np.ndarray, past: Outputs, past_len: int,
          **client: Any) -> tuple[Outputs | None, str | None]:
    """One decoding step: (outputs, None) or (None, onnxruntime's error text)."""
    names = [o.name for o in session.get_outputs()]
    try:
        values = session.run(names, _feeds(session, ids, past, past_len, **client))
    except Exception as exc:  # onnxruntime raises its own exception types; keep the message
        return None, str(exc).strip()
    return dict(zip(names, values)), None


def _diff(a: np.ndarray, b: np.ndarray) -> float:
    """Max |a - b| in float32, rounded for a stable JSON record."""
    return float(f"{float(np.max(np.abs(a.astype(np.float32) - b.astype(np.float32)))):.3g}")


def _healthy_steps(healthy: Path, ids: np.ndarray, steps: list[int]) -> tuple[list[Outputs], list[np.ndarray]]:
    """Cached outputs per step and uncached last-token logits per step from the healthy twin."""
    session = _session(healthy)
    cached, uncached, past, done = [], [], {}, 0
    for length in steps:
        out, err = _step(session, ids[:, done:done + length], past, done)
        if err or out is None:
            raise RuntimeError(f"healthy reference {healthy} failed: {err}")
        full, err = _step(session, ids[:, :done + length], {}, 0)
        if err or full is None:
            raise RuntimeError(f"healthy reference {healthy} failed uncached: {err}")
        done += length
        cached.append(out)
        uncached.append(full["logits"][:, -length:])
        past = mf._presents_as_past(out)
    return cached, uncached


def observe(model: Path, healthy: Path, *, steps: tuple[int, ...] = (PROMPT, 1, 1), **client: Any) -> Settings:
    """Decode `model` step by step; record each step's error or logits/present diffs vs the healthy twin.

    If a step fails, the next step is still tried with the healthy twin's cache so its own failure
    (or success) is visible too; that is recorded as ``"cache_from": "healthy"``.
    """
    ids = mf._tokens((1, sum(steps)))
    cached, uncached = _healthy_steps(healthy, ids, list(steps))
    session = _session(model)
    record: Settings = {}
    past: Outputs = {}
    done = 0
    from_healthy = False
    for index, length in enumerate(steps):
        entry: Settings = {"new_tokens": length, "past_length": done}
        if from_healthy:
            entry["cache_from"] = "healthy"
        out, err = _step(session, ids[:, done:done + length], past, done, **client)
        if err is not None or out is None:
            entry["error"] = err
            past, from_healthy = mf._presents_as_past(cached[index]), True
        else:
            entry["logits_max_abs_diff_vs_uncached_healthy"] = _diff(out["logits"], uncached[index])
            entry["output_shapes"] = {k: list(v.shape) for k, v in out.items()}
            present_diffs = {k: _diff(v, cached[index][k]) for k, v in out.items()
                             if k.startswith("present") and k in cached[index] and v.shape == cached[index][k].shape}
            if any(present_diffs.values()):
                entry["present_max_abs_diff_vs_healthy"] = {k: v for k, v in present_diffs.items() if v}
            past, from_healthy = mf._presents_as_past(out), False
        done += length
        record[f"step{index}"] = entry
    return record


def _first_error(observed: Settings) -> str:
    """First line of the first step error in an observed record, or '' if none."""
    for entry in observed.values():
        if isinstance(entry, dict) and "error" in entry:
            return entry["error"].splitlines()[0]
    return ""


# --------------------------------------------------------------------------- torch.onnx builders


class BakedViewAttentionLayer(mf.TinyAttentionLayer):
    """TinyAttentionLayer whose view/reshape sizes go through int(): the tracer records constants."""

    def forward(
        self, x: torch.Tensor, bias: torch.Tensor, past_key: torch.Tensor, past_value: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Same maths as the parent; `int(x.shape[i])` is the user's mistake."""
        batch, seq = int(x.shape[0]), int(x.shape[1])
        qkv = self.qkv(self.ln1(x)).view(batch, seq, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        query, key, value = qkv[0], qkv[1], qkv[2]
        key = torch.cat([past_key, key], dim=2)
        value = torch.cat([past_value, value], dim=2)
        scores = query @ key.transpose(-1, -2) / math.sqrt(self.head_dim) + bias
        attended = torch.softmax(scores, dim=-1) @ value
        x = x + self.out(attended.transpose(1, 2).reshape(batch, seq, self.heads * self.head_dim))
        return x + self.mlp(self.ln2(x)), key, value


def _seeded_decoder(baked_view: bool = False) -> mf.TinyKVDecoder:
    """TinyKVDecoder with the same seeded weights as fixtures/torch-legacy (optionally baked view)."""
    torch.manual_seed(mf.SEED)
    model = mf.TinyKVDecoder().eval()
    if baked_view:
        for layer in model.layers:  # swap behaviour only; weights and RNG order stay identical
            layer.__class__ = BakedViewAttentionLayer
    return model


def _trace_example() -> tuple[torch.Tensor, ...]:
    """Batch 1, 3 new tokens and a 5-position dummy past (mask over 8), as many users trace."""
    d = mf.TinyKVDecoder.DIMS
    past = [torch.randn(TRACE_BATCH, d["heads"], TRACE_PAST, d["head_dim"]) for _ in range(2 * d["layers"])]
    return (torch.randint(0, mf.VOCAB, (TRACE_BATCH, TRACE_SEQ)),
            torch.ones(TRACE_BATCH, TRACE_PAST + TRACE_SEQ, dtype=torch.int64), *past)


FULL_DYNAMIC_AXES = {
    "input_ids": {0: "batch", 1: "sequence"},
    "attention_mask": {0: "batch", 1: "total_sequence"},
    **{f"past_{c}": {0: "batch", 2: "past_sequence"} for c in CACHES},
    "logits": {0: "batch", 1: "sequence"},
    **{f"present_{c}": {0: "batch", 2: "total_sequence"} for c in CACHES},
}


def _torch_export(out: Path, model: torch.nn.Module, dynamic_axes: dict[str, dict[int, str]] | None) -> Settings:
    """torch.onnx.export(dynamo=False) of `model` on the batch-1 / past-5 dummy; settings with the trace dims."""
    torch.onnx.export(model, _trace_example(), str(out / "model.onnx"), dynamo=False,
                      input_names=TORCH_INPUTS, output_names=TORCH_OUTPUTS, dynamic_axes=dynamic_axes,
                      opset_version=mf.OPSET_TORCH_LEGACY)
    settings = mf._torch_settings(False, mf.OPSET_TORCH_LEGACY, {
        "input_names": TORCH_INPUTS, "output_names": TORCH_OUTPUTS, "dynamic_axes": dynamic_axes})
    settings["trace_example"] = {"batch": TRACE_BATCH, "new_tokens": TRACE_SEQ, "past_length": TRACE_PAST,
                                 "attention_mask_length": TRACE_PAST + TRACE_SEQ}
    settings["healthy_twin"] = HEALTHY_TORCH
    return settings


def build_torch_no_dynamic_axes(out: Path) -> Settings:
    """No dynamic_axes at all: every dim, past length 5 included, is frozen at its trace value."""
    settings = _torch_export(out, _seeded_decoder(), None)
    settings["defect"] = ("Exported without dynamic_axes, so every input and output keeps its trace-time "
                          "size (input_ids [1, 3], past [1, 2, 5, 8], present [1, 2, 8, 8]); a client's "
                          "empty-past step 0 and every 1-token step are refused by onnxruntime: {error}")
    return settings


def build_torch_partial_dynamic_axes(out: Path) -> Settings:
    """dynamic_axes for input_ids, attention_mask and logits only; past/present stay static."""
    axes = {name: FULL_DYNAMIC_AXES[name] for name in ("input_ids", "attention_mask", "logits")}
    settings = _torch_export(out, _seeded_decoder(), axes)
    settings["defect"] = ("dynamic_axes cover input_ids, attention_mask and logits but not the past_*/present_* "
                          "inputs, which keep the trace-time size [1, 2, 5, 8] (presents get [1, 2, <exporter "
                          "symbol>, 8]); the model only accepts a past of exactly 5 positions, so the client's first step fails: "
                          "{error}")
    return settings


def build_torch_baked_view(out: Path) -> Settings:
    """Full dynamic_axes, but int(x.shape[i]) in the attention bakes [1, 3, ...] into the Reshape targets."""
    settings = _torch_export(out, _seeded_decoder(baked_view=True), FULL_DYNAMIC_AXES)
    settings["model_class"] = "TinyKVDecoder with BakedViewAttentionLayer (view sizes through int())"
    settings["baked_reshapes"] = _constant_reshapes(out / "model.onnx")
    settings["defect"] = ("The attention's view/reshape sizes went through int(x.shape[i]) at trace time, so the "
                          "Reshape targets are constants for batch 1 and 3 tokens despite full dynamic_axes; the "
                          "3-token prompt works but the first 1-token step fails: {error}")
    return settings


def _constant_reshapes(path: Path) -> dict[str, list[int]]:
    """Reshape node name -> its constant target shape (from an initializer or a Constant node)."""
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    consts = {t.name: numpy_helper.to_array(t).tolist() for t in graph.initializer}
    consts.update({n.output[0]: numpy_helper.to_array(n.attribute[0].t).tolist()
                   for n in graph.node if n.op_type == "Constant" and n.attribute[0].name == "value"})
    found = {n.name: consts[n.input[1]] for n in graph.node if n.op_type == "Reshape" and n.input[1] in consts}
    if not found:
        raise RuntimeError("no Reshape with a constant target: the trace kept the shape dynamic")
    return found


# --------------------------------------------------------------------------- optimum builder


def build_optimum_no_dynamic_axes(out: Path) -> Settings:
    """optimum main_export(no_dynamic_axes=True) (CLI --no-dynamic-axes) with its default dummy shapes."""
    from transformers import LlamaConfig, LlamaForCausalLM

    settings = mf._export_optimum(out, LlamaForCausalLM, LlamaConfig, mf.LLAMA_GQA, mf.TEXT_GEN,
                                  extra_flags={"no_dynamic_axes": True})
    settings["healthy_twin"] = HEALTHY_OPTIMUM
    settings["defect"] = ("optimum's no_dynamic_axes freezes its dummy shapes (batch 2, 16 tokens, past 16: "
                          "past [2, 2, 16, 8], present [2, 2, 32, 8]) and its own validation still passes at "
                          "those shapes; any real client step is refused: {error}")
    return settings


# --------------------------------------------------------------------------- graph edits of the healthy export


def _load_healthy_graph(out: Path) -> Any:
    """Copy config.json of the healthy Llama GQA export into `out`; return its graph for onnx-graphsurgeon."""
    import onnx_graphsurgeon as gs

    source = mf.REPO_ROOT / "fixtures" / HEALTHY_OPTIMUM
    shutil.copy2(source / "config.json", out / "config.json")
    return gs.import_onnx(onnx.load(str(source / "model.onnx")))


def _save_graph(graph: Any, out: Path) -> None:
    """Export the graph and save it as one self-contained model.onnx."""
    import onnx_graphsurgeon as gs

    onnx.save(gs.export_onnx(graph), str(out / "model.onnx"), save_as_external_data=False)


def _present_concat(graph: Any, output_name: str) -> Any:
    """The Concat node producing graph output `output_name`."""
    (tensor,) = [t for t in graph.outputs if t.name == output_name]
    (node,) = tensor.inputs
    if node.op != "Concat":
        raise RuntimeError(f"{output_name} is produced by {node.op}, not Concat")
    return node


def _edit_settings(edit: str, touched: dict[str, Any], defect: str) -> Settings:
    """export_settings.json content for a graph edit of the healthy optimum export."""
    source = json.loads((mf.REPO_ROOT / "fixtures" / HEALTHY_OPTIMUM / "export_settings.json").read_text())
    return {
        "exporter": "onnx_graphsurgeon edit of an optimum export",
        "derived_from": f"fixtures/{HEALTHY_OPTIMUM}/model.onnx",
        "healthy_twin": HEALTHY_OPTIMUM,
        "versions": mf._versions("onnx-graphsurgeon", "onnx"),
        "edit": edit,
        "touched": touched,
        "opset": source["opset"],
        "config": source["config"],
        "source_export": {k: source[k] for k in ("exporter", "versions", "task", "flags")},
        "files": ["model.onnx", "config.json"],
        "defect": defect,
    }


def build_gs_present_is_new(out: Path) -> Settings:
    """present.0.key/value wired to the step's new K/V (second Concat input) instead of past ++ new."""
    graph = _load_healthy_graph(out)
    touched = {}
    for name in ("present.0.key", "present.0.value"):
        concat = _present_concat(graph, name)
        cache, new = concat.inputs
        new_name, kept_name = new.name, f"{concat.name}_output_0"
        concat.outputs[0].name = kept_name  # still feeds the attention MatMul
        new.name, new.dtype, new.shape = name, np.float32, ["batch_size", 2, "sequence_length", 8]
        graph.outputs[[t.name for t in graph.outputs].index(kept_name)] = new
        touched[name] = {"concat": concat.name, "concat_output_renamed_to": kept_name,
                         "now_output": f"{new_name} (second Concat input, renamed {name})"}
    _save_graph(graph, out)
    return _edit_settings(
        "graph outputs present.0.key / present.0.value re-pointed at the new step's K / V (the second input of "
        "their Concat), declared [batch_size, 2, sequence_length, 8]; the Concat now only feeds attention",
        touched,
        "Layer 0 returns only the new step's K/V as its present, so after step 1 its cache holds one position "
        "while layer 1 holds the full length; step 1 still matches, but step 2 fails in layer 1, whose keys no "
        "longer fit the mask sized from layer 0's past: {error}")


def build_gs_concat_swapped(out: Path) -> Settings:
    """Layer 0's key and value Concat take (new, past) instead of (past, new)."""
    graph = _load_healthy_graph(out)
    touched = {}
    for name in ("present.0.key", "present.0.value"):
        concat = _present_concat(graph, name)
        concat.inputs = [concat.inputs[1], concat.inputs[0]]
        touched[name] = {"concat": concat.name, "inputs_now": [t.name for t in concat.inputs]}
    _save_graph(graph, out)
    return _edit_settings(
        "inputs of layer 0's key and value Concat nodes swapped: Concat(new, past) on axis -2",
        touched,
        "Layer 0 puts the new step's K/V before the cache, so the present order no longer matches positions; "
        "1-token steps still give the right logits (attention over all keys is order-free) but the cache "
        "content diverges and any multi-token step after step 0 is silently wrong (no error).")


def build_gs_dropped_present(out: Path) -> Settings:
    """Graph output present.1.value removed; its Concat stays because attention still reads it."""
    graph = _load_healthy_graph(out)
    concat = _present_concat(graph, "present.1.value")
    graph.outputs = [t for t in graph.outputs if t.name != "present.1.value"]
    graph.cleanup()
    if concat not in graph.nodes:
        raise RuntimeError("cleanup removed the Concat of present.1.value")
    _save_graph(graph, out)
    return _edit_settings(
        "graph output present.1.value removed, then graph.cleanup(): its Concat node stays (attention reads it)",
        {"present.1.value": {"concat": concat.name, "kept": True, "output_tensor": concat.outputs[0].name}},
        "present.1.value is no longer an output, so a client has nothing to feed past_key_values.1.value at "
        "step 1; step 0 works and step 1 fails: {error}")


# --------------------------------------------------------------------------- float16 conversions


def _convert_fp16(out: Path, keep_io_types: bool | list[str]) -> Settings:
    """onnxruntime.transformers.float16 conversion of the healthy fp32 export (config.json copied)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    source = mf.REPO_ROOT / "fixtures" / HEALTHY_OPTIMUM
    shutil.copy2(source / "config.json", out / "config.json")
    model = convert_float_to_float16(onnx.load(str(source / "model.onnx")), keep_io_types=keep_io_types)
    note = {}
    if keep_io_types:
        # The converter appends its I/O Cast nodes after all others: onnxruntime loads that, but
        # onnx.checker rejects it. Sort with ORT's own helper so this fixture carries one defect only.
        from onnxruntime.transformers.onnx_model import OnnxModel

        wrapper = OnnxModel(model)
        wrapper.topological_sort()
        model = wrapper.model
        note = {"post_process": "onnxruntime.transformers.onnx_model.OnnxModel(model).topological_sort(): the "
                                "converter appends its graph_input_cast* nodes last, which onnx.checker rejects "
                                "(onnxruntime itself loads the unsorted model)"}
    onnx.save(model, str(out / "model.onnx"), save_as_external_data=False)
    settings = json.loads((source / "export_settings.json").read_text())
    return {
        "exporter": "onnxruntime.transformers.float16.convert_float_to_float16 of an optimum export",
        "derived_from": f"fixtures/{HEALTHY_OPTIMUM}/model.onnx",
        "healthy_twin": HEALTHY_OPTIMUM,
        "versions": mf._versions("onnxruntime", "onnx"),
        "flags": {"keep_io_types": keep_io_types},
        **note,
        "opset": settings["opset"],
        "config": settings["config"],
        "source_export": {k: settings[k] for k in ("exporter", "versions", "task", "flags")},
        "files": ["model.onnx", "config.json"],
    }


def build_fp16_io(out: Path) -> Settings:
    """fp16 conversion with keep_io_types=False: past, present and logits all become float16."""
    settings = _convert_fp16(out, False)
    settings["defect"] = ("Converted to float16 without keep_io_types, so past/present/logits are float16; it "
                          "decodes with float16 feeds, but a client that feeds float32 fails at step 0: {error}")
    settings["observe_client"] = {"empty_dtype": "float32"}
    return settings


def build_fp16_partial(out: Path) -> Settings:
    """keep_io_types lists the input names only: past stays float32 while presents become float16."""
    source = onnx.load(str(mf.REPO_ROOT / "fixtures" / HEALTHY_OPTIMUM / "model.onnx"), load_external_data=False)
    settings = _convert_fp16(out, [i.name for i in source.graph.input])
    settings["defect"] = ("keep_io_types named only the inputs, so past_key_values.* stay float32 while present.* "
                          "(and logits) are float16; step 0 works, feeding the presents back fails at step 1: {error}")
    settings["observe_client_also"] = {"cast_back": True}
    return settings


# --------------------------------------------------------------------------- driver


@dataclass(frozen=True)
class Broken:
    """A broken fixture folder: its builder and the healthy fixture it is compared with."""

    name: str
    build: Callable[[Path], Settings]
    healthy: str


FIXTURES: dict[str, Broken] = {
    f.name: f
    for f in (
        Broken("broken-torch-no-dynamic-axes", build_torch_no_dynamic_axes, HEALTHY_TORCH),
        Broken("broken-torch-partial-dynamic-axes", build_torch_partial_dynamic_axes, HEALTHY_TORCH),
        Broken("broken-torch-baked-view", build_torch_baked_view, HEALTHY_TORCH),
        Broken("broken-optimum-no-dynamic-axes", build_optimum_no_dynamic_axes, HEALTHY_OPTIMUM),
        Broken("broken-gs-present-is-new", build_gs_present_is_new, HEALTHY_OPTIMUM),
        Broken("broken-gs-concat-swapped", build_gs_concat_swapped, HEALTHY_OPTIMUM),
        Broken("broken-gs-dropped-present", build_gs_dropped_present, HEALTHY_OPTIMUM),
        Broken("broken-fp16-io", build_fp16_io, HEALTHY_OPTIMUM),
        Broken("broken-fp16-partial", build_fp16_partial, HEALTHY_OPTIMUM),
    )
}


def _io_dims(path: Path) -> dict[str, str]:
    """name -> 'dtype [dims]' for every graph input and output."""
    graph = onnx.load(str(path), load_external_data=False).graph
    rows = {}
    for value in [*graph.input, *graph.output]:
        kind = value.type.tensor_type
        dims = [d.dim_param or d.dim_value for d in kind.shape.dim]
        rows[value.name] = f"{onnx.TensorProto.DataType.Name(kind.elem_type).lower()} {dims}"
    return rows


def make_fixture(fixture: Broken, root: Path) -> None:
    """(Re)build one broken folder, observe it in onnxruntime, write export_settings.json."""
    folder = mf.fresh_folder(root, fixture.name)
    settings = fixture.build(folder)
    model = folder / "model.onnx"
    onnx.checker.check_model(str(model))
    healthy = mf.REPO_ROOT / "fixtures" / fixture.healthy / "model.onnx"
    client = settings.pop("observe_client", {})
    also = settings.pop("observe_client_also", None)
    observed: Settings = {"client": CLIENT, **observe(model, healthy, **client)}
    if client.get("empty_dtype") == "float32":
        observed["client"] += "; past tensors float32 whatever the model declares"
        observed["declared_dtype_client"] = observe(model, healthy)
    if also:
        observed["cast_back_client"] = observe(model, healthy, **also)
    if fixture.name == "broken-gs-concat-swapped":
        observed["chunked_client"] = observe(model, healthy, steps=(PROMPT, 2))
        observed["chunked_client"]["client"] = "as above but step 1 feeds 2 new tokens at once"
    settings["defect"] = settings["defect"].format(error=_first_error(observed))
    settings["io"] = _io_dims(model)
    settings = {"fixture": fixture.name, **settings, "observed": observed}
    (folder / "export_settings.json").write_text(json.dumps(settings, indent=2) + "\n")
    mf.print_sizes(folder)
    for name, dims in settings["io"].items():
        print(f"    io: {name:28s} {dims}")
    for step, entry in observed.items():
        print(f"    observed {step}: {json.dumps(entry)[:300]}")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=mf.REPO_ROOT / "fixtures",
                        help="output root (default: fixtures/ in the repository)")
    parser.add_argument("--only", nargs="+", choices=sorted(FIXTURES), metavar="NAME",
                        help=f"build only these fixtures: {', '.join(FIXTURES)}")
    args = parser.parse_args(argv)
    mf._quiet()
    torch.set_num_threads(1)
    return mf.build_each(args.only or list(FIXTURES), lambda name: make_fixture(FIXTURES[name], args.out), "broken fixtures")


if __name__ == "__main__":
    mf._reexec_with_fixed_hash_seed()
    sys.exit(main())
