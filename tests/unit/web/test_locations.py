"""Where the server finds runs: names checked, stored runs fetched once."""

from __future__ import annotations

from pathlib import Path

import pytest

from runlog.cli import main
from runlog.errors import RunlogError
from runlog.reading._runs import scan_runs
from runlog.web._locations import Lru, RunLocation, run_version

from .runs import make_run, record, write_records


def test_a_run_is_found_by_its_directory_names(tmp_path: Path) -> None:
    """fw/r1 is the run's directory; unsafe or unknown names find nothing."""
    run_dir = make_run(tmp_path / "runs")
    runs = RunLocation(tmp_path / "runs")

    source = runs.source("fw", "r1")

    assert source is not None and source.run_dir == run_dir.resolve()
    for framework, run_id in [("..", "r1"), ("fw", ".."), ("fw", "a/b"), ("fw", "r2")]:
        assert runs.source(framework, run_id) is None


def test_a_framework_directory_can_be_the_runs_dir(tmp_path: Path) -> None:
    """Given runs/fw, the run is still /runs/fw/r1; another framework is not."""
    make_run(tmp_path / "runs")
    runs = RunLocation(tmp_path / "runs" / "fw")

    (row,) = runs.rows()

    assert runs.names(row) == ("fw", "r1")
    assert runs.source("fw", "r1") is not None
    assert runs.source("other", "r1") is None


def test_links_use_directory_names_not_run_json(tmp_path: Path) -> None:
    """A run.json naming another framework still links by the directories."""
    run_dir = make_run(tmp_path / "runs")
    (run_dir / "logs" / "run.json").write_text('{"framework": "elsewhere"}')
    runs = RunLocation(tmp_path / "runs")

    (row,) = scan_runs(tmp_path / "runs")

    assert row.framework == "elsewhere"
    assert runs.names(row) == ("fw", "r1")


def test_a_missing_runs_dir_is_an_error_naming_it(tmp_path: Path) -> None:
    """RunLocation of a directory that is not there raises, quoting the path."""
    with pytest.raises(RunlogError, match="no such directory"):
        RunLocation(tmp_path / "nowhere")


def test_the_version_changes_when_a_log_grows(tmp_path: Path) -> None:
    """Appending a record or touching run.json gives a new version."""
    run_dir = make_run(tmp_path / "runs")
    source = RunLocation(tmp_path / "runs").source("fw", "r1")
    assert source is not None
    before = run_version(source)

    write_records(run_dir / "logs", [record(90, "late", step=2)])

    assert run_version(source) != before
    (run_dir / "logs" / "run.json").unlink()
    assert run_version(source)[-1] is None


def test_the_cache_keeps_the_most_recently_used() -> None:
    """Past its size the least recently used entry goes; a hit is not remade."""
    cache: Lru[str, int] = Lru(2)
    made: list[str] = []

    def make(key: str) -> int:
        made.append(key)
        return len(made)

    for key in ("a", "b", "a", "c", "a", "b"):
        cache.get_or_make(key, lambda key=key: make(key))  # type: ignore[misc]

    assert made == ["a", "b", "c", "b"]
    assert list(cache) == ["a", "b"]


def test_a_stored_run_is_fetched_once_and_reported(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A run in a file:// store is listed, fetched for its page, and reported."""
    make_run(tmp_path / "runs")
    store = f"file://{tmp_path / 'store'}"
    assert main(["upload", str(tmp_path / "runs" / "fw" / "r1"), store]) == 0
    runs = RunLocation(store)

    (row,) = runs.rows()
    source = runs.source("fw", "r1")
    again = runs.source("fw", "r1")
    monkeypatch.chdir(tmp_path)
    code = main(["report", f"{store}/fw/r1"])
    runs.close()

    assert runs.names(row) == ("fw", "r1")
    assert source is not None and again is source
    assert not source.run_dir.exists()  # the fetched copy went with close()
    assert runs.source("fw", "r9") is None
    assert code == 0
    assert capsys.readouterr().out.splitlines()[-1] == str(tmp_path / "r1.report.html")
    assert (tmp_path / "r1.report.html").read_text().startswith("<!DOCTYPE html>")
