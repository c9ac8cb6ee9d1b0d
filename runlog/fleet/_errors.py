"""Every error of many runs, grouped by the fingerprint of its failure."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import orjson

from .._records import ERROR_MARKS, ORCHESTRATOR, RESERVED_KEYS
from .._text import value_text
from ..errors import RunlogError
from ..reading._merge import read_records
from ..reading._source import (
    MAX_BLOCK,
    MAX_LINE,
    Entry,
    Filters,
    ReadReport,
    RunSource,
    level_number,
    list_log_files,
    parse_entry,
    unreadable,
)
from ..summary._fingerprint import (
    Fingerprint,
    _exception_of,
    _traceback_of,
    fingerprint,
)
from ._runs import FleetRun, local_copy

ERROR_LEVEL: Final = 40
LIFECYCLE_EVENTS: Final = frozenset({"step_end", "run_end"})
_EXAMPLE_FIELDS: Final = 6


@dataclass(frozen=True, slots=True)
class Occurrence:
    """Where one counted failure was: the run, step, component, file and line."""

    run: str
    ts: str
    step: int | None
    component: str
    level: str
    location: str
    message: str


@dataclass
class ErrorGroup:
    """One fingerprint across the runs read: how often, where, when."""

    fingerprint: Fingerprint
    count: int = 0
    runs: set[str] = field(default_factory=set)
    first_seen: str = ""
    last_seen: str = ""
    newest: Occurrence | None = None
    is_new: bool = False

    def add(self, occurrence: Occurrence) -> None:
        """Count one more *occurrence* of this failure."""
        self.count += 1
        self.runs.add(occurrence.run)
        if not self.first_seen or occurrence.ts < self.first_seen:
            self.first_seen = occurrence.ts
        if self.newest is None or occurrence.ts >= self.last_seen:
            self.last_seen = occurrence.ts
            self.newest = occurrence

    def as_json(self) -> dict[str, Any]:
        """The group as plain JSON values."""
        newest = self.newest
        return {
            "key": self.fingerprint.key,
            "fingerprint": str(self.fingerprint),
            "kind": self.fingerprint.kind,
            "message": self.fingerprint.message,
            "frame": self.fingerprint.frame,
            "count": self.count,
            "runs": len(self.runs),
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "new": self.is_new,
            "example": newest.message if newest else "",
            "newest": None
            if newest is None
            else {
                "run": newest.run,
                "ts": newest.ts,
                "step": newest.step,
                "component": newest.component,
                "level": newest.level,
                "location": newest.location,
            },
        }


@dataclass
class ErrorsReport:
    """What ``runlog errors`` found: the groups, and what could not be read."""

    groups: list[ErrorGroup]
    runs_read: int
    malformed: ReadReport
    unreadable: list[tuple[str, str]]


def _marked_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """The lines of *path* holding an error or critical mark, numbered from 1."""
    carry = b""
    line_no = 0  # newlines before the start of *carry*
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(MAX_BLOCK):
                data = carry + chunk
                cut = data.rfind(b"\n") + 1
                if cut == 0:
                    if len(data) > MAX_LINE:
                        data = data[-len(ERROR_MARKS[1]) :]  # a line too long to be one
                    carry = data
                    continue
                yield from _marked_in(data, cut, line_no)
                line_no += data.count(b"\n", 0, cut)
                carry = data[cut:]
    except FileNotFoundError:
        return
    except OSError as exc:
        raise unreadable(path, exc) from exc
    # an unended last line is still being written: not read yet


def _marked_in(data: bytes, stop: int, line_no: int) -> Iterator[tuple[int, bytes]]:
    hits: list[int] = []
    for mark in ERROR_MARKS:
        pos = data.find(mark, 0, stop)
        while pos >= 0:
            hits.append(pos)
            pos = data.find(mark, pos + 1, stop)
    if not hits:
        return
    hits.sort()
    counted = 0  # offset up to which newlines are counted into line_no
    last_start = -1
    for pos in hits:
        start = data.rfind(b"\n", 0, pos) + 1
        if start == last_start:
            continue  # two marks on one line: one record
        last_start = start
        end = data.find(b"\n", pos, stop)
        line_no += data.count(b"\n", counted, start)
        counted = start
        yield line_no + 1, data[start:end]


def dir_errors(
    logs_dir: Path, since: datetime | None, report: ReadReport | None
) -> list[Entry]:
    """
    The error and critical records under *logs_dir*, in time order.

    Only lines holding a level mark are parsed; a marked line that is not a
    record is counted in *report*.

    Raises:
        RunlogError: If a log file exists but cannot be read.
    """
    filters = Filters(min_level=ERROR_LEVEL, since=since)
    found: list[Entry] = []
    for log_file in list_log_files(logs_dir):
        for line_no, raw in _marked_lines(logs_dir / log_file.rel):
            entry = parse_entry(raw, log_file.rel, line_no, report)
            if entry is not None and filters.matches(entry.record):
                found.append(entry)
    found.sort(key=lambda entry: entry.ts)  # stable: file order breaks ties
    return found


def run_errors(
    source: RunSource, since: datetime | None, report: ReadReport | None
) -> Iterator[Entry]:
    """
    The error and critical records of one run, in time order.

    Raises:
        RunlogError: If the run's files or archive cannot be read.
    """
    if source.archive is None:
        return iter(dir_errors(source.logs_dir, since, report))
    filters = Filters(min_level=ERROR_LEVEL, since=since)
    return read_records(source, filters, report)


def is_lifecycle(record: dict[str, Any]) -> bool:
    """True for ``step_end``/``run_end``, which re-report a step's or run's failure."""
    return (
        record.get("event") in LIFECYCLE_EVENTS
        and record.get("component") == ORCHESTRATOR
    )


def failures(entries: Iterable[Entry]) -> Iterator[tuple[Entry, Fingerprint]]:
    """
    The failures among one run's error *entries* (in time order), each once.

    A ``step_end`` that re-reports a failure already logged in its step is
    not counted again, nor a ``run_end`` re-reporting one seen in the run:
    one exception logged by the user, then by the step and the run, is one
    failure (see #19). A retry that fails the same way is a new failure.
    """
    pending: dict[tuple[object, tuple[str, str, str]], int] = {}
    seen: set[tuple[str, str, str]] = set()
    for entry in entries:
        record = entry.record
        if level_number(record.get("level")) < ERROR_LEVEL:
            continue
        mark = fingerprint(record)
        same = _failure(mark)
        if is_lifecycle(record):
            if record.get("event") == "step_end":
                if pending.pop((record.get("step"), same), 0):
                    seen.add(same)
                    continue
            elif same in seen:
                continue
        else:
            slot = (record.get("step"), same)
            pending[slot] = pending.get(slot, 0) + 1
        seen.add(same)
        yield entry, mark


def _failure(mark: Fingerprint) -> tuple[str, str, str]:
    # a traceback names `pkg.mod.MyError` where step_end's error_type says
    # `MyError`: the same failure either way
    return mark.kind.rpartition(".")[2], mark.message, mark.frame


def example(record: dict[str, Any], mark: Fingerprint) -> str:
    """The message a person reads for *record*: event, then the exception line."""
    event = record.get("event")
    text = event if isinstance(event, str) else value_text(event)
    exception = _exception_of(record, _traceback_of(record))
    if exception is not None:
        kind, message = exception
        first = message.strip().splitlines()[0] if message.strip() else ""
        line = f"{kind}: {first}" if first else kind
        return line if is_lifecycle(record) else f"{text}: {line}"
    extras = [
        f"{key}={value_text(value)}"
        for key, value in record.items()
        if key not in RESERVED_KEYS
    ]
    return " ".join([text, *extras[:_EXAMPLE_FIELDS]])


def error_keys(source: RunSource, report: ReadReport | None = None) -> set[str]:
    """
    The fingerprint keys of every failure of the run at *source*.

    Raises:
        RunlogError: If the run cannot be read.
    """
    return {mark.key for _, mark in failures(run_errors(source, None, report))}


def collect_errors(
    runs: Sequence[FleetRun],
    *,
    since: datetime | None = None,
    baseline: set[str] | None = None,
) -> ErrorsReport:
    """
    Every failure of *runs* grouped by fingerprint, most frequent first.

    Runs whose last activity is before *since* are not read at all; of the
    others only records at or after *since* count. With *baseline* (the
    keys of a known run, see :func:`error_keys`) groups not in it are marked
    new and listed first. A run that cannot be read is listed in the
    report's ``unreadable`` with the reason; it does not stop the others.

    Raises:
        UploadError: If a stored run cannot be fetched.
    """
    groups: dict[str, ErrorGroup] = {}
    report = ReadReport()
    problems: list[tuple[str, str]] = []
    read = 0
    for run in runs:
        if _quiet_since(run, since):
            continue
        try:
            with local_copy(run) as source:
                counted = list(failures(run_errors(source, since, report)))
        except (RunlogError, OSError) as exc:
            problems.append((run.label, str(exc)))
            continue
        read += 1
        for entry, mark in counted:
            record = entry.record
            step = record.get("step")
            group = groups.get(mark.key)
            if group is None:
                group = groups[mark.key] = ErrorGroup(mark)
            group.add(
                Occurrence(
                    run=run.label,
                    ts=entry.ts,
                    step=step if type(step) is int else None,
                    component=str(record.get("component") or ""),
                    level=str(record.get("level") or ""),
                    location=entry.location,
                    message=example(record, mark),
                )
            )
    if baseline is not None:
        for group in groups.values():
            group.is_new = group.fingerprint.key not in baseline
    # new first, then the most frequent, then the most recent
    ordered = sorted(groups.values(), key=lambda g: g.last_seen, reverse=True)
    ordered.sort(key=lambda g: (not g.is_new, -g.count))
    return ErrorsReport(ordered, read, report, problems)


def _quiet_since(run: FleetRun, since: datetime | None) -> bool:
    """True when *run* ended before *since*: none of its records can count."""
    activity = run.last_activity
    return (
        since is not None
        and activity is not None
        and run.status != "running"
        and run.ended is not None
        and activity < since
    )


def show_command(occurrence: Occurrence) -> str:
    """The ``runlog show`` command that opens *occurrence* (and what follows it)."""
    parts = ["runlog", "show", _quote(occurrence.run)]
    if occurrence.step is not None:
        parts += ["--step", str(occurrence.step)]
    parts += ["--level", "error", "--since", occurrence.ts]
    return " ".join(parts)


def _quote(text: str) -> str:
    safe = all(char.isalnum() or char in "/._-:+=@%," for char in text)
    return text if safe and text else "'" + text.replace("'", "'\\''") + "'"


def dump_json(report: ErrorsReport) -> bytes:
    """The report as one JSON document (``runlog errors --json``)."""
    return orjson.dumps(
        {
            "runs_read": report.runs_read,
            "malformed_lines": report.malformed.malformed,
            "unreadable": [
                {"run": run, "reason": reason} for run, reason in report.unreadable
            ],
            "groups": [group.as_json() for group in report.groups],
        },
        option=orjson.OPT_INDENT_2,
    )
