"""Records appended to a live run since the last poll, for ``runlog tail -f``."""

from __future__ import annotations

import heapq
import os
from dataclasses import dataclass
from pathlib import Path

from ._source import (
    Entry,
    Filters,
    ReadReport,
    count_lines,
    entry_key,
    list_log_files,
    parse_entry,
)


@dataclass
class _Cursor:
    offset: int = 0
    line_no: int = 0
    pending: bytes = b""
    inode: int = 0


class Follower:
    """
    Reads records appended to a live run since the last poll, new files included.

    Files of steps that start later are picked up when they appear. A line
    without its newline yet is kept until it is complete. Not thread-safe.
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
        self._cursors: dict[str, _Cursor] = {}
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
        return _Cursor(offset, lines, b"", inode)

    def poll(self) -> list[Entry]:
        """The matching records written since the last call, in time order."""
        batches: list[list[Entry]] = []
        for log_file in list_log_files(self.logs_dir):
            if not self.filters.wants_file(log_file):
                continue
            cursor = self._cursors.setdefault(log_file.rel, _Cursor())
            batch = self._read_new(log_file.rel, cursor)
            if batch:
                batches.append(batch)
        return list(heapq.merge(*batches, key=entry_key))

    def _read_new(self, rel: str, cursor: _Cursor) -> list[Entry]:
        try:
            with open(self.logs_dir / rel, "rb") as handle:
                info = os.fstat(handle.fileno())
                replaced = cursor.inode not in (0, info.st_ino)
                if replaced or info.st_size < cursor.offset:
                    # replaced or truncated: read the new file from its start
                    cursor.offset = cursor.line_no = 0
                    cursor.pending = b""
                cursor.inode = info.st_ino
                handle.seek(cursor.offset)
                data = handle.read()
        except FileNotFoundError:
            return []
        if not data:
            return []
        cursor.offset += len(data)
        data = cursor.pending + data
        cut = data.rfind(b"\n")
        if cut < 0:
            cursor.pending = data
            return []
        cursor.pending = data[cut + 1 :]
        found = []
        for raw in data[:cut].split(b"\n"):
            cursor.line_no += 1
            entry = parse_entry(raw, rel, cursor.line_no, self.report)
            if entry is not None and self.filters.matches(entry.record):
                found.append(entry)
        return found
