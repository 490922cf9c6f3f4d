"""PyTorch backends: the model an export came from, fed the same feeds as the export, through the driver.

`HFBackend` maps a call's feeds (named and shaped by the export's Signature) onto a transformers
model and its cache classes (DynamicCache, EncoderDecoderCache), and returns its outputs under the
export's output names (logits, present.L.key, ...), so every comparison is name for name. Attention
runs eagerly (`attn_implementation="eager"`), the reference implementation.
`FactoryBackend` calls a user's module the way torch.onnx called it: the inputs in `input_names`
order, the outputs named by `output_names`.

torch, transformers and peft are imported here only (the `export` extra).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from onnxdoctor.driver.backend import Backend
from onnxdoctor.errors import UnusableInputError, UsageError
from onnxdoctor.model import roles
from onnxdoctor.model.signature import CachePair, Signature

EXTRA = "pip install 'onnxdoctor[export]'"


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise UsageError(f"verifying against a PyTorch source needs torch and transformers: {EXTRA}") from None
    return torch


def _to_hf_layout(pair: CachePair, value: np.ndarray) -> np.ndarray:
    """An export's cache tensor as transformers holds it: [batch, kv_heads, length, head_dim]."""
    axes = pair.axes
    if axes is None or axes.heads is None or axes.stack is not None or value.ndim != 4:
        raise UsageError(
            f"{pair.any.name}: the PyTorch backend maps 4-d caches with a heads axis only (this one has layout "
            f"{axes.to_dict() if axes else 'unknown'})"
        )
    return np.transpose(value, (axes.batch, axes.heads, axes.cache, axes.head_dim))


def _from_hf_layout(pair: CachePair, value: np.ndarray) -> np.ndarray:
    axes = pair.axes
    assert axes is not None and axes.heads is not None
    order = [axes.batch, axes.heads, axes.cache, axes.head_dim]
    inverse = [order.index(i) for i in range(4)]
    return np.transpose(value, inverse)


def describe_source(source: Path) -> dict[str, Any]:
    """Layers, heads, vocab of a Hugging Face folder's config.json (checked against the export first)."""
    try:
        config = json.loads((source / "config.json").read_text())
    except FileNotFoundError:
        raise UnusableInputError(source, "not a Hugging Face model folder: no config.json") from None
    except (OSError, ValueError) as exc:
        raise UnusableInputError(source, f"config.json does not load: {exc}") from None
    return config


