"""Export-folder checks (ODS014-ODS016): every step of the decoding contract has a file to run.

A decoder is judged with the other model files of its folder (model/export.py): a seq2seq decoder
with past inputs needs a file that computes the cross-attention cache from the encoder output at
step 0, and presents need a file that takes them back. Exports made by tracing a wrapper with Python
control flow on tensors lose one branch (and the inputs only it read) without any error; these
checks name what is missing, which inputs were dropped, and the export that keeps both branches.

A with-past file inspected on its own (nothing else in its folder) is a component, not an export:
it stays quiet, and replay synthesizes the cross cache for it as before.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from onnxdoctor.context import Context
from onnxdoctor.findings import Finding, Rule, Severity, register
from onnxdoctor.inspectors import inspector
from onnxdoctor.model import roles
from onnxdoctor.model.signature import Signature

FROZEN_BRANCH = (
    "Python control flow on a tensor in the export wrapper (`if use_cache_branch.item():`, `if past.sum() == 0:`) "
    "is evaluated once while tracing, so only the branch the dummy inputs took is exported and the exporter prunes "
    "the inputs nothing in that branch reads"
)
REEXPORT = (
    "Re-export with both branches: optimum (`optimum-cli export onnx --task text2text-generation-with-past`, or "
    "`text-generation-with-past`) writes a merged decoder whose If on use_cache_branch keeps the no-cache and the "
    "cache branch, or decoder_model.onnx + decoder_with_past_model.onnx; with torch.onnx, export one wrapper per "
    "branch, without Python control flow on tensors"
)

CROSS_NOT_COMPUTED = register(
    Rule(
        "ODS014",
        "cross-cache-not-computed",
        Severity.ERROR,
        "a seq2seq decoder needs a cross-attention cache that no file of its export computes from the encoder output",
        what="A seq2seq decoder takes the cross-attention cache (past_key_values.*.encoder.*) as inputs, and no model "
        "file of the export computes it from the encoder output: the decoder's own cross-attention presents are those "
        "inputs passed through unchanged (or absent), it has no encoder_hidden_states input, and there is no step-0 "
        "file (optimum's decoder_model.onnx, or a merged decoder's no-cache branch).",
        why="The encoder's K/V projections live in the decoder's weights; if no file runs them, a client can only feed "
        "zeros or made-up values at step 0. Nothing fails: every step decodes with a wrong cross-attention and the "
        "logits are silently wrong. The usual cause is a frozen branch: " + FROZEN_BRANCH + " (encoder_hidden_states, "
        "use_cache_branch).",
        example="A Marian wrapper doing `if use_cache_branch.item():` traced with True: inputs input_ids, "
        "encoder_attention_mask, past_key_values.*; present.0.encoder.key is Concat(past_key_values.0.encoder.key) "
        "alone; encoder_hidden_states and use_cache_branch are gone.",
        fix=REEXPORT + ": the no-past wrapper takes encoder_hidden_states and returns present.*.encoder.*, the with-past "
        "wrapper takes them as past inputs.",
        fix_safety="Needs a re-export; verify with `onnxdoctor replay` on the whole export folder.",
    )
)

CACHE_NOT_TAKEN_BACK = register(
    Rule(
        "ODS015",
        "cache-not-taken-back",
        Severity.ERROR,
        "presents returned but no file of the export takes them back as past inputs",
        what="A decoder returns present outputs but has no past inputs, and no other model file of the export (a "
        "decoder_with_past_model.onnx or a merged decoder) takes those presents as its past inputs. Error when the "
        "folder clearly meant a cache (other files beside it, or declared past inputs the graph lacks); "
        "info for a file on its own (a step-0 component).",
        why="The contract's step n has no file to run: a client that feeds the presents back gets `Invalid input name` "
        "from ONNX Runtime, one that feeds only the new token without them gets wrong logits. The only correct protocol "
        "is to feed the whole prefix every step. Often the cause is a frozen branch: " + FROZEN_BRANCH + " (here the "
        "past inputs).",
        example="An M2M100 wrapper doing `if dec_key.sum() == 0:` traced with zero dummies: decoder_model.onnx returns "
        "present.*.decoder.* with length `past_decoder_sequence_length + 1`, takes no past, and the folder has no "
        "decoder_with_past_model.onnx.",
        fix=REEXPORT + "; the with-past wrapper always takes past inputs and is traced with a non-empty dummy past. If "
        "no cache is wanted, drop the presents from output_names and feed the whole prefix every step.",
        fix_safety="Needs a re-export; meanwhile decoding without a cache (the whole prefix every step) is correct.",
    )
)

DROPPED_INPUTS = register(
    Rule(
        "ODS016",
        "dropped-inputs",
        Severity.WARNING,
        "inputs the export declared (or its layout requires) are missing from the graph: the trace dropped them",
        what="The folder's export settings list input names the graph does not have, or the layout shows inputs that "
        "must exist: a merged-style decoder without use_cache_branch, a seq2seq decoder whose cross cache nothing "
        "computes without encoder_hidden_states, presents whose length names a past no input carries.",
        why="torch.onnx's TorchScript exporter removes graph inputs nothing reads in the traced graph, without an "
        "error: input_names simply has more names than the graph has inputs. An input becomes unused when " + FROZEN_BRANCH
        + ". Clients written for the declared inputs then fail (`Invalid input name`) or, worse, decode wrongly.",
        example="input_names = [input_ids, encoder_hidden_states, encoder_attention_mask, use_cache_branch, "
        "past_key_values...]; the graph has input_ids, encoder_attention_mask and the pasts only.",
        fix="Remove the Python control flow on tensors from the export wrapper (one wrapper per branch, or optimum's "
        "merged decoder, which keeps both branches in an If), re-export, and check that every declared name is an input "
        "of the graph (`onnxdoctor inspect` lists them).",
        fix_safety="Needs a re-export.",
    )
)


@dataclass(frozen=True)
class CrossGap:
    """Why a decoder's cross-attention cache has no source in its export."""

    cross_pasts: list[str]
    copied_presents: list[str]
    missing_inputs: list[str]  # encoder_hidden_states / use_cache_branch, when the graph lacks them
    others: list[str]  # the other files of the export, none of which computes it


