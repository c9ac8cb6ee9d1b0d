"""Dask tasks wrapped with runlog.wrap land in their run and step, on any worker."""

from __future__ import annotations

import fcntl
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# no importorskip: without the dask extra these tests must fail, not skip
import distributed
import pytest
from distributed import Client, LocalCluster

import runlog
from runlog import ConfigurationError, configure, start_run, verify_archive
from runlog.dask import RunlogPlugin, channel_stats
from tests.conftest import read_records

SECRET = "tok-5e4d3c2b1a-stays-on-the-worker"
TIMEOUT_S = 30


def task(label: str, count: int = 3) -> int:
    """A task's work: *count* info records, a warning, a run-level record."""
    log = runlog.get_logger("task", component="worker")
    log.debug("dropped", label=label)
    for i in range(count):
        log.info("work", label=label, i=i, bearer=SECRET)
    runlog.get_logger("task", component="audit").warning("audited", label=label)
    runlog.get_logger("task", component="reconciliation").info("rec", label=label)
    return os.getpid()


def slow_task(label: str) -> int:
    """Logs once after a pause long enough for the run to finish meanwhile."""
    time.sleep(1.0)
    runlog.get_logger("task", component="worker").info("late", label=label)
    return os.getpid()


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    """One 2-worker process cluster on 127.0.0.1 for the module, with the plugin."""
    with (
        LocalCluster(
            processes=True,
            host="127.0.0.1",
            n_workers=2,
            threads_per_worker=2,
            dashboard_address=":0",
        ) as cluster,
        Client(cluster, timeout=TIMEOUT_S) as dask_client,
    ):
        dask_client.register_plugin(RunlogPlugin())
        yield dask_client


@pytest.fixture
def hidden_runs(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """
    A runs directory only this process can reach, and its real path.

    ``/proc/self/fd/N`` names this process's descriptor N: in a worker
    process the same path names nothing, as a path on another host would.
    """
    real = tmp_path / "runs"
    real.mkdir()
    fd = os.open(real, os.O_RDONLY | os.O_DIRECTORY)
    high = fcntl.fcntl(fd, fcntl.F_DUPFD, 900)
    os.close(fd)
    yield f"/proc/self/fd/{high}", real
    os.close(high)


def run_steps(client: Client, run: runlog.Run, steps: dict[int, list[str]]) -> set[int]:
    """Submit ``task(label)`` for each label inside its step; the worker pids."""
    pids: set[int] = set()
    for step, labels in steps.items():
        with run.step(step):
            futures = [
                client.submit(runlog.wrap(task), label, pure=False) for label in labels
            ]
            distributed.wait(futures, timeout=TIMEOUT_S)
            pids.update(client.gather(futures))
    return pids


def labels_in(path: Path) -> list[str]:
    """The ``label`` of every record in *path*."""
    return [record["label"] for record in read_records(path)]


def test_tasks_of_steps_one_and_two_land_in_their_steps(
    client: Client, tmp_path: Path
) -> None:
    """Workers that see the run write each task's records into its step."""
    configure(console_format="off", file_level="info", redact_keys={"bearer"})
    before = channel_stats()
    with start_run("fw", "r1", tmp_path / "runs", archive=False) as run:
        steps = {1: ["a1", "b1", "c1", "d1"], 2: ["a2", "b2", "c2", "d2"]}
        pids = run_steps(client, run, steps)
    logs = run.logs_dir
    assert os.getpid() not in pids
    for step, labels in steps.items():
        worker_log = logs / f"step_{step:03d}" / "worker.log"
        assert sorted(labels_in(worker_log)) == sorted(labels * 3)
        assert sorted(labels_in(worker_log.with_name("audit.log"))) == sorted(labels)
        records = read_records(worker_log)
        assert {r["step"] for r in records} == {step}
        assert {r["pid"] for r in records} <= pids
        assert {r["host"] for r in records} == {socket.gethostname()}
    assert sorted(labels_in(logs / "reconciliation.log")) == sorted(steps[1] + steps[2])
    assert channel_stats() == before  # direct writes: nothing through events


def test_one_cluster_reused_for_two_runs_keeps_them_apart(
    client: Client, tmp_path: Path
) -> None:
    """A second run on the same cluster never writes into the first run's files."""
    configure(console_format="off", file_level="info")
    runs = tmp_path / "runs"
    with start_run("fw", "first", runs, archive=False) as first:
        run_steps(client, first, {1: ["x1", "y1"]})
    kept = {p: p.read_bytes() for p in first.logs_dir.rglob("*") if p.is_file()}
    with start_run("fw", "second", runs, archive=False) as second:
        run_steps(client, second, {1: ["x2", "y2"], 2: ["z2"]})
    after = {p: p.read_bytes() for p in first.logs_dir.rglob("*") if p.is_file()}
    assert after == kept
    assert sorted(labels_in(second.logs_dir / "step_001" / "worker.log")) == sorted(
        ["x2", "y2"] * 3
    )
    assert labels_in(second.logs_dir / "step_002" / "worker.log") == ["z2"] * 3
    records = read_records(second.logs_dir / "step_001" / "worker.log")
    assert {r["run_id"] for r in records} == {"second"}


def test_unreachable_run_dir_gets_every_record_through_events(
    client: Client, hidden_runs: tuple[str, Path]
) -> None:
    """Workers that cannot see the run send its records; the client writes all."""
    path, real = hidden_runs
    assert client.run(os.path.isdir, path) == dict.fromkeys(
        client.scheduler_info()["workers"], False
    )
    configure(console_format="off", file_level="info", redact_keys={"bearer"})
    before = channel_stats()
    steps = {1: [f"s1-{k}" for k in range(6)], 2: [f"s2-{k}" for k in range(6)]}
    with start_run("fw", "hidden", path) as run:
        started = time.time()
        pids = run_steps(client, run, steps)
    logs = real / "fw" / "hidden" / "logs"
    for step, labels in steps.items():
        records = read_records(logs / f"step_{step:03d}" / "worker.log")
        assert sorted(r["label"] for r in records) == sorted(labels * 3)
        assert {(r["step"], r["run_id"], r["level"]) for r in records} == {
            (step, "hidden", "info")
        }
        assert {r["pid"] for r in records} <= pids
        assert {r["bearer"] for r in records} == {"***"}
        audit = read_records(logs / f"step_{step:03d}" / "audit.log")
        assert sorted(r["label"] for r in audit) == sorted(labels)
        assert {r["level"] for r in audit} == {"warning"}
        stamps = [r["ts"] for r in records]
        assert all(stamp.endswith("Z") for stamp in stamps)
    assert len(read_records(logs / "reconciliation.log")) == 12
    assert os.getpid() not in pids
    after = channel_stats()
    # 12 tasks x (3 info + 1 warning + 1 reconciliation); debug dropped on the worker
    assert (after.written - before.written, after.late - before.late) == (60, 0)
    first = read_records(logs / "step_001" / "worker.log")[0]["ts"]
    assert first >= time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(started - 1))
    hits = [
        p for p in real.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()
    ]
    assert hits == []
    verify_archive(real / "fw" / "hidden" / "run.tar.gz")


