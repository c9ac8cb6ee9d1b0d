"""Runs on disk for the viewer's tests: the demo run, and runs written by hand."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

START = datetime(2025, 10, 20, 14, 0, tzinfo=UTC)


def ts(seconds: float) -> str:
    """The record timestamp *seconds* after START."""
    return (START + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def make_demo(runs_dir: Path) -> Path:
    """`runlog demo` in a fresh process (it sets global logging state); its run dir."""
    subprocess.run(
        [sys.executable, "-m", "runlog", "demo", "--runs-dir", str(runs_dir)],
        check=True,
        capture_output=True,
    )
    (run_dir,) = (runs_dir / "demo").iterdir()
    return run_dir


def record(
    seconds: float,
    event: str,
    *,
    level: str = "info",
    component: str = "adapter",
    step: int | None = None,
    run_id: str = "r1",
    **fields: Any,
) -> dict[str, Any]:
    """One record in the SPEC §2 key order, then *fields*."""
    return {
        "ts": ts(seconds),
        "level": level,
        "event": event,
        "logger": "app",
        "component": component,
        "run_id": run_id,
        "framework": "fw",
        "step": step,
        **fields,
    }


def write_records(logs: Path, records: list[dict[str, Any]]) -> None:
    """Append *records* to the files runlog routes them to (steps, run.log)."""
    for rec in records:
        step = rec.get("step")
        folder = logs / f"step_{step:03d}" if isinstance(step, int) else logs
        name = f"{rec['component']}.log" if isinstance(step, int) else "run.log"
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / name, "ab") as handle:
            handle.write(orjson.dumps(rec, option=orjson.OPT_APPEND_NEWLINE))


def write_run_json(logs: Path, **info: Any) -> None:
    """logs/run.json with the usual keys, *info* overriding them."""
    data = {
        "run_id": "r1",
        "framework": "fw",
        "status": "success",
        "started_at": ts(0),
        "ended_at": ts(60),
        "duration_s": 60.0,
        "heartbeat_at": ts(60),
        "pid": 1,
        "host": "test-host",
        "metadata": {"model": "test-model"},
        **info,
    }
    logs.mkdir(parents=True, exist_ok=True)
    (logs / "run.json").write_bytes(orjson.dumps(data))


def step_records(
    step: int, start: float, end: float, *, attempt: int = 1, status: str = "success"
) -> list[dict[str, Any]]:
    """step_start and step_end of one attempt (a failure carries its error)."""
    failed = {} if status == "success" else {"error_type": "ValueError", "error": "bad"}
    return [
        record(
            start,
            "step_start",
            component="orchestrator",
            step=step,
            name=f"s{step}",
            attempt=attempt,
        ),
        record(
            end,
            "step_end",
            level="info" if status == "success" else "error",
            component="orchestrator",
            step=step,
            name=f"s{step}",
            attempt=attempt,
            status=status,
            duration_s=end - start,
            **failed,
        ),
    ]


def make_run(runs_dir: Path, run_id: str = "r1", *, others: int = 6) -> Path:
    """
    A finished run of 2 steps, step 1 retried once: *others* info records in
    step 2, a warning, and an error with a traceback; returns its directory.
    """
    run_dir = runs_dir / "fw" / run_id
    logs = run_dir / "logs"
    write_run_json(logs, run_id=run_id)
    recs = [record(0, "run_start", component="orchestrator", run_id=run_id)]
    recs += step_records(1, 1, 2, status="failed")
    recs += step_records(1, 3, 4, attempt=2)
    recs += step_records(2, 5, 50)
    recs.append(
        record(
            3.5,
            "llm_request",
            step=1,
            prompt_tokens=100,
            completion_tokens=20,
            total_tokens=120,
            run_id=run_id,
        )
    )
    recs.append(record(6, "slow response", level="warning", step=2, run_id=run_id))
    recs.append(
        record(
            7,
            "request failed",
            level="error",
            step=2,
            component="validator",
            run_id=run_id,
            exception="Traceback (most recent call last):\n"
            '  File "app.py", line 3, in check\nValueError: bad price',
        )
    )
    recs += [
        record(8 + i, "api_call", step=2, run_id=run_id, endpoint="/v1/items", n=i)
        for i in range(others)
    ]
    recs.append(
        record(59, "run_end", component="orchestrator", run_id=run_id, status="success")
    )
    write_records(logs, sorted(recs, key=lambda r: r["ts"]))
    return run_dir
