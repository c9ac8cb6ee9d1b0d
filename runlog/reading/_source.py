"""A run's records read back from its directory: log files, levels, filters, tails."""

from __future__ import annotations

import itertools
import operator
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import IO, Any, Final, Protocol, TypeAlias, runtime_checkable

import orjson

from .. import _paths
from .._records import LEVEL_NUMBERS, RESERVED_KEYS
from .._status import parse_time
from ..combined import format_human, format_written
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
# A longer line is counted as malformed without being held (see #12): the
# bound on what one line can make a reader hold.
MAX_LINE: Final = 64 << 20
# A line that may be a record: `{` first and `}` last, but for JSON blanks.
_RECORD_LINE: Final = re.compile(rb"^[ \t\r]*\{[^\n]*\}[ \t\r]*$", re.MULTILINE)
_BLANKS: Final = b" \t\r"
# Lines this short are remembered when malformed, so that a bomb repeating one
# bad line costs a comparison per line, not a failed parse (see #12).
_MEMO_LINE: Final = 4096
# Blocks whose lines average this many bytes or more are cut with one split;
# shorter ones (blank lines, tiny junk) are skipped in bulk (see #12).
_LONG_LINE: Final = 32


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
        if self.steps is not None and not _is_in(record.get("step"), self.steps):
            return False
        if self.components is not None and not _is_in(
            record.get("component"), self.components
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

    def keep(self, entries: list[Entry]) -> list[Entry]:
        """
        The *entries* whose records :meth:`matches`, in order: one pass per
        criterion over the list instead of a call per record (see #16).
        """
        steps, components = self.steps, self.components
        if components is not None:
            entries = [
                e
                for e in entries
                if type(c := e.record.get("component")) not in _UNHASHABLE
                and c in components
            ]
        if steps is not None:
            entries = [
                e
                for e in entries
                if type(s := e.record.get("step")) not in _UNHASHABLE and s in steps
            ]
        if self.min_level:
            level, number = self.min_level, level_number
            entries = [e for e in entries if number(e.record.get("level")) >= level]
        if self.since is not None or self.until is not None:
            entries = [e for e in entries if self._in_window(e.record.get("ts"))]
        if self.pattern is not None:
            search = self.pattern.search
            entries = [e for e in entries if search(searchable_text(e.record))]
        return entries

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
_HEAD_SIZE: Final = len(RESERVED_KEYS)
# what orjson gives that cannot be hashed, so is in no set of steps or names
_UNHASHABLE: Final = (list, dict)


def _is_in(value: object, pool: frozenset[Any]) -> bool:
    # a record's step or component may be a list or an object (see #16)
    return type(value) not in _UNHASHABLE and value in pool


def searchable_text(record: dict[str, Any]) -> str:
    """What ``--grep`` searches: the record's human line, then its traceback."""
    step = record.get("step")
    if step is not None and type(step) is not int:
        # the human line caches its prefix by step: a list would not hash, and
        # True or 1.0 would share step 1's prefix; its text is str(step) (#16)
        record = {**record, "step": str(step)}
        text = format_human(record)
    elif (
        len(record) >= _HEAD_SIZE
        and tuple(islice(record, _HEAD_SIZE)) == RESERVED_KEYS
        and type(record["ts"]) is str
        and type(record["level"]) is str
        and type(record["event"]) is str
        and type(record["component"]) is str
    ):
        # runlog's own key order: the same line, made the way the write path
        # makes it, at a fraction of the cost (see #16)
        text = format_written(record)
    else:
        text = format_human(record)
    exception = record.get("exception")
    if isinstance(exception, str):
        text = f"{text}\n{exception}"
    return text


class Entry:
    """
    One record read from a run, with where it was found. Not to be changed.

    A plain class with ``__slots__``, not a frozen dataclass: made once per
    record read, it costs a third as much (see #16).
    """

    __slots__ = ("line", "record", "source", "ts")

    def __init__(self, ts: str, record: dict[str, Any], source: str, line: int) -> None:
        self.ts = ts
        self.record = record
        self.source = source
        self.line = line

    def __repr__(self) -> str:
        return (
            f"Entry(ts={self.ts!r}, record={self.record!r}, "
            f"source={self.source!r}, line={self.line!r})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Entry):
            return NotImplemented
        return (self.ts, self.record, self.source, self.line) == (
            other.ts,
            other.record,
            other.source,
            other.line,
        )

    __hash__ = None  # type: ignore[assignment]  # equal by value, and mutable

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

    def add_run(self, source: str, first: int, count: int) -> None:
        """Count *count* malformed lines from *source*:*first* on, in one step."""
        self.malformed += count
        room = min(count, _MAX_PROBLEMS - len(self.where))
        self.where.extend(f"{source}:{first + i}" for i in range(room))


def entry_key(entry: Entry) -> str:
    """The merge key of *entry*: its timestamp."""
    return entry.ts


_MALFORMED: Final = [b""]  # the last short malformed line seen


def parse_entry(
    raw: bytes, source: str, line: int, report: ReadReport | None
) -> Entry | None:
    """
    The record on one line, or None (counted in *report*) when it is not one.

    A line that is not a JSON object is malformed, a blank one included.
    """
    record: object = None
    if raw != _MALFORMED[0]:
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError:
            record = None
    if not isinstance(record, dict):
        if len(raw) <= _MEMO_LINE:
            # content-keyed, so right whichever thread or file it came from
            _MALFORMED[0] = raw
        if report is not None:
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


# --- cutting bytes into lines -----------------------------------------------
#
# Every reader (a directory, an archive member, a follower, a tail) cuts its
# bytes into lines here, in time linear in the bytes and memory bounded by a
# block plus the longest line it returns (see #12). Lines that cannot be a
# record (blank, whitespace, not `{...}`, longer than the line limit) are
# counted in bulk, and a run of identical lines is one item: a bomb of a
# million copies of one line costs a few C calls, not a million objects.

Line: TypeAlias = tuple[int, int, bytes | None]
"""``(line_no, count, raw)``: *count* lines from *line_no* on, each the bytes
*raw* (a line that may be a record), or, when *raw* is None, lines that are
not records (blank, not ``{...}``, too long)."""

Scanner: TypeAlias = Callable[[bytes, int, int, int, int, int], Iterator[Line]]
"""``(data, pos, stop, line_no, max_line, newlines)`` -> the :data:`Line`
items of the whole lines ``data[pos:stop]``, as :func:`scan_lines` cuts them."""


def may_be_record(raw: bytes) -> bool:
    """True if *raw* starts with ``{`` and ends with ``}`` (JSON blanks aside)."""
    if raw[:1] != b"{" or raw[-1:] != b"}":
        raw = raw.strip(_BLANKS)
    return raw[:1] == b"{" and raw[-1:] == b"}"


def scan_lines(
    data: bytes,
    pos: int,
    stop: int,
    line_no: int,
    max_line: int = MAX_LINE,
    newlines: int | None = None,
) -> Iterator[Line]:
    """
    The lines of ``data[pos:stop]``, numbered from *line_no*, as :data:`Line` items.

    ``data[pos:stop]`` holds whole lines, each ending in ``\\n`` (*newlines*
    of them, when the caller counted already). Where lines are long on
    average (records), one ``split`` cuts them; where they are short (blank
    lines, tiny junk, a repeated line), runs are found with ``bytes.find``,
    a regex and ``startswith``, so the time per byte stays small.
    """
    if newlines is None:
        newlines = data.count(b"\n", pos, stop)
    size = stop - pos
    if size <= max_line and size >= _LONG_LINE * newlines:
        return _split_lines(data[pos : stop - 1], line_no)
    return _find_lines(data, pos, stop, line_no, max_line)


def _split_lines(data: bytes, line_no: int) -> Iterator[Line]:
    # at most one line per _LONG_LINE bytes, none longer than the limit
    lines = data.split(b"\n")
    if any(map(operator.eq, lines, itertools.islice(lines, 1, None))):
        return _grouped_lines(lines, line_no)
    if min(lines)[:1] != b"{" or max(lines)[:1] != b"{":
        return _sorted_lines(lines, line_no)
    # every line starts with `{` and differs from the one before, as runlog
    # writes them: no Python loop at all
    return zip(itertools.count(line_no), itertools.repeat(1), lines)


def _sorted_lines(lines: list[bytes], line_no: int) -> Iterator[Line]:
    skipped = 0
    for raw in lines:
        if may_be_record(raw):
            if skipped:
                yield line_no, skipped, None
                line_no += skipped
                skipped = 0
            yield line_no, 1, raw
            line_no += 1
        else:
            skipped += 1
    if skipped:
        yield line_no, skipped, None


def _grouped_lines(lines: list[bytes], line_no: int) -> Iterator[Line]:
    for raw, group in itertools.groupby(lines):
        count = len(list(group))
        yield line_no, count, raw if may_be_record(raw) else None
        line_no += count


def _find_lines(
    data: bytes, pos: int, stop: int, line_no: int, max_line: int
) -> Iterator[Line]:
    while pos < stop:
        match = _next_record_line(data, pos, stop)
        start = stop if match is None else match.start()
        if start > pos:
            skipped = data.count(b"\n", pos, start)
            yield line_no, skipped, None
            line_no += skipped
            pos = start
        if match is None:
            return
        cut = match.end()  # the line's newline
        count = _copies(data, pos, cut + 1, stop)
        yield line_no, count, None if cut - pos > max_line else data[pos:cut]
        line_no += count
        pos += count * (cut + 1 - pos)


def _next_record_line(data: bytes, pos: int, stop: int) -> re.Match[bytes] | None:
    """The first line in ``data[pos:stop]`` that may be a record, or None."""
    brace = data.find(b"{", pos, stop)
    if brace < 0:
        return None
    # start the regex at the line holding the first brace: what lies before
    # it has no brace at all, so it is skipped at memchr speed
    line_start = data.rfind(b"\n", pos, brace) + 1 or pos
    return _RECORD_LINE.search(data, line_start, stop)


def _copies(data: bytes, pos: int, end: int, stop: int) -> int:
    """How many times ``data[pos:end]`` occurs back to back from *pos* on."""
    unit = end - pos
    if end + unit > stop or not data.startswith(data[pos:end], end):
        return 1  # the usual case: one test of a few bytes
    # gallop: double the stretch compared while it matches, then halve it
    count = 1
    step = 1
    growing = True
    while step:
        length = step * unit
        if end + length <= stop and data.startswith(data[pos : pos + length], end):
            # data[pos:end] repeats up to *end*, so data[pos:pos+length] is
            # *step* copies of it
            end += length
            count += step
            if growing and 2 * length <= end - pos:
                step *= 2
                continue
        growing = False
        step //= 2
    return count


class LineSplitter:
    """
    Cuts a byte stream fed in chunks into numbered :data:`Line` items.

    A line spread over many chunks is kept as a list of pieces and joined
    once, so a 50 MB line costs 50 MB of copying, not a copy per chunk. A line
    that cannot be a record (its first byte past blanks is not ``{``) or is
    longer than *max_line* is not kept at all: its pieces are dropped as they
    come and it is yielded as a line that is not a record. Leading blanks
    are not kept either (they do not change what the line parses to).
    Not thread-safe.
    """

    def __init__(
        self,
        max_line: int = MAX_LINE,
        line_no: int = 0,
        scan: Scanner | None = None,
    ) -> None:
        self.max_line = max_line
        self.line_no = line_no  # lines completed so far
        # cuts the whole lines of a chunk: scan_lines, or a prefilter's scan
        # that leaves out lines the filters cannot match (see #16)
        self._scan: Scanner = scan or scan_lines
        self._pieces: list[bytes] = []
        self._held = 0  # bytes of the unfinished line, dropped ones included
        self._junk = False  # the unfinished line cannot be a record

    def feed(self, chunk: bytes) -> Iterator[Line]:
        """The lines that *chunk* completes; its unfinished end is kept."""
        first = chunk.find(b"\n")
        if first < 0:
            self._hold(chunk)
            return iter(())
        self._hold(chunk[:first])
        self.line_no += 1
        done = self._take(self.line_no)
        last = chunk.rfind(b"\n")
        self._hold(chunk[last + 1 :])
        if last == first:
            return iter((done,))
        start = self.line_no + 1
        newlines = chunk.count(b"\n", first + 1, last + 1)
        self.line_no += newlines
        rest = self._scan(chunk, first + 1, last + 1, start, self.max_line, newlines)
        return itertools.chain((done,), rest)

    def rest(self) -> Line | None:
        """The unfinished last line (no newline yet), or None when there is none."""
        if not self._held:
            return None
        return self._take(self.line_no + 1)

    def _hold(self, piece: bytes) -> None:
        self._held += len(piece)
        if self._junk:
            return
        if self._held > self.max_line:
            self._junk = True  # too long to return: never held (see #12)
            self._pieces.clear()
        elif self._pieces:
            self._pieces.append(piece)
        else:
            # the line's first bytes decide: a file of NULs is never held
            piece = piece.lstrip(_BLANKS)
            if piece[:1] == b"{":
                self._pieces.append(piece)
            elif piece:
                self._junk = True

    def _take(self, line_no: int) -> Line:
        junk = self._junk
        raw = self._pieces[0] if len(self._pieces) == 1 else b"".join(self._pieces)
        self._pieces = []
        self._held = 0
        self._junk = False
        if junk or not may_be_record(raw):
            return line_no, 1, None
        return line_no, 1, raw


# --- reading files in a directory -------------------------------------------


def block_size(streams: int) -> int:
    """The read size for each of *streams* files merged at once."""
    return max(MIN_BLOCK, min(MAX_BLOCK, _BLOCK_BUDGET // max(1, streams)))


def unreadable(path: Path, exc: OSError) -> RunlogError:
    """The error for a log file that exists but cannot be read."""
    return RunlogError(f"cannot read {str(path)!r}: {exc.strerror or exc}")


def _file_chunks(path: Path, block: int, offset: int = 0) -> Iterator[bytes]:
    # Reopens the file for each block so that merging thousands of files never
    # holds thousands of descriptors.
    while True:
        try:
            with open(path, "rb") as handle:
                handle.seek(offset)
                chunk = handle.read(block)
        except FileNotFoundError:  # removed while we read: it ends here
            return
        except OSError as exc:  # replaced by a directory, EIO, EACCES (see #12)
            raise unreadable(path, exc) from exc
        if not chunk:
            return
        offset += len(chunk)
        yield chunk


def file_lines(
    path: Path, block: int, max_line: int = MAX_LINE, scan: Scanner | None = None
) -> Iterator[Line]:
    """
    The :data:`Line` items of the file at *path*, read *block* bytes at a time.

    A last line without its newline is still being written: it is yielded
    only if it is already a whole JSON value.

    With *scan*, whole lines are cut by it (a prefilter may leave some out);
    a scan bound to a :class:`FileScanner` reads the file its own way.

    Raises:
        RunlogError: If the file exists but cannot be read.
    """
    owner = getattr(scan, "__self__", None)
    if isinstance(owner, FileScanner):
        lines = owner.read_file(path, block, max_line)
        if lines is not None:
            return lines
    return split_file(path, block, max_line, scan)


@runtime_checkable
class FileScanner(Protocol):
    """What a :data:`Scanner` is bound to when it can read whole files (#16)."""

    def read_file(self, path: Path, block: int, max_line: int) -> Iterator[Line] | None:
        """The items :func:`split_file` gives with this scan, or None: use it."""


def split_file(
    path: Path,
    block: int,
    max_line: int = MAX_LINE,
    scan: Scanner | None = None,
    *,
    offset: int = 0,
    line_no: int = 0,
) -> Iterator[Line]:
    """
    :func:`file_lines` cut by *scan* itself; from *offset*, the start of
    line ``line_no + 1``, when given.

    Raises:
        RunlogError: If the file exists but cannot be read.
    """
    splitter = LineSplitter(max_line, line_no, scan=scan)
    for chunk in _file_chunks(path, block, offset):
        yield from splitter.feed(chunk)
    rest = splitter.rest()
    if rest is not None and rest[2] is not None:
        try:
            orjson.loads(rest[2])
        except orjson.JSONDecodeError:
            return
        yield rest


def iter_file_lines(path: Path, block: int) -> Iterator[tuple[int, bytes]]:
    """
    The numbered lines of *path* that may be records, read *block* bytes at a time.

    Blank lines, lines that are not ``{...}`` and lines over :data:`MAX_LINE`
    are skipped (counted by :func:`file_lines`, which readers that report
    malformed lines use instead).
    """
    for line_no, count, raw in file_lines(path, block):
        if raw is None:
            continue
        yield line_no, raw
        for copy in range(1, count):
            yield line_no + copy, raw


def dir_entries(
    path: Path,
    rel: str,
    filters: Filters,
    report: ReadReport | None,
    block: int,
    scan: Scanner | None = None,
) -> Iterator[Entry]:
    """
    The matching records of the file at *path* (``logs/<rel>``), in file order.

    *scan* (a prefilter's) may leave out lines the filters cannot match, so
    that only the others are parsed.
    """
    entries = line_entries(file_lines(path, block, scan=scan), rel, report)
    if filters.is_empty:
        yield from entries
    else:
        yield from (e for e in entries if filters.matches(e.record))


def line_entries(
    lines: Iterable[Line], rel: str, report: ReadReport | None
) -> Iterator[Entry]:
    """
    The records of *lines* (``logs/<rel>``'s :data:`Line` items), one per
    line, a repeated line's copies included; malformed lines are added to
    *report* as they are met.
    """
    for line_no, count, raw in lines:
        if count == 1 and raw is not None:  # the usual line: one call less
            entry = parse_entry(raw, rel, line_no, report)
        else:
            entry = parse_lines(raw, rel, line_no, count, report)
        if entry is not None:
            yield entry
            if count > 1:
                yield from copies(entry, 1, count)


def parse_lines(
    raw: bytes | None,
    rel: str,
    line_no: int,
    count: int,
    report: ReadReport | None,
) -> Entry | None:
    """
    The record of *count* identical lines from *line_no* on, or None.

    *raw* None stands for *count* lines that cannot be records; malformed
    lines, one or a run of them, are added to *report*.
    """
    if raw is None:
        if report is not None:
            report.add_run(rel, line_no, count)
        return None
    entry = parse_entry(raw, rel, line_no, report)
    if entry is None and count > 1 and report is not None:
        report.add_run(rel, line_no + 1, count - 1)
    return entry


def copies(entry: Entry, first: int, stop: int) -> Iterator[Entry]:
    """
    The records of the lines ``entry.line + first`` to ``entry.line + stop - 1``.

    They repeat *entry*'s line byte for byte, so they share its record (which
    no reader changes) instead of parsing the same bytes again.
    """
    for offset in range(first, stop):
        yield Entry(entry.ts, entry.record, entry.source, entry.line + offset)


def count_marks(path: Path, marks: Sequence[bytes]) -> list[int]:
    """
    How often each of *marks* occurs in the file at *path* (zeros if it is gone).

    Reads in blocks keeping only a mark's length of overlap between them, so
    the time is linear and the memory one block, however long the lines.

    Raises:
        RunlogError: If the file exists but cannot be read.
    """
    counts = [0] * len(marks)
    overlap = max((len(mark) for mark in marks), default=1) - 1
    carry = b""
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(MAX_BLOCK):
                data = carry + chunk
                for index, mark in enumerate(marks):
                    # an occurrence wholly inside *carry* was counted last time
                    fresh = max(0, len(carry) - len(mark) + 1)
                    counts[index] += data.count(mark, fresh)
                carry = data[max(0, len(data) - overlap) :] if overlap else b""
    except FileNotFoundError:
        return [0] * len(marks)
    except OSError as exc:
        raise unreadable(path, exc) from exc
    return counts


# --- reading files backwards ------------------------------------------------


def file_tail(
    path: Path,
    rel: str,
    count: int,
    filters: Filters,
    report: ReadReport | None,
    *,
    numbered: bool = True,
) -> tuple[list[Entry], int]:
    """
    The last *count* matching records of *path* and where its last line ends.

    Reads backwards from the last newline until *count* records matched, in
    time linear in the bytes read back, whatever the length of the lines.
    Without *numbered* the file is not read from its start to count lines:
    line numbers are then counted from the end (``0`` is the last line,
    ``-1`` the one before), for :func:`renumber` to fix (see #16).

    Raises:
        RunlogError: If the file exists but cannot be read.
    """
    found: list[Entry] = []
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            end = last_newline_end(handle, size)
            if count <= 0:
                return [], end
            total = count_lines(handle, end) if numbered else 0
            # malformed lines found are reported once their numbers are known
            bad = _Malformed() if report is not None and not numbered else report
            for back, lines, raw in reverse_scan(handle, end):
                first = total - back - lines + 1
                entry = parse_lines(raw, rel, first, lines, bad)
                if entry is not None and filters.matches(entry.record):
                    # the last copies of a repeated line, newest first
                    wanted = min(lines, count - len(found))
                    found.extend(reversed(list(copies(entry, lines - wanted, lines))))
                    if len(found) >= count:
                        break
            if isinstance(bad, _Malformed) and bad.runs and report is not None:
                total = count_lines(handle, end)
                for source, first, lines in bad.runs:
                    report.add_run(source, total + first, lines)
    except FileNotFoundError:
        return [], 0
    except OSError as exc:
        raise unreadable(path, exc) from exc
    found.reverse()
    return found, end


class _Malformed(ReadReport):
    """Malformed lines noted as they are found, to be reported later."""

    def __init__(self) -> None:
        super().__init__()
        self.runs: list[tuple[str, int, int]] = []

    def add(self, source: str, line: int) -> None:
        self.runs.append((source, line, 1))

    def add_run(self, source: str, first: int, count: int) -> None:
        self.runs.append((source, first, count))


def renumber(entries: list[Entry], path: Path, end: int) -> list[Entry]:
    """
    *entries* of :func:`file_tail` without *numbered*, with their line numbers
    in the file at *path* (whose lines were read up to offset *end*).

    Raises:
        RunlogError: If the file exists but cannot be read.
    """
    try:
        with open(path, "rb") as handle:
            total = count_lines(handle, end)
    except FileNotFoundError:
        total = 0
    except OSError as exc:
        raise unreadable(path, exc) from exc
    return [Entry(e.ts, e.record, e.source, e.line + total) for e in entries]


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


def reverse_scan(
    handle: IO[bytes], end: int, max_line: int = MAX_LINE
) -> Iterator[Line]:
    """
    The lines before offset *end* (just past a newline), last first.

    Items are :data:`Line` tuples numbered from the end: ``(back, count,
    raw)`` covers the *count* lines that have *back* lines after them, so
    with ``total`` lines in all they are lines ``total - back - count + 1``
    to ``total - back``. A line spread over many blocks is kept as pieces
    and joined once; one over *max_line*, or whose last byte past blanks is
    not ``}``, is not kept at all. Memory: one block, the items found in
    it, and the line returned.
    """
    if end <= 0:
        return
    back = 0
    position = end - 1  # the newline that ends the last line
    line = _BackLine(max_line)  # the line ending at *position*
    while True:
        start = max(0, position - MIN_BLOCK)
        handle.seek(start)
        data = handle.read(position - start)
        if len(data) < position - start:
            return  # cut short while we read: what is left is not there
        cut = data.rfind(b"\n")
        if cut < 0:
            line.add(data)
            if start == 0:
                yield line.take(back)
                return
            position = start
            continue
        line.add(data[cut + 1 :])
        yield line.take(back)
        back += 1
        first = 0 if start == 0 else data.find(b"\n") + 1
        if first <= cut:
            whole = data.count(b"\n", first, cut + 1)
            found = scan_lines(data, first, cut + 1, 0, max_line, newlines=whole)
            for line_no, lines, raw in reversed(list(found)):
                yield back + whole - line_no - lines, lines, raw
            back += whole
        if start == 0:
            return
        line.add(data[: first - 1])
        position = start


class _BackLine:
    """A line read backwards, piece by piece: kept only while it may be a record."""

    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self.pieces: list[bytes] = []  # last piece first
        self.held = 0
        self.junk = False

    def add(self, piece: bytes) -> None:
        """Put *piece* in front of what is held."""
        self.held += len(piece)
        if self.junk:
            return
        if self.held > self.max_line:
            self.junk = True
            self.pieces.clear()
        elif self.pieces:
            self.pieces.append(piece)
        else:
            # the line's last bytes decide: a run of junk is never held
            piece = piece.rstrip(_BLANKS)
            if piece[-1:] == b"}":
                self.pieces.append(piece)
            elif piece:
                self.junk = True

    def take(self, back: int) -> Line:
        """The line as an item *back* lines from the end; starts a new one."""
        raw = b"".join(reversed(self.pieces))
        junk = self.junk
        self.pieces = []
        self.held = 0
        self.junk = False
        if junk or not may_be_record(raw):
            return back, 1, None
        return back, 1, raw


def reverse_lines(handle: IO[bytes], end: int) -> Iterator[bytes]:
    """
    The lines before offset *end* that may be records, last first.

    Blank lines, lines that are not ``{...}`` and lines over :data:`MAX_LINE`
    are skipped in bulk, and a run of identical lines comes once (see
    :func:`reverse_scan`): enough to find a record, not to count them.
    """
    for _back, _count, raw in reverse_scan(handle, end):
        if raw is not None:
            yield raw
