"""Links inside logs/ are never written through, and nothing outside the run changes."""

from __future__ import annotations

import errno
import os
import shutil
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from runlog import (
    LogContext,
    LogWriteError,
    configure,
    get_logger,
    start_run,
    verify_archive,
)
from runlog._files import atomic_write
from runlog.cli import main
from runlog.combined import CombinedLog
from tests.conftest import read_records
from tests.reliability._checks import run_python

pytestmark = pytest.mark.reliability

SENTINEL = b"outside the run: must not change\n"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory outside the run holding one file, the target of the links."""
    directory = tmp_path / "outside"
    directory.mkdir()
    (directory / "adapter.log").write_bytes(SENTINEL)
    return directory


def snapshot(directory: Path) -> dict[str, bytes | str]:
    """Every path below *directory* (not following links): its bytes or its kind."""
    found: dict[str, bytes | str] = {}
    for root, dirs, files in os.walk(directory):
        for name in (*dirs, *files):
            path = Path(root) / name
            key = path.relative_to(directory).as_posix()
            if path.is_symlink():
                found[key] = f"-> {os.readlink(path)}"
            elif path.is_dir():
                found[key] = "dir"
            else:
                found[key] = path.read_bytes()
    return found


def events(path: Path) -> list[str]:
    """The events of the records in *path*, in order."""
    return [r["event"] for r in read_records(path)]


def log_until_reported(log: Any, count: int = 200) -> list[LogWriteError]:
    """Log *count* ``during`` records; the LogWriteErrors they raised."""
    failures: list[LogWriteError] = []
    for i in range(count):
        try:
            log.info("during", i=i)
        except LogWriteError as exc:
            failures.append(exc)
    return failures


# -- links in place before the first record -----------------------------------


def test_linked_step_dir_raises_naming_it(run_logs: Path, outside: Path) -> None:
    """A step dir that is a link: LogWriteError ELOOP naming it; outside unchanged."""
    configure(console_format="off")
    before = snapshot(outside)
    link = run_logs / "step_002"
    link.symlink_to(outside, target_is_directory=True)
    LogContext.get_instance().set_step_context(2)
    with pytest.raises(LogWriteError) as info:
        get_logger("m", component="adapter").info("lost?")
    assert info.value.errno == errno.ELOOP
    assert info.value.filename == str(link)
    assert "step directory is a symlink, not followed" in str(info.value)
    assert snapshot(outside) == before
    assert link.is_symlink()


def test_after_a_linked_step_dir_the_next_record_lands(
    run_logs: Path, outside: Path
) -> None:
    """A healthy file takes the next record; once the link is gone step 2 heals."""
    configure(console_format="off")
    link = run_logs / "step_002"
    link.symlink_to(outside, target_is_directory=True)
    context = LogContext.get_instance()
    context.set_step_context(2)
    log = get_logger("m", component="adapter")
    with pytest.raises(LogWriteError):
        log.info("refused")
    get_logger("m", component="reconciliation").info("healthy")
    context.set_step_context(3)
    log.info("in step 3")
    link.unlink()
    context.set_step_context(2)
    log.info("healed")
    assert events(run_logs / "reconciliation.log") == ["healthy"]
    assert events(run_logs / "step_003" / "adapter.log") == ["in step 3"]
    assert not (run_logs / "step_002").is_symlink()
    assert events(run_logs / "step_002" / "adapter.log") == ["healed"]
    combined = (run_logs / "combined.log").read_text()
    assert "refused" in combined  # the other destination still got it
    assert snapshot(outside) == {"adapter.log": SENTINEL}


def test_dangling_step_dir_link_creates_nothing_outside(
    run_logs: Path, tmp_path: Path
) -> None:
    """A step dir linked to a missing path: refused, and no directory is made there."""
    configure(console_format="off")
    target = tmp_path / "not_yet" / "made"
    (run_logs / "step_004").symlink_to(target)
    LogContext.get_instance().set_step_context(4)
    with pytest.raises(LogWriteError, match="step directory is a symlink"):
        get_logger("m", component="adapter").info("x")
    assert not (tmp_path / "not_yet").exists()


def test_linked_log_file_raises_naming_it(run_logs: Path, outside: Path) -> None:
    """A log file that is a link: LogWriteError ELOOP naming it; target untouched."""
    configure(console_format="off")
    LogContext.get_instance().set_step_context(1)
    link = run_logs / "step_001" / "adapter.log"
    link.symlink_to(outside / "adapter.log")
    with pytest.raises(LogWriteError) as info:
        get_logger("m", component="adapter").info("lost?")
    assert info.value.errno == errno.ELOOP
    assert info.value.filename == str(link)
    assert "log file is a symlink, not followed" in str(info.value)
    assert (outside / "adapter.log").read_bytes() == SENTINEL
    assert link.is_symlink()


def test_after_a_linked_log_file_the_next_record_lands(
    run_logs: Path, outside: Path
) -> None:
    """Another component of the same step still lands; removing the link heals."""
    configure(console_format="off")
    LogContext.get_instance().set_step_context(1)
    link = run_logs / "step_001" / "adapter.log"
    link.symlink_to(outside / "adapter.log")
    log = get_logger("m", component="adapter")
    with pytest.raises(LogWriteError):
        log.info("refused")
    get_logger("m", component="metrics").info("healthy")
    link.unlink()
    log.info("healed")
    assert events(run_logs / "step_001" / "metrics.log") == ["healthy"]
    assert events(link) == ["healed"]
    assert (outside / "adapter.log").read_bytes() == SENTINEL


def test_dangling_log_file_link_creates_nothing_outside(
    run_logs: Path, tmp_path: Path
) -> None:
    """A log file linked to a missing path: refused; no file appears at the target."""
    configure(console_format="off")
    target = tmp_path / "planted.log"
    (run_logs / "run.log").symlink_to(target)
    with pytest.raises(LogWriteError, match="log file is a symlink"):
        get_logger("m").info("x")
    assert not target.exists()


def test_linked_combined_log_raises_and_step_log_keeps_the_record(
    run_logs: Path, outside: Path
) -> None:
    """combined.log as a link is refused naming it; the record is in its step file."""
    configure(console_format="off")
    link = run_logs / "combined.log"
    link.symlink_to(outside / "adapter.log")
    log = get_logger("m", component="adapter")
    with pytest.raises(LogWriteError) as info:
        log.info("kept")
    assert info.value.errno == errno.ELOOP and info.value.filename == str(link)
    assert events(run_logs / "run.log") == ["kept"]
    assert (outside / "adapter.log").read_bytes() == SENTINEL
    link.unlink()
    log.info("next")
    assert "next" in link.read_text() and "kept" not in link.read_text()


def test_warn_mode_warns_naming_the_link_and_writes_nothing_outside(
    run_logs: Path, outside: Path
) -> None:
    """on_write_error="warn": a RuntimeWarning naming the link, the target untouched."""
    configure(console_format="off", on_write_error="warn")
    (run_logs / "step_002").symlink_to(outside, target_is_directory=True)
    LogContext.get_instance().set_step_context(2)
    with pytest.warns(RuntimeWarning, match=r"step_002'"):
        get_logger("m", component="adapter").info("x")
    assert snapshot(outside) == {"adapter.log": SENTINEL}


def test_step_scope_into_a_linked_step_dir_raises_and_leaves_the_step(
    run_logs: Path, outside: Path
) -> None:
    """step_scope raises at step_start; the thread's step is not left at step 2."""
    configure(console_format="off")
    (run_logs / "step_002").symlink_to(outside, target_is_directory=True)
    context = LogContext.get_instance()
    entered = False
    with (
        pytest.raises(LogWriteError, match="step_002"),
        context.step_scope(2, name="linked"),
    ):
        entered = True  # pragma: no cover  # step_start is refused
    assert not entered
    assert context.step is None
    get_logger("m", component="orchestrator").info("after")
    assert events(run_logs / "run.log") == ["after"]
    assert "step_start" in (run_logs / "combined.log").read_text()
    assert snapshot(outside) == {"adapter.log": SENTINEL}


