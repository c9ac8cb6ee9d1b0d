"""Reading a run's records from its directory or its archive: runlog.reading."""

from __future__ import annotations

import io
import os
import re
import socket
import tarfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from runlog import LogContext, get_logger
from runlog.errors import RunlogError, RunNotFoundError
from runlog.reading._follow import Follower
from runlog.reading._merge import last_records, read_records
from runlog.reading._runs import describe_run, resolve_run, scan_runs
from runlog.reading._source import (
    Filters,
    ReadReport,
    RunSource,
    classify,
    list_log_files,
    parse_level,
    parse_when,
)
from tests.conftest import files_under

T0 = datetime(2025, 10, 20, 14, 0, 0, tzinfo=UTC)


def ts(seconds: float) -> str:
    """The record timestamp *seconds* after T0."""
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def record(
    at: float,
    event: str,
    *,
    step: int | None = None,
    component: str = "adapter",
    level: str = "info",
    **extra: Any,
) -> dict[str, Any]:
    """A record in the SPEC §2 shape."""
    return {
        "ts": ts(at),
        "level": level,
        "event": event,
        "logger": "test",
        "component": component,
        "run_id": "r1",
        "framework": "fw",
        "step": step,
        **extra,
    }


def write(path: Path, *records: dict[str, Any], raw: bytes = b"") -> Path:
    """Append *records* as JSON lines (then *raw* bytes) to *path*."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as handle:
        for rec in records:
            handle.write(orjson.dumps(rec) + b"\n")
        handle.write(raw)
    return path


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A hand-made run: run.log, reconciliation.log, steps 1, 2 and 10."""
    run = tmp_path / "runs" / "fw" / "r1"
    logs = run / "logs"
    write(logs / "run.log", record(0, "run_start", component="orchestrator"))
    write(
        logs / "step_001" / "orchestrator.log",
        record(1, "step_start", step=1, component="orchestrator"),
        record(5, "step_end", step=1, component="orchestrator", status="success"),
    )
    write(
        logs / "step_001" / "adapter.log",
        record(2, "llm_request", step=1, total_tokens=30),
        record(4, "rate_limited", step=1, level="warning", retry_in=2),
    )
    write(
        logs / "step_002" / "validator.log",
        record(
            6,
            "schema mismatch",
            step=2,
            component="validator",
            level="error",
            exception="Traceback (most recent call last):\nValueError: price",
        ),
    )
    write(
        logs / "step_010" / "adapter.log",
        record(8, "llm_request", step=10, total_tokens=5),
    )
    write(
        logs / "reconciliation.log",
        record(7, "reconciled", step=2, component="reconciliation"),
    )
    write(logs / "run.log", record(9, "run_end", component="orchestrator"))
    (logs / "combined.log").write_text("not json at all\n")
    (logs / ".run.json.123.tmp").write_text("{")
    return run


def events(entries: Any) -> list[str]:
    """The events of *entries*, in order."""
    return [entry.record["event"] for entry in entries]


def test_classify_accepts_only_runlog_file_shapes() -> None:
    """Only run.log, <component>.log and step_NNN/<component>.log are log files."""
    assert classify("run.log") is not None
    assert classify("step_003/adapter.log") == classify("step_003/adapter.log")
    found = classify("step_1234/adapter.log")
    assert found is not None
    assert found.step == 1234
    assert found.component == "adapter"
    for bad in (
        "combined.log",
        "run.json",
        ".hidden.log",
        "../evil.log",
        "/etc/passwd.log",
        "step_003/../../evil.log",
        "step_003/sub/deep.log",
        "step_03/adapter.log",
        "other/adapter.log",
        "step_003/a b.log",
    ):
        assert classify(bad) is None, bad


def test_list_log_files_orders_run_level_then_steps_numerically(run_dir: Path) -> None:
    """Run-level files come first, then steps by number (step_010 after step_002)."""
    rels = [f.rel for f in list_log_files(run_dir / "logs")]
    assert rels == [
        "reconciliation.log",
        "run.log",
        "step_001/adapter.log",
        "step_001/orchestrator.log",
        "step_002/validator.log",
        "step_010/adapter.log",
    ]


