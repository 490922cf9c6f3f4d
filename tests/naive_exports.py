"""Seq2seq exports made the way users make them: hand-written wrappers and torch.onnx.export(dynamo=False).

The wrappers follow the field reports: Python control flow on tensors (`use_cache_branch.item()`,
`if dec_key.sum() == 0`) that the tracer evaluates once, so one branch is exported and the inputs
only the other branch read are pruned. Models are tiny random Hugging Face configs, saved with
save_pretrained and loaded back as a user would (no hub).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

LAYERS, HEADS, HEAD_DIM, D_MODEL, VOCAB, ENCODER_LEN = 2, 2, 8, 16, 128, 5
PARTS = (("decoder", "key"), ("decoder", "value"), ("encoder", "key"), ("encoder", "value"))


def tiny_model(arch: str, folder: Path) -> Any:
    """A seeded random Marian / M2M100 / T5, saved to `folder` and loaded back from it."""
    import torch
    import transformers as t

    common = {"vocab_size": VOCAB, "pad_token_id": 1, "eos_token_id": 2, "decoder_start_token_id": 1}
    if arch == "marian":
        config, cls = t.MarianConfig(decoder_vocab_size=VOCAB, max_position_embeddings=64, **_bart_dims(), **common), t.MarianMTModel
    elif arch == "m2m100":
        config, cls = t.M2M100Config(max_position_embeddings=64, **_bart_dims(), **common), t.M2M100ForConditionalGeneration
    else:
        config = t.T5Config(d_model=D_MODEL, d_kv=HEAD_DIM, num_heads=HEADS, d_ff=32, num_layers=LAYERS, num_decoder_layers=LAYERS, **common)
        cls = t.T5ForConditionalGeneration
    torch.manual_seed(0)
    cls(config).save_pretrained(folder)
    return cls.from_pretrained(folder).eval()


def _bart_dims() -> dict[str, int]:
    return {"d_model": D_MODEL, "encoder_layers": LAYERS, "decoder_layers": LAYERS, "encoder_attention_heads": HEADS,
            "decoder_attention_heads": HEADS, "encoder_ffn_dim": 32, "decoder_ffn_dim": 32}


def cache_names(direction: str) -> list[str]:
    base = "past_key_values" if direction == "past" else "present"
    return [f"{base}.{i}.{attention}.{part}" for i in range(LAYERS) for attention, part in PARTS]


def _legacy(past: tuple[Any, ...]) -> tuple[tuple[Any, ...], ...]:
    return tuple(tuple(past[4 * i: 4 * i + 4]) for i in range(LAYERS))


def _flat(cache: Any) -> list[Any]:
    return [tensor for layer in cache.to_legacy_cache() for tensor in layer]


def _wrappers() -> dict[str, type]:
    import torch
    from transformers.cache_utils import DynamicCache, EncoderDecoderCache

    class FrozenCacheBranchDecoder(torch.nn.Module):
        """A 'merged' decoder written by hand: `if use_cache_branch.item():` picks the branch in Python."""

        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, encoder_hidden_states, encoder_attention_mask, use_cache_branch, *past):  # type: ignore[no-untyped-def]
            if use_cache_branch.item():
                cache = EncoderDecoderCache.from_legacy_cache(_legacy(past))
            else:
                cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
            out = self.model(encoder_outputs=(encoder_hidden_states,), attention_mask=encoder_attention_mask,
                             decoder_input_ids=input_ids, past_key_values=cache, use_cache=True)
            return (out.logits, *_flat(out.past_key_values))

    class NoPastBranchDecoder(torch.nn.Module):
        """`if dec_key.sum() == 0:` treats zero dummies as 'no cache yet'; traced with zeros."""

        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, encoder_hidden_states, encoder_attention_mask, *past):  # type: ignore[no-untyped-def]
            dec_key = past[0]
            if dec_key.sum() == 0:
                cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
            else:
                cache = EncoderDecoderCache.from_legacy_cache(_legacy(past))
            out = self.model(encoder_outputs=(encoder_hidden_states,), attention_mask=encoder_attention_mask,
                             decoder_input_ids=input_ids, past_key_values=cache, use_cache=True)
            return (out.logits, *_flat(out.past_key_values))

    class NoCacheDecoder(torch.nn.Module):
        """The whole decoder without any KV cache: logits over every token fed."""

        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, encoder_hidden_states, encoder_attention_mask):  # type: ignore[no-untyped-def]
            out = self.model(encoder_outputs=(encoder_hidden_states,), attention_mask=encoder_attention_mask,
                             decoder_input_ids=input_ids, use_cache=False)
            return out.logits

    class Encoder(torch.nn.Module):
        def __init__(self, model: Any) -> None:
            super().__init__()
            self.encoder = model.get_encoder()

        def forward(self, input_ids, attention_mask):  # type: ignore[no-untyped-def]
            return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    return {"frozen_cache_branch": FrozenCacheBranchDecoder, "no_past_branch": NoPastBranchDecoder,
            "no_cache": NoCacheDecoder, "encoder": Encoder}


def _export(module: Any, args: tuple[Any, ...], path: Path, inputs: list[str], outputs: list[str], axes: dict[str, dict[int, str]]) -> None:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TracerWarnings users ignore too
        torch.onnx.export(module, args, str(path), dynamo=False, input_names=inputs, output_names=outputs,
                          dynamic_axes={k: v for k, v in axes.items() if k in inputs + outputs}, opset_version=17)


def _axes() -> dict[str, dict[int, str]]:
    axes = {
        "input_ids": {0: "batch", 1: "decoder_sequence_length"},
        "encoder_hidden_states": {0: "batch", 1: "encoder_sequence_length"},
        "encoder_attention_mask": {0: "batch", 1: "encoder_sequence_length"},
        "logits": {0: "batch", 1: "decoder_sequence_length"},
    }
    for past, present in zip(cache_names("past"), cache_names("present")):
        cross = ".encoder." in past
        axes[past] = {0: "batch", 2: "encoder_sequence_length_out" if cross else "past_decoder_sequence_length"}
        axes[present] = {0: "batch", 2: "encoder_sequence_length_out" if cross else "past_decoder_sequence_length + 1"}
    return axes


def export_seq2seq(arch: str, wrapper: str, out: Path, *, decoder_file: str, encoder: bool = True, declare: bool = False) -> Path:
    """Export `wrapper` around a tiny `arch` model into `out` (with the encoder and config.json unless told not to).

    `declare` writes the script's input/output names to export_settings.json, as a record of the export.
    """
    import torch

    out.mkdir(parents=True, exist_ok=True)
    model = tiny_model(arch, out.parent / f"{out.name}-source")
    wrappers = _wrappers()
    hidden = torch.randn(1, ENCODER_LEN, D_MODEL)
    mask = torch.ones(1, ENCODER_LEN, dtype=torch.int64)
    if wrapper == "frozen_cache_branch":
        past = [torch.randn(1, HEADS, 3 if attention == "decoder" else ENCODER_LEN, HEAD_DIM) for _ in range(LAYERS) for attention, _ in PARTS]
        args = (torch.tensor([[5]]), hidden, mask, torch.tensor([True]), *past)
        inputs = ["input_ids", "encoder_hidden_states", "encoder_attention_mask", "use_cache_branch", *cache_names("past")]
        outputs = ["logits", *cache_names("present")]
    elif wrapper == "no_past_branch":
        past = [torch.zeros(1, HEADS, 1 if attention == "decoder" else ENCODER_LEN, HEAD_DIM) for _ in range(LAYERS) for attention, _ in PARTS]
        args = (torch.tensor([[1, 5, 6]]), hidden, mask, *past)
        inputs = ["input_ids", "encoder_hidden_states", "encoder_attention_mask", *cache_names("past")]
        outputs = ["logits", *cache_names("present")]
    else:
        args = (torch.tensor([[1, 5, 6]]), hidden, mask)
        inputs, outputs = ["input_ids", "encoder_hidden_states", "encoder_attention_mask"], ["logits"]
    _export(wrappers[wrapper](model), args, out / decoder_file, inputs, outputs, _axes())
    if encoder:
        enc_axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
                    "last_hidden_state": {0: "batch", 1: "sequence"}}
        _export(wrappers["encoder"](model), (torch.tensor([[5, 6, 7, 8, 2]]), mask), out / "encoder_model.onnx",
                ["input_ids", "attention_mask"], ["last_hidden_state"], enc_axes)
        model.config.save_pretrained(out)
    if declare:
        settings = {"exporter": "torch.onnx.export", "flags": {"dynamo": False, "input_names": inputs, "output_names": outputs}}
        (out / "export_settings.json").write_text(json.dumps(settings, indent=2))
    return out
