"""start_run, Run, run.json, the heartbeat and the effective status."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

import runlog
from runlog import (
    ConfigurationError,
    ContextError,
    LogContext,
    Run,
    _status,
    configure,
    get_logger,
    remote,
    start_run,
)
from runlog._records import Redactor
from runlog._status import is_pid_alive
from runlog.handler import get_handler
from runlog.run import (
    _start,
    effective_status,
    format_time,
    new_run_id,
    open_runs,
    parse_time,
    read_run_json,
    redact_argv,
    status_reason,
)
from tests.conftest import files_under, read_records

RUN_JSON_KEYS = {
    "run_id",
    "framework",
    "status",
    "reason",
    "started_at",
    "ended_at",
    "duration_s",
    "heartbeat_at",
    "heartbeat_interval_s",
    "pid",
    "pid_started",
    "host",
    "boot_id",
    "python",
    "runlog_version",
    "argv",
    "cwd",
    "resumes",
    "error_type",
    "error",
    "signal",
    "metadata",
}
TIME_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


@pytest.fixture(autouse=True)
def _quiet() -> Iterator[None]:
    configure(console_format="off")
    yield
    for run in open_runs():
        run.finish("failed", reason="left open by a test")


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    """An empty runs directory."""
    return tmp_path / "runs"


def run_json(run: Run) -> dict[str, Any]:
    """The parsed run.json of *run*."""
    data = orjson.loads((run.logs_dir / "run.json").read_bytes())
    assert isinstance(data, dict)
    return data


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll *predicate* until it holds; fail the test after *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s")
        time.sleep(0.01)


def events(path: Path) -> list[str]:
    """The ``event`` of every record in *path*."""
    return [record["event"] for record in read_records(path)]


# start_run


def test_start_run_writes_running_run_json(runs: Path) -> None:
    """start_run creates logs/, a complete run.json saying running, and run_start."""
    run = start_run("fw", "r1", runs, {"model": "m-1"}, archive=False)
    assert run.run_dir == runs.absolute() / "fw" / "r1"
    assert run.logs_dir == run.run_dir / "logs"
    info = run_json(run)
    assert set(info) == RUN_JSON_KEYS
    assert info["run_id"] == "r1"
    assert info["framework"] == "fw"
    assert info["status"] == "running"
    assert info["ended_at"] is None
    assert info["duration_s"] is None
    assert info["pid"] == os.getpid()
    assert info["host"] == socket.gethostname()
    assert info["runlog_version"] == runlog.__version__
    assert info["metadata"] == {"model": "m-1"}
    assert info["heartbeat_interval_s"] == 30.0
    assert info["resumes"] == 0
    for key in ("started_at", "heartbeat_at"):
        assert TIME_RE.fullmatch(info[key])
        moment = parse_time(info[key])
        assert moment is not None
        assert abs(datetime.now(UTC) - moment) < timedelta(minutes=1)
    assert files_under(run.logs_dir) == {"run.json", "run.log", "combined.log"}
    [record] = read_records(run.logs_dir / "run.log")
    assert record["event"] == "run_start"
    assert record["component"] == "orchestrator"
    assert record["step"] is None
    assert record["metadata"] == {"model": "m-1"}
    assert LogContext.get_instance().run_id == "r1"
    assert os.environ["RUNLOG_OWNER_PID"] == str(os.getpid())
    run.finish()


def test_generated_run_id_is_utc_time_and_random_suffix() -> None:
    """A generated id is YYYYmmddTHHMMSSZ-xxxxxx in UTC and sorts by time."""
    moment = datetime(2025, 10, 20, 14, 23, 45, tzinfo=UTC)
    run_id = new_run_id(moment)
    assert re.fullmatch(r"20251020T142345Z-[0-9a-f]{6}", run_id)
    later = new_run_id(moment + timedelta(seconds=1))
    assert run_id < later
    local = moment.astimezone(datetime.now().astimezone().tzinfo)
    assert new_run_id(local).startswith("20251020T142345Z-")


def test_runs_started_in_the_same_second_never_collide(
    runs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When a generated id is taken already, start_run draws another one."""
    drawn = iter(["20250101T000000Z-aaaaaa", "20250101T000000Z-aaaaaa", "x-bbbbbb"])
    monkeypatch.setattr(_start, "new_run_id", lambda: next(drawn))
    first = start_run("fw", runs_dir=runs, archive=False)
    first.finish()
    second = start_run("fw", runs_dir=runs, archive=False)
    second.finish()
    assert first.run_id == "20250101T000000Z-aaaaaa"
    assert second.run_id == "x-bbbbbb"
    assert sorted(p.name for p in (runs / "fw").iterdir()) == [
        "20250101T000000Z-aaaaaa",
        "x-bbbbbb",
    ]
    assert run_json(first)["run_id"] == first.run_id


