"""``runlog report`` and ``serve``: a run in a browser (see docs/VIEWER.md)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .. import _paths, remote, web
from .._text import clean
from ..errors import ConfigurationError
from ..reading import _runs
from ..reading._source import RunSource
from ..web import _model
from ._args import DEFAULT_RUNS_DIR, RUN_HELP, add_command, add_run_arg, count_arg
from ._common import resolve_source

WEB_EXTRA = "runlog serve needs the extra runlog[web]: pip install 'runlog[web]'"


def cmd_report(args: argparse.Namespace) -> int:
    """``runlog report``: write one self-contained HTML file of the run."""
    output = Path(args.output) if args.output else None
    if remote.is_remote(args.run):
        with remote.fetched(args.run) as local:
            source = _runs.resolve_run(str(local))
            if output is None:
                output = Path.cwd() / f"{_run_id(source)}.report.html"
            path = web.write_report(source, output, max_records=args.max_records)
    else:
        source = resolve_source(args)
        if output is None:
            output = _model.default_report_path(source, args.run)
        path = web.write_report(source, output, max_records=args.max_records)
    print(clean(str(path)))
    return 0


def _run_id(source: RunSource) -> str:
    run_id = _model.run_info(source).get("run_id")
    return str(run_id) if _paths.is_safe_name(run_id) else source.run_dir.name


def cmd_serve(args: argparse.Namespace) -> int:
    """``runlog serve``: the read-only web viewer, until Ctrl-C."""
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise ConfigurationError(WEB_EXTRA) from None
    from ..web import _server

    app = _server.create_app(args.runs_dir, allowed_hosts=_server.hosts_for(args.host))
    sock = _server.bind(args.host, args.port)
    port = sock.getsockname()[1]
    host = f"[{args.host}]" if ":" in args.host else args.host
    shown = (
        remote.display_url(args.runs_dir)
        if remote.is_remote(args.runs_dir)
        else args.runs_dir
    )
    print(f"serving {clean(shown)} at http://{host}:{port}/", flush=True)
    _server.run_server(app, sock)
    return 0


def register(commands: Any) -> None:
    """Add ``report``, ``serve`` to the ``runlog`` subcommands."""
    report = add_command(
        commands,
        "report",
        cmd_report,
        "write one self-contained HTML file of a run (opens offline)",
        "Writes an HTML page of RUN: status, step timeline, per-step charts, errors\n"
        "and a filterable log table. One file, no network: send it to anyone.\n"
        "Default output: RUN/report.html; for an archive, <run_id>.report.html next\n"
        "to it; for a URL, <run_id>.report.html in the current directory.",
        [
            "runlog report runs/demo/20251020T142345Z-3f9a1c",
            "runlog report RUN -o /tmp/run.html --max-records 10000",
            "runlog report s3://bucket/runs/demo/20251020T142345Z-3f9a1c",
        ],
    )
    add_run_arg(report, help_text=RUN_HELP + ", or a URL of a stored run")
    report.add_argument("-o", "--output", metavar="FILE", help="where to write")
    report.add_argument(
        "--max-records",
        type=count_arg,
        default=web.DEFAULT_MAX_RECORDS,
        metavar="N",
        help="records kept besides warnings, errors and lifecycle records "
        f"(default: {web.DEFAULT_MAX_RECORDS})",
    )
    serve = add_command(
        commands,
        "serve",
        cmd_serve,
        "a read-only local web viewer of runs, live for running runs",
        "Serves the runs under RUNS_DIR (or a storage URL) at http://127.0.0.1:8765/.\n"
        "Read-only; binds 127.0.0.1 unless --host says otherwise. Needs the extra\n"
        "runlog[web]. Ctrl-C stops it.",
        [
            "runlog serve",
            "runlog serve runs --port 0            # any free port",
            "runlog serve s3://bucket/runs",
        ],
    )
    serve.add_argument(
        "runs_dir",
        nargs="?",
        default=DEFAULT_RUNS_DIR,
        metavar="RUNS_DIR|URL",
        help="the runs directory (default: runs) or an object storage URL",
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)"
    )
    serve.add_argument(
        "--port",
        type=_port_arg,
        default=8765,
        help="port (default: 8765; 0 picks a free one)",
    )


def _port_arg(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"port {text!r}: use 0-65535")
    return int(text)
