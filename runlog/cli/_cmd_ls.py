"""``runlog ls``: one line per run, newest first."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .. import remote
from .._text import clean
from ..errors import RunlogError, RunNotFoundError
from ..reading import _runs
from ._args import DEFAULT_RUNS_DIR, add_color, add_command
from ._common import note
from ._render import PROBLEM_STATUSES, Style, ls_json, ls_table, wants_color


def runs_dir_of(args: argparse.Namespace) -> str:
    """
    RUNS_DIR, given as the positional or as ``--runs-dir`` like every other
    command (see #16); ``runs`` when neither is.

    Raises:
        RunlogError: If both are given and differ (a usage error, exit 2).
    """
    positional: str | None = args.runs_dir
    option: str | None = args.runs_dir_option
    if positional is not None and option is not None and positional != option:
        raise RunlogError(
            f"runs directory given twice: RUNS_DIR {positional!r} and "
            f"--runs-dir {option!r} (give one)"
        )
    return positional or option or DEFAULT_RUNS_DIR


def cmd_ls(args: argparse.Namespace) -> int:
    """
    ``runlog ls``: one line per run, newest first.

    A run that cannot be read is a row (UNREADABLE, with the reason), not an
    error: the exit code is 0 whenever the directory itself could be listed,
    even when every run in it is unreadable (see #12).
    """
    where = runs_dir_of(args)
    runs_dir = Path(where)
    if remote.is_remote(where):
        rows = remote.scan_remote_runs(where)
    elif not runs_dir.is_dir():
        raise RunNotFoundError(f"runs directory {where!r}: no such directory")
    else:
        rows = _runs.scan_runs(runs_dir, cache=True)
    if args.json:
        print(ls_json(rows))
        return 0
    if not rows:
        note(f"no runs under {where!r} (try `runlog demo`)")
        return 0
    style = Style(wants_color(args.color, sys.stdout))
    print("\n".join(ls_table(rows, style)))
    problems = [row for row in rows if row.status in PROBLEM_STATUSES]
    counts: dict[str, int] = {}
    for row in problems:
        counts[row.status] = counts.get(row.status, 0) + 1
    tally = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    print()
    print(
        f"{len(rows)} run{'s' if len(rows) != 1 else ''}"
        + (f": {tally}" if tally else "")
    )
    # `show` cannot read an unreadable run (its row already says why), nor
    # one of which only the summary is here
    readable = [
        row
        for row in problems
        if row.status != _runs.UNREADABLE and row.source != "summary"
    ]
    if readable:
        where = clean(str(readable[0].url or readable[0].path))
        print(f"newest problem: runlog show {where} --level warning")
    return 0


def register(commands: Any) -> None:
    """Add ``ls`` to the ``runlog`` subcommands."""
    ls = add_command(
        commands,
        "ls",
        cmd_ls,
        "list runs, newest first; failed and crashed runs stand out",
        "Lists every run under RUNS_DIR (runs/<framework>/<run_id>/), newest first:"
        "\nframework, run id, status, start, duration, steps, errors, warnings.\n"
        "A run whose process died while it said `running` shows as CRASHED;\n"
        "problem statuses are in capitals (and red on a terminal). A run of which\n"
        "only logs_summary.txt is here (a fresh clone) is read from its summary\n"
        "and marked `summary only`. Finished runs are remembered in\n"
        "RUNS_DIR/.runlog-cache/ (git-ignored) while their files do not change.",
        [
            "runlog ls",
            "runlog ls sample_runs",
            "runlog ls --runs-dir sample_runs",
            "runlog ls --json | jq '.[] | select(.status != \"success\")'",
        ],
    )
    ls.add_argument(
        "runs_dir",
        nargs="?",
        default=None,
        metavar="RUNS_DIR",
        help="directory of runs, or a store URL (default: runs)",
    )
    ls.add_argument(
        "--runs-dir",
        dest="runs_dir_option",
        default=None,
        metavar="DIR",
        help="the same as RUNS_DIR, as the other commands take it",
    )
    ls.add_argument("--json", action="store_true", help="print a JSON list")
    ls.set_defaults(pages=True)  # through a pager on a terminal (#16)
    add_color(ls)
