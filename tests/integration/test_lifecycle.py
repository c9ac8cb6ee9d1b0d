"""A run from start_run to finish: statuses, retries, signals, atexit, archive."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import signal
import subprocess
import sys
import tarfile
import textwrap
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest

from runlog import (
    Archiver,
    RunlogError,
    configure,
    get_logger,
    start_run,
    verify_archive,
)
from runlog._status import effective_status, read_run_json
from tests.conftest import files_under, read_records

needs_archive = pytest.mark.skipif(
    not hasattr(Archiver, "create_archive"), reason="runlog.archive has not landed"
)
SHA_LINE = re.compile(r"^\s*SHA-256:\s+([0-9a-f]{64})\s*$", re.MULTILINE)


@pytest.fixture(autouse=True)
def _quiet() -> None:
    configure(console_format="off")


def run_info(logs: Path) -> dict[str, Any]:
    """run.json under *logs*, which must exist."""
    info = read_run_json(logs)
    assert info is not None
    return info


def by_event(path: Path, event: str) -> list[dict[str, Any]]:
    """The records of *path* whose event is *event*."""
    return [r for r in read_records(path) if r["event"] == event]


def run_script(
    code: str, *args: str, warn: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run *code* in a fresh interpreter (with -W default when *warn*)."""
    flags = ["-W", "default"] if warn else []
    return subprocess.run(
        [sys.executable, *flags, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def start_script(code: str, *args: str) -> subprocess.Popen[str]:
    """Start *code* in a fresh interpreter; stdout/stderr are captured."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_file(path: Path, process: subprocess.Popen[str]) -> None:
    """Wait until *process* creates *path*; fail if it exits first."""
    deadline = time.monotonic() + 60
    while not path.exists():
        if process.poll() is not None:
            pytest.fail(f"the script exited early: {process.communicate()}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"{path} never appeared")
        time.sleep(0.01)


# the with-block statuses


def test_successful_run_records_every_step_and_ends_success(tmp_path: Path) -> None:
    """A clean run: records in their step files, run.json success, summary."""
    runs = tmp_path / "runs"
    with start_run("fw", "r1", runs, {"model": "m-1"}, archive=False) as run:
        assert run_info(run.logs_dir)["status"] == "running"
        for step in (1, 2, 3):
            with run.step(step, name=f"stage-{step}"):
                get_logger("a", component="adapter").info("call", step_no=step)
                logging.getLogger("httpx").warning("slow")
        get_logger("r", component="reconciliation").info("balanced")
    logs = run.logs_dir
    assert files_under(logs) == {
        "run.json",
        "run.log",
        "combined.log",
        "reconciliation.log",
        *(f"step_00{n}/{c}.log" for n in (1, 2, 3) for c in ("adapter", "external")),
        *(f"step_00{n}/orchestrator.log" for n in (1, 2, 3)),
    }
    for step in (1, 2, 3):
        orchestrator = read_records(logs / f"step_00{step}" / "orchestrator.log")
        assert [(r["event"], r["name"], r["attempt"]) for r in orchestrator] == [
            ("step_start", f"stage-{step}", 1),
            ("step_end", f"stage-{step}", 1),
        ]
        assert orchestrator[1]["status"] == "success"
        [external] = read_records(logs / f"step_00{step}" / "external.log")
        assert (external["logger"], external["step"]) == ("httpx", step)
    info = run_info(logs)
    assert info["status"] == "success"
    assert info["ended_at"] is not None
    assert [r["event"] for r in read_records(logs / "run.log")] == [
        "run_start",
        "run_end",
    ]
    summary = (run.run_dir / "logs_summary.txt").read_text()
    assert "r1" in summary
    assert run.summary_path == run.run_dir / "logs_summary.txt"


def test_failed_run_records_the_exception_and_reraises(tmp_path: Path) -> None:
    """An exception fails the step and the run, is recorded, and propagates."""
    with (
        pytest.raises(ValueError, match="bad row 7") as caught,
        start_run("fw", "r1", tmp_path / "runs", archive=False) as run,
        run.step(2, name="load"),
    ):
        raise ValueError("bad row 7")
    logs = run.logs_dir
    [step_end] = by_event(logs / "step_002" / "orchestrator.log", "step_end")
    assert step_end["status"] == "failed"
    assert step_end["level"] == "error"
    assert (step_end["error_type"], step_end["error"]) == ("ValueError", "bad row 7")
    assert 'raise ValueError("bad row 7")' in step_end["traceback"]
    [run_end] = by_event(logs / "run.log", "run_end")
    assert (run_end["status"], run_end["error_type"]) == ("failed", "ValueError")
    assert "Traceback (most recent call last)" in run_end["traceback"]
    info = run_info(logs)
    assert (info["status"], info["error_type"], info["error"]) == (
        "failed",
        "ValueError",
        "bad row 7",
    )
    assert caught.value.args == ("bad row 7",)
    assert (run.run_dir / "logs_summary.txt").is_file()


def test_keyboard_interrupt_ends_step_and_run_interrupted(tmp_path: Path) -> None:
    """Ctrl-C (KeyboardInterrupt) leaves step and run interrupted, re-raised."""
    with (
        pytest.raises(KeyboardInterrupt),
        start_run("fw", "r1", tmp_path / "runs", archive=False) as run,
        run.step(1),
    ):
        raise KeyboardInterrupt
    [step_end] = by_event(run.logs_dir / "step_001" / "orchestrator.log", "step_end")
    assert (step_end["status"], step_end["level"]) == ("interrupted", "warning")
    [run_end] = by_event(run.logs_dir / "run.log", "run_end")
    assert run_end["status"] == "interrupted"
    assert run_info(run.logs_dir)["status"] == "interrupted"


def test_step_failing_once_then_succeeding_is_a_retry(tmp_path: Path) -> None:
    """Step 2 failing then succeeding: two step_end, failed then success, 1 and 2."""

    def fetch(attempt: int) -> None:
        get_logger("a", component="adapter").info("try", n=attempt)
        if attempt == 1:
            raise TimeoutError("upstream slow")

    with start_run("fw", "r1", tmp_path / "runs", archive=False) as run:
        for attempt in (1, 2):
            with suppress(TimeoutError), run.step(2, name="fetch"):
                fetch(attempt)
    logs = run.logs_dir
    assert {p for p in files_under(logs) if p.startswith("step_")} == {
        "step_002/adapter.log",
        "step_002/orchestrator.log",
    }
    records = read_records(logs / "step_002" / "orchestrator.log")
    assert [(r["event"], r["attempt"], r.get("status")) for r in records] == [
        ("step_start", 1, None),
        ("step_end", 1, "failed"),
        ("step_start", 2, None),
        ("step_end", 2, "success"),
    ]
    assert records[1]["error_type"] == "TimeoutError"
    assert [r["n"] for r in read_records(logs / "step_002" / "adapter.log")] == [1, 2]
    assert run_info(logs)["status"] == "success"


def test_run_json_goes_from_running_to_success(tmp_path: Path) -> None:
    """run.json says running with a moving heartbeat, then success with an end."""
    with start_run(
        "fw", "r1", tmp_path / "runs", archive=False, heartbeat_interval_s=0.05
    ) as run:
        first = run_info(run.logs_dir)
        deadline = time.monotonic() + 10
        while run_info(run.logs_dir)["heartbeat_at"] == first["heartbeat_at"]:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        during = run_info(run.logs_dir)
    after = run_info(run.logs_dir)
    assert (first["status"], during["status"], after["status"]) == (
        "running",
        "running",
        "success",
    )
    assert first["ended_at"] is None
    assert during["heartbeat_at"] > first["heartbeat_at"]
    assert after["ended_at"] >= during["heartbeat_at"]
    assert after["started_at"] == first["started_at"]
    assert effective_status(after) == "success"


# signals and exit, in real processes


SLEEPING_RUN = """
    import sys, time, runlog
    runlog.configure(console_format="off")
    with runlog.start_run("fw", "r1", sys.argv[1], archive=False) as run:
        with run.step(1, name="long"):
            open(sys.argv[2], "w").close()
            time.sleep(60)
"""


def test_sigterm_in_a_child_process_ends_it_interrupted(tmp_path: Path) -> None:
    """kill -TERM on a process inside a step: step_end and run_end interrupted."""
    runs, ready = tmp_path / "runs", tmp_path / "ready"
    process = start_script(SLEEPING_RUN, str(runs), str(ready))
    wait_for_file(ready, process)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode != 0
    assert "KeyboardInterrupt: received SIGTERM" in stderr
    logs = runs / "fw" / "r1" / "logs"
    [step_end] = by_event(logs / "step_001" / "orchestrator.log", "step_end")
    assert (step_end["status"], step_end["error"]) == (
        "interrupted",
        "received SIGTERM",
    )
    [run_end] = by_event(logs / "run.log", "run_end")
    assert (run_end["status"], run_end["signal"], run_end["reason"]) == (
        "interrupted",
        "SIGTERM",
        "received SIGTERM",
    )
    info = run_info(logs)
    assert (info["status"], info["signal"]) == ("interrupted", "SIGTERM")
    assert effective_status(info) == "interrupted"
    assert (runs / "fw" / "r1" / "logs_summary.txt").is_file()


def test_sigterm_outside_a_with_block_is_finished_at_exit(tmp_path: Path) -> None:
    """A run not used as a context manager still ends interrupted on SIGTERM."""
    code = """
        import sys, time, runlog
        runlog.configure(console_format="off")
        run = runlog.start_run("fw", "r1", sys.argv[1], archive=False)
        open(sys.argv[2], "w").close()
        time.sleep(60)
    """
    runs, ready = tmp_path / "runs", tmp_path / "ready"
    process = start_script(code, str(runs), str(ready))
    wait_for_file(ready, process)
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=60)
    info = run_info(runs / "fw" / "r1" / "logs")
    assert (info["status"], info["reason"]) == ("interrupted", "received SIGTERM")


def test_run_never_finished_is_closed_by_the_atexit_hook(tmp_path: Path) -> None:
    """An unfinished run is finished at exit as failed, 'not finished', warned."""
    code = """
        import sys, runlog
        runlog.configure(console_format="off")
        run = runlog.start_run("fw", "r1", sys.argv[1], archive=False)
        with run.step(1):
            runlog.get_logger("m", component="adapter").info("work")
    """
    runs = tmp_path / "runs"
    result = run_script(code, str(runs), warn=True)
    assert result.returncode == 0, result.stderr
    assert "ResourceWarning: run 'r1'" in result.stderr
    assert "was not finished; runlog finished it at exit as 'failed'" in result.stderr
    logs = runs / "fw" / "r1" / "logs"
    info = run_info(logs)
    assert (info["status"], info["reason"]) == ("failed", "not finished")
    [run_end] = by_event(logs / "run.log", "run_end")
    assert (run_end["status"], run_end["reason"]) == ("failed", "not finished")
    assert (runs / "fw" / "r1" / "logs_summary.txt").is_file()


def test_uncaught_exception_without_with_block_is_failed(tmp_path: Path) -> None:
    """A script dying of an exception with its run open ends failed, not running."""
    code = """
        import sys, runlog
        runlog.configure(console_format="off")
        run = runlog.start_run("fw", "r1", sys.argv[1], archive=False)
        raise RuntimeError("boom")
    """
    runs = tmp_path / "runs"
    result = run_script(code, str(runs))
    assert result.returncode == 1
    assert "RuntimeError: boom" in result.stderr
    info = run_info(runs / "fw" / "r1" / "logs")
    assert (info["status"], info["reason"]) == ("failed", "not finished")


# archive and summary


@needs_archive
@pytest.mark.parametrize("archive_format", ["gz", "zst"])
def test_finish_archives_then_summarizes(tmp_path: Path, archive_format: str) -> None:
    """finish() archives logs/ as it is on disk and the summary records its hash."""
    runs = tmp_path / "runs"
    with (
        start_run("fw", "r1", runs, archive_format=archive_format) as run,
        run.step(1),
    ):
        get_logger("a", component="adapter").info("call", prompt_tokens=3)
    archive = run.run_dir / f"run.tar.{archive_format}"
    assert run.archive_info is not None
    assert run.archive_info.path == archive
    assert archive.is_file()
    sidecar = archive.with_name(archive.name + ".sha256")
    assert sidecar.read_text().split()[0] == run.archive_info.sha256
    assert verify_archive(archive).sha256 == run.archive_info.sha256
    summary = run.summary_path
    assert summary == run.run_dir / "logs_summary.txt"
    assert SHA_LINE.findall(summary.read_text()) == [run.archive_info.sha256]
    if archive_format == "gz":
        with tarfile.open(archive, "r:gz") as tar:
            members = {
                m.name: hashlib.sha256(tar.extractfile(m).read()).hexdigest()  # type: ignore[union-attr]
                for m in tar.getmembers()
                if m.isfile() and m.name.startswith("logs/")
            }
        on_disk = {
            f"logs/{name}": hashlib.sha256(
                (run.logs_dir / name).read_bytes()
            ).hexdigest()
            for name in files_under(run.logs_dir)
        }
        assert members == on_disk
    assert run_info(run.logs_dir)["status"] == "success"


@needs_archive
def test_run_json_and_run_end_are_written_before_the_archive(tmp_path: Path) -> None:
    """The archived run.json already says success and run.log ends with run_end."""
    with start_run("fw", "r1", tmp_path / "runs") as run:
        pass
    with tarfile.open(run.run_dir / "run.tar.gz", "r:gz") as tar:
        run_json = tar.extractfile("logs/run.json")
        run_log = tar.extractfile("logs/run.log")
        assert run_json is not None
        assert run_log is not None
        assert b'"status": "success"' in run_json.read()
        assert b'"event":"run_end"' in run_log.read().splitlines()[-1]
    assert by_event(run.logs_dir / "run.log", "run_end")
    assert os.path.getsize(run.run_dir / "logs_summary.txt") <= 10 * 1024


@needs_archive
def test_archive_failure_still_writes_the_summary_and_raises(tmp_path: Path) -> None:
    """If the archive cannot be made, the summary is written and the error raised."""
    run = start_run("fw", "r1", tmp_path / "runs")
    blocker = run.run_dir / "run.tar.gz"
    blocker.mkdir()  # a directory where the archive should go
    (blocker / "keep").write_text("x")
    with pytest.raises((OSError, RunlogError)):
        run.finish()
    assert run.archive_info is None
    assert run.summary_path == run.run_dir / "logs_summary.txt"
    assert run.summary_path.is_file()
    assert run_info(run.logs_dir)["status"] == "success"
    assert run.finish() == run.summary_path
