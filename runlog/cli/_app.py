"""The ``runlog`` command line: the parser of every command, and ``main``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import import_module
from types import ModuleType
from typing import Final

from .._text import clean
from .._version import __version__
from ..errors import RunlogError
from ._args import PROG, Formatter, Handler, examples
from ._pager import NO_PAGER_FLAG, paged, strip_no_pager

# each command and the module of its group, in the order of `runlog --help`;
# a command imports only its own group, so `runlog ls` does not pay for the
# imports of `diff` or `serve` (see #16)
COMMAND_GROUP_OF: Final = {
    "demo": "_cmd_demo",
    "ls": "_cmd_ls",
    "show": "_cmd_read",
    "tail": "_cmd_read",
    "summarize": "_cmd_summary",
    "gitignore": "_cmd_summary",
    "diff": "_cmd_diff",
    "archive": "_cmd_archive",
    "verify": "_cmd_archive",
    "upload": "_cmd_archive",
    "errors": "_cmd_fleet",
    "query": "_cmd_fleet",
    "prune": "_cmd_fleet",
    "report": "_cmd_web",
    "serve": "_cmd_web",
    "completion": "_cmd_completion",
}
COMMAND_GROUPS: Final = tuple(dict.fromkeys(COMMAND_GROUP_OF.values()))
# what main passes to build_parser for `runlog --version`: no command group
_NO_COMMAND: Final = "--version"


def _group(name: str) -> ModuleType:
    return import_module(f"{__package__}.{name}")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """
    The ``runlog`` argument parser with every subcommand.

    Args:
        command: Only the group of this command (the parser ``main`` builds
            once it knows the command); default: every command.
    """
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
    parser.add_argument(
        NO_PAGER_FLAG,
        action="store_true",
        help="never page the output (also after the command; or set "
        "RUNLOG_PAGER= or PAGER=)",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    group = COMMAND_GROUP_OF.get(command or "")
    groups = () if command == _NO_COMMAND else (group,) if group else COMMAND_GROUPS
    for name in groups:
        _group(name).register(commands)
    return parser


@contextmanager
def _read_urls_locally(args: argparse.Namespace) -> Iterator[None]:
    """show/tail/verify given a URL read a temporary local copy of it (#8)."""
    name: str | None = getattr(args, "url_arg", None)
    value = getattr(args, name, None) if name else None
    if name is None or "://" not in str(value):
        yield
        return
    from .. import remote  # fsspec and the store code: only for URLs

    if not remote.is_remote(value):
        yield
        return
    if getattr(args, "follow", False):
        raise RunlogError(
            f"cannot follow {remote.display_url(value)!r}: a stored run is a "
            "snapshot (drop -f)"
        )
    with remote.fetched(value) as local:
        setattr(args, name, str(local))
        # what to print instead of the temporary copy's path (see #17)
        args.url_copy = (local, value)
        yield


def _unknown_command(parser: argparse.ArgumentParser, words: list[str]) -> str | None:
    """
    The error for a first word that is no command, with the nearest one
    (``unknown command 'shwo' (did you mean 'show'?)``), else None (#16).
    """
    first = next((word for word in words if not word.startswith("-")), None)
    if first is None:
        return None
    names: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            names.extend(action.choices)
    if first in names:
        return None
    import difflib  # only for a mistyped command (start-up time, #16)

    close = difflib.get_close_matches(first, names, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else f"see `{PROG} --help`"
    return f"unknown command {first!r} ({hint})"


def main(argv: list[str] | None = None) -> int:
    """
    Run the ``runlog`` command line with *argv* (default: ``sys.argv[1:]``).

    Returns:
        0 on success, 1 when a check failed, 2 on a usage or input error
        (with one ``runlog: error: ...`` line on stderr and no traceback).
    """
    words, no_pager = strip_no_pager(sys.argv[1:] if argv is None else list(argv))
    first = next((word for word in words if not word.startswith("-")), None)
    # `runlog --version` needs no command: none is imported (start-up, #16)
    bare = first is None and "--version" in words and not {"-h", "--help"} & {*words}
    parser = build_parser(_NO_COMMAND if bare else first)
    unknown = _unknown_command(parser, words)
    if unknown is not None:
        print(f"{PROG}: error: {clean(unknown)}", file=sys.stderr)
        return 2
    try:
        args = parser.parse_args(words)
    except SystemExit as exc:  # argparse exits for --help, --version and misuse
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        # long output goes through a pager on a terminal, as in git (#16)
        pages = getattr(args, "pages", False) and not getattr(args, "follow", False)
        with _read_urls_locally(args), paged(pages and not no_pager):
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
