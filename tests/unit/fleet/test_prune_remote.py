"""runlog prune URL: the same rules over a store's objects, under a marker."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from runlog import Archiver
from runlog.cli import main
from runlog.fleet._prune_remote import (
    MARKER,
    plan_remote_prune,
    run_remote_prune,
)
from runlog.remote import upload_run

from .runs import failing_run, ok_run


def stored(root: Path) -> set[str]:
    """Every object of the file:// store at *root*, relative to it."""
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def three_stored_runs(tmp_path: Path) -> tuple[Path, str]:
    """r1 archived, r2 failed with its logs, r3 archived; uploaded oldest first."""
    runs = tmp_path / "runs"
    root = tmp_path / "store"
    url = f"file://{root}"
    r1 = ok_run(runs, "r1")
    Archiver(r1).create_archive()
    upload_run(r1, url)
    upload_run(failing_run(runs, "r2", ValueError("bad item 7")), url)
    r3 = ok_run(runs, "r3")
    Archiver(r3).create_archive()
    upload_run(r3, url)
    return root, url


def test_dry_run_then_yes_over_a_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The dry run deletes no object; --yes deletes every object of older runs."""
    root, url = three_stored_runs(tmp_path)
    before = stored(root)
    assert main(["prune", url, "--keep-last", "1"]) == 0
    out = capsys.readouterr().out
    assert out.count("\ndelete  ") + out.startswith("delete  ") == 2
    assert stored(root) == before
    assert main(["prune", url, "--keep-last", "1", "--yes"]) == 0
    err = capsys.readouterr().err
    assert err.count("runlog: deleted ") == 2
    assert {rel.split("/")[1] for rel in stored(root)} == {"r3"}


def test_keep_failed_and_a_running_stored_run_are_kept(tmp_path: Path) -> None:
    """A stored run with a fresh heartbeat, and a failed one with keep_failed, stay."""
    root, url = three_stored_runs(tmp_path)
    run_json = root / "fw" / "r1" / "logs" / "run.json"
    info = orjson.loads(run_json.read_bytes())
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    info.update(
        status="running",
        host="elsewhere",
        heartbeat_at=now,
        heartbeat_interval_s=30,
        ended_at=None,
        duration_s=None,
    )
    run_json.write_bytes(orjson.dumps(info))
    plan = plan_remote_prune(url, keep_last=0, keep_failed=True)
    kept = sorted((item.run.run_id, item.reason) for item in plan.kept)
    assert kept == [("r1", "running"), ("r2", "failed (kept)")]
    assert [item.run.run_id for item in plan.delete] == ["r3"]


def test_logs_only_keeps_archive_summary_and_run_json(tmp_path: Path) -> None:
    """Shipped logs go where the archive verifies; a run without one is kept."""
    runs = tmp_path / "runs"
    root = tmp_path / "store"
    url = f"file://{root}"
    archived = ok_run(runs, "r1")
    Archiver(archived).create_archive()
    upload_run(archived, url)
    # its logs shipped as well, as a live upload leaves them
    (root / "fw" / "r1" / "logs" / "step_001").mkdir(parents=True)
    (root / "fw" / "r1" / "logs" / "step_001" / "adapter.log").write_text("{}\n")
    upload_run(ok_run(runs, "r2"), url)
    plan = plan_remote_prune(url, keep_last=0, logs_only=True)
    assert [(i.run.run_id, i.objects) for i in plan.delete] == [
        ("r1", ("fw/r1/logs/step_001/adapter.log",))
    ]
    assert [i.run.run_id for i in plan.kept] == ["r2"]
    run_remote_prune(plan)
    assert {rel for rel in stored(root) if rel.startswith("fw/r1/")} == {
        "fw/r1/logs/run.json",
        "fw/r1/logs_summary.txt",
        "fw/r1/run.tar.gz",
        "fw/r1/run.tar.gz.sha256",
    }


def test_logs_only_refuses_a_stored_archive_that_fails_verification(
    tmp_path: Path,
) -> None:
    """A damaged stored archive keeps the run's logs, marked refused."""
    runs = tmp_path / "runs"
    root = tmp_path / "store"
    url = f"file://{root}"
    run_dir = ok_run(runs, "r1")
    Archiver(run_dir).create_archive()
    upload_run(run_dir, url)
    (root / "fw" / "r1" / "logs" / "step_001").mkdir(parents=True)
    (root / "fw" / "r1" / "logs" / "step_001" / "adapter.log").write_text("{}\n")
    archive = root / "fw" / "r1" / "run.tar.gz"
    data = bytearray(archive.read_bytes())
    data[-40] ^= 0xFF
    archive.write_bytes(bytes(data))
    [item] = plan_remote_prune(url, keep_last=0, logs_only=True).kept
    assert item.refused and "failed verification" in (item.reason or "")


def test_an_interrupted_prune_marker_is_reported_and_finished(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A marker left by a killed prune is named, then its objects deleted."""
    root, url = three_stored_runs(tmp_path)
    r2 = sorted(rel for rel in stored(root) if rel.startswith("fw/r2/"))
    # what a prune killed after deleting the first object leaves
    (root / "fw" / "r2" / MARKER).write_bytes(orjson.dumps({"objects": r2}))
    (root / r2[0]).unlink()
    plan = plan_remote_prune(url, keep_last=5)
    assert plan.leftovers == ["fw/r2"] and plan.delete == []
    assert main(["prune", url, "--keep-last", "5"]) == 0
    assert "fw/r2 is left from an interrupted prune" in capsys.readouterr().err
    assert main(["prune", url, "--keep-last", "5", "--yes"]) == 0
    assert not [rel for rel in stored(root) if rel.startswith("fw/r2/")]
    assert {rel.split("/")[1] for rel in stored(root)} == {"r1", "r3"}
