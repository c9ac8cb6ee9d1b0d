"""ls at scale (#16): summary headers, summary-only runs, the ls cache, ordering."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from runlog import Archiver
from runlog.errors import RunNotFoundError
from runlog.reading._ls_cache import CACHE_DIR, CACHE_FILE
from runlog.reading._runs import describe_run, resolve_run, scan_runs
from runlog.reading._summary_head import (
    parse_duration,
    parse_summary_head,
    read_summary_head,
)

REPO = Path(__file__).resolve().parents[3]
LATER_NS = 1_000_000_000  # how much after its logs Run.finish writes the summary


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real run made by `runlog demo` in its own process."""
    runs = tmp_path_factory.mktemp("demo") / "runs"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNLOG_")}
    subprocess.run(
        [sys.executable, "-m", "runlog", "demo", "--runs-dir", str(runs)],
        check=True,
        capture_output=True,
        env={**env, "PYTHONPATH": str(REPO)},
        timeout=60,
    )
    (run,) = (runs / "demo").iterdir()
    return run


def copy_run(demo_run: Path, runs: Path, run_id: str, **info: Any) -> Path:
    """A copy of the demo run as *runs*/demo/*run_id*, run.json updated with *info*."""
    run = runs / "demo" / run_id
    shutil.copytree(demo_run, run, symlinks=True)
    data = orjson.loads((run / "logs" / "run.json").read_bytes())
    old_id = data["run_id"]
    data.update(run_id=run_id, **info)
    (run / "logs" / "run.json").write_bytes(orjson.dumps(data))
    summary = run / "logs_summary.txt"
    summary.write_text(summary.read_text().replace(old_id, run_id))
    age_summary(run)
    return run


def age_summary(run: Path, *, seconds: float = 10.0) -> None:
    """Every file of *run* *seconds* old, its summary written a second after."""
    moment = datetime.now(UTC).timestamp() - seconds
    for path in [run, *run.rglob("*")]:
        os.utime(path, (moment, moment), follow_symlinks=False)
    os.utime(run / "logs_summary.txt", (moment + 1, moment + 1))


def row_json(runs: Path, **kwargs: Any) -> list[dict[str, Any]]:
    """scan_runs(runs) as JSON rows, paths left out."""
    return [
        {k: v for k, v in row.as_json().items() if k != "path"}
        for row in scan_runs(runs, **kwargs)
    ]


# --- the summary header ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("181ms", 0.181),
        ("2.5s", 2.5),
        ("2m 34s", 154.0),
        ("1h 02m 05s", 3725.0),
        ("1d 01h", 90000.0),
        ("-", None),
        ("5 parsecs", None),
        ("", None),
    ],
)
def test_parse_duration_reads_what_format_duration_prints(
    text: str, seconds: float | None
) -> None:
    """Durations as the summary prints them read back; anything else is None."""
    assert parse_duration(text) == (
        pytest.approx(seconds) if seconds is not None else None
    )


def test_the_header_of_a_real_summary_is_read_back(demo_run: Path) -> None:
    """Status, run id, framework, start, steps and counts come from the header."""
    head = read_summary_head(demo_run / "logs_summary.txt")
    info = orjson.loads((demo_run / "logs" / "run.json").read_bytes())
    assert (head.status, head.run_id, head.framework) == (
        "success",
        info["run_id"],
        "demo",
    )
    assert head.started is not None
    assert head.started.isoformat().startswith(info["started_at"][:19])
    assert (head.steps, head.errors, head.warnings) == (5, 2, 3)


def test_totals_below_the_header_are_not_read_as_the_header() -> None:
    """A header without counts stays without: the Totals section is not used."""
    head = parse_summary_head(
        "Status: FAILED\n\n== Totals ==\nSteps: 9\nErrors: 7 | warnings: 1\n"
    )
    assert head is not None
    assert (head.status, head.steps, head.errors) == ("failed", None, None)


# --- summary-only runs (a fresh clone) ----------------------------------------------


