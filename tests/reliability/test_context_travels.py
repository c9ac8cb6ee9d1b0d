"""Settings, run and step travel with the work: children, pools, long-lived workers."""

from __future__ import annotations

import functools
import multiprocessing
import os
import pickle
import subprocess
import sys
import tarfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

import orjson
import pytest

import runlog
from runlog import (
    ConfigurationError,
    ContextError,
    ContextProcessPoolExecutor,
    LogContext,
    Run,
    configure,
    start_run,
    wrap,
)
from runlog._config import current_settings, settings_from_env, settings_to_env
from runlog.process import _env
from tests.conftest import files_under, read_records
from tests.reliability._checks import REPO

pytestmark = [
    pytest.mark.reliability,
    # Python 3.12+ warns about fork() in a process with threads (the heartbeat);
    # these tests fork on purpose to prove that forked children behave.
    pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning"),
]

# A fake credential the children see in their environment as BEARER.
SECRET = "tok-9f8e7d6c5b4a-never-on-disk"
MODULE = "tests.reliability.test_context_travels"
# Two tasks wait here for each other, in one worker process, then log at once.
BURST = threading.Barrier(2, timeout=60)


def child_body(label: str) -> int:
    """A child's or task's work, with no configure() of its own; returns its pid."""
    log = runlog.get_logger("child", component="worker")
    runlog_env = {k: v for k, v in os.environ.items() if k.startswith("RUNLOG_")}
    log.debug("dropped", label=label)
    log.info(
        "call",
        label=label,
        pid=os.getpid(),
        bearer=os.environ["BEARER"],
        runlog_env=runlog_env,
    )
    log.warning("said", label=label, detail=f"server said {os.environ['BEARER']}")
    runlog.get_logger("child", component="audit").info("audited", label=label)
    return os.getpid()


CHILD_CODE = f"import sys; from {MODULE} import child_body; child_body(sys.argv[1])"

# The parent of test_settings_reach_every_kind_of_child, in a fresh process:
# argv = kind, runs dir. It configures, opens a run and starts one child.
PARENT = f"""
import multiprocessing, os, subprocess, sys
from concurrent.futures import ProcessPoolExecutor
import runlog
from {MODULE} import CHILD_CODE, child_body

kind, runs = sys.argv[1], sys.argv[2]
method = {{"fork": "fork", "fork_pool": "fork", "forkserver": "forkserver"}}
context = multiprocessing.get_context(method.get(kind, "spawn"))
pool = None
if kind == "forkserver":
    # its server starts now, before the run: its environment names no run
    warmup = context.Process(target=os.getpid)
    warmup.start()
    warmup.join()
elif kind.endswith("pool"):
    executor = (
        runlog.ContextProcessPoolExecutor if kind == "context_pool"
        else ProcessPoolExecutor
    )
    pool = executor(max_workers=1, mp_context=context)
    pool.submit(os.getpid).result()  # the worker starts before the run
runlog.configure(
    console_format="off",
    file_level="info",
    redact_keys={{"bearer"}},
    run_level_components={{"reconciliation", "audit"}},
)
with runlog.start_run("fw", "r1", runs) as run, run.step(2):
    if kind in ("fork", "spawn", "forkserver"):
        process = context.Process(target=child_body, args=(kind,))
        process.start()
        process.join()
        assert process.exitcode == 0, process.exitcode
    elif kind == "subprocess":
        subprocess.run([sys.executable, "-c", CHILD_CODE, kind], check=True)
    elif kind == "run_command":
        runlog.run_command([sys.executable, "-c", CHILD_CODE, kind], check=True)
    elif kind == "context_pool":
        pool.submit(child_body, kind).result()
    else:
        pool.submit(runlog.wrap(child_body), kind).result()
if pool is not None:
    pool.shutdown()
"""

KINDS = (
    "fork",
    "spawn",
    "forkserver",
    "subprocess",
    "run_command",
    "spawn_pool",
    "fork_pool",
    "context_pool",
)


