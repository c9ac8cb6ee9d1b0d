"""The ``runlog`` command line: the parser of every command, and ``main``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

from .. import remote
from .._text import clean
from .._version import __version__
from ..errors import RunlogError
from . import _cmd_archive, _cmd_demo, _cmd_read, _cmd_summary
from ._args import PROG, Formatter, Handler, examples

# the order of `runlog --help`
COMMAND_GROUPS: tuple[ModuleType, ...] = (
    _cmd_demo,
    _cmd_read,
    _cmd_summary,
    _cmd_archive,
)


def build_parser() -> argparse.ArgumentParser:
    """The ``runlog`` argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Read, summarize and archive runlog runs: one directory of logs per "
            "run,\nsplit per step and per component."
        ),
        epilog=examples(
            "runlog demo                                  # make a sample run",
            "runlog ls                                    # which runs failed?",
            "runlog show RUN --step 3 --level warning     # what went wrong in step 3",
            "runlog tail RUN -f                           # watch a live run",
            "runlog verify RUN                            # is the archive intact?",
            "",
            "RUN is runs/<framework>/<run_id>, its run.tar.gz, or just the run id.",
            "`runlog COMMAND --help` shows each command's options and examples.",
        ),
        formatter_class=Formatter,
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.register(commands)
    return parser


@contextmanager
def _read_urls_locally(args: argparse.Namespace) -> Iterator[None]:
    """show/tail/verify given a URL read a temporary local copy of it (#8)."""
    name: str | None = getattr(args, "url_arg", None)
    value = getattr(args, name, None) if name else None
    if name is None or not remote.is_remote(value):
        yield
        return
    if getattr(args, "follow", False):
        raise RunlogError(
            f"cannot follow {remote.display_url(value)!r}: a stored run is a "
            "snapshot (drop -f)"
        )
    with remote.fetched(value) as local:
        setattr(args, name, str(local))
        yield


def main(argv: list[str] | None = None) -> int:
    """
    Run the ``runlog`` command line with *argv* (default: ``sys.argv[1:]``).

    Returns:
        0 on success, 1 when a check failed, 2 on a usage or input error
        (with one ``runlog: error: ...`` line on stderr and no traceback).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits for --help, --version and misuse
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        with _read_urls_locally(args):
            return handler(args)
    except RunlogError as exc:
        print(f"{PROG}: error: {clean(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        # the reader went away (`runlog show RUN | head`): stop quietly, and
        # point stdout at /dev/null so the interpreter's final flush is silent
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 0
    except KeyboardInterrupt:
        return 130
