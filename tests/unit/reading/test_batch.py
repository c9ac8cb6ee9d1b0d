"""Records read and merged a batch at a time: reading._batch, merge_batches."""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runlog.cli._common import print_batches
from runlog.cli._render import Style
from runlog.errors import RunlogError
from runlog.reading._batch import Taker, entries_taker, file_taker
from runlog.reading._source import Entry, Filters, ReadReport, dir_entries
from runlog.reading._timeorder import merge_batches

STAMPS = ["", "2025-10-20T14:00:00.000000Z", "2025-10-20T14:00:01.000000Z", "a", "b"]
GOOD = [
    b'{"ts":"2025-10-20T14:00:00.000000Z","level":"info","event":"a","component":"x"}',
    b'{"ts":"2025-10-20T14:00:01.000000Z","level":"error","event":"b","component":"y"}',
    b'{"ts":"2025-10-20T14:00:02.000000Z","event":"c","n":1.5}',
    b'{"event":"no time"}',
    b'  {"ts":"2025-10-20T14:00:03.000000Z","event":"blanks"}  ',
]
BAD = [b"", b"not json", b'{"ts":"x"', b"{broken}", b"[1]", b'{"a":"}', b'{"}']


def places(entries: list[Entry]) -> list[tuple[str, str, int, object]]:
    """What tells entries apart: timestamp, file, line and record."""
    return [(e.ts, e.source, e.line, e.record) for e in entries]


def taken(take: Taker, size: int) -> list[list[Entry]]:
    """Every batch *take* gives, asking for *size* at a time."""
    batches = []
    while batch := take(size):
        batches.append(batch)
    return batches


@settings(max_examples=150, deadline=None)
@given(
    lines=st.lists(st.sampled_from(GOOD + BAD), max_size=40),
    size=st.integers(1, 50),
    block=st.integers(16, 400),
    level=st.sampled_from([0, 40]),
)
def test_file_batches_are_dir_entries(
    tmp_path_factory: pytest.TempPathFactory,
    lines: list[bytes],
    size: int,
    block: int,
    level: int,
) -> None:
    """Read in batches, a file gives dir_entries' records and malformed lines."""
    path = tmp_path_factory.mktemp("b") / "a.log"
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    filters = Filters(min_level=level)
    want_report = ReadReport()
    want = list(dir_entries(path, "a.log", filters, want_report, block))
    got_report = ReadReport()
    batches = taken(file_taker(path, "a.log", filters, got_report, block), size)
    assert all(batches)
    assert places([e for batch in batches for e in batch]) == places(want)
    assert (got_report.malformed, got_report.where) == (
        want_report.malformed,
        want_report.where,
    )


def test_two_malformed_lines_that_join_into_one_object_stay_two(tmp_path: Path) -> None:
    """Lines parsed in a batch are parsed alone: two halves never make a record."""
    path = tmp_path / "a.log"
    path.write_bytes(b'{"a":"}\n{"}\n{"ts":"t","event":"ok"}\n')
    report = ReadReport()
    batches = taken(file_taker(path, "a.log", Filters(), report, 1 << 16), 100)
    assert places([e for b in batches for e in b]) == [
        ("t", "a.log", 3, {"ts": "t", "event": "ok"})
    ]
    assert (report.malformed, report.where) == (2, ["a.log:1", "a.log:2"])


def test_repeated_lines_keep_their_numbers(tmp_path: Path) -> None:
    """A run of identical lines gives one entry per line, numbered in the file."""
    line = orjson.dumps({"ts": "2025-10-20T14:00:00.000000Z", "event": "same"})
    path = tmp_path / "a.log"
    path.write_bytes((line + b"\n") * 5 + b"junk\n")
    report = ReadReport()
    batches = taken(file_taker(path, "a.log", Filters(), report, 1 << 16), 2)
    entries = [e for b in batches for e in b]
    assert [e.line for e in entries] == [1, 2, 3, 4, 5]
    assert all(e.record == entries[0].record for e in entries)
    assert report.where == ["a.log:6"]


def stream(stamps: list[str], name: str) -> list[Entry]:
    """Entries with *stamps* as their timestamps, numbered in *name*."""
    return [Entry(ts, {}, name, line) for line, ts in enumerate(stamps, start=1)]