def test_child_process_refuses_a_linked_step_dir(run_logs: Path, outside: Path) -> None:
    """A subprocess joining the run in a linked step raises ELOOP; nothing outside."""
    (run_logs / "step_002").symlink_to(outside, target_is_directory=True)
    LogContext.get_instance().set_step_context(2)
    out = run_python(
        """
        import runlog
        runlog.configure(console_format="off")
        log = runlog.get_logger("child", component="adapter")
        try:
            log.info("from child")
        except runlog.LogWriteError as exc:
            print(exc.errno, exc.filename)
        log = runlog.get_logger("child", component="reconciliation")
        log.info("healthy from child")
        """
    )
    assert out.split() == [str(errno.ELOOP), str(run_logs / "step_002")]
    assert events(run_logs / "reconciliation.log") == ["healthy from child"]
    assert snapshot(outside) == {"adapter.log": SENTINEL}


# -- links put in place during a live run ------------------------------------


def test_open_log_file_swapped_for_a_link_mid_run_is_reported(
    run_logs: Path, outside: Path
) -> None:
    """An open log replaced by a link: reported within a few records; target intact."""
    configure(console_format="off")
    LogContext.get_instance().set_step_context(1)
    log = get_logger("m", component="adapter")
    log.info("first")
    link = run_logs / "step_001" / "adapter.log"
    link.unlink()
    link.symlink_to(outside / "adapter.log")
    failures = log_until_reported(log)
    assert failures, "a link in place of the open log was never reported"
    assert len(failures) >= 200 - 64  # once noticed, every record is reported
    assert {f.filename for f in failures} == {str(link)}
    assert all("log file is a symlink, not followed" in str(f) for f in failures)
    assert (outside / "adapter.log").read_bytes() == SENTINEL
    # closing with the link still there drops what the deleted file held: said
    with pytest.raises(LogWriteError, match="cannot be re-created"):
        LogContext.get_instance().clear_run_context()
    assert (outside / "adapter.log").read_bytes() == SENTINEL