def test_records_of_a_task_running_past_finish_are_counted_late(
    client: Client, hidden_runs: tuple[str, Path]
) -> None:
    """A record arriving after finish() is counted late and not written."""
    path, real = hidden_runs
    configure(console_format="off")
    before = channel_stats()
    with start_run("fw", "early", path) as run, run.step(1):
        future = client.submit(runlog.wrap(slow_task), "after", pure=False)
    future.result(timeout=TIMEOUT_S)
    deadline = time.monotonic() + TIMEOUT_S
    while channel_stats().late == before.late and time.monotonic() < deadline:
        time.sleep(0.05)
    assert channel_stats().late - before.late == 1
    logs = real / "fw" / "early" / "logs"
    assert not (logs / "step_001" / "worker.log").exists()
    verify_archive(real / "fw" / "early" / "run.tar.gz")


def test_events_transport_is_used_even_where_the_run_is_reachable(
    client: Client, tmp_path: Path
) -> None:
    """RunlogPlugin(transport="events") sends records through the event channel."""
    configure(console_format="off", file_level="info")
    client.register_plugin(RunlogPlugin(transport="events"))
    try:
        before = channel_stats()
        with start_run("fw", "forced", tmp_path / "runs", archive=False) as run:
            run_steps(client, run, {3: ["f1", "f2"]})
        after = channel_stats()
    finally:
        client.register_plugin(RunlogPlugin())
    assert after.written - before.written == 10
    worker_log = run.logs_dir / "step_003" / "worker.log"
    assert sorted(labels_in(worker_log)) == sorted(["f1", "f2"] * 3)


def test_bad_transport_is_refused() -> None:
    """An unknown transport is a ConfigurationError naming it."""
    with pytest.raises(ConfigurationError, match="'ftp'"):
        RunlogPlugin(transport="ftp")  # type: ignore[arg-type]


def test_wrapped_task_without_plugin_state_is_unchanged(tmp_path: Path) -> None:
    """In the client process, a wrapped call still writes into its step directly."""
    configure(console_format="off", file_level="info")
    with start_run("fw", "local", tmp_path / "runs", archive=False) as run:
        with run.step(4):
            wrapped: Any = runlog.wrap(task)
        with run.step(5):
            wrapped("here", 1)
    assert labels_in(run.logs_dir / "step_004" / "worker.log") == ["here"]
