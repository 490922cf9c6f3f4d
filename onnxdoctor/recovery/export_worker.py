"""Runs one real export in its own process: `python -m onnxdoctor.recovery.export_worker SPEC.json`.

The recovery engine starts this with a time limit, so an exporter that crashes (segfault, OOM) or
hangs cannot take onnxdoctor down; the last lines it printed become the failed attempt's evidence.
The spec (JSON) says which exporter, which source and which settings; outputs go to spec["out"].

torch sources are a user's own entry `file.py:function` returning what torch.onnx.export takes:
`(module, example_inputs, input_names, output_names)`, `(module, example_inputs)`, or a dict with
`model`, `args` and optionally `kwargs`, `input_names`, `output_names`. Missing input names come
from the model being fixed when the example has as many tensors (its clients feed those names),
else from the forward's signature; missing output names from the model being fixed.

`python -m onnxdoctor.recovery.export_worker --check SPEC.json` only loads the factory and checks
what it returns: a bad factory is exit 3 with one `factory error:` line, before any attempt.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _log(message: str) -> None:
    print(f"[export] {message}", flush=True)


def _merge_adapter(source: Path, adapter: Path, work: Path) -> Path:
    """Merge a LoRA adapter into the base weights with peft and save the merged model next to the export."""
    import transformers
    from peft import PeftModel

    config = transformers.AutoConfig.from_pretrained(source)
    auto = transformers.AutoModelForSeq2SeqLM if getattr(config, "is_encoder_decoder", False) else transformers.AutoModelForCausalLM
    _log(f"merging LoRA adapter {adapter} into {source}")
    base = auto.from_pretrained(source)
    merged = PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
    target = work / "merged-source"
    merged.save_pretrained(target)
    for extra in ("generation_config.json",):
        if (source / extra).is_file() and not (target / extra).exists():
            (target / extra).write_bytes((source / extra).read_bytes())
    return target


def _show_tracer_warnings() -> None:
    """TracerWarnings go to the log even under PYTHONWARNINGS=ignore: the export pipeline classifies them."""
    import warnings

    import torch

    warnings.filterwarnings("default", category=torch.jit.TracerWarning)


def export_optimum(spec: dict[str, Any]) -> None:
    from optimum.exporters.onnx import main_export

    _show_tracer_warnings()

    source = Path(spec["source"])
    out = Path(spec["out"])
    settings = spec["settings"]
    if spec.get("adapter"):
        source = _merge_adapter(source, Path(spec["adapter"]), Path(spec["work"]))
    _load_with_attention(settings.get("attn_implementation"))
    _log(f"optimum main_export {source} task={settings['task']} {json.dumps({k: v for k, v in settings.items() if k != 'task'})}")
    main_export(
        model_name_or_path=str(source),
        output=str(out),
        task=settings["task"],
        opset=settings.get("opset"),
        device="cpu",
        dtype=settings.get("dtype", "fp32"),
        no_post_process=settings.get("no_post_process", False),
        no_dynamic_axes=settings.get("no_dynamic_axes", False),
        do_validation=False,
        do_constant_folding=settings.get("constant_folding", True),
    )


# Weights past this many bytes go to an external data file: a protobuf message (the .onnx) cannot
# exceed 2 GB, and the graph and constants need room beside the weights.
INLINE_LIMIT_BYTES = 1536 * 1024 * 1024


def weight_bytes(model: Any) -> int:
    """Bytes of a torch module's parameters and buffers, tied weights counted once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for tensor in list(model.parameters()) + list(model.buffers()):
        key = (tensor.data_ptr(), tensor.nbytes)
        if key not in seen:
            seen.add(key)
            total += tensor.nbytes
    return total


def _load_with_attention(implementation: str | None) -> None:
    """transformers' attention implementation (`eager`: explicit mask arithmetic) for the model optimum loads.

    main_export has no loading option for it (its model_kwargs go to forward), so this process's
    TasksManager passes it to from_pretrained; the worker is a process of its own, nothing else sees it.
    """
    if not implementation:
        return
    from optimum.exporters.tasks import TasksManager

    original = TasksManager.get_model_from_task

    def get_model_from_task(*args: Any, **kwargs: Any) -> Any:
        kwargs["attn_implementation"] = implementation
        return original(*args, **kwargs)

    TasksManager.get_model_from_task = staticmethod(get_model_from_task)  # type: ignore[method-assign]
    _log(f"loading the model with attn_implementation={implementation!r}")


