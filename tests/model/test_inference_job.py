"""onnxdoctor.model.proto.InferenceJob: shape inference in a forked child gives what inference in this
process gives, failures read the same, a dropped job leaves no process behind, and no fork happens
while other threads run.

Each check runs in a fresh interpreter: the test process has ONNX Runtime's and torch's threads by the
time these run, and a job refuses to fork next to them (the last test shows that refusal).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import onnx
import pytest

from support import run_python
from onnxdoctor.testing.synth import DecoderSpec, build_decoder

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the background path is Linux-only (fork)")

# A failing model: a node of an op set the model never imports.
UNINFERABLE = b"\x08\x07\x3a\x05\x0a\x03\x12\x01x"


def _run(body: str) -> str:
    """The last line `body` prints, in a fresh interpreter that starts no BLAS or OpenMP pool (a thread
    would make the job refuse to fork)."""
    return run_python(body, env={"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}).splitlines()[-1]


@pytest.fixture(scope="module")
def decoder_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 24-layer synthetic decoder, above the size where inspect infers in the background."""
    from onnxdoctor.model.proto import BACKGROUND_MIN_BYTES

    path = tmp_path_factory.mktemp("job") / "decoder.onnx"
    onnx.save(build_decoder(DecoderSpec(layers=24, heads=8, kv_heads=2, head_dim=8, vocab=32)), path)
    assert path.stat().st_size >= BACKGROUND_MIN_BYTES
    return path


def test_background_inference_returns_what_inline_inference_returns(decoder_file: Path) -> None:
    out = _run(
        f"""
        from pathlib import Path
        from onnxdoctor.model.proto import InferenceJob
        path = Path({str(decoder_file)!r})
        background = InferenceJob(path, data_prop=True)
        assert background.in_background
        inline = InferenceJob(path.read_bytes(), data_prop=True, background=False)
        assert not inline.in_background
        a, b = background.result(), inline.result()
        assert not background.in_background
        print(a.SerializeToString() == b.SerializeToString() and len(a.graph.value_info) > 500)
        """
    )
    assert out == "True"


def test_a_failure_reads_the_same_wherever_inference_ran() -> None:
    out = _run(
        f"""
        import json
        from onnxdoctor.model.proto import InferenceFailed, InferenceJob
        messages = []
        for background in (True, False):
            job = InferenceJob({UNINFERABLE!r}, data_prop=True, background=background, min_background_bytes=0)
            assert job.in_background == background
            try:
                job.result()
            except InferenceFailed as exc:
                messages.append(str(exc))
        print(json.dumps(messages))
        """
    )
    background, inline = json.loads(out)
    assert background == inline and background  # e.g. "InferenceError: [ShapeInferenceError] ..."


def test_a_dropped_job_leaves_no_process(decoder_file: Path) -> None:
    out = _run(
        f"""
        import os
        from pathlib import Path
        from onnxdoctor.model.proto import InferenceJob
        job = InferenceJob(Path({str(decoder_file)!r}), data_prop=True)
        pid = job._pid
        assert pid is not None
        job.close()
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            print("reaped")
        """
    )
    assert out == "reaped"


def test_no_fork_while_another_thread_runs(decoder_file: Path) -> None:
    out = _run(
        f"""
        import threading
        from pathlib import Path
        from onnxdoctor.model.proto import InferenceJob, can_fork
        assert can_fork()
        stop = threading.Event()
        worker = threading.Thread(target=stop.wait)
        worker.start()
        job = InferenceJob(Path({str(decoder_file)!r}), data_prop=True)
        refused = not can_fork() and not job.in_background
        inferred = len(job.result().graph.value_info) > 500
        stop.set()
        worker.join()
        print(refused and inferred)
        """
    )
    assert out == "True"