def test_read_records_merges_every_file_in_time_order(run_dir: Path) -> None:
    """Records of all files come out merged by timestamp, each with its file:line."""
    entries = list(read_records(RunSource(run_dir)))
    assert events(entries) == [
        "run_start",
        "step_start",
        "llm_request",
        "rate_limited",
        "step_end",
        "schema mismatch",
        "reconciled",
        "llm_request",
        "run_end",
    ]
    assert [e.ts for e in entries] == sorted(e.ts for e in entries)
    assert entries[3].location == "step_001/adapter.log:2"
    assert entries[-1].location == "run.log:2"


def test_step_filter_keeps_run_level_component_records_of_that_step(
    run_dir: Path,
) -> None:
    """--step 2 shows step_002/ and reconciliation.log's step-2 records, not run.log."""
    entries = read_records(RunSource(run_dir), Filters(steps=frozenset({2})))
    assert events(entries) == ["schema mismatch", "reconciled"]


def test_component_filter_reads_run_log_too(run_dir: Path) -> None:
    """--component orchestrator finds it in step files and in run.log."""
    entries = read_records(
        RunSource(run_dir), Filters(components=frozenset({"orchestrator"}))
    )
    assert events(entries) == ["run_start", "step_start", "step_end", "run_end"]


def test_level_filter_keeps_that_level_and_above(run_dir: Path) -> None:
    """--level warning keeps warnings and errors only."""
    entries = read_records(RunSource(run_dir), Filters(min_level=parse_level("warn")))
    assert events(entries) == ["rate_limited", "schema mismatch"]


def test_grep_searches_the_line_and_the_traceback(run_dir: Path) -> None:
    """--grep matches key=value text and traceback lines, not only the event."""
    source = RunSource(run_dir)
    by_value = read_records(source, Filters(pattern=re.compile(r"retry_in=2")))
    assert events(by_value) == ["rate_limited"]
    by_traceback = read_records(source, Filters(pattern=re.compile("ValueError")))
    assert events(by_traceback) == ["schema mismatch"]


def test_grep_takes_a_step_that_is_a_list_object_or_bool(tmp_path: Path) -> None:
    """--grep reads records whose step is [1, 2], {"n": 1} or True as their text."""
    run = tmp_path / "runs" / "fw" / "odd"
    path = run / "logs" / "step_001" / "adapter.log"
    write(path, record(1, "one", step=1), record(2, "listed", step=[1, 2]))  # type: ignore[arg-type]
    write(path, record(3, "object", step={"n": 1}), record(4, "flag", step=True))  # type: ignore[arg-type]
    source = RunSource(run)
    everything = read_records(source, Filters(pattern=re.compile("step=")))
    assert events(everything) == ["one", "listed", "object", "flag"]
    # True must not read as step 1, whose line was made first
    assert events(read_records(source, Filters(pattern=re.compile("step=1 ")))) == [
        "one"
    ]
    flagged = read_records(source, Filters(pattern=re.compile("step=True")))
    assert events(flagged) == ["flag"]
    listed = read_records(source, Filters(pattern=re.compile(r"step=\[1, 2\]")))
    assert events(listed) == ["listed"]


def test_since_and_until_bound_the_window(run_dir: Path) -> None:
    """--since/--until keep records inside the closed interval."""
    filters = Filters(since=T0 + timedelta(seconds=4), until=T0 + timedelta(seconds=6))
    entries = read_records(RunSource(run_dir), filters)
    assert events(entries) == ["rate_limited", "step_end", "schema mismatch"]


def test_parse_when_accepts_iso_dates_and_ages() -> None:
    """Bounds are RFC 3339, a date (UTC midnight) or an age before now."""
    now = datetime(2025, 10, 20, 12, 0, tzinfo=UTC)
    assert parse_when("2025-10-20T14:23:45Z") == datetime(
        2025, 10, 20, 14, 23, 45, tzinfo=UTC
    )
    assert parse_when("2025-10-20") == datetime(2025, 10, 20, tzinfo=UTC)
    assert parse_when("2025-10-20T16:00+02:00") == datetime(
        2025, 10, 20, 14, tzinfo=UTC
    )
    assert parse_when("90s", now=now) == now - timedelta(seconds=90)
    assert parse_when("2h", now=now) == now - timedelta(hours=2)
    with pytest.raises(RunlogError, match="'yesterday'"):
        parse_when("yesterday")
    with pytest.raises(RunlogError, match="'loud'"):
        parse_level("loud")


