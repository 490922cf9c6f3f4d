"""Quantize an export folder with ONNX Runtime's own tools (the deployments onnxdoctor must judge).

One entry, `quantize_folder`, applies one named variant to every model file of a folder and writes a
new folder (never the source). The fixture script, the tests and the envelope benchmark use it, so
the regimes they measure are exactly what users produce with `onnxruntime.quantization`,
`onnxruntime.transformers.float16` and optimum's `ORTQuantizer`. onnxruntime (and optimum for its
variant) are imported inside the functions.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from onnxdoctor.errors import UsageError

Calibration = list[dict[str, np.ndarray]]


@contextlib.contextmanager
def _without_preprocessing_advice() -> Iterator[None]:
    """ORT's quantizers log 'Please consider to run pre-processing' once per file on the root logger: advice for
    static calibration, noise for a dynamic or weight-only variant that is verified afterwards anyway."""

    def keep(record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Please consider to run pre-processing")

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


# A quantized file is written with external data when its source has some, or is past this size: one protobuf
# message (the .onnx) cannot exceed 2 GB (fp16 of a 5 GB fp32 export is still 2.5 GB).
EXTERNAL_DATA_ABOVE_BYTES = 1536 * 1024 * 1024


def writes_external_data(source: Path) -> bool:
    """Whether a variant of `source` keeps its weights in an external data file, as the source does."""
    from onnxdoctor.model.load import load_file

    model = load_file(source)
    data_bytes = sum((source.parent / name).stat().st_size for name in model.external_files if (source.parent / name).is_file())
    return bool(model.external_files) or source.stat().st_size + data_bytes > EXTERNAL_DATA_ABOVE_BYTES


def _save(model: onnx.ModelProto, target: Path, external: bool) -> None:
    if external:  # one data file beside the model, named after it (what optimum and ORT's tools write)
        onnx.save(model, target, save_as_external_data=True, all_tensors_to_one_file=True, location=target.name + ".data")
    else:
        onnx.save(model, target)


def _dynamic(weight_type: str, per_channel: bool) -> Callable[[Path, Path, Calibration | None], dict[str, Any]]:
    def apply(source: Path, target: Path, _calibration: Calibration | None) -> dict[str, Any]:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        # EnableSubgraph: without it a merged decoder's If branches (all its MatMuls) stay float32
        options = {"EnableSubgraph": True}
        external = writes_external_data(source)
        with _without_preprocessing_advice():
            quantize_dynamic(
                source, target, weight_type=getattr(QuantType, weight_type), per_channel=per_channel, extra_options=options,
                use_external_data_format=external,
            )
        return {"tool": "onnxruntime.quantization.quantize_dynamic", "weight_type": weight_type, "per_channel": per_channel,
                "extra_options": options, "external_data": external}

    return apply


def _nbits(block_size: int) -> Callable[[Path, Path, Calibration | None], dict[str, Any]]:
    def apply(source: Path, target: Path, _calibration: Calibration | None) -> dict[str, Any]:
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

        external = writes_external_data(source)
        quantizer = MatMulNBitsQuantizer(onnx.load(source), bits=4, block_size=block_size, is_symmetric=True)
        quantizer.process()
        quantizer.model.save_model_to_file(str(target), use_external_data_format=external)
        return {"tool": "onnxruntime.quantization.matmul_nbits_quantizer.MatMulNBitsQuantizer", "bits": 4, "block_size": block_size,
                "is_symmetric": True, "external_data": external}

    return apply


def _static_qdq(source: Path, target: Path, calibration: Calibration | None) -> dict[str, Any]:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    if not calibration:
        raise UsageError(f"{source.name}: static QDQ quantization needs calibration feeds")
    class Reader(CalibrationDataReader):  # type: ignore[misc]
        """Recorded feeds, keeping only the inputs this file declares."""

        def __init__(self, feeds: Calibration, names: set[str]) -> None:
            self._items: Iterator[dict[str, np.ndarray]] = iter([{k: v for k, v in f.items() if k in names} for f in feeds])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._items, None)

    names = {i.name for i in onnx.load(source, load_external_data=False).graph.input}
    reader = Reader(calibration, names)
    quantize_static(
        source,
        target,
        reader,
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul", "Gemm"],
        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
    )
    return {"tool": "onnxruntime.quantization.quantize_static", "format": "QDQ", "activation_type": "QUInt8", "weight_type": "QInt8", "op_types": ["MatMul", "Gemm"], "calibration_batches": len(calibration)}


def _fp16(source: Path, target: Path, _calibration: Calibration | None) -> dict[str, Any]:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    external = writes_external_data(source)
    model = convert_float_to_float16(onnx.load(source), keep_io_types=True)
    _save(model, target, external)
    return {"tool": "onnxruntime.transformers.float16.convert_float_to_float16", "keep_io_types": True, "external_data": external}


def _optimum_dynamic(source: Path, target: Path, _calibration: Calibration | None) -> dict[str, Any]:
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    config = AutoQuantizationConfig.avx2(is_static=False, per_channel=False)
    with tempfile.TemporaryDirectory() as scratch:
        quantizer = ORTQuantizer.from_pretrained(source.parent, file_name=source.name)
        quantizer.quantize(save_dir=scratch, quantization_config=config)
        produced = next(Path(scratch).glob("*.onnx"))
        shutil.copyfile(produced, target)
    return {"tool": "optimum.onnxruntime.ORTQuantizer", "config": "AutoQuantizationConfig.avx2(is_static=False, per_channel=False)"}


VARIANTS: dict[str, Callable[[Path, Path, Calibration | None], dict[str, Any]]] = {
    "int8-dynamic": _dynamic("QInt8", per_channel=False),
    "uint8-dynamic-per-channel": _dynamic("QUInt8", per_channel=True),
    "int4-block16": _nbits(16),
    "int4-block32": _nbits(32),
    "qdq-static": _static_qdq,
    "fp16": _fp16,
    "optimum-dynamic": _optimum_dynamic,
}

COPIED = ("config.json", "generation_config.json")


def quantize_folder(
    source: Path,
    out: Path,
    variant: str,
    *,
    calibration: Calibration | None = None,
    files: Iterable[str] | None = None,
) -> dict[str, Any]:
    """Write `out/` with every `.onnx` of `source` quantized by `variant`; returns what was done.

    `out` must not exist or be empty, and must not be `source`: the user's export is never touched.
    """
    if variant not in VARIANTS:
        raise UsageError(f"unknown quantization {variant!r}; one of {', '.join(VARIANTS)}")
    source, out = Path(source), Path(out)
    if out.resolve() == source.resolve() or (out.exists() and any(out.iterdir())):
        raise UsageError(f"{out}: give a new or empty folder (the source export is never written)")
    out.mkdir(parents=True, exist_ok=True)
    names = sorted(files) if files is not None else sorted(p.name for p in source.glob("*.onnx"))
    applied: dict[str, Any] = {}
    for name in names:
        applied[name] = VARIANTS[variant](source / name, out / name, calibration)
    for name in COPIED:
        if (source / name).exists():
            shutil.copyfile(source / name, out / name)
    settings = {"quantization": variant, "source": source.name, "files": applied}
    (out / "quantize_settings.json").write_text(json.dumps(settings, indent=2) + "\n")
    return settings
