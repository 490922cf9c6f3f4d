"""The inspector registry: checks that need inferred shapes are declared, and run after the others.

inspect starts shape inference in the background at load and runs the shape-free checks meanwhile; a
check that asked for shapes without saying so would make that wait early (slower, never wrong).
"""

from __future__ import annotations

import pytest

from support import FIXTURES
from onnxdoctor.context import Context
from onnxdoctor.inspectors import registered_checks, registered_preparations
from onnxdoctor.model.graph import GraphView
from onnxdoctor.model.load import load
from onnxdoctor.model.signature import build_signature


def test_shape_checks_come_last_and_every_check_is_listed_once() -> None:
    everything = [name for name, _check in registered_checks()]
    free = [name for name, _check in registered_checks(needs_shapes=False)]
    shaped = [name for name, _check in registered_checks(needs_shapes=True)]
    assert everything == free + shaped
    assert "onnxdoctor.inspectors.reshape_tracer.check_reshapes" in shaped
    assert len(set(everything)) == len(everything) >= 5


@pytest.mark.parametrize("fixture", ["optimum-gpt2", "optimum-marian-merged", "optimum-llama-gqa", "broken-torch-baked-view", "optimum-llama-fp16"])
def test_shape_free_checks_and_preparations_never_ask_for_inferred_shapes(fixture: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(_view: GraphView) -> None:
        raise AssertionError("a check declared shape-free asked for inferred shapes")

    monkeypatch.setattr(GraphView, "_inferred_graphs", property(refuse))
    bundle = load(FIXTURES / fixture)
    signatures = [build_signature(f, display_name=f.name) for f in bundle.files]
    siblings = {s.file_role: s for s in signatures}
    contexts = [Context(bundle, f, s, siblings) for f, s in zip(bundle.files, signatures)]
    ran = 0
    for _name, check in registered_checks(needs_shapes=False):
        for context in contexts:
            context.regime  # noqa: B018 - computed before the shape checks too
            list(check(context))
            ran += 1
    assert ran >= len(contexts) * 4
    preparations = registered_preparations()
    assert preparations  # the Reshape tracer plans its targets before the shapes are known
    for prepare in preparations:
        for context in contexts:
            prepare(context)
    with pytest.raises(AssertionError, match="asked for inferred shapes"):  # the trap works: the tracer does ask
        for _name, check in registered_checks(needs_shapes=True):
            for context in contexts:
                list(check(context))
