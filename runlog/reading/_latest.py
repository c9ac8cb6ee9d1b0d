"""The newest run under a runs directory, and how a followed run ended."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .. import _paths
from .._status import effective_status, parse_time, read_run_json
from ..errors import RunlogError
from ._runs import iter_run_dirs

__all__ = ["RunEnd", "newest_run", "run_end"]


def newest_run(runs_dir: Path) -> Path | None:
    """
    The run under *runs_dir* that started last, or None when there is none.

    A run's start is ``started_at`` in its run.json; a run without one (made
    with ``set_run_context`` alone) counts from its directory's change time.
    Ties go to the greater run id (run ids sort by time).

    Raises:
        RunlogError: If *runs_dir* exists but cannot be listed.
    """
    best: tuple[float, str] | None = None
    found: Path | None = None
    for run_dir in iter_run_dirs(runs_dir):
        key = (_started(run_dir), run_dir.name)
        if best is None or key > best:
            best, found = key, run_dir
    return found


def _started(run_dir: Path) -> float:
    try:
        info = read_run_json(_paths.logs_dir(run_dir))
    except OSError:
        info = None
    if info is not None:
        moment = parse_time(info.get("started_at"))
        if moment is not None:
            return moment.timestamp()
    try:
        return os.stat(run_dir).st_mtime
    except OSError:
        return 0.0


@dataclass(frozen=True, slots=True)
class RunEnd:
    """How a run ended: its final status and how long it took."""

    status: str
    duration_s: float | None


def run_end(logs_dir: Path) -> RunEnd | None:
    """
    The end of the run whose logs are *logs_dir*, or None while it runs.

    The run has ended when its run.json says so (``success``, ``failed``,
    ``interrupted``), or says ``running`` for a process that is gone
    (``crashed``). A run without run.json never ends by this test.

    Raises:
        RunlogError: If run.json exists but cannot be read.
    """
    try:
        info = read_run_json(logs_dir)
    except OSError as exc:
        path = str(_paths.run_json(logs_dir))
        raise RunlogError(f"cannot read {path!r}: {exc.strerror or exc}") from exc
    if info is None:
        return None
    status = effective_status(info)
    if status == "running":
        return None
    duration = info.get("duration_s")
    if not isinstance(duration, int | float) or isinstance(duration, bool):
        duration = None
    return RunEnd(status, float(duration) if duration is not None else None)
