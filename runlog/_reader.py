"""Reading a run's records, from its logs/ directory or its archive, in time order."""

from __future__ import annotations

import heapq
import os
import re
import tarfile
import zlib
from array import array
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, Final

import orjson

from . import _paths
from ._records import LEVEL_NUMBERS
from .combined import format_human
from .errors import RunlogError
from .run import effective_status, parse_time, read_run_json

ARCHIVE_SUFFIXES: Final = (".tar.gz", ".tar.zst")
LEVEL_ALIASES: Final = {**LEVEL_NUMBERS, "warn": 30, "fatal": 50, "exception": 40}
# Every record runlog writes has this exact timestamp shape, so bounds and sort
# keys compare as strings; anything else is parsed.
_CANONICAL_TS: Final = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
_DURATION: Final = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d)")
_DURATION_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_MIN_BLOCK: Final = 64 * 1024
_MAX_BLOCK: Final = 1 << 20
# A line of an archive member longer than this is skipped as malformed.
_MAX_LINE = 64 << 20
_TOO_LONG: Final = b"\0 line too long"
_BLOCK_BUDGET: Final = 16 << 20  # read-ahead shared by every open stream
# small, so that merging hundreds of spooled members holds little at once
_SPOOL_CHUNK: Final = 64 * 1024
_MAX_RUN_JSON: Final = 1 << 20
_MAX_PROBLEMS: Final = 20
_ERROR_MARKS: Final = (b'"level":"error"', b'"level":"critical"')
_WARNING_MARK: Final = b'"level":"warning"'


class RunNotFoundError(RunlogError):
    """The path or run id given does not name a run or a run archive."""


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


def _file_order(log_file: LogFile) -> tuple[int, int, str]:
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
    found.sort(key=_file_order)
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


def _entry_key(entry: Entry) -> str:
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


def is_archive_name(path: Path) -> bool:
    """True for ``run.tar.gz`` / ``run.tar.zst`` (any name with those suffixes)."""
    return path.name.endswith(ARCHIVE_SUFFIXES)


def find_archive(run_dir: Path) -> Path | None:
    """``run.tar.gz`` or ``run.tar.zst`` in *run_dir* (gz first), else None."""
    for name in _paths.ARCHIVE_NAMES.values():
        candidate = run_dir / name
        if candidate.is_file():
            return candidate
    return None


def resolve_run(text: str, runs_dir: Path | None = None) -> RunSource:
    """
    The run named by *text*: a run directory, its ``logs/``, an archive, or a run id.

    A directory whose ``logs/`` is gone but whose archive is present is read
    from the archive. A bare run id (or a unique prefix of one) is looked up
    as ``<runs_dir>/<framework>/<run_id>``, *runs_dir* defaulting to ``runs``.

    Raises:
        RunNotFoundError: If nothing matches, or a prefix matches several runs.
    """
    path = Path(text)
    if path.is_file():
        if not is_archive_name(path):
            raise RunNotFoundError(
                f"run {text!r}: a file that is not a run archive "
                f"(expected {' or '.join(_paths.ARCHIVE_NAMES.values())})"
            )
        return RunSource(path.parent, path)
    if path.is_dir():
        if _paths.logs_dir(path).is_dir():
            return RunSource(path)
        if path.name == _paths.LOGS_DIR and (
            _paths.run_json(path).is_file() or list_log_files(path)
        ):
            return RunSource(path.parent)
        archive = find_archive(path)
        if archive is not None:
            return RunSource(path, archive)
        hint = ""
        if next(iter_run_dirs(path), None) is not None:
            hint = f"; it holds runs: see `runlog ls {text}`"
        raise RunNotFoundError(
            f"run {text!r}: not a run directory (no logs/ and no run archive "
            f"in it){hint}"
        )
    if _paths.is_safe_name(text):
        return RunSource(_lookup_run_id(text, runs_dir or Path("runs")))
    raise RunNotFoundError(f"run {text!r}: no such file or directory")


