"""``runlog show`` and ``tail``: reading runs."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from .._text import format_duration
from ..errors import RunlogError
from ..reading import _source
from ..reading._latest import run_end
from ..reading._merge import last_records, read_batches, with_context
from ..reading._source import Filters, ReadReport, RunSource
from ._args import (
    DEFAULT_RUNS_DIR,
    RUN_HELP,
    add_command,
    add_filters,
    count_arg,
)
from ._common import (
    filters_from,
    location_prefix,
    note,
    print_batches,
    print_entries,
    report_malformed,
    resolve_source,
)
from ._render import Style, wants_color

# how often `tail -f` looks for new records: a record reaches the screen
# within this plus one poll (#16)
_FOLLOW_POLL_S = 0.1


def _explain_empty(source: RunSource, filters: Filters) -> None:
    message = "no records match"
    if source.archive is None and (
        filters.steps is not None or filters.components is not None
    ):
        files = _source.list_log_files(source.logs_dir)
        present = sorted({f.step for f in files if f.step is not None})
        if filters.steps is not None and not set(filters.steps) & set(present):
            shown = ", ".join(str(s) for s in present[:20]) or "none"
            message += f" (this run's steps: {shown})"
        components = sorted({f.component for f in files})
        unknown = sorted(set(filters.components or ()) - set(components))
        if unknown:
            # a mistyped -c, as a wrong --step lists the steps (#16)
            names = ", ".join(repr(name) for name in unknown)
            shown = ", ".join(components[:40]) or "none"
            message += f" (no component {names} in this run; its components: {shown})"
    note(message)


def cmd_show(args: argparse.Namespace) -> int:
    """
    ``runlog show``: the run's records in time order.

    Exits 1 when filters are given and match no record, as grep does (#16).
    """
    source = resolve_source(args)
    filters = filters_from(args)
    report = ReadReport()
    style = Style(wants_color(args.color, sys.stdout))
    prefix = location_prefix(source) if args.source else ""
    before = args.before if args.before is not None else args.context
    after = args.after if args.after is not None else args.context
    if before or after:
        count = _show_with_context(args, source, filters, report, style, prefix)
    else:
        count = print_batches(
            read_batches(source, filters, report),
            style,
            as_json=args.json,
            source=args.source,
            prefix=prefix,
        )
    if count == 0:
        _explain_empty(source, filters)
    report_malformed(report)
    # like grep: 1 when the filters match nothing (a run with no records,
    # shown whole, is not a failed search)
    return 1 if count == 0 and not filters.is_empty else 0


def _show_with_context(
    args: argparse.Namespace,
    source: RunSource,
    filters: Filters,
    report: ReadReport,
    style: Style,
    prefix: str,
) -> int:
    """Print matches with -A/-B/-C records around them; the number of matches."""
    before = args.before if args.before is not None else args.context
    after = args.after if args.after is not None else args.context
    matches = 0
    out = sys.stdout
    for item in with_context(source, filters, before or 0, after or 0, report):
        if item is None:
            if not args.json:  # JSON lines stay JSON lines
                out.write("--\n")
            continue
        entry, matched = item
        matches += matched
        print_entries(
            (entry,), style, as_json=args.json, source=args.source, prefix=prefix
        )
    return matches


def cmd_tail(args: argparse.Namespace) -> int:
    """
    ``runlog tail``: the last records; ``-f`` follows the run as it grows.

    A followed run that ends (its run.json says so) is read to its end, then
    ``runlog: run ended: success (12.3s)`` goes to stderr and the exit code
    is 0, as ``kubectl logs -f`` ends with its pod (#16).
    """
    source = resolve_source(args)
    filters = filters_from(args)
    report = ReadReport()
    style = Style(wants_color(args.color, sys.stdout))
    prefix = location_prefix(source) if args.source else ""
    if args.follow and source.archive is not None:
        raise RunlogError(
            f"cannot follow {source.archive.name}: an archive does not grow "
            "(drop -f, or give the run directory of a live run)"
        )
    entries, ends = last_records(source, args.lines, filters, report)
    print_entries(entries, style, as_json=args.json, source=args.source, prefix=prefix)
    sys.stdout.flush()
    if not args.follow:
        report_malformed(report)
        return 0
    from ..reading import _follow  # only for -f (start-up time, #16)

    follower = _follow.Follower(source.logs_dir, filters, start=ends, report=report)
    try:
        while True:
            # read before reading what was written: nothing written before
            # the end is missed by the last poll
            ended = run_end(source.logs_dir)
            new = follower.poll()
            if print_entries(
                new, style, as_json=args.json, source=args.source, prefix=prefix
            ):
                sys.stdout.flush()
            if follower.behind:  # a flood is caught up without pauses
                continue
            if ended is not None:
                note(f"run ended: {ended.status} ({format_duration(ended.duration_s)})")
                report_malformed(report)
                return 0
            time.sleep(args.interval)
    except KeyboardInterrupt:
        # Ctrl-C is how a follow ends: not an error
        sys.stdout.flush()
        report_malformed(report)
        return 0


def _add_run(parser: argparse.ArgumentParser) -> None:
    # RUN may be left out: the newest run under --runs-dir (#16)
    parser.add_argument(
        "run",
        nargs="?",
        metavar="RUN",
        help=RUN_HELP + "; default: the newest run under --runs-dir",
    )
    parser.add_argument(
        "--runs-dir",
        default=DEFAULT_RUNS_DIR,
        metavar="DIR",
        help="where a bare run id, or the newest run, is looked up (default: runs)",
    )


def register(commands: Any) -> None:
    """Add ``show`` and ``tail`` to the ``runlog`` subcommands."""
    show = add_command(
        commands,
        "show",
        cmd_show,
        "print a run's records in time order, with filters",
        "Prints the records of a run, every step and component file merged in "
        "time order,\none line each: time (UTC), level, step, component, event, "
        "key=value.\nTracebacks are shown indented below their record. RUN may be "
        "an archive: it is read\nin place, never extracted. Works on a run that "
        "is still being written.\nExits 1 when filters match no record (as grep "
        "does). Without RUN, the newest run.",
        [
            "runlog show runs/demo/20251020T142345Z-3f9a1c --step 3 --level warning",
            "runlog show 20251020T1423 --component adapter --grep 'llm_request'",
            "runlog show runs/demo/20251020T142345Z-3f9a1c/run.tar.gz --level error",
            "runlog show RUN --since 2025-10-20T14:20Z --until 2025-10-20T14:30Z",
            "runlog show RUN --grep rate_limited -C 3 -s",
            'runlog show RUN --json | jq -r \'select(.event=="llm_request") '
            "| .total_tokens'",
        ],
    )
    _add_run(show)
    add_filters(show)
    context = show.add_argument_group("context (as in grep)")
    for flag, dest, text in (
        ("-A", "after", "records after each match"),
        ("-B", "before", "records before each match"),
        ("-C", "context", "records before and after each match"),
    ):
        context.add_argument(
            flag,
            dest=dest,
            type=count_arg,
            default=None if dest != "context" else 0,
            metavar="N",
            help=f"N {text}, in the run's time order ('--' between groups)",
        )
    show.set_defaults(url_arg="run")  # an s3://... RUN is read from a local copy
    show.set_defaults(pages=True)  # through a pager on a terminal (#16)

    tail = add_command(
        commands,
        "tail",
        cmd_tail,
        "print a run's last records; -f follows it as it grows",
        "Prints the last N records across all of the run's files. With -f, keeps "
        "printing\nnew records as they are written, including the files of steps "
        "that start later,\nuntil the run ends (then one last line on stderr: "
        "`run ended: success (12.3s)`)\nor Ctrl-C. Without RUN, the newest run.",
        [
            "runlog tail runs/demo/20251020T142345Z-3f9a1c",
            "runlog tail RUN -f",
            "runlog tail RUN -f --level warning",
            "runlog tail RUN -n 50 --component adapter",
        ],
    )
    _add_run(tail)
    tail.add_argument(
        "-n",
        "--lines",
        type=count_arg,
        default=20,
        metavar="N",
        help="how many records (default: 20)",
    )
    tail.set_defaults(url_arg="run")  # an s3://... RUN is read from a local copy
    tail.set_defaults(pages=True)  # through a pager on a terminal, not with -f
    tail.add_argument(
        "-f", "--follow", action="store_true", help="keep printing new records"
    )
    tail.add_argument(
        "--interval",
        type=float,
        default=_FOLLOW_POLL_S,
        metavar="S",
        help=argparse.SUPPRESS,
    )
    add_filters(tail)
