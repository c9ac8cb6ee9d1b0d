"""Child processes log into the run; killed and frozen runs read as crashed."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import runlog
from runlog import Run, configure, start_run, wrap
from runlog._status import read_run_json, status_reason
from tests.conftest import read_records

pytestmark = [
    pytest.mark.reliability,
    # Python 3.12+ warns about fork() in a process with threads (the heartbeat);
    # these tests fork on purpose to prove that forked children behave.
    pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning"),
]


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Run]:
    """An open run without archive and with a fast heartbeat."""
    configure(console_format="off")
    opened = start_run(
        "fw", "r1", tmp_path / "runs", archive=False, heartbeat_interval_s=0.05
    )
    yield opened
    opened.finish()


def log_records(worker: int, count: int) -> int:
    """Child process body: *count* records of component worker; returns its pid."""
    configure(console_format="off")
    log = runlog.get_logger("w", component="worker")
    for n in range(count):
        log.info("rec", worker=worker, n=n)
    return os.getpid()


def step_seen(label: str) -> tuple[int | None, int]:
    """Pool task body: log one record; return the step it went to and the pid."""
    configure(console_format="off")
    runlog.get_logger("p", component="pool").info("task", label=label)
    return runlog.LogContext.get_instance().step, os.getpid()


def assert_complete(path: Path, workers: int, count: int) -> None:
    """*path* holds exactly count records of each worker, each n once, no torn line."""
    records = read_records(path)
    assert len(records) == workers * count
    seen = Counter((r["worker"], r["n"]) for r in records)
    assert set(seen) == {(w, n) for w in range(workers) for n in range(count)}
    assert set(seen.values()) == {1}


def lifecycle_events(run: Run) -> list[str]:
    """Every run_start/run_end/heartbeat record anywhere in the run."""
    names = {"run_start", "run_end", "heartbeat_failed", "heartbeat_recovered"}
    found = []
    for path in sorted(run.logs_dir.rglob("*.log")):
        if path.name == "combined.log":
            continue
        found += [r["event"] for r in read_records(path) if r["event"] in names]
    return found


def test_spawned_processes_write_whole_lines_into_the_step(run: Run) -> None:
    """4 spawned processes x 3,000 records in step 5: exactly 12,000 valid lines."""
    context = multiprocessing.get_context("spawn")
    with run.step(5):
        processes = [
            context.Process(target=log_records, args=(w, 3000)) for w in range(4)
        ]
        for process in processes:
            process.start()
        for process in processes:
            process.join(120)
    assert [p.exitcode for p in processes] == [0, 0, 0, 0]
    path = run.logs_dir / "step_005" / "worker.log"
    assert len(path.read_bytes().splitlines()) == 12_000
    assert_complete(path, 4, 3000)
    assert {r["step"] for r in read_records(path)} == {5}
    assert lifecycle_events(run) == ["run_start"]
    info = read_run_json(run.logs_dir)
    assert info is not None
    assert info["pid"] == os.getpid()


def test_subprocess_child_lands_in_the_step(run: Run) -> None:
    """A plain subprocess started in step 5 writes into step_005/child.log."""
    code = """
        import os, runlog
        runlog.configure(console_format="off")
        log = runlog.get_logger("child", component="child")
        log.info("hello from the child", pid=os.getpid())
    """
    with run.step(5):
        result = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 0, result.stderr
    [record] = read_records(run.logs_dir / "step_005" / "child.log")
    assert record["event"] == "hello from the child"
    assert (record["run_id"], record["framework"], record["step"]) == ("r1", "fw", 5)
    assert record["pid"] != os.getpid()
    assert lifecycle_events(run) == ["run_start"]


def test_forked_processes_inherit_the_threads_step(run: Run) -> None:
    """Children forked inside run.step(4) write into step_004 like the parent."""
    context = multiprocessing.get_context("fork")
    with run.step(4):
        processes = [
            context.Process(target=log_records, args=(w, 500)) for w in range(2)
        ]
        for process in processes:
            process.start()
        log_records(2, 500)
        for process in processes:
            process.join(60)
    assert [p.exitcode for p in processes] == [0, 0]
    assert_complete(run.logs_dir / "step_004" / "worker.log", 3, 500)
    assert lifecycle_events(run) == ["run_start"]


@pytest.mark.usefixtures("default_sigterm")
def test_sigterm_still_kills_a_forked_child(tmp_path: Path) -> None:
    """terminate() kills forked children at once, even right after start()."""
    configure(console_format="off")
    run = start_run("fw", "r1", tmp_path / "runs", archive=False)
    assert signal.getsignal(signal.SIGTERM) is run._term
    context = multiprocessing.get_context("fork")
    codes = []
    for _ in range(20):
        # terminated before the child's interpreter is ready: the signal must
        # wait for it, not be dropped (see #3: CPython dropped most of them)
        process = context.Process(target=time.sleep, args=(60,))
        process.start()
        process.terminate()
        process.join(10)
        codes.append(process.exitcode)
        if process.exitcode is None:
            process.kill()
            process.join()
    assert codes == [-signal.SIGTERM] * 20
    assert signal.getsignal(signal.SIGTERM) is run._term
    run.finish()
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    assert lifecycle_events(run) == ["run_start", "run_end"]


def test_forked_child_leaving_the_run_block_does_not_finish_the_run(
    tmp_path: Path,
) -> None:
    """A forked child unwinding through `with run` writes no run_end or run.json."""
    code = """
        import os, sys, runlog
        runlog.configure(console_format="off")
        with runlog.start_run("fw", "r1", sys.argv[1], archive=False) as run:
            with run.step(1):
                pid = os.fork()
                if pid == 0:
                    raise SystemExit(3)
                _, status = os.waitpid(pid, 0)
                runlog.get_logger("m", component="parent").info(
                    "child", code=os.waitstatus_to_exitcode(status)
                )
    """
    runs = tmp_path / "runs"
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), str(runs)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    logs = runs / "fw" / "r1" / "logs"
    assert [r["event"] for r in read_records(logs / "run.log")] == [
        "run_start",
        "run_end",
    ]
    [record] = read_records(logs / "step_001" / "parent.log")
    assert record["code"] == 3
    info = read_run_json(logs)
    assert info is not None
    assert info["status"] == "success"


def test_pool_worker_reused_across_steps_follows_the_wrapped_step(run: Run) -> None:
    """A spawned pool worker started in step 1 writes step 2's task into step 2."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        with run.step(1):
            first = pool.submit(wrap(step_seen), "one").result(timeout=120)
        with run.step(2):
            second = pool.submit(wrap(step_seen), "two").result(timeout=120)
    assert (first[0], second[0]) == (1, 2)
    assert first[1] == second[1] != os.getpid()
    for step, label in ((1, "one"), (2, "two")):
        [record] = read_records(run.logs_dir / f"step_00{step}" / "pool.log")
        assert (record["label"], record["step"]) == (label, step)


