"""runlog query: the records and runs views over live and archived runs."""

from __future__ import annotations

import re
import shutil
import sys
from collections import Counter
from pathlib import Path

import orjson
import pytest

from runlog.errors import RunlogError
from runlog.fleet._query import load_duckdb, run_query
from runlog.reading._source import list_log_files
from tests.conftest import files_under

from .runs import failing_run, ok_run

REPO = Path(__file__).resolve().parents[3]
QUERIES = re.findall(
    r"```sql\n(.*?)```", (REPO / "docs" / "QUERY.md").read_text(), re.DOTALL
)


def three_runs(runs: Path) -> None:
    """Two that succeed, one that fails after a retry."""
    ok_run(runs, "r1")
    failing_run(runs, "r2", ValueError("bad item 7"), retries=1)
    ok_run(runs, "r3", framework="other")


def reference(runs: Path) -> Counter[tuple[str, str]]:
    """(run_id, level) -> records, counted by reading every log file in Python."""
    counts: Counter[tuple[str, str]] = Counter()
    for logs in runs.glob("*/*/logs"):
        for log_file in list_log_files(logs):
            for line in (logs / log_file.rel).read_bytes().splitlines():
                record = orjson.loads(line)
                counts[(logs.parent.name, record["level"])] += 1
    return counts


def test_counts_over_three_runs_equal_a_python_reference(tmp_path: Path) -> None:
    """Records per run and level, and per-run totals in `runs`, match a plain count."""
    runs = tmp_path / "runs"
    three_runs(runs)
    want = reference(runs)
    result = run_query(
        runs, "select run_id, level, count(*) from records group by all order by all"
    )
    assert result.columns == ["run_id", "level", "count_star()"]
    assert Counter({(r, lv): n for r, lv, n in result.rows}) == want
    totals = run_query(runs, "select run_id, records, errors, status from runs")
    by_run = {row[0]: row[1:] for row in totals.rows}
    assert by_run["r2"] == (
        sum(n for (r, _), n in want.items() if r == "r2"),
        want[("r2", "error")],
        "failed",
    )
    assert result.malformed == 0


def test_typed_columns_and_fields(tmp_path: Path) -> None:
    """ts is a timestamp, step an int, and fields hold the caller's own keys only."""
    runs = tmp_path / "runs"
    ok_run(runs, "r1")
    result = run_query(
        runs,
        "select typeof(ts), typeof(step), fields->>'latency_ms', fields->>'event' "
        "from records where event = 'api_call' order by ts",
    )
    assert result.rows == [
        ("TIMESTAMP WITH TIME ZONE", "INTEGER", "10", None),
        ("TIMESTAMP WITH TIME ZONE", "INTEGER", "20", None),
    ]


def test_runs_archived_as_gz_and_zst_are_both_visible(tmp_path: Path) -> None:
    """Runs with only run.tar.gz / run.tar.zst are streamed into the views."""
    runs = tmp_path / "runs"
    for run_id, fmt in (("gz1", "gz"), ("zst1", "zst")):
        run_dir = failing_run(
            runs, run_id, ValueError("x"), archive=True, archive_format=fmt
        )
        shutil.rmtree(run_dir / "logs")
    ok_run(runs, "live1")
    before = files_under(runs)
    result = run_query(
        runs,
        "select run_id, count(*) filter (where level = 'error'), count(*) "
        "from records group by run_id order by run_id",
    )
    rows = {row[0]: row[1:] for row in result.rows}
    assert set(rows) == {"gz1", "zst1", "live1"}
    assert rows["gz1"] == rows["zst1"] and rows["gz1"][0] == 3
    assert result.archives == 2
    assert files_under(runs) == before  # nothing extracted


def test_malformed_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    """Broken lines in a live file are left out of records and counted, not fatal."""
    runs = tmp_path / "runs"
    run_dir = ok_run(runs, "r1")
    adapter = run_dir / "logs" / "step_001" / "adapter.log"
    good = len(adapter.read_bytes().splitlines())
    with adapter.open("ab") as handle:
        handle.write(b'not json\n{"ts": broken\n\x00\x01\n')
    result = run_query(
        runs, "select count(*) from records where file = 'step_001/adapter.log'"
    )
    assert result.rows == [(good,)]
    assert result.malformed == 3


@pytest.mark.parametrize("number", range(1, len(QUERIES) + 1))
def test_every_ready_query_in_the_docs_runs(tmp_path: Path, number: int) -> None:
    """Each query of docs/QUERY.md runs over generated runs and returns rows."""
    assert len(QUERIES) == 10
    runs = tmp_path / "runs"
    three_runs(runs)
    result = run_query(runs, QUERIES[number - 1])
    assert result.columns and result.rows


def test_a_bad_query_is_an_error_naming_the_problem(tmp_path: Path) -> None:
    """DuckDB's complaint becomes a RunlogError on one line."""
    runs = tmp_path / "runs"
    ok_run(runs, "r1")
    with pytest.raises(RunlogError, match=r"query failed: .*nope") as caught:
        run_query(runs, "select nope from records")
    assert "\n" not in str(caught.value)


def test_without_duckdb_the_extra_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """When duckdb cannot be imported, the error says which extra to install."""
    monkeypatch.setitem(sys.modules, "duckdb", None)
    with pytest.raises(RunlogError, match=r"pip install 'runlog\[query\]'"):
        load_duckdb()
