"""Every record of a run, from its directory or its archive, merged in time order."""

from __future__ import annotations

import heapq
from collections.abc import Iterator

from ._archive_stream import archive_records, archive_tail
from ._source import (
    Entry,
    Filters,
    ReadReport,
    RunSource,
    block_size,
    dir_entries,
    entry_key,
    file_tail,
    list_log_files,
)


def read_records(
    source: RunSource,
    filters: Filters | None = None,
    report: ReadReport | None = None,
) -> Iterator[Entry]:
    """
    Every matching record of the run, merged across files in time order.

    Each file is streamed (memory does not grow with the run); an archive is
    streamed once, never extracted to disk. Memory is bounded by a block per
    file plus the longest line returned, whatever the line count or the
    compression ratio (see #12). Safe on a run still being written: records
    appended meanwhile may or may not be included.

    Raises:
        RunlogError: If a log file or the archive cannot be read (while the
            records are iterated).
    """
    filters = filters or Filters()
    if source.archive is not None:
        return archive_records(source.archive, filters, report)
    files = [f for f in list_log_files(source.logs_dir) if filters.wants_file(f)]
    block = block_size(len(files))
    streams = [
        dir_entries(source.logs_dir / f.rel, f.rel, filters, report, block)
        for f in files
    ]
    return heapq.merge(*streams, key=entry_key)


def last_records(
    source: RunSource,
    count: int,
    filters: Filters | None = None,
    report: ReadReport | None = None,
) -> tuple[list[Entry], dict[str, int]]:
    """
    The last *count* matching records of the run in time order, and where each
    file ended (``rel -> byte offset``) so a follower can go on from there.

    Each file is read backwards only until *count* records matched, in time
    linear in the bytes read back, whatever the length of its lines.

    Raises:
        RunlogError: If a log file or the archive cannot be read.
    """
    filters = filters or Filters()
    if source.archive is not None:
        return archive_tail(source.archive, count, filters, report), {}
    per_file: list[list[Entry]] = []
    ends: dict[str, int] = {}
    for log_file in list_log_files(source.logs_dir):
        path = source.logs_dir / log_file.rel
        wanted = filters.wants_file(log_file)
        # a file no record of which can match is not read back: only where
        # it ends is needed, for a follower (see #12)
        entries, end = file_tail(
            path, log_file.rel, count if wanted else 0, filters, report
        )
        ends[log_file.rel] = end
        if wanted:
            per_file.append(entries)
    merged = list(heapq.merge(*per_file, key=entry_key))
    return merged[-count:] if count > 0 else [], ends