def test_pool_worker_started_before_the_run_joins_it(tmp_path: Path) -> None:
    """A pool worker spawned before start_run logs wrapped tasks into the run."""
    configure(console_format="off")
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        before = pool.submit(step_seen, "before").result(timeout=120)
        with (
            start_run("fw", "r1", tmp_path / "runs", archive=False) as run,
            run.step(3),
        ):
            inside = pool.submit(wrap(step_seen), "inside").result(timeout=120)
    assert before[0] is None
    assert inside == (3, before[1])
    [record] = read_records(run.logs_dir / "step_003" / "pool.log")
    assert (record["label"], record["run_id"], record["step"]) == ("inside", "r1", 3)


CRASHING_RUN = """
    import os, signal, sys, runlog
    runlog.configure(console_format="off")
    run = runlog.start_run("fw", "r1", sys.argv[1], archive=False)
    log = runlog.get_logger("w", component="worker")
    with run.step(1):
        for n in range(500):
            log.info("rec", n=n, payload="x" * 200)
        os.kill(os.getpid(), signal.SIGKILL)
"""


def test_killed_run_keeps_every_line_and_reads_crashed(tmp_path: Path) -> None:
    """SIGKILL after 500 records in step 1: 500 whole lines, status crashed."""
    runs = tmp_path / "runs"
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CRASHING_RUN), str(runs)],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == -signal.SIGKILL
    logs = runs / "fw" / "r1" / "logs"
    records = read_records(logs / "step_001" / "worker.log")
    assert [r["n"] for r in records] == list(range(500))
    assert all(r["payload"] == "x" * 200 for r in records)
    info = read_run_json(logs)
    assert info is not None
    assert info["status"] == "running"
    status, reason = status_reason(info)
    assert status == "crashed"
    assert reason == f"process {info['pid']} is gone"
    assert not [r for r in read_records(logs / "run.log") if r["event"] == "run_end"]


