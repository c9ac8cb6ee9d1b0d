"""Every record of a run, from its directory or its archive, merged in time order."""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterator

from ._batch import file_taker
from ._prefilter import prefilter_for
from ._source import (
    Entry,
    Filters,
    ReadReport,
    RunSource,
    block_size,
    entry_key,
    file_tail,
    list_log_files,
    renumber,
)
from ._timeorder import merge_batches


def read_records(
    source: RunSource,
    filters: Filters | None = None,
    report: ReadReport | None = None,
) -> Iterator[Entry]:
    """
    Every matching record of the run, merged across files in time order.

    Lines are searched as bytes first and only those that may match are
    parsed (see #16). Each file is streamed (memory does not grow with the
    run); an archive is
    streamed once, never extracted to disk. Memory is bounded by a block per
    file plus the longest line returned, whatever the line count or the
    compression ratio (see #12). Safe on a run still being written: records
    appended meanwhile may or may not be included.

    Raises:
        RunlogError: If a log file or the archive cannot be read (while the
            records are iterated).
    """
    # the files are listed now, as before batches: not when first iterated
    return _flatten(read_batches(source, filters, report))


def _flatten(batches: Iterator[list[Entry]]) -> Iterator[Entry]:
    try:
        for batch in batches:
            yield from batch
    finally:
        # an abandoned read releases what it holds now (an archive's spool)
        close = getattr(batches, "close", None)
        if close is not None:
            close()


def read_batches(
    source: RunSource,
    filters: Filters | None = None,
    report: ReadReport | None = None,
) -> Iterator[list[Entry]]:
    """
    :func:`read_records`, a list of records at a time (none empty): the same
    records in the same order, for a reader that handles many at once.

    Raises:
        RunlogError: If a log file or the archive cannot be read (while the
            records are iterated).
    """
    filters = filters or Filters()
    prefilter = prefilter_for(filters)
    scan = prefilter.scan if prefilter is not None else None
    if source.archive is not None:
        # imported only for an archive: it brings the codecs and tarfile,
        # which reading a directory never needs (start-up time, #16)
        from ._archive_stream import archive_batches

        return archive_batches(source.archive, filters, report, scan)
    files = [f for f in list_log_files(source.logs_dir) if filters.wants_file(f)]
    block = block_size(len(files))
    takers = [
        file_taker(
            source.logs_dir / f.rel,
            f.rel,
            filters,
            report,
            block,
            None if prefilter is None else prefilter.scanner_for(f.component),
        )
        for f in files
    ]
    return merge_batches(takers)


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
        from ._archive_stream import archive_tail  # see read_records

        return archive_tail(source.archive, count, filters, report), {}
    per_file: list[list[Entry]] = []
    ends: dict[str, int] = {}
    for log_file in list_log_files(source.logs_dir):
        path = source.logs_dir / log_file.rel
        wanted = filters.wants_file(log_file)
        # a file no record of which can match is not read back: only where
        # it ends is needed, for a follower (see #12)
        entries, end = file_tail(
            path, log_file.rel, count if wanted else 0, filters, report, numbered=False
        )
        ends[log_file.rel] = end
        if wanted:
            per_file.append(entries)
    merged = list(heapq.merge(*per_file, key=entry_key))
    kept = merged[-count:] if count > 0 else []
    # lines are counted only in the files that gave a record shown, so the
    # time does not grow with the run (see #16)
    numbered: dict[str, list[Entry]] = {}
    for entry in kept:
        numbered.setdefault(entry.source, []).append(entry)
    fixed = {
        rel: iter(renumber(entries, source.logs_dir / rel, ends[rel]))
        for rel, entries in numbered.items()
    }
    return [next(fixed[entry.source]) for entry in kept], ends


def with_context(
    source: RunSource,
    filters: Filters,
    before: int,
    after: int,
    report: ReadReport | None = None,
) -> Iterator[tuple[Entry, bool] | None]:
    """
    The matching records with up to *before* and *after* records around each,
    as ``grep -B/-A`` gives lines around a match.

    Context is taken from the run's records in time order, within the
    ``steps`` and ``components`` of *filters*; the other criteria (level,
    regex, time window) decide what matches. Items are ``(entry, matched)``;
    None stands between two groups that are not adjacent (``--``).

    Raises:
        RunlogError: If a log file or the archive cannot be read.
    """
    stream = Filters(steps=filters.steps, components=filters.components)
    held: deque[Entry] = deque(maxlen=max(0, before))
    owed = 0  # records still to show after the last match
    last_shown = -1  # the stream index of the last record shown
    for index, entry in enumerate(read_records(source, stream, report)):
        if filters.matches(entry.record):
            if last_shown >= 0 and index - len(held) > last_shown + 1:
                yield None
            yield from ((kept, False) for kept in held)
            held.clear()
            yield entry, True
            last_shown = index
            owed = after
        elif owed > 0:
            yield entry, False
            last_shown = index
            owed -= 1
        else:
            held.append(entry)
