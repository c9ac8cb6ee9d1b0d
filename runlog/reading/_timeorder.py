"""Merging a run's streams of records into one, in time order, a window at a time."""

from __future__ import annotations

import heapq
import itertools
import operator
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from typing import Final

from ._source import Entry

__all__ = ["merge_batches", "merge_entries"]

_TS: Final = operator.attrgetter("ts")
# entries held at once across every stream (a few MB of records): a stream's
# read-ahead is this divided among the streams, within the bounds below
_HELD: Final = 8192
_MIN_CHUNK: Final = 2
_MAX_CHUNK: Final = 512
# a stream holding this many chunks (one timestamp repeated across them) is
# merged one record at a time from there on, so memory stays bounded
_MAX_CHUNKS_HELD: Final = 8
_START_SHARE: Final = 4


def merge_entries(
    streams: Sequence[Iterator[Entry]], *, held: int = _HELD
) -> Iterator[Entry]:
    """
    The entries of *streams* merged by timestamp: exactly what
    ``heapq.merge(*streams, key=lambda e: e.ts)`` gives, faster.

    See :func:`merge_batches`, which this flattens.

    Args:
        streams: Each stream's entries, normally in time order.
        held: About how many entries to hold at once across the streams.

    Memory: about *held* entries, and at least two per stream.
    """
    if len(streams) == 1:
        return iter(streams[0])
    takers = [_taker(stream) for stream in streams]
    return itertools.chain.from_iterable(merge_batches(takers, held=held))


def _taker(stream: Iterator[Entry]) -> Callable[[int], list[Entry]]:
    def take(size: int) -> list[Entry]:
        return list(itertools.islice(stream, size))

    return take


def merge_batches(
    takers: Sequence[Callable[[int], list[Entry]]], *, held: int = _HELD
) -> Iterator[list[Entry]]:
    """
    The entries of several streams merged by timestamp, a list at a time:
    flattened, exactly what ``heapq.merge(*streams, key=lambda e: e.ts)``
    gives.

    Each stream is a *taker*: ``take(n)`` returns its next entries (about
    *n*, at least one; none only at its end), so a stream is read a batch
    at a time, not an entry at a time (see #16). While every stream is in
    time order, all entries older than the oldest of the streams' last read
    timestamps can be placed: they are put in order with one (stable, C)
    sort, equal timestamps in stream order, as ``heapq.merge`` puts them
    (see #16). A stream found out of order, or one timestamp repeated over
    many batches, hands the rest to ``heapq.merge``, which decides by the
    streams' next entries alone, so the output is the same.

    Args:
        takers: Each stream's taker; each stream normally in time order.
        held: About how many entries to hold at once across the streams.

    Memory: about *held* entries, and at least two per stream.
    """
    count = len(takers)
    if count == 0:
        return
    # a quarter of *held* to begin with: a run's steps follow one another,
    # so most streams wait, holding their first chunk, while a few are read,
    # and those need the rest to read big chunks (see #16)
    size = max(_MIN_CHUNK, min(_MAX_CHUNK, held // (_START_SHARE * count)))
    if count == 1:
        take = takers[0]
        while batch := take(_MAX_CHUNK):
            yield batch
        return
    buffers: list[list[Entry]] = [[] for _ in takers]
    # a stream read often reads more at a time, while the total held is
    # small: windows grow, and the per-window cost is spread thinner
    chunks = [size] * count
    total = 0
    seen = [""] * count  # the last timestamp read from each stream
    live: list[int] = []
    ordered = True
    oldest = ""
    for index in range(count):
        state = _refill(takers[index], buffers[index], seen, index, size)
        total += len(buffers[index])
        if state is None:
            ordered = False
            break
        if state:
            live.append(index)
    while ordered:
        if live:
            oldest = min(buffers[index][-1].ts for index in live)
        out: list[Entry] = []
        for buffer in buffers:
            if not buffer:
                continue
            cut = bisect_left(buffer, oldest, key=_TS) if live else len(buffer)
            if cut:
                out += buffer[:cut]
                del buffer[:cut]
                total -= cut
        if out:
            out.sort(key=_TS)
            yield out
        if not live:
            return
        still: list[int] = []
        for index in live:
            buffer = buffers[index]
            if buffer[-1].ts == oldest:
                if len(buffer) > _MAX_CHUNKS_HELD * _MAX_CHUNK:
                    ordered = False
                    still.append(index)
                    continue
                if total < held and chunks[index] < _MAX_CHUNK:
                    chunks[index] *= 2
                before = len(buffer)
                state = _refill(takers[index], buffer, seen, index, chunks[index])
                total += len(buffer) - before
                if state is None:
                    ordered = False
                    break
                if state is False:
                    continue
            still.append(index)
        live = still
    tails = [
        itertools.chain(buffer, _rest(take))
        for buffer, take in zip(buffers, takers, strict=True)
    ]
    merged = heapq.merge(*tails, key=_TS)
    while batch := list(itertools.islice(merged, _MAX_CHUNK)):
        yield batch


def _rest(take: Callable[[int], list[Entry]]) -> Iterator[Entry]:
    while batch := take(_MAX_CHUNK):
        yield from batch


def _refill(
    take: Callable[[int], list[Entry]],
    buffer: list[Entry],
    seen: list[str],
    index: int,
    size: int,
) -> bool | None:
    # True: read more; False: the stream has ended; None: what was read is
    # out of time order (it is kept in *buffer* all the same)
    chunk = take(size)
    if not chunk:
        return False
    keys = list(map(_TS, chunk))
    buffer += chunk
    if keys[0] < seen[index] or keys != sorted(keys):
        return None
    seen[index] = keys[-1]
    return True
