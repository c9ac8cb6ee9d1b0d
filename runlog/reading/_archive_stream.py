"""Records read straight from a run archive: members streamed, never extracted."""

from __future__ import annotations

import heapq
import tarfile
import zlib
from array import array
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Final

import orjson

from .. import _paths
from ..archive._codecs import CORRUPT_ERRORS, open_reader
from ..errors import RunlogError
from ._source import (
    MAX_BLOCK,
    Entry,
    Filters,
    LogFile,
    ReadReport,
    classify,
    entry_key,
    file_order,
    parse_entry,
)

# A line of an archive member longer than this is skipped as malformed.
_MAX_LINE = 64 << 20
_TOO_LONG: Final = b"\0 line too long"
# small, so that merging hundreds of spooled members holds little at once
_SPOOL_CHUNK: Final = 64 * 1024
_MAX_RUN_JSON: Final = 1 << 20


class _Spool:
    """Lines kept in memory zlib-compressed, with their line numbers."""

    def __init__(self) -> None:
        self.blocks: list[tuple[bytes, array[int]]] = []
        self._lines: list[bytes] = []
        self._numbers: array[int] = array("q")
        self._size = 0

    def add(self, line_no: int, raw: bytes) -> None:
        self._lines.append(raw)
        self._numbers.append(line_no)
        self._size += len(raw) + 1
        if self._size >= _SPOOL_CHUNK:
            self._seal()

    def _seal(self) -> None:
        if self._lines:
            self.blocks.append(
                (zlib.compress(b"\n".join(self._lines), 1), self._numbers)
            )
        self._lines = []
        self._numbers = array("q")
        self._size = 0

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        self._seal()
        for packed, numbers in self.blocks:
            lines = zlib.decompress(packed).split(b"\n")
            yield from zip(numbers, lines, strict=True)


def _member_log_file(member: tarfile.TarInfo) -> LogFile | None:
    # member names come from the archive and are not trusted: only the exact
    # shapes runlog writes are read, and nothing is ever written to disk
    if not member.isreg():
        return None
    prefix = _paths.LOGS_DIR + "/"
    if not member.name.startswith(prefix):
        return None
    return classify(member.name[len(prefix) :])


def _iter_member_lines(handle: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    # Member data is not trusted (see #7): a line longer than _MAX_LINE is not
    # held in memory but yielded as _TOO_LONG (a malformed line), the pieces
    # of a long line are joined once (not once per block), and a member that
    # cannot be read is a RunlogError, not a traceback.

    unreadable: tuple[type[Exception], ...] = (
        tarfile.TarError,
        OSError,
        *CORRUPT_ERRORS,
    )
    line_no = 0
    pending: list[bytes] = []
    held = 0
    while True:
        try:
            chunk = handle.read(MAX_BLOCK)
        except unreadable as exc:
            raise RunlogError(f"the archive cannot be read: {exc}") from exc
        if not chunk:
            break
        lines = chunk.split(b"\n")
        if len(lines) == 1:
            held += len(chunk)
            if held <= _MAX_LINE:
                pending.append(chunk)
            continue
        line_no += 1
        yield line_no, _joined(pending, lines[0], held + len(lines[0]))
        for raw in lines[1:-1]:
            line_no += 1
            yield line_no, raw
        pending, held = [lines[-1]], len(lines[-1])
    if held:
        yield line_no + 1, _joined(pending, b"", held)


def _joined(pieces: list[bytes], last: bytes, size: int) -> bytes:
    return _TOO_LONG if size > _MAX_LINE else b"".join([*pieces, last])


def _open_archive(path: Path) -> Iterator[tuple[tarfile.TarInfo, IO[bytes] | None]]:

    unreadable: tuple[type[Exception], ...] = (
        tarfile.TarError,
        OSError,
        *CORRUPT_ERRORS,
    )
    try:
        with (
            open_reader(path) as raw,
            tarfile.open(fileobj=raw, mode="r|") as tar,
        ):
            for member in tar:
                yield member, tar.extractfile(member) if member.isreg() else None
    except unreadable as exc:
        raise RunlogError(f"archive {str(path)!r} cannot be read: {exc}") from exc


def _archive_members(
    path: Path, filters: Filters
) -> Iterator[tuple[LogFile, IO[bytes]]]:
    for member, handle in _open_archive(path):
        log_file = _member_log_file(member)
        if log_file is not None and handle is not None and filters.wants_file(log_file):
            yield log_file, handle


def archive_records(
    path: Path, filters: Filters, report: ReadReport | None
) -> Iterator[Entry]:
    """Every matching record of the archive at *path*, in time order."""
    # Without filters every line is kept as it is and parsed once, on the
    # way out; with filters lines are parsed here so only matches are kept.
    keep_all = filters.is_empty
    spools: list[tuple[LogFile, _Spool]] = []
    for log_file, handle in _archive_members(path, filters):
        spool = _Spool()
        for line_no, raw in _iter_member_lines(handle):
            if keep_all:
                spool.add(line_no, raw)
                continue
            entry = parse_entry(raw, log_file.rel, line_no, report)
            if entry is not None and filters.matches(entry.record):
                spool.add(line_no, raw)
        spools.append((log_file, spool))
    spools.sort(key=lambda item: file_order(item[0]))
    late_report = report if keep_all else None
    streams = [
        _spool_entries(log_file.rel, spool, late_report) for log_file, spool in spools
    ]
    return heapq.merge(*streams, key=entry_key)


def _spool_entries(
    rel: str, spool: _Spool, report: ReadReport | None
) -> Iterator[Entry]:
    for line_no, raw in spool:
        entry = parse_entry(raw, rel, line_no, report)
        if entry is not None:
            yield entry


def archive_tail(
    path: Path, count: int, filters: Filters, report: ReadReport | None
) -> list[Entry]:
    """The last *count* matching records of the archive at *path*."""
    if count <= 0:
        return []
    per_file: list[tuple[LogFile, list[Entry]]] = []
    for log_file, handle in _archive_members(path, filters):
        kept: deque[Entry] = deque(maxlen=count)
        for line_no, raw in _iter_member_lines(handle):
            entry = parse_entry(raw, log_file.rel, line_no, report)
            if entry is not None and filters.matches(entry.record):
                kept.append(entry)
        per_file.append((log_file, list(kept)))
    per_file.sort(key=lambda item: file_order(item[0]))
    merged = list(heapq.merge(*(e for _, e in per_file), key=entry_key))
    return merged[-count:]


def archive_run_json(path: Path) -> dict[str, Any] | None:
    """``logs/run.json`` from an archive (read in place), or None."""
    wanted = f"{_paths.LOGS_DIR}/{_paths.RUN_JSON}"
    for member, handle in _open_archive(path):
        if member.name == wanted and handle is not None:
            data = handle.read(_MAX_RUN_JSON + 1)
            if len(data) > _MAX_RUN_JSON:
                return None
            try:
                info = orjson.loads(data)
            except orjson.JSONDecodeError:
                return None
            return info if isinstance(info, dict) else None
        if member.name > wanted and member.name.startswith(f"{_paths.LOGS_DIR}/"):
            # members are sorted: run.json would have come by now
            return None
    return None
