"""A run's records read back from its directory: log files, levels, filters, tails."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, Final

import orjson

from .. import _paths
from .._records import LEVEL_NUMBERS
from .._status import parse_time
from ..combined import format_human
from ..errors import RunlogError

LEVEL_ALIASES: Final = {**LEVEL_NUMBERS, "warn": 30, "fatal": 50, "exception": 40}
# Every record runlog writes has this exact timestamp shape, so bounds and sort
# keys compare as strings; anything else is parsed.
_CANONICAL_TS: Final = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
_DURATION: Final = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d)")
_DURATION_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MIN_BLOCK: Final = 64 * 1024
MAX_BLOCK: Final = 1 << 20
_BLOCK_BUDGET: Final = 16 << 20  # read-ahead shared by every open stream
_MAX_PROBLEMS: Final = 20


@dataclass(frozen=True, slots=True)
class LogFile:
    """One JSON-lines file: ``run.log``, ``<c>.log`` or ``step_NNN/<c>.log``."""

    rel: str
    step: int | None
    component: str


def classify(rel: str) -> LogFile | None:
    """
    The log file named by *rel* (a path relative to ``logs/``), else None.

    Only names runlog itself writes qualify: safe component names, ``.log``,
    at the top of ``logs/`` or one ``step_NNN/`` below it. ``combined.log`` is
    not a JSON-lines file and is left out. Archive member names go through
    here, so a name with ``..``, a leading ``/`` or extra levels never matches.
    """
    parts = rel.split("/")
    step: int | None = None
    if len(parts) == 2:
        step = _paths.parse_step_dir(parts[0])
        if step is None:
            return None
    elif len(parts) != 1:
        return None
    name = parts[-1]
    if not name.endswith(".log"):
        return None
    component = name[: -len(".log")]
    if not _paths.is_safe_name(component):
        return None
    if step is None and name == _paths.COMBINED_LOG:
        return None
    return LogFile(rel, step, component)


def file_order(log_file: LogFile) -> tuple[int, int, str]:
    """The sort key of *log_file* among a run's files."""
    # run-level files first, then steps in numeric order (step_1000 after
    # step_999); equal timestamps keep this order in the merge
    if log_file.step is None:
        return (0, 0, log_file.component)
    return (1, log_file.step, log_file.component)


def list_log_files(logs_dir: Path) -> list[LogFile]:
    """Every JSON-lines log file under *logs_dir*, run-level first, steps in order."""
    found: list[LogFile] = []
    try:
        entries = list(os.scandir(logs_dir))
    except FileNotFoundError:
        return found
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            if _paths.parse_step_dir(entry.name) is None:
                continue
            try:
                children = list(os.scandir(entry.path))
            except FileNotFoundError:  # removed while we listed
                continue
            for child in children:
                if child.is_file(follow_symlinks=False):
                    log_file = classify(f"{entry.name}/{child.name}")
                    if log_file is not None:
                        found.append(log_file)
        elif entry.is_file(follow_symlinks=False):
            log_file = classify(entry.name)
            if log_file is not None:
                found.append(log_file)
    found.sort(key=file_order)
    return found


def level_number(level: object) -> int:
    """The number of a record's level name; unknown names count as info."""
    if isinstance(level, str):
        return LEVEL_ALIASES.get(level.lower(), 20)
    return 20


def parse_level(text: str) -> int:
    """
    The number of a ``--level`` argument (``warning``, ``WARN``, ``30``).

    Raises:
        RunlogError: Naming the bad value.
    """
    if text.isdigit():
        return int(text)
    number = LEVEL_ALIASES.get(text.lower())
    if number is None:
        raise RunlogError(f"level {text!r}: use one of {list(LEVEL_NUMBERS)}")
    return number


