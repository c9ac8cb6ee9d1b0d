"""What a reader believes about a run from its run.json: running, ended or crashed."""

from __future__ import annotations

import errno
import functools
import os
import socket
import stat
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import orjson

from . import _paths

HEARTBEAT_MISSES: Final = 3
_MAX_RUN_JSON: Final = 64 << 20
STATUSES: Final = ("running", "success", "failed", "interrupted")
FINISHED_STATUSES: Final = STATUSES[1:]


def format_time(moment: datetime) -> str:
    """*moment* as RFC 3339 UTC with microseconds and ``Z``, as in records."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: object) -> datetime | None:
    """An RFC 3339 timestamp from run.json or a record as an aware UTC datetime."""
    if not isinstance(text, str) or not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.astimezone(UTC)


def read_run_json(logs_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """
    The contents of ``logs/run.json``; None when absent or not a JSON object.

    Raises:
        OSError: When run.json exists but cannot be read (permissions), or is
            not a regular file (a FIFO would block a reader forever) or is
            over 64 MiB (see #12).
    """
    path = _paths.run_json(Path(logs_dir))
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            return None
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        if info.st_size > _MAX_RUN_JSON:
            raise OSError(errno.EFBIG, "over 64 MiB", str(path))
        with os.fdopen(fd, "rb", closefd=False) as handle:
            raw = handle.read()
    finally:
        os.close(fd)
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


@functools.cache
def boot_id() -> str | None:
    """This machine's boot id (Linux), so a reader can tell a reboot apart."""
    try:
        text = Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii")
    except OSError:
        return None
    return text.strip() or None


def _proc_stat(pid: int) -> list[str] | None:
    # /proc/<pid>/stat: "pid (comm) state ... starttime ..."; comm may hold
    # spaces and parentheses, so split after the last ")".
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return text.rpartition(")")[2].split()


def process_start_ticks(pid: int) -> int | None:
    """When process *pid* started, in clock ticks since boot (Linux), else None."""
    fields = _proc_stat(pid)
    if fields is None or len(fields) < 20 or not fields[19].isdigit():
        return None
    return int(fields[19])


def is_pid_alive(pid: int) -> bool:
    """True if a process with *pid* exists on this host (a zombie does not count)."""
    if type(pid) is not int or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # no such pid, or none can be
        return False
    except PermissionError:
        return True
    fields = _proc_stat(pid)
    return not (fields and fields[0] == "Z")


def status_reason(
    info: Mapping[str, Any], *, now: datetime | None = None
) -> tuple[str, str | None]:
    """
    The status a reader should believe, and why when it is ``crashed``.

    A run whose run.json still says ``running`` is ``crashed`` when, on the
    host that wrote it, the machine has rebooted since, its process is gone
    (or a zombie, or its pid now belongs to a newer process), or, from any
    host, its heartbeat is older than three heartbeat intervals.

    Returns:
        ``(status, reason)``: status is one of ``running``, ``success``,
        ``failed``, ``interrupted``, ``crashed``; reason is run.json's
        ``reason`` for a finished run and a description for ``crashed``.
    """
    status = str(info.get("status") or "running")
    if status != "running":
        reason = info.get("reason")
        return status, reason if isinstance(reason, str) else None
    if info.get("host") == socket.gethostname():
        recorded_boot = info.get("boot_id")
        current_boot = boot_id()
        if recorded_boot and current_boot and recorded_boot != current_boot:
            return "crashed", "the machine restarted after the run started"
        pid = info.get("pid")
        if type(pid) is int:
            if not is_pid_alive(pid):
                return "crashed", f"process {pid} is gone"
            started = info.get("pid_started")
            if type(started) is int and process_start_ticks(pid) not in (
                None,
                started,
            ):
                return "crashed", f"process {pid} is gone (its pid was reused)"
    beat = parse_time(info.get("heartbeat_at"))
    interval = info.get("heartbeat_interval_s")
    if (
        beat is not None
        and isinstance(interval, (int, float))
        and not isinstance(interval, bool)
        and interval > 0
    ):
        age = ((now or datetime.now(UTC)) - beat).total_seconds()
        if age > HEARTBEAT_MISSES * interval:
            return "crashed", f"no heartbeat for {age:.1f}s (interval {interval}s)"
    return "running", None


def effective_status(info: dict[str, Any], *, now: datetime | None = None) -> str:
    """
    The status a reader should believe: run.json's, or ``crashed``.

    A run whose run.json still says ``running`` is ``crashed`` when its
    process is gone (same host, pid not alive) or its heartbeat is older than
    three heartbeat intervals; see :func:`status_reason`.
    """
    return status_reason(info, now=now)[0]


def run_names(run_dir: Path) -> tuple[str, str]:
    """
    The framework and run id of the run in *run_dir*.

    run.json's values where they are safe names, else the directory names
    (``<framework>/<run_id>/``); an unreadable run.json counts as absent.
    """
    try:
        info = read_run_json(_paths.logs_dir(run_dir)) or {}
    except OSError:
        info = {}  # the summary reports an unreadable run.json itself
    framework, run_id = info.get("framework"), info.get("run_id")
    if not _paths.is_safe_name(framework):
        framework = run_dir.parent.name
    if not _paths.is_safe_name(run_id):
        run_id = run_dir.name
    return str(framework), str(run_id)
