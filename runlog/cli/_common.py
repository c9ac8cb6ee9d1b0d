"""What the commands share: resolving RUN, filters, printing records, notes."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable
from pathlib import Path

import orjson

from .._text import clean
from ..errors import RunlogError, RunNotFoundError
from ..reading import _runs, _source
from ..reading._source import Entry, Filters, ReadReport, RunSource
from ._args import PROG
from ._render import Style, render_entry


def note(message: str) -> None:
    print(f"{PROG}: {clean(message)}", file=sys.stderr)


def report_malformed(report: ReadReport) -> None:
    if report.malformed:
        where = ", ".join(report.where)
        more = report.malformed - len(report.where)
        if more > 0:
            where += f" and {more} more"
        note(f"note: skipped {report.malformed} malformed line(s): {where}")


def filters_from(args: argparse.Namespace) -> Filters:
    steps: frozenset[int] | None = None
    if args.step:
        steps = frozenset().union(*args.step)
    components = frozenset(args.component) if args.component else None
    pattern = None
    if args.grep is not None:
        try:
            pattern = re.compile(args.grep, re.IGNORECASE if args.ignore_case else 0)
        except re.error as exc:
            raise RunlogError(f"--grep {args.grep!r}: {exc}") from None
    return Filters(
        steps=steps,
        components=components,
        min_level=args.level or 0,
        pattern=pattern,
        since=_source.parse_when(args.since) if args.since else None,
        until=_source.parse_when(args.until) if args.until else None,
    )


def resolve_source(args: argparse.Namespace) -> RunSource:
    source = _runs.resolve_run(args.run, Path(args.runs_dir))
    if source.archive is not None and Path(args.run).is_dir():
        note(f"note: {source.run_dir}/logs/ is gone; reading {source.archive.name}")
    return source


def run_dir_of(args: argparse.Namespace) -> Path:
    """The run directory of RUN, which must still have its logs/."""
    source = _runs.resolve_run(args.run, Path(args.runs_dir))
    if not source.logs_dir.is_dir():
        raise RunNotFoundError(
            f"run {args.run!r}: {source.logs_dir} is missing, so there is "
            "nothing to read (an archive can be shown and verified, not rewritten)"
        )
    return source.run_dir


def print_entries(
    entries: Iterable[Entry],
    style: Style,
    *,
    as_json: bool = False,
    source: bool = False,
    block_lines: int | None = None,
) -> int:
    count = 0
    out = sys.stdout
    for entry in entries:
        if as_json:
            out.write(orjson.dumps(entry.record).decode("utf-8") + "\n")
        else:
            text = render_entry(entry, style, source=source, block_lines=block_lines)
            out.write(text + "\n")
        count += 1
    return count
