"""The pytest plugin as another repo uses it, run with pytester: a passing and a failing project."""

from __future__ import annotations

import subprocess
import sys

import pytest

from support import FIXTURES

HEALTHY = FIXTURES / "optimum-marian-merged"
BROKEN = FIXTURES / "synthetic" / "defect-present_is_new.onnx"


def test_plugin_is_registered_and_light() -> None:
    probe = "import sys, onnxdoctor.pytest_plugin; print(','.join(m for m in ('onnxruntime', 'torch') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip() == ""
    from importlib.metadata import entry_points

    assert [e.value for e in entry_points(group="pytest11") if e.name == "onnxdoctor"] == ["onnxdoctor.pytest_plugin"]


def test_passing_project(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        f"""
        def test_export_decodes(onnx_decoder_doctor):
            report = onnx_decoder_doctor({str(HEALTHY)!r}, steps=2)
            report.assert_healthy()
            assert report.by_code("ODS010")  # info findings are there, and allowed

        def test_static_only(onnx_decoder_doctor):
            onnx_decoder_doctor({str(HEALTHY)!r}, replay=False).assert_healthy()
        """
    )
    result = pytester.runpytest_subprocess("-p", "onnxdoctor")
    result.assert_outcomes(passed=2)


def test_failing_project_prints_the_findings_table(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        f"""
        def test_export_decodes(onnx_decoder_doctor):
            onnx_decoder_doctor({str(BROKEN)!r}, steps=2).assert_healthy()

        def test_allowing_the_codes(onnx_decoder_doctor):
            report = onnx_decoder_doctor({str(BROKEN)!r}, steps=2)
            report.assert_healthy(allow=["ODP301", "ODA104", "ODX4"])
        """
    )
    result = pytester.runpytest_subprocess("-p", "onnxdoctor")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*onnxdoctor found * problem(s) in *defect-present_is_new.onnx*",
            "*ERROR   ODP301 present-not-concatenated*",
            "*ERROR   ODX403 present-length-wrong*output present.0.key axis 2 (step 1)*",
            "*Verdict: The model is broken at step 1*",
        ]
    )


def test_model_option_and_decoder_marker(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        f"""
        import pytest

        def test_given_model(onnxdoctor_report):
            onnxdoctor_report.assert_healthy()

        @pytest.mark.onnxdoctor_decoders({str(FIXTURES / "optimum-marian")!r})
        def test_every_decoder(onnxdoctor_report):
            onnxdoctor_report.assert_healthy()
        """
    )
    result = pytester.runpytest_subprocess("-p", "onnxdoctor", "--onnxdoctor-model", str(FIXTURES / "optimum-gpt2"), "-v")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*test_every_decoder?decoder_model.onnx?*PASSED*", "*test_every_decoder?decoder_with_past_model.onnx?*PASSED*"])
    skipped = pytester.runpytest_subprocess("-p", "onnxdoctor", "-k", "given_model")
    skipped.assert_outcomes(skipped=1)


def test_bench_fixture_gives_the_numbers_of_onnxdoctor_bench(pytester: pytest.Pytester) -> None:
    """Another repo asserts its own floor on these numbers; here only their shape (onnxdoctor ships no timed test)."""
    pytester.makepyfile(
        f"""
        def test_decode_numbers(onnxdoctor_bench):
            result = onnxdoctor_bench({str(FIXTURES / "optimum-qwen3")!r}, prompt_len=4, new_tokens=3, repeat=2)
            assert len(result.per_token_s) == 2 * 3
            assert result.tokens_per_s > 0 and result.per_token_p90_s >= result.per_token_median_s > 0
            assert result.prefill.low <= result.prefill.median <= result.prefill.high
            assert result.kv_bytes_per_token == 2 * 2 * 2 * 8 * 4  # layers x (key, value) x kv heads x head_dim x fp32
            assert result.file_bytes > 0 and result.session_s > 0 and result.options.optimize

        def test_bad_options_are_a_usage_error(onnxdoctor_bench):
            import pytest
            from onnxdoctor.errors import UsageError

            with pytest.raises(UsageError, match="--repeat"):
                onnxdoctor_bench({str(FIXTURES / "optimum-qwen3")!r}, repeat=0)
        """
    )
    result = pytester.runpytest_subprocess("-p", "onnxdoctor")
    result.assert_outcomes(passed=2)
