"""The runs a command over many runs works on, local or in object storage."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from .. import _paths, remote
from .._status import effective_status, parse_time, read_run_json
from ..errors import RunlogError, RunNotFoundError
from ..reading._archive_stream import archive_run_json
from ..reading._runs import UNREADABLE, iter_run_dirs
from ..reading._source import RunSource

NO_RUN_JSON: Final = "incomplete"


@dataclass(frozen=True)
class FleetRun:
    """
    One run as seen from above: where it is, what its run.json says.

    *label* is what a person types to open it again (its directory, or its
    URL for a stored run); *url* is set only for a run in object storage.
    """

    framework: str
    run_id: str
    run_dir: Path
    label: str
    status: str
    started: datetime | None
    ended: datetime | None
    archive: Path | None
    has_logs: bool
    info: dict[str, Any] = field(default_factory=dict, compare=False)
    url: str | None = None
    reason: str | None = None

    @property
    def source(self) -> RunSource:
        """Where its records are read from: ``logs/`` when present, else the archive."""
        return RunSource(self.run_dir, None if self.has_logs else self.archive)

    @property
    def last_activity(self) -> datetime | None:
        """When the run was last known to do something: its end, else its start."""
        return self.ended or self.started


def _mtime(path: Path) -> datetime | None:
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, UTC)
    except OSError:
        return None


def describe(run_dir: Path, *, now: datetime | None = None) -> FleetRun:
    """
    The :class:`FleetRun` of one run directory; reads run.json only.

    A run that cannot be read is described with status ``unreadable`` and
    the reason, never raised: one bad run does not hide the others.
    """
    logs = _paths.logs_dir(run_dir)
    archive = _paths.find_archive(run_dir)
    has_logs = logs.is_dir()
    info: dict[str, Any] | None
    reason = None
    try:
        if has_logs:
            info = read_run_json(logs)
        elif archive is not None:
            info = archive_run_json(archive)
        else:
            info = None
    except (OSError, RunlogError) as exc:
        info, reason = None, str(exc)
    info = info or {}
    framework, run_id = info.get("framework"), info.get("run_id")
    if not _paths.is_safe_name(framework):
        framework = run_dir.parent.name
    if not _paths.is_safe_name(run_id):
        run_id = run_dir.name
    if reason is not None:
        status = UNREADABLE
    elif info:
        status = effective_status(info, now=now)
    else:
        status = NO_RUN_JSON
    started = parse_time(info.get("started_at"))
    ended = parse_time(info.get("ended_at"))
    if ended is None and status != "running":
        ended = parse_time(info.get("heartbeat_at"))
    if started is None and ended is None:
        # a run made with set_run_context alone: its files say when it ran
        started = _mtime(logs if has_logs else run_dir)
    return FleetRun(
        framework=str(framework),
        run_id=str(run_id),
        run_dir=run_dir,
        label=str(run_dir),
        status=status,
        started=started,
        ended=ended,
        archive=archive,
        has_logs=has_logs,
        info=info,
        reason=reason,
    )


def local_runs(
    runs_dir: Path,
    *,
    framework: str | None = None,
    now: datetime | None = None,
) -> list[FleetRun]:
    """
    Every run under *runs_dir* (optionally of one *framework*), newest first.

    Raises:
        RunNotFoundError: If *runs_dir* is not a directory.
        RunlogError: If it cannot be listed.
    """
    if not runs_dir.is_dir():
        raise RunNotFoundError(f"runs directory {str(runs_dir)!r}: no such directory")
    moment = now or datetime.now(UTC)
    runs = [describe(path, now=moment) for path in iter_run_dirs(runs_dir)]
    if framework is not None:
        runs = [run for run in runs if run.framework == framework]
    return newest_first(runs)


def newest_first(runs: list[FleetRun]) -> list[FleetRun]:
    """*runs* sorted by start, newest first (unknown starts last)."""
    oldest = datetime.min.replace(tzinfo=UTC)
    return sorted(
        runs, key=lambda run: (run.started or oldest, run.run_id), reverse=True
    )


def remote_runs(
    url: str, *, framework: str | None = None, now: datetime | None = None
) -> list[FleetRun]:
    """
    Every run stored under *url*, newest first, described from its run.json.

    Raises:
        UploadError: If the store cannot be listed.
        ConfigurationError: Without the ``runlog[remote]`` extra.
    """
    runs: list[FleetRun] = []
    for row in remote.scan_remote_runs(url, now=now):
        if framework is not None and row.framework != framework:
            continue
        runs.append(
            FleetRun(
                framework=row.framework,
                run_id=row.run_id,
                run_dir=row.path,
                label=row.url or str(row.path),
                status=row.status,
                started=row.started,
                ended=None,
                archive=None,
                has_logs=False,
                url=row.url,
            )
        )
    return newest_first(runs)


@contextmanager
def local_copy(run: FleetRun) -> Iterator[RunSource]:
    """
    The records of *run* as a local :class:`RunSource`, fetched first for a URL.

    Raises:
        UploadError: If a stored run cannot be fetched.
    """
    if run.url is None:
        yield run.source
        return
    with remote.fetched(run.url) as local:
        if local.is_file():
            yield RunSource(local.parent, local)
        else:
            yield RunSource(local)
