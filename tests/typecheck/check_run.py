"""An orchestrator written against the run API (runs, steps, workers, commands)."""

from __future__ import annotations

import asyncio
import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

import runlog
from runlog import (
    CommandError,
    CommandResult,
    ContextThreadPoolExecutor,
    Run,
    get_logger,
    run_command,
    start_run,
    wrap,
)

log = get_logger(__name__, component="adapter")


def fetch(item: str, retries: int = 1) -> int:
    """One unit of work for a worker thread or process."""
    log.info("api_call", item=item, retries=retries)
    return len(item)


async def fetch_all(run: Run, items: list[str]) -> list[int]:
    """Fetch in executor threads, each landing in step 3."""
    loop = asyncio.get_running_loop()
    with run.step(3, name="fetch"):
        return list(
            await asyncio.gather(
                *(loop.run_in_executor(None, wrap(fetch), item) for item in items)
            )
        )


def orchestrate(runs_dir: Path) -> Path:
    """Start a run, drive steps through threads, processes and a command."""
    run: Run = start_run(
        "fw",
        None,
        runs_dir,
        {"model": "m"},
        archive_format="zst",
        heartbeat_interval_s=5.0,
        resume=False,
    )
    with run:
        with run.step(1, name="plan"), ContextThreadPoolExecutor(2) as threads:
            future: Future[int] = threads.submit(fetch, "a", retries=2)
            lengths: list[int] = list(threads.map(fetch, ["b", "c"]))
            assert future.result() + sum(lengths) > 0
        with run.step(2, name="train"):
            spawn = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(1, mp_context=spawn) as pool:
                done: Future[int] = pool.submit(wrap(fetch), "d")
                done.result()
            try:
                result: CommandResult = run_command(
                    ["python", "-V"], component="trainer", timeout=60.0, check=True
                )
            except CommandError as exc:
                code: int = exc.returncode
                raise SystemExit(code) from exc
            signal_name: str | None = result.signal
            log.info("trained", ok=result.ok, signal=signal_name)
        asyncio.run(fetch_all(run, ["e", "f"]))
    status: str = run.status
    summary: Path | None = run.summary_path
    info = run.info()
    assert info["status"] == status
    run.add_finish_callback(lambda finished: finished.run_id)
    return summary or run.finish()


def resume(runs_dir: Path, run_id: str) -> None:
    """Continue a crashed run."""
    run = start_run("fw", run_id, runs_dir, resume=True, archive=False)
    run.finish("failed", reason="gave up")
    runlog.configure(heartbeat_interval_s=10)