def every_byte(run_dir: Path) -> dict[str, bytes]:
    """Every file under *run_dir* and every member of its run.tar.gz, by name."""
    found = {
        path.relative_to(run_dir).as_posix(): path.read_bytes()
        for path in sorted(run_dir.rglob("*"))
        if path.is_file()
    }
    with tarfile.open(run_dir / "run.tar.gz", "r:gz") as tar:
        for member in tar.getmembers():
            handle = tar.extractfile(member)
            if handle is not None:
                found[f"run.tar.gz:{member.name}"] = handle.read()
    return found


@pytest.mark.parametrize("kind", KINDS)
def test_settings_reach_every_kind_of_child(tmp_path: Path, kind: str) -> None:
    """Redaction keys, run-level components, file level, console off in any child."""
    runs = tmp_path / "runs"
    result = subprocess.run(
        [sys.executable, "-c", PARENT, kind, str(runs)],
        cwd=REPO,
        env={**os.environ, "BEARER": SECRET},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # console_format="off" held in the child too
    run_dir = runs / "fw" / "r1"
    logs = run_dir / "logs"
    owner = orjson.loads((logs / "run.json").read_bytes())["pid"]
    call, said = read_records(logs / "step_002" / "worker.log")
    assert (call["event"], call["label"], call["step"]) == ("call", kind, 2)
    assert call["pid"] != owner
    assert call["bearer"] == "***"
    assert said["detail"] == "server said ***"
    travelled = call["runlog_env"]
    assert orjson.loads(travelled["RUNLOG_SETTINGS"])["redact_keys"] == ["bearer"]
    assert travelled["RUNLOG_STEP"] == "2"
    [audited] = read_records(logs / "audit.log")
    assert (audited["event"], audited["label"], audited["step"]) == (
        "audited",
        kind,
        2,
    )
    assert "step_002/audit.log" not in files_under(logs)
    texts = every_byte(run_dir)
    assert "run.tar.gz:logs/step_002/worker.log" in texts
    assert [name for name, data in texts.items() if SECRET.encode() in data] == []
    assert [name for name, data in texts.items() if b"dropped" in data] == []


def _slow_pid() -> int:
    time.sleep(0.3)  # long enough for the pool to start its second worker
    return os.getpid()


def pool_task(label: str, count: int) -> tuple[int, int | None, str | None]:
    """Log *count* records of component pool; return pid, step and run seen."""
    log = runlog.get_logger("p", component="pool")
    for n in range(count):
        log.info("task", label=label, n=n)
    context = LogContext.get_instance()
    return os.getpid(), context.step, context.run_id


def make_pool(api: str, method: str) -> ProcessPoolExecutor:
    """A two-worker pool of *method*: plain (tasks wrapped by hand) or ours."""
    kind = ContextProcessPoolExecutor if api == "executor" else ProcessPoolExecutor
    return kind(max_workers=2, mp_context=multiprocessing.get_context(method))


def submit(api: str, pool: Executor, label: str, count: int) -> Any:
    """Submit pool_task, wrapped by hand unless the pool does it."""
    task: Callable[[str, int], Any] = (
        pool_task if api == "executor" else wrap(pool_task)
    )
    return pool.submit(task, label, count)


@pytest.fixture
def quiet() -> None:
    """Console off in this process (and in workers forked from it)."""
    configure(console_format="off")


@pytest.mark.usefixtures("quiet")
@pytest.mark.parametrize("method", ["fork", "spawn"])
@pytest.mark.parametrize("api", ["wrap", "executor"])
def test_pools_reused_across_steps_write_each_task_into_its_step(
    tmp_path: Path, api: str, method: str
) -> None:
    """Pools made before the run and in step 1 write steps 2 and 3 where submitted."""
    early = make_pool(api, method)
    late: ProcessPoolExecutor | None = None
    try:
        # both workers started now: a worker the pool started later, in the
        # run, would join it from its environment and keep it as its own
        pids = {f.result(timeout=60) for f in [early.submit(_slow_pid) for _ in "ab"]}
        assert len(pids) == 2 and os.getpid() not in pids
        with start_run("fw", "r1", tmp_path / "runs", archive=False) as run:
            with run.step(1):
                late = make_pool(api, method)
                late.submit(os.getpid).result(timeout=60)  # born in step 1
            futures = []
            for step in (2, 3):
                with run.step(step):
                    for pool, name in ((early, "early"), (late, "late")):
                        futures += [
                            submit(api, pool, f"{name}-{step}-{k}", 50)
                            for k in range(3)
                        ]
            between = submit(api, late, "between", 1)
            seen = [f.result(timeout=60)[1:] for f in [*futures, between]]
        after = early.submit(pool_task, "after", 1).result(timeout=60)
    finally:
        early.shutdown()
        if late is not None:
            late.shutdown()
    assert seen == [(2, "r1")] * 6 + [(3, "r1")] * 6 + [(None, "r1")]
    assert after[1:] == (None, None)  # the worker has no run again
    for step in (2, 3):
        records = read_records(run.logs_dir / f"step_00{step}" / "pool.log")
        assert {r["step"] for r in records} == {step}
        assert sorted({r["label"] for r in records}) == sorted(
            f"{name}-{step}-{k}" for name in ("early", "late") for k in range(3)
        )
        assert len(records) == 6 * 50
    assert "step_001/pool.log" not in files_under(run.logs_dir)
    run_log = read_records(run.logs_dir / "run.log")
    assert [r.get("label") for r in run_log] == [None, "between", None]


@pytest.mark.usefixtures("quiet")
def test_process_pool_map_chunks_land_in_the_calling_step(tmp_path: Path) -> None:
    """ContextProcessPoolExecutor.map made before the run: each chunk in its step."""
    context = multiprocessing.get_context("spawn")
    with ContextProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
        pool.submit(os.getpid).result(timeout=60)
        with start_run("fw", "r1", tmp_path / "runs", archive=False) as run:
            with run.step(4):
                seen = list(pool.map(pool_task, ["m0", "m1", "m2"], [5] * 3))
            with run.step(5):
                seen += list(pool.map(pool_task, ["m3", "m4"], [5] * 2, chunksize=2))
    assert [s[1:] for s in seen] == [(4, "r1")] * 3 + [(5, "r1")] * 2
    for step, labels in ((4, ["m0", "m1", "m2"]), (5, ["m3", "m4"])):
        records = read_records(run.logs_dir / f"step_00{step}" / "pool.log")
        assert sorted({r["label"] for r in records}) == labels
        assert len(records) == 5 * len(labels)


def stdlib_only(label: str) -> None:
    """A child that logs through a plain stdlib logger only, never get_logger."""
    import logging

    logging.getLogger("httpx").warning("request failed %s", label)


def test_spawned_child_with_stdlib_logging_only_reaches_the_step(run: Run) -> None:
    """A spawn child that never calls get_logger still writes into its step."""
    context = multiprocessing.get_context("spawn")
    with run.step(6):
        process = context.Process(target=stdlib_only, args=("s6",))
        process.start()
        process.join(60)
    assert process.exitcode == 0
    [record] = read_records(run.logs_dir / "step_006" / "external.log")
    assert (record["event"], record["logger"], record["step"]) == (
        "request failed s6",
        "httpx",
        6,
    )


def serve(tasks: Queue[Any], results: Queue[Any]) -> None:
    """A long-lived worker: runs each task it is sent in a thread of its own."""
    threads = []
    while (task := tasks.get()) is not None:
        fn, args = task

        def run(fn: Callable[..., Any] = fn, args: tuple[Any, ...] = args) -> None:
            results.put(fn(*args))

        thread = threading.Thread(target=run)
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()


def burst(label: str, count: int) -> tuple[str, int | None, int]:
    """Wait for the other task, then log *count* records; label, step, pid."""
    BURST.wait()
    log = runlog.get_logger("b", component="burst")
    for n in range(count):
        log.info("rec", label=label, n=n)
    return label, LogContext.get_instance().step, os.getpid()


def probe() -> tuple[str | None, int | None]:
    """The run and step a worker has outside any wrapped call."""
    context = LogContext.get_instance()
    return context.run_id, context.step


@pytest.fixture
def worker() -> Iterator[tuple[Queue[Any], Queue[Any]]]:
    """A spawned worker, started before any run, serving tasks in threads."""
    context = multiprocessing.get_context("spawn")
    tasks: Queue[Any] = context.Queue()
    results: Queue[Any] = context.Queue()
    process = context.Process(target=serve, args=(tasks, results))
    process.start()
    yield tasks, results
    tasks.put(None)
    process.join(60)
    assert process.exitcode == 0


def test_two_threads_of_one_worker_in_two_steps_keep_apart(
    worker: tuple[Queue[Any], Queue[Any]], run: Run
) -> None:
    """One worker runs step 1's and step 2's tasks at once: 2 x 2,000, no cross-talk."""
    tasks, results = worker
    for step in (1, 2):
        with run.step(step):
            tasks.put((wrap(burst), (f"s{step}", 2000)))
    got = sorted(results.get(timeout=60) for _ in range(2))
    assert [(label, step) for label, step, _ in got] == [("s1", 1), ("s2", 2)]
    assert got[0][2] == got[1][2] != os.getpid()
    spans = []
    for step in (1, 2):
        records = read_records(run.logs_dir / f"step_00{step}" / "burst.log")
        assert [r["n"] for r in records] == list(range(2000))
        assert {(r["label"], r["step"]) for r in records} == {(f"s{step}", step)}
        spans.append((records[0]["ts"], records[-1]["ts"]))
    assert spans[0][0] < spans[1][1] and spans[1][0] < spans[0][1]  # overlapped
    tasks.put((probe, ()))
    assert results.get(timeout=60) == (None, None)


def test_tasks_of_two_runs_in_one_worker_keep_apart(
    tmp_path: Path, worker: tuple[Queue[Any], Queue[Any]]
) -> None:
    """Tasks of two runs sent to one worker at once: each run gets only its own."""
    configure(console_format="off")
    context = LogContext.get_instance()
    wrapped = {}
    for name in ("a", "b"):
        context.set_run_context(name, "fw", tmp_path / "runs" / "fw" / name / "logs")
        context.set_step_context(1)
        wrapped[name] = wrap(pool_task)
    context.clear_run_context()
    tasks, results = worker
    for name in ("a", "b"):
        tasks.put((wrapped[name], (name, 2000)))
    got = sorted(results.get(timeout=60) for _ in range(2))
    assert [seen[1:] for seen in got] == [(1, "a"), (1, "b")]
    for name in ("a", "b"):
        logs = tmp_path / "runs" / "fw" / name / "logs"
        assert files_under(logs) == {"combined.log", "step_001/pool.log"}
        records = read_records(logs / "step_001" / "pool.log")
        assert [r["n"] for r in records] == list(range(2000))
        assert {(r["label"], r["run_id"]) for r in records} == {(name, name)}
    tasks.put((probe, ()))
    assert results.get(timeout=60) == (None, None)


def call(fn: Callable[[], Any]) -> Any:
    """Call *fn*: a wrapped task whose work is another wrapped task."""
    return fn()


def test_a_wrapped_call_of_another_run_inside_one_is_refused(tmp_path: Path) -> None:
    """A wrapped call of run b inside one of run a, in one thread: ContextError."""
    configure(console_format="off")
    context = LogContext.get_instance()
    context.set_run_context("a", "fw", tmp_path / "a")
    outer = pickle.loads(pickle.dumps(wrap(call)))
    context.set_run_context("b", "fw", tmp_path / "b")
    inner = pickle.loads(pickle.dumps(wrap(functools.partial(pool_task, "b", 1))))
    context.clear_run_context()
    with pytest.raises(ContextError, match="run 'b' inside a wrapped call of run 'a'"):
        outer(inner)
    assert (context.run_id, context.step) == (None, None)
    assert inner()[1:] == (None, "b")
    assert (context.run_id, context.step) == (None, None)
    assert files_under(tmp_path) == {"b/combined.log", "b/run.log"}


def test_settings_follow_configure_while_a_run_is_open(run: Run) -> None:
    """RUNLOG_SETTINGS tracks configure() in the run; it holds key names only."""
    configure(console_format="off", redact_keys={"bearer"}, file_level="warning")
    travelled = orjson.loads(os.environ[_env.SETTINGS])
    assert travelled == {
        "console_format": "off",
        "file_level": 30,
        "redact_keys": ["bearer"],
    }
    assert _env.child_env()[_env.SETTINGS] == os.environ[_env.SETTINGS]
    run.finish()
    assert _env.SETTINGS not in os.environ


def test_settings_round_trip_through_their_environment_value() -> None:
    """Every field but extra_sinks survives to_env/from_env; sinks stay local."""
    configure(
        console_level="error",
        console_format="json",
        file_level="warning",
        combined=False,
        combined_max_lines=10,
        combined_trim_fraction=0.5,
        run_level_components={"audit"},
        redact_keys={"bearer", "*_pin"},
        on_write_error="warn",
        external_level="debug",
        max_open_files=8,
        heartbeat_interval_s=2.5,
    )
    settings = current_settings()
    text = settings_to_env(settings)
    assert settings_from_env(text, source="X") == settings
    assert settings_to_env(settings_from_env("{}", source="X")) == "{}"
    sink = print
    assert settings_from_env(text, source="X", extra_sinks=(sink,)).extra_sinks == (
        sink,
    )
    newer = orjson.loads(text) | {"a_newer_setting": 1}
    assert settings_from_env(orjson.dumps(newer).decode(), source="X") == settings


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "RUNLOG_SETTINGS 'not json': not a settings value"),
        ("[1]", r"RUNLOG_SETTINGS '\[1\]': not a settings value"),
        ('{"console_format": "loud"}', "RUNLOG_SETTINGS: console_format 'loud'"),
        ('{"run_level_components": ["../x"]}', "RUNLOG_SETTINGS: component '../x'"),
    ],
)
def test_a_bad_settings_value_names_itself(text: str, message: str) -> None:
    """A bad RUNLOG_SETTINGS raises ConfigurationError quoting the value."""
    with pytest.raises(ConfigurationError, match=message):
        settings_from_env(text, source="RUNLOG_SETTINGS")


