"""What the commands share: resolving RUN, filters, printing records, notes."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import cast

import orjson

from .. import _paths
from .._text import clean
from ..errors import RunlogError, RunNotFoundError
from ..reading import _runs, _source
from ..reading._latest import newest_run
from ..reading._source import Entry, Filters, ReadReport, RunSource
from ._args import PROG
from ._render import Style, plain_line, plain_lines, render_entry

# lines written at once when stdout is not a terminal (see #16)
_BATCH = 512
# lines print_batches gathers before one write when stdout is not a terminal
_WRITE_LINES = 4096


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
    if args.run is None:
        # no RUN: the newest run, as `kubectl logs` takes the current pod (#16)
        newest = newest_run(Path(args.runs_dir))
        if newest is None:
            raise RunNotFoundError(
                f"no runs under {args.runs_dir!r}: give RUN, or --runs-dir DIR"
            )
        note(f"reading the newest run: {_shown_path(newest)}")
        args.run = str(newest)
    source = _runs.resolve_run(args.run, Path(args.runs_dir))
    if source.archive is not None and Path(args.run).is_dir():
        note(f"note: {source.run_dir}/logs/ is gone; reading {source.archive.name}")
    return source


def _shown_path(path: Path) -> str:
    # relative to the current directory when under it, so a terminal or an
    # editor opens it as printed; else absolute
    absolute = Path(os.path.abspath(path))
    here = Path(os.getcwd())
    if absolute.is_relative_to(here):
        return str(absolute.relative_to(here)) or "."
    return str(absolute)


def location_prefix(source: RunSource) -> str:
    """
    What goes before ``step_003/adapter.log:17`` in ``-s`` output: the run's
    ``logs/`` from the current directory (``runs/demo/<id>/logs/``), or the
    archive's path and ``:`` for a run read from its archive.
    """
    if source.archive is not None:
        return f"{_shown_path(source.archive)}:{_paths.LOGS_DIR}/"
    return f"{_shown_path(source.logs_dir)}/"


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
    prefix: str = "",
) -> int:
    count = 0
    out = sys.stdout
    batch: list[str] = []
    size = 1 if out.isatty() else _BATCH
    # without colour, the usual record's line is made without the call
    # through render_entry (see #16)
    fast = plain_line if not as_json and not style.enabled else None
    for entry in entries:
        if fast is not None:
            line = fast(entry, source, prefix)
            if line is None:
                line = render_entry(
                    entry, style, source=source, block_lines=block_lines, prefix=prefix
                )
            batch.append(line)
        elif as_json:
            batch.append(orjson.dumps(entry.record).decode("utf-8"))
        else:
            batch.append(
                render_entry(
                    entry, style, source=source, block_lines=block_lines, prefix=prefix
                )
            )
        count += 1
        if len(batch) >= size:
            batch.append("")
            out.write("\n".join(batch))
            batch = []
    if batch:
        batch.append("")
        out.write("\n".join(batch))
    return count


def print_batches(
    batches: Iterable[list[Entry]],
    style: Style,
    *,
    as_json: bool = False,
    source: bool = False,
    block_lines: int | None = None,
    prefix: str = "",
) -> int:
    """
    :func:`print_entries` for records that come a list at a time: the same
    output, each list rendered at once and written in a few big writes
    (see #16). Returns the number of records printed.
    """
    count = 0
    out = sys.stdout
    limit = 1 if out.isatty() else _WRITE_LINES
    pending: list[str] = []
    held = 0  # lines in *pending*
    iterator = iter(batches)
    while True:
        try:
            batch = next(iterator, None)
        except RunlogError:
            # a file that cannot be read: what was read before it is shown
            if pending:
                out.write("\n".join([*pending, ""]))
            raise
        if batch is None:
            break
        count += len(batch)
        held += len(batch)
        if as_json:
            text = b"\n".join(map(orjson.dumps, [e.record for e in batch]))
            pending.append(text.decode("utf-8"))
        elif style.enabled:
            pending.extend(
                render_entry(
                    entry, style, source=source, block_lines=block_lines, prefix=prefix
                )
                for entry in batch
            )
        else:
            lines = plain_lines(batch, source, prefix)
            if None in lines:
                lines = [
                    render_entry(
                        entry,
                        style,
                        source=source,
                        block_lines=block_lines,
                        prefix=prefix,
                    )
                    if line is None
                    else line
                    for line, entry in zip(lines, batch, strict=True)
                ]
            pending += cast("list[str]", lines)  # no None is left
        if held >= limit:
            pending.append("")
            out.write("\n".join(pending))
            pending = []
            held = 0
    if pending:
        pending.append("")
        out.write("\n".join(pending))
    return count