class HFBackend(Backend):
    """A local Hugging Face model folder (decoder-only or encoder-decoder), optionally with a LoRA adapter merged."""

    name = "pytorch"
    check_declarations = False

    def __init__(self, source: Path, *, adapter: Path | None = None, dtype: str = "float32") -> None:
        super().__init__()
        self.source = Path(source)
        self.adapter = Path(adapter) if adapter is not None else None
        self.dtype = dtype
        self.model: Any = None
        self.config: Any = None
        self._encoder_outputs: Any = None

    def activate_impl(self) -> None:
        torch = _torch()
        import transformers

        describe_source(self.source)
        try:
            self.config = transformers.AutoConfig.from_pretrained(self.source)
            auto = transformers.AutoModelForSeq2SeqLM if getattr(self.config, "is_encoder_decoder", False) else transformers.AutoModelForCausalLM
            if type(self.config) in transformers.AutoModelForSpeechSeq2Seq._model_mapping and type(self.config) not in auto._model_mapping:
                auto = transformers.AutoModelForSpeechSeq2Seq  # Whisper: an encoder of audio features
            model = auto.from_pretrained(self.source, attn_implementation="eager", dtype=getattr(torch, self.dtype))
        except Exception as exc:  # noqa: BLE001 - transformers raises OSError, ValueError, KeyError, ...
            raise UnusableInputError(self.source, f"the source model does not load: {_first_line(exc)}") from None
        if self.adapter is not None:
            model = merge_adapter(model, self.adapter)
        self.model = model.eval()

    def deactivate_impl(self) -> None:
        self.model = None

    # ------------------------------------------------------------------ calls
    def infer_impl(self, signature: Signature, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = _torch()
        with torch.no_grad():
            if signature.kind == "encoder":
                return self._encode(signature, feeds)
            return self._decode(signature, feeds)

    def _tensor(self, value: np.ndarray) -> Any:
        torch = _torch()
        array = np.ascontiguousarray(value)
        if np.issubdtype(array.dtype, np.floating):
            return torch.from_numpy(array.astype(np.float32)).to(self.model.dtype)
        if array.dtype == np.bool_:
            return torch.from_numpy(array)
        return torch.from_numpy(array.astype(np.int64))

    def _encode(self, signature: Signature, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        encoder = self.model.get_encoder()
        kwargs: dict[str, Any] = {}
        for tensor in signature.inputs:
            value = self._tensor(feeds[tensor.name])
            if tensor.role == roles.INPUT_IDS:
                kwargs["input_ids"] = value
            elif tensor.role == roles.ATTENTION_MASK:
                kwargs["attention_mask"] = value
            else:
                kwargs[tensor.name] = value  # input_features, pixel_values: named as the model names them
        hidden = encoder(**kwargs).last_hidden_state
        self._encoder_outputs = hidden
        out = next((t for t in signature.outputs if t.role == roles.HIDDEN_STATES), signature.outputs[0])
        return {out.name: hidden.float().numpy()}

    def _cache(self, pairs: list[CachePair], feeds: dict[str, np.ndarray]) -> Any:
        """A DynamicCache holding the fed pasts (None when they are empty)."""
        from transformers import DynamicCache

        layers: dict[int, dict[str, Any]] = {}
        for pair in pairs:
            if pair.past is None or pair.past.name not in feeds:
                continue
            value = _to_hf_layout(pair, feeds[pair.past.name])
            layers.setdefault(pair.layer, {})[pair.part] = self._tensor(value)
        if not layers or all(v["key"].shape[2] == 0 for v in layers.values() if "key" in v):
            return None
        data = [(layers[i]["key"], layers[i]["value"]) for i in sorted(layers)]
        # full-length layers: the model applies any sliding window through its mask, and the export's
        # presents (full length) map one to one; a config-built cache would crop sliding layers
        return DynamicCache(data)

    def _decode(self, signature: Signature, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from transformers import DynamicCache, EncoderDecoderCache

        kv = signature.kv
        self_pairs = kv.self_pairs() if kv else []
        cross_pairs = kv.cross_pairs() if kv else []
        kwargs: dict[str, Any] = {"use_cache": True, "return_dict": True}
        seq2seq = bool(getattr(self.config, "is_encoder_decoder", False))
        use_cache = True
        for tensor in signature.inputs:
            value = feeds.get(tensor.name)
            if value is None:
                continue
            if tensor.role == roles.INPUT_IDS:
                kwargs["decoder_input_ids" if seq2seq else "input_ids"] = self._tensor(value)
            elif tensor.role == roles.ATTENTION_MASK:
                kwargs["decoder_attention_mask" if seq2seq else "attention_mask"] = self._tensor(value)
            elif tensor.role == roles.POSITION_IDS:
                kwargs["position_ids"] = self._tensor(value)
            elif tensor.role == roles.ENCODER_HIDDEN_STATES:
                kwargs["encoder_outputs"] = (self._tensor(value),)
            elif tensor.role == roles.ENCODER_ATTENTION_MASK:
                kwargs["attention_mask"] = self._tensor(value)
            elif tensor.role == roles.USE_CACHE_BRANCH:
                use_cache = bool(np.asarray(value).reshape(-1)[0])
        self_cache = self._cache(self_pairs, feeds) if use_cache else None
        cross_cache = self._cache(cross_pairs, feeds) if use_cache else None
        if seq2seq:
            if self_cache is not None or cross_cache is not None:
                kwargs["past_key_values"] = EncoderDecoderCache(self_cache or DynamicCache(), cross_cache or DynamicCache())
        else:
            # at step 0 too (and a merged decoder's no-cache branch): an empty cache of full-length layers.
            # Given none, transformers builds one from the config, which keeps only the last sliding_window - 1
            # positions of sliding layers: the next step's mask (full length, as the export takes it) no longer fits
            kwargs["past_key_values"] = self_cache if self_cache is not None else DynamicCache()
        if seq2seq and "encoder_outputs" not in kwargs:
            # a with-past file reads the encoder through its cross cache; transformers still wants the
            # encoder's output, which this backend computed at the encoder call of the same decode
            if self._encoder_outputs is None:
                raise UsageError(f"{signature.file}: a seq2seq decoder call before any encoder call")
            kwargs["encoder_outputs"] = (self._encoder_outputs,)
        result = self.model(**kwargs)
        outputs: dict[str, np.ndarray] = {}
        logits = signature.output(roles.LOGITS)
        if logits is not None:
            value = result.logits.float().numpy()
            outputs[logits.name] = value[:, -1] if logits.rank == 2 and value.ndim == 3 else value
        cache = result.past_key_values
        # some decoder-only models return an EncoderDecoderCache too (GPTBigCode in transformers 4.57)
        paired = seq2seq or hasattr(cache, "self_attention_cache")
        self_out = cache.self_attention_cache if paired else cache
        cross_out = cache.cross_attention_cache if seq2seq else None
        for pairs, held in ((self_pairs, self_out), (cross_pairs, cross_out)):
            if held is None:
                continue
            legacy = _layers(held)
            for pair in pairs:
                if pair.present is None or pair.layer >= len(legacy):
                    continue
                key, value = legacy[pair.layer]
                tensor = key if pair.part == "key" else value
                outputs[pair.present.name] = _from_hf_layout(pair, tensor.float().numpy()).astype(np.float32)
        return outputs


def _layers(cache: Any) -> list[tuple[Any, Any]]:
    """(key, value) per layer of a transformers cache object (4.5x `layers`, or the legacy lists)."""
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers if getattr(layer, "keys", None) is not None]
    if hasattr(cache, "key_cache"):
        return list(zip(cache.key_cache, cache.value_cache))
    return [tuple(layer) for layer in cache]  # type: ignore[misc]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def merge_adapter(model: Any, adapter: Path) -> Any:
    """The LoRA adapter merged into `model` with peft; an adapter that does not fit is unusable input."""
    try:
        from peft import PeftModel
    except ImportError:
        raise UsageError(f"merging a LoRA adapter needs peft: {EXTRA}") from None
    if not (adapter / "adapter_config.json").is_file():
        raise UnusableInputError(adapter, "not a peft adapter folder: no adapter_config.json")
    try:
        return PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    except Exception as exc:  # noqa: BLE001 - size mismatches, missing target modules, bad files
        raise UnusableInputError(adapter, f"the LoRA adapter does not fit this model: {_first_line(exc)}") from None


class FactoryBackend(Backend):
    """A user's `file.py:function` (as `fix` takes it): the module called the way torch.onnx called it.

    The feeds replace the example inputs leaf by leaf, in the order the exporter flattened them (the
    factory's input names), inside the same structure (tuples for `*past`, dicts, keywords); outputs
    are named by the factory's output names.
    """

    name = "pytorch-factory"
    check_declarations = False

    def __init__(self, entry: dict[str, Any]) -> None:
        super().__init__()
        self.module = entry["model"].eval()
        self.args = entry["args"]
        self.kwargs = entry["kwargs"]
        self.input_names: list[str] = entry["input_names"]
        self.output_names: list[str] = entry["output_names"]

    def infer_impl(self, signature: Signature, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import inspect

        torch = _torch()
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise UsageError(f"the factory's input names {missing} are not inputs of {signature.file}")
        names = iter(self.input_names)

        def rebuild(value: Any) -> Any:
            if isinstance(value, torch.Tensor):
                return torch.from_numpy(np.ascontiguousarray(feeds[next(names)]))
            if isinstance(value, (tuple, list)):
                return type(value)(rebuild(item) for item in value)
            if isinstance(value, dict):
                return {key: rebuild(item) for key, item in value.items()}
            return value

        bound = inspect.signature(self.module.forward).bind(*self.args, **self.kwargs)
        for key, value in list(bound.arguments.items()):
            bound.arguments[key] = rebuild(value)
        with torch.no_grad():
            result = self.module(*bound.args, **bound.kwargs)
        flat = list(_flatten(result))
        return {name: value.detach().float().numpy() for name, value in zip(self.output_names, flat)}


def _flatten(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        for item in value:
            yield from _flatten(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _flatten(item)
    else:
        yield value