def _short(names: list[str], limit: int = 2) -> str:
    return ", ".join(names[:limit]) + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def _merged_style_without_switch(signature: Signature) -> bool:
    """Named as optimum's merged decoder, but no If on use_cache_branch: a merged decoder whose branch was traced away."""
    kv = signature.kv
    return signature.file_role == "decoder_merged" and kv is not None and not kv.merged and signature.input(roles.USE_CACHE_BRANCH) is None


def cross_gap(ctx: Context) -> CrossGap | None:
    """The cross-attention cache this decoder needs and its export cannot produce; None when some file computes it,
    or when the file is only a component inspected on its own."""
    export, signature = ctx.export, ctx.signature
    kv = signature.kv
    if export is None or kv is None or signature.kind != "decoder":
        return None
    cross_pasts = [p.past.name for p in kv.cross_pairs() if p.past is not None]
    if not cross_pasts or export.cross_cache_source(signature) is not None:
        return None
    declared = export.declared_missing_roles(signature)
    declared_evidence = any(role in (roles.ENCODER_HIDDEN_STATES, roles.USE_CACHE_BRANCH) for role in declared.values())
    if not (export.is_whole_export(signature) or _merged_style_without_switch(signature) or declared_evidence):
        return None
    missing = []
    if signature.input(roles.ENCODER_HIDDEN_STATES) is None:
        missing.append(next((n for n, r in declared.items() if r == roles.ENCODER_HIDDEN_STATES), "encoder_hidden_states"))
    if _merged_style_without_switch(signature) or any(r == roles.USE_CACHE_BRANCH for r in declared.values()):
        missing.append(next((n for n, r in declared.items() if r == roles.USE_CACHE_BRANCH), "use_cache_branch"))
    others = [m.signature.file for m in export.others(signature)]
    return CrossGap(cross_pasts, export.copied_cross_presents(signature), missing, others)


def cross_gap_finding(ctx: Context) -> Finding | None:
    """ODS014 for this file, or None; replay uses it to refuse inventing the cache."""
    gap = cross_gap(ctx)
    if gap is None:
        return None
    file = ctx.file
    if gap.copied_presents:
        returned = (
            f"its {len(gap.copied_presents)} cross-attention presents ({_short(gap.copied_presents)}) are those inputs "
            "passed through unchanged"
        )
    else:
        returned = "it returns no cross-attention presents"
    lacks = f", it has no {' or '.join(gap.missing_inputs)} input" if gap.missing_inputs else ""
    others = f", and no other file of the export ({', '.join(gap.others)}) returns them" if gap.others else ""
    message = (
        f"no file of this export computes the cross-attention cache {file} needs: its {len(gap.cross_pasts)} "
        f"cross-attention past inputs ({_short(gap.cross_pasts)}) must hold the encoder's K/V from step 0, but "
        f"{returned}{lacks}{others}. A client can only feed zeros or made-up values there, and every step's logits "
        "are silently wrong. "
    )
    if gap.copied_presents or len(gap.missing_inputs) > 1:
        message += "Likely cause: a frozen branch (an If traced away, declared inputs unused): " + FROZEN_BRANCH
    else:
        message += (
            "Likely cause: the step-0 file (optimum: decoder_model.onnx, which takes encoder_hidden_states and returns "
            "present.*.encoder.*) is not in this folder; copy it beside this one, or re-export"
        )
    location = ctx.at("output", gap.copied_presents[0]) if gap.copied_presents else ctx.at("input", gap.cross_pasts[0])
    return CROSS_NOT_COMPUTED.finding(
        message,
        location,
        evidence={
            "cross_pasts": gap.cross_pasts,
            "copied_presents": gap.copied_presents,
            "missing_inputs": gap.missing_inputs,
            "other_files": gap.others,
        },
        remedy={
            "export_setting": "keep_both_branches",
            "exporter": "optimum",
            "task": "text2text-generation-with-past",
            "missing_inputs": gap.missing_inputs,
        },
    )