def test_a_run_with_only_its_summary_is_listed_from_it(
    demo_run: Path, tmp_path: Path
) -> None:
    """No logs/, no archive: status and counts from the header, source summary."""
    run = tmp_path / "runs" / "demo" / demo_run.name
    run.mkdir(parents=True)
    shutil.copy(demo_run / "logs_summary.txt", run)
    (row,) = scan_runs(tmp_path / "runs")
    assert (row.run_id, row.framework, row.status, row.source) == (
        demo_run.name,
        "demo",
        "success",
        "summary",
    )
    assert (row.steps, row.errors, row.warnings, row.archived) == (5, 2, 3, False)
    assert row.as_json()["source"] == "summary"
    assert row.duration_s is not None and row.duration_s < 5


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "has no 'Status:' line"),
        (b"Status: SUCC", "has no 'Status:' line"),
        (bytes(range(256)) * 64, "has no 'Status:' line"),
        (b"Status: \x1b[2J\n", "has no 'Status:' line"),
    ],
)
def test_a_hostile_summary_alone_is_an_unreadable_row(
    content: bytes, reason: str, tmp_path: Path
) -> None:
    """Empty, truncated, binary or escape-laden summaries: UNREADABLE, with why."""
    run = tmp_path / "runs" / "fw" / "r1"
    run.mkdir(parents=True)
    (run / "logs_summary.txt").write_bytes(content)
    (row,) = scan_runs(tmp_path / "runs")
    assert row.status == "unreadable"
    assert row.reason is not None and reason in row.reason
    assert str(run / "logs_summary.txt") in row.reason


def test_a_summary_that_is_a_fifo_or_huge_does_not_hang_or_fill_memory(
    tmp_path: Path,
) -> None:
    """A FIFO is unreadable at once; of a 50 MB summary only the head is read."""
    runs = tmp_path / "runs"
    (runs / "fw" / "fifo").mkdir(parents=True)
    os.mkfifo(runs / "fw" / "fifo" / "logs_summary.txt")
    (runs / "fw" / "big").mkdir(parents=True)
    with (runs / "fw" / "big" / "logs_summary.txt").open("wb") as handle:
        handle.write(b"Status: FAILED\nSteps: 2\nErrors: 1 | warnings: 0\n")
        handle.truncate(50 << 20)
    rows = {row.run_id: row for row in scan_runs(runs)}
    assert rows["fifo"].status == "unreadable"
    assert "is not a regular file" in (rows["fifo"].reason or "")
    assert (rows["big"].status, rows["big"].steps, rows["big"].errors) == (
        "failed",
        2,
        1,
    )


# --- the summary fast path ----------------------------------------------------------


def test_the_summary_fast_path_gives_the_row_counting_the_logs_gives(
    demo_run: Path, tmp_path: Path
) -> None:
    """A run listed from its fresh summary equals the same run with its logs counted."""
    runs = tmp_path / "runs"
    copy_run(demo_run, runs, "fast")
    slow = copy_run(demo_run, runs, "slow")
    (slow / "logs_summary.txt").unlink()
    fast_row, slow_row = sorted(row_json(runs), key=lambda row: row["run_id"])
    assert fast_row.pop("run_id") == "fast"
    assert slow_row.pop("run_id") == "slow"
    assert fast_row == slow_row


def test_a_late_record_makes_ls_count_the_logs_again(
    demo_run: Path, tmp_path: Path
) -> None:
    """An error logged after the summary (combined.log grows too) is counted."""
    run = copy_run(demo_run, tmp_path / "runs", "late")
    assert scan_runs(tmp_path / "runs", cache=True)[0].errors == 2
    record = orjson.dumps({"ts": "2099-01-01T00:00:00.000000Z", "level": "error"})
    with (run / "logs" / "step_001" / "late.log").open("ab") as handle:
        handle.write(record + b"\n")
    with (run / "logs" / "combined.log").open("ab") as handle:
        handle.write(b"late error\n")
    assert scan_runs(tmp_path / "runs", cache=True)[0].errors == 3


def test_a_summary_of_another_status_is_not_used(
    demo_run: Path, tmp_path: Path
) -> None:
    """run.json says failed, the summary success: the logs are counted, failed shown."""
    run = copy_run(demo_run, tmp_path / "runs", "r1", status="failed")
    age_summary(run)
    (row,) = scan_runs(tmp_path / "runs")
    assert (row.status, row.errors, row.warnings) == ("failed", 2, 3)


# --- the cache ----------------------------------------------------------------------


def test_a_second_listing_reads_rows_from_the_cache(
    demo_run: Path, tmp_path: Path
) -> None:
    """The cache holds finished runs; the second listing equals the first."""
    runs = tmp_path / "runs"
    for n in range(3):
        copy_run(demo_run, runs, f"r{n}")
    first = row_json(runs, cache=True)
    cached = orjson.loads((runs / CACHE_DIR / CACHE_FILE).read_bytes())
    assert sorted(cached["runs"]) == ["demo/r0", "demo/r1", "demo/r2"]
    assert row_json(runs, cache=True) == first
    assert row_json(runs) == first


