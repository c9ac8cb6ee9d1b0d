"""Runs: start_run, Run, the heartbeat, open runs at exit, and finalize.

The status helpers below are re-exported from their old import path.
"""

from __future__ import annotations

from .._status import (
    HEARTBEAT_MISSES,
    STATUSES,
    effective_status,
    format_time,
    parse_time,
    read_run_json,
    status_reason,
)
from ._finalize import archive_run, finalize
from ._run import Run, finish_open_runs_at_exit, open_runs
from ._start import new_run_id, redact_argv, start_run

__all__ = [
    "HEARTBEAT_MISSES",
    "STATUSES",
    "Run",
    "archive_run",
    "effective_status",
    "finalize",
    "finish_open_runs_at_exit",
    "format_time",
    "new_run_id",
    "open_runs",
    "parse_time",
    "read_run_json",
    "redact_argv",
    "start_run",
    "status_reason",
]
