"""
SIGKILL a logging process at random moments: the run it leaves is whole and readable.

Each trial forks a child that runs a small orchestrator (6 steps, a tiny
combined.log cap so it trims every few records, archive and summary at the
end) and kills it with SIGKILL. Most kills are placed exactly: the child
counts its own file-system calls (write, open, close, replace, link, fsync,
ftruncate, mkdir, unlink, ...) inside one phase (writing a record,
switching steps, trimming combined.log, archiving, writing the summary) and
kills itself at a random one of them; in "record" trials half of the time it
first writes half the line, as the kernel may when a fatal signal arrives in
the middle of a multi-page write. The other kills come from the parent after a
random delay. Then the run is checked, and recovered (resumed and finished,
or re-archived) and checked again.
"""

from __future__ import annotations

import functools
import os
import random
import signal
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson
import pytest

from runlog import Archiver, LogContext, cli, configure, get_logger, start_run
from runlog._files import LineWriter
from runlog._paths import parse_step_dir
from runlog._status import effective_status, read_run_json
from runlog.archive import find_archive, verify_archive
from runlog.archive._tarread import read_back
from runlog.combined import CombinedLog
from runlog.run import _finalize
from runlog.summary import LogSummarizer
from tests.reliability._checks import (
    COMBINED_LINE,
    add_figures,
    json_lines,
    record_files,
    split_whole_lines,
)

pytestmark = pytest.mark.reliability

PHASES: Final = ("record", "switch", "trim", "archive", "summary")
HOOKED: Final = (
    "write",
    "pwrite",
    "open",
    "close",
    "replace",
    "rename",
    "link",
    "unlink",
    "fsync",
    "ftruncate",
    "mkdir",
    "copy_file_range",
)
STEPS: Final = 6
RECORDS_PER_STEP: Final = 60
COMBINED_CAP: Final = 40


def orchestrator(runs_dir: Path, run_id: str) -> None:
    """The child's work: steps by run.step and set_step_context, then finish."""
    configure(console_format="off", combined_max_lines=COMBINED_CAP)
    run = start_run("fw", run_id, runs_dir, heartbeat_interval_s=0.5)
    context = LogContext.get_instance()
    log = get_logger("crash", component="worker")
    for step in range(1, STEPS + 1):
        if step % 2:
            with run.step(step, name=f"s{step}"):
                for i in range(RECORDS_PER_STEP):
                    log.info("rec", s=step, i=i, text="line\nbreak é" * (i % 3))
        else:
            context.set_step_context(step)
            for i in range(RECORDS_PER_STEP):
                log.info("rec", s=step, i=i, blob="x" * (i * 50))
            context.clear_step_context()
    run.finish("success")


