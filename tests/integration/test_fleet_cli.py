"""runlog errors, query and prune from the command line, in-process and as processes."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from runlog import Archiver
from runlog.cli import main
from tests.conftest import files_under
from tests.unit.fleet.runs import failing_run, ok_run

REPO = Path(__file__).resolve().parents[2]


def runlog(*args: str) -> subprocess.Popen[str]:
    """Start ``python -m runlog ARGS`` as a real process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNLOG_")}
    env["NO_COLOR"] = "1"
    return subprocess.Popen(
        [sys.executable, "-m", "runlog", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=env,
    )


def test_errors_prints_one_block_per_fingerprint_within_80_columns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each block: fingerprint, counts and times, an example, the show command."""
    runs = tmp_path / "runs"
    for n in (1, 2):
        failing_run(runs, f"r{n}", ValueError(f"item {n * 41} failed: " + "x" * 90))
    assert main(["errors", str(runs)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("ValueError: item <n> failed: xxx")
    assert out[1].startswith("    2 times in 2 runs, first ")
    assert out[2].startswith("    e.g. action_failed: ValueError: item 82 failed")
    assert out[3] == (
        f"    runlog show {runs}/fw/r2 --step 2 --level error --since "
        + out[3].rsplit(" ", 1)[1]
    )
    assert out[-1] == "2 failures, 1 fingerprint in 2 of 2 runs"
    assert all(len(line) <= 80 for line in out if "runlog show" not in line)
    # the command opens the newest occurrence
    assert main([*shlex.split(out[3])[1:], "--json"]) == 0
    shown = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert shown[0]["event"] == "action_failed" and shown[0]["run_id"] == "r2"


def test_errors_json_and_baseline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--json gives one document; --baseline marks and counts what is new."""
    runs = tmp_path / "runs"
    base = failing_run(runs, "r1", ValueError("bad item 7"))
    failing_run(runs, "r2", KeyError("missing 'price'"))
    assert main(["errors", str(runs), "--baseline", str(base), "--json"]) == 0
    doc = orjson.loads(capsys.readouterr().out)
    assert [(g["kind"], g["new"], g["count"]) for g in doc["groups"]] == [
        ("KeyError", True, 1),
        ("ValueError", False, 1),
    ]
    assert doc["runs_read"] == 2
    assert main(["errors", str(runs), "--baseline", str(base)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("NEW KeyError: <str>")
    assert out[-1].endswith(f"1 new since {base}")


def test_prune_dry_run_then_yes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --yes nothing goes; with it, one stderr line per deleted run."""
    runs = tmp_path / "runs"
    for run_id in ("r1", "r2", "r3"):
        ok_run(runs, run_id)
    before = files_under(runs)
    assert main(["prune", str(runs), "--keep-last", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in out[:2]] == [
        ["delete", f"{runs}/fw/r2"],
        ["delete", f"{runs}/fw/r1"],
    ]
    assert out[-1].startswith("dry run: would free ")
    assert out[-1].endswith("in 2 runs; nothing was deleted (add --yes to delete)")
    assert files_under(runs) == before
    assert main(["prune", str(runs), "--keep-last", "1", "--yes"]) == 0
    captured = capsys.readouterr()
    assert [line.split()[:3] for line in captured.err.splitlines()] == [
        ["runlog:", "deleted", f"{runs}/fw/r2"],
        ["runlog:", "deleted", f"{runs}/fw/r1"],
    ]
    assert captured.out.startswith("freed ")
    assert sorted(p.name for p in (runs / "fw").iterdir()) == ["r3"]


def test_prune_logs_only_refuses_a_corrupt_archive(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 1, the run kept with the reason; the good run loses only logs/."""
    runs = tmp_path / "runs"
    good, bad = ok_run(runs, "good"), ok_run(runs, "bad")
    for run_dir in (good, bad):
        Archiver(run_dir).create_archive()
    archive = bad / "run.tar.gz"
    data = bytearray(archive.read_bytes())
    data[-40] ^= 0xFF
    archive.write_bytes(bytes(data))
    code = main(["prune", str(runs), "--keep-last", "0", "--logs-only", "--yes"])
    out = capsys.readouterr().out
    assert code == 1
    assert f"keep    {bad}  (its archive failed verification" in out
    assert (bad / "logs").is_dir() and not (good / "logs").exists()


def test_an_interrupted_prune_is_reported_and_finished(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SIGKILL mid-prune: every run whole or announced as a leftover, then finished."""
    runs = tmp_path / "runs"
    names = ("r1", "r2", "r3")
    for run_id in names:
        step = runs / "fw" / run_id / "logs" / "step_001"
        step.mkdir(parents=True)
        (step.parent / "run.json").write_bytes(
            orjson.dumps(
                {
                    "run_id": run_id,
                    "framework": "fw",
                    "status": "success",
                    "started_at": "2025-01-01T00:00:00.000000Z",
                    "ended_at": "2025-01-01T00:01:00.000000Z",
                }
            )
        )
        for i in range(300):
            (step / f"c{i}.log").write_bytes(b"{}\n")
    before = {run_id: files_under(runs / "fw" / run_id) for run_id in names}
    # --pause holds each run moved aside for a while before deleting it
    child = runlog("prune", str(runs), "--keep-last", "0", "--yes", "--pause", "5")
    try:
        deadline = time.monotonic() + 30
        while not list((runs / "fw").glob(".runlog-pruning-*")):
            assert time.monotonic() < deadline and child.poll() is None
            time.sleep(0.001)
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.communicate()
    leftovers = sorted(p.name for p in (runs / "fw").glob(".runlog-pruning-*"))
    assert leftovers
    for run_id in names:
        run_dir = runs / "fw" / run_id
        if run_dir.exists():
            assert files_under(run_dir) == before[run_id]  # whole
        else:
            assert f".runlog-pruning-{run_id}" in leftovers  # announced below
    assert main(["prune", str(runs), "--keep-last", "0"]) == 0
    err = capsys.readouterr().err
    for name in leftovers:
        assert f"{runs}/fw/{name} is left from an interrupted prune" in err
    assert main(["prune", str(runs), "--keep-last", "0", "--yes"]) == 0
    assert list((runs / "fw").iterdir()) == []


def test_query_table_csv_and_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same query as an aligned table, CSV and JSON."""
    runs = tmp_path / "runs"
    ok_run(runs, "r1")
    sql = (
        "select run_id, count(*) as n from records where event = 'api_call' group by 1"
    )
    assert main(["query", sql, str(runs)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "run_id  n",
        "------  -",
        "r1      2",
        "(1 row)",
    ]
    assert main(["query", sql, str(runs), "--csv"]) == 0
    assert capsys.readouterr().out == "run_id,n\nr1,2\n"
    assert main(["query", sql, str(runs), "--json"]) == 0
    assert orjson.loads(capsys.readouterr().out) == [{"run_id": "r1", "n": 2}]


def test_query_without_the_extra_names_it(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without duckdb: exit 2 and the pip command on stderr."""
    monkeypatch.setitem(sys.modules, "duckdb", None)
    assert main(["query", "select 1", str(tmp_path)]) == 2
    assert "pip install 'runlog[query]'" in capsys.readouterr().err


def test_errors_reads_runs_in_object_storage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Runs uploaded to a file:// store, archived or not, group like local ones."""
    from runlog.remote import upload_run

    runs = tmp_path / "runs"
    store = f"file://{tmp_path}/store"
    upload_run(failing_run(runs, "r1", ValueError("bad item 7"), archive=True), store)
    upload_run(failing_run(runs, "r2", ValueError("bad item 8")), store)
    assert main(["errors", store, "--json", "--baseline", f"{store}/fw/r1"]) == 0
    doc = orjson.loads(capsys.readouterr().out)
    [group] = doc["groups"]
    assert (group["kind"], group["count"], group["runs"], group["new"]) == (
        "ValueError",
        2,
        2,
        False,
    )
    assert group["newest"]["run"] == f"{store}/fw/r2"


def test_errors_framework_and_since_select(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--framework keeps one framework's runs; --since 0s leaves nothing to count."""
    runs = tmp_path / "runs"
    failing_run(runs, "r1", ValueError("bad item 7"))
    failing_run(runs, "r2", KeyError("missing"), framework="other")
    assert main(["errors", str(runs), "--framework", "other"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("KeyError: <str>")
    assert out[-1] == "1 failure, 1 fingerprint in 1 of 1 run"
    assert main(["errors", str(runs), "--since", "0s"]) == 0
    assert capsys.readouterr().out == "0 failures, 0 fingerprints in 0 of 2 runs\n"
