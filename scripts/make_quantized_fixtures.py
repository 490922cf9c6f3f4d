#!/usr/bin/env python
"""Write quantized twins of the healthy optimum fixtures with ONNX Runtime's own quantizers.

Not committed (the tests build the same twins in a temporary folder with the same code,
onnxdoctor.testing.quantized): run this to look at them, or to replay them by hand.

    .venv/bin/python scripts/make_quantized_fixtures.py --out /tmp/quantized
    .venv/bin/onnxdoctor replay /tmp/quantized/optimum-qwen3-int8-dynamic --steps 8
"""

from __future__ import annotations

import argparse
import logging
import warnings
from pathlib import Path

from onnxdoctor.numerics.quantize import VARIANTS
from onnxdoctor.testing.quantized import quantized_twins, recorded_calibration, skipped_reason

REPO = Path(__file__).resolve().parent.parent
SOURCES = ("optimum-qwen3", "optimum-llama-gqa", "optimum-gpt2", "optimum-marian", "optimum-marian-merged")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="a new or empty folder")
    parser.add_argument("--only", nargs="+", choices=SOURCES, metavar="FIXTURE")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), metavar="VARIANT")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    for name in args.only or SOURCES:
        source = REPO / "fixtures" / name
        made = quantized_twins(source, args.out, args.variants)
        calibration = recorded_calibration(source)
        for variant in args.variants or list(VARIANTS):
            reason = skipped_reason(source, variant, calibration)
            print(f"{name:24s} {variant:28s} {made[variant] if variant in made else 'skipped: ' + str(reason)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
