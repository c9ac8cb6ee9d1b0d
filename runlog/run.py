"""start_run and Run: run.json, the heartbeat thread, finish()."""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import orjson

from . import _paths

HEARTBEAT_MISSES: Final = 3
STATUSES: Final = ("running", "success", "failed", "interrupted")


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
    """The contents of ``logs/run.json``; None when absent or not a JSON object."""
    path = _paths.run_json(Path(logs_dir))
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def is_pid_alive(pid: int) -> bool:
    """True if a process with *pid* exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def effective_status(info: dict[str, Any], *, now: datetime | None = None) -> str:
    """
    The status a reader should believe: run.json's, or ``crashed``.

    A run whose run.json still says ``running`` is ``crashed`` when its
    process is gone (same host, pid not alive) or its heartbeat is older than
    three heartbeat intervals.
    """
    status = str(info.get("status") or "running")
    if status != "running":
        return status
    pid = info.get("pid")
    if (
        info.get("host") == socket.gethostname()
        and type(pid) is int
        and not is_pid_alive(pid)
    ):
        return "crashed"
    beat = parse_time(info.get("heartbeat_at"))
    interval = info.get("heartbeat_interval_s")
    if beat is not None and isinstance(interval, (int, float)) and interval > 0:
        now = now or datetime.now(UTC)
        if (now - beat).total_seconds() > HEARTBEAT_MISSES * interval:
            return "crashed"
    return "running"


class Run:
    """Placeholder until the run lifecycle lands."""

    def __init__(self) -> None:
        raise NotImplementedError


def start_run(*args: Any, **kwargs: Any) -> Run:
    """Placeholder until the run lifecycle lands."""
    raise NotImplementedError
