"""The run page's model: overview (header, attempts, counts, problems), record pages."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from runlog.errors import RunlogError, RunNotFoundError
from runlog.reading._merge import read_records
from runlog.reading._source import RunSource
from runlog.summary._scan import Scan
from runlog.web._model import (
    RunModel,
    build_overview,
    default_report_path,
    run_info,
    run_source,
)
from runlog.web._records import MAX_PAGE, RecordQuery, RowEncoder, parse_filters

from .runs import (
    make_demo,
    make_run,
    record,
    step_records,
    write_records,
    write_run_json,
)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo run (5 steps, step 3 retried), made once for the module."""
    return make_demo(tmp_path_factory.mktemp("demo") / "runs")


def test_demo_overview_shows_five_steps_and_the_retried_attempt(demo: Path) -> None:
    """The demo's overview has steps 1-5 and step 3's first attempt as retried."""
    overview = build_overview(RunSource(demo))

    assert [s["step"] for s in overview["steps"]] == [1, 2, 3, 4, 5]
    bars = {(b["step"], b["attempt"]): b for b in overview["attempts"]}
    assert sorted(bars) == [(1, 1), (2, 1), (3, 1), (3, 2), (4, 1), (5, 1)]
    assert bars[(3, 1)]["status"] == "retried"
    assert bars[(3, 1)]["outcome"] == "failed"
    assert "RateLimitedError" in bars[(3, 1)]["error"]
    assert bars[(3, 2)]["status"] == "success"
    assert bars[(3, 1)]["start"] < bars[(3, 1)]["end"] <= bars[(3, 2)]["start"]
    run = overview["run"]
    assert run["status"] == "success"
    assert run["metadata"]["model"] == "demo-llm-1"
    assert run["first_failure"]["step"] == 3
    assert run["first_failure"]["attempt"] == 1


def test_step_counts_are_those_of_the_summary_scan(demo: Path) -> None:
    """LLM requests, API calls, tokens, warnings and errors per step match the scan."""
    scan = Scan(max_errors=5, max_warnings=5, max_hitl=5, max_line_bytes=1 << 20)
    scan.run(demo / "logs")

    overview = build_overview(RunSource(demo))

    for step in overview["steps"]:
        counted = scan.steps[step["step"]]
        assert step["llm_requests"] == counted.llm_requests
        assert step["api_calls"] == counted.api_calls
        assert step["prompt_tokens"] == counted.prompt
        assert step["completion_tokens"] == counted.completion
        assert step["warnings"] == counted.warnings
        assert step["errors"] == counted.errors
        assert step["attempts"] == counted.attempts
    assert sum(s["llm_requests"] for s in overview["steps"]) > 0


def test_an_archive_gives_the_same_overview_as_the_directory(
    demo: Path, tmp_path: Path
) -> None:
    """With logs/ gone, run.tar.gz is read in place, to the same overview."""
    now = datetime.now(UTC)
    copy = tmp_path / "demo" / demo.name
    shutil.copytree(demo, copy)
    shutil.rmtree(copy / "logs")
    from_dir = build_overview(RunSource(demo), now=now)

    source = run_source(copy)
    from_archive = build_overview(source, now=now)

    assert source.archive == copy / "run.tar.gz"
    assert from_archive["attempts"] == from_dir["attempts"]
    assert from_archive["steps"] == from_dir["steps"]
    assert from_archive["run"]["status"] == "success"
    assert from_archive["run"]["archived"] is True


def test_problems_list_warnings_and_errors_with_their_traceback(
    tmp_path: Path,
) -> None:
    """Each warning and error is a problem; an error keeps its traceback and file."""
    run_dir = make_run(tmp_path / "runs")

    overview = build_overview(RunSource(run_dir))

    problems = overview["problems"]
    assert [p["level"] for p in problems] == ["error", "warning", "error"]
    failed_step, warning, error = problems
    assert failed_step["text"] == "step_end: ValueError: bad"
    assert warning["source"] == "step_002/adapter.log:1"
    assert error["exception"].endswith("ValueError: bad price")
    assert error["source"] == "step_002/validator.log:1"
    assert overview["problems_total"] == 3
    assert overview["components"] == ["adapter", "orchestrator", "validator"]


def test_an_attempt_without_step_end_is_running_while_the_run_runs(
    tmp_path: Path,
) -> None:
    """A step still going is a running bar; once the run is over it is incomplete."""
    logs = tmp_path / "runs" / "fw" / "r1" / "logs"
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    write_run_json(
        logs, status="running", ended_at=None, heartbeat_at=now, pid=os.getpid()
    )
    write_records(logs, [record(1, "step_start", component="orchestrator", step=1)])

    running = build_overview(RunSource(logs.parent))
    (logs / "run.json").unlink()
    over = build_overview(RunSource(logs.parent))

    assert running["run"]["status"] == "running"
    assert [b["status"] for b in running["attempts"]] == ["running"]
    assert over["run"]["status"] == "incomplete"
    assert [b["status"] for b in over["attempts"]] == ["incomplete"]


def test_a_step_end_without_its_start_still_makes_a_bar(tmp_path: Path) -> None:
    """A step_end whose step_start is missing gives a bar with its end and outcome."""
    logs = tmp_path / "runs" / "fw" / "r1" / "logs"
    write_records(logs, step_records(4, 1, 3, status="failed")[1:])

    overview = build_overview(RunSource(logs.parent))

    (bar,) = overview["attempts"]
    assert (bar["step"], bar["status"], bar["start"]) == (4, "failed", None)
    assert bar["error"] == "ValueError: bad"


def _query(run_dir: Path, **filters: str) -> RecordQuery:
    return RecordQuery(RunSource(run_dir), parse_filters(**filters))