def test_malformed_lines_are_counted_and_located(run_dir: Path) -> None:
    """A garbage line is skipped and reported with its file:line; others still read."""
    write(
        run_dir / "logs" / "step_001" / "metrics.log",
        record(3, "before", step=1, component="metrics"),
        raw=b'{"broken\n[1, 2]\n',
    )
    write(
        run_dir / "logs" / "step_001" / "metrics.log",
        record(3.5, "after", step=1, component="metrics"),
    )
    report = ReadReport()
    entries = read_records(
        RunSource(run_dir), Filters(components=frozenset({"metrics"})), report
    )
    assert events(entries) == ["before", "after"]
    assert report.malformed == 2
    assert report.where == ["step_001/metrics.log:2", "step_001/metrics.log:3"]


def test_partial_last_line_of_a_live_file_is_not_an_error(run_dir: Path) -> None:
    """A last line still being written is left out silently; a whole one is read."""
    path = run_dir / "logs" / "step_002" / "validator.log"
    write(path, raw=b'{"ts": "2025-10-20T14:00:0')
    report = ReadReport()
    step2 = Filters(steps=frozenset({2}))
    assert events(read_records(RunSource(run_dir), step2, report)) == [
        "schema mismatch",
        "reconciled",
    ]
    assert report.malformed == 0
    whole = run_dir / "logs" / "step_002" / "metrics.log"
    write(whole, raw=orjson.dumps(record(6.5, "no newline yet", step=2)))
    found = events(read_records(RunSource(run_dir), Filters(steps=frozenset({2}))))
    assert found == ["schema mismatch", "no newline yet", "reconciled"]


def test_records_logged_for_real_read_back_in_order(run_logs: Path) -> None:
    """Records written by get_logger across steps read back whole and in order."""
    context = LogContext.get_instance()
    log = get_logger("app", component="adapter")
    other = get_logger("app", component="validator")
    log.info("outside")
    for step in (1, 2, 3):
        context.set_step_context(step)
        log.info("call", n=step)
        other.warning("check", n=step)
    context.clear_step_context()
    log.info("done")
    entries = list(read_records(RunSource(run_logs.parent)))
    assert [e.ts for e in entries] == sorted(e.ts for e in entries)
    assert sorted(events(entries)) == sorted(
        ["outside", "done"] + ["call", "check"] * 3
    )
    step3 = read_records(
        RunSource(run_logs.parent),
        Filters(steps=frozenset({3}), min_level=30),
    )
    assert [(e.record["event"], e.source) for e in step3] == [
        ("check", "step_003/validator.log")
    ]


def test_last_records_returns_the_newest_across_files(run_dir: Path) -> None:
    """tail -n 3 gives the three newest records of the whole run, oldest first."""
    entries, ends = last_records(RunSource(run_dir), 3)
    assert events(entries) == ["reconciled", "llm_request", "run_end"]
    assert entries[-1].location == "run.log:2"
    assert ends["run.log"] == (run_dir / "logs" / "run.log").stat().st_size


def test_last_records_with_a_filter_reaches_far_back(tmp_path: Path) -> None:
    """The last matching record is found even when thousands of lines follow it."""
    logs = tmp_path / "run" / "logs"
    path = logs / "step_001" / "adapter.log"
    write(path, record(0, "the error", step=1, level="error"))
    write(path, *(record(1 + i / 1000, "noise", step=1) for i in range(3000)))
    entries, _ = last_records(RunSource(logs.parent), 1, Filters(min_level=40))
    assert [(e.record["event"], e.line) for e in entries] == [("the error", 1)]


@pytest.mark.parametrize("size", [1, 100, 70_000, 200_000])
def test_tail_reads_lines_across_block_boundaries(tmp_path: Path, size: int) -> None:
    """Reading backwards gives the same lines as forwards, whatever the line length."""
    logs = tmp_path / "run" / "logs"
    path = logs / "run.log"
    recs = [record(i, f"e{i}", pad="x" * (size * (i % 3))) for i in range(12)]
    write(path, *recs)
    entries, _ = last_records(RunSource(logs.parent), 100)
    assert events(entries) == [f"e{i}" for i in range(12)]
    assert [e.line for e in entries] == list(range(1, 13))


def test_follower_sees_new_lines_new_steps_and_completed_lines(run_dir: Path) -> None:
    """A follower reports new records, later steps' files, and a line once whole."""
    source = RunSource(run_dir)
    _, ends = last_records(source, 0)
    follower = Follower(source.logs_dir, start=ends)
    assert follower.poll() == []
    line = orjson.dumps(record(20, "late", step=1))
    write(run_dir / "logs" / "step_001" / "adapter.log", raw=line[:10])
    assert follower.poll() == []
    write(run_dir / "logs" / "step_001" / "adapter.log", raw=line[10:] + b"\n")
    write(
        run_dir / "logs" / "step_011" / "metrics.log", record(21, "new step", step=11)
    )
    found = follower.poll()
    assert [(e.record["event"], e.location) for e in found] == [
        ("late", "step_001/adapter.log:3"),
        ("new step", "step_011/metrics.log:1"),
    ]
    assert follower.poll() == []


