"""The export a model file belongs to: which file of its folder runs each decoding step.

Some facts are about the folder, not one file. A seq2seq decoder with past inputs needs a
cross-attention cache that some file computes from the encoder output at step 0 (optimum:
`decoder_model.onnx`, or the merged decoder's no-cache branch); presents are only worth returning
if some file takes them back as past inputs. `decoder_with_past_model.onnx` is fine as one file of
its export, but a folder in which nothing computes its cross cache, or nothing takes the presents
back, cannot decode with a cache at all.

The export is the files the user asked about plus, to judge them, the other model files of the
same folder (all of them when a folder was given; the optimum-named ones next to a single file).
Siblings are read without weights and their graphs are traced only when a question needs it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from onnxdoctor.model import roles
from onnxdoctor.model.cache_flow import PresentSource
from onnxdoctor.model.dims import Dim
from onnxdoctor.model.signature import CachePair, Signature

# Files that record how an export was made; their `input_names` are the names the export script declared.
SETTINGS_FILES = ("export_settings.json", "export.json")


@dataclass
class Member:
    """One model file of the export."""

    signature: Signature
    path: Path
    inspected: bool  # False: a sibling read only to judge the folder, not reported on
    present_sources: Callable[[], dict[str, PresentSource]] = field(repr=False, default=dict)


@dataclass
class DeclaredInputs:
    """Input names an export script declared (from the folder's export settings)."""

    names: tuple[str, ...]
    source: str  # the settings file they come from


def _slot(pair: CachePair) -> tuple[int, str]:
    return pair.layer, pair.part


@dataclass
class ExportFolder:
    folder: Path
    members: list[Member]
    declared: DeclaredInputs | None = None

    def member(self, signature: Signature) -> Member | None:
        return next((m for m in self.members if m.signature is signature or m.signature.file == signature.file), None)

    def others(self, signature: Signature) -> list[Member]:
        return [m for m in self.members if m.signature is not signature and m.signature.file != signature.file]

    @property
    def encoder(self) -> Signature | None:
        return next((m.signature for m in self.members if m.signature.kind == "encoder"), None)

    def is_whole_export(self, signature: Signature) -> bool:
        """More than this one file: an encoder or other decoders beside it, so the folder is meant to decode."""
        return bool(self.others(signature))

    # ------------------------------------------------------------------ the cross-attention cache

    def copied_cross_presents(self, signature: Signature) -> list[str]:
        """Cross-attention presents that are their own past input unchanged (Identity, Cast, a one-input Concat)."""
        member = self.member(signature)
        kv = signature.kv
        if member is None or kv is None or not any(p.past and p.present for p in kv.cross_pairs()):
            return []
        sources = member.present_sources()
        copied = []
        for pair in kv.cross_pairs():
            if pair.present is None or pair.past is None:
                continue
            source = sources.get(pair.present.name)
            if source is not None and is_copy(source):
                copied.append(pair.present.name)
        return copied

    def computes_cross_cache(self, signature: Signature) -> bool:
        """Does this file return cross-attention presents computed from the encoder (not copied, not placeholders)?"""
        kv = signature.kv
        if kv is None:
            return False
        presents = [p for p in kv.cross_pairs() if p.present is not None]
        if not presents:
            return False
        if kv.merged:  # the no-cache branch projects encoder_hidden_states; the cache branch returns placeholders
            return signature.input(roles.ENCODER_HIDDEN_STATES) is not None
        if all(p.past is None for p in presents):
            return True
        member = self.member(signature)
        sources = member.present_sources() if member is not None else {}
        copied = set(self.copied_cross_presents(signature))
        return any(
            p.past is None or (p.present.name not in copied and getattr(sources.get(p.present.name), "kind", None) != "constant")
            for p in presents
            if p.present is not None
        )

    def cross_cache_source(self, signature: Signature) -> Signature | None:
        """The file that computes this decoder's cross-attention cache (itself for a merged decoder), if any."""
        kv = signature.kv
        if kv is None:
            return None
        needed = {_slot(p) for p in kv.cross_pairs() if p.past is not None}
        if not needed:
            return None
        candidates = [signature] + [m.signature for m in self.others(signature)]
        for candidate in candidates:
            if candidate.kv is None or not self.computes_cross_cache(candidate):
                continue
            made = {_slot(p) for p in candidate.kv.cross_pairs() if p.present is not None}
            if needed <= made:
                return candidate
        return None

    # ------------------------------------------------------------------ presents taken back

    def presents_taker(self, signature: Signature) -> Signature | None:
        """A file whose past inputs receive this file's self-attention presents at the next step."""
        kv = signature.kv
        if kv is None:
            return None
        returned = {_slot(p) for p in kv.self_pairs() if p.present is not None}
        if not returned:
            return None
        own = {_slot(p) for p in kv.self_pairs() if p.past is not None}
        if returned <= own:
            return signature
        for member in self.others(signature):
            other = member.signature.kv
            if other is not None and returned <= {_slot(p) for p in other.self_pairs() if p.past is not None}:
                return member.signature
        return None

    def untaken_presents(self, signature: Signature) -> UntakenPresents | None:
        """A no-past decoder's presents that no file of the export takes back, and how clearly a cache was meant."""
        kv = signature.kv
        if kv is None or kv.mode != "no_past" or not kv.self_pairs() or self.presents_taker(signature) is not None:
            return None
        declared_pasts = [n for n, role in self.declared_missing_roles(signature).items() if role.startswith("past")]
        return UntakenPresents(
            presents=[p.present.name for p in kv.pairs if p.present is not None],
            orphan_symbols=orphan_past_symbols(signature),
            declared_pasts=declared_pasts,
            others=[m.signature.file for m in self.others(signature)],
        )

    # ------------------------------------------------------------------ inputs the trace dropped

    def declared_missing_roles(self, signature: Signature) -> dict[str, str]:
        """Declared-but-missing input name -> the role its name says (what the missing input was for)."""
        result = {}
        for name in self.declared_but_missing(signature):
            guess = roles.guess_role(name, is_input=True, elem_type=0, rank=None)
            result[name] = guess.cache.describe() if guess.cache else guess.role
        return result

    def declared_but_missing(self, signature: Signature) -> list[str]:
        """Declared input names this decoder's graph lacks, when the declaration is about this file."""
        if self.declared is None or signature.kind != "decoder":
            return []
        names = set(self.declared.names)
        graph_inputs = [t.name for t in signature.inputs]
        if not graph_inputs or not set(graph_inputs) <= names:
            return []  # the declaration lists another file's inputs
        return [n for n in self.declared.names if n not in set(graph_inputs)]


@dataclass(frozen=True)
class UntakenPresents:
    presents: list[str]
    orphan_symbols: list[str]  # past lengths the presents' dims name and no input carries
    declared_pasts: list[str]  # declared past inputs the graph lacks
    others: list[str]  # the other files of the export

    @property
    def cache_meant(self) -> bool:
        """The folder clearly meant a cache: files beside this one, or declared past inputs the graph lacks.

        A no-past file alone is a step-0 component (optimum's decoder_model.onnx copied on its own); dims that
        name a past length are no evidence then, since optimum names its step-0 presents that way too.
        """
        return bool(self.others or self.declared_pasts)


def is_copy(source: PresentSource) -> bool:
    """The present is its past unchanged: a pass-through, or a Concat whose only operand is the past."""
    if source.kind == "passthrough":
        return True
    if source.kind == "concat" and source.node is not None:
        return len([name for name in source.node.input if name]) == 1
    return False


def orphan_past_symbols(signature: Signature) -> list[str]:
    """Dim symbols of the presents' cache axis that no input carries, e.g. `past_decoder_sequence_length + 1`
    in a graph without past inputs: the dims were declared for past inputs the export no longer has."""
    kv = signature.kv
    if kv is None:
        return []
    carried: set[str] = set()
    for tensor in signature.inputs:
        for dim in tensor.dims or ():
            carried |= _symbols(dim)
    orphans: list[str] = []
    for pair in kv.self_pairs():
        if pair.present is None or pair.present.dims is None or pair.axes is None or pair.axes.cache >= len(pair.present.dims):
            continue
        for symbol in sorted(_symbols(pair.present.dims[pair.axes.cache]) - carried):
            if symbol not in orphans:
                orphans.append(symbol)
    return orphans


def _symbols(dim: Dim) -> set[str]:
    linear = dim.linear
    if linear is not None:
        return set(linear.symbols)
    return {dim.param} if dim.param else set()


def read_declared_inputs(folder: Path) -> DeclaredInputs | None:
    """`input_names` from the folder's export settings (top level or under `flags`), if any."""
    for name in SETTINGS_FILES:
        path = folder / name
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict):
            continue
        flags = data.get("flags") if isinstance(data.get("flags"), dict) else {}
        names = data.get("input_names", flags.get("input_names"))
        if isinstance(names, list) and names and all(isinstance(n, str) for n in names):
            return DeclaredInputs(tuple(names), name)
    return None
