"""runlog prune: what it selects, what it never touches, how it deletes."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from runlog import Archiver
from runlog.errors import RunlogError
from runlog.fleet._prune import (
    find_leftovers,
    plan_prune,
    prune_item,
    run_prune,
    tracked_files,
)
from runlog.reading._verdicts import cache_file_of
from tests.conftest import files_under

from .runs import failing_run, git, ok_run

LIVE_RUN = """
import sys, time
from runlog import configure, start_run
configure(console_format="off")
run = start_run("fw", "live", sys.argv[1], archive=False)
print("ready", flush=True)
time.sleep(120)
"""


def three_runs(runs: Path) -> list[Path]:
    """Three finished runs, oldest first: r1 succeeded, r2 failed, r3 succeeded."""
    made = [ok_run(runs, "r1")]
    made.append(failing_run(runs, "r2", ValueError("bad item 7")))
    made.append(ok_run(runs, "r3"))
    return made


def test_a_dry_run_deletes_nothing(tmp_path: Path) -> None:
    """Planning selects the older runs and their bytes; no file changes."""
    runs = tmp_path / "runs"
    three_runs(runs)
    before = files_under(runs)
    plan = plan_prune(runs, keep_last=1)
    assert [item.run.run_id for item in plan.delete] == ["r2", "r1"]
    assert plan.size == sum(
        p.stat().st_size for p in (runs / "fw" / "r1").rglob("*") if p.is_file()
    ) + sum(p.stat().st_size for p in (runs / "fw" / "r2").rglob("*") if p.is_file())
    assert files_under(runs) == before


def test_prune_deletes_the_selected_runs_whole(tmp_path: Path) -> None:
    """--keep-last 1 leaves the newest run and nothing of the others."""
    runs = tmp_path / "runs"
    three_runs(runs)
    pruned: list[str] = []
    run_prune(
        plan_prune(runs, keep_last=1), lambda item: pruned.append(item.run.run_id)
    )
    assert pruned == ["r2", "r1"]
    assert sorted(p.name for p in (runs / "fw").iterdir()) == ["r3"]


def test_keep_failed_keeps_the_failed_run(tmp_path: Path) -> None:
    """With keep_failed the failed run is kept and says why."""
    runs = tmp_path / "runs"
    three_runs(runs)
    plan = plan_prune(runs, keep_last=0, keep_failed=True)
    assert sorted(item.run.run_id for item in plan.delete) == ["r1", "r3"]
    assert [(i.run.run_id, i.reason) for i in plan.kept] == [("r2", "failed (kept)")]


def test_older_than_selects_by_last_activity(tmp_path: Path) -> None:
    """A cut-off in the past selects nothing; one in the future selects every run."""
    runs = tmp_path / "runs"
    three_runs(runs)
    now = datetime.now(UTC)
    assert plan_prune(runs, older_than=now - timedelta(days=1)).delete == []
    later = plan_prune(runs, older_than=now + timedelta(seconds=1))
    assert len(later.delete) == 3


def test_a_running_run_is_never_pruned(tmp_path: Path) -> None:
    """A run held by a live child process (fresh heartbeat) stays; the rest go."""
    runs = tmp_path / "runs"
    ok_run(runs, "old")
    with subprocess.Popen(
        [sys.executable, "-c", LIVE_RUN, str(runs)],
        stdout=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("RUNLOG_")},
    ) as child:
        try:
            assert child.stdout is not None and child.stdout.readline() == "ready\n"
            live = runs / "fw" / "live"
            before = files_under(live)
            plan = plan_prune(runs, keep_last=0)
            kept = [(i.run.run_id, i.reason) for i in plan.kept]
            assert kept == [("live", "running")]
            run_prune(plan)
            # the live run may write more meanwhile; it loses nothing
            assert before <= files_under(live)
            assert not (runs / "fw" / "old").exists()
        finally:
            child.kill()


def test_tracked_summaries_survive(tmp_path: Path) -> None:
    """In a git repo the committed logs_summary.txt stays; the rest of the run goes."""
    repo = tmp_path / "repo"
    runs = repo / "runs"
    made = three_runs(runs)
    git(repo, "init", "-q")
    git(repo, "add", *(str(run / "logs_summary.txt") for run in made))
    git(repo, "commit", "-q", "-m", "summaries")
    assert len(tracked_files(runs)) == 3
    plan = plan_prune(runs, keep_last=0)
    assert all(item.keep for item in plan.delete)
    run_prune(plan)
    for run in made:
        assert files_under(run) == {"logs_summary.txt"}
    assert git(repo, "status", "--porcelain") == ""


def test_a_run_whose_every_file_is_tracked_is_kept(tmp_path: Path) -> None:
    """Nothing to delete in a fully tracked run: it is kept, with the reason."""
    repo = tmp_path / "repo"
    runs = repo / "runs"
    ok_run(runs, "r1")
    git(repo, "init", "-q")
    git(repo, "add", "-f", "runs")
    git(repo, "commit", "-q", "-m", "all")
    plan = plan_prune(runs, keep_last=0)
    assert plan.delete == []
    assert [i.reason for i in plan.kept] == ["every file is tracked by git"]


def archived_run(runs: Path, run_id: str) -> Path:
    """A finished run with run.tar.gz beside its logs/."""
    run_dir = ok_run(runs, run_id)
    Archiver(run_dir).create_archive()
    return run_dir


def test_logs_only_deletes_logs_where_the_archive_verifies(tmp_path: Path) -> None:
    """logs/ goes, the archive, sidecar and summary stay."""
    runs = tmp_path / "runs"
    run_dir = archived_run(runs, "r1")
    run_prune(plan_prune(runs, keep_last=0, logs_only=True))
    assert files_under(run_dir) == {
        "logs_summary.txt",
        "run.tar.gz",
        "run.tar.gz.sha256",
    }


def test_logs_only_refuses_a_run_whose_archive_fails_verification(
    tmp_path: Path,
) -> None:
    """A corrupted archive keeps its run's logs/, marked refused with the reason."""
    runs = tmp_path / "runs"
    run_dir = archived_run(runs, "r1")
    archive = run_dir / "run.tar.gz"
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive.write_bytes(bytes(data))
    before = files_under(run_dir)
    plan = plan_prune(runs, keep_last=0, logs_only=True)
    assert plan.delete == []
    [item] = plan.kept
    assert item.refused and "failed verification" in (item.reason or "")
    run_prune(plan)
    assert files_under(run_dir) == before