def test_after_a_log_file_link_mid_run_is_removed_every_record_lands(
    run_logs: Path, outside: Path
) -> None:
    """Records logged while the link stood are kept and restored once it is gone."""
    configure(console_format="off")
    LogContext.get_instance().set_step_context(1)
    log = get_logger("m", component="adapter")
    log.info("first")
    link = run_logs / "step_001" / "adapter.log"
    link.unlink()
    link.symlink_to(outside / "adapter.log")
    log_until_reported(log, 100)
    link.unlink()
    with pytest.raises(LogWriteError, match="re-created it"):
        log.info("after")
    log.info("next")
    assert events(link) == ["first", *["during"] * 100, "after", "next"]
    assert (outside / "adapter.log").read_bytes() == SENTINEL


def test_step_dir_deleted_and_linked_mid_run_is_reported(
    run_logs: Path, outside: Path
) -> None:
    """rm -r step_002 then a link there: reported, and nothing lands outside."""
    configure(console_format="off")
    LogContext.get_instance().set_step_context(2)
    log = get_logger("m", component="adapter")
    log.info("first")
    step_dir = run_logs / "step_002"
    shutil.rmtree(step_dir)
    step_dir.symlink_to(outside, target_is_directory=True)
    failures = log_until_reported(log)
    assert failures
    assert all("step directory is a symlink, not followed" in str(f) for f in failures)
    assert all("step_002" in str(f.filename) for f in failures)
    assert snapshot(outside) == {"adapter.log": SENTINEL}
    step_dir.unlink()
    with pytest.raises(LogWriteError, match="re-created it"):
        log.info("after")
    assert events(step_dir / "adapter.log") == ["first", *["during"] * 200, "after"]