CONFIGURING_CHILD = """
    import os, sys, runlog
    runlog.configure(console_format="off")  # its own settings: the run's keys stay
    log = runlog.get_logger("c", component="child")
    log.info("first", bearer=os.environ["BEARER"])
    runlog.configure(console_format="off", redact_keys=set())
    log.info("second", bearer=os.environ["BEARER"], detail=os.environ["BEARER"])
"""


def test_a_child_that_configures_itself_keeps_the_runs_redaction(run: Run) -> None:
    """A child's own configure() calls never drop the run's redaction keys."""
    configure(console_format="off", redact_keys={"bearer"})
    with run.step(1):
        result = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(CONFIGURING_CHILD)],
            env={**os.environ, "BEARER": SECRET},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 0, result.stderr
    first, second = read_records(run.logs_dir / "step_001" / "child.log")
    assert (first["bearer"], second["bearer"], second["detail"]) == ("***",) * 3


def test_a_child_refuses_a_bad_settings_value(run: Run) -> None:
    """A child given a bad RUNLOG_SETTINGS fails at its first record, naming it."""
    code = "import runlog; runlog.get_logger('c', component='child').info('x')"
    env = _env.child_env() | {_env.SETTINGS: '{"file_level": "loud"}'}
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "ConfigurationError: RUNLOG_SETTINGS: file_level 'loud'" in result.stderr
    assert files_under(run.logs_dir) == {"combined.log", "run.json", "run.log"}
