"""What runlog.wrap costs per process-pool task, on top of the pool's own cost.

Three measurements, each as interleaved rounds, reported as medians:

1. Pool tasks. A ``ProcessPoolExecutor`` (fork and spawn, 2 workers) runs
   ``--tasks`` tasks per round; each task logs one record. Variants:
   ``plain`` (a pool made inside the step: its workers inherited the run,
   the task is not wrapped: the pool's own cost plus one record),
   ``wrap`` (the same pool, ``submit(runlog.wrap(task))``),
   ``executor`` (``runlog.ContextProcessPoolExecutor`` made inside the step)
   and ``wrap_before`` (a pool made before the run: every task joins the
   run for the call and leaves it afterwards). Per task = round time / tasks.
2. In-process, without a pool: ``pickle.loads(pickle.dumps(task))(...)``
   for a plain task and a wrapped one, in the run the process has (same
   run) and in a process with no run (join + restore per call).
3. ``runlog.wrap(task)`` alone, in the parent.

Usage: python bench/wrap.py [--tasks 2000] [--rounds 7] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import pickle
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import runlog  # the checkout's runlog, not an installed one

WORKERS = 2


def task(n: int) -> int:
    """One pool task: one record, as a real task would log at least once."""
    runlog.get_logger("bench", component="task").info("work", n=n)
    return n


def noop(n: int) -> int:
    """A pool task that logs nothing: to start workers without touching runlog."""
    return n


def round_time(
    pool: ProcessPoolExecutor, fn: Callable[[int], int], tasks: int
) -> float:
    """Seconds to run *tasks* tasks of *fn* through *pool*, all submitted at once."""
    started = time.perf_counter()
    futures = [pool.submit(fn, n) for n in range(tasks)]
    for future in futures:
        future.result()
    return time.perf_counter() - started


def warm(pool: ProcessPoolExecutor, fn: Callable[[int], int]) -> None:
    """Start every worker and run a few tasks, so no round pays for start-up."""
    for future in [pool.submit(fn, n) for n in range(WORKERS * 20)]:
        future.result()


def pool_rounds(method: str, tasks: int, rounds: int, root: Path) -> dict[str, Any]:
    """Per-task medians (µs) of the four pool variants for one start method."""
    context = multiprocessing.get_context(method)
    runlog.configure(console_format="off")
    before = ProcessPoolExecutor(WORKERS, mp_context=context)
    warm(before, noop)  # before the run: these workers have no run of their own
    run = runlog.start_run("bench", f"wrap-{method}", root, archive=False)
    times: dict[str, list[float]] = {
        "plain": [],
        "wrap": [],
        "executor": [],
        "wrap_before": [],
    }
    try:
        with run.step(1):
            inside = ProcessPoolExecutor(WORKERS, mp_context=context)
            ours = runlog.ContextProcessPoolExecutor(WORKERS, mp_context=context)
            warm(inside, task)
            warm(ours, task)
        for number in range(2, rounds + 2):
            with run.step(number):
                times["plain"].append(round_time(inside, task, tasks))
                times["wrap"].append(round_time(inside, runlog.wrap(task), tasks))
                times["executor"].append(round_time(ours, task, tasks))
                times["wrap_before"].append(
                    round_time(before, runlog.wrap(task), tasks)
                )
    finally:
        run.finish()
        for pool in (before, inside, ours):
            pool.shutdown()
    medians = {k: statistics.median(v) / tasks * 1e6 for k, v in times.items()}
    return {
        "per_task_us": {k: round(v, 1) for k, v in medians.items()},
        "overhead_us": {
            k: round(medians[k] - medians["plain"], 1)
            for k in ("wrap", "executor", "wrap_before")
        },
    }


def per_call_us(fn: Callable[[], object], calls: int, rounds: int) -> float:
    """Median over *rounds* of the mean time of one ``fn()``, in µs."""
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter() - started) / calls * 1e6)
    return round(statistics.median(samples), 2)


def in_process(root: Path, rounds: int) -> dict[str, float]:
    """The worker side without a pool: unpickle and call, plain and wrapped."""
    runlog.configure(console_format="off")
    context = runlog.LogContext.get_instance()
    context.set_run_context("bench", "fw", root / "inproc" / "logs")
    context.set_step_context(1)
    plain = pickle.dumps(task)
    with context.step_scope(2):
        wrapped = pickle.dumps(runlog.wrap(task))
    results = {
        "plain_same_run": per_call_us(lambda: pickle.loads(plain)(1), 2000, rounds),
        "wrapped_same_run": per_call_us(lambda: pickle.loads(wrapped)(1), 2000, rounds),
        "wrap_call_in_parent": per_call_us(lambda: runlog.wrap(task), 20000, rounds),
        "pickle_plain": per_call_us(lambda: pickle.dumps(task), 20000, rounds),
        "pickle_wrapped": per_call_us(
            lambda: pickle.dumps(runlog.wrap(task)), 20000, rounds
        ),
    }
    context.clear_run_context()
    # a worker without a run: every call joins the run and leaves it
    results["wrapped_join_and_leave"] = per_call_us(
        lambda: pickle.loads(wrapped)(1), 2000, rounds
    )
    return results


def main() -> None:
    """Run the measurements and print (or write) them as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        report = {
            "python": sys.version.split()[0],
            "cpus": os.cpu_count(),
            "tasks_per_round": args.tasks,
            "rounds": args.rounds,
            "workers": WORKERS,
            "pool_fork": pool_rounds("fork", args.tasks, args.rounds, root),
            "pool_spawn": pool_rounds("spawn", args.tasks, args.rounds, root),
            "in_process_us": in_process(root, args.rounds),
        }
    text = json.dumps(report, indent=2)
    if args.out is not None:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