def test_follower_applies_filters(run_dir: Path) -> None:
    """Following with --level error ignores new info records."""
    _, ends = last_records(RunSource(run_dir), 0)
    follower = Follower(run_dir / "logs", Filters(min_level=40), start=ends)
    write(
        run_dir / "logs" / "step_003" / "adapter.log",
        record(30, "fine", step=3),
        record(31, "bad", step=3, level="error"),
    )
    assert events(follower.poll()) == ["bad"]


def test_resolve_run_accepts_dirs_logs_archives_and_ids(run_dir: Path) -> None:
    """RUN may be the run dir, its logs/, its archive, a run id or a unique prefix."""
    runs = run_dir.parent.parent
    assert resolve_run(str(run_dir)) == RunSource(run_dir)
    assert resolve_run(str(run_dir / "logs")) == RunSource(run_dir)
    assert resolve_run("r1", runs) == RunSource(run_dir)
    write(runs / "fw" / "r2" / "logs" / "run.log", record(0, "x"))
    write(runs / "other" / "r22" / "logs" / "run.log", record(0, "x"))
    assert resolve_run("r22", runs).run_dir == runs / "other" / "r22"
    assert resolve_run("r2", runs).run_dir == runs / "fw" / "r2"
    with pytest.raises(RunNotFoundError, match="ambiguous"):
        resolve_run("r", runs)
    with pytest.raises(RunNotFoundError, match="'nope'"):
        resolve_run("nope", runs)
    with pytest.raises(RunNotFoundError, match="runlog ls"):
        resolve_run(str(runs))
    with pytest.raises(RunNotFoundError, match="no such file"):
        resolve_run(str(run_dir / "missing" / "dir"), runs)
    archive = run_dir / "run.tar.gz"
    archive.write_bytes(b"")
    assert resolve_run(str(archive)) == RunSource(run_dir, archive)
    with pytest.raises(RunNotFoundError, match="not a run archive"):
        resolve_run(str(run_dir / "logs" / "run.log"))


def _tar_gz(path: Path, members: dict[str, bytes], links: dict[str, str]) -> Path:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in links.items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    path.write_bytes(buffer.getvalue())
    return path


def _lines(*records: dict[str, Any]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in records)


def test_archive_is_read_in_place_and_member_names_are_not_trusted(
    tmp_path: Path,
) -> None:
    """An archive is streamed: odd member names are ignored, nothing reaches disk."""
    run = tmp_path / "fw" / "r1"
    run.mkdir(parents=True)
    archive = _tar_gz(
        run / "run.tar.gz",
        {
            "MANIFEST.sha256": b"",
            "logs/run.log": _lines(record(0, "run_start")),
            "logs/step_001/adapter.log": _lines(
                record(1, "call", step=1), record(3, "oops", step=1, level="error")
            ),
            "logs/step_002/adapter.log": _lines(record(2, "two", step=2)) + b"{torn",
            "logs/../evil.log": _lines(record(1.5, "evil")),
            "/abs/run.log": _lines(record(1.5, "evil")),
            "logs/step_001/../../x.log": _lines(record(1.5, "evil")),
            "logs/combined.log": b"human text\n",
        },
        {"logs/step_003/adapter.log": "/etc/passwd"},
    )
    before = files_under(tmp_path)
    report = ReadReport()
    source = resolve_run(str(archive))
    assert events(read_records(source, report=report)) == [
        "run_start",
        "call",
        "two",
        "oops",
    ]
    assert report.where == ["step_002/adapter.log:2"]
    errors = read_records(source, Filters(min_level=40))
    assert [e.location for e in errors] == ["step_001/adapter.log:2"]
    entries, ends = last_records(source, 2)
    assert events(entries) == ["two", "oops"]
    assert ends == {}
    assert files_under(tmp_path) == before


