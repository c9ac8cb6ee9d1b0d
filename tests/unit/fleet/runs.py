"""Runs written by the real logging path, for the tests over many runs."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import orjson

from runlog import Run, configure, get_logger, start_run


def fail(exc: BaseException) -> None:
    """The one raise site every generated failure comes from."""
    raise exc


def failing_run(
    runs_dir: Path,
    run_id: str,
    exc: BaseException,
    *,
    framework: str = "fw",
    archive: bool = False,
    archive_format: str = "gz",
    retries: int = 0,
) -> Path:
    """
    A run whose step 2 logs *exc* with its traceback, re-raises it and fails the run.

    Step 1 succeeds with an ``llm_request``; with *retries*, step 2 fails that
    many extra times first (each attempt logged and re-raised).
    """
    configure(console_format="off")
    log = get_logger("app.adapter", component="adapter")
    run: Run | None = None
    try:
        with start_run(
            framework,
            run_id,
            runs_dir,
            archive=archive,
            archive_format=archive_format,
        ) as run:
            with run.step(1, name="plan"):
                log.info("llm_request", model="m1", prompt_tokens=10, total_tokens=15)
            for _ in range(retries):
                try:
                    with run.step(2, name="act"):
                        _raise_logged(log, exc)
                except type(exc):
                    pass  # retried below, as an orchestrator would
            with run.step(2, name="act"):
                _raise_logged(log, exc)
    except type(exc):
        pass  # the run failed, as intended
    assert run is not None
    return run.run_dir


def _raise_logged(log: Any, exc: BaseException) -> None:
    try:
        fail(exc)
    except type(exc):
        log.exception("action_failed")
        raise


def ok_run(runs_dir: Path, run_id: str, *, framework: str = "fw") -> Path:
    """A run that succeeds: two steps, an LLM call each, no error."""
    configure(console_format="off")
    log = get_logger("app.adapter", component="adapter")
    with start_run(framework, run_id, runs_dir, archive=False) as run:
        for step in (1, 2):
            with run.step(step, name=f"s{step}"):
                log.info("llm_request", model="m1", prompt_tokens=step, total_tokens=2)
                log.info("api_call", endpoint="/v1/items", latency_ms=10 * step)
    return run.run_dir


def error_record(**fields: object) -> bytes:
    """One record line as runlog writes it (reserved keys first)."""
    record = {
        "ts": "2025-01-01T00:00:00.000000Z",
        "level": "error",
        "event": "boom",
        "logger": "t",
        "component": "adapter",
        "run_id": "r",
        "framework": "fw",
        "step": 1,
    }
    record.update(fields)
    return orjson.dumps(record) + b"\n"


def git(repo: Path, *args: str) -> str:
    """Run git in *repo*, failing the test on an error."""
    done = subprocess.run(
        ["git", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        check=True,
        env={
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@example.com",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@example.com",
            "HOME": str(repo),
            "PATH": "/usr/bin:/bin",
        },
    )
    return done.stdout