def test_logs_only_keeps_logs_without_an_archive(tmp_path: Path) -> None:
    """A run with no archive keeps its logs/ and says to archive it first."""
    runs = tmp_path / "runs"
    ok_run(runs, "r1")
    [item] = plan_prune(runs, keep_last=0, logs_only=True).kept
    assert "runlog archive" in (item.reason or "")


def test_leftovers_are_found_and_finished(tmp_path: Path) -> None:
    """A .runlog-pruning-* sibling is reported and deleted by the next prune."""
    runs = tmp_path / "runs"
    ok_run(runs, "r1")
    leftover = runs / "fw" / ".runlog-pruning-r0"
    (leftover / "logs").mkdir(parents=True)
    (leftover / "logs" / "run.log").write_text("{}\n")
    plan = plan_prune(runs, keep_last=5)
    assert plan.leftovers == [leftover] == find_leftovers(runs)
    run_prune(plan)
    assert not leftover.exists() and (runs / "fw" / "r1").is_dir()


def test_a_kept_item_cannot_be_pruned(tmp_path: Path) -> None:
    """Pruning an item the plan keeps raises, naming it."""
    runs = tmp_path / "runs"
    ok_run(runs, "r1")
    [item] = plan_prune(runs, keep_last=0, logs_only=True).kept
    with pytest.raises(RunlogError, match="is kept"):
        prune_item(item)


def test_exactly_one_selection_is_required(tmp_path: Path) -> None:
    """Neither or both of keep_last and older_than is an error."""
    with pytest.raises(RunlogError, match="exactly one"):
        plan_prune(tmp_path)


def test_a_recent_run_without_run_json_is_kept(tmp_path: Path) -> None:
    """A run made with set_run_context alone, written just now, may be running."""
    runs = tmp_path / "runs"
    logs = runs / "fw" / "bare" / "logs"
    (logs / "step_001").mkdir(parents=True)
    (logs / "run.log").write_text("{}\n")
    [item] = plan_prune(runs, keep_last=0).kept
    assert item.reason == "no run.json and written recently"


def test_logs_only_keeps_a_tracked_file_inside_logs(tmp_path: Path) -> None:
    """A file git tracks inside logs/ stays; every other file of logs/ goes."""
    repo = tmp_path / "repo"
    runs = repo / "runs"
    run_dir = archived_run(runs, "r1")
    git(repo, "init", "-q")
    git(repo, "add", "-f", str(run_dir / "logs" / "step_001" / "adapter.log"))
    git(repo, "commit", "-q", "-m", "one log")
    [item] = plan_prune(runs, keep_last=0, logs_only=True).delete
    assert item.keep == {(run_dir / "logs" / "step_001" / "adapter.log").resolve()}
    run_prune(plan_prune(runs, keep_last=0, logs_only=True))
    assert files_under(run_dir / "logs") == {"step_001/adapter.log"}
    assert not find_leftovers(runs)


def test_a_pruned_run_takes_its_read_cache_along(tmp_path: Path) -> None:
    """The file where show keeps what it learnt of a run goes with the run."""
    runs = tmp_path / "runs"
    three_runs(runs)
    caches = {}
    for run_id in ("r1", "r3"):
        cache = cache_file_of(runs / "fw" / run_id / "logs")
        assert cache is not None and cache.parent == runs / ".runlog-cache"
        cache.parent.mkdir(exist_ok=True)
        cache.write_text("{}")
        caches[run_id] = cache
    run_prune(plan_prune(runs, keep_last=1))
    assert not caches["r1"].exists()
    assert caches["r3"].exists()
