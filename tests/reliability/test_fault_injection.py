"""More write faults, and their recovery: size limit, read-only mount, lost paths."""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest

from runlog import LogContext, LogWriteError, configure, get_logger, start_run
from tests.conftest import read_records
from tests.reliability._checks import (
    COMBINED_LINE,
    json_lines,
    run_python,
    split_whole_lines,
)

pytestmark = pytest.mark.reliability

# A child process: a file size limit (RLIMIT_FSIZE) cuts a record mid-line
# (the kernel writes up to the limit, then refuses with EFBIG); Python ignores
# SIGXFSZ, so the write fails instead of killing the process.
SIZE_LIMIT_CHILD = """
    import json, resource, sys
    from pathlib import Path
    from runlog import LogContext, LogWriteError, configure, get_logger

    logs = Path(sys.argv[1])
    configure(console_format="off")
    context = LogContext.get_instance()
    context.set_run_context("r1", "fw", logs)
    context.set_step_context(1)
    log = get_logger("m", component="adapter")
    log.info("first")
    target = logs / "step_001" / "adapter.log"
    limit = target.stat().st_size + 1500
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    acknowledged = 0
    failure = None
    for i in range(100):
        try:
            log.info("fill", i=i, pad="x" * 100)
        except LogWriteError as exc:
            failure = {"errno": exc.errno, "filename": exc.filename, "text": str(exc)}
            break
        acknowledged += 1
    refused = 0
    for i in range(5):
        try:
            log.info("while limited", i=i)
        except LogWriteError:
            refused += 1
    infinity = resource.RLIM_INFINITY
    resource.setrlimit(resource.RLIMIT_FSIZE, (infinity, infinity))
    log.info("after")
    log.info("after again")
    context.clear_run_context()
    print(json.dumps({"acknowledged": acknowledged, "failure": failure,
                      "refused": refused, "limit": limit}))
"""


