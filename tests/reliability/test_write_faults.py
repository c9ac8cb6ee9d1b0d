"""Write failures surface as LogWriteError (or a warning), and the next record lands."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest

from runlog import LogContext, LogWriteError, configure, get_logger
from tests.conftest import read_records

pytestmark = pytest.mark.reliability

def _step3(run_logs: Path) -> Path:
    LogContext.get_instance().set_step_context(3)
    return run_logs / "step_003" / "adapter.log"


def _disk_full(monkeypatch: pytest.MonkeyPatch, event: bytes) -> None:
    # patched: a link to /dev/full is refused since #12 (no write through links),
    # and no other device fills on demand
    real_write = os.write

    def full_write(fd: int, data: bytes) -> int:
        if event in data:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full_write)


def test_disk_full_raises_naming_the_file(
    run_logs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk (ENOSPC from os.write) raises LogWriteError: ENOSPC and the path."""
    target = _step3(run_logs)
    _disk_full(monkeypatch, b'"lost?"')
    with pytest.raises(LogWriteError) as info:
        get_logger("m", component="adapter").info("lost?")
    assert info.value.errno == errno.ENOSPC
    assert str(target) in str(info.value)


def test_after_disk_full_clears_the_next_record_lands(
    run_logs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the fault is gone the next record lands; combined.log had the failed one."""
    target = _step3(run_logs)
    log = get_logger("m", component="adapter")
    real_write = os.write
    _disk_full(monkeypatch, b'{"ts"')  # the step file's JSON line, not combined.log's
    with pytest.raises(LogWriteError):
        log.info("first")
    monkeypatch.setattr(os, "write", real_write)
    log.info("second")
    assert [r["event"] for r in read_records(target)] == ["second"]
    combined = (run_logs / "combined.log").read_text()
    assert "first" in combined and "second" in combined


def test_directory_where_the_file_should_be(run_logs: Path) -> None:
    """A directory at the log path raises LogWriteError naming it; removing it heals."""
    target = _step3(run_logs)
    target.mkdir()
    log = get_logger("m", component="adapter")
    with pytest.raises(LogWriteError, match=r"adapter\.log"):
        log.info("x")
    target.rmdir()
    log.info("y")
    assert [r["event"] for r in read_records(target)] == ["y"]


def test_fifo_is_refused_not_blocked_on(run_logs: Path) -> None:
    """A FIFO at the log path is refused at once (never blocks the program)."""
    target = _step3(run_logs)
    os.mkfifo(target)
    with pytest.raises(LogWriteError, match=r"not a regular file"):
        get_logger("m", component="adapter").info("x")


def test_warn_mode_turns_failures_into_runtime_warnings(run_logs: Path) -> None:
    """on_write_error="warn" gives a RuntimeWarning naming the path, not an error."""
    configure(on_write_error="warn", console_format="off")
    target = _step3(run_logs)
    target.mkdir()
    with pytest.warns(RuntimeWarning, match="adapter.log"):
        get_logger("m", component="adapter").info("x")
    target.rmdir()
    get_logger("m", component="adapter").info("y")
    assert [r["event"] for r in read_records(target)] == ["y"]


def test_failed_write_from_os_write_is_reported(
    run_logs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EIO from os.write (patched: no device fails on demand) raises, then recovers."""
    target = _step3(run_logs)
    log = get_logger("m", component="adapter")
    log.info("before")
    real_write = os.write

    def failing_write(fd: int, data: bytes) -> int:
        if b'"during"' in data:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", failing_write)
    with pytest.raises(LogWriteError) as info:
        log.info("during")
    assert info.value.errno == errno.EIO and info.value.filename == str(target)
    monkeypatch.setattr(os, "write", real_write)
    log.info("after")
    assert [r["event"] for r in read_records(target)] == ["before", "after"]


def test_deleted_step_dir_is_restored_and_reported(run_logs: Path) -> None:
    """Deleting a step dir mid-run is reported; the open file's records are restored."""
    target = _step3(run_logs)
    log = get_logger("m", component="adapter")
    log.info("one")
    shutil.rmtree(run_logs / "step_003")

    def log_until_noticed() -> None:
        for i in range(200):  # noticed within a bounded number of records
            log.info("more", i=i)

    with pytest.raises(LogWriteError, match="deleted while open"):
        log_until_noticed()
    log.info("after")
    events = [r["event"] for r in read_records(target)]
    assert events[0] == "one" and events[-1] == "after"
    assert events.count("more") == len(events) - 2


def test_deleted_file_is_restored_before_its_descriptor_closes(run_logs: Path) -> None:
    """A file deleted and then left (step switch) is restored, not silently dropped."""
    target = _step3(run_logs)
    get_logger("m", component="adapter").info("kept")
    target.unlink()
    with pytest.raises(LogWriteError, match="deleted while open"):
        LogContext.get_instance().set_step_context(4)
    assert [r["event"] for r in read_records(target)] == ["kept"]
