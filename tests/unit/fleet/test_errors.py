"""runlog errors: failures of many runs grouped by fingerprint, each counted once."""

from __future__ import annotations

import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path

from runlog.fleet._errors import (
    collect_errors,
    dir_errors,
    error_keys,
    show_command,
)
from runlog.fleet._runs import local_runs
from runlog.reading._runs import resolve_run
from runlog.reading._source import ReadReport

from .runs import error_record, failing_run, ok_run


def varying(n: int) -> ValueError:
    """The same failure, its id, count and temp path different each time."""
    return ValueError(
        f"job {uuid.uuid4()} failed after {n} tries reading /tmp/tmp{n}x{n}/in.json"
    )


def test_same_failure_differing_in_ids_numbers_and_paths_is_one_group(
    tmp_path: Path,
) -> None:
    """Three runs failing alike but for ids, numbers and temp paths: one group."""
    runs = tmp_path / "runs"
    for n in (1, 2, 3):
        failing_run(runs, f"r{n}", varying(n * 17))
    report = collect_errors(local_runs(runs))
    assert len(report.groups) == 1
    group = report.groups[0]
    assert group.fingerprint.kind == "ValueError"
    assert group.fingerprint.message == (
        "job <uuid> failed after <n> tries reading <path>"
    )
    assert group.fingerprint.frame == "runs.py in fail"
    # logged by the user, re-reported by step_end and run_end: once per run
    assert (group.count, len(group.runs)) == (3, 3)
    assert group.newest is not None and group.newest.run.endswith("r3")
    assert group.newest.step == 2 and group.newest.component == "adapter"
    assert group.newest.message.startswith("action_failed: ValueError: job ")


def test_different_exception_types_are_two_groups(tmp_path: Path) -> None:
    """A ValueError and a KeyError with the same text make two groups."""
    runs = tmp_path / "runs"
    failing_run(runs, "r1", ValueError("bad item 7"))
    failing_run(runs, "r2", KeyError("bad item 7"))
    report = collect_errors(local_runs(runs))
    assert sorted(g.fingerprint.kind for g in report.groups) == [
        "KeyError",
        "ValueError",
    ]
    assert all(g.count == 1 for g in report.groups)


def test_baseline_marks_fingerprints_it_lacks_as_new(tmp_path: Path) -> None:
    """Against a baseline run, only a fingerprint it never had is NEW, listed first."""
    runs = tmp_path / "runs"
    base = failing_run(runs, "r1", ValueError("bad item 7"))
    failing_run(runs, "r2", ValueError("bad item 8"))
    failing_run(runs, "r3", KeyError("missing 'price'"))
    keys = error_keys(resolve_run(str(base)))
    report = collect_errors(local_runs(runs), baseline=keys)
    assert [(g.fingerprint.kind, g.is_new, g.count) for g in report.groups] == [
        ("KeyError", True, 1),
        ("ValueError", False, 2),
    ]


def test_a_retry_that_fails_again_is_a_second_failure(tmp_path: Path) -> None:
    """Two failed attempts of step 2 count twice; their step_end records do not."""
    runs = tmp_path / "runs"
    failing_run(runs, "r1", ValueError("bad item 7"), retries=1)
    [group] = collect_errors(local_runs(runs)).groups
    assert group.count == 2


def test_a_step_end_failure_nobody_logged_counts_once(tmp_path: Path) -> None:
    """An exception only step_end and run_end report is one failure, from step_end."""
    runs = tmp_path / "runs"
    run_dir = failing_run(runs, "r1", ValueError("bad item 7"))
    # drop the user's own record: only the lifecycle records remain
    adapter = run_dir / "logs" / "step_002" / "adapter.log"
    adapter.unlink()
    [group] = collect_errors(local_runs(runs)).groups
    assert group.count == 1
    assert group.newest is not None and group.newest.component == "orchestrator"
    assert group.newest.message == "ValueError: bad item 7"


def test_archived_runs_are_read_in_place(tmp_path: Path) -> None:
    """Runs kept only as run.tar.gz / run.tar.zst are grouped like live ones."""
    runs = tmp_path / "runs"
    for n, fmt in ((1, "gz"), (2, "zst")):
        run_dir = failing_run(
            runs, f"r{n}", varying(n), archive=True, archive_format=fmt
        )
        shutil.rmtree(run_dir / "logs")
    [group] = collect_errors(local_runs(runs)).groups
    assert (group.count, len(group.runs)) == (2, 2)
    assert not list(runs.rglob("*.log"))  # nothing was extracted


def test_only_lines_marked_error_are_read_and_bad_ones_counted(tmp_path: Path) -> None:
    """An info record quoting the mark is no error; a broken marked line is counted."""
    logs = tmp_path / "logs"
    (logs / "step_001").mkdir(parents=True)
    (logs / "step_001" / "adapter.log").write_bytes(
        error_record(level="info", event='said "level":"error"')
        + b'{"ts":"x","level":"error", broken\n'
        + error_record(ts="2025-01-01T00:00:01.000000Z", event="real")
        + error_record(ts="2025-01-01T00:00:02.000000Z", level="critical")
    )
    report = ReadReport()
    found = dir_errors(logs, None, report)
    assert [(e.record["event"], e.location) for e in found] == [
        ("real", "step_001/adapter.log:3"),
        ("boom", "step_001/adapter.log:4"),
    ]
    assert (report.malformed, report.where) == (1, ["step_001/adapter.log:2"])


def test_since_leaves_out_older_records_and_ended_runs(tmp_path: Path) -> None:
    """With since after every record, nothing is counted and no run is read."""
    runs = tmp_path / "runs"
    failing_run(runs, "r1", ValueError("bad item 7"))
    ok_run(runs, "r2")
    report = collect_errors(local_runs(runs), since=datetime.now(UTC))
    assert (report.groups, report.runs_read) == ([], 0)


def test_an_unreadable_run_is_reported_and_the_others_still_counted(
    tmp_path: Path,
) -> None:
    """A run whose archive is garbage is listed as unreadable, not fatal."""
    runs = tmp_path / "runs"
    failing_run(runs, "r1", ValueError("bad item 7"))
    broken = runs / "fw" / "r2"
    broken.mkdir(parents=True)
    (broken / "run.tar.gz").write_bytes(b"not gzip at all")
    report = collect_errors(local_runs(runs))
    assert [g.count for g in report.groups] == [1]
    assert [run for run, _ in report.unreadable] == [str(broken)]


def test_show_command_opens_the_newest_occurrence(tmp_path: Path) -> None:
    """The command names the run, the step, the level and the time of the record."""
    runs = tmp_path / "runs"
    failing_run(runs, "r1", ValueError("bad item 7"))
    [group] = collect_errors(local_runs(runs)).groups
    assert group.newest is not None
    assert show_command(group.newest) == (
        f"runlog show {runs}/fw/r1 --step 2 --level error --since {group.last_seen}"
    )
