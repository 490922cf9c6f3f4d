"""`python -m onnxdoctor` runs the CLI."""

from onnxdoctor.cli import run

run()