def _events(rows: list[list[object]], strings: list[str]) -> list[str]:
    return [strings[row[4]] for row in rows]  # type: ignore[index]  # an int index


def test_record_pages_go_on_from_the_last_one_and_back(tmp_path: Path) -> None:
    """Pages of 5 cover the records in time order; asking again from 0 restarts."""
    run_dir = make_run(tmp_path / "runs", others=12)
    query = _query(run_dir)
    encoder = RowEncoder("r1", "fw")

    pages = [query.page(offset, 5, encoder) for offset in (0, 5, 10, 15, 20)]
    again = query.page(0, 5, RowEncoder("r1", "fw"))

    times = [row[0] for page in pages for row in page.rows]
    assert len(times) == 23 and times == sorted(times)
    assert [len(page.rows) for page in pages] == [5, 5, 5, 5, 3]
    assert all(page.matched == 23 and page.exact for page in pages)
    assert again.rows == pages[0].rows


def test_record_filters_level_and_above_step_component_and_text(
    tmp_path: Path,
) -> None:
    """level=warning keeps warnings and errors; step, component, text narrow it."""
    run_dir = make_run(tmp_path / "runs", others=3)

    def events(**filters: str) -> list[str]:
        page = _query(run_dir, **filters).page(0, 100, RowEncoder("r1", "fw"))
        return _events(page.rows, page.strings)

    assert events(level="warning") == ["step_end", "slow response", "request failed"]
    assert events(level="error") == ["step_end", "request failed"]
    assert events(step="2", component="validator") == ["request failed"]
    assert events(text="BAD PRICE") == ["request failed"]
    assert events(text="/V1/ITEMS") == ["api_call"] * 3


def test_a_big_match_count_is_a_lower_bound(tmp_path: Path) -> None:
    """Past the counting budget the page says how many at least, not exactly."""
    run_dir = make_run(tmp_path / "runs", others=30)
    query = RecordQuery(RunSource(run_dir), parse_filters(), count_budget=4)

    page = query.page(0, 2, RowEncoder("r1", "fw"))
    last = query.page(30, 100, RowEncoder("r1", "fw"))

    assert (page.matched, page.exact) == (6, False)
    assert (last.matched, last.exact) == (41, True)
    assert len(last.rows) == 11


def test_a_page_is_at_most_max_page_records(tmp_path: Path) -> None:
    """limit is capped at MAX_PAGE, and a negative offset reads from the start."""
    run_dir = make_run(tmp_path / "runs", others=MAX_PAGE + 5)

    page = _query(run_dir).page(-3, MAX_PAGE * 2, RowEncoder("r1", "fw"))

    assert len(page.rows) == MAX_PAGE
    assert page.offset == 0


@pytest.mark.parametrize(
    ("filters", "bad"), [({"step": "two"}, "'two'"), ({"level": "loud"}, "'loud'")]
)
def test_bad_filter_values_are_named(filters: dict[str, str], bad: str) -> None:
    """A step that is not a number or an unknown level is an error naming it."""
    with pytest.raises(RunlogError, match=bad):
        parse_filters(**filters)


def test_rows_share_strings_and_leave_out_the_runs_own_names(tmp_path: Path) -> None:
    """run_id/framework equal to the run's are left out; other values stay."""
    run_dir = make_run(tmp_path / "runs", others=2)
    write_records(
        run_dir / "logs",
        [record(80, 42, step=2, run_id="other")],  # type: ignore[arg-type]  # bad event
    )
    page = _query(run_dir).page(0, 100, RowEncoder("r1", "fw"))

    first, *_, last = page.rows
    assert first[8] == {}  # run_start: nothing but the columns
    assert page.strings[first[1]] == "info"  # type: ignore[index]  # an int
    assert last[4] == -1
    assert last[8] == {"event": 42, "run_id": "other"}
    assert page.strings[last[6]] == "step_002/adapter.log"  # type: ignore[index]


def test_default_report_path_beside_the_run_or_the_archive(
    demo: Path, tmp_path: Path
) -> None:
    """RUN_DIR/report.html for a run; <run_id>.report.html next to an archive."""
    archive = demo / "run.tar.gz"

    assert default_report_path(RunSource(demo), demo) == demo / "report.html"
    assert default_report_path(run_source(archive), archive) == (
        demo / f"{demo.name}.report.html"
    )
    with pytest.raises(RunNotFoundError):
        run_source(tmp_path / "nothing")


def test_the_quick_directory_passes_agree_with_one_full_pass(demo: Path) -> None:
    """Scan + lifecycle + problem lines give the overview a full read gives."""
    now = datetime.now(UTC)
    source = RunSource(demo)
    full = RunModel(source, run_info(source))
    for entry in read_records(source):
        full.add(entry)

    quick = build_overview(source, now=now)

    assert quick == full.overview(now)


def test_problem_lines_are_found_across_blocks_and_not_half_written(
    tmp_path: Path,
) -> None:
    """An error after a 1.5 MB line is found at its line; a half line is not."""
    logs = tmp_path / "runs" / "fw" / "r1" / "logs"
    write_records(
        logs,
        [
            record(1, "big", step=1, blob="x" * 1_500_000),
            record(2, "after the big one", level="error", step=1),
        ],
    )
    with open(logs / "step_001" / "adapter.log", "ab") as handle:
        handle.write(b'{"ts":"2025-10-20T14:00:03.000000Z","level":"error","ev')

    overview = build_overview(RunSource(logs.parent))

    assert [(p["text"], p["source"]) for p in overview["problems"]] == [
        ("after the big one", "step_001/adapter.log:2")
    ]