def test_a_corrupt_archive_is_an_input_error(tmp_path: Path) -> None:
    """A damaged archive gives a RunlogError naming it, not a traceback."""
    run = tmp_path / "fw" / "r1"
    run.mkdir(parents=True)
    archive = run / "run.tar.gz"
    archive.write_bytes(b"\x1f\x8b\x08\x00garbage" * 10)
    with pytest.raises(RunlogError, match=r"run\.tar\.gz"):
        list(read_records(RunSource(run, archive)))


def _run_json(logs: Path, **info: Any) -> None:
    logs.mkdir(parents=True, exist_ok=True)
    (logs / "run.json").write_bytes(orjson.dumps(info))


def test_scan_runs_lists_newest_first_with_status_steps_and_errors(
    run_dir: Path,
) -> None:
    """ls rows: run.json status; crashed (and how long it lived) for a dead one."""
    runs = run_dir.parent.parent
    _run_json(
        runs / "fw" / "ok" / "logs",
        run_id="ok",
        framework="fw",
        status="success",
        started_at="2025-10-21T10:00:00.000000Z",
        duration_s=12.5,
    )
    _run_json(
        runs / "fw" / "dead" / "logs",
        run_id="dead",
        framework="fw",
        status="running",
        started_at="2025-10-22T10:00:00.000000Z",
        duration_s=None,
        pid=2**22 + 12345,
        host=socket.gethostname(),
        heartbeat_at="2025-10-22T10:01:30.000000Z",
        heartbeat_interval_s=30,
    )
    rows = scan_runs(runs)
    assert [(r.run_id, r.status) for r in rows] == [
        ("dead", "crashed"),
        ("ok", "success"),
        ("r1", "success"),
    ]
    hand_made = rows[-1]
    assert hand_made.steps == 3
    assert (hand_made.errors, hand_made.warnings) == (1, 1)
    assert hand_made.duration_s == 9.0
    assert rows[1].duration_s == 12.5
    assert rows[0].duration_s == 90.0  # start to its last heartbeat


def test_a_run_without_run_json_or_run_end_is_incomplete(tmp_path: Path) -> None:
    """A run made with set_run_context alone and never ended reads incomplete."""
    logs = tmp_path / "fw" / "r9" / "logs"
    write(logs / "step_001" / "adapter.log", record(1, "x", step=1))
    row = describe_run(logs.parent)
    assert (row.framework, row.run_id, row.status, row.steps) == (
        "fw",
        "r9",
        "incomplete",
        1,
    )


def test_an_archived_run_without_logs_is_listed_from_its_archive(
    tmp_path: Path,
) -> None:
    """When logs/ was deleted, ls reads run.json from inside the archive."""
    run = tmp_path / "fw" / "old"
    run.mkdir(parents=True)
    info = {"run_id": "old", "framework": "fw", "status": "failed", "duration_s": 3}
    _tar_gz(
        run / "run.tar.gz",
        {"MANIFEST.sha256": b"", "logs/run.json": orjson.dumps(info)},
        {},
    )
    rows = scan_runs(tmp_path)
    assert [(r.run_id, r.status, r.archived, r.errors) for r in rows] == [
        ("old", "failed", True, None)
    ]
    assert os.listdir(run) == ["run.tar.gz"]


def test_a_big_archive_member_is_spooled_and_read_back_whole(tmp_path: Path) -> None:
    """A member larger than a spool chunk reads back with every line and number."""
    run = tmp_path / "fw" / "r1"
    run.mkdir(parents=True)
    recs = [record(i / 1000, f"e{i}", step=1, pad="y" * 300) for i in range(6000)]
    archive = _tar_gz(
        run / "run.tar.gz", {"logs/step_001/adapter.log": _lines(*recs)}, {}
    )
    entries = list(read_records(RunSource(run, archive)))
    assert len(entries) == 6000
    assert [e.line for e in entries[:3]] == [1, 2, 3]
    assert entries[-1].location == "step_001/adapter.log:6000"
    assert entries[-1].record["event"] == "e5999"


def test_follower_rereads_a_file_that_was_replaced(run_dir: Path) -> None:
    """A file replaced by a shorter one is read again from its start."""
    _, ends = last_records(RunSource(run_dir), 0)
    follower = Follower(run_dir / "logs", start=ends)
    path = run_dir / "logs" / "step_001" / "adapter.log"
    replacement = path.with_name("new.tmp")
    write(replacement, record(40, "fresh start", step=1))
    os.replace(replacement, path)
    found = follower.poll()
    assert [(e.record["event"], e.location) for e in found] == [
        ("fresh start", "step_001/adapter.log:1")
    ]
