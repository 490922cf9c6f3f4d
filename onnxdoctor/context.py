"""What every check sees: the loaded file, its Signature, and the other files of the same export.

Graph analyses several checks need (inferred shapes, how presents are built) are computed once,
on first use, and shared.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from onnxdoctor.findings import Location
from onnxdoctor.model.cache_flow import PresentSource, trace_presents
from onnxdoctor.model.graph import GraphView
from onnxdoctor.model.load import Bundle, ModelFile
from onnxdoctor.model import roles
from onnxdoctor.model.signature import Signature
from onnxdoctor.numerics.regime import Regime, detect_regime

if TYPE_CHECKING:
    from onnxdoctor.model.export import ExportFolder


@dataclass
class Context:
    bundle: Bundle
    model_file: ModelFile
    signature: Signature
    siblings: dict[str, Signature] = field(default_factory=dict)  # file_role -> Signature
    # every model file of the export folder (siblings on disk included), for checks about the folder
    export: ExportFolder | None = field(default=None, repr=False)

    @property
    def file(self) -> str:
        return self.signature.file

    def at(self, kind: str, name: str | None = None, axis: int | None = None, step: int | None = None) -> Location:
        """A Location in this file."""
        return Location(file=self.file, kind=kind, name=name, axis=axis, step=step)

    @cached_property
    def graph(self) -> GraphView:
        return self.model_file.view

    @cached_property
    def static_cache(self) -> bool:
        """A fixed-size cache updated in place (HF StaticCache exports): every present is a scatter into its past.

        Its cache axis is fixed on purpose; the position to write comes from cache_position.
        """
        sources = [s for s in self.present_sources.values() if s.pair.attention == "self"]
        return bool(sources) and all(s.kind == "scatter" for s in sources)

    @cached_property
    def present_sources(self) -> dict[str, PresentSource]:
        """Present output name -> how it is built from its past."""
        return {s.pair.present.name: s for s in trace_presents(self.graph, self.signature) if s.pair.present}

    @cached_property
    def regime(self) -> Regime:
        """The precision the graph computes in (numerics): what every tolerance of this file follows."""
        logits = self.signature.output(roles.LOGITS)
        return detect_regime(self.model_file.proto, logits.dtype if logits is not None else "float32", self.graph)
