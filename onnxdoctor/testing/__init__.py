"""Helpers for testing onnxdoctor: synthetic decoder models (see synth.py) that need no downloads."""
