"""Finding runs on disk and describing them as ``runlog ls`` rows."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from .. import _paths
from .._status import effective_status, parse_time, read_run_json
from ..errors import RunlogError, RunNotFoundError
from ._archive_stream import archive_run_json
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

ARCHIVE_SUFFIXES: Final = (".tar.gz", ".tar.zst")
_ERROR_MARKS: Final = (b'"level":"error"', b'"level":"critical"')
_WARNING_MARK: Final = b'"level":"warning"'
UNREADABLE: Final = "unreadable"
# a run.json runlog writes is a few KB; the archive reader caps it the same
_MAX_RUN_JSON: Final = 1 << 20


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
        raise RunlogError(
            f"runs directory {str(runs_dir)!r} cannot be listed: {_os_reason(exc)}"
        ) from exc
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
    if not logs.is_dir():
        return False
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
        }


def describe_run(run_dir: Path, *, now: datetime | None = None) -> RunRow:
    """
    The ``runlog ls`` row of one run directory (reads only what it must).

    Values are copied from the run's files as they are, not escaped: whoever
    shows them escapes them.

    Raises:
        RunlogError: If the run's archive or run.json cannot be read.
        OSError: If a log file or directory of the run cannot be read.
    """
    now = now or datetime.now(UTC)
    logs = _paths.logs_dir(run_dir)
    archive = _paths.find_archive(run_dir)
    if not logs.is_dir() and archive is not None:
        return _describe_archived(run_dir, archive, now)
    info = _read_run_info(logs)
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
        duration = run_duration(info, status, started, now)
    else:
        first, last = _time_span(logs, files)
        has_run_log = any(f.rel == _paths.RUN_LOG for f in files)
        status = _status_from_records(logs) if has_run_log else "incomplete"
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
    errors, critical, warnings = count_marks(path, (*_ERROR_MARKS, _WARNING_MARK))
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


def scan_runs(runs_dir: Path, *, now: datetime | None = None) -> list[RunRow]:
    """
    Every run under *runs_dir*, newest first.

    A run that cannot be read (a corrupt archive, a run.json that is not a
    file, a log the OS refuses) does not stop the listing: it is a row with
    status ``unreadable`` and the reason, listed after every run with a known
    start (see #12).

    Raises:
        RunlogError: If *runs_dir* itself cannot be listed.
    """
    rows: list[RunRow] = []
    for path in iter_run_dirs(runs_dir):
        try:
            rows.append(describe_run(path, now=now))
        except (RunlogError, OSError) as exc:
            rows.append(unreadable_row(path, exc))
    oldest = datetime.min.replace(tzinfo=UTC)
    rows.sort(key=lambda row: (row.started or oldest, row.run_id), reverse=True)
    return rows
