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
