"""A log file's records read a batch of lines at a time, for merging in batches."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from itertools import islice, repeat
from pathlib import Path
from typing import Final, TypeAlias

import orjson

from ._source import (
    Entry,
    Filters,
    Line,
    ReadReport,
    Scanner,
    file_lines,
    line_entries,
)

__all__ = ["Taker", "entries_taker", "file_taker", "lines_taker"]

Taker: TypeAlias = Callable[[int], list[Entry]]
"""``take(n)`` -> the next matching entries of a stream, about *n* lines'
worth and at least one; an empty list only when the stream has ended."""

_loads: Final = orjson.loads
_EVERY_RECORD: Final = Filters()
_JSONDecodeError: Final = orjson.JSONDecodeError


class _FileBatches:
    """The matching entries of one log file, *n* lines parsed at a time."""

    __slots__ = (
        "_everything",
        "_filters",
        "_lines",
        "_open",
        "_rel",
        "_report",
    )

    def __init__(
        self,
        open_lines: Callable[[], Iterator[Line]],
        rel: str,
        filters: Filters,
        report: ReadReport | None,
    ) -> None:
        # opened when first taken from, as a generator of lines would be
        self._lines: Iterator[Line] | None = None
        self._open = open_lines
        self._rel = rel
        self._filters = filters
        self._everything = filters.is_empty
        self._report = report

    def take(self, size: int) -> list[Entry]:
        """Up to about *size* lines' matching entries; [] at the end of the file."""
        if self._lines is None:
            self._lines = self._open()
        while True:
            items = list(islice(self._lines, size))
            if not items:
                return []
            entries = self._parse(items)
            if not self._everything:
                entries = self._filters.keep(entries)
            if entries:
                return entries

    def _parse(self, items: list[Line]) -> list[Entry]:
        numbers, counts, raws = zip(*items, strict=True)
        if None not in raws and counts.count(1) == len(counts):
            # the usual batch, one record a line: parsed by one C loop, and
            # the entries made by another (see #16)
            try:
                records = list(map(_loads, raws))
            except _JSONDecodeError:
                pass  # a malformed line: parsed one by one below, and counted
            else:
                # every line given starts with `{` (or its blanks do), so
                # what parses is an object
                stamps = [
                    ts if type(ts := record.get("ts")) is str else ""
                    for record in records
                ]
                return list(map(Entry, stamps, records, repeat(self._rel), numbers))
        return self._parse_each(items)

    def _parse_each(self, items: list[Line]) -> list[Entry]:
        # line by line, malformed lines reported in order
        return list(line_entries(items, self._rel, self._report))


def file_taker(
    path: Path,
    rel: str,
    filters: Filters,
    report: ReadReport | None,
    block: int,
    scan: Scanner | None = None,
) -> Taker:
    """
    The :data:`Taker` of the file at *path* (``logs/<rel>``): the records
    :func:`~runlog.reading._source.dir_entries` gives, in batches.

    Raises:
        RunlogError: If the file exists but cannot be read (when taken from).
    """
    lines = partial(file_lines, path, block, scan=scan)
    return _FileBatches(lines, rel, filters, report).take


def lines_taker(lines: Iterator[Line], rel: str, report: ReadReport | None) -> Taker:
    """
    The :data:`Taker` of the records of *lines* (a file's :data:`Line`
    items, ``logs/<rel>``), every one kept; malformed lines are added to
    *report* as they are taken.
    """
    return _FileBatches(lambda: lines, rel, _EVERY_RECORD, report).take


def entries_taker(entries: Iterator[Entry]) -> Taker:
    """The :data:`Taker` of a stream of entries, *n* at a time."""

    def take(size: int) -> list[Entry]:
        return list(islice(entries, size))

    return take
