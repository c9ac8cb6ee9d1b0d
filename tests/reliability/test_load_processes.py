"""Load: processes into one step, asyncio tasks on their own steps; exact counts."""

from __future__ import annotations

import asyncio
import fcntl
import os
import re
import threading
from collections import Counter
from pathlib import Path

import pytest

from runlog import LogContext, configure, get_logger, start_run
from runlog._paths import parse_step_dir
from runlog.combined import CombinedLog
from tests.reliability._checks import (
    COMBINED_LINE,
    add_figures,
    json_lines,
    record_files,
    split_whole_lines,
)

pytestmark = pytest.mark.reliability

_WORKER_FIELDS = re.compile(rb" w=(\d+) i=(\d+)$")


def _fork_writers(processes: int, per_process: int) -> None:
    """Fork *processes* children, each logging *per_process* records; wait for all."""
    pids = []
    for worker in range(processes):
        pid = os.fork()
        if pid == 0:  # the child: log, then leave without running pytest's exit
            code = 0
            try:
                log = get_logger("load", component="worker")
                for i in range(per_process):
                    log.info("rec", w=worker, i=i)
                LogContext.get_instance().clear_run_context()
            except BaseException:  # noqa: BLE001  # any failure is the exit code
                code = 3
            finally:
                os._exit(code)
        pids.append(pid)
    codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]
    assert codes == [0] * processes


def _processes_into_one_step(
    run_logs: Path, processes: int, per_process: int, cap: int
) -> None:
    configure(console_format="off", combined_max_lines=cap)
    LogContext.get_instance().set_step_context(5)
    _fork_writers(processes, per_process)
    LogContext.get_instance().clear_run_context()

    path = run_logs / "step_005" / "worker.log"
    records, rest = json_lines(path)  # a torn line fails here
    assert rest == b""
    assert record_files(run_logs) == [path]
    counts = Counter((r["w"], r["i"]) for r in records)
    lost = processes * per_process - len(counts)
    duplicated = sum(n - 1 for n in counts.values())
    misrouted = sum(r["step"] != 5 for r in records)
    assert (lost, duplicated, misrouted) == (0, 0, 0)
    assert set(counts) == {(w, i) for w in range(processes) for i in range(per_process)}
    # each process's own records are in its order
    for worker in range(processes):
        mine = [r["i"] for r in records if r["w"] == worker]
        assert mine == list(range(per_process))

    lines, rest = split_whole_lines(run_logs / "combined.log")
    assert rest == b""
    # trimmed only at the cap, by one batch: never far below it
    assert cap - max(1, int(cap * 0.1)) <= len(lines) <= cap
    assert all(COMBINED_LINE.match(line) for line in lines)
    seen: dict[int, list[int]] = {}
    for line in lines:
        match = _WORKER_FIELDS.search(line)
        assert match is not None, line
        seen.setdefault(int(match.group(1)), []).append(int(match.group(2)))
    # Only the oldest lines are trimmed: each process still shown there has
    # its newest records, without a gap (a line written to the replaced file
    # is carried over to the new one) and without a duplicate.
    combined_lost = 0
    for numbers in seen.values():
        assert len(set(numbers)) == len(numbers)
        assert max(numbers) == per_process - 1
        combined_lost += per_process - min(numbers) - len(numbers)
    assert combined_lost == 0
    add_figures(
        "load.processes",
        processes=processes,
        records=len(records),
        lost=lost,
        duplicated=duplicated,
        torn=0,
        misrouted=misrouted,
        combined_lines=len(lines),
        combined_lost=combined_lost,
    )


def test_4_processes_x_5000_records_into_one_step(run_logs: Path) -> None:
    """4 forked processes x 5,000 records into step 5: 20,000 whole lines, exact."""
    _processes_into_one_step(run_logs, 4, 5000, cap=1000)


@pytest.mark.stress
def test_4_processes_x_50000_records_into_one_step(run_logs: Path) -> None:
    """The long version: 4 processes x 50,000 records (combined.log trims often)."""
    _processes_into_one_step(run_logs, 4, 50_000, cap=5000)


def _tasks_on_their_steps(tmp_path: Path, tasks: int, per_task: int) -> None:
    configure(console_format="off")
    run = start_run("fw", "r1", tmp_path / "runs", archive=False)
    log = get_logger("load", component="worker")

    async def task(number: int) -> None:
        with run.step(number + 1, name=f"task{number}"):
            for i in range(per_task):
                log.info("rec", t=number, i=i)
                if i % 7 == 0:
                    await asyncio.sleep(0)  # let the other tasks interleave

    async def main() -> None:
        await asyncio.gather(*(task(n) for n in range(tasks)))
        log.info("after")  # outside every step: run.log

    asyncio.run(main())
    run.finish()

    total = 0
    for path in record_files(run.logs_dir):
        records, rest = json_lines(path)
        assert rest == b""
        if path.name != "worker.log":
            continue
        step = parse_step_dir(path.parent.name)
        assert step is not None
        assert {r["step"] for r in records} == {step}
        assert [(r["t"], r["i"]) for r in records] == [
            (step - 1, i) for i in range(per_task)
        ]
        total += len(records)
    assert total == tasks * per_task
    run_log, _ = json_lines(run.logs_dir / "run.log")
    assert [r["event"] for r in run_log] == ["run_start", "after", "run_end"]
    steps = sorted(p.parent.name for p in run.logs_dir.glob("step_*/worker.log"))
    assert len(steps) == tasks
    add_figures(
        "load.asyncio",
        tasks=tasks,
        records=total,
        lost=0,
        duplicated=0,
        torn=0,
        misrouted=0,
    )


def test_asyncio_tasks_each_on_its_own_step(tmp_path: Path) -> None:
    """20 interleaved asyncio tasks x 500 records, each in its step: all in place."""
    _tasks_on_their_steps(tmp_path, 20, 500)


@pytest.mark.stress
def test_asyncio_tasks_each_on_its_own_step_long(tmp_path: Path) -> None:
    """The long version: 50 tasks x 5,000 records."""
    _tasks_on_their_steps(tmp_path, 50, 5000)


def test_closing_waits_for_a_trim_in_progress(tmp_path: Path) -> None:
    """
    close() in one process never removes the file another process is trimming into.

    (Each worker that calls configure() or leaves the run closes combined.log;
    it used to unlink ``.combined.log.spare`` while another process was about
    to rename it into place, which failed that process's logging call.)
    """
    path = tmp_path / "combined.log"
    writer = CombinedLog(path, max_lines=10)
    writer.append(b"2025-01-01T00:00:00.000000Z info     [c] step=- one\n")
    spare = tmp_path / ".combined.log.spare"
    done = threading.Event()
    # stands for another process in the middle of a trim: it holds the lock
    # and has written the new file under the spare name
    lock_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(lock_fd, fcntl.LOCK_EX)
    spare.write_bytes(b"being written\n")

    def close() -> None:
        writer.close()
        done.set()

    closer = threading.Thread(target=close)
    closer.start()
    try:
        assert not done.wait(0.3), "close() did not wait for the trim's lock"
        assert spare.read_bytes() == b"being written\n"
    finally:
        os.close(lock_fd)  # releases the lock
        closer.join(10)
    assert done.is_set()
    assert not spare.exists()  # left over once no trim holds it: removed
    assert path.read_bytes().endswith(b"one\n")
