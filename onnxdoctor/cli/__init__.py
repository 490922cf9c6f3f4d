"""The `onnxdoctor` command: one module per subcommand, errors become one line and exit code 2.

Exit codes: 0 no error findings, 1 error findings, 2 usage error or unusable input (and internal
errors, which also say how to get the traceback).
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from onnxdoctor import __version__
from onnxdoctor.errors import OnnxDoctorError

EXIT_USAGE = 2


class DoctorGroup(click.Group):
    """A click group that turns onnxdoctor's own exceptions into one clear line and loads commands lazily."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            module = importlib.import_module(f"onnxdoctor.cli.{COMMANDS[cmd_name]}")
            command = getattr(module, f"{COMMANDS[cmd_name].removesuffix('_cmd')}_command")
            self.add_command(command, cmd_name)
        return self.commands.get(cmd_name)

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


# command name -> its module (one module per command); a command's module is imported when that
# command runs or help lists it, so `onnxdoctor inspect` does not import replay's, view's or bench's.
COMMANDS: dict[str, str] = {
    "inspect": "inspect_cmd",
    "replay": "replay_cmd",
    "contract": "contract_cmd",
    "check-feeds": "check_feeds_cmd",
    "verify": "verify_cmd",
    "compare": "compare_cmd",
    "bench": "bench_cmd",
    "report": "report_cmd",
    "fix": "fix_cmd",
    "export": "export_cmd",
    "rules": "rules_cmd",
    "explain": "explain_cmd",
    "view": "view_cmd",
}


_exit_fast = False


def exit_fast_when_done() -> None:
    """For commands that leave nothing to clean up (inspect): `run()` then ends the process with os._exit
    once the output is flushed, skipping the interpreter's teardown of the graph the command built
    (freeing tens of thousands of objects: 0.04-0.06 s of an 80-layer decoder's 0.5 s)."""
    global _exit_fast
    _exit_fast = True


def main(argv: list[str] | None = None) -> None:
    """Run one command on `argv` (default: sys.argv); always ends in SystemExit with the exit code."""
    cli.main(args=argv, prog_name="onnxdoctor")
    sys.exit(0)


def run() -> None:
    """The program (console script, `python -m onnxdoctor`): main(), then, for commands that allow it, an
    exit without interpreter teardown. Code that embeds the CLI calls main(), which always returns control
    through SystemExit."""
    try:
        main()
    except SystemExit as stop:
        if _exit_fast and (stop.code is None or isinstance(stop.code, int)):
            proto = sys.modules.get("onnxdoctor.model.proto")
            if proto is not None:  # a shape inference nobody asked for (a graph without Reshape) still runs
                proto.InferenceJob.close_all()
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except (OSError, ValueError):  # a closed pipe or stream: nothing more can be said there
                    pass
            os._exit(stop.code or 0)
        raise
