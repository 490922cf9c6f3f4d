"""More real optimum exports, built here from tiny configs: no false alarm from inspect or replay.

Each architecture brings something the committed fixtures do not: Whisper's float encoder input
(input_features), Bloom's alibi without position_ids, GPT-BigCode's multi-query cache, Gemma2's
sliding window, Mistral's window shorter than the prompt, M2M100's positions from the pad id.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from onnxdoctor.doctor import diagnose

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _config(arch: str) -> tuple[Any, Any, str, dict[str, Any]]:
    import transformers as t

    if arch == "whisper":
        config = t.WhisperConfig(
            d_model=16, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2,
            encoder_ffn_dim=32, decoder_ffn_dim=32, vocab_size=128, num_mel_bins=8, max_source_positions=16,
            max_target_positions=64, pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=3,
            suppress_tokens=[], begin_suppress_tokens=[],
        )
        return config, t.WhisperForConditionalGeneration, "automatic-speech-recognition-with-past", {"nb_max_frames": 32}
    if arch == "bloom":
        return t.BloomConfig(hidden_size=32, n_layer=2, n_head=4, vocab_size=128), t.BloomForCausalLM, "text-generation-with-past", {}
    if arch == "gpt_bigcode":
        config = t.GPTBigCodeConfig(n_embd=32, n_layer=2, n_head=4, vocab_size=128, n_positions=128, multi_query=True)
        return config, t.GPTBigCodeForCausalLM, "text-generation-with-past", {}
    if arch == "mistral":  # a 3-token window: shorter than verify's and replay's 4-token prompt
        config = t.MistralConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            vocab_size=128, max_position_embeddings=64, sliding_window=3,
        )
        return config, t.MistralForCausalLM, "text-generation-with-past", {}
    if arch == "m2m_100":  # numbers its decoder positions from input_ids != pad_token_id (a small vocabulary: drawn ids would hit it)
        config = t.M2M100Config(
            vocab_size=12, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
            encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=64, pad_token_id=1, bos_token_id=0, eos_token_id=2,
            decoder_start_token_id=2,
        )
        return config, t.M2M100ForConditionalGeneration, "text2text-generation-with-past", {}
    config = t.Gemma2Config(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        head_dim=8, vocab_size=128, max_position_embeddings=128, sliding_window=4,
    )
    return config, t.Gemma2ForCausalLM, "text-generation-with-past", {}


@pytest.mark.parametrize("arch", ["whisper", "bloom", "gpt_bigcode", "gemma2", "mistral", "m2m_100"])
def test_real_export_is_clean(arch: str, tmp_path: Path) -> None:
    """Replayed, and verified against its source with verify's defaults (batch 2 with a left-padded row, a
    4-token prompt: longer than the sliding windows). Found by a sweep: the PyTorch side once cropped sliding
    layers at step 0 (Mistral, Gemma2), could not read GPT-BigCode's cache, and replay drew M2M100's pad id."""
    import torch
    from optimum.exporters.onnx import main_export

    from onnxdoctor.fidelity.verify import verify

    torch.manual_seed(0)
    config, model_class, task, shapes = _config(arch)
    source = tmp_path / "source"
    model_class(config).save_pretrained(source)
    export = tmp_path / "export"
    main_export(model_name_or_path=str(source), output=str(export), task=task, do_validation=False, **shapes)
    for seed in (0, 1):  # other drawn tokens (M2M100: seed 1 drew its pad id before replay avoided it)
        report = diagnose(export, steps=3, seed=seed)
        assert [f"{f.code}: {f.message}" for f in report.problems()] == []
        assert "decodes correctly" in report.verdict
    verified = verify(export, source)
    assert [f"{f.code}: {f.message}" for f in verified.findings if f.severity.value != "info"] == []


def test_fp16_compute_with_fp32_io_is_judged_with_fp16_tolerance(tmp_path: Path) -> None:
    """ORT's float16 converter with keep_io_types: float32 I/O, float16 inside; replay must not hold it to fp32 precision."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from support import FIXTURES

    model = onnx.load(FIXTURES / "optimum-gpt2" / "model.onnx")
    path = tmp_path / "model.onnx"
    onnx.save(convert_float_to_float16(model, keep_io_types=True), path)
    for seed in range(3):
        report = diagnose(path, steps=3, seed=seed)
        assert [f"{f.code}: {f.message}" for f in report.problems()] == []