@pytest.mark.parametrize("change", ["run.json", "summary", "archive", "combined"])
def test_the_cache_sees_every_change_a_row_depends_on(
    change: str, demo_run: Path, tmp_path: Path
) -> None:
    """A rewritten run.json or summary, a removed archive, a grown log: new row."""
    runs = tmp_path / "runs"
    run = copy_run(demo_run, runs, "r1")
    before = row_json(runs, cache=True)[0]
    if change == "run.json":
        info = orjson.loads((run / "logs" / "run.json").read_bytes())
        info["status"] = "interrupted"
        (run / "logs" / "run.json").write_bytes(orjson.dumps(info))
        expected = {"status": "interrupted"}
    elif change == "summary":
        summary = run / "logs_summary.txt"
        text = summary.read_text().replace("Errors: 2 |", "Errors: 9 |", 1)
        summary.write_text(text)
        os.utime(summary, None)
        expected = {"errors": 9}
    elif change == "archive":
        (run / "run.tar.gz").unlink()
        expected = {"archived": False}
    else:
        with (run / "logs" / "step_002" / "adapter.log").open("ab") as handle:
            handle.write(b'{"level":"warning"}\n')
        with (run / "logs" / "combined.log").open("ab") as handle:
            handle.write(b"one more\n")
        expected = {"warnings": 4}
    assert row_json(runs, cache=True)[0] == {**before, **expected}


def test_a_running_run_is_never_cached_and_crashes_without_a_file_change(
    tmp_path: Path,
) -> None:
    """A stale heartbeat flips running to crashed at the next listing, cache or not."""
    runs = tmp_path / "runs"
    logs = runs / "fw" / "live" / "logs"
    logs.mkdir(parents=True)
    beat = datetime(2025, 10, 20, 12, 0, tzinfo=UTC)
    info = {
        "run_id": "live",
        "framework": "fw",
        "status": "running",
        "started_at": "2025-10-20T11:00:00.000000Z",
        "heartbeat_at": beat.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "heartbeat_interval_s": 30,
        "host": f"not-{socket.gethostname()}",
    }
    (logs / "run.json").write_bytes(orjson.dumps(info))
    (runs / "fw" / "live" / "logs_summary.txt").write_text("Status: INCOMPLETE\n")
    soon = scan_runs(runs, now=beat + timedelta(seconds=10), cache=True)
    late = scan_runs(runs, now=beat + timedelta(seconds=200), cache=True)
    assert [soon[0].status, late[0].status] == ["running", "crashed"]
    cache = runs / CACHE_DIR / CACHE_FILE
    assert not cache.exists() or orjson.loads(cache.read_bytes())["runs"] == {}


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        b"[]",
        orjson.dumps({"format": "runlog-ls-cache", "version": 1, "runs": []}),
        orjson.dumps(
            {
                "format": "runlog-ls-cache",
                "version": 1,
                "runs": {
                    "demo/r1": [
                        0,
                        ["x", "y", "running", None, 1, 1, 1, 1, True, "logs"],
                        "",
                    ]
                },
            }
        ),
        orjson.dumps(
            {"format": "runlog-ls-cache", "version": 1, "runs": {"demo/r1": "\x1b"}}
        ),
    ],
)
def test_a_damaged_or_hostile_cache_is_ignored_and_rebuilt(
    content: bytes, demo_run: Path, tmp_path: Path
) -> None:
    """Garbage, wrong shapes or a forged running row: the real row, a new cache."""
    runs = tmp_path / "runs"
    copy_run(demo_run, runs, "r1")
    expected = row_json(runs)
    (runs / CACHE_DIR).mkdir()
    (runs / CACHE_DIR / CACHE_FILE).write_bytes(content)
    assert row_json(runs, cache=True) == expected
    rebuilt = orjson.loads((runs / CACHE_DIR / CACHE_FILE).read_bytes())
    assert list(rebuilt["runs"]) == ["demo/r1"]
    assert row_json(runs, cache=True) == expected


