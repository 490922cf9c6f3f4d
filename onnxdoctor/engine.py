"""Run the static inspection of a path: load -> signature -> inspectors -> one report.

This is the library entry point the CLI and the pytest plugin share; it never writes a file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from onnxdoctor import __version__
from onnxdoctor.context import Context
from onnxdoctor.errors import UnusableInputError
from onnxdoctor.findings import Finding, Severity, sort_findings
from onnxdoctor.model.contract import StepContract, build_contract
from onnxdoctor.model.export import ExportFolder, Member, read_declared_inputs
from onnxdoctor.model.load import OPTIMUM_FILE_ROLES, Bundle, ModelFile, load, load_file
from onnxdoctor.model.roles import RoleMap
from onnxdoctor.model.signature import Signature, build_signature

SCHEMA_VERSION = 1


@dataclass
class FileReport:
    model_file: ModelFile
    signature: Signature
    step0: StepContract
    stepn: StepContract
    reshapes: list[dict[str, Any]] | None = None
    # the inspectors' context: its graph analyses (shapes, how presents are built) are reused by replay
    context: Context | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        sig = self.signature
        kv = sig.kv
        kv_layout: dict[str, Any] | None = None
        if kv is not None:
            kv_layout = {
                "layers": kv.layers,
                "kv_heads": kv.kv_heads,
                "head_dim": kv.head_dim,
                "cache_axis": kv.cache_axis,
                "axes": kv.axes.to_dict(),
                "dtype": kv.dtype,
                "merged": kv.merged,
                "cross_attention": kv.cross_attention,
                "stacked": kv.stacked,
                "mode": kv.mode,
                "pairs": [
                    {
                        "layer": p.layer,
                        "attention": p.attention,
                        "part": p.part,
                        "past": p.past.name if p.past else None,
                        "present": p.present.name if p.present else None,
                    }
                    for p in kv.pairs
                ],
            }
        return {
            "file": sig.file,
            "file_role": sig.file_role,
            "kind": sig.kind,
            "producer": sig.producer,
            "opset": sig.opset,
            "size_bytes": self.model_file.size_bytes,
            "external_data": self.model_file.external_files,
            "merged_if_node": sig.merged_if_node,
            "contrib_attention_ops": sig.contrib_attention_ops,
            "inputs": [t.to_dict() for t in sig.inputs],
            "outputs": [t.to_dict() for t in sig.outputs],
            "kv_layout": kv_layout,
            "numerics": self.context.regime.to_dict() if self.context is not None else None,
            "step0": self.step0.to_dict(),
            "stepn": self.stepn.to_dict(),
            **({} if self.reshapes is None else {"reshapes": self.reshapes}),
        }


@dataclass
class InspectReport:
    path: str
    files: list[FileReport]
    findings: list[Finding] = field(default_factory=list)

    @property
    def has_errors(self) -> bool:
        return any(f.severity is Severity.ERROR for f in self.findings)

    @property
    def exit_code(self) -> int:
        return 1 if self.has_errors else 0

    def counts(self) -> dict[str, int]:
        return {s.value: sum(1 for f in self.findings if f.severity is s) for s in Severity}

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_VERSION,
            "tool": {"name": "onnxdoctor", "version": __version__},
            "command": "inspect",
            "path": self.path,
            "files": [f.to_dict() for f in self.files],
            "summary": self.counts(),
            "findings": [f.to_dict() for f in self.findings],
        }


def _matches(code: str, patterns: tuple[str, ...]) -> bool:
    return any(code.upper().startswith(p.upper()) for p in patterns)


def filter_findings(findings: list[Finding], select: tuple[str, ...] = (), ignore: tuple[str, ...] = ()) -> list[Finding]:
    """`--select` keeps codes with one of the prefixes; `--ignore` then drops codes with one."""
    kept = [f for f in findings if not select or _matches(f.code, select)]
    return [f for f in kept if not _matches(f.code, ignore)]


def inspect_bundle(bundle: Bundle, *, role_map: RoleMap | None = None, reshapes: bool = False) -> InspectReport:
    from onnxdoctor.inspectors import registered_checks, registered_preparations
    from onnxdoctor.inspectors.reshape_tracer import analyse_reshapes

    signatures = [
        build_signature(model_file, display_name=bundle.display_name(model_file), role_map=role_map)
        for model_file in bundle.files
    ]
    siblings = {s.file_role: s for s in signatures}
    contexts = [Context(bundle, model_file, signature, siblings) for model_file, signature in zip(bundle.files, signatures)]
    export = _export_folder(bundle, contexts, role_map)
    file_reports = []
    for context in contexts:
        context.export = export
        step0, stepn = build_contract(context.signature, export=export)
        file_reports.append(FileReport(context.model_file, context.signature, step0, stepn, context=context))
    # What needs no inferred shapes runs first, for every file: the inference started at load may still be
    # running in the background (model.proto.InferenceJob) and gets this time to finish.
    for context in contexts:
        context.regime  # noqa: B018 - the report shows it
    findings: list[Finding] = []
    for _name, check in registered_checks(needs_shapes=False):
        for context in contexts:
            findings.extend(check(context))
    for prepare in registered_preparations():
        for context in contexts:
            if context.graph.inference_running:
                prepare(context)
    for _name, check in registered_checks(needs_shapes=True):
        for context in contexts:
            findings.extend(check(context))
    for report in file_reports:
        context = report.context
        assert context is not None
        if reshapes:
            report.reshapes = [
                {**trace.to_dict(), "findings": [f.code for f in found]} for trace, found in analyse_reshapes(context)
            ]
    return InspectReport(path=str(bundle.path), files=file_reports, findings=sort_findings(findings))


def _export_folder(bundle: Bundle, contexts: list[Context], role_map: RoleMap | None) -> ExportFolder:
    """The inspected files plus the other model files of their folder, read (without weights) only to judge it.

    A folder given with --file is an export: all its model files count. Next to a single file only the
    optimum-named ones do, since a folder of unrelated models says nothing about this one.
    """
    members = [Member(c.signature, c.model_file.path, True, lambda c=c: c.present_sources) for c in contexts]
    loaded = {c.model_file.path.resolve() for c in contexts}
    if bundle.path.is_dir():
        candidates = sorted(p for p in bundle.folder.iterdir() if p.suffix == ".onnx" and p.is_file())
    else:
        candidates = [bundle.folder / name for name in OPTIMUM_FILE_ROLES if (bundle.folder / name).is_file()]
    for path in candidates:
        if path.resolve() in loaded:
            continue
        try:
            model_file = load_file(path, folder=bundle.folder)
        except UnusableInputError:
            continue  # a sibling that cannot be read says nothing about the files asked about
        shown = model_file.name if bundle.path.is_dir() else str(bundle.path.parent / model_file.name)
        signature = build_signature(model_file, display_name=shown, role_map=role_map)
        context = Context(bundle, model_file, signature)
        members.append(Member(signature, path, False, lambda c=context: c.present_sources))
    return ExportFolder(bundle.folder, members, read_declared_inputs(bundle.folder))


def inspect_path(
    path: str | os.PathLike[str] | Bundle,
    *,
    role_map: RoleMap | None = None,
    only_file: str | None = None,
    select: tuple[str, ...] = (),
    ignore: tuple[str, ...] = (),
    reshapes: bool = False,
) -> InspectReport:
    """Inspect a .onnx file or an export folder (raises UnusableInputError for unusable input).

    `path` may be a Bundle already loaded (the CLI loads first, so shape inference starts in the
    background while this module's imports run).
    """
    bundle = path if isinstance(path, Bundle) else load(path, only=only_file, start_inference=True)
    report = inspect_bundle(bundle, role_map=role_map, reshapes=reshapes)
    report.findings = filter_findings(report.findings, select, ignore)
    return report