def uneven_taker(entries: list[Entry], sizes: list[int]) -> Taker:
    """A taker that gives batches of *sizes* (cycled), whatever it is asked."""
    position = 0
    turn = 0

    def take(size: int) -> list[Entry]:
        nonlocal position, turn
        count = sizes[turn % len(sizes)]
        turn += 1
        batch = entries[position : position + count]
        position += count
        return batch

    return take


@settings(max_examples=300, deadline=None)
@given(
    stamps=st.lists(
        st.lists(st.sampled_from(STAMPS), max_size=50).map(sorted)
        | st.lists(st.sampled_from(STAMPS), max_size=20),
        max_size=6,
    ),
    sizes=st.lists(st.integers(1, 9), min_size=1, max_size=4),
    held=st.sampled_from([4, 16, 8192]),
)
def test_merged_batches_are_heapq_merge(
    stamps: list[list[str]], sizes: list[int], held: int
) -> None:
    """Batches of any size, sorted or not, flatten to heapq.merge's order."""
    streams = [stream(s, f"s{i}") for i, s in enumerate(stamps)]
    takers = [uneven_taker(s, sizes) for s in streams]
    batches = list(merge_batches(takers, held=held))
    assert all(batches)
    ours = [(e.ts, e.source, e.line) for batch in batches for e in batch]
    theirs = [
        (e.ts, e.source, e.line) for e in heapq.merge(*streams, key=lambda e: e.ts)
    ]
    assert ours == theirs


def test_one_timestamp_over_many_batches_is_merged_in_bounded_batches() -> None:
    """20,000 records of one time in two streams: heapq's order, in bounded lists."""
    same = "2025-10-20T14:00:00.000000Z"
    streams = [stream([same] * 10_000, "a"), stream([same] * 10_000, "b")]
    batches = list(merge_batches([entries_taker(iter(s)) for s in streams]))
    assert max(map(len, batches)) <= 8 * 512 + 512
    merged = [(e.source, e.line) for batch in batches for e in batch]
    assert merged == [("a", n) for n in range(1, 10_001)] + [
        ("b", n) for n in range(1, 10_001)
    ]


ODD: list[object] = [None, 1, 3, True, 2.5, "3", [1], {"n": 1}, "adapter", "x"]


@settings(max_examples=200, deadline=None)
@given(
    records=st.lists(
        st.fixed_dictionaries(
            {},
            optional={
                "ts": st.sampled_from([*STAMPS, 5, None]),
                "level": st.sampled_from(["info", "ERROR", "warn", 7, None, [1]]),
                "component": st.sampled_from(ODD),
                "step": st.sampled_from(ODD),
                "event": st.sampled_from(["gpt-4o", "x", 1]),
            },
        ),
        max_size=30,
    ),
    steps=st.none() | st.frozensets(st.integers(1, 3), min_size=1),
    components=st.none() | st.sets(st.sampled_from(["adapter", "x", "3"]), min_size=1),
    level=st.sampled_from([0, 30, 40]),
    grep=st.sampled_from([None, "gpt", "step=3", "ERROR"]),
)
def test_keep_is_matches_over_a_list(
    records: list[dict[str, object]],
    steps: frozenset[int] | None,
    components: set[str] | None,
    level: int,
    grep: str | None,
) -> None:
    """Filters.keep keeps what Filters.matches keeps, odd values included."""
    filters = Filters(
        steps=steps,
        components=None if components is None else frozenset(components),
        min_level=level,
        pattern=None if grep is None else re.compile(grep),
        since=None,
        until=None,
    )
    entries = [Entry("", record, "a.log", n) for n, record in enumerate(records)]
    kept = filters.keep(entries)
    assert [e.line for e in kept] == [
        e.line for e in entries if filters.matches(e.record)
    ]


def test_records_read_before_an_unreadable_file_are_printed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """print_batches writes what came before a read error, then lets it through."""

    def batches() -> Iterator[list[Entry]]:
        yield [Entry("2025-10-20T14:00:00.000000Z", {"event": "first"}, "a.log", 1)]
        raise RunlogError("cannot read 'b.log': Is a directory")

    with pytest.raises(RunlogError, match="cannot read"):
        print_batches(batches(), Style(False))
    line = f"2025-10-20 14:00:00.000 {'':<8} {'run':<8} {'':<14} first\n"
    assert capsys.readouterr().out == line
