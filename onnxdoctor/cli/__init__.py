"""The `onnxdoctor` command: one module per subcommand, errors become one line and exit code 2.

Exit codes: 0 no error findings, 1 error findings, 2 usage error or unusable input (and internal
errors, which also say how to get the traceback).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from onnxdoctor import __version__
from onnxdoctor.errors import OnnxDoctorError

EXIT_USAGE = 2


class DoctorGroup(click.Group):
    """A click group that turns onnxdoctor's own exceptions into one clear line."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except OnnxDoctorError as exc:
            click.echo(f"onnxdoctor: error: {exc}", err=True)
            ctx.exit(EXIT_USAGE)
        except KeyboardInterrupt:
            click.echo("onnxdoctor: interrupted", err=True)
            ctx.exit(130)
        except Exception as exc:  # noqa: BLE001 - the one place that keeps tracebacks from users
            if os.environ.get("ONNXDOCTOR_DEBUG"):
                raise
            click.echo(
                f"onnxdoctor: internal error: {type(exc).__name__}: {exc} "
                "(this is a bug in onnxdoctor; set ONNXDOCTOR_DEBUG=1 for the traceback)",
                err=True,
            )
            ctx.exit(EXIT_USAGE)


@click.group(cls=DoctorGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="onnxdoctor")
def cli() -> None:
    """Diagnose exported ONNX decoders with a KV cache.

    \b
      onnxdoctor inspect decoder_model.onnx        static: signature, KV layout, findings
      onnxdoctor replay export_dir/ --steps 2      dynamic: step 0 -> step N with ONNX Runtime
      onnxdoctor contract model.onnx               what a client must feed at step 0 and step n
      onnxdoctor contract export/ --emit js        a complete greedy decode loop (js | python)
      onnxdoctor check-feeds model.onnx dumps/     a client's recorded feeds vs the contract
      onnxdoctor verify export_dir/ --source DIR   the export against its PyTorch source, step by step
      onnxdoctor compare fp32_dir/ int8_dir/       two exports of one model, step by step
      onnxdoctor bench fp32_dir/ int8_dir/         decode speed and memory, side by side
      onnxdoctor report fp32/ int8/ --out rep/     a validation folder: markdown, JSON, charts
      onnxdoctor fix model.onnx --source DIR       re-export with patched settings, verified
      onnxdoctor export train_dir/ --out DIR       checkpoint -> merge -> ONNX -> quantize, all verified
      onnxdoctor view model.onnx --finding ODR201  Netron on the neighborhood of a finding
      onnxdoctor rules | explain ODS002            every check, and what one means
    """


def _register_commands() -> None:
    from onnxdoctor.cli import (
        bench_cmd,
        check_feeds_cmd,
        compare_cmd,
        contract_cmd,
        explain_cmd,
        export_cmd,
        fix_cmd,
        inspect_cmd,
        replay_cmd,
        report_cmd,
        rules_cmd,
        verify_cmd,
        view_cmd,
    )

    cli.add_command(inspect_cmd.inspect_command)
    cli.add_command(replay_cmd.replay_command)
    cli.add_command(contract_cmd.contract_command)
    cli.add_command(check_feeds_cmd.check_feeds_command)
    cli.add_command(verify_cmd.verify_command)
    cli.add_command(compare_cmd.compare_command)
    cli.add_command(bench_cmd.bench_command)
    cli.add_command(report_cmd.report_command)
    cli.add_command(fix_cmd.fix_command)
    cli.add_command(export_cmd.export_command)
    cli.add_command(rules_cmd.rules_command)
    cli.add_command(explain_cmd.explain_command)
    cli.add_command(view_cmd.view_command)


_register_commands()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv, prog_name="onnxdoctor")
    sys.exit(0)
