"""Captured output in this process: queued lines, partial lines, step ends (#15)."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from runlog import Run, configure, start_run
from runlog.capture import PARTIAL_AFTER_S, active_session
from tests.conftest import read_records


@contextmanager
def _capturing(tmp_path: Path) -> Iterator[Run]:
    """A run capturing "python" output, opened in the test body: pytest puts its
    own sys.stdout back between a fixture's setup and the test."""
    configure(console_format="off")
    opened = start_run("fw", "r1", tmp_path / "runs", archive=False)
    try:
        yield opened
    finally:
        opened.finish()


def _events(run: Run, where: str) -> list[str]:
    path = run.logs_dir / where
    return [r["event"] for r in read_records(path)] if path.exists() else []


def test_a_printed_line_is_on_disk_within_100_ms(tmp_path: Path) -> None:
    """A line printed in a step reaches its file soon, with the run still open."""
    with _capturing(tmp_path) as run, run.step(1):
        print("soon on disk")  # noqa: T201  # print() is what is tested
        deadline = time.monotonic() + 0.1
        while not _events(run, "step_001/stdout.log") and time.monotonic() < deadline:
            time.sleep(0.005)
        assert _events(run, "step_001/stdout.log") == ["soon on disk"]


def test_an_unterminated_line_is_recorded_after_a_second(tmp_path: Path) -> None:
    """Text left without a line break for 1 s is recorded as partial."""
    with _capturing(tmp_path) as run, run.step(1):
        sys.stdout.write("Continue? ")
        sys.stdout.flush()
        time.sleep(PARTIAL_AFTER_S + 0.35)
        records = read_records(run.logs_dir / "step_001" / "stdout.log")
        partial = [(r["event"], r["partial"]) for r in records]
        assert partial == [("Continue? ", True)]
        print("yes")  # noqa: T201  # print() is what is tested
    assert _events(run, "step_001/stdout.log") == ["Continue? ", "yes"]


def test_a_step_end_records_its_unterminated_line_in_that_step(
    tmp_path: Path,
) -> None:
    """Text left unterminated when a step ends is a partial record of that step."""
    with _capturing(tmp_path) as run:
        with run.step(1):
            print("no break", end="")  # noqa: T201  # print() is what is tested
        with run.step(2):
            print("in two")  # noqa: T201  # print() is what is tested
    records = read_records(run.logs_dir / "step_001" / "stdout.log")
    assert [(r["event"], r.get("partial")) for r in records] == [("no break", True)]
    assert _events(run, "step_002/stdout.log") == ["in two"]


def test_threads_writing_pieces_keep_whole_lines_in_their_steps(
    tmp_path: Path,
) -> None:
    """Many small writes per line from two threads in two steps: whole lines each."""
    with _capturing(tmp_path) as run:

        def work(n: int) -> None:
            with run.step(n):
                for i in range(300):
                    for piece in (f"step {n}", " line ", str(i), "\n"):
                        sys.stdout.write(piece)

        threads = [threading.Thread(target=work, args=(n,)) for n in (5, 6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    for n in (5, 6):
        events = _events(run, f"step_00{n}/stdout.log")
        assert events == [f"step {n} line {i}" for i in range(300)]


def test_finish_writes_queued_and_pending_lines_and_gives_stdout_back(
    tmp_path: Path,
) -> None:
    """finish() records everything printed, in order, and puts sys.stdout back."""
    before = sys.stdout
    run = start_run("fw", "r2", tmp_path / "runs", archive=False)
    assert active_session() is not None
    with run.step(1):
        for i in range(1000):
            print("many", i)  # noqa: T201  # print() is what is tested
        sys.stdout.write("last words")
        run.finish()
    assert sys.stdout is before
    events = _events(run, "step_001/stdout.log")
    assert events == [f"many {i}" for i in range(1000)] + ["last words"]