def test_many_generated_ids_are_distinct_directories(runs: Path) -> None:
    """Runs started back to back without a run_id each get their own directory."""
    ids = []
    for _ in range(5):
        run = start_run("fw", runs_dir=runs, archive=False)
        ids.append(run.run_id)
        run.finish()
    assert len(set(ids)) == 5
    assert {p.name for p in (runs / "fw").iterdir()} == set(ids)


def test_existing_run_is_refused_without_resume(runs: Path) -> None:
    """Reusing a run id raises ContextError and leaves the old run untouched."""
    start_run("fw", "r1", runs, archive=False).finish()
    before = {p: p.read_bytes() for p in (runs / "fw" / "r1").rglob("*") if p.is_file()}
    with pytest.raises(ContextError, match=r"'r1' already exists.*resume=True"):
        start_run("fw", "r1", runs, archive=False)
    after = {p: p.read_bytes() for p in (runs / "fw" / "r1").rglob("*") if p.is_file()}
    assert after == before
    assert LogContext.get_instance().run_id is None


def test_resume_continues_attempts_and_keeps_started_at(runs: Path) -> None:
    """resume=True appends to the run, counts attempts on, keeps started_at."""
    first = start_run("fw", "r1", runs, archive=False)
    with pytest.raises(RuntimeError), first.step(2):
        raise RuntimeError("flaky")
    first.finish("failed")
    started = run_json(first)["started_at"]
    first_duration = run_json(first)["duration_s"]
    second = start_run("fw", "r1", runs, archive=False, resume=True)
    info = run_json(second)
    assert info["status"] == "running"
    assert info["started_at"] == started
    assert info["heartbeat_at"] > info["started_at"]
    assert effective_status(info) == "running"
    assert info["resumes"] == 1
    with second.step(2):
        pass
    second.finish()
    assert run_json(second)["duration_s"] >= first_duration
    records = read_records(
        runs / "fw" / "r1" / "logs" / "step_002" / "orchestrator.log"
    )
    assert [(r["event"], r["attempt"]) for r in records] == [
        ("step_start", 1),
        ("step_end", 1),
        ("step_start", 2),
        ("step_end", 2),
    ]
    run_log = read_records(runs / "fw" / "r1" / "logs" / "run.log")
    assert [r["event"] for r in run_log] == [
        "run_start",
        "run_end",
        "run_start",
        "run_end",
    ]
    assert (run_log[2]["resumes"], run_log[2]["previous_status"]) == (1, "failed")


def test_resume_of_a_missing_run_starts_it(runs: Path) -> None:
    """resume=True for a run id not on disk yet simply starts that run."""
    run = start_run("fw", "new", runs, archive=False, resume=True)
    assert run_json(run)["resumes"] == 0
    run.finish()


