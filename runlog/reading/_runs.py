"""Finding runs on disk and describing them as ``runlog ls`` rows."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import orjson

from .. import _paths
from .._records import ERROR_MARKS, LEVEL_MARKS
from .._status import FINISHED_STATUSES, effective_status, parse_time, read_run_json
from ..errors import RunlogError, RunNotFoundError
from ._ls_cache import Key, LsCache, logs_key, run_key
from ._source import (
    MIN_BLOCK,
    Filters,
    LogFile,
    RunSource,
    canonical_ts,
    count_marks,
    file_tail,
    iter_file_lines,
    last_newline_end,
    list_log_files,
    parse_entry,
    reverse_lines,
)
from ._summary_head import (
    HEAD_BYTES,
    SummaryHead,
    parse_summary_head,
    read_summary_head,
)

ARCHIVE_SUFFIXES: Final = (".tar.gz", ".tar.zst")
UNREADABLE: Final = "unreadable"
# where a row's values were read from (``"source"`` in ``runlog ls --json``)
SOURCES: Final = ("logs", "archive", "summary")
# a run.json runlog writes is a few KB; the archive reader caps it the same
_MAX_RUN_JSON: Final = 1 << 20
_LOGS: Final = _paths.LOGS_DIR
_COMBINED: Final = _paths.COMBINED_LOG
_ARCHIVE_NAMES: Final = tuple(_paths.ARCHIVE_NAMES.values())
_EPOCH: Final = datetime.fromtimestamp(0, UTC)
_SUMMARY: Final = _paths.SUMMARY_FILE


def is_archive_name(path: Path) -> bool:
    """True for ``run.tar.gz`` / ``run.tar.zst`` (any name with those suffixes)."""
    return path.name.endswith(ARCHIVE_SUFFIXES)


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
        archive = _paths.find_archive(path)
        if archive is not None:
            return RunSource(path, archive)
        hint = ""
        if next(iter_run_dirs(path), None) is not None:
            hint = f"; it holds runs: see `runlog ls {text}`"
        elif _paths.summary_file(path).is_file():
            # a fresh clone: only the committed summary (see #17)
            hint = (
                f"; only its {_paths.SUMMARY_FILE} is here (logs/ and archives "
                "are git-ignored): read that, or get the run's archive from "
                "where it is stored"
            )
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
    Every run directory under *runs_dir*: ``<framework>/<run_id>/`` that looks
    like a run (see :func:`looks_like_run`). *runs_dir* may also be one
    framework's directory. Directories whose names start with ``.`` are not
    entered: no framework or run id starts so, and ``.git`` or ``.venv`` hold
    only look-alikes (see #12).

    Raises:
        RunlogError: If *runs_dir* exists but cannot be listed.
    """
    try:
        level1 = _child_dirs(runs_dir)
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as exc:
        raise _cannot_list(runs_dir, exc) from exc
    for first in level1:
        if looks_like_run(first):
            yield first
            continue
        try:
            level2 = _child_dirs(first)
        except PermissionError:
            continue  # a directory we may not read holds no run we could show
        for second in level2:
            if looks_like_run(second):
                yield second


def _child_dirs(path: Path) -> list[Path]:
    return sorted(
        child
        for child in path.iterdir()
        if not child.name.startswith(".") and child.is_dir()
    )


def _cannot_list(runs_dir: Path, exc: OSError) -> RunlogError:
    return RunlogError(
        f"runs directory {str(runs_dir)!r} cannot be listed: {_os_reason(exc)}"
    )


def looks_like_run(path: Path) -> bool:
    """
    True when *path* holds a run archive, or a ``logs/`` with a ``run.json``,
    a ``run.log`` or a ``step_NNN/`` directory.

    A bare ``logs/`` is not enough: a git checkout's ``.git/logs/`` and many
    tools' ``logs/`` folders would all be listed as runs (see #12). A
    ``logs/`` that cannot be listed counts as a run, so that ``runlog ls``
    shows it as unreadable rather than hiding it.
    """
    if _paths.find_archive(path) is not None:
        return True
    logs = _paths.logs_dir(path)
    return logs.is_dir() and _logs_look_like_run(logs)