def test_a_cache_that_cannot_be_written_leaves_the_listing_whole(
    demo_run: Path, tmp_path: Path
) -> None:
    """A file where the cache directory goes: ls lists, and writes nothing."""
    runs = tmp_path / "runs"
    copy_run(demo_run, runs, "r1")
    (runs / CACHE_DIR).write_bytes(b"in the way")
    assert [row["run_id"] for row in row_json(runs, cache=True)] == ["r1"]
    assert (runs / CACHE_DIR).read_bytes() == b"in the way"


def test_files_changed_just_now_are_not_cached(demo_run: Path, tmp_path: Path) -> None:
    """Within the racy window of a coarse file clock a row is not kept; later it is."""
    runs = tmp_path / "runs"
    run = copy_run(demo_run, runs, "r1")
    os.utime(run / "logs" / "run.json", None)  # written just now
    os.utime(run / "logs_summary.txt", None)
    scan_runs(runs, cache=True)
    assert not (runs / CACHE_DIR / CACHE_FILE).exists()
    age_summary(run)
    scan_runs(runs, cache=True)
    cached = orjson.loads((runs / CACHE_DIR / CACHE_FILE).read_bytes())
    assert list(cached["runs"]) == ["demo/r1"]


def test_the_cache_directory_is_ignored_by_git(demo_run: Path, tmp_path: Path) -> None:
    """After ls, `git status` shows the run's summary, never the cache."""
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True, env=env)
    runs = tmp_path / "runs"
    copy_run(demo_run, runs, "r1")
    scan_runs(runs, cache=True)
    assert (runs / CACHE_DIR / CACHE_FILE).is_file()
    done = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all", "--ignored=no"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    assert CACHE_DIR not in done.stdout
    assert "runs/demo/r1/logs_summary.txt" in done.stdout


# --- order --------------------------------------------------------------------------


def test_runs_started_in_the_same_second_are_listed_in_start_order(
    tmp_path: Path,
) -> None:
    """Newest first by run.json's microseconds, whatever the run ids say."""
    runs = tmp_path / "runs"
    for run_id, micros in (("a", 900000), ("b", 100000), ("c", 500000)):
        logs = runs / "fw" / run_id / "logs"
        logs.mkdir(parents=True)
        info = {
            "run_id": run_id,
            "framework": "fw",
            "status": "success",
            "started_at": f"2025-10-20T12:00:00.{micros:06d}Z",
            "duration_s": 1.0,
        }
        (logs / "run.json").write_bytes(orjson.dumps(info))
    assert [row.run_id for row in scan_runs(runs)] == ["a", "c", "b"]


def test_describe_run_of_a_summary_only_directory(
    demo_run: Path, tmp_path: Path
) -> None:
    """describe_run of a directory with only a summary gives the summary's row."""
    run = tmp_path / "demo" / "x"
    run.mkdir(parents=True)
    shutil.copy(demo_run / "logs_summary.txt", run)
    row = describe_run(run)
    assert (row.source, row.status, row.errors) == ("summary", "success", 2)


def test_a_row_is_read_from_the_cache_while_its_key_matches(
    demo_run: Path, tmp_path: Path
) -> None:
    """Nothing the row depends on changed: the stored row is used as it is."""
    runs = tmp_path / "runs"
    copy_run(demo_run, runs, "r1")
    assert scan_runs(runs, cache=True)[0].errors == 2
    path = runs / CACHE_DIR / CACHE_FILE
    cached = orjson.loads(path.read_bytes())
    cached["runs"]["demo/r1"][1][6] = 77  # the errors column
    path.write_bytes(orjson.dumps(cached))
    assert scan_runs(runs, cache=True)[0].errors == 77
    assert scan_runs(runs)[0].errors == 2


def test_show_of_a_summary_only_run_says_only_its_summary_is_here(
    demo_run: Path, tmp_path: Path
) -> None:
    """resolve_run of a fresh clone's run names the summary that is there."""
    run = tmp_path / "demo" / "x"
    run.mkdir(parents=True)
    shutil.copy(demo_run / "logs_summary.txt", run)
    with pytest.raises(RunNotFoundError, match=r"only its logs_summary\.txt is here"):
        resolve_run(str(run))