def parse_when(text: str, *, now: datetime | None = None) -> datetime:
    """
    A ``--since``/``--until`` bound as an aware UTC datetime.

    Accepts RFC 3339 / ISO 8601 (``2025-10-20T14:23:45Z``, ``2025-10-20``;
    without an offset it is read as UTC, like every runlog time) or an age
    such as ``90s``, ``10m``, ``2h``, ``1d`` (that long before *now*).

    Raises:
        RunlogError: Naming the bad value.
    """
    stripped = text.strip()
    match = _DURATION.fullmatch(stripped)
    if match:
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        return (now or datetime.now(UTC)) - timedelta(seconds=seconds)
    try:
        parsed = datetime.fromisoformat(stripped)
    except ValueError:
        raise RunlogError(
            f"time {text!r}: use RFC 3339 like 2025-10-20T14:23:45Z, "
            "a date like 2025-10-20, or an age like 10m, 2h, 1d"
        ) from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def canonical_ts(moment: datetime) -> str:
    """*moment* in the record timestamp format, for string comparison."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True)
class Filters:
    """Which records to show; every set criterion must match."""

    steps: frozenset[int] | None = None
    components: frozenset[str] | None = None
    min_level: int = 0
    pattern: re.Pattern[str] | None = None
    since: datetime | None = None
    until: datetime | None = None

    @property
    def is_empty(self) -> bool:
        """True when every record matches."""
        return self == _NO_FILTERS

    def wants_file(self, log_file: LogFile) -> bool:
        """False when no record of *log_file* can match (saves reading it)."""
        if log_file.step is not None:
            if self.steps is not None and log_file.step not in self.steps:
                return False
            return self.components is None or log_file.component in self.components
        if log_file.component == "run":
            # run.log holds every component's records outside a step
            return self.steps is None
        # a run-level component's file holds its records of every step
        return self.components is None or log_file.component in self.components

    def matches(self, record: dict[str, Any]) -> bool:
        """True if *record* passes every criterion."""
        if self.steps is not None and record.get("step") not in self.steps:
            return False
        if self.components is not None and record.get("component") not in (
            self.components
        ):
            return False
        if self.min_level and level_number(record.get("level")) < self.min_level:
            return False
        if (self.since is not None or self.until is not None) and not self._in_window(
            record.get("ts")
        ):
            return False
        if self.pattern is not None:
            return self.pattern.search(searchable_text(record)) is not None
        return True

    def _in_window(self, ts: object) -> bool:
        if isinstance(ts, str) and _CANONICAL_TS.fullmatch(ts):
            if self.since is not None and ts < canonical_ts(self.since):
                return False
            return self.until is None or ts <= canonical_ts(self.until)
        moment = parse_time(ts)
        if moment is None:
            return False
        if self.since is not None and moment < self.since:
            return False
        return self.until is None or moment <= self.until


_NO_FILTERS: Final = Filters()


def searchable_text(record: dict[str, Any]) -> str:
    """What ``--grep`` searches: the record's human line, then its traceback."""
    text = format_human(record)
    exception = record.get("exception")
    if isinstance(exception, str):
        text = f"{text}\n{exception}"
    return text


@dataclass(frozen=True, slots=True)
class Entry:
    """One record read from a run, with where it was found."""

    ts: str
    record: dict[str, Any]
    source: str
    line: int

    @property
    def location(self) -> str:
        """``step_003/adapter.log:17``."""
        return f"{self.source}:{self.line}"


@dataclass
class ReadReport:
    """Lines that could not be read as records (count, first few locations)."""

    malformed: int = 0
    where: list[str] = field(default_factory=list)

    def add(self, source: str, line: int) -> None:
        """Count one malformed line at *source*:*line*."""
        self.malformed += 1
        if len(self.where) < _MAX_PROBLEMS:
            self.where.append(f"{source}:{line}")


def entry_key(entry: Entry) -> str:
    """The merge key of *entry*: its timestamp."""
    return entry.ts


def parse_entry(
    raw: bytes, source: str, line: int, report: ReadReport | None
) -> Entry | None:
    """The record on one line, or None (counted in *report*) when it is not one."""
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError:
        record = None
    if not isinstance(record, dict):
        if report is not None and raw.strip():
            report.add(source, line)
        return None
    ts = record.get("ts")
    return Entry(ts if isinstance(ts, str) else "", record, source, line)


