"""Records appended to a live run since the last poll, for ``runlog tail -f``."""

from __future__ import annotations

import bisect
import heapq
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from ._source import (
    MIN_BLOCK,
    Entry,
    Filters,
    LineSplitter,
    ReadReport,
    copies,
    count_lines,
    entry_key,
    file_order,
    list_log_files,
    parse_entry,
    unreadable,
)

# What one poll may read and return, across files, so that a file that grew
# by gigabytes (or a new one full of tiny lines) is caught up over several
# polls with bounded memory, not in one list (see #12).
_POLL_BYTES: Final = 8 << 20
_POLL_ENTRIES: Final = 10_000


@dataclass
class _Cursor:
    offset: int = 0
    inode: int = 0
    lines: LineSplitter = field(default_factory=LineSplitter)


@dataclass
class _Budget:
    size: int
    entries: int

    @property
    def spent(self) -> bool:
        return self.size <= 0 or self.entries <= 0


class Follower:
    """
    Reads records appended to a live run since the last poll, new files included.

    Files of steps that start later are picked up when they appear. A line
    without its newline yet is kept until it is complete. One poll reads at
    most a fixed number of bytes and records (memory stays bounded however
    much was written meanwhile); :attr:`behind` then says more is waiting,
    and the next poll goes on from there, taking the files in turn so that
    one flooding file cannot hold the others back. Not thread-safe.
    """

    def __init__(
        self,
        logs_dir: Path,
        filters: Filters | None = None,
        start: dict[str, int] | None = None,
        report: ReadReport | None = None,
    ) -> None:
        self.logs_dir = logs_dir
        self.filters = filters or Filters()
        self.report = report
        self.behind = False
        """True when the last poll stopped before reading everything new."""
        self._cursors: dict[str, _Cursor] = {}
        self._resume: tuple[int, int, str] | None = None
        for rel, offset in (start or {}).items():
            self._cursors[rel] = self._cursor_at(rel, offset)

    def _cursor_at(self, rel: str, offset: int) -> _Cursor:
        path = self.logs_dir / rel
        try:
            with open(path, "rb") as handle:
                inode = os.fstat(handle.fileno()).st_ino
                lines = count_lines(handle, offset)
        except FileNotFoundError:
            return _Cursor()
        except OSError as exc:
            raise unreadable(path, exc) from exc
        return _Cursor(offset, inode, LineSplitter(line_no=lines))

    def poll(self) -> list[Entry]:
        """
        The matching records written since the last call, in time order.

        Raises:
            RunlogError: If a log file exists but cannot be read.
        """
        files = [
            log_file
            for log_file in list_log_files(self.logs_dir)
            if self.filters.wants_file(log_file)
        ]
        if self._resume is not None:
            # start after the file the last poll ran out in, which goes last:
            # a flooding file cannot keep the others waiting
            turn = bisect.bisect_right([file_order(f) for f in files], self._resume)
            files = files[turn:] + files[:turn]
        budget = _Budget(_POLL_BYTES, _POLL_ENTRIES)
        batches: list[list[Entry]] = []
        self.behind = False
        self._resume = None
        for log_file in files:
            cursor = self._cursors.setdefault(log_file.rel, _Cursor())
            batch = self._read_new(log_file.rel, cursor, budget)
            if batch:
                batches.append(batch)
            if budget.spent:
                # this file may hold more: the next poll ends with it
                self.behind = True
                self._resume = file_order(log_file)
                break
        return list(heapq.merge(*batches, key=entry_key))

    def _read_new(self, rel: str, cursor: _Cursor, budget: _Budget) -> list[Entry]:
        path = self.logs_dir / rel
        found: list[Entry] = []
        try:
            with open(path, "rb") as handle:
                info = os.fstat(handle.fileno())
                replaced = cursor.inode not in (0, info.st_ino)
                if replaced or info.st_size < cursor.offset:
                    # replaced or truncated: read the new file from its start
                    cursor.offset = 0
                    cursor.lines = LineSplitter()
                cursor.inode = info.st_ino
                handle.seek(cursor.offset)
                while not budget.spent:
                    chunk = handle.read(min(MIN_BLOCK, budget.size))
                    if not chunk:
                        break
                    cursor.offset += len(chunk)
                    budget.size -= len(chunk)
                    before = len(found)
                    self._parse(rel, cursor.lines, chunk, found)
                    budget.entries -= len(found) - before
        except FileNotFoundError:
            return found
        except OSError as exc:
            raise unreadable(path, exc) from exc
        return found

    def _parse(
        self, rel: str, lines: LineSplitter, chunk: bytes, found: list[Entry]
    ) -> None:
        for line_no, count, raw in lines.feed(chunk):
            if raw is None:
                if self.report is not None:
                    self.report.add_run(rel, line_no, count)
                continue
            entry = parse_entry(raw, rel, line_no, self.report)
            if entry is None:
                if count > 1 and self.report is not None:
                    self.report.add_run(rel, line_no + 1, count - 1)
            elif self.filters.matches(entry.record):
                found.append(entry)
                found.extend(copies(entry, 1, count))