def _not_taken_back(ctx: Context) -> Iterator[Finding]:
    export, kv = ctx.export, ctx.signature.kv
    gap = export.untaken_presents(ctx.signature) if export is not None and ctx.signature.kind == "decoder" else None
    if gap is None or kv is None:
        return
    beside = f" and no file beside it ({', '.join(gap.others)}) takes them back" if gap.others else ""
    declared_len = next(
        (
            p.present.dims[p.axes.cache]
            for p in kv.self_pairs()
            if p.present is not None and p.present.dims is not None and p.axes is not None and p.axes.cache < len(p.present.dims)
        ),
        None,
    )
    dims = ""
    if gap.orphan_symbols and declared_len is not None:
        dims = (
            f" Their cache length is declared `{declared_len}`, a past length ({', '.join(gap.orphan_symbols)}) that no "
            "input of this graph carries: past inputs were meant and are gone. " + FROZEN_BRANCH[0].upper() + FROZEN_BRANCH[1:] + "."
        )
    if gap.cache_meant:
        consequence = (
            "Feeding them back fails with `Invalid input name`; feeding only the new token without them gives wrong "
            "logits. The only correct protocol with these files is no cache: feed the whole prefix every step."
        )
        severity = Severity.ERROR
    else:
        consequence = (
            "On its own this is a step-0 file: step n needs the file with past inputs (optimum: "
            "decoder_with_past_model.onnx), which is not in this folder."
        )
        severity = Severity.INFO
    yield CACHE_NOT_TAKEN_BACK.finding(
        f"{ctx.file} returns {len(gap.presents)} presents ({_short(gap.presents)}) but has no past inputs{beside} "
        f"(optimum: decoder_with_past_model.onnx, or a merged decoder). {consequence}{dims}",
        ctx.at("output", gap.presents[0]),
        evidence={
            "presents": gap.presents,
            "missing_file": "decoder_with_past_model.onnx (or decoder_model_merged.onnx)",
            "other_files": gap.others,
            "orphan_dim_symbols": gap.orphan_symbols,
            "declared_past_inputs": gap.declared_pasts,
        },
        remedy={"export_setting": "with_past", "exporter": "optimum", "task_suffix": "-with-past"},
        severity=severity,
    )


def _dropped_inputs(ctx: Context, gap: CrossGap | None) -> Iterator[Finding]:
    export, signature = ctx.export, ctx.signature
    if export is None or signature.kind != "decoder":
        return
    missing: dict[str, str] = {}
    declared = export.declared_missing_roles(signature)
    if declared and export.declared is not None:
        count = f"input_names in {export.declared.source} has {len(export.declared.names)} names, the graph {len(signature.inputs)} inputs"
        for name, role in declared.items():
            missing[name] = f"declared: {count}"
    if _merged_style_without_switch(signature) and not any(r == roles.USE_CACHE_BRANCH for r in declared.values()):
        missing.setdefault(
            "use_cache_branch", f"{ctx.file} is named as a merged decoder, which switches its two branches on it"
        )
    # only a decoder that copies its cross cache claims to return it: optimum's decoder_with_past has no
    # encoder_hidden_states by design, and missing its step-0 file is ODS014's business alone
    if gap is not None and gap.copied_presents and signature.input(roles.ENCODER_HIDDEN_STATES) is None:
        if not any(r == roles.ENCODER_HIDDEN_STATES for r in declared.values()):
            missing.setdefault(
                "encoder_hidden_states", "the cross-attention cache must be computed from it and no file of the export does"
            )
    untaken = export.untaken_presents(signature)
    if untaken is not None and untaken.cache_meant and untaken.orphan_symbols and not untaken.declared_pasts:
        missing.setdefault(
            "past inputs",
            f"the presents' length names {', '.join(untaken.orphan_symbols)}, a past length no input carries, and no "
            "file of the export takes the presents back",
        )
    if not missing:
        return
    groups: dict[str, list[str]] = {}
    for name, why in missing.items():
        groups.setdefault(why, []).append(name)
    listed = "; ".join(f"{', '.join(names)} ({why})" for why, names in groups.items())
    yield DROPPED_INPUTS.finding(
        f"{ctx.file} lacks {len(missing)} input{'s' if len(missing) > 1 else ''} its export declared or its layout "
        f"requires: {listed}. Exporters drop inputs nothing reads in the traced graph (torch.onnx's TorchScript "
        "exporter does so silently); an input becomes unused when Python control flow on a tensor in the export "
        "wrapper (`.item()`, `if tensor.sum() == 0:`) freezes the branch that read it at trace time",
        ctx.at("graph"),
        evidence={
            "missing_inputs": list(missing),
            "reasons": missing,
            "graph_inputs": [t.name for t in signature.inputs],
            "declared_in": export.declared.source if export.declared and declared else None,
        },
        remedy={"code_change": "no_python_control_flow_on_tensors", "missing_inputs": list(missing)},
    )


@inspector
def check_export_folder(ctx: Context) -> Iterator[Finding]:
    finding = cross_gap_finding(ctx)
    if finding is not None:
        yield finding
    yield from _not_taken_back(ctx)
    yield from _dropped_inputs(ctx, cross_gap(ctx))
