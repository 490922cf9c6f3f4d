"""Role names and the recognition of inputs and outputs by name: the one place that knows conventions.

Conventions recognized for cache tensors (layer i):
- optimum / onnxruntime-genai: `past_key_values.{i}.key`, `present.{i}.value`,
  seq2seq `past_key_values.{i}.decoder.key`, `present.{i}.encoder.value`
- ORT Whisper / T5 beam search: `past_key_self_{i}`, `present_value_cross_{i}`
- plain: `past_key_{i}`, `present_value_{i}`
- legacy stacked GPT-2: `past_{i}`, `present_{i}` holding key and value in one [2, ...] tensor
- anything tokenized with a cache word (past, present, cache, kv) and exactly one layer number,
  and whatever a user names with a role map.
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass
from pathlib import Path

from onnxdoctor.errors import UsageError

INPUT_IDS = "input_ids"
INPUTS_EMBEDS = "inputs_embeds"
ATTENTION_MASK = "attention_mask"
POSITION_IDS = "position_ids"
CACHE_POSITION = "cache_position"
TOKEN_TYPE_IDS = "token_type_ids"
ENCODER_HIDDEN_STATES = "encoder_hidden_states"
ENCODER_ATTENTION_MASK = "encoder_attention_mask"
USE_CACHE_BRANCH = "use_cache_branch"
LOGITS = "logits"
HIDDEN_STATES = "hidden_states"
PAST = "past"
PRESENT = "present"
OTHER = "other"

SIMPLE_ROLES = (
    INPUT_IDS,
    INPUTS_EMBEDS,
    ATTENTION_MASK,
    POSITION_IDS,
    CACHE_POSITION,
    TOKEN_TYPE_IDS,
    ENCODER_HIDDEN_STATES,
    ENCODER_ATTENTION_MASK,
    USE_CACHE_BRANCH,
    LOGITS,
    HIDDEN_STATES,
    OTHER,
)

_INPUT_NAMES: dict[str, str] = {
    "input_ids": INPUT_IDS,
    "decoder_input_ids": INPUT_IDS,
    "ids": INPUT_IDS,
    "token_ids": INPUT_IDS,
    "tokens": INPUT_IDS,
    "input_tokens": INPUT_IDS,
    "inputs_embeds": INPUTS_EMBEDS,
    "decoder_inputs_embeds": INPUTS_EMBEDS,
    "attention_mask": ATTENTION_MASK,
    "decoder_attention_mask": ATTENTION_MASK,
    "mask": ATTENTION_MASK,
    "position_ids": POSITION_IDS,
    "decoder_position_ids": POSITION_IDS,
    "positions": POSITION_IDS,
    "cache_position": CACHE_POSITION,
    "cache_positions": CACHE_POSITION,
    "token_type_ids": TOKEN_TYPE_IDS,
    "encoder_hidden_states": ENCODER_HIDDEN_STATES,
    "encoder_outputs": ENCODER_HIDDEN_STATES,
    "encoder_output": ENCODER_HIDDEN_STATES,
    "encoder_last_hidden_state": ENCODER_HIDDEN_STATES,
    "audio_features": ENCODER_HIDDEN_STATES,
    "encoder_attention_mask": ENCODER_ATTENTION_MASK,
    "use_cache_branch": USE_CACHE_BRANCH,
}

_OUTPUT_NAMES: dict[str, str] = {
    "logits": LOGITS,
    "lm_logits": LOGITS,
    "next_token_logits": LOGITS,
    "output_logits": LOGITS,
    "last_hidden_state": HIDDEN_STATES,
    "hidden_states": HIDDEN_STATES,
    "encoder_last_hidden_state": HIDDEN_STATES,
}


@dataclass(frozen=True)
class CacheSlot:
    """Which cache tensor a past input or present output is."""

    direction: str  # past | present
    layer: int
    attention: str  # self | cross
    part: str  # key | value | kv (key and value stacked on a leading axis of size 2)

    @property
    def key(self) -> tuple[int, str, str]:
        """What pairs a past with its present: layer, attention and part."""
        return (self.layer, self.attention, self.part)

    def describe(self) -> str:
        attention = " cross" if self.attention == "cross" else ""
        part = "key+value" if self.part == "kv" else self.part
        return f"{self.direction} L{self.layer}{attention} {part}"

    def to_text(self) -> str:
        return f"{self.direction}.{self.layer}.{self.attention}.{self.part}"


@dataclass(frozen=True)
class RoleGuess:
    role: str
    cache: CacheSlot | None = None
    source: str = "name"  # name | map | shape


_PART_WORDS = {"key": "key", "k": "key", "keys": "key", "value": "value", "v": "value", "values": "value"}
_CROSS_WORDS = {"cross", "encoder", "enc", "memory"}
_SELF_WORDS = {"self", "decoder", "dec"}
_PAST_WORDS = {"past", "pkv", "layer_past", "cache", "kv", "kvcache", "past_kv"}
_PRESENT_WORDS = {"present", "new", "updated", "cache", "kv", "kvcache", "present_kv", "next"}

_EXPLICIT = [
    # optimum / genai: past_key_values.0.key, present.0.decoder.value, past_key_values_0_key
    re.compile(
        r"^(?P<dir>past_key_values|past|present|present_key_values)[._](?P<layer>\d+)[._]"
        r"(?:(?P<att>decoder|encoder|self|cross)[._])?(?P<part>key|value)$"
    ),
    # ORT whisper: past_key_self_0, present_value_cross_1
    re.compile(r"^(?P<dir>past|present)_(?P<part>key|value)_(?P<att>self|cross)_(?P<layer>\d+)$"),
    # plain: past_key_0, present_values_1
    re.compile(r"^(?P<dir>past|present)_(?P<part>key|value)s?_(?P<layer>\d+)$"),
    # legacy stacked GPT-2: past_0, present_1
    re.compile(r"^(?P<dir>past|present)_(?P<layer>\d+)$"),
]


def _slot_from_match(match: re.Match[str], is_input: bool) -> CacheSlot:
    direction = "present" if match["dir"].startswith("present") else "past"
    if not is_input and direction == "past":
        direction = "present"  # an output named like a past is what the next step feeds back
    attention = "cross" if match.groupdict().get("att") in ("encoder", "cross") else "self"
    part = match.groupdict().get("part") or "kv"
    return CacheSlot(direction, int(match["layer"]), attention, part)


def _tokens(name: str) -> list[str]:
    spaced = re.sub(r"(\d+)", r" \1 ", name.lower())
    return [t for t in re.split(r"[\s._/:\-]+", spaced) if t]


def _generic_slot(name: str, is_input: bool, rank: int | None) -> CacheSlot | None:
    """Fallback for unknown conventions: a cache word, exactly one layer number, key/value words."""
    tokens = _tokens(name)
    joined = set(tokens) | {"_".join(tokens[i : i + 2]) for i in range(len(tokens) - 1)}
    direction_words = _PAST_WORDS if is_input else _PRESENT_WORDS
    if not joined & direction_words and not ({"past", "present"} & joined):
        return None
    numbers = [t for t in tokens if t.isdigit()]
    if len(numbers) != 1:
        return None
    parts = {_PART_WORDS[t] for t in tokens if t in _PART_WORDS}
    if len(parts) == 1:
        part = parts.pop()
    elif rank == 5 and (not parts or parts == {"key", "value"}):
        part = "kv"  # `past_key_values_0` of rank 5: key and value stacked
    else:
        return None
    attention = "cross" if set(tokens) & _CROSS_WORDS else "self"
    return CacheSlot("past" if is_input else "present", int(numbers[0]), attention, part)


def guess_role(name: str, *, is_input: bool, elem_type: int, rank: int | None) -> RoleGuess:
    """The role of one graph input or output, from its name (and type where names are generic)."""
    lowered = name.lower()
    table = _INPUT_NAMES if is_input else _OUTPUT_NAMES
    if lowered in table:
        return RoleGuess(table[lowered])
    for pattern in _EXPLICIT:
        match = pattern.match(lowered)
        if match:
            slot = _slot_from_match(match, is_input)
            if slot.part == "kv" and rank is not None and rank != 5:
                break  # `past_0` of rank 4 is not the stacked [2, b, h, s, d] layout: dynamo's default varargs name
            return RoleGuess(slot.direction, slot)
    generic = _generic_slot(name, is_input, rank)
    if generic is not None:
        return RoleGuess(generic.direction, generic)
    if is_input and elem_type == 9 and rank == 1:  # BOOL[1]: the merged decoder's branch switch
        return RoleGuess(USE_CACHE_BRANCH, source="shape")
    return RoleGuess(OTHER)


# ---------------------------------------------------------------- user role maps


_ROLE_TEXT = re.compile(
    r"^(?P<dir>past|present)\.(?P<layer>\d+|\{i\})(?:\.(?P<att>self|cross))?\.(?P<part>key|value|kv)$"
)


@dataclass(frozen=True)
class RoleMap:
    """User-given roles: exact names or glob patterns (with `{i}` for the layer) -> role text."""

    entries: tuple[tuple[str, str], ...]

    def lookup(self, name: str) -> RoleGuess | None:
        for pattern, role_text in self.entries:
            layer = _match_pattern(pattern, name)
            if layer is None:
                continue
            return parse_role_text(role_text, layer=layer if layer >= 0 else None, origin=pattern)
        return None


def _match_pattern(pattern: str, name: str) -> int | None:
    """-1 for a match without a layer number, the layer for `{i}` patterns, None for no match."""
    if "{i}" in pattern:
        regex = "^" + re.escape(pattern).replace(re.escape("{i}"), r"(\d+)").replace(r"\*", ".*") + "$"
        match = re.match(regex, name)
        return int(match.group(1)) if match else None
    if pattern == name or fnmatch.fnmatchcase(name, pattern):
        return -1
    return None


def parse_role_text(text: str, *, layer: int | None = None, origin: str = "") -> RoleGuess:
    """`input_ids`, `logits`, `past.3.key`, `present.{i}.cross.value`, `past.0.kv` -> RoleGuess."""
    cleaned = text.strip().lower()
    if cleaned in SIMPLE_ROLES:
        return RoleGuess(cleaned, source="map")
    match = _ROLE_TEXT.match(cleaned)
    if match is None:
        known = ", ".join(SIMPLE_ROLES)
        raise UsageError(
            f"role map entry {origin!r}: unknown role {text!r}; use one of {known}, "
            "or past.LAYER.[self|cross.]key|value|kv (LAYER may be {i})"
        )
    if match["layer"] == "{i}":
        if layer is None:
            raise UsageError(f"role map entry {origin!r}: role {text!r} uses {{i}} but the name has no {{i}}")
        layer_number = layer
    else:
        layer_number = int(match["layer"])
    slot = CacheSlot(match["dir"], layer_number, match["att"] or "self", match["part"])
    return RoleGuess(slot.direction, slot, source="map")


def load_role_map(spec: str | None) -> RoleMap | None:
    """`--map FILE.json` ({"name or glob": "role"}) or `--map 'name=role,name2=role2'`."""
    if not spec:
        return None
    path = Path(spec)
    if path.suffix.lower() == ".json" or path.is_file():
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UsageError(f"--map: no such file {spec!r}") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UsageError(f"--map {spec!r}: not a JSON object of name -> role ({exc})") from None
        if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
            raise UsageError(f"--map {spec!r}: expected a JSON object mapping names to role strings")
        entries = tuple((str(k), v) for k, v in raw.items())
    else:
        pairs = [item for item in spec.split(",") if item.strip()]
        entries_list = []
        for item in pairs:
            if "=" not in item:
                raise UsageError(f"--map entry {item!r}: expected NAME=ROLE")
            name, role = item.split("=", 1)
            entries_list.append((name.strip(), role.strip()))
        entries = tuple(entries_list)
    for pattern, role_text in entries:  # validate early: a typo is a usage error, not a silent miss
        parse_role_text(role_text, layer=0 if "{i}" in pattern else None, origin=pattern)
    return RoleMap(entries)
