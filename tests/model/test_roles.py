"""Role recognition by name across conventions, and user role maps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onnxdoctor.errors import UsageError
from onnxdoctor.model.roles import CacheSlot, guess_role, load_role_map, parse_role_text

FLOAT, INT64, BOOL = 1, 7, 9

# convention -> (past name, present name) templates for (layer, attention, part)
CONVENTIONS = {
    "optimum": ("past_key_values.{i}.{part}", "present.{i}.{part}"),
    "optimum-seq2seq": ("past_key_values.{i}.{att}.{part}", "present.{i}.{att}.{part}"),
    "whisper": ("past_{part}_{attn}_{i}", "present_{part}_{attn}_{i}"),
    "plain": ("past_{part}_{i}", "present_{part}_{i}"),
    "underscored": ("past_key_values_{i}_{part}", "present_{i}_{part}"),
    "generic-cache": ("cache.{i}.{part}.in", "cache.{i}.{part}.out"),
}


def _name(template: str, layer: int, attention: str, part: str) -> str:
    return template.format(
        i=layer, part=part, att="encoder" if attention == "cross" else "decoder", attn=attention
    )


@given(
    convention=st.sampled_from(sorted(CONVENTIONS)),
    layer=st.integers(0, 80),
    attention=st.sampled_from(["self", "cross"]),
    part=st.sampled_from(["key", "value"]),
)
def test_cache_names_of_every_convention(convention: str, layer: int, attention: str, part: str) -> None:
    if convention in ("optimum", "plain", "underscored", "generic-cache"):
        attention = "self"
    past_template, present_template = CONVENTIONS[convention]
    past = guess_role(_name(past_template, layer, attention, part), is_input=True, elem_type=FLOAT, rank=4)
    present = guess_role(_name(present_template, layer, attention, part), is_input=False, elem_type=FLOAT, rank=4)
    assert past.cache == CacheSlot("past", layer, attention, part)
    assert present.cache == CacheSlot("present", layer, attention, part)


@given(layer=st.integers(0, 80))
def test_stacked_legacy_names(layer: int) -> None:
    assert guess_role(f"past_{layer}", is_input=True, elem_type=FLOAT, rank=5).cache == CacheSlot("past", layer, "self", "kv")
    assert guess_role(f"present_{layer}", is_input=False, elem_type=FLOAT, rank=5).cache == CacheSlot("present", layer, "self", "kv")


@pytest.mark.parametrize(
    "name,is_input,expected",
    [
        ("input_ids", True, "input_ids"),
        ("decoder_input_ids", True, "input_ids"),
        ("attention_mask", True, "attention_mask"),
        ("encoder_attention_mask", True, "encoder_attention_mask"),
        ("position_ids", True, "position_ids"),
        ("cache_position", True, "cache_position"),
        ("encoder_hidden_states", True, "encoder_hidden_states"),
        ("use_cache_branch", True, "use_cache_branch"),
        ("logits", False, "logits"),
        ("last_hidden_state", False, "hidden_states"),
        ("kv_heads", True, "other"),  # a cache word but no layer number: not a cache tensor
        ("value_0", True, "other"),  # a layer number but no cache word
    ],
)
def test_simple_roles(name: str, is_input: bool, expected: str) -> None:
    assert guess_role(name, is_input=is_input, elem_type=INT64, rank=2).role == expected


def test_role_map_with_layer_placeholder() -> None:
    role_map = load_role_map("kin_{i}=past.{i}.key,vout_{i}=present.{i}.cross.value,tok=input_ids")
    assert role_map is not None
    assert role_map.lookup("kin_12").cache == CacheSlot("past", 12, "self", "key")  # type: ignore[union-attr]
    assert role_map.lookup("vout_3").cache == CacheSlot("present", 3, "cross", "value")  # type: ignore[union-attr]
    assert role_map.lookup("tok").role == "input_ids"  # type: ignore[union-attr]
    assert role_map.lookup("unrelated") is None


def test_role_map_from_json(tmp_path: Path) -> None:
    path = tmp_path / "roles.json"
    path.write_text(json.dumps({"layer*_k_cache": "past.0.key"}))
    role_map = load_role_map(str(path))
    assert role_map is not None and role_map.lookup("layer7_k_cache") is not None


@pytest.mark.parametrize("spec", ["x=past.key", "x=logit", "novalue", "x=past.{i}.key"])
def test_bad_role_maps_are_usage_errors(spec: str) -> None:
    with pytest.raises(UsageError):
        load_role_map(spec)


def test_parse_role_text() -> None:
    assert parse_role_text("present.2.cross.kv").cache == CacheSlot("present", 2, "cross", "kv")
