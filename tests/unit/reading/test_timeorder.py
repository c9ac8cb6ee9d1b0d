"""Merging streams of records in time order: runlog.reading._timeorder."""

from __future__ import annotations

import heapq
from collections.abc import Iterator

from hypothesis import given, settings
from hypothesis import strategies as st

from runlog.reading._source import Entry
from runlog.reading._timeorder import merge_entries

# few distinct stamps, so that ties across and within streams are common
STAMPS = ["", "2025-10-20T14:00:00.000000Z", "2025-10-20T14:00:01.000000Z", "a", "b"]


def stream(stamps: list[str], name: str) -> list[Entry]:
    """Entries with *stamps* as their timestamps, numbered in *name*."""
    return [Entry(ts, {}, name, line) for line, ts in enumerate(stamps, start=1)]


def places(entries: Iterator[Entry]) -> list[tuple[str, str, int]]:
    """What tells entries apart: timestamp, stream and line."""
    return [(e.ts, e.source, e.line) for e in entries]


def both(
    streams: list[list[Entry]], held: int = 8192
) -> tuple[list[tuple[str, str, int]], ...]:
    """merge_entries's order and heapq.merge's, of the same streams."""
    ours = places(merge_entries([iter(s) for s in streams], held=held))
    theirs = places(heapq.merge(*(iter(s) for s in streams), key=lambda e: e.ts))
    return ours, theirs


# a small *held* reads a few records at a time: many windows, many refills
HELD = st.sampled_from([4, 16, 8192])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.lists(st.sampled_from(STAMPS), max_size=60).map(sorted), max_size=6),
    HELD,
)
def test_sorted_streams_merge_as_heapq_merge_does(
    stamps: list[list[str]], held: int
) -> None:
    """Streams in time order come out as heapq.merge gives them, ties included."""
    streams = [stream(s, f"s{i}") for i, s in enumerate(stamps)]
    ours, theirs = both(streams, held)
    assert ours == theirs


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.sampled_from(STAMPS), max_size=60), max_size=6), HELD)
def test_streams_out_of_order_merge_as_heapq_merge_does(
    stamps: list[list[str]], held: int
) -> None:
    """A stream out of time order still gives heapq.merge's order, exactly."""
    streams = [stream(s, f"s{i}") for i, s in enumerate(stamps)]
    ours, theirs = both(streams, held)
    assert ours == theirs


def test_many_streams_and_long_ties_merge_in_order() -> None:
    """200 streams, one of them 20,000 records of one stamp, merge as heapq does."""
    streams = [stream([STAMPS[1]] * 20_000, "tied")]
    for i in range(199):
        streams.append(stream(sorted(STAMPS[(i % 4) + 1 :] * 30), f"s{i}"))
    ours, theirs = both(streams)
    assert len(ours) == 20_000 + sum(len(s) for s in streams[1:])
    assert ours == theirs
