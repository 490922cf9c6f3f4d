"""`onnxdoctor export`: a training folder (or a model folder, or a torch factory) to a verified, quantized ONNX decoder.

checkpoints (detection, integrity, metadata) -> merge (peft) -> export (the recovery engine's worker and
keep-only-if-proven rule) -> quantize (numerics.quantize) -> verify (fidelity.verify) -> report.
Heavy libraries (torch, transformers, peft, onnxruntime) load inside the stages that use them.
"""