@pytest.fixture(scope="module")
def size_limited(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """Logs of a child that hit RLIMIT_FSIZE mid-record, then had it lifted."""
    logs = tmp_path_factory.mktemp("fsize") / "runs" / "fw" / "r1" / "logs"
    out = run_python(SIZE_LIMIT_CHILD, str(logs))
    return logs, json.loads(out)


def test_file_size_limit_raises_efbig_naming_the_file(
    size_limited: tuple[Path, Any],
) -> None:
    """RLIMIT_FSIZE (real, in a child): EFBIG at the logging call, with the path."""
    logs, result = size_limited
    target = logs / "step_001" / "adapter.log"
    assert result["failure"] is not None, result
    assert result["failure"]["errno"] == errno.EFBIG
    assert result["failure"]["filename"] == str(target)
    assert "File too large" in result["failure"]["text"]
    assert result["refused"] == 5  # every record while the limit holds raises
    assert target.stat().st_size <= result["limit"] + 600  # nothing landed meanwhile


def test_after_size_limit_lifts_records_land_whole(
    size_limited: tuple[Path, Any],
) -> None:
    """
    After EFBIG cut a record mid-line, the next record still reads as its own line.

    The cut-off piece is ended with a newline when the file is reopened, so it
    stays one malformed line instead of swallowing the next record.
    """
    logs, result = size_limited
    target = logs / "step_001" / "adapter.log"
    lines, rest = split_whole_lines(target)
    assert rest == b""
    parsed = []
    torn = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            torn.append(line)
    events = [r["event"] for r in parsed]
    acknowledged = result["acknowledged"]
    assert events == ["first", *["fill"] * acknowledged, "after", "after again"]
    assert [r["i"] for r in parsed if r["event"] == "fill"] == list(range(acknowledged))
    # at most the one record the limit cut, as a prefix of itself
    assert len(torn) <= 1
    assert all(line.startswith(b'{"ts":') for line in torn)
    combined_lines, combined_rest = split_whole_lines(logs / "combined.log")
    assert combined_rest == b""
    assert combined_lines[-1].endswith(b"after again")
    assert combined_lines[-2].endswith(b"after")
    good = [line for line in combined_lines if COMBINED_LINE.match(line)]
    assert len(combined_lines) - len(good) <= 1


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A small tmpfs mounted at tmp_path/mnt (skips where mounting is not allowed)."""
    mount_point = tmp_path / "mnt"
    mount_point.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount(8) here")
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {result.stderr.strip()}")
    try:
        yield mount_point
    finally:
        try:
            LogContext.get_instance().clear_run_context()
        finally:
            subprocess.run(["umount", "-l", str(mount_point)], check=False)


def remount(mount_point: Path, mode: str) -> None:
    """Remount *mount_point* ``ro`` or ``rw``."""
    subprocess.run(["mount", "-o", f"remount,{mode}", str(mount_point)], check=True)


def _log_on_readonly(mount_point: Path) -> Path:
    """Log one record, close the files, remount read-only; return the step log."""
    configure(console_format="off")
    logs = mount_point / "runs" / "fw" / "r1" / "logs"
    context = LogContext.get_instance()
    context.set_run_context("r1", "fw", logs)
    context.set_step_context(1)
    get_logger("m", component="adapter").info("before")
    # a mount with files open for writing cannot be made read-only (EBUSY)
    context.clear_run_context()
    remount(mount_point, "ro")
    context.set_run_context("r1", "fw", logs)
    context.set_step_context(1)
    return logs / "step_001" / "adapter.log"


def test_read_only_mount_raises_erofs_naming_the_file(tmpfs: Path) -> None:
    """Logs dir on a read-only tmpfs: LogWriteError EROFS naming the step log."""
    target = _log_on_readonly(tmpfs)
    with pytest.raises(LogWriteError) as info:
        get_logger("m", component="adapter").info("during")
    assert info.value.errno == errno.EROFS
    assert info.value.filename == str(target)
    assert [r["event"] for r in read_records(target)] == ["before"]


def test_after_read_only_mount_is_writable_again_records_land(tmpfs: Path) -> None:
    """Remounted read-write, the next record lands after the ones before the fault."""
    target = _log_on_readonly(tmpfs)
    log = get_logger("m", component="adapter")
    with pytest.raises(LogWriteError):
        log.info("during")
    remount(tmpfs, "rw")
    log.info("after")
    assert [r["event"] for r in read_records(target)] == ["before", "after"]


def test_start_run_on_a_read_only_mount_fails_naming_the_dir(tmpfs: Path) -> None:
    """start_run on a read-only mount raises LogWriteError (EROFS), writes nothing."""
    remount(tmpfs, "ro")
    with pytest.raises(LogWriteError) as info:
        start_run("fw", "r1", tmpfs / "runs", archive=False)
    assert info.value.errno == errno.EROFS
    assert str(tmpfs / "runs") in str(info.value)
    assert LogContext.get_instance().logs_dir is None
    remount(tmpfs, "rw")
    assert list(tmpfs.iterdir()) == []


def _replace_with_directory(path: Path) -> Any:
    """Log ``first`` in step 1 (component adapter), then put a directory at *path*."""
    configure(console_format="off")
    LogContext.get_instance().set_step_context(1)
    log = get_logger("m", component="adapter")
    log.info("first")
    path.unlink()
    path.mkdir()
    return log


def _log_failures(log: Any, count: int) -> list[LogWriteError]:
    """Log *count* ``during`` records; the LogWriteErrors they raised."""
    failures: list[LogWriteError] = []
    for i in range(count):
        try:
            log.info("during", i=i)
        except LogWriteError as exc:
            failures.append(exc)
    return failures


def test_log_file_replaced_by_a_directory_mid_run_raises(run_logs: Path) -> None:
    """An open step log replaced by a directory: records raise LogWriteError with it."""
    target = run_logs / "step_001" / "adapter.log"
    log = _replace_with_directory(target)
    failures = _log_failures(log, 200)
    assert failures, "a directory in place of the log was never reported"
    assert {f.filename for f in failures} == {str(target)}
    assert all("cannot be re-created" in str(f) for f in failures)
    # once noticed, every later record is reported until the path is free
    assert len(failures) >= 200 - 64
    # closing the run with the path still taken drops them: also reported
    with pytest.raises(LogWriteError, match="cannot be re-created"):
        LogContext.get_instance().clear_run_context()


def test_log_file_replaced_by_a_directory_loses_nothing(run_logs: Path) -> None:
    """
    Once the directory is gone, the file is restored with every record.

    The records written since the file was deleted are kept in its open
    descriptor, so nothing that was logged is lost.
    """
    target = run_logs / "step_001" / "adapter.log"
    log = _replace_with_directory(target)
    for i in range(200):
        with suppress(LogWriteError):  # reported; asserted by the test above
            log.info("during", i=i)
    target.rmdir()
    with pytest.raises(LogWriteError, match="re-created it"):
        log.info("after")
    log.info("next")
    records, rest = json_lines(target)
    assert rest == b""
    assert [r["event"] for r in records] == [
        "first",
        *["during"] * 200,
        "after",
        "next",
    ]
    assert [r["i"] for r in records if r["event"] == "during"] == list(range(200))


def test_combined_log_replaced_by_a_directory_raises_then_heals(
    run_logs: Path,
) -> None:
    """combined.log taken by a directory: LogWriteError names it; step logs keep all."""
    combined = run_logs / "combined.log"
    log = _replace_with_directory(combined)
    failures = _log_failures(log, 100)
    assert failures and {f.filename for f in failures} == {str(combined)}
    combined.rmdir()
    log.info("after")
    step_log = run_logs / "step_001" / "adapter.log"
    assert len(read_records(step_log)) == 102
    assert combined.read_bytes().splitlines()[-1].endswith(b"after")


def test_every_file_of_a_deleted_step_dir_is_restored(run_logs: Path) -> None:
    """rm -r of a step dir with two open logs, then a step switch: both restored."""
    configure(console_format="off")
    context = LogContext.get_instance()
    context.set_step_context(3)
    get_logger("m", component="adapter").info("a1")
    get_logger("m", component="validator").info("v1")
    shutil.rmtree(run_logs / "step_003")
    with pytest.raises(LogWriteError, match="deleted while open"):
        context.set_step_context(4)
    step = run_logs / "step_003"
    assert [r["event"] for r in read_records(step / "adapter.log")] == ["a1"]
    assert [r["event"] for r in read_records(step / "validator.log")] == ["v1"]


def test_a_cut_off_last_line_is_ended_before_the_next_record(
    run_logs: Path,
) -> None:
    """A log whose last line was cut off (a killed writer) gets it ended first."""
    configure(console_format="off")
    LogContext.get_instance().set_step_context(1)
    target = run_logs / "step_001" / "adapter.log"
    target.write_bytes(
        b'{"ts":"2025-01-01T00:00:00.000000Z","event":"whole"}\n{"ts":"20'
    )
    get_logger("m", component="adapter").info("next")
    lines = target.read_bytes().split(b"\n")
    assert lines[1] == b'{"ts":"20'
    assert json.loads(lines[2])["event"] == "next"
    assert lines[3:] == [b""]
    combined = (run_logs / "combined.log").read_bytes()
    assert combined.count(b"\n") == 1 and combined.endswith(b"next\n")


SIGNAL_CHILD = """
    import json, signal, sys
    from pathlib import Path
    from runlog import LogContext, configure, get_logger

    signal.alarm(30)  # a deadlock ends the child (SIGALRM), failing the test
    configure(console_format="off", combined_max_lines=20)
    context = LogContext.get_instance()
    context.set_run_context("r1", "fw", Path(sys.argv[1]))
    context.set_step_context(1)
    log = get_logger("m", component="worker")
    fired = 0

    def on_timer(signum, frame):
        global fired
        fired += 1
        log.info("from handler", n=fired)

    signal.signal(signal.SIGVTALRM, on_timer)
    signal.setitimer(signal.ITIMER_VIRTUAL, 0.0005, 0.0005)
    for i in range(5000):
        log.info("main", i=i)
    signal.setitimer(signal.ITIMER_VIRTUAL, 0)
    context.clear_run_context()
    print(json.dumps({"fired": fired}))
"""


def test_a_signal_handler_that_logs_never_deadlocks_a_trim(tmp_path: Path) -> None:
    """
    A signal handler logging while combined.log is being trimmed (every few
    records here) neither deadlocks on the trim's lock nor loses a line.
    """
    logs = tmp_path / "logs"
    fired = json.loads(run_python(SIGNAL_CHILD, str(logs), timeout=60))["fired"]
    assert fired > 0
    records, rest = json_lines(logs / "step_001" / "worker.log")
    assert rest == b""
    assert [r["i"] for r in records if r["event"] == "main"] == list(range(5000))
    # a signal during a handler's own logging runs the next handler nested
    # inside it, so handler records may land out of order: none lost, none twice
    assert sorted(r["n"] for r in records if r["event"] != "main") == list(
        range(1, fired + 1)
    )
    lines, rest = split_whole_lines(logs / "combined.log")
    assert rest == b"" and 18 <= len(lines) <= 20
    assert all(COMBINED_LINE.match(line) for line in lines)
