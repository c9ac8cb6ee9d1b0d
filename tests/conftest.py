"""Shared fixtures: each test starts with no run, default settings, a clean root."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from runlog import LogContext, Run, configure, start_run
from runlog._config import Settings, apply_settings
from runlog.process import _env


@pytest.fixture(autouse=True)
def _reset_runlog(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    root = logging.getLogger()
    handlers = list(root.handlers)
    level = root.level
    for name in _env.ALL:
        monkeypatch.delenv(name, raising=False)
    context = LogContext.get_instance()
    context.clear_run_context()
    apply_settings(Settings())
    yield
    context.clear_run_context()
    apply_settings(Settings())
    root.handlers[:] = handlers
    root.setLevel(level)
    for name in _env.ALL:
        os.environ.pop(name, None)


@pytest.fixture
def run_logs(tmp_path: Path) -> Path:
    """A run context set on tmp_path/runs/fw/r1/logs; returns the logs dir."""
    logs = tmp_path / "runs" / "fw" / "r1" / "logs"
    LogContext.get_instance().set_run_context("r1", "fw", logs)
    return logs


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Run]:
    """An open run without archive; finished after the test."""
    configure(console_format="off")
    opened = start_run("fw", "r1", tmp_path / "runs", archive=False)
    yield opened
    opened.finish()


@pytest.fixture
def default_sigterm() -> Iterator[None]:
    """SIGTERM with its default action for the test (coverage installs its own)."""
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    signal.signal(signal.SIGTERM, previous)


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every JSON line of *path*, parsed (fails the test on a torn line)."""
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def files_under(directory: Path) -> set[str]:
    """Relative paths of every file below *directory*."""
    return {
        p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()
    }