def _logs_look_like_run(logs: Path) -> bool:
    if os.path.lexists(_paths.run_json(logs)) or os.path.lexists(logs / _paths.RUN_LOG):
        return True
    try:
        with os.scandir(logs) as entries:
            return any(
                _paths.parse_step_dir(entry.name) is not None
                and entry.is_dir(follow_symlinks=False)
                for entry in entries
            )
    except FileNotFoundError:
        return False  # removed while we looked
    except OSError:
        return True  # describe_run reports why it cannot be read


def _os_reason(exc: OSError) -> str:
    """*exc* in the OS's words, naming the file: ``Permission denied: '/r/logs'``."""
    reason = exc.strerror or type(exc).__name__
    return f"{reason}: {str(exc.filename)!r}" if exc.filename else reason


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
    reason: str | None = None  # why the run could not be read (see #12)
    source: str = "logs"  # one of SOURCES; "summary": only its summary is here

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
            "reason": self.reason,
            "source": self.source,
        }


def describe_run(run_dir: Path, *, now: datetime | None = None) -> RunRow:
    """
    The ``runlog ls`` row of one run directory (reads only what it must).

    A finished run whose ``logs_summary.txt`` was written after its last
    record is described from run.json and the summary's header, without
    reading its logs; any other run has its logs counted. A directory with
    only a summary (a fresh clone, where logs/ and archives are git-ignored)
    is described from the summary alone, its ``source`` ``"summary"``.

    Values are copied from the run's files as they are, not escaped: whoever
    shows them escapes them.

    Raises:
        RunlogError: If the run's archive, run.json or (for a run that has
            nothing else) summary cannot be read.
        OSError: If a log file or directory of the run cannot be read.
    """
    try:
        entries = _listing(run_dir)
    except (FileNotFoundError, NotADirectoryError):
        entries = {}
    return _describe(run_dir, entries, now or datetime.now(UTC))


def _describe(
    run_dir: Path,
    entries: dict[str, os.DirEntry[str]],
    now: datetime,
    store: LsCache | None = None,
    rel: str = "",
) -> RunRow:
    logs = _paths.logs_dir(run_dir)
    name = _archive_name(entries)
    archive = None if name is None else run_dir / name
    has_logs = _LOGS in entries and entries[_LOGS].is_dir()
    if not has_logs and archive is not None:
        return _describe_archived(run_dir, archive, now)
    if _SUMMARY in entries and not (has_logs and _logs_look_like_run(logs)):
        return _describe_summary_only(run_dir)
    info = _read_run_info(logs)
    head = _fresh_summary_head(run_dir, info) if info is not None else None
    facts: _Facts | None = None
    if head is not None and head.steps is not None:
        steps, errors, warnings = head.steps, head.errors, head.warnings
    else:
        facts = _facts_of(logs, store, rel)
        steps, errors, warnings = facts.steps, facts.errors, facts.warnings
    if info is not None:
        status = effective_status(info, now=now)
        started = parse_time(info.get("started_at"))
        duration = run_duration(info, status, started, now)
        if status == "crashed" and started is not None:
            # a run killed before its second heartbeat ran as long as its
            # last record says, not 0s (see #17)
            last = (facts or _facts_of(logs, store, rel)).last
            if last is not None:
                duration = max(duration or 0.0, (last - started).total_seconds())
    else:
        facts = facts or _facts_of(logs, store, rel)
        status = facts.records_status
        started = facts.first
        last = facts.last
        duration = (last - started).total_seconds() if started and last else None
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


@dataclass(frozen=True, slots=True)
class _Facts:
    """What a run's log files say, whatever run.json says: counts and times."""

    steps: int
    errors: int
    warnings: int
    first: datetime | None  # the first record's time
    last: datetime | None  # the last record's time
    records_status: str  # run_end's status in run.log, or incomplete

    def values(self) -> list[Any]:
        """As :class:`LsCache` keeps them."""
        return [
            self.steps,
            self.errors,
            self.warnings,
            canonical_ts(self.first) if self.first else None,
            canonical_ts(self.last) if self.last else None,
            self.records_status,
        ]


