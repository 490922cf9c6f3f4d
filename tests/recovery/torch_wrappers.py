"""Users' own export entries (`file.py:function`) for `onnxdoctor fix --exporter torch` tests.

Each returns what the recovery worker needs: the module, example inputs, input and output names.
They reuse the seeded decoders the committed torch fixtures were exported from.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

LAYERS = 2
INPUTS = ["input_ids", "attention_mask", *(f"past_{kind}_{i}" for i in range(LAYERS) for kind in ("key", "value"))]
OUTPUTS = ["logits", *(f"present_{kind}_{i}" for i in range(LAYERS) for kind in ("key", "value"))]


def _entry(baked_view: bool) -> dict[str, Any]:
    import make_broken_fixtures as mbf
    import make_fixtures as mf

    return {"model": mbf._seeded_decoder(baked_view=baked_view), "args": mf._tiny_decoder_example(), "input_names": INPUTS, "output_names": OUTPUTS}


def tiny_decoder() -> dict[str, Any]:
    """The TinyKVDecoder of fixtures/torch-legacy and the broken-torch-*-dynamic-axes fixtures."""
    return _entry(baked_view=False)


def tiny_decoder_baked_view() -> dict[str, Any]:
    """The variant that calls int() on traced sizes (fixtures/broken-torch-baked-view)."""
    return _entry(baked_view=True)


def crashing() -> dict[str, Any]:
    """An exporter process that dies hard, as a segfaulting exporter would."""
    print("loading weights", flush=True)
    print("fatal: simulated exporter crash", file=sys.stderr, flush=True)
    os._exit(139)


def hanging() -> dict[str, Any]:
    """An exporter process that never finishes."""
    print("tracing the model", flush=True)
    time.sleep(3600)
    raise AssertionError("unreachable")


# ---------------------------------------------------------------- the other forms users write

def tiny_decoder_positional() -> tuple[Any, ...]:
    """torch.onnx.export's positional form: (module, example_inputs, input_names, output_names)."""
    entry = tiny_decoder()
    return entry["model"], entry["args"], entry["input_names"], entry["output_names"]


def tiny_decoder_pair() -> tuple[Any, ...]:
    """Only (module, example_inputs): the names come from the model being fixed."""
    entry = tiny_decoder()
    return entry["model"], entry["args"]


def _wrapped(kind: str) -> Any:
    """The baked-view decoder behind a forward of another shape: *past varargs, keyword-only pasts, a dict of pasts."""
    import torch

    inner = _entry(baked_view=True)["model"]
    names = INPUTS[2:]

    class Varargs(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *past: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return self.inner(input_ids, attention_mask, *past)

    class KeywordOnly(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = inner

        def forward(
            self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *,
            past_key_0: torch.Tensor, past_value_0: torch.Tensor, past_key_1: torch.Tensor, past_value_1: torch.Tensor,
        ) -> tuple[torch.Tensor, ...]:
            return self.inner(input_ids, attention_mask, past_key_0, past_value_0, past_key_1, past_value_1)

    class DictInput(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, past: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
            return self.inner(input_ids, attention_mask, *(past[name] for name in names))

    return {"varargs": Varargs, "keyword_only": KeywordOnly, "dict_input": DictInput}[kind]().eval()


def varargs_baked_view() -> tuple[Any, ...]:
    """forward(self, input_ids, attention_mask, *past), given as the positional 4-tuple."""
    import make_fixtures as mf

    return _wrapped("varargs"), mf._tiny_decoder_example(), INPUTS, OUTPUTS


def keyword_only_baked_view() -> dict[str, Any]:
    """forward(self, input_ids, attention_mask, *, past_key_0, ...): the pasts go in kwargs."""
    import make_fixtures as mf

    ids, mask, *past = mf._tiny_decoder_example()
    return {"model": _wrapped("keyword_only"), "args": (ids, mask), "kwargs": dict(zip(INPUTS[2:], past)), "input_names": INPUTS, "output_names": OUTPUTS}


def dict_input_baked_view() -> tuple[Any, ...]:
    """forward(self, input_ids, attention_mask, past: dict): one positional dict of pasts."""
    import make_fixtures as mf

    ids, mask, *past = mf._tiny_decoder_example()
    return _wrapped("dict_input"), (ids, mask, dict(zip(INPUTS[2:], past))), INPUTS, OUTPUTS


def raising() -> dict[str, Any]:
    """A factory whose own code fails (a checkpoint path that is not there)."""
    raise FileNotFoundError("checkpoints/decoder.pt")


def three_tuple() -> tuple[Any, ...]:
    """Neither form: (module, inputs, names) with the output names forgotten."""
    entry = tiny_decoder()
    return entry["model"], entry["args"], entry["input_names"]


class _TracedConstant:
    """Builds a module whose forward reads a size into Python (a TracerWarning: 'Converting a tensor to a
    Python integer might cause the trace to be incorrect'): the export bakes the example's 3 tokens in,
    so it agrees with itself at every step and departs from the module whenever a step feeds another count."""

    @staticmethod
    def build() -> Any:
        import torch

        inner = tiny_decoder()["model"]

        class ShiftByTokenCount(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.inner = inner

            def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *past: torch.Tensor) -> Any:
                logits, *presents = self.inner(input_ids, attention_mask, *past)
                shift = int(input_ids.shape[1])  # a Python number: the trace keeps the example's 3
                return (torch.roll(logits, shifts=shift, dims=-1), *presents)

        return ShiftByTokenCount().eval()


def traced_constant() -> tuple[Any, ...]:
    """A wrapper whose trace is wrong at decode time (a size read into Python)."""
    import make_fixtures as mf

    return _TracedConstant.build(), mf._tiny_decoder_example(), INPUTS, OUTPUTS
