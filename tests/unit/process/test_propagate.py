"""runlog.wrap and ContextThreadPoolExecutor carry the run and step into workers."""

from __future__ import annotations

import asyncio
import pickle
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import structlog

from runlog import (
    ContextThreadPoolExecutor,
    LogContext,
    Run,
    configure,
    get_logger,
    wrap,
)
from tests.conftest import files_under, read_records


def log_work(label: str, count: int = 1) -> int | None:
    """Log *count* ``work`` records of component worker; return the step seen."""
    log = get_logger("w", component="worker")
    for n in range(count):
        log.info("work", label=label, n=n)
    return LogContext.get_instance().step


def labels(path: Path) -> list[str]:
    """The ``label`` of every record in *path*."""
    return [r["label"] for r in read_records(path)]


def test_plain_thread_misses_the_step_and_a_wrapped_one_gets_it(run: Run) -> None:
    """Threads do not copy contextvars; runlog.wrap carries the step into them."""
    with run.step(3):
        plain = threading.Thread(target=log_work, args=("plain",))
        wrapped = threading.Thread(target=wrap(log_work), args=("wrapped",))
        for thread in (plain, wrapped):
            thread.start()
            thread.join()
    assert labels(run.logs_dir / "step_003" / "worker.log") == ["wrapped"]
    [stray] = read_records(run.logs_dir / "run.log")[1:]
    assert stray["label"] == "plain"
    assert stray["step"] is None


def test_thread_pool_task_wrapped_with_the_helper_lands_in_the_step(run: Run) -> None:
    """A ThreadPoolExecutor task wrapped with runlog.wrap lands in the right step."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        with run.step(4):
            in_four = pool.submit(wrap(log_work), "four").result()
        with run.step(5):
            in_five = list(pool.map(wrap(log_work), ["five-a", "five-b"]))
    assert in_four == 4
    assert in_five == [5, 5]
    assert labels(run.logs_dir / "step_004" / "worker.log") == ["four"]
    assert sorted(labels(run.logs_dir / "step_005" / "worker.log")) == [
        "five-a",
        "five-b",
    ]


def test_context_executor_tasks_land_in_the_submitters_step(run: Run) -> None:
    """ContextThreadPoolExecutor runs each task in the submitting thread's step."""
    barrier = threading.Barrier(2)

    def submitter(step: int, pool: ContextThreadPoolExecutor) -> None:
        with run.step(step):
            barrier.wait()
            futures = [pool.submit(log_work, f"s{step}", 20) for _ in range(5)]
            assert [f.result() for f in futures] == [step] * 5

    with ContextThreadPoolExecutor(max_workers=4) as pool:
        threads = [
            threading.Thread(target=submitter, args=(step, pool)) for step in (1, 2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    for step in (1, 2):
        got = labels(run.logs_dir / f"step_00{step}" / "worker.log")
        assert got == [f"s{step}"] * 100


def test_threads_in_different_steps_write_their_own_directories(run: Run) -> None:
    """8 threads, each in its own step at the same time, never cross steps."""
    barrier = threading.Barrier(8)

    def worker(step: int) -> None:
        with run.step(step):
            barrier.wait()
            log_work(f"t{step}", 200)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(1, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for step in range(1, 9):
        records = read_records(run.logs_dir / f"step_00{step}" / "worker.log")
        assert [r["n"] for r in records] == list(range(200))
        assert {(r["label"], r["step"]) for r in records} == {(f"t{step}", step)}
    assert [r["event"] for r in read_records(run.logs_dir / "run.log")] == ["run_start"]


def test_asyncio_tasks_in_different_steps_write_their_own_directories(
    run: Run,
) -> None:
    """Concurrent asyncio tasks each in their own step write to their own dirs."""

    async def task(step: int) -> None:
        with run.step(step):
            for n in range(50):
                get_logger("a", component="agent").info("tick", n=n, task=step)
                await asyncio.sleep(0)

    async def main() -> None:
        await asyncio.gather(*(task(step) for step in (1, 2, 3)))

    asyncio.run(main())
    for step in (1, 2, 3):
        records = read_records(run.logs_dir / f"step_00{step}" / "agent.log")
        assert [r["n"] for r in records] == list(range(50))
        assert {r["task"] for r in records} == {step}
        assert {r["step"] for r in records} == {step}


def test_run_in_executor_with_the_helper_lands_in_the_tasks_step(run: Run) -> None:
    """loop.run_in_executor(None, runlog.wrap(fn)) logs into the task's step."""

    async def task(step: int) -> int | None:
        with run.step(step):
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(None, wrap(log_work), f"e{step}")

    async def main() -> list[int | None]:
        return list(await asyncio.gather(task(6), task(7)))

    assert asyncio.run(main()) == [6, 7]
    for step in (6, 7):
        assert labels(run.logs_dir / f"step_00{step}" / "worker.log") == [f"e{step}"]


def test_wrapped_callable_runs_concurrently_from_many_threads(run: Run) -> None:
    """One wrapped callable may run in several threads at the same time."""
    inside = threading.Barrier(4, timeout=30)

    def work(label: str) -> int | None:
        inside.wait()  # all four calls are running at once here
        return log_work(label)

    with run.step(2):
        wrapped = wrap(work)
    with ThreadPoolExecutor(max_workers=4) as pool:
        assert list(pool.map(wrapped, [f"c{n}" for n in range(8)])) == [2] * 8
    assert len(labels(run.logs_dir / "step_002" / "worker.log")) == 8


def test_wrap_carries_structlog_bound_context_variables(run: Run) -> None:
    """Values bound with structlog.contextvars reach records from the worker."""
    with run.step(1):
        structlog.contextvars.bind_contextvars(request_id="abc")
        try:
            thread = threading.Thread(target=wrap(log_work), args=("bound",))
            thread.start()
            thread.join()
        finally:
            structlog.contextvars.clear_contextvars()
    [record] = read_records(run.logs_dir / "step_001" / "worker.log")
    assert record["request_id"] == "abc"


def test_wrapped_callable_pickles_and_keeps_its_step(run: Run) -> None:
    """A wrapped function survives pickling (for process pools) with its step."""
    with run.step(8):
        blob = pickle.dumps(wrap(log_work))
    restored = pickle.loads(blob)
    assert restored("pickled") == 8
    assert labels(run.logs_dir / "step_008" / "worker.log") == ["pickled"]
    assert LogContext.get_instance().step is None
    assert repr(restored).startswith("runlog.wrap(<function log_work")
    assert restored.__name__ == "log_work"


def test_wrap_outside_a_run_writes_nothing(tmp_path: Path) -> None:
    """Without a run, a wrapped callable runs normally and writes no files."""
    configure(console_format="off")
    assert wrap(log_work)("none") is None
    assert pickle.loads(pickle.dumps(wrap(log_work)))("none") is None
    assert files_under(tmp_path) == set()
