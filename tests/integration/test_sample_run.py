"""sample_runs/ still looks like what `runlog demo` makes with the current code."""

from __future__ import annotations

import re
import tarfile
from pathlib import Path
from typing import Any

import orjson
import pytest

from runlog import configure, verify_archive
from runlog._records import RESERVED_KEYS
from runlog.cli._demo import run_demo
from runlog.reading._source import list_log_files
from runlog.summary import check_summary
from tests.conftest import files_under

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "sample_runs"
STALE = (
    "sample_runs/ no longer matches what the code makes; regenerate it with "
    "`rm -rf sample_runs/demo && .venv/bin/runlog demo --runs-dir sample_runs`"
)
SPEC_KEYS = list(RESERVED_KEYS)
TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
HUMAN_LINE = re.compile(
    r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z (debug|info|warning|error|critical) +"
    r"\[[A-Za-z0-9_.-]+\] step=(-|\d+) .*"
)


def sample_run() -> Path:
    """The one run checked in under sample_runs/demo/."""
    runs = sorted(p for p in (SAMPLES / "demo").iterdir() if p.is_dir())
    assert len(runs) == 1, runs
    return runs[0]


@pytest.fixture(scope="module")
def fresh_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo run made now by the current code."""
    configure(console_format="off")
    return run_demo(tmp_path_factory.mktemp("fresh")).run_dir


def shape_of_logs(run: Path) -> dict[str, list[tuple[str, str, tuple[str, ...]]]]:
    """Per log file: (level, event, keys) of each record, keys in file order."""
    shape = {}
    for log_file in list_log_files(run / "logs"):
        rows = []
        for line in (run / "logs" / log_file.rel).read_bytes().splitlines():
            record: dict[str, Any] = orjson.loads(line)
            assert list(record)[:8] == SPEC_KEYS, (STALE, log_file.rel, line)
            assert TS.fullmatch(record["ts"])
            rows.append((record["level"], record["event"], tuple(record)))
        shape[log_file.rel] = rows
    return shape


def normalized_summary(run: Path) -> list[str]:
    """The summary with every hash, number and run id made neutral."""
    text = (run / "logs_summary.txt").read_text()
    text = text.replace(run.name, "RUN_ID")
    text = re.sub(r"[0-9a-f]{64}", "HASH", text)
    return re.sub(r"\d+", "0", text).splitlines()


def test_sample_run_has_the_files_the_demo_makes(fresh_run: Path) -> None:
    """Same files, same layout: logs per step and component, summary, archive."""
    assert files_under(sample_run()) == files_under(fresh_run), STALE
    assert {
        "logs/run.json",
        "logs/run.log",
        "logs/combined.log",
        "logs/reconciliation.log",
        "logs/step_003/adapter.log",
        "logs_summary.txt",
        "run.tar.gz",
        "run.tar.gz.sha256",
    } <= files_under(sample_run())


def test_sample_records_have_the_current_format(fresh_run: Path) -> None:
    """Every record has the SPEC keys in order; events and keys match a fresh run."""
    assert shape_of_logs(sample_run()) == shape_of_logs(fresh_run), STALE
    sample = orjson.loads((sample_run() / "logs" / "run.json").read_bytes())
    fresh = orjson.loads((fresh_run / "logs" / "run.json").read_bytes())
    assert list(sample) == list(fresh), STALE
    assert sample["status"] == "success"


def test_sample_combined_log_has_the_current_line_format(fresh_run: Path) -> None:
    """combined.log holds one human line per record, as a fresh run's does."""
    for run in (sample_run(), fresh_run):
        lines = (run / "logs" / "combined.log").read_text().splitlines()
        assert all(HUMAN_LINE.fullmatch(line) for line in lines), run
    sample_lines = (sample_run() / "logs" / "combined.log").read_text().splitlines()
    fresh_lines = (fresh_run / "logs" / "combined.log").read_text().splitlines()
    assert len(sample_lines) == len(fresh_lines), STALE


def test_sample_summary_is_current_and_shaped_like_a_fresh_one(
    fresh_run: Path,
) -> None:
    """The summary is what the current summarizer writes for those logs."""
    assert check_summary(sample_run()) is None, STALE
    assert normalized_summary(sample_run()) == normalized_summary(fresh_run), STALE


def test_sample_archive_verifies_and_has_the_current_members(fresh_run: Path) -> None:
    """The checked-in archive verifies and holds the same members as a fresh one."""
    info = verify_archive(sample_run() / "run.tar.gz")
    sidecar = (sample_run() / "run.tar.gz.sha256").read_text()
    assert sidecar == f"{info.sha256}  run.tar.gz\n"

    def members(run: Path) -> list[str]:
        with tarfile.open(run / "run.tar.gz") as tar:
            return tar.getnames()

    assert members(sample_run()) == members(fresh_run), STALE
    assert members(sample_run())[0] == "MANIFEST.sha256"


def test_readme_summary_excerpt_is_cut_from_the_sample() -> None:
    """The README's summary excerpt is the sample's summary, cut only at [...]."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("## A real summary", 1)[1]
    excerpt = section.split("```", 2)[1].strip("\n").splitlines()
    assert f"sample_runs/demo/{sample_run().name}/logs_summary.txt" in section, STALE
    summary = (sample_run() / "logs_summary.txt").read_text().splitlines()
    position = 0
    for line in excerpt:
        if line in ("[...]", ""):
            continue
        assert line in summary[position:], (STALE, line)
        position = summary.index(line, position) + 1