FACTORY_ERROR = 3  # exit status of a factory that raises or returns something torch.onnx.export does not take


class FactoryError(Exception):
    """The user's factory raised or returned something unusable: one line for the user, no attempt."""


def _load_entry(entry: str) -> Any:
    file_name, _, function = entry.rpartition(":")
    if not file_name or not function:
        raise FactoryError(f"torch source must be file.py:function, got {entry!r}")
    spec = importlib.util.spec_from_file_location("onnxdoctor_user_entry", file_name)
    if spec is None or spec.loader is None:
        raise FactoryError(f"cannot import {file_name}")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(Path(file_name).resolve().parent))
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - the user's module: any error is theirs, said in one line
        raise FactoryError(f"importing {file_name} raised {type(exc).__name__}: {exc}") from None
    factory = getattr(module, function, None)
    if not callable(factory):
        raise FactoryError(f"{file_name} has no function {function!r}")
    try:
        return factory()
    except Exception as exc:  # noqa: BLE001
        raise FactoryError(f"{entry}() raised {type(exc).__name__}: {exc}") from None


_FORMS = (
    "return (module, example_inputs, input_names, output_names) as for torch.onnx.export, (module, example_inputs), "
    "or a dict with model, args and optionally kwargs, input_names, output_names"
)


def _names(value: Any, what: str, entry: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not all(isinstance(n, str) for n in value):
        raise FactoryError(f"{entry}: {what} must be a list of strings, got {type(value).__name__}")
    return list(value)


def normalize_entry(result: Any, entry: str, default_names: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """What the factory returned, as model / args / kwargs / input_names / output_names (names filled in)."""
    import torch

    if isinstance(result, dict):
        unknown = set(result) - {"model", "args", "kwargs", "input_names", "output_names"}
        if "model" not in result or "args" not in result or unknown:
            raise FactoryError(f"{entry} returned a dict with keys {sorted(map(str, result))}: {_FORMS}")
        form = "dict"
        model, args, kwargs = result["model"], result["args"], result.get("kwargs") or {}
        input_names, output_names = result.get("input_names"), result.get("output_names")
    elif isinstance(result, (tuple, list)) and len(result) in (2, 4):
        form = f"{len(result)}-tuple"
        model, args = result[0], result[1]
        kwargs = {}
        input_names, output_names = (result[2], result[3]) if len(result) == 4 else (None, None)
    else:
        kind = f"a {len(result)}-tuple" if isinstance(result, (tuple, list)) else type(result).__name__
        raise FactoryError(f"{entry} returned {kind}: {_FORMS}")
    if not isinstance(model, torch.nn.Module):
        raise FactoryError(f"{entry}: the module must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(args, torch.Tensor):
        args = (args,)
    if not isinstance(args, (tuple, list)):
        raise FactoryError(f"{entry}: example_inputs must be a tensor or a tuple of inputs, got {type(args).__name__}")
    if not isinstance(kwargs, dict):
        raise FactoryError(f"{entry}: kwargs must be a dict, got {type(kwargs).__name__}")
    args = tuple(args)
    if args and isinstance(args[-1], dict) and not kwargs and not _binds(model, args, {}):
        args, kwargs = args[:-1], dict(args[-1])  # torch.onnx's convention: a trailing dict holds keyword inputs
    if not _binds(model, args, kwargs):
        raise FactoryError(
            f"{entry}: the example inputs ({len(args)} positional, keywords {sorted(kwargs)}) do not fit "
            f"{type(model).__name__}.forward{inspect.signature(model.forward)}"
        )
    leaves = _leaf_paths(model, args, kwargs)
    defaults = default_names or {}
    names = _names(input_names, "input_names", entry)
    names_from = "factory"
    if names is None:
        fixed = defaults.get("inputs") or []
        names, names_from = (list(fixed), "the model being fixed") if len(fixed) == len(leaves) else (leaves, "the forward signature")
    outputs = _names(output_names, "output_names", entry)
    if outputs is None:
        outputs = list(defaults.get("outputs") or [])
    return {
        "model": model, "args": args, "kwargs": kwargs, "input_names": names, "output_names": outputs,
        "form": form, "input_names_from": names_from, "tensors": len(leaves),
    }


def _binds(model: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    try:
        inspect.signature(model.forward).bind(*args, **kwargs)
    except TypeError:
        return False
    return True


def _leaf_paths(model: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[str]:
    """A name per example tensor, in the order the exporters flatten them: parameter, then index or key."""
    import torch

    bound = inspect.signature(model.forward).bind(*args, **kwargs).arguments
    names: list[str] = []

    def walk(value: Any, path: str) -> None:
        if isinstance(value, torch.Tensor):
            names.append(path)
        elif isinstance(value, (tuple, list)):
            for i, item in enumerate(value):
                walk(item, f"{path}_{i}")
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(item, str(key))

    for name, value in bound.items():
        walk(value, name)
    return names


def dynamic_shapes_for(model: Any, args: tuple[Any, ...], kwargs: dict[str, Any], input_names: list[str], dynamic_axes: dict[str, dict[int, str]]) -> dict[str, Any]:
    """torch.export's dynamic_shapes, shaped like the forward's signature: one entry per parameter.

    A positional or keyword parameter gets its tensor's axes, *varargs a tuple with one entry per
    extra argument, a dict input a dict per key, **kwargs a dict per keyword. Tensors take the ONNX
    input names in flattening order, and their dynamic axes by name.
    """
    import torch

    names = iter(input_names)

    def spec(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            axes = dynamic_axes.get(next(names, ""), {})
            return {axis: torch.export.Dim.DYNAMIC for axis in axes} or None
        if isinstance(value, (tuple, list)):
            return type(value)(spec(item) for item in value)
        if isinstance(value, dict):
            return {key: spec(item) for key, item in value.items()}
        return None

    signature = inspect.signature(model.forward)
    return {name: spec(value) for name, value in signature.bind(*args, **kwargs).arguments.items()}


def _keyword_dict_inputs(model: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """torch.onnx.export reads a trailing dict in args as keyword inputs; a dict-valued parameter goes in kwargs by name instead."""
    signature = inspect.signature(model.forward)
    bound = signature.bind(*args, **kwargs).arguments
    args, kwargs = tuple(args), dict(kwargs)
    while args and isinstance(args[-1], dict):
        name = list(bound)[len(args) - 1]
        if signature.parameters[name].kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD:
            break
        kwargs = {name: args[-1], **kwargs}
        args = args[:-1]
    return args, kwargs


def _flat_module(model: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, tuple[Any, ...]]:
    """The legacy exporter traces positional tensors only: a module taking every example tensor positionally,
    in flattening order, that rebuilds the forward's own arguments (keyword-only, dicts, nested tuples)."""
    import torch
    from torch.utils import _pytree

    leaves, structure = _pytree.tree_flatten((args, kwargs))
    slots = [i for i, leaf in enumerate(leaves) if isinstance(leaf, torch.Tensor)]

    class Flat(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: torch.Tensor) -> Any:
            filled = list(leaves)
            for slot, tensor in zip(slots, tensors):
                filled[slot] = tensor
            call_args, call_kwargs = _pytree.tree_unflatten(filled, structure)
            return self.model(*call_args, **call_kwargs)

    return Flat().eval(), tuple(leaves[i] for i in slots)


def load_factory(entry: str, default_names: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """The user's `file.py:function`, called and normalized (model, args, kwargs, input and output names).

    verify runs the module itself as the reference; FactoryError says in one line what is wrong.
    """
    return normalize_entry(_load_entry(entry), entry, default_names)


def check_torch(spec: dict[str, Any]) -> dict[str, Any]:
    """Load the factory once and say what it gave: the engine refuses a bad one before any attempt."""
    entry = normalize_entry(_load_entry(spec["source"]), spec["source"], spec.get("names"))
    info = {k: entry[k] for k in ("form", "input_names", "output_names", "input_names_from", "tensors")}
    if spec.get("shapes"):  # the export pipeline names dynamic axes by role from these, before any export
        info.update(_example_shapes(entry))
    return info


def _example_shapes(entry: dict[str, Any]) -> dict[str, Any]:
    """Shapes and dtypes of the example inputs and of the module's outputs on them (one eager call)."""
    import torch
    from torch.utils import _pytree

    inputs = [leaf for leaf in _pytree.tree_leaves((entry["args"], entry["kwargs"])) if isinstance(leaf, torch.Tensor)]
    with torch.no_grad():
        outputs = [leaf for leaf in _pytree.tree_leaves(entry["model"].eval()(*entry["args"], **entry["kwargs"])) if isinstance(leaf, torch.Tensor)]

    def describe(tensors: list[Any]) -> list[dict[str, Any]]:
        return [{"shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch.")} for t in tensors]

    return {"input_shapes": describe(inputs), "output_shapes": describe(outputs)}


def export_torch(spec: dict[str, Any]) -> None:
    settings = spec["settings"]
    entry = normalize_entry(_load_entry(spec["source"]), spec["source"], spec.get("names"))  # the factory's own output first
    import torch

    _show_tracer_warnings()
    model = entry["model"].eval()
    args, kwargs = entry["args"], entry["kwargs"]
    out = Path(spec["out"]) / "model.onnx"
    input_names, output_names = entry["input_names"], entry["output_names"]
    _log(f"factory form {entry['form']}: {entry['tensors']} input tensors, input names from {entry['input_names_from']}")
    dynamic_axes = {name: {int(k): v for k, v in axes.items()} for name, axes in settings.get("dynamic_axes", {}).items()}
    if settings.get("dynamo"):
        shapes = dynamic_shapes_for(model, args, kwargs, input_names, dynamic_axes)
        args, kwargs = _keyword_dict_inputs(model, args, kwargs)
        size = weight_bytes(model)
        # the legacy exporter decides this itself; dynamo must be told (a plan may also ask for it)
        external = size > INLINE_LIMIT_BYTES or bool(settings.get("external_data"))
        _log(
            f"torch.onnx.export dynamo=True opset={settings.get('opset')} dynamic_shapes for parameters {', '.join(shapes)}"
            f"; weights {size / 1024**2:.0f} MB " + ("in external data (model.onnx.data)" if external else "inline")
        )
        torch.onnx.export(
            model, args, str(out), kwargs=kwargs or None, dynamo=True, external_data=external, dynamic_shapes=shapes,
            input_names=input_names, output_names=output_names or None, opset_version=settings.get("opset"),
        )
    else:
        _log(f"torch.onnx.export dynamo=False opset={settings.get('opset')} dynamic_axes for {len(dynamic_axes)} tensors")
        if kwargs or any(isinstance(a, (dict, list, tuple)) for a in args):
            model, args = _flat_module(model, args, kwargs)
        torch.onnx.export(
            model, args, str(out), dynamo=False, input_names=input_names, output_names=output_names or None,
            dynamic_axes={k: v for k, v in dynamic_axes.items() if k in set(input_names) | set(output_names)} or None,
            opset_version=settings.get("opset") or 17, do_constant_folding=settings.get("constant_folding", True),
        )


def main() -> None:
    check = sys.argv[1] == "--check"
    spec = json.loads(Path(sys.argv[-1]).read_text())
    try:
        if check:
            print(json.dumps(check_torch(spec)), flush=True)
            return
        Path(spec["out"]).mkdir(parents=True, exist_ok=True)
        if spec["exporter"] == "optimum":
            export_optimum(spec)
        elif spec["exporter"] == "torch":
            export_torch(spec)
        else:
            raise SystemExit(f"unknown exporter {spec['exporter']!r}")
    except FactoryError as exc:
        print(f"factory error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(FACTORY_ERROR) from None
    _log("done")


if __name__ == "__main__":
    main()