@pytest.mark.parametrize("target", ["synthetic-24", "optimum-marian-merged", "optimum-llama-gqa", "optimum-t5"])
def test_inspect_reports_the_same_with_and_without_background_inference(
    target: str, decoder_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every file of the target inferred in a child (the size threshold lifted for the small fixtures:
    merged decoders' If branches, encoder + decoder folders) gives the report inference in-process gives."""
    from support import FIXTURES
    from onnxdoctor.engine import inspect_path
    from onnxdoctor.model import proto

    path = decoder_file if target == "synthetic-24" else FIXTURES / target
    out = _run(
        f"""
        import json
        from onnxdoctor.model import proto
        proto.BACKGROUND_MIN_BYTES = 0
        from onnxdoctor.engine import inspect_path
        from onnxdoctor.model.load import load
        bundle = load({str(path)!r}, start_inference=True)
        assert all(f.view.inference_running for f in bundle.files)
        report = inspect_path(bundle, reshapes=True)
        print(json.dumps(report.to_dict()))
        """
    )
    monkeypatch.setattr(proto, "can_fork", lambda: False)
    inline = inspect_path(path, reshapes=True).to_dict()
    assert json.loads(out) == json.loads(json.dumps(inline))
    assert sum(len(f["reshapes"]) for f in inline["files"]) > 0  # shapes were used


def test_inspect_leaves_no_process_behind_when_no_shape_was_asked(tmp_path: Path) -> None:
    """A graph without Reshape never collects its inference; the CLI's fast exit must still reap the child.

    The probe makes itself a child subreaper, so a child orphaned by `onnxdoctor inspect` would be
    handed to it and show up in its waitpid."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.zeros((256, 1024), dtype=np.float32), "embed")  # 1 MB: inferred in the background
    graph = helper.make_graph(
        [helper.make_node("Gather", ["embed", "input_ids"], ["logits"])],
        "no_reshape",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "seq", 1024])],
        [weight],
    )
    path = tmp_path / "model.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    out = _run(
        f"""
        import ctypes, os, subprocess, sys, time
        assert ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
        done = subprocess.run([sys.executable, "-m", "onnxdoctor", "inspect", {str(path)!r}, "--format", "json"], capture_output=True, text=True)
        assert done.returncode in (0, 1), done.stderr
        time.sleep(1.0)
        try:
            orphan, _ = os.waitpid(-1, os.WNOHANG)
            print("orphan" if orphan else "running orphan")
        except ChildProcessError:
            print("clean")
        """
    )
    assert out == "clean"


def test_a_program_that_ignores_sigchld_still_gets_the_result(decoder_file: Path) -> None:
    """With SIGCHLD ignored the kernel reaps the child and waitpid fails with ECHILD: the result file's
    own header says whether the child finished."""
    out = _run(
        f"""
        import signal
        from pathlib import Path
        from onnxdoctor.model.proto import InferenceFailed, InferenceJob
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)
        path = Path({str(decoder_file)!r})
        job = InferenceJob(path, data_prop=True)
        assert job.in_background
        inferred = job.result()
        inline = InferenceJob(path.read_bytes(), data_prop=True, background=False).result()
        failing = InferenceJob({UNINFERABLE!r}, data_prop=True, min_background_bytes=0)
        try:
            failing.result()
        except InferenceFailed as exc:
            failed = "InferenceError" in str(exc) or "Error" in str(exc)
        print(inferred.SerializeToString() == inline.SerializeToString() and failed)
        """
    )
    assert out == "True"


def test_a_child_stopped_half_way_reads_as_no_result(tmp_path: Path) -> None:
    """The child reads its model from a FIFO nobody writes to, so it is certainly stopped before it has
    written anything."""
    fifo = tmp_path / "never-written.onnx"
    os.mkfifo(fifo)
    out = _run(
        f"""
        import os, signal
        from pathlib import Path
        from onnxdoctor.model.proto import InferenceFailed, InferenceJob
        job = InferenceJob(Path({str(fifo)!r}), data_prop=True, min_background_bytes=0)
        assert job.in_background
        os.kill(job._pid, signal.SIGKILL)
        try:
            job.result()
            print("a result")
        except InferenceFailed as exc:
            print("stopped" if "without a result" in str(exc) else str(exc))
        """
    )
    assert out == "stopped"
