"""The records of a run for the viewer: compact rows, filters, pages."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from ..errors import RunlogError
from ..reading._merge import read_records
from ..reading._source import Entry, Filters, RunSource, parse_level

MAX_PAGE: Final = 1000
# the reserved keys a row carries in its own columns (SPEC §2)
_COLUMNS: Final = ("ts", "level", "step", "component", "event", "logger")
_EXACT_COUNT_BUDGET: Final = 100_000  # records counted past a page to give "N of M"


class RowEncoder:
    """
    Records as compact rows sharing one string table (levels, components, files).

    A row is ``[ts, level, step, component, event, logger, file, line, extra]``
    where level, component, event, logger and file are indexes into
    :attr:`strings` (-1 for a value that is not a string: it is then in
    *extra*), and *extra* holds every other key of the record. ``run_id`` and
    ``framework`` are left out when they are the run's own (the viewer puts
    them back from the header), which keeps a report of a big run small.
    """

    def __init__(self, run_id: str, framework: str) -> None:
        self.run_id = run_id
        self.framework = framework
        self.strings: list[str] = []
        self._index: dict[str, int] = {}

    def _ref(self, value: object, extra: dict[str, Any], key: str) -> int:
        if not isinstance(value, str):
            if value is not None or key in ("event", "logger", "component"):
                extra[key] = value
            return -1
        index = self._index.get(value)
        if index is None:
            index = self._index[value] = len(self.strings)
            self.strings.append(value)
        return index

    def row(self, entry: Entry, *, max_text: int | None = None) -> list[Any]:
        """The row of *entry*; string values over *max_text* characters are cut."""
        rec = entry.record
        extra: dict[str, Any] = {}
        for key, value in rec.items():
            if key in _COLUMNS:
                continue
            if key == "run_id" and value == self.run_id:
                continue
            if key == "framework" and value == self.framework:
                continue
            if (
                max_text is not None
                and isinstance(value, str)
                and len(value) > max_text
            ):
                cut = len(value) - max_text
                value = f"{value[:max_text]}… ({cut} more characters: see runlog show)"
            extra[key] = value
        step = rec.get("step")
        if step is not None and type(step) is not int:
            extra["step"] = step
            step = None
        return [
            entry.ts,
            self._ref(rec.get("level"), extra, "level"),
            step,
            self._ref(rec.get("component"), extra, "component"),
            self._ref(rec.get("event"), extra, "event"),
            self._ref(rec.get("logger"), extra, "logger"),
            self._ref(entry.source, extra, "_file"),
            entry.line,
            extra,
        ]


def parse_filters(
    step: str | None = None,
    component: str | None = None,
    level: str | None = None,
    text: str | None = None,
) -> Filters:
    """
    :class:`Filters` from the viewer's query values (empty means no filter).

    *level* keeps that level and above; *text* matches case-insensitively
    anywhere in the record's line or traceback (as ``runlog show --grep``).

    Raises:
        RunlogError: If *step* is not an int >= 0 or *level* is unknown.
    """
    steps: frozenset[int] | None = None
    if step:
        if not step.isdigit():
            raise RunlogError(f"step {step!r}: use an int >= 0")
        steps = frozenset((int(step),))
    components = frozenset((component,)) if component else None
    min_level = parse_level(level) if level else 0
    pattern = re.compile(re.escape(text), re.IGNORECASE) if text else None
    return Filters(
        steps=steps, components=components, min_level=min_level, pattern=pattern
    )


@dataclass
class RecordPage:
    """One page of matching records, with how many matched in all when known."""

    rows: list[list[Any]]
    strings: list[str]
    offset: int
    matched: int  # exact when *exact*, else a lower bound
    exact: bool

    def as_json(self) -> dict[str, Any]:
        """The page as the viewer reads it."""
        return {
            "rows": self.rows,
            "strings": self.strings,
            "offset": self.offset,
            "matched": self.matched,
            "exact": self.exact,
        }


class RecordCursor:
    """
    Matching records of a run read forward, so that the next page goes on from
    the last one instead of reading the run again from its start.

    Memory is that of :func:`read_records` (bounded) plus one page. Not
    thread-safe: callers hold a lock per cursor.
    """

    def __init__(self, source: RunSource, filters: Filters) -> None:
        self.source = source
        self.filters = filters
        self._entries: Iterator[Entry] = read_records(source, filters)
        self.position = 0  # matching records consumed so far
        self.done = False

    def skip(self, count: int) -> None:
        """Drop the next *count* matching records."""
        for _ in range(count):
            if next(self._entries, None) is None:
                self.done = True
                return
            self.position += 1

    def take(self, count: int) -> list[Entry]:
        """The next *count* matching records (fewer at the end)."""
        found: list[Entry] = []
        while len(found) < count:
            entry = next(self._entries, None)
            if entry is None:
                self.done = True
                break
            found.append(entry)
        self.position += len(found)
        return found


class RecordQuery:
    """
    Pages of the records of one run that match one set of filters.

    Keeps a :class:`RecordCursor`, so paging forward reads each record once;
    going back starts a new cursor. How many records match is counted once,
    up to a budget past the first page, so a small run gets an exact total
    and a big one a lower bound. Thread-safe: one page at a time.
    """

    def __init__(
        self,
        source: RunSource,
        filters: Filters,
        *,
        count_budget: int = _EXACT_COUNT_BUDGET,
    ) -> None:
        self.source = source
        self.filters = filters
        self.count_budget = count_budget
        self._cursor = RecordCursor(source, filters)
        self._count: tuple[int, bool] | None = None
        self._lock = threading.Lock()

    def page(
        self,
        offset: int,
        limit: int,
        encoder: RowEncoder,
        *,
        total: int | None = None,
        count_budget: int | None = None,
    ) -> RecordPage:
        """
        The matching records *offset* to *offset* + *limit* (<= :data:`MAX_PAGE`).

        *total*, the run's record count when known, is the match count of a
        query without filters, which then is not counted again (it replaces
        a lower bound counted before). *count_budget* overrides the budget
        of records counted past the page, for this call.
        """
        limit = max(0, min(limit, MAX_PAGE))
        offset = max(0, offset)
        budget = self.count_budget if count_budget is None else count_budget
        with self._lock:
            known = self._count is not None and self._count[1]
            if total is not None and self.filters.is_empty and not known:
                self._count = (total, True)
            cursor = self._cursor
            if cursor.position > offset:
                cursor = self._cursor = RecordCursor(self.source, self.filters)
            cursor.skip(offset - cursor.position)
            rows = [encoder.row(entry) for entry in cursor.take(limit)]
            if cursor.done:
                self._count = (cursor.position, True)
            elif self._count is None:
                counter = RecordCursor(self.source, self.filters)
                counter.skip(cursor.position + budget)
                self._count = (counter.position, counter.done)
            matched, exact = self._count
        return RecordPage(rows, encoder.strings, offset, matched, exact)
