"""`onnxdoctor view PATH`: open the model, or the nodes around a finding or node, in Netron."""

from __future__ import annotations

import shutil
import signal
import tempfile
import time
from pathlib import Path
from types import ModuleType

import click

from onnxdoctor.cli.options import file_option, model_path_argument
from onnxdoctor.errors import UsageError


@click.command("view")
@model_path_argument
@file_option
@click.option("--finding", "code", metavar="CODE", help="Center on the node of the first finding with this code.")
@click.option("--node", "node_name", metavar="NAME", help="Center on the node with this name (If branches included).")
@click.option("--branch", metavar="GRAPH", help="With --node: the If branch to look in first (then_branch, else_branch); merged decoders reuse node names.")
@click.option("--hops", type=click.IntRange(min=0), default=2, show_default=True, help="Nodes this many edges away are kept.")
@click.option("--save", type=click.Path(dir_okay=False, path_type=Path), help="Write the neighborhood here (a new file).")
@click.option("--no-browser", is_flag=True, help="Do not open a browser; print the URL and serve until Ctrl-C.")
@click.option("--no-serve", is_flag=True, help="With --save: only write the file, start no server.")
@click.option("--port", type=click.IntRange(0, 65535), help="Port on 127.0.0.1 (default: Netron's choice, 0: any free).")
def view_command(
    path: str,
    only_file: str | None,
    code: str | None,
    node_name: str | None,
    branch: str | None,
    hops: int,
    save: Path | None,
    no_browser: bool,
    no_serve: bool,
    port: int | None,
) -> None:
    """Open PATH in Netron, or only the HOPS-hop neighborhood of a finding's node or a named node.

    The neighborhood is a small standalone ONNX model written to a new temporary file (removed when
    the server stops) or to --save FILE. Netron listens on 127.0.0.1 only.
    """
    from onnxdoctor.view import (
        check_save_target,
        extract,
        focus_on_finding,
        focus_on_node,
        import_netron,
        pick_model_file,
        write_model,
    )

    if code and node_name:
        raise UsageError("--finding and --node exclude each other; give one")
    if no_serve and save is None:
        raise UsageError("--no-serve needs --save FILE, or there is nothing to do")
    netron = None if no_serve else import_netron()
    if code is None and node_name is None:
        if save is not None:
            raise UsageError("--save needs --finding or --node: the whole model is already a file")
        from onnxdoctor.model.load import load

        assert netron is not None
        _serve(netron, pick_model_file(load(path, only=only_file)).path, port, browse=not no_browser)
        return

    focus = focus_on_finding(path, code, only_file) if code else focus_on_node(path, str(node_name), only_file, branch)
    if save is not None:
        check_save_target(save, focus.model_file.path)
    extracted = extract(focus, hops)
    temp_dir = None if save is not None else Path(tempfile.mkdtemp(prefix="onnxdoctor-view-"))
    target = save if save is not None else Path(str(temp_dir), f"{focus.model_file.path.stem}-neighborhood.onnx")
    try:
        write_model(extracted.model, target)
        where = f" in {extracted.scope_path}" if extracted.scope_path else ""
        click.echo(f"{extracted.nodes} nodes within {hops} hops of {focus.label}{where}: {target}")
        if netron is not None:
            _serve(netron, target, port, browse=not no_browser)
    finally:
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)


def _serve(netron: ModuleType, file: Path, port: int | None, browse: bool) -> None:
    """Serve until Ctrl-C or SIGTERM, then stop quietly (a viewer session ending is no error)."""
    from onnxdoctor.view import start_server

    host, bound = start_server(netron, file, port, browse)
    click.echo(f"Netron: http://{host}:{bound}/ (Ctrl-C to stop)")
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # so the temporary file is removed
    try:
        while netron.status((host, bound)):
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        netron.stop((host, bound))