def test_crashed_run_can_be_resumed(tmp_path: Path) -> None:
    """resume=True continues a killed run: attempt 2 of its step, previous crashed."""
    runs = tmp_path / "runs"
    subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CRASHING_RUN), str(runs)],
        capture_output=True,
        timeout=60,
        check=False,
    )
    configure(console_format="off")
    with (
        start_run("fw", "r1", runs, archive=False, resume=True) as run,
        run.step(1),
    ):
        runlog.get_logger("w", component="worker").info("rec", n=500)
    logs = run.logs_dir
    starts = [r for r in read_records(logs / "run.log") if r["event"] == "run_start"]
    assert [(r["pid"] == os.getpid(), r.get("previous_status")) for r in starts] == [
        (False, None),
        (True, "crashed"),
    ]
    steps = read_records(logs / "step_001" / "orchestrator.log")
    assert [(r["event"], r["attempt"]) for r in steps] == [
        ("step_start", 1),
        ("step_start", 2),
        ("step_end", 2),
    ]
    assert [r["n"] for r in read_records(logs / "step_001" / "worker.log")] == list(
        range(501)
    )
    info = read_run_json(logs)
    assert info is not None
    assert (info["status"], info["resumes"]) == ("success", 1)


FROZEN_RUN = """
    import sys, time, runlog
    runlog.configure(console_format="off")
    run = runlog.start_run(
        "fw", "r1", sys.argv[1], archive=False, heartbeat_interval_s=0.05
    )
    open(sys.argv[2], "w").close()
    time.sleep(120)
"""


def wait_status(logs: Path, wanted: str, timeout: float = 30.0) -> dict[str, Any]:
    """Poll run.json until its effective status is *wanted*; return it."""
    deadline = time.monotonic() + timeout
    while True:
        info = read_run_json(logs)
        if info is not None and status_reason(info)[0] == wanted:
            return info
        if time.monotonic() > deadline:
            pytest.fail(f"status never became {wanted!r}: {info}")
        time.sleep(0.02)


def test_frozen_process_reads_crashed_once_its_heartbeat_is_stale(
    tmp_path: Path,
) -> None:
    """A stopped (SIGSTOP) run is crashed after 3 missed beats, running on SIGCONT."""
    runs, ready = tmp_path / "runs", tmp_path / "ready"
    process = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(FROZEN_RUN), str(runs), str(ready)]
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert process.poll() is None
            assert time.monotonic() < deadline
            time.sleep(0.01)
        logs = runs / "fw" / "r1" / "logs"
        wait_status(logs, "running")
        process.send_signal(signal.SIGSTOP)
        info = wait_status(logs, "crashed")
        reason = status_reason(info)[1]
        assert reason is not None
        assert reason.startswith("no heartbeat for ")
        process.send_signal(signal.SIGCONT)
        wait_status(logs, "running")
    finally:
        process.kill()
        process.wait()
    info = read_run_json(logs)
    assert info is not None
    assert status_reason(info) == ("crashed", f"process {process.pid} is gone")