def test_resume_refuses_a_run_that_is_still_running(runs: Path) -> None:
    """A run whose owner is alive with a fresh heartbeat cannot be resumed."""
    logs = runs / "fw" / "r1" / "logs"
    logs.mkdir(parents=True)
    now = format_time(datetime.now(UTC))
    info = {
        "status": "running",
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "heartbeat_at": now,
        "heartbeat_interval_s": 30,
    }
    (logs / "run.json").write_bytes(orjson.dumps(info))
    with pytest.raises(ContextError, match=r"'r1' is still running"):
        start_run("fw", "r1", runs, archive=False, resume=True)
    assert orjson.loads((logs / "run.json").read_bytes()) == info
    assert LogContext.get_instance().run_id is None


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"framework": "../up"}, ContextError, r"framework '\.\./up'"),
        ({"framework": "fw", "run_id": "a/b"}, ContextError, r"run_id 'a/b'"),
        ({"framework": "fw", "run_id": ".hidden"}, ContextError, r"'\.hidden'"),
        ({"framework": "fw", "archive_format": "bz2"}, ConfigurationError, "'bz2'"),
        ({"framework": "fw", "heartbeat_interval_s": 0}, ConfigurationError, "0"),
        ({"framework": "fw", "heartbeat_interval_s": -1.0}, ConfigurationError, "-1.0"),
        (
            {"framework": "fw", "heartbeat_interval_s": float("nan")},
            ConfigurationError,
            "nan",
        ),
        ({"framework": "fw", "heartbeat_interval_s": True}, ConfigurationError, "True"),
        ({"framework": "fw", "metadata": ["a"]}, ConfigurationError, r"\['a'\]"),
        ({"framework": "fw", "upload_to": ""}, ConfigurationError, "upload_to ''"),
    ],
)
def test_bad_arguments_are_refused_before_anything_is_written(
    runs: Path, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    """Bad names and options raise, naming the value, and create no directory."""
    with pytest.raises(error, match=match):
        start_run(runs_dir=runs, archive=False, **kwargs)
    assert not runs.exists()


def test_a_second_open_run_is_refused(runs: Path) -> None:
    """start_run while this process's run is open raises and keeps the first."""
    first = start_run("fw", "r1", runs, archive=False)
    with pytest.raises(ContextError, match=r"'r1' is still open"):
        start_run("fw", "r2", runs, archive=False)
    assert not (runs / "fw" / "r2").exists()
    assert LogContext.get_instance().run_id == "r1"
    first.finish()


def test_metadata_is_made_json_safe_and_redacted(runs: Path) -> None:
    """Metadata values are stored JSON-safe; credential keys are written ***."""
    metadata = {
        "tags": {"b", "a"},
        "path": Path("/data/x"),
        "api_key": "sk-abcdefgh",
        "nested": {"password": "hunter2-long", "n": 1},
    }
    run = start_run("fw", "r1", runs, metadata, archive=False)
    expected = {
        "tags": ["a", "b"],
        "path": "/data/x",
        "api_key": "***",
        "nested": {"password": "***", "n": 1},
    }
    assert run_json(run)["metadata"] == expected
    assert run.metadata == expected
    run.finish()
    text = b"".join(p.read_bytes() for p in run.logs_dir.rglob("*") if p.is_file())
    assert b"sk-abcdefgh" not in text
    assert b"hunter2-long" not in text


def test_argv_values_of_credential_options_are_redacted() -> None:
    """--api-key VALUE and --token=VALUE lose their values in run.json's argv."""
    argv = ["prog", "--api-key", "s3cr3t", "--token=abc", "--steps", "3", "--password"]
    assert redact_argv(argv, Redactor()) == [
        "prog",
        "--api-key",
        "***",
        "--token=***",
        "--steps",
        "3",
        "--password",
    ]


# finish


def test_finish_records_the_end_and_closes_the_run(runs: Path) -> None:
    """finish() logs run_end, writes the final run.json and clears the context."""
    run = start_run("fw", "r1", runs, archive=False)
    with run.step(1):
        get_logger("m", component="adapter").info("work")
    path = run.finish()
    assert path == run.run_dir / "logs_summary.txt"
    assert path.is_file()
    assert run.summary_path == path
    info = run_json(run)
    assert info["status"] == "success"
    assert info["reason"] is None
    ended, started = parse_time(info["ended_at"]), parse_time(info["started_at"])
    assert ended is not None
    assert started is not None
    assert ended >= started
    assert info["heartbeat_at"] == info["ended_at"]
    assert isinstance(info["duration_s"], float)
    assert 0 <= info["duration_s"] < 60
    [start, end] = read_records(run.logs_dir / "run.log")
    assert (start["event"], end["event"]) == ("run_start", "run_end")
    assert end["status"] == "success"
    assert end["step"] is None
    assert end["duration_s"] == info["duration_s"]
    assert run.status == "success"
    assert run.is_finished
    context = LogContext.get_instance()
    assert context.run_id is None
    assert "RUNLOG_LOGS_DIR" not in os.environ
    handler = get_handler()
    assert not [
        p for p in handler.writer.open_paths() if p.is_relative_to(run.logs_dir)
    ]
    get_logger("m", component="adapter").info("after the run")
    assert events(run.logs_dir / "step_001" / "adapter.log") == ["work"]


def test_finish_inside_a_step_writes_run_end_to_run_log(runs: Path) -> None:
    """run_end never lands in a step file, even when finish is called in a step."""
    run = start_run("fw", "r1", runs, archive=False)
    LogContext.get_instance().set_step_context(4)
    with run.step(2):
        run.finish("failed", reason="gave up")
    assert events(run.logs_dir / "run.log")[-1] == "run_end"
    assert "run_end" not in events(run.logs_dir / "step_002" / "orchestrator.log")
    assert run_json(run)["reason"] == "gave up"


def test_finish_twice_changes_nothing_and_warns_on_another_status(runs: Path) -> None:
    """A second finish() returns the summary path; a different status warns."""
    run = start_run("fw", "r1", runs, archive=False)
    path = run.finish("failed")
    before = (run.logs_dir / "run.json").read_bytes()
    assert run.finish() == path
    with pytest.warns(RuntimeWarning, match=r"already finished as 'failed'"):
        assert run.finish("success") == path
    assert (run.logs_dir / "run.json").read_bytes() == before
    assert events(run.logs_dir / "run.log").count("run_end") == 1


def test_finish_rejects_an_unknown_status(runs: Path) -> None:
    """finish('done') raises ConfigurationError and the run stays open."""
    run = start_run("fw", "r1", runs, archive=False)
    with pytest.raises(ConfigurationError, match="'done'"):
        run.finish("done")
    assert run_json(run)["status"] == "running"
    assert not run.is_finished
    run.finish()


def test_step_after_finish_raises(runs: Path) -> None:
    """Run.step() on a finished run raises ContextError naming the run."""
    run = start_run("fw", "r1", runs, archive=False)
    run.finish()
    with pytest.raises(ContextError, match=r"'r1' is finished"):
        run.step(1)


def test_finish_after_the_context_was_cleared_still_logs_run_end(runs: Path) -> None:
    """If the run context was cleared by hand, finish() still writes run_end."""
    run = start_run("fw", "r1", runs, archive=False)
    LogContext.get_instance().clear_run_context()
    with pytest.raises(ContextError, match="not the current run context"):
        run.step(1)
    run.finish()
    assert events(run.logs_dir / "run.log") == ["run_start", "run_end"]
    assert LogContext.get_instance().run_id is None


def test_finish_refuses_while_another_run_is_current(runs: Path) -> None:
    """finish() raises rather than writing into another run's context."""
    run = start_run("fw", "r1", runs, archive=False)
    LogContext.get_instance().set_run_context("other", "fw", runs / "fw" / "other")
    with pytest.raises(ContextError, match="'other' is the current run context"):
        run.finish()
    LogContext.get_instance().clear_run_context()
    run.finish()
    assert run_json(run)["status"] == "success"


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (SystemExit(0), "success"),
        (SystemExit(None), "success"),
        (SystemExit(2), "failed"),
    ],
)
def test_system_exit_in_a_run_block(runs: Path, exc: SystemExit, status: str) -> None:
    """sys.exit(0) leaving the block is success; a non-zero code is failed."""
    with pytest.raises(SystemExit), start_run("fw", "r1", runs, archive=False):
        raise exc
    assert run_json_at(runs)["status"] == status