def _lookup_run_id(run_id: str, runs_dir: Path) -> Path:
    candidates = list(iter_run_dirs(runs_dir))
    exact = [p for p in candidates if p.name == run_id]
    matches = exact or [p for p in candidates if p.name.startswith(run_id)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise RunNotFoundError(
            f"run {run_id!r}: no such file or directory, and no run with that id "
            f"under {str(runs_dir)!r} (see `runlog ls {runs_dir}`)"
        )
    names = ", ".join(str(p) for p in sorted(matches)[:5])
    raise RunNotFoundError(f"run {run_id!r} is ambiguous: it matches {names}")


def iter_run_dirs(runs_dir: Path) -> Iterator[Path]:
    """
    Every run directory under *runs_dir*: ``<framework>/<run_id>/`` with ``logs/``
    or an archive. *runs_dir* may also be one framework's directory.
    """
    try:
        level1 = sorted(p for p in runs_dir.iterdir() if p.is_dir())
    except (FileNotFoundError, NotADirectoryError):
        return
    for first in level1:
        if _is_run_dir(first):
            yield first
            continue
        try:
            level2 = sorted(p for p in first.iterdir() if p.is_dir())
        except PermissionError:
            continue  # a directory we may not read holds no run we could show
        for second in level2:
            if _is_run_dir(second):
                yield second


def _is_run_dir(path: Path) -> bool:
    return _paths.logs_dir(path).is_dir() or find_archive(path) is not None


# --- reading files in a directory -------------------------------------------


def _block_size(streams: int) -> int:
    return max(_MIN_BLOCK, min(_MAX_BLOCK, _BLOCK_BUDGET // max(1, streams)))


def _iter_file_lines(path: Path, block: int) -> Iterator[tuple[int, bytes]]:
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


def _dir_entries(
    path: Path,
    rel: str,
    filters: Filters,
    report: ReadReport | None,
    block: int,
) -> Iterator[Entry]:
    for line_no, raw in _iter_file_lines(path, block):
        entry = parse_entry(raw, rel, line_no, report)
        if entry is not None and filters.matches(entry.record):
            yield entry


def read_records(
    source: RunSource,
    filters: Filters | None = None,
    report: ReadReport | None = None,
) -> Iterator[Entry]:
    """
    Every matching record of the run, merged across files in time order.

    Each file is streamed (memory does not grow with the run); an archive is
    streamed once, never extracted to disk. Safe on a run still being written:
    records appended meanwhile may or may not be included.
    """
    filters = filters or Filters()
    if source.archive is not None:
        return _archive_records(source.archive, filters, report)
    files = [f for f in list_log_files(source.logs_dir) if filters.wants_file(f)]
    block = _block_size(len(files))
    streams = [
        _dir_entries(source.logs_dir / f.rel, f.rel, filters, report, block)
        for f in files
    ]
    return heapq.merge(*streams, key=_entry_key)


def last_records(
    source: RunSource,
    count: int,
    filters: Filters | None = None,
    report: ReadReport | None = None,
) -> tuple[list[Entry], dict[str, int]]:
    """
    The last *count* matching records of the run in time order, and where each
    file ended (``rel -> byte offset``) so a follower can go on from there.
    """
    filters = filters or Filters()
    if source.archive is not None:
        return _archive_tail(source.archive, count, filters, report), {}
    per_file: list[list[Entry]] = []
    ends: dict[str, int] = {}
    for log_file in list_log_files(source.logs_dir):
        path = source.logs_dir / log_file.rel
        entries, end = _file_tail(path, log_file.rel, count, filters, report)
        ends[log_file.rel] = end
        if filters.wants_file(log_file):
            per_file.append(entries)
    merged = list(heapq.merge(*per_file, key=_entry_key))
    return merged[-count:] if count > 0 else [], ends


def _file_tail(
    path: Path,
    rel: str,
    count: int,
    filters: Filters,
    report: ReadReport | None,
) -> tuple[list[Entry], int]:
    # Reads backwards from the last newline until *count* records matched.
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            end = _last_newline_end(handle, size)
            if count <= 0:
                return [], end
            total_lines = _count_lines(handle, end)
            found: list[Entry] = []
            line_no = total_lines + 1
            for raw in _reverse_lines(handle, end):
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


def _last_newline_end(handle: IO[bytes], size: int) -> int:
    position = size
    while position > 0:
        start = max(0, position - _MIN_BLOCK)
        handle.seek(start)
        chunk = handle.read(position - start)
        cut = chunk.rfind(b"\n")
        if cut >= 0:
            return start + cut + 1
        position = start
    return 0


def _count_lines(handle: IO[bytes], end: int) -> int:
    handle.seek(0)
    lines = 0
    remaining = end
    while remaining > 0:
        chunk = handle.read(min(_MAX_BLOCK, remaining))
        if not chunk:
            break
        lines += chunk.count(b"\n")
        remaining -= len(chunk)
    return lines


def _reverse_lines(handle: IO[bytes], end: int) -> Iterator[bytes]:
    # *end* is just past a newline, so every line up to it is complete
    position = end
    pending = b""  # the start of a line that began further back
    first = True
    while position > 0:
        start = max(0, position - _MIN_BLOCK)
        handle.seek(start)
        data = handle.read(position - start) + pending
        position = start
        pieces = data.split(b"\n")
        if first:
            pieces.pop()  # the empty piece after the final newline
            first = False
        pending = pieces.pop(0) if position > 0 and pieces else b""
        yield from reversed(pieces)


# --- reading an archive -----------------------------------------------------


class _Spool:
    """Lines kept in memory zlib-compressed, with their line numbers."""

    def __init__(self) -> None:
        self.blocks: list[tuple[bytes, array[int]]] = []
        self._lines: list[bytes] = []
        self._numbers: array[int] = array("q")
        self._size = 0

    def add(self, line_no: int, raw: bytes) -> None:
        self._lines.append(raw)
        self._numbers.append(line_no)
        self._size += len(raw) + 1
        if self._size >= _SPOOL_CHUNK:
            self._seal()

    def _seal(self) -> None:
        if self._lines:
            self.blocks.append(
                (zlib.compress(b"\n".join(self._lines), 1), self._numbers)
            )
        self._lines = []
        self._numbers = array("q")
        self._size = 0

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        self._seal()
        for packed, numbers in self.blocks:
            lines = zlib.decompress(packed).split(b"\n")
            yield from zip(numbers, lines, strict=True)


def _member_log_file(member: tarfile.TarInfo) -> LogFile | None:
    # member names come from the archive and are not trusted: only the exact
    # shapes runlog writes are read, and nothing is ever written to disk
    if not member.isreg():
        return None
    prefix = _paths.LOGS_DIR + "/"
    if not member.name.startswith(prefix):
        return None
    return classify(member.name[len(prefix) :])


def _iter_member_lines(handle: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    # Member data is not trusted (see #7): a line longer than _MAX_LINE is not
    # held in memory but yielded as _TOO_LONG (a malformed line), the pieces
    # of a long line are joined once (not once per block), and a member that
    # cannot be read is a RunlogError, not a traceback.
    from ._compress import CORRUPT_ERRORS

    unreadable: tuple[type[Exception], ...] = (
        tarfile.TarError,
        OSError,
        *CORRUPT_ERRORS,
    )
    line_no = 0
    pending: list[bytes] = []
    held = 0
    while True:
        try:
            chunk = handle.read(_MAX_BLOCK)
        except unreadable as exc:
            raise RunlogError(f"the archive cannot be read: {exc}") from exc
        if not chunk:
            break
        lines = chunk.split(b"\n")
        if len(lines) == 1:
            held += len(chunk)
            if held <= _MAX_LINE:
                pending.append(chunk)
            continue
        line_no += 1
        yield line_no, _joined(pending, lines[0], held + len(lines[0]))
        for raw in lines[1:-1]:
            line_no += 1
            yield line_no, raw
        pending, held = [lines[-1]], len(lines[-1])
    if held:
        yield line_no + 1, _joined(pending, b"", held)


def _joined(pieces: list[bytes], last: bytes, size: int) -> bytes:
    return _TOO_LONG if size > _MAX_LINE else b"".join([*pieces, last])


def _open_archive(path: Path) -> Iterator[tuple[tarfile.TarInfo, IO[bytes] | None]]:
    from ._compress import CORRUPT_ERRORS, open_reader

    unreadable: tuple[type[Exception], ...] = (
        tarfile.TarError,
        OSError,
        *CORRUPT_ERRORS,
    )
    try:
        with (
            open_reader(path) as raw,
            tarfile.open(fileobj=raw, mode="r|") as tar,
        ):
            for member in tar:
                yield member, tar.extractfile(member) if member.isreg() else None
    except unreadable as exc:
        raise RunlogError(f"archive {str(path)!r} cannot be read: {exc}") from exc


def _archive_members(
    path: Path, filters: Filters
) -> Iterator[tuple[LogFile, IO[bytes]]]:
    for member, handle in _open_archive(path):
        log_file = _member_log_file(member)
        if log_file is not None and handle is not None and filters.wants_file(log_file):
            yield log_file, handle


def _archive_records(
    path: Path, filters: Filters, report: ReadReport | None
) -> Iterator[Entry]:
    # Without filters every line is kept as it is and parsed once, on the
    # way out; with filters lines are parsed here so only matches are kept.
    keep_all = filters.is_empty
    spools: list[tuple[LogFile, _Spool]] = []
    for log_file, handle in _archive_members(path, filters):
        spool = _Spool()
        for line_no, raw in _iter_member_lines(handle):
            if keep_all:
                spool.add(line_no, raw)
                continue
            entry = parse_entry(raw, log_file.rel, line_no, report)
            if entry is not None and filters.matches(entry.record):
                spool.add(line_no, raw)
        spools.append((log_file, spool))
    spools.sort(key=lambda item: _file_order(item[0]))
    late_report = report if keep_all else None
    streams = [
        _spool_entries(log_file.rel, spool, late_report) for log_file, spool in spools
    ]
    return heapq.merge(*streams, key=_entry_key)


def _spool_entries(
    rel: str, spool: _Spool, report: ReadReport | None
) -> Iterator[Entry]:
    for line_no, raw in spool:
        entry = parse_entry(raw, rel, line_no, report)
        if entry is not None:
            yield entry


def _archive_tail(
    path: Path, count: int, filters: Filters, report: ReadReport | None
) -> list[Entry]:
    if count <= 0:
        return []
    per_file: list[tuple[LogFile, list[Entry]]] = []
    for log_file, handle in _archive_members(path, filters):
        kept: deque[Entry] = deque(maxlen=count)
        for line_no, raw in _iter_member_lines(handle):
            entry = parse_entry(raw, log_file.rel, line_no, report)
            if entry is not None and filters.matches(entry.record):
                kept.append(entry)
        per_file.append((log_file, list(kept)))
    per_file.sort(key=lambda item: _file_order(item[0]))
    merged = list(heapq.merge(*(e for _, e in per_file), key=_entry_key))
    return merged[-count:]


def archive_run_json(path: Path) -> dict[str, Any] | None:
    """``logs/run.json`` from an archive (read in place), or None."""
    wanted = f"{_paths.LOGS_DIR}/{_paths.RUN_JSON}"
    for member, handle in _open_archive(path):
        if member.name == wanted and handle is not None:
            data = handle.read(_MAX_RUN_JSON + 1)
            if len(data) > _MAX_RUN_JSON:
                return None
            try:
                info = orjson.loads(data)
            except orjson.JSONDecodeError:
                return None
            return info if isinstance(info, dict) else None
        if member.name > wanted and member.name.startswith(f"{_paths.LOGS_DIR}/"):
            # members are sorted: run.json would have come by now
            return None
    return None


# --- following a live run ---------------------------------------------------


@dataclass
class _Cursor:
    offset: int = 0
    line_no: int = 0
    pending: bytes = b""
    inode: int = 0


class Follower:
    """
    Reads records appended to a live run since the last poll, new files included.

    Files of steps that start later are picked up when they appear. A line
    without its newline yet is kept until it is complete. Not thread-safe.
    """

    def __init__(
        self,
        logs_dir: Path,
        filters: Filters | None = None,
        start: dict[str, int] | None = None,
        report: ReadReport | None = None,
    ) -> None:
        self.logs_dir = logs_dir
        self.filters = filters or Filters()
        self.report = report
        self._cursors: dict[str, _Cursor] = {}
        for rel, offset in (start or {}).items():
            self._cursors[rel] = self._cursor_at(rel, offset)

    def _cursor_at(self, rel: str, offset: int) -> _Cursor:
        path = self.logs_dir / rel
        try:
            with open(path, "rb") as handle:
                inode = os.fstat(handle.fileno()).st_ino
                lines = _count_lines(handle, offset)
        except FileNotFoundError:
            return _Cursor()
        return _Cursor(offset, lines, b"", inode)

    def poll(self) -> list[Entry]:
        """The matching records written since the last call, in time order."""
        batches: list[list[Entry]] = []
        for log_file in list_log_files(self.logs_dir):
            if not self.filters.wants_file(log_file):
                continue
            cursor = self._cursors.setdefault(log_file.rel, _Cursor())
            batch = self._read_new(log_file.rel, cursor)
            if batch:
                batches.append(batch)
        return list(heapq.merge(*batches, key=_entry_key))

    def _read_new(self, rel: str, cursor: _Cursor) -> list[Entry]:
        try:
            with open(self.logs_dir / rel, "rb") as handle:
                info = os.fstat(handle.fileno())
                replaced = cursor.inode not in (0, info.st_ino)
                if replaced or info.st_size < cursor.offset:
                    # replaced or truncated: read the new file from its start
                    cursor.offset = cursor.line_no = 0
                    cursor.pending = b""
                cursor.inode = info.st_ino
                handle.seek(cursor.offset)
                data = handle.read()
        except FileNotFoundError:
            return []
        if not data:
            return []
        cursor.offset += len(data)
        data = cursor.pending + data
        cut = data.rfind(b"\n")
        if cut < 0:
            cursor.pending = data
            return []
        cursor.pending = data[cut + 1 :]
        found = []
        for raw in data[:cut].split(b"\n"):
            cursor.line_no += 1
            entry = parse_entry(raw, rel, cursor.line_no, self.report)
            if entry is not None and self.filters.matches(entry.record):
                found.append(entry)
        return found


# --- describing runs for `runlog ls` ----------------------------------------


@dataclass(frozen=True, slots=True)
class RunRow:
    """One line of ``runlog ls``."""

    framework: str
    run_id: str
    path: Path
    status: str
    started: datetime | None
    duration_s: float | None
    steps: int
    errors: int | None
    warnings: int | None
    archived: bool
    url: str | None = None  # set for a run listed from object storage (#8)

    def as_json(self) -> dict[str, Any]:
        """The row as plain JSON values (times in the record format)."""
        return {
            "framework": self.framework,
            "run_id": self.run_id,
            "path": self.url or str(self.path),
            "status": self.status,
            "started_at": canonical_ts(self.started) if self.started else None,
            "duration_s": self.duration_s,
            "steps": self.steps,
            "errors": self.errors,
            "warnings": self.warnings,
            "archived": self.archived,
        }


def describe_run(run_dir: Path, *, now: datetime | None = None) -> RunRow:
    """The ``runlog ls`` row of one run directory (reads only what it must)."""
    now = now or datetime.now(UTC)
    logs = _paths.logs_dir(run_dir)
    archive = find_archive(run_dir)
    if not logs.is_dir() and archive is not None:
        return _describe_archived(run_dir, archive, now)
    info = read_run_json(logs)
    files = list_log_files(logs)
    steps = len({f.step for f in files if f.step is not None} | _step_dirs(logs))
    errors = warnings = 0
    for log_file in files:
        counts = _count_marks(logs / log_file.rel)
        errors += counts[0]
        warnings += counts[1]
    if info is not None:
        status = effective_status(info, now=now)
        started = parse_time(info.get("started_at"))
        duration = _duration(info, status, started, now)
    else:
        first, last = _time_span(logs, files)
        status = _status_from_records(logs)
        started = first
        duration = (last - first).total_seconds() if first and last else None
    return RunRow(
        framework=str(info.get("framework") if info else run_dir.parent.name),
        run_id=str(info.get("run_id") if info else run_dir.name),
        path=run_dir,
        status=status,
        started=started,
        duration_s=duration,
        steps=steps,
        errors=errors,
        warnings=warnings,
        archived=archive is not None,
    )


def _describe_archived(run_dir: Path, archive: Path, now: datetime) -> RunRow:
    info = archive_run_json(archive) or {}
    status = effective_status(info, now=now) if info else "incomplete"
    started = parse_time(info.get("started_at"))
    return RunRow(
        framework=str(info.get("framework") or run_dir.parent.name),
        run_id=str(info.get("run_id") or run_dir.name),
        path=run_dir,
        status=status,
        started=started,
        duration_s=_duration(info, status, started, now),
        steps=0,
        errors=None,
        warnings=None,
        archived=True,
    )


def _step_dirs(logs: Path) -> set[int]:
    steps: set[int] = set()
    try:
        entries = list(os.scandir(logs))
    except FileNotFoundError:
        return steps
    for entry in entries:
        number = _paths.parse_step_dir(entry.name)
        if number is not None and entry.is_dir(follow_symlinks=False):
            steps.add(number)
    return steps


def _duration(
    info: dict[str, Any], status: str, started: datetime | None, now: datetime
) -> float | None:
    value = info.get("duration_s")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    ended = parse_time(info.get("ended_at"))
    if started is not None and ended is not None:
        return (ended - started).total_seconds()
    if started is not None and status == "running":
        return (now - started).total_seconds()
    beat = parse_time(info.get("heartbeat_at"))
    if started is not None and beat is not None and status == "crashed":
        # how long it ran before its last sign of life
        return max(0.0, (beat - started).total_seconds())
    return None


def _count_marks(path: Path) -> tuple[int, int]:
    # orjson writes `"level":"error"` exactly so and a caller's own `level`
    # key is renamed, so counting the bytes counts the records; data is cut
    # at newlines so no mark is split between two reads
    errors = warnings = 0
    pending = b""
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(_MAX_BLOCK):
                data = pending + chunk
                cut = data.rfind(b"\n") + 1
                pending = data[cut:]
                whole = data[:cut]
                errors += sum(whole.count(mark) for mark in _ERROR_MARKS)
                warnings += whole.count(_WARNING_MARK)
    except FileNotFoundError:
        return 0, 0
    errors += sum(pending.count(mark) for mark in _ERROR_MARKS)
    warnings += pending.count(_WARNING_MARK)
    return errors, warnings


def _time_span(
    logs: Path, files: list[LogFile]
) -> tuple[datetime | None, datetime | None]:
    first: datetime | None = None
    last: datetime | None = None
    for log_file in files:
        path = logs / log_file.rel
        for line_no, raw in _iter_file_lines(path, _MIN_BLOCK):
            entry = parse_entry(raw, log_file.rel, line_no, None)
            moment = parse_time(entry.ts) if entry is not None else None
            if moment is not None:
                first = moment if first is None else min(first, moment)
                break
        tail, _ = _file_tail(path, log_file.rel, 1, Filters(), None)
        moment = parse_time(tail[-1].ts) if tail else None
        if moment is not None:
            last = moment if last is None else max(last, moment)
    return first, last


def _status_from_records(logs: Path) -> str:
    """``run_end``'s status from ``run.log`` when there is one, else incomplete."""
    path = logs / _paths.RUN_LOG
    try:
        with open(path, "rb") as handle:
            end = _last_newline_end(handle, os.fstat(handle.fileno()).st_size)
            for raw in _reverse_lines(handle, end):
                if b'"run_end"' not in raw:
                    continue
                entry = parse_entry(raw, _paths.RUN_LOG, 0, None)
                if entry is not None and entry.record.get("event") == "run_end":
                    status = entry.record.get("status")
                    return str(status) if status else "success"
    except FileNotFoundError:
        return "incomplete"
    return "incomplete"


def scan_runs(runs_dir: Path, *, now: datetime | None = None) -> list[RunRow]:
    """Every run under *runs_dir*, newest first."""
    rows = [describe_run(path, now=now) for path in iter_run_dirs(runs_dir)]
    oldest = datetime.min.replace(tzinfo=UTC)
    rows.sort(key=lambda row: (row.started or oldest, row.run_id), reverse=True)
    return rows
