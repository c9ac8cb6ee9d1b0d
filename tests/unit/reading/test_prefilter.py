"""Searching raw bytes before parsing: runlog.reading._prefilter (see #16)."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest

from runlog.errors import RunlogError
from runlog.reading._latest import newest_run, run_end
from runlog.reading._merge import last_records
from runlog.reading._prefilter import Prefilter, prefilter_for, required_literal
from runlog.reading._source import Filters, ReadReport, RunSource, scan_lines


def line(**fields: object) -> bytes:
    """One record line as runlog writes it, ts first."""
    return orjson.dumps({"ts": "2025-10-20T14:00:00.000000Z", **fields})


def block(*lines: bytes) -> bytes:
    """Whole lines, each ending in a newline."""
    return b"".join(item + b"\n" for item in lines)


@pytest.mark.parametrize(
    ("pattern", "literal"),
    [
        ("gpt-4o", "gpt-4o"),
        (r"llm_request.*tokens=\d+", "llm_request"),
        ("a|bcd", None),
        (r"\[adapter\] step=3", "[adapter] step=3"),
        ("(?i)Error", "Error"),
        ("x[yz]longer_tail", "longer_tail"),
    ],
)
def test_required_literal_is_the_longest_plain_run(
    pattern: str, literal: str | None
) -> None:
    """The literal every match contains: the longest top-level run, else None."""
    assert required_literal(re.compile(pattern)) == literal


@pytest.mark.parametrize(
    ("pattern", "flags", "needles"),
    [
        ("gpt-4o", 0, (b"gpt-4o",)),
        ("GPT-4o", re.IGNORECASE, (b"gpt-4o",)),
        # made by the renderer, or spelled otherwise in the file: no prefilter
        ("step", 0, None),
        ("None", 0, None),
        ("1.5", 0, None),
        ("a b", 0, None),
        ("café", 0, None),
        ("x=1", 0, None),
    ],
)
def test_grep_prefilter_only_for_literals_the_file_holds_as_shown(
    pattern: str, flags: int, needles: tuple[bytes, ...] | None
) -> None:
    """A --grep literal is searched as bytes only when that can never miss a match."""
    prefilter = prefilter_for(Filters(pattern=re.compile(pattern, flags)))
    assert (prefilter.needles if prefilter else None) == needles


def test_level_and_component_prefilters() -> None:
    """--level above info looks for the level names; -c for the component."""
    errors = prefilter_for(Filters(min_level=40))
    assert errors is not None
    assert errors.fold
    assert b'"level":"error"' in errors.needles
    assert b'"level":"fatal"' in errors.needles
    assert b'"level":"warning"' not in errors.needles
    assert prefilter_for(Filters(min_level=20)) is None
    adapter = prefilter_for(Filters(components=frozenset({"adapter"})))
    assert adapter is not None
    assert adapter.needles == (b'"component":"adapter"',)
    assert prefilter_for(Filters(components=frozenset({'we"ird'}))) is None
    assert prefilter_for(Filters()) is None


def test_a_plain_block_yields_only_lines_holding_a_needle() -> None:
    """In a plain block only candidate lines come back, numbered as in the file."""
    data = block(line(event="a"), line(event="gpt-4o"), line(event="b"))
    got = list(Prefilter((b"gpt-4o",)).scan(data, 0, len(data), 10))
    assert got == [(11, 1, line(event="gpt-4o"))]


def test_a_block_where_most_lines_hold_the_needle_comes_back_whole() -> None:
    """Four lines in five with the needle: every line, cut as scan_lines cuts them."""
    data = block(
        line(event="gpt-4o"),
        line(event="gpt-4o", n=0),
        line(event="a"),
        line(event="gpt-4o", n=1),
        line(event="gpt-4o", n=2),
    )
    got = list(Prefilter((b"gpt-4o",)).scan(data, 0, len(data), 1))
    assert got == list(scan_lines(data, 0, len(data), 1))
    assert [item[0] for item in got] == [1, 2, 3, 4, 5]


def test_a_plain_block_without_the_needle_yields_nothing() -> None:
    """No line of a plain block holds the needle: no line is parsed."""
    data = block(line(event="a"), line(event="b"), line(event="c"))
    assert list(Prefilter((b"gpt-4o",)).scan(data, 0, len(data), 1)) == []


def test_a_file_named_for_a_wanted_component_is_read_whole() -> None:
    """-c adapter scans metrics.log for the name, reads adapter.log line by line."""
    adapter = prefilter_for(Filters(components=frozenset({"adapter"})))
    assert adapter is not None
    assert adapter.scanner_for("adapter") is None
    assert adapter.scanner_for("metrics") == adapter.scan
    grep = prefilter_for(Filters(pattern=re.compile("gpt-4o")))
    assert grep is not None
    assert grep.scanner_for("adapter") == grep.scan


@pytest.mark.parametrize(
    "odd",
    [
        line(event='say "hi" gpt-4o'),  # an escape
        line(event="naïve"),  # not ASCII
        b"not json",
        b'{"ts":"2025-10-20T14:00:00.000000Z","ev{"ts":"2025-10-20T14:00:01Z"}',
        b'{"ts":"2025-10-20T14:00:00.000000Z","event":"tab\there"}',
        b"",
    ],
)
def test_a_block_that_is_not_plain_is_cut_line_by_line(odd: bytes) -> None:
    """An escape, a non-ASCII byte or a line that is no single record: every line."""
    data = block(line(event="a"), odd, line(event="b"))
    got = list(Prefilter((b"gpt-4o",)).scan(data, 0, len(data), 1))
    assert got == list(scan_lines(data, 0, len(data), 1))


def test_a_level_key_without_a_string_value_is_not_plain() -> None:
    """A level that is not a string (or a spaced key) turns the prefilter off."""
    prefilter = prefilter_for(Filters(min_level=40))
    assert prefilter is not None
    data = block(line(level="info"), line(level=40), line(level="ERROR"))
    got = list(prefilter.scan(data, 0, len(data), 1))
    assert [item[0] for item in got] == [1, 2, 3]
    plain = block(line(level="info"), line(level="ERROR"), line(level="warning"))
    assert [item[0] for item in prefilter.scan(plain, 0, len(plain), 1)] == [2]


def test_newest_run_goes_by_start_time(tmp_path: Path) -> None:
    """The run with the latest started_at is the newest; none under an empty dir."""
    assert newest_run(tmp_path) is None
    for run_id, started in (("b-run", "2025-01-02"), ("a-run", "2025-01-03")):
        logs = tmp_path / "fw" / run_id / "logs"
        logs.mkdir(parents=True)
        (logs / "run.json").write_bytes(
            orjson.dumps({"status": "success", "started_at": f"{started}T00:00:00Z"})
        )
    assert newest_run(tmp_path) == tmp_path / "fw" / "a-run"


def test_run_end_reads_the_final_status(tmp_path: Path) -> None:
    """run_end: None while running or without run.json; status and duration after."""
    assert run_end(tmp_path) is None
    info = {"status": "running", "pid": 0, "host": "elsewhere"}
    (tmp_path / "run.json").write_bytes(orjson.dumps(info))
    assert run_end(tmp_path) is None
    info = {"status": "success", "duration_s": 2.5}
    (tmp_path / "run.json").write_bytes(orjson.dumps(info))
    end = run_end(tmp_path)
    assert end is not None
    assert (end.status, end.duration_s) == ("success", 2.5)
    (tmp_path / "run.json").unlink()
    (tmp_path / "run.json").mkdir()
    assert run_end(tmp_path) is None
    (tmp_path / "run.json").rmdir()
    (tmp_path / "run.json").symlink_to("/dev/null")
    with pytest.raises(RunlogError, match="cannot read"):
        run_end(tmp_path)


def test_tail_numbers_lines_only_where_it_shows_records(tmp_path: Path) -> None:
    """tail's records and malformed lines carry their line numbers in the file."""
    logs = tmp_path / "run" / "logs"
    (logs / "step_001").mkdir(parents=True)
    (logs / "step_001" / "adapter.log").write_bytes(
        block(*(line(event=f"old{n}") for n in range(50)))
    )
    (logs / "step_002").mkdir()
    newer = [line(event="a"), b"{not json}", line(event="b"), b"garbage"]
    (logs / "step_002" / "adapter.log").write_bytes(block(*newer))
    report = ReadReport()
    entries, ends = last_records(RunSource(logs.parent), 2, report=report)
    assert [(e.source, e.line, e.record["event"]) for e in entries] == [
        ("step_002/adapter.log", 1, "a"),
        ("step_002/adapter.log", 3, "b"),
    ]
    assert sorted(report.where) == ["step_002/adapter.log:2", "step_002/adapter.log:4"]
    assert (
        ends["step_001/adapter.log"]
        == (logs / "step_001" / "adapter.log").stat().st_size
    )