def test_step_dir_moved_out_and_linked_mid_run_is_reported_within_a_second(
    run_logs: Path, outside: Path
) -> None:
    """A step dir moved out and linked back: the first record after 1 s reports it."""
    configure(console_format="off")
    LogContext.get_instance().set_step_context(2)
    log = get_logger("m", component="adapter")
    log.info("first")
    step_dir = run_logs / "step_002"
    moved = outside / "moved"
    step_dir.rename(moved)
    step_dir.symlink_to(moved, target_is_directory=True)
    time.sleep(1.05)  # LineWriter.check_interval_s: files are looked up by path
    failures = log_until_reported(log, 100)
    assert len(failures) == 100
    assert "moved away while open" in str(failures[0])
    assert failures[0].filename == str(step_dir / "adapter.log")
    assert all("step directory is a symlink" in str(f) for f in failures[1:])
    assert {f.filename for f in failures[1:]} == {str(step_dir)}
    # the one record written before the check went with the moved file; from
    # the report on, nothing follows it
    assert events(moved / "adapter.log") == ["first", "during"]
    assert (outside / "adapter.log").read_bytes() == SENTINEL


def test_step_dir_moved_out_and_linked_is_reported_at_step_end_then_heals(
    run_logs: Path, outside: Path
) -> None:
    """Leaving the step reports the move; later records land, step 2 once unlinked."""
    configure(console_format="off")
    context = LogContext.get_instance()
    context.set_step_context(2)
    log = get_logger("m", component="adapter")
    log.info("first")
    step_dir = run_logs / "step_002"
    moved = outside / "moved"
    step_dir.rename(moved)
    step_dir.symlink_to(moved, target_is_directory=True)
    with pytest.raises(LogWriteError, match="moved away while open") as info:
        context.set_step_context(3)
    assert info.value.filename == str(step_dir / "adapter.log")
    log.info("in step 3")
    step_dir.unlink()
    context.set_step_context(2)
    log.info("healed")
    assert events(run_logs / "step_003" / "adapter.log") == ["in step 3"]
    assert events(step_dir / "adapter.log") == ["healed"]
    assert events(moved / "adapter.log") == ["first"]


def test_log_file_moved_out_and_linked_is_reported_and_not_followed(
    run_logs: Path, outside: Path
) -> None:
    """An open log moved out, a link in its place: reported; later records refused."""
    configure(console_format="off")
    context = LogContext.get_instance()
    context.set_step_context(1)
    log = get_logger("m", component="adapter")
    log.info("first")
    link = run_logs / "step_001" / "adapter.log"
    moved = outside / "moved.log"
    link.rename(moved)
    link.symlink_to(moved)
    with pytest.raises(LogWriteError, match="moved away while open"):
        context.set_step_context(2)
    context.set_step_context(1)
    with pytest.raises(LogWriteError, match="log file is a symlink, not followed"):
        log.info("refused")
    get_logger("m", component="metrics").info("healthy")
    assert events(run_logs / "step_001" / "metrics.log") == ["healthy"]
    assert events(moved) == ["first"]


def test_threads_racing_a_link_swap_write_nothing_outside(
    run_logs: Path, outside: Path
) -> None:
    """4 threads log while step_002 is swapped for a link: nothing lands outside."""
    configure(console_format="off")
    LogContext.get_instance().set_step_context(2)
    step_dir = run_logs / "step_002"
    failures: list[LogWriteError] = []
    start = threading.Barrier(5)
    stop = threading.Event()

    def work(n: int) -> None:
        log = get_logger("t", component=f"worker{n}")
        start.wait()
        while not stop.is_set():
            failures.extend(log_until_reported(log, 10))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    start.wait()
    time.sleep(0.05)
    for _ in range(1000):  # the writers re-create the dir as fast as it goes
        try:
            shutil.rmtree(step_dir)
            step_dir.symlink_to(outside, target_is_directory=True)
            break
        except OSError:
            continue
    assert step_dir.is_symlink()
    time.sleep(0.3)  # writers keep logging against the link
    stop.set()
    for thread in threads:
        thread.join()
    assert failures
    # ENOENT: a file deleted with the dir and re-created before the link stood
    assert errno.ELOOP in {f.errno for f in failures}
    assert {f.errno for f in failures} <= {errno.ELOOP, errno.ENOENT}
    assert snapshot(outside) == {"adapter.log": SENTINEL}
    step_dir.unlink()
    # the files deleted with the dir are restored now, which is reported
    with pytest.raises(LogWriteError, match="re-created it"):
        LogContext.get_instance().clear_run_context()


