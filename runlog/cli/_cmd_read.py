"""``runlog ls``, ``show`` and ``tail``: reading runs."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from .. import remote
from .._text import clean
from ..errors import RunlogError, RunNotFoundError
from ..reading import _follow, _runs, _source
from ..reading._merge import last_records, read_records
from ..reading._source import Filters, ReadReport, RunSource
from ._args import (
    DEFAULT_RUNS_DIR,
    FOLLOW_INTERVAL_S,
    RUN_HELP,
    add_color,
    add_command,
    add_filters,
    add_run_arg,
    count_arg,
)
from ._common import (
    filters_from,
    note,
    print_entries,
    report_malformed,
    resolve_source,
)
from ._render import PROBLEM_STATUSES, Style, ls_json, ls_table, wants_color


def _explain_empty(source: RunSource, filters: Filters) -> None:
    message = "no records match"
    if source.archive is None and filters.steps is not None:
        files = _source.list_log_files(source.logs_dir)
        present = sorted({f.step for f in files if f.step is not None})
        if not set(filters.steps) & set(present):
            shown = ", ".join(str(s) for s in present[:20]) or "none"
            message += f" (this run's steps: {shown})"
    note(message)


def cmd_ls(args: argparse.Namespace) -> int:
    """
    ``runlog ls``: one line per run, newest first.

    A run that cannot be read is a row (UNREADABLE, with the reason), not an
    error: the exit code is 0 whenever the directory itself could be listed,
    even when every run in it is unreadable (see #12).
    """
    runs_dir = Path(args.runs_dir)
    if remote.is_remote(args.runs_dir):
        rows = remote.scan_remote_runs(args.runs_dir)
    elif not runs_dir.is_dir():
        raise RunNotFoundError(f"runs directory {args.runs_dir!r}: no such directory")
    else:
        rows = _runs.scan_runs(runs_dir)
    if args.json:
        print(ls_json(rows))
        return 0
    if not rows:
        note(f"no runs under {args.runs_dir!r} (try `runlog demo`)")
        return 0
    style = Style(wants_color(args.color, sys.stdout))
    for line in ls_table(rows, style):
        print(line)
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
    # `show` cannot read an unreadable run: its row already says why
    readable = [row for row in problems if row.status != _runs.UNREADABLE]
    if readable:
        where = clean(str(readable[0].url or readable[0].path))
        print(f"newest problem: runlog show {where} --level warning")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """``runlog show``: the run's records in time order."""
    source = resolve_source(args)
    filters = filters_from(args)
    report = ReadReport()
    style = Style(wants_color(args.color, sys.stdout))
    count = print_entries(
        read_records(source, filters, report),
        style,
        as_json=args.json,
        source=args.source,
    )
    if count == 0:
        _explain_empty(source, filters)
    report_malformed(report)
    return 0


def cmd_tail(args: argparse.Namespace) -> int:
    """``runlog tail``: the last records; ``-f`` follows the run as it grows."""
    source = resolve_source(args)
    filters = filters_from(args)
    report = ReadReport()
    style = Style(wants_color(args.color, sys.stdout))
    if args.follow and source.archive is not None:
        raise RunlogError(
            f"cannot follow {source.archive.name}: an archive does not grow "
            "(drop -f, or give the run directory of a live run)"
        )
    entries, ends = last_records(source, args.lines, filters, report)
    print_entries(entries, style, as_json=args.json, source=args.source)
    sys.stdout.flush()
    if not args.follow:
        report_malformed(report)
        return 0
    follower = _follow.Follower(source.logs_dir, filters, start=ends, report=report)
    try:
        while True:
            new = follower.poll()
            if print_entries(new, style, as_json=args.json, source=args.source):
                sys.stdout.flush()
            if not follower.behind:  # a flood is caught up without pauses
                time.sleep(args.interval)
    except KeyboardInterrupt:
        # Ctrl-C is how a follow ends: not an error
        sys.stdout.flush()
        report_malformed(report)
        return 0


def register(commands: Any) -> None:
    """Add ``ls``, ``show``, ``tail`` to the ``runlog`` subcommands."""
    ls = add_command(
        commands,
        "ls",
        cmd_ls,
        "list runs, newest first; failed and crashed runs stand out",
        "Lists every run under RUNS_DIR (runs/<framework>/<run_id>/), newest first:"
        "\nframework, run id, status, start, duration, steps, errors, warnings.\n"
        "A run whose process died while it said `running` shows as CRASHED;\n"
        "problem statuses are in capitals (and red on a terminal).",
        [
            "runlog ls",
            "runlog ls sample_runs",
            "runlog ls --json | jq '.[] | select(.status != \"success\")'",
        ],
    )
    ls.add_argument(
        "runs_dir",
        nargs="?",
        default=DEFAULT_RUNS_DIR,
        metavar="RUNS_DIR",
        help="directory of runs (default: runs)",
    )
    ls.add_argument("--json", action="store_true", help="print a JSON list")
    add_color(ls)

    show = add_command(
        commands,
        "show",
        cmd_show,
        "print a run's records in time order, with filters",
        "Prints the records of a run, every step and component file merged in "
        "time order,\none line each: time (UTC), level, step, component, event, "
        "key=value.\nTracebacks are shown indented below their record. RUN may be "
        "an archive: it is read\nin place, never extracted. Works on a run that "
        "is still being written.",
        [
            "runlog show runs/demo/20251020T142345Z-3f9a1c --step 3 --level warning",
            "runlog show 20251020T1423 --component adapter --grep 'llm_request'",
            "runlog show runs/demo/20251020T142345Z-3f9a1c/run.tar.gz --level error",
            "runlog show RUN --since 2025-10-20T14:20Z --until 2025-10-20T14:30Z",
            'runlog show RUN --json | jq -r \'select(.event=="llm_request") '
            "| .total_tokens'",
        ],
    )
    add_run_arg(show, help_text=RUN_HELP)
    add_filters(show)
    show.set_defaults(url_arg="run")  # an s3://... RUN is read from a local copy

    tail = add_command(
        commands,
        "tail",
        cmd_tail,
        "print a run's last records; -f follows it as it grows",
        "Prints the last N records across all of the run's files. With -f, keeps "
        "printing\nnew records as they are written, including the files of steps "
        "that start later,\nuntil Ctrl-C.",
        [
            "runlog tail runs/demo/20251020T142345Z-3f9a1c",
            "runlog tail RUN -f",
            "runlog tail RUN -f --level warning",
            "runlog tail RUN -n 50 --component adapter",
        ],
    )
    add_run_arg(tail, help_text=RUN_HELP)
    tail.add_argument(
        "-n",
        "--lines",
        type=count_arg,
        default=20,
        metavar="N",
        help="how many records (default: 20)",
    )
    tail.set_defaults(url_arg="run")  # an s3://... RUN is read from a local copy
    tail.add_argument(
        "-f", "--follow", action="store_true", help="keep printing new records"
    )
    tail.add_argument(
        "--interval",
        type=float,
        default=FOLLOW_INTERVAL_S,
        metavar="S",
        help=argparse.SUPPRESS,
    )
    add_filters(tail)