def _facts_of(logs: Path, store: LsCache | None, rel: str) -> _Facts:
    """
    :func:`_read_facts` of *logs*, from *store* while no file under logs/
    changed (see :func:`logs_key`): a crashed or running run's logs are
    then not read again at every listing (see #16).
    """
    if store is None:
        return _read_facts(logs)
    try:
        key = logs_key(str(logs))  # taken before the files are read
    except OSError:
        return _read_facts(logs)  # which reports what cannot be read
    cached = store.get_facts(rel, key[0])
    if cached is not None:
        steps, errors, warnings, first, last, records_status = cached
        return _Facts(
            steps, errors, warnings, parse_time(first), parse_time(last), records_status
        )
    facts = _read_facts(logs)
    store.put_facts(rel, key, facts.values())
    return facts


def _read_facts(logs: Path) -> _Facts:
    files = list_log_files(logs)
    steps = len({f.step for f in files if f.step is not None} | _step_dirs(logs))
    errors = warnings = 0
    for log_file in files:
        counts = _count_marks(logs / log_file.rel)
        errors += counts[0]
        warnings += counts[1]
    first, last = _time_span(logs, files)
    has_run_log = any(f.rel == _paths.RUN_LOG for f in files)
    status = _status_from_records(logs) if has_run_log else "incomplete"
    return _Facts(steps, errors, warnings, first, last, status)


def _describe_finished(
    run_dir: str, entries: dict[str, os.DirEntry[str]]
) -> RunRow | None:
    """
    The row of a finished run from run.json and a fresh summary header, or
    None when that does not apply (no logs/ or summary, a live run, a stale
    summary, anything unusual): :func:`_describe` then reads what it must
    and reports what is wrong. The fast path of :func:`scan_runs`, with the
    same checks as :func:`_fresh_summary_head` (see #16).
    """
    logs = entries.get(_LOGS)
    if logs is None or _SUMMARY not in entries or not logs.is_dir():
        return None
    run_json = _read_small(f"{logs.path}/{_paths.RUN_JSON}", _MAX_RUN_JSON)
    if run_json is None:
        return None
    try:
        info = orjson.loads(run_json[1])
    except orjson.JSONDecodeError:
        return None
    if not isinstance(info, dict) or info.get("status") not in FINISHED_STATUSES:
        return None
    summary = _read_small(f"{run_dir}/{_SUMMARY}", HEAD_BYTES, whole=False)
    if summary is None:
        return None
    newest = run_json[0].st_mtime_ns
    with suppress(FileNotFoundError):  # no combined.log when it is turned off
        newest = max(newest, os.stat(f"{logs.path}/{_COMBINED}").st_mtime_ns)
    if summary[0].st_mtime_ns <= newest:
        return None
    head = parse_summary_head(summary[1].decode("utf-8", "replace"))
    if (
        head is None
        or head.status != info["status"]
        or head.run_id != info.get("run_id")
        or head.steps is None
        or head.errors is None
        or head.warnings is None
    ):
        return None
    started = parse_time(info.get("started_at"))
    status = str(info["status"])
    name = _archive_name(entries)
    return RunRow(
        framework=str(info.get("framework")),
        run_id=str(info.get("run_id")),
        path=Path(run_dir),
        status=status,
        started=started,
        # a finished run's duration does not depend on the time of day
        duration_s=run_duration(info, status, started, _EPOCH),
        steps=head.steps,
        errors=head.errors,
        warnings=head.warnings,
        archived=name is not None,
    )


