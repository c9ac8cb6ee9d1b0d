"""Records written after finish() never sit silently outside the archive (#12)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runlog import configure, get_logger, start_run
from runlog.cli import main
from runlog.handler import SEAL_CHECK_S
from tests.conftest import files_under

pytestmark = pytest.mark.reliability

REPO = Path(__file__).resolve().parents[2]

# A child that inherited the run: logs once, waits for the parent to finish,
# then (past the seal check interval) logs again and reports what happened.
LATE_CHILD = """
import os, sys, time
import runlog
from runlog import LogWriteError
runlog.configure(console_format="off")
log = runlog.get_logger("late", component="worker")
log.info("before finish")
go = sys.argv[1]
while not os.path.exists(go):
    time.sleep(0.01)
time.sleep(float(sys.argv[2]))
try:
    log.info("after finish")
except LogWriteError as exc:
    print("refused:", exc)
else:
    print("written")
"""


def start_late_child(go: Path, pause_s: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", LATE_CHILD, str(go), str(pause_s)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def test_a_child_logging_after_finish_is_refused_and_the_archive_agrees(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A late child gets LogWriteError 'is finished'; logs/ matches the archive."""
    configure(console_format="off")
    go = tmp_path / "go"
    run = start_run("fw", "r1", tmp_path / "runs")
    with run.step(1):
        child = start_late_child(go, SEAL_CHECK_S + 0.2)
        deadline = time.monotonic() + 30
        worker_log = run.logs_dir / "step_001" / "worker.log"
        while not worker_log.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
    run.finish()
    before = {p: (run.logs_dir / p).read_bytes() for p in files_under(run.logs_dir)}
    go.touch()
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    assert out.startswith("refused: [Errno 30] run 'r1' is finished (success)")
    after = {p: (run.logs_dir / p).read_bytes() for p in files_under(run.logs_dir)}
    assert after == before
    assert main(["verify", str(run.run_dir)]) == 0
    assert "logs/ holds nothing else" in capsys.readouterr().out


def test_a_record_slipped_in_after_the_archive_fails_verify_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """runlog verify of the run dir exits 1 when logs/ holds more than the archive."""
    configure(console_format="off")
    run = start_run("fw", "r1", tmp_path / "runs")
    with run.step(1):
        get_logger("app", component="adapter").info("inside")
    run.finish()
    late = run.logs_dir / "step_001" / "adapter.log"
    with late.open("ab") as handle:
        handle.write(b'{"event":"written after the archive"}\n')
    assert main(["verify", str(run.run_dir)]) == 1
    err = capsys.readouterr().err
    assert "step_001/adapter.log" in err
    assert "changed after the archive was made" in err


def test_a_new_file_after_the_archive_fails_verify(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A log file the archive never saw makes verify exit 1, naming it."""
    configure(console_format="off")
    run = start_run("fw", "r1", tmp_path / "runs")
    run.finish()
    (run.logs_dir / "step_009").mkdir()
    (run.logs_dir / "step_009" / "worker.log").write_bytes(b'{"event":"late"}\n')
    assert main(["verify", str(run.run_dir)]) == 1
    assert "step_009/worker.log' is not in run.tar.gz" in capsys.readouterr().err


def test_a_resumed_run_takes_records_again(tmp_path: Path) -> None:
    """resume=True reopens a finished run: its records are written, not refused."""
    configure(console_format="off")
    start_run("fw", "r1", tmp_path / "runs", archive=False).finish()
    run = start_run("fw", "r1", tmp_path / "runs", archive=False, resume=True)
    with run.step(2):
        get_logger("app", component="adapter").info("resumed")
    run.finish()
    assert b"resumed" in (run.logs_dir / "step_002" / "adapter.log").read_bytes()