@dataclass(frozen=True)
class RunSource:
    """Where a run's records are read from: its ``logs/`` or its archive."""

    run_dir: Path
    archive: Path | None = None

    @property
    def logs_dir(self) -> Path:
        """The run's ``logs/`` directory (absent when only the archive is left)."""
        return _paths.logs_dir(self.run_dir)

    @property
    def label(self) -> str:
        """The path to show the user."""
        return str(self.archive if self.archive is not None else self.run_dir)


# --- reading files in a directory -------------------------------------------


def block_size(streams: int) -> int:
    return max(MIN_BLOCK, min(MAX_BLOCK, _BLOCK_BUDGET // max(1, streams)))


def iter_file_lines(path: Path, block: int) -> Iterator[tuple[int, bytes]]:
    """The numbered lines of *path*, read *block* bytes at a time."""
    # Reopens the file for each block so that merging thousands of files never
    # holds thousands of descriptors. A last line without its newline is
    # still being written: it is yielded only if it is a whole JSON record.
    offset = 0
    line_no = 0
    pending = b""
    while True:
        try:
            with open(path, "rb") as handle:
                handle.seek(offset)
                chunk = handle.read(block)
        except FileNotFoundError:
            return
        if not chunk:
            break
        offset += len(chunk)
        data = pending + chunk
        cut = data.rfind(b"\n")
        if cut < 0:
            pending = data
            continue
        pending = data[cut + 1 :]
        for raw in data[:cut].split(b"\n"):
            line_no += 1
            yield line_no, raw
    if pending.strip():
        try:
            orjson.loads(pending)
        except orjson.JSONDecodeError:
            return
        yield line_no + 1, pending


def dir_entries(
    path: Path,
    rel: str,
    filters: Filters,
    report: ReadReport | None,
    block: int,
) -> Iterator[Entry]:
    for line_no, raw in iter_file_lines(path, block):
        entry = parse_entry(raw, rel, line_no, report)
        if entry is not None and filters.matches(entry.record):
            yield entry


def file_tail(
    path: Path,
    rel: str,
    count: int,
    filters: Filters,
    report: ReadReport | None,
) -> tuple[list[Entry], int]:
    """The last *count* matching records of *path* and where its last line ends."""
    # Reads backwards from the last newline until *count* records matched.
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            end = last_newline_end(handle, size)
            if count <= 0:
                return [], end
            total_lines = count_lines(handle, end)
            found: list[Entry] = []
            line_no = total_lines + 1
            for raw in reverse_lines(handle, end):
                line_no -= 1
                entry = parse_entry(raw, rel, line_no, report)
                if entry is not None and filters.matches(entry.record):
                    found.append(entry)
                    if len(found) >= count:
                        break
    except FileNotFoundError:
        return [], 0
    found.reverse()
    return found, end


def last_newline_end(handle: IO[bytes], size: int) -> int:
    """The offset just past the last newline in the first *size* bytes."""
    position = size
    while position > 0:
        start = max(0, position - MIN_BLOCK)
        handle.seek(start)
        chunk = handle.read(position - start)
        cut = chunk.rfind(b"\n")
        if cut >= 0:
            return start + cut + 1
        position = start
    return 0


def count_lines(handle: IO[bytes], end: int) -> int:
    """The number of newlines before offset *end*."""
    handle.seek(0)
    lines = 0
    remaining = end
    while remaining > 0:
        chunk = handle.read(min(MAX_BLOCK, remaining))
        if not chunk:
            break
        lines += chunk.count(b"\n")
        remaining -= len(chunk)
    return lines


def reverse_lines(handle: IO[bytes], end: int) -> Iterator[bytes]:
    """The lines before offset *end*, last first."""
    # *end* is just past a newline, so every line up to it is complete
    position = end
    pending = b""  # the start of a line that began further back
    first = True
    while position > 0:
        start = max(0, position - MIN_BLOCK)
        handle.seek(start)
        data = handle.read(position - start) + pending
        position = start
        pieces = data.split(b"\n")
        if first:
            pieces.pop()  # the empty piece after the final newline
            first = False
        pending = pieces.pop(0) if position > 0 and pieces else b""
        yield from reversed(pieces)
