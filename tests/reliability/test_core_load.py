"""Threads log while another switches steps: nothing lost, torn or misrouted."""

from __future__ import annotations

import threading
from pathlib import Path

import orjson
import pytest

from runlog import LogContext, configure, get_logger
from runlog._paths import parse_step_dir

pytestmark = pytest.mark.reliability


def _load(run_logs: Path, threads: int, per_thread: int) -> None:
    configure(console_format="off")
    context = LogContext.get_instance()
    context.set_step_context(1)
    stop = threading.Event()
    switches = [0]

    def switch() -> None:
        step = 1
        while not stop.wait(0.0002):  # a switch every ~0.2 ms, not a GIL hog
            step = step % 20 + 1
            context.set_step_context(step)
            switches[0] += 1

    def work(worker: int) -> None:
        log = get_logger("load", component="worker")
        for i in range(per_thread):
            log.info("rec", w=worker, i=i)

    switcher = threading.Thread(target=switch)
    writers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    switcher.start()
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    stop.set()
    switcher.join()
    context.clear_run_context()

    seen: set[tuple[int, int]] = set()
    for path in run_logs.glob("step_*/worker.log"):
        step = parse_step_dir(path.parent.name)
        for line in path.read_bytes().splitlines():
            record = orjson.loads(line)  # a torn line would fail here
            assert record["step"] == step, f"misrouted: {record} in {path}"
            key = (record["w"], record["i"])
            assert key not in seen, f"duplicated: {key}"
            seen.add(key)
    assert len(seen) == threads * per_thread
    assert switches[0] > 20  # the steps really changed while records were written
    assert (run_logs / "run.log").exists() is False


def test_8_threads_x_5000_records_with_step_switching(run_logs: Path) -> None:
    """8 threads x 5,000 records, steps switching 1..20: each once, in its step."""
    _load(run_logs, 8, 5000)


@pytest.mark.stress
def test_8_threads_x_50000_records_with_step_switching(run_logs: Path) -> None:
    """The long version: 8 threads x 50,000 records."""
    _load(run_logs, 8, 50_000)
