"""Users' torch factories (`file.py:function`) for `onnxdoctor export --exporter torch` tests.

Both wrap the seeded TinyKVDecoder of fixtures/torch-legacy (tests/recovery/torch_wrappers.py).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recovery"))

import torch_wrappers  # noqa: E402


def rms_norm_decoder() -> dict[str, Any]:
    """The final norm is torch.nn.RMSNorm (aten::rms_norm): the legacy exporter has no symbolic for it, dynamo does."""
    import torch

    entry = torch_wrappers.tiny_decoder()
    torch.manual_seed(5)
    norm = torch.nn.RMSNorm(entry["model"].ln_f.normalized_shape)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    entry["model"].ln_f = norm
    return entry


def branch_on_length_decoder() -> dict[str, Any]:
    """A wrapper with Python control flow on a tensor's size: logits are temperature-scaled at decode steps only.

    Traced at a 3-token example, the export holds the prefill branch for every call (a TracerWarning
    says so): step 0 agrees with the module, every decode step departs.
    """
    import torch

    entry = torch_wrappers.tiny_decoder()
    inner = entry["model"]

    class TemperatureAtDecode(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *past: torch.Tensor) -> tuple[torch.Tensor, ...]:
            logits, *presents = self.inner(input_ids, attention_mask, *past)
            if input_ids.shape[1] == 1:  # a decode step: Python control flow the trace freezes
                logits = logits / 0.5
            return (logits, *presents)

    entry["model"] = TemperatureAtDecode().eval()
    return entry


def fails_at_decode_decoder() -> dict[str, Any]:
    """A module that exports (the trace never takes the raising path) but cannot itself run a one-token decode step:
    verify cannot hold the export against it, which no re-export changes."""
    import torch

    entry = torch_wrappers.tiny_decoder()
    inner = entry["model"]

    class PrefillOnly(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *past: torch.Tensor) -> tuple[torch.Tensor, ...]:
            if not torch.jit.is_tracing() and input_ids.shape[1] == 1:
                raise RuntimeError("this module only runs prompts")
            return self.inner(input_ids, attention_mask, *past)

    entry["model"] = PrefillOnly().eval()
    return entry