# -- runlog's own scratch files ------------------------------------------------


def test_atomic_write_never_writes_through_a_link_at_its_temp_name(
    tmp_path: Path, outside: Path
) -> None:
    """A link planted at atomic_write's temp name is removed, not written through."""
    target = tmp_path / "run.json"
    temp = tmp_path / f".run.json.{os.getpid()}.{threading.get_ident()}.tmp"
    temp.symlink_to(outside / "adapter.log")
    atomic_write(target, b"{}\n")
    assert target.read_bytes() == b"{}\n"
    assert not temp.is_symlink() and not temp.exists()
    assert (outside / "adapter.log").read_bytes() == SENTINEL


def test_combined_trim_never_writes_through_a_link_at_the_spare(
    tmp_path: Path, outside: Path
) -> None:
    """A link planted at .combined.log.spare is replaced; the trim keeps the cap."""
    combined = CombinedLog(tmp_path / "combined.log", max_lines=20, trim_fraction=0.5)
    spare = tmp_path / ".combined.log.spare"
    spare.symlink_to(outside / "adapter.log")
    for i in range(25):
        combined.append(f"line {i}\n".encode())
    lines = (tmp_path / "combined.log").read_text().splitlines()
    assert lines == [f"line {i}" for i in range(25 - len(lines), 25)]
    assert len(lines) < 20
    assert not spare.is_symlink()
    assert (outside / "adapter.log").read_bytes() == SENTINEL
    combined.close()


def test_combined_trim_never_writes_into_a_hard_linked_spare(
    tmp_path: Path, outside: Path
) -> None:
    """A spare hard-linked to a file elsewhere is replaced, the other file untouched."""
    combined = CombinedLog(tmp_path / "combined.log", max_lines=20, trim_fraction=0.5)
    os.link(outside / "adapter.log", tmp_path / ".combined.log.spare")
    for i in range(25):
        combined.append(f"line {i}\n".encode())
    assert (outside / "adapter.log").read_bytes() == SENTINEL
    assert (tmp_path / "combined.log").read_text().endswith("line 24\n")
    combined.close()


# -- what the archive, verify and the summary make of a link --------------------


def test_archive_stores_a_linked_step_dir_as_a_link_and_summary_names_it(
    tmp_path: Path, outside: Path
) -> None:
    """The link is one symlink member (target not stored); the summary names it."""
    configure(console_format="off")
    run = start_run("fw", "r1", tmp_path / "runs")
    (run.logs_dir / "step_002").symlink_to(outside, target_is_directory=True)
    with run.step(1):
        get_logger("m", component="adapter").info("in step 1")
    with pytest.raises(LogWriteError, match="step_002"), run.step(2):
        pass  # pragma: no cover  # step_start is refused
    summary = run.finish().read_text()
    assert "  logs/step_002: not read, a symlink, not followed\n" in summary
    archive = run.run_dir / "run.tar.gz"
    with tarfile.open(archive) as tar:
        member = tar.getmember("logs/step_002")
        names = tar.getnames()
    assert member.issym() and member.linkname == str(outside)
    assert not [n for n in names if n.startswith("logs/step_002/")]
    info = verify_archive(archive)
    assert info.sha256 in summary
    assert info.symlinks == (("logs/step_002", str(outside)),)
    assert snapshot(outside) == {"adapter.log": SENTINEL}


def test_verify_says_an_archive_holds_links(
    tmp_path: Path, outside: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """runlog verify passes an archive with a link and names the link it stores."""
    configure(console_format="off")
    run = start_run("fw", "r1", tmp_path / "runs")
    (run.logs_dir / "step_002").symlink_to(outside, target_is_directory=True)
    run.finish()
    assert main(["verify", str(run.run_dir)]) == 0
    out = capsys.readouterr().out
    assert (
        f"holds 1 symlink(s), stored as links, not followed: logs/step_002 -> {outside}"
        in out
    )