def _read_small(
    path: str, limit: int, *, whole: bool = True
) -> tuple[os.stat_result, bytes] | None:
    """
    The stat and bytes of the regular file at *path*: all of it (None if
    over *limit*), or with *whole* false its first *limit* bytes. None when
    it cannot be read as such: the slow path then says why.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None  # absent or refused: the slow path reports it
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or (whole and info.st_size > limit):
            return None
        chunks: list[bytes] = []
        size = 0
        while size < limit + 1 and (chunk := os.read(fd, limit + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
        if whole and size > limit:
            return None  # grew while we read it
        return info, b"".join(chunks)[:limit]
    finally:
        os.close(fd)


def _fresh_summary_head(run_dir: Path, info: dict[str, Any]) -> SummaryHead | None:
    """
    The summary's header when it describes the run's logs as they are now.

    That is: run.json says the run ended (a live run's counts change, and
    whether it crashed is decided now, never from a file), the summary was
    written after run.json and combined.log last changed (every record also
    goes to combined.log), and it names the same run and status. A stale
    `ls` is worse than a slow one (see #16): anything else counts the logs.
    """
    recorded = info.get("status")
    if recorded not in FINISHED_STATUSES:
        return None
    logs = _paths.logs_dir(run_dir)
    try:
        written = os.stat(_paths.summary_file(run_dir))
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(written.st_mode):
        return None
    newest = 0
    for path in (_paths.run_json(logs), _paths.combined_log(logs)):
        with suppress(FileNotFoundError):  # no combined.log when it is turned off
            newest = max(newest, os.stat(path).st_mtime_ns)
    # equal times are ambiguous on a coarse clock: count the logs instead
    if written.st_mtime_ns <= newest:
        return None
    try:
        head = read_summary_head(_paths.summary_file(run_dir))
    except RunlogError:
        return None  # a summary ls cannot use: the logs are counted instead
    if head.status != recorded or head.run_id != info.get("run_id"):
        return None
    if head.errors is None or head.warnings is None:
        return None
    return head


def _describe_summary_only(run_dir: Path) -> RunRow:
    head = read_summary_head(_paths.summary_file(run_dir))
    return RunRow(
        framework=head.framework or run_dir.parent.name,
        run_id=head.run_id or run_dir.name,
        path=run_dir,
        status=head.status,
        started=head.started,
        duration_s=head.duration_s,
        steps=head.steps or 0,
        errors=head.errors,
        warnings=head.warnings,
        archived=False,
        source="summary",
    )


def unreadable_row(run_dir: Path, exc: RunlogError | OSError) -> RunRow:
    """
    The ``runlog ls`` row of a run that :func:`describe_run` could not read.

    Named after its directories, status ``unreadable``, *exc* as the reason.
    """
    reason = _os_reason(exc) if isinstance(exc, OSError) else str(exc)
    return RunRow(
        framework=run_dir.parent.name,
        run_id=run_dir.name,
        path=run_dir,
        status=UNREADABLE,
        started=None,
        duration_s=None,
        steps=0,
        errors=None,
        warnings=None,
        archived=_paths.find_archive(run_dir) is not None,
        reason=reason,
    )


def _read_run_info(logs: Path) -> dict[str, Any] | None:
    # run.json is not trusted (see #12): a FIFO would block ls for ever and
    # a link to /dev/zero or a huge file would fill memory, so only a regular
    # file of a plausible size is read
    path = _paths.run_json(logs)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(info.st_mode):
        raise RunlogError(f"run.json {str(path)!r} is not a regular file")
    if info.st_size > _MAX_RUN_JSON:
        raise RunlogError(
            f"run.json {str(path)!r} is {info.st_size} bytes, "
            f"more than the {_MAX_RUN_JSON} a run.json may be"
        )
    return read_run_json(logs)


def _describe_archived(run_dir: Path, archive: Path, now: datetime) -> RunRow:
    # tarfile and the codecs only for a run left as its archive (start-up, #16)
    from ._archive_stream import archive_run_json

    info = archive_run_json(archive) or {}
    status = effective_status(info, now=now) if info else "incomplete"
    started = parse_time(info.get("started_at"))
    return RunRow(
        framework=str(info.get("framework") or run_dir.parent.name),
        run_id=str(info.get("run_id") or run_dir.name),
        path=run_dir,
        status=status,
        started=started,
        duration_s=run_duration(info, status, started, now),
        steps=0,
        errors=None,
        warnings=None,
        archived=True,
        source="archive",
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


def run_duration(
    info: dict[str, Any], status: str, started: datetime | None, now: datetime
) -> float | None:
    """How long the run described by *info* ran (or has run so far), or None."""
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
    # key is renamed, so counting the bytes counts the records (see #12 for
    # why this is not done line by line)
    errors, critical, warnings = count_marks(
        path, (*ERROR_MARKS, LEVEL_MARKS["warning"])
    )
    return errors + critical, warnings


def _time_span(
    logs: Path, files: list[LogFile]
) -> tuple[datetime | None, datetime | None]:
    first: datetime | None = None
    last: datetime | None = None
    for log_file in files:
        path = logs / log_file.rel
        for line_no, raw in iter_file_lines(path, MIN_BLOCK):
            entry = parse_entry(raw, log_file.rel, line_no, None)
            moment = parse_time(entry.ts) if entry is not None else None
            if moment is not None:
                first = moment if first is None else min(first, moment)
                break
        tail, _ = file_tail(path, log_file.rel, 1, Filters(), None)
        moment = parse_time(tail[-1].ts) if tail else None
        if moment is not None:
            last = moment if last is None else max(last, moment)
    return first, last


def _status_from_records(logs: Path) -> str:
    """``run_end``'s status from ``run.log`` when there is one, else incomplete."""
    path = logs / _paths.RUN_LOG
    try:
        with open(path, "rb") as handle:
            end = last_newline_end(handle, os.fstat(handle.fileno()).st_size)
            for raw in reverse_lines(handle, end):
                if b'"run_end"' not in raw:
                    continue
                entry = parse_entry(raw, _paths.RUN_LOG, 0, None)
                if entry is not None and entry.record.get("event") == "run_end":
                    status = entry.record.get("status")
                    return str(status) if status else "success"
    except FileNotFoundError:
        return "incomplete"
    return "incomplete"


def scan_runs(
    runs_dir: Path, *, now: datetime | None = None, cache: bool = False
) -> list[RunRow]:
    """
    Every run under *runs_dir*, newest first.

    Runs started in the same second are in start order (run.json's start
    time has microseconds), then by run id. A directory holding only a
    ``logs_summary.txt`` (a fresh clone) is listed from its summary. Whether
    a running run has crashed is decided now, at every call.

    A run that cannot be read (a corrupt archive, a run.json that is not a
    file, a log the OS refuses, a summary that is not one) does not stop the
    listing: it is a row with status ``unreadable`` and the reason, listed
    after every run with a known start (see #12).

    Args:
        runs_dir: The directory of runs, or of one framework's runs.
        now: The time a running run's heartbeat is judged against.
        cache: Keep finished runs' rows in ``runs_dir/.runlog-cache/`` and
            reuse them while their files are unchanged (see
            :class:`~runlog.reading._ls_cache.LsCache`).

    Raises:
        RunlogError: If *runs_dir* itself cannot be listed.
    """
    moment = now or datetime.now(UTC)
    store = LsCache(runs_dir) if cache else None
    prefix = len(os.path.join(runs_dir, ""))
    rows: list[RunRow] = []
    for where, entries, key, values in _find_runs(runs_dir, store, prefix):
        if values is not None:
            rows.append(_row_from_values(where, values))
            continue
        row = _describe_finished(where, entries)
        if row is not None:
            rows.append(row)
            if store is not None and key is not None:
                store.put(where[prefix:], key, _values_of(row))
            continue
        path = Path(where)
        archive = _archive_only(entries)
        if store is not None and archive is not None:
            # taken before the archive is read: a later change shows
            key = _archive_key(where, archive)
        try:
            row = _describe(path, entries, moment, store, where[prefix:])
        except (RunlogError, OSError) as exc:
            row = unreadable_row(path, exc)
        rows.append(row)
        if store is not None and key is not None and row.source == "archive":
            # reading run.json out of an archive decompresses what precedes it
            store.put(where[prefix:], key, _values_of(row), archive=archive or "")
    if store is not None:
        store.save()
    oldest = datetime.min.replace(tzinfo=UTC)
    rows.sort(
        key=lambda row: (row.started or oldest, row.run_id, row.framework),
        reverse=True,
    )
    return rows


def list_run_ids(runs_dir: Path) -> list[str]:
    """
    The run ids (directory names) of the runs under *runs_dir*, newest id
    first, for shell completion: no file of a run is read. Only safe names
    (``[A-Za-z0-9_.-]``) are listed, so a shell may use them as they are.

    Raises:
        RunlogError: If *runs_dir* exists but cannot be listed.
    """
    names = {os.path.basename(path) for path, *_ in _find_runs(runs_dir, None, 0)}
    return sorted((name for name in names if _paths.is_safe_name(name)), reverse=True)


def _values_of(row: RunRow) -> list[Any]:
    return [
        row.framework,
        row.run_id,
        row.status,
        canonical_ts(row.started) if row.started else None,
        row.duration_s,
        row.steps,
        row.errors,
        row.warnings,
        row.archived,
        row.source,
    ]


def _row_from_values(run_dir: str, values: list[Any]) -> RunRow:
    framework, run_id, status, started, duration, steps, errors, warns = values[:8]
    archived, source = values[8:]
    return RunRow(
        framework=framework,
        run_id=run_id,
        path=Path(run_dir),
        status=status,
        started=parse_time(started),
        duration_s=None if duration is None else float(duration),
        steps=steps,
        errors=errors,
        warnings=warns,
        archived=archived,
        source=source,
    )


_Found = tuple[str, dict[str, os.DirEntry[str]], Key | None, list[Any] | None]


def _probe(path: str, store: LsCache | None, prefix: int) -> _Found | None:
    """A run whose cached row is still good, with no listing made; else None."""
    if store is None:
        return None
    rel = path[prefix:]
    try:
        key = run_key(path, store.archive_of(rel))
    except OSError:
        return None  # listed the slow way, which reports what is wrong
    return path, {}, key, store.get(rel, key)


def _archive_only(entries: dict[str, os.DirEntry[str]]) -> str | None:
    """The archive's name when the run has an archive and no logs/."""
    logs = entries.get(_LOGS)
    if logs is not None and logs.is_dir():
        return None
    return _archive_name(entries)


def _archive_key(run_dir: str, archive: str) -> Key | None:
    try:
        return run_key(run_dir, archive)
    except OSError:
        return None  # not cached; the listing says what is wrong


def _listing(path: str | Path) -> dict[str, os.DirEntry[str]]:
    with os.scandir(path) as entries:
        return {entry.name: entry for entry in entries}


def _archive_name(entries: dict[str, os.DirEntry[str]]) -> str | None:
    """:func:`_paths.find_archive` from a listing already made."""
    for name in _ARCHIVE_NAMES:
        entry = entries.get(name)
        if entry is not None and entry.is_file():
            return name
    return None


def _is_listed_run(entries: dict[str, os.DirEntry[str]]) -> bool:
    if _archive_name(entries) is not None:
        return True
    logs = entries.get(_LOGS)
    if logs is not None and logs.is_dir() and _logs_look_like_run(Path(logs.path)):
        return True
    # a committed summary alone, as in a fresh clone (see #17); a FIFO or a
    # link loop by that name is listed too, as unreadable, not hidden
    summary = entries.get(_SUMMARY)
    return summary is not None and not summary.is_dir()


def _find_runs(runs_dir: Path, store: LsCache | None, prefix: int) -> Iterator[_Found]:
    """
    What :func:`iter_run_dirs` finds, plus summary-only runs, each with its
    directory listing and cache key, or with its cached row and no listing:
    one ``scandir`` a directory, or four ``stat`` calls for a run cached,
    so that 10,000 runs list in well under a second (see #16).
    """
    try:
        top = _listing(runs_dir)
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as exc:
        raise _cannot_list(runs_dir, exc) from exc
    for first in _sorted_child_dirs(top):
        found = _found(first.path, store, prefix)
        if found is not None:
            yield found
            continue
        try:
            entries = _listing(first.path)
        except OSError:
            continue  # a directory we may not read holds no run we could show
        for second in _sorted_child_dirs(entries):
            found = _found(second.path, store, prefix)
            if found is not None:
                yield found


def _found(path: str, store: LsCache | None, prefix: int) -> _Found | None:
    """*path* as a run (cached, or listed and looking like one), else None."""
    probed = _probe(path, store, prefix)
    if probed is not None and probed[3] is not None:
        return probed
    try:
        entries = _listing(path)
    except OSError:
        return None  # a directory we may not read holds no run we could show
    if not _is_listed_run(entries):
        return None
    return path, entries, probed[2] if probed else None, None


def _sorted_child_dirs(entries: dict[str, os.DirEntry[str]]) -> list[os.DirEntry[str]]:
    return [
        entries[name]
        for name in sorted(entries)
        if not name.startswith(".") and entries[name].is_dir()
    ]
