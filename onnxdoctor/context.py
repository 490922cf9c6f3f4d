"""What every check sees: the loaded file, its Signature, and the other files of the same export."""

from __future__ import annotations

from dataclasses import dataclass, field

from onnxdoctor.findings import Location
from onnxdoctor.model.load import Bundle, ModelFile
from onnxdoctor.model.signature import Signature


@dataclass
class Context:
    bundle: Bundle
    model_file: ModelFile
    signature: Signature
    siblings: dict[str, Signature] = field(default_factory=dict)  # file_role -> Signature

    @property
    def file(self) -> str:
        return self.signature.file

    def at(self, kind: str, name: str | None = None, axis: int | None = None, step: int | None = None) -> Location:
        """A Location in this file."""
        return Location(file=self.file, kind=kind, name=name, axis=axis, step=step)