def instrument(target: str | None, kill_at: int, torn: bool) -> Counter[str]:
    """
    In the child: count hooked calls per phase; SIGKILL at call *kill_at* of *target*.

    Returns the live counter (read by the dry run).
    """
    counts: Counter[str] = Counter()
    phase: list[str | None] = [None]

    def hook(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            current = phase[0]
            if current is not None:
                counts[current] += 1
                # a torn trial waits for the first write at or after kill_at
                if (
                    current == target
                    and counts[current] >= kill_at
                    and (not torn or name == "write")
                ):
                    if torn:
                        data = bytes(args[1])
                        real(args[0], data[: max(1, len(data) // 2)])
                    os.kill(os.getpid(), signal.SIGKILL)
            return real(*args, **kwargs)

        return call

    def in_phase(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            previous = phase[0]
            phase[0] = name
            try:
                return func(*args, **kwargs)
            finally:
                phase[0] = previous

        return wrapper

    for name in HOOKED:
        setattr(os, name, hook(name, getattr(os, name)))
    # append() goes through append_locked(), which the handler calls directly
    LineWriter.append_locked = in_phase("record", LineWriter.append_locked)  # type: ignore[method-assign]
    for method in ("set_step_context", "clear_step_context", "_make_step_dir"):
        setattr(LogContext, method, in_phase("switch", getattr(LogContext, method)))
    CombinedLog._trim = in_phase("trim", CombinedLog._trim)  # type: ignore[method-assign]
    Archiver.create_archive = in_phase("archive", Archiver.create_archive)  # type: ignore[method-assign]
    _finalize.summarize_run = in_phase("summary", _finalize.summarize_run)
    return counts


def fork_child(
    runs_dir: Path, run_id: str, target: str | None, kill_at: int, torn: bool
) -> int:
    """Fork a child running the orchestrator, instrumented; return its pid."""
    report = runs_dir.parent / f"{run_id}.child.json"
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 0
        try:
            counts = instrument(target, kill_at, torn)
            started = time.monotonic()
            orchestrator(runs_dir, run_id)
            elapsed = time.monotonic() - started
            report.write_bytes(orjson.dumps({"counts": counts, "elapsed": elapsed}))
        except BaseException:  # noqa: BLE001  # the child reports anything, then exits
            report.write_text(traceback.format_exc())
            code = 3
        finally:
            os._exit(code)
    return pid


@dataclass
class Trial:
    """One kill: where (a phase and its n-th call, or a delay) and how."""

    kind: str
    seed: int
    kill_at: int = 0
    delay: float = 0.0
    torn: bool = False


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An uninterrupted run: the hooked calls each phase makes, how long it takes."""
    runs_dir = tmp_path_factory.mktemp("dry") / "runs"
    pid = fork_child(runs_dir, "dry", None, 0, False)
    _, status = os.waitpid(pid, 0)
    report = runs_dir.parent / "dry.child.json"
    assert os.waitstatus_to_exitcode(status) == 0, report.read_text()
    result: dict[str, Any] = orjson.loads(report.read_bytes())
    assert set(result["counts"]) == set(PHASES), result
    run_dir = runs_dir / "fw" / "dry"
    check_run(run_dir, torn=False)
    return result


def plan(kind: str, seed: int, dry: dict[str, Any]) -> Trial:
    """Draw the kill point of one trial from its seed."""
    rng = random.Random(f"{kind}-{seed}")
    if kind == "timed":
        return Trial(kind, seed, delay=rng.uniform(0, dry["elapsed"]))
    return Trial(
        kind,
        seed,
        kill_at=rng.randint(1, dry["counts"][kind]),
        torn=kind == "record" and seed % 2 == 0,
    )


def check_run(run_dir: Path, *, torn: bool) -> dict[str, int]:
    """
    Assert what a killed run must look like; return counts of what was found.

    Every whole line of every record file is one JSON record in the right
    step; only a simulated torn write may leave an unterminated piece, in one
    file; combined.log holds whole human lines within its cap; no half
    archive or summary sits under its final name; run.json is whole and a run
    that never finished reads ``crashed``.
    """
    logs = run_dir / "logs"
    found = Counter[str]()
    assert {p.name for p in run_dir.parent.iterdir()} <= {run_dir.name}
    visible = {p.name for p in run_dir.iterdir() if not p.name.startswith(".")}
    assert visible <= {"logs", "logs_summary.txt", "run.tar.gz", "run.tar.gz.sha256"}
    pieces = 0
    numbers: dict[int, list[int]] = {}
    for path in record_files(logs):
        records, rest = json_lines(path)
        pieces += rest != b""
        found["records"] += len(records)
        step = parse_step_dir(path.parent.name)
        for record in records:
            assert record["step"] == step, f"misrouted: {record} in {path}"
            if record["event"] == "rec":
                numbers.setdefault(record["s"], []).append(record["i"])
    # written in order, one step after the other: no gap, no duplicate
    steps = sorted(numbers)
    assert steps == list(range(1, len(steps) + 1))
    for step in steps:
        expected = RECORDS_PER_STEP if step < steps[-1] else len(numbers[step])
        assert numbers[step] == list(range(expected)), f"step {step} lost records"

    combined = logs / "combined.log"
    if combined.exists():
        lines, rest = split_whole_lines(combined)
        pieces += rest != b""
        assert len(lines) <= COMBINED_CAP
        assert all(COMBINED_LINE.match(line) for line in lines if line)
    # A kill can cut the line being written when it crosses a page boundary
    # (the kernel checks for fatal signals between pages): one piece at most,
    # at the end of one file; a simulated torn write always leaves one.
    assert pieces <= 1
    assert pieces == 1 or not torn
    found["cut_lines"] = pieces
    run_json = logs / "run.json"
    info = read_run_json(logs)
    assert info is not None or not run_json.exists(), "run.json is not whole JSON"
    if info is not None and info["status"] == "running":
        assert effective_status(info) == "crashed"
        found["crashed"] += 1
    elif info is not None:
        assert info["status"] == "success"
        run_log, _ = json_lines(logs / "run.log")
        assert [r["event"] for r in run_log].count("run_end") == 1
    archive = run_dir / "run.tar.gz"
    if archive.exists():
        back = read_back(archive, "gz")
        assert back.problem is None, back.problem
        found["archives"] += 1
        sidecar = run_dir / "run.tar.gz.sha256"
        if sidecar.exists():
            assert sidecar.read_text().split()[0] == back.sha256
    summary = run_dir / "logs_summary.txt"
    if summary.exists():
        fresh = LogSummarizer(run_dir.name, "fw", run_dir)
        assert summary.read_text() == fresh.generate_summary()
        found["summaries"] += 1
    return dict(found)


def recover(run_dir: Path, *, torn: bool) -> None:
    """
    Bring a killed run to a verified end: resume and finish, or re-archive.

    A resumed run appends to every record file again: each must then end
    with a newline and hold whole records (a cut-off piece, at most one, is
    a line of its own, reported by the summary).
    """
    logs = run_dir / "logs"
    info = read_run_json(logs)
    if info is None or info["status"] == "running":
        configure(console_format="off", combined_max_lines=COMBINED_CAP)
        run = start_run("fw", run_dir.name, run_dir.parent.parent, resume=True)
        log = get_logger("crash", component="worker")
        for step in range(1, STEPS + 1):  # append to every file the child had
            with run.step(step):
                log.info("resumed", s=step)
        run.finish("success")
    else:
        assert cli.main(["archive", str(run_dir)]) == 0
    assert cli.main(["verify", str(run_dir)]) == 0
    archive = find_archive(run_dir)
    assert archive is not None
    verify_archive(archive)
    malformed = 0
    for path in record_files(logs):
        lines, rest = split_whole_lines(path)
        malformed += rest != b""  # only when the run was not resumed
        for line in lines:
            try:
                orjson.loads(line)
            except orjson.JSONDecodeError:
                malformed += 1
                glued = line.count(b'{"ts":') > 1
                assert not glued, f"a record glued to a piece: {line[:300]!r}"
    assert malformed <= 1
    assert malformed == 1 or not torn
    lines, rest = split_whole_lines(logs / "combined.log")
    assert rest == b""
    assert sum(not COMBINED_LINE.match(line) for line in lines) <= 1
    summary = (run_dir / "logs_summary.txt").read_text()
    assert f"== Malformed lines skipped ({malformed}) ==" in summary


def kill_trial(trial: Trial, runs_dir: Path, dry: dict[str, Any]) -> dict[str, int]:
    """Run one trial: fork, kill, check, recover, check again."""
    run_id = f"{trial.kind}-{trial.seed}"
    target = None if trial.kind == "timed" else trial.kind
    pid = fork_child(runs_dir, run_id, target, trial.kill_at, trial.torn)
    if trial.kind == "timed":
        time.sleep(trial.delay)
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    report = runs_dir.parent / f"{run_id}.child.json"
    killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    if not killed:
        assert os.waitstatus_to_exitcode(status) == 0, report.read_text()
        assert trial.kind == "timed", f"{trial} never reached its kill point"
    run_dir = runs_dir / "fw" / run_id
    if not (run_dir / "logs").exists():
        assert not run_dir.exists() or not any(run_dir.iterdir())
        return {"kills": int(killed)}
    found = check_run(run_dir, torn=trial.torn)
    recover(run_dir, torn=trial.torn)
    found["kills"] = int(killed)
    found["recovered"] = 1
    return found


def _trials(per_phase: int, timed: int) -> list[tuple[str, int]]:
    return [(kind, n) for kind in PHASES for n in range(per_phase)] + [
        ("timed", n) for n in range(timed)
    ]


@pytest.mark.parametrize(("kind", "seed"), _trials(2, 5))
def test_killed_run_is_whole_and_recovers(
    kind: str, seed: int, dry_run: dict[str, Any], tmp_path: Path
) -> None:
    """A SIGKILL at a random point leaves whole lines, whole files, `crashed`."""
    trial = plan(kind, seed, dry_run)
    found = kill_trial(trial, tmp_path / "runs", dry_run)
    add_figures(f"crash.{kind}", trials=1, **found)


@pytest.mark.stress
@pytest.mark.parametrize(("kind", "seed"), _trials(8, 10))
def test_killed_run_is_whole_and_recovers_50_trials(
    kind: str, seed: int, dry_run: dict[str, Any], tmp_path: Path
) -> None:
    """The long version: 50 kills (8 per phase, 10 at random times)."""
    trial = plan(kind, seed + 100, dry_run)
    found = kill_trial(trial, tmp_path / "runs", dry_run)
    add_figures(f"crash.{kind}", trials=1, **found)