def run_json_at(runs: Path, run_id: str = "r1") -> dict[str, Any]:
    """run.json of fw/<run_id> under *runs*."""
    info = read_run_json(runs / "fw" / run_id / "logs")
    assert info is not None
    return info


def test_finish_callbacks_run_after_the_summary(runs: Path) -> None:
    """Callbacks added with add_finish_callback see the written summary."""
    run = start_run("fw", "r1", runs, archive=False)
    seen: list[tuple[str, bool]] = []
    run.add_finish_callback(
        lambda r: seen.append((r.status, (r.run_dir / "logs_summary.txt").is_file()))
    )
    run.finish()
    assert seen == [("success", True)]


def test_upload_to_attaches_the_uploader(
    runs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """upload_to is checked before anything is made, then handed to the uploader."""
    calls: list[tuple[str, str, str]] = []

    def check_url(url: str) -> None:
        calls.append(("check", url, str(runs.exists())))

    def attach_uploader(run: Run, url: str) -> None:
        calls.append((run.run_id, url, run_json(run)["status"]))

    monkeypatch.setattr(remote, "check_url", check_url)
    monkeypatch.setattr(remote, "attach_uploader", attach_uploader)
    run = start_run("fw", "r1", runs, archive=False, upload_to="s3://bucket/p")
    assert run.upload_to == "s3://bucket/p"
    assert calls == [
        ("check", "s3://bucket/p", "False"),
        ("r1", "s3://bucket/p", "running"),
    ]
    run.finish()


def test_upload_to_without_the_remote_extra_is_refused(
    runs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without fsspec (the remote extra), upload_to fails before anything is made."""
    monkeypatch.setitem(sys.modules, "fsspec", None)
    with pytest.raises(ConfigurationError, match=r"runlog\[remote\]"):
        start_run("fw", "r1", runs, archive=False, upload_to="s3://bucket/p")
    assert not runs.exists()


def test_a_failing_uploader_finishes_the_run_as_failed(
    runs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the uploader cannot be attached, the run is closed failed and it raises."""

    def attach_uploader(run: Run, url: str) -> None:
        raise OSError("no credentials")

    monkeypatch.setattr(remote, "check_url", lambda url: url)
    monkeypatch.setattr(remote, "attach_uploader", attach_uploader)
    with pytest.raises(OSError, match="no credentials"):
        start_run("fw", "r1", runs, archive=False, upload_to="s3://b")
    info = run_json_at(runs)
    assert info["status"] == "failed"
    assert info["error_type"] == "OSError"
    assert LogContext.get_instance().run_id is None


# heartbeat


def test_heartbeat_refreshes_run_json_until_finish(runs: Path) -> None:
    """heartbeat_at moves forward while the run is open and stops at finish."""
    run = start_run("fw", "r1", runs, archive=False, heartbeat_interval_s=0.05)
    first = run_json(run)["heartbeat_at"]
    wait_for(lambda: run_json(run)["heartbeat_at"] > first)
    assert run_json(run)["heartbeat_interval_s"] == 0.05
    assert effective_status(run_json(run)) == "running"
    run.finish()
    final = (run.logs_dir / "run.json").read_bytes()
    time.sleep(0.3)
    assert (run.logs_dir / "run.json").read_bytes() == final
    assert "runlog-heartbeat-r1" not in [t.name for t in threading.enumerate()]


def test_heartbeat_interval_comes_from_configure(runs: Path) -> None:
    """configure(heartbeat_interval_s=...) is the default for start_run."""
    configure(console_format="off", heartbeat_interval_s=0.5)
    run = start_run("fw", "r1", runs, archive=False)
    assert run.heartbeat_interval_s == 0.5
    assert run_json(run)["heartbeat_interval_s"] == 0.5
    run.finish()


def test_heartbeat_that_cannot_be_written_is_reported(runs: Path) -> None:
    """A heartbeat failure logs heartbeat_failed and warns; recovery is logged."""
    run = start_run("fw", "r1", runs, archive=False, heartbeat_interval_s=0.05)
    path = run.logs_dir / "run.json"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path.unlink()
        path.mkdir()  # a directory where run.json should be: the rename fails
        (path / "keep").write_text("x")
        wait_for(lambda: "heartbeat_failed" in events(run.logs_dir / "run.log"))
        wait_for(lambda: bool(caught))
    messages = [str(w.message) for w in caught]
    assert all(w.category is RuntimeWarning for w in caught)
    assert any(
        "heartbeat of run 'r1' failed" in m and "run.json" in m for m in messages
    )
    failed = next(
        r
        for r in read_records(run.logs_dir / "run.log")
        if r["event"] == "heartbeat_failed"
    )
    assert failed["level"] == "error"
    assert failed["component"] == "orchestrator"
    assert failed["path"] == str(path)
    assert run.heartbeat_failures >= 1
    (path / "keep").unlink()
    path.rmdir()
    wait_for(lambda: "heartbeat_recovered" in events(run.logs_dir / "run.log"))
    assert run_json(run)["status"] == "running"
    assert not [p.name for p in run.logs_dir.iterdir() if p.name.endswith(".tmp")]
    run.finish()
    assert run_json(run)["status"] == "success"


# effective status


def live_info(**changes: Any) -> dict[str, Any]:
    """A run.json of a running run owned by this process, with *changes*."""
    info: dict[str, Any] = {
        "status": "running",
        "pid": os.getpid(),
        "pid_started": _status.process_start_ticks(os.getpid()),
        "host": socket.gethostname(),
        "boot_id": _status.boot_id(),
        "heartbeat_at": format_time(datetime.now(UTC)),
        "heartbeat_interval_s": 1.0,
    }
    info.update(changes)
    return info


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.parametrize("status", ["success", "failed", "interrupted"])
def test_finished_status_is_believed(status: str) -> None:
    """A finished run's status is what run.json says, whatever its process."""
    info = live_info(status=status, pid=dead_pid(), reason="r")
    assert effective_status(info) == status
    assert status_reason(info) == (status, "r")


def test_running_with_live_process_and_fresh_heartbeat_is_running() -> None:
    """The owner alive on this host and a fresh heartbeat: running."""
    assert status_reason(live_info()) == ("running", None)


def test_dead_process_on_this_host_is_crashed() -> None:
    """running + a pid that no longer exists on this host: crashed."""
    pid = dead_pid()
    status, reason = status_reason(live_info(pid=pid, pid_started=None))
    assert status == "crashed"
    assert reason == f"process {pid} is gone"


def test_zombie_process_is_crashed() -> None:
    """A process that exited but was not reaped yet counts as gone."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        wait_for(lambda: (_status._proc_stat(child.pid) or ["?"])[0] == "Z")
        assert not is_pid_alive(child.pid)
        assert effective_status(live_info(pid=child.pid, pid_started=None)) == "crashed"
    finally:
        child.wait()


def test_reused_pid_is_crashed() -> None:
    """A live pid that started at another time than recorded is another process."""
    info = live_info(pid_started=(_status.process_start_ticks(os.getpid()) or 0) + 1)
    assert status_reason(info) == (
        "crashed",
        f"process {os.getpid()} is gone (its pid was reused)",
    )


def test_reboot_since_the_run_started_is_crashed() -> None:
    """Another boot id on the same host: the machine restarted, the run crashed."""
    if _status.boot_id() is None:
        pytest.skip("this system has no boot id")
    status, reason = status_reason(live_info(boot_id="not-this-boot"))
    assert status == "crashed"
    assert reason is not None
    assert "restarted" in reason


def test_stale_heartbeat_is_crashed_from_any_host() -> None:
    """A heartbeat older than 3 intervals is crashed even when the host differs."""
    beat = datetime.now(UTC) - timedelta(seconds=3.5)
    info = live_info(host="elsewhere", heartbeat_at=format_time(beat))
    status, reason = status_reason(info)
    assert status == "crashed"
    assert reason is not None
    assert "no heartbeat for 3." in reason
    assert effective_status(info, now=beat + timedelta(seconds=2.9)) == "running"


def test_other_host_with_fresh_heartbeat_is_running() -> None:
    """On another host the pid means nothing; a fresh heartbeat is running."""
    assert effective_status(live_info(host="elsewhere", pid=dead_pid())) == "running"


def test_run_json_without_liveness_fields_is_running() -> None:
    """A run.json with only a status (or none) is taken at its word."""
    assert effective_status({}) == "running"
    assert effective_status({"status": "running", "pid": "x"}) == "running"


@pytest.mark.parametrize("pid", [0, -1, True, "12"])
def test_is_pid_alive_rejects_non_pids(pid: Any) -> None:
    """0, negatives (process groups) and non-ints are never alive."""
    assert not is_pid_alive(pid)


# parsing


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "2025-10-20T14:23:45.123456Z",
            datetime(2025, 10, 20, 14, 23, 45, 123456, UTC),
        ),
        ("2025-10-20T16:23:45+02:00", datetime(2025, 10, 20, 14, 23, 45, tzinfo=UTC)),
        ("2025-10-20T14:23:45", None),
        ("yesterday", None),
        ("", None),
        (None, None),
        (12, None),
    ],
)
def test_parse_time(text: object, expected: datetime | None) -> None:
    """RFC 3339 text becomes an aware UTC datetime; naive or bad text is None."""
    parsed = parse_time(text)
    assert parsed == expected
    if parsed is not None:
        assert parsed.tzinfo is UTC


def test_read_run_json_tolerates_missing_and_broken_files(tmp_path: Path) -> None:
    """read_run_json is None for a missing, torn, non-object or directory run.json."""
    assert read_run_json(tmp_path) is None
    (tmp_path / "run.json").write_bytes(b'{"status": "runn')
    assert read_run_json(tmp_path) is None
    (tmp_path / "run.json").write_bytes(b"[1, 2]")
    assert read_run_json(tmp_path) is None
    (tmp_path / "run.json").unlink()
    (tmp_path / "run.json").mkdir()
    assert read_run_json(tmp_path) is None
    (tmp_path / "run.json").rmdir()
    (tmp_path / "run.json").write_bytes(b'{"status": "success"}')
    assert read_run_json(tmp_path) == {"status": "success"}


# SIGTERM handler


def test_run_started_in_a_worker_thread_leaves_sigterm_alone(runs: Path) -> None:
    """Only the main thread can install a handler; elsewhere SIGTERM is untouched."""
    before = signal.getsignal(signal.SIGTERM)
    started: list[Run] = []
    thread = threading.Thread(
        target=lambda: started.append(start_run("fw", "r1", runs, archive=False))
    )
    thread.start()
    thread.join()
    assert signal.getsignal(signal.SIGTERM) is before
    started[0].finish()
    assert run_json(started[0])["status"] == "success"


def test_sigterm_after_the_run_ended_kills_as_usual(tmp_path: Path) -> None:
    """A handler left behind (finish from a thread) lets SIGTERM kill the process."""
    code = textwrap.dedent(
        """
        import os, signal, sys, threading, runlog
        runlog.configure(console_format="off")
        run = runlog.start_run("fw", "r1", sys.argv[1], archive=False)
        thread = threading.Thread(target=run.finish)
        thread.start()
        thread.join()
        assert signal.getsignal(signal.SIGTERM) is run._term
        os.kill(os.getpid(), signal.SIGTERM)
        signal.pause()
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == -signal.SIGTERM, done.stderr
    info = read_run_json(tmp_path / "runs" / "fw" / "r1" / "logs")
    assert info is not None
    assert (info["status"], info["signal"]) == ("success", None)
