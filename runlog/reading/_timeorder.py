"""Merging a run's streams of records into one, in time order, a window at a time."""

from __future__ import annotations

import heapq
import itertools
import operator
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import Final

from ._source import Entry

__all__ = ["merge_entries"]

_TS: Final = operator.attrgetter("ts")
# entries held at once across every stream (a few MB of records): a stream's
# read-ahead is this divided among the streams, within the bounds below
_HELD: Final = 8192
_MIN_CHUNK: Final = 2
_MAX_CHUNK: Final = 512
# a stream holding this many chunks (one timestamp repeated across them) is
# merged one record at a time from there on, so memory stays bounded
_MAX_CHUNKS_HELD: Final = 8


def merge_entries(
    streams: Sequence[Iterator[Entry]], *, held: int = _HELD
) -> Iterator[Entry]:
    """
    The entries of *streams* merged by timestamp: exactly what
    ``heapq.merge(*streams, key=lambda e: e.ts)`` gives, faster.

    Each stream is read a chunk at a time. While every stream is in time
    order, all entries older than the oldest of the streams' last read
    timestamps can be placed: they are put in order with one (stable, C)
    sort, equal timestamps in stream order, as ``heapq.merge`` puts them
    (see #16). A stream found out of order, or one timestamp repeated over
    many chunks, hands the rest to ``heapq.merge``, which decides by the
    streams' next entries alone, so the output is the same.

    Args:
        streams: Each stream's entries, normally in time order.
        held: About how many entries to hold at once across the streams.

    Memory: about *held* entries, and at least two per stream.
    """
    count = len(streams)
    if count == 0:
        return
    if count == 1:
        yield from streams[0]
        return
    size = max(_MIN_CHUNK, min(_MAX_CHUNK, held // count))
    iters = list(streams)
    buffers: list[list[Entry]] = [[] for _ in iters]
    # a stream read often reads more at a time, while the total held is
    # small: windows grow, and the per-window cost is spread thinner
    chunks = [size] * count
    total = 0
    seen = [""] * count  # the last timestamp read from each stream
    live: list[int] = []
    ordered = True
    oldest = ""
    for index in range(count):
        state = _refill(iters[index], buffers[index], seen, index, size)
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
        out.sort(key=_TS)
        yield from out
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
                state = _refill(iters[index], buffer, seen, index, chunks[index])
                total += len(buffer) - before
                if state is None:
                    ordered = False
                    break
                if state is False:
                    continue
            still.append(index)
        live = still
    tails = [
        itertools.chain(buffer, rest)
        for buffer, rest in zip(buffers, iters, strict=True)
    ]
    yield from heapq.merge(*tails, key=_TS)


def _refill(
    stream: Iterator[Entry],
    buffer: list[Entry],
    seen: list[str],
    index: int,
    size: int,
) -> bool | None:
    # True: read more; False: the stream has ended; None: what was read is
    # out of time order (it is kept in *buffer* all the same)
    chunk = list(itertools.islice(stream, size))
    if not chunk:
        return False
    keys = list(map(_TS, chunk))
    buffer += chunk
    if keys[0] < seen[index] or keys != sorted(keys):
        return None
    seen[index] = keys[-1]
    return True