def test_an_archive_only_run_is_cached_and_an_archive_rewritten_in_place_shows(
    demo_run: Path, tmp_path: Path
) -> None:
    """logs/ gone: the row from the archive is kept; new bytes in place, new row."""
    runs = tmp_path / "runs"
    kept = copy_run(demo_run, runs, "kept")
    other = copy_run(demo_run, runs, "other", status="failed")
    Archiver(other).create_archive()
    for run in (kept, other):
        shutil.rmtree(run / "logs")
        (run / "logs_summary.txt").unlink()
        age_summary_free(run)
    first = row_json(runs, cache=True)
    cached = orjson.loads((runs / CACHE_DIR / CACHE_FILE).read_bytes())["runs"]
    assert sorted(cached) == ["demo/kept", "demo/other"]
    assert cached["demo/kept"][2] == "run.tar.gz"
    assert row_json(runs, cache=True) == first
    with (kept / "run.tar.gz").open("r+b") as handle:  # same inode, new bytes
        handle.write((other / "run.tar.gz").read_bytes())
        handle.truncate()
    statuses = sorted(row["status"] for row in row_json(runs, cache=True))
    assert statuses == ["failed", "failed"]


def age_summary_free(run: Path, *, seconds: float = 10.0) -> None:
    """Every file of *run* (which has no summary) *seconds* old."""
    moment = datetime.now(UTC).timestamp() - seconds
    for path in [run, *run.rglob("*")]:
        os.utime(path, (moment, moment), follow_symlinks=False)


def test_a_crashed_runs_log_counts_are_cached_until_a_log_file_changes(
    demo_run: Path, tmp_path: Path
) -> None:
    """Counts read from the logs are kept; a record appended anywhere is counted."""
    runs = tmp_path / "runs"
    beat = "2025-10-20T12:00:00.000000Z"
    run = copy_run(
        demo_run,
        runs,
        "dead",
        status="running",
        heartbeat_at=beat,
        host=f"not-{socket.gethostname()}",
    )
    age_summary(run)
    first = row_json(runs, cache=True)
    assert (first[0]["status"], first[0]["errors"]) == ("crashed", 2)
    cached = orjson.loads((runs / CACHE_DIR / CACHE_FILE).read_bytes())
    assert list(cached["logs"]) == ["demo/dead"]
    assert cached["runs"] == {}  # its row is made anew each time
    assert row_json(runs, cache=True) == first
    with (run / "logs" / "step_002" / "adapter.log").open("ab") as handle:
        handle.write(b'{"ts":"2099-01-01T00:00:00.000000Z","level":"error"}\n')
    again = row_json(runs, cache=True)
    assert again[0]["errors"] == 3
    assert again[0]["duration_s"] > first[0]["duration_s"]  # to its last record


def test_a_live_runs_log_counts_are_not_cached(tmp_path: Path) -> None:
    """Log files written just now: counted at every listing, never kept."""
    runs = tmp_path / "runs"
    step = runs / "fw" / "live" / "logs" / "step_001"
    step.mkdir(parents=True)
    (step / "adapter.log").write_bytes(
        b'{"ts":"2025-10-20T12:00:00Z","level":"error"}\n'
    )
    assert scan_runs(runs, cache=True)[0].errors == 1
    cache = runs / CACHE_DIR / CACHE_FILE
    assert not cache.exists() or orjson.loads(cache.read_bytes())["logs"] == {}


@pytest.mark.parametrize(
    ("change", "status", "errors"),
    [
        ("no run.json", "success", 2),  # from run_end in run.log
        ("run.json not json", "success", 2),
        ("run.json a fifo", "unreadable", None),
        ("summary a fifo", "success", 2),
        ("summary not a summary", "success", 2),
    ],
)
def test_a_run_the_fast_path_cannot_take_is_described_the_slow_way(
    change: str,
    status: str,
    errors: int | None,
    demo_run: Path,
    tmp_path: Path,
) -> None:
    """No, broken or hostile run.json or summary: the logs decide, or UNREADABLE."""
    runs = tmp_path / "runs"
    run = copy_run(demo_run, runs, "r1")
    run_json = run / "logs" / "run.json"
    summary = run / "logs_summary.txt"
    if change == "no run.json":
        run_json.unlink()
    elif change == "run.json not json":
        run_json.write_bytes(b"{not json")
    elif change == "run.json a fifo":
        run_json.unlink()
        os.mkfifo(run_json)
    elif change == "summary a fifo":
        summary.unlink()
        os.mkfifo(summary)
    else:
        summary.write_text("Status: SUCCESS\nnothing else\n")
    age_summary(run)
    (row,) = scan_runs(runs, cache=True)
    assert (row.status, row.errors) == (status, errors)
