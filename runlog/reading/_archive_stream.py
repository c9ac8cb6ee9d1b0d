"""Records read straight from a run archive: members streamed, never extracted."""

from __future__ import annotations

import heapq
import io
import itertools
import tarfile
import tempfile
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, Final, TypeAlias, cast

import orjson
import zstandard

from .. import _paths
from ..archive._codecs import CORRUPT_ERRORS, ForwardReader, open_reader
from ..errors import RunlogError
from ._batch import lines_taker
from ._source import (
    MAX_BLOCK,
    MAX_LINE,
    Entry,
    Filters,
    Line,
    LineSplitter,
    LogFile,
    ReadReport,
    Scanner,
    classify,
    copies,
    entry_key,
    file_order,
    parse_entry,
)
from ._timeorder import merge_batches

# A line of an archive member longer than this is skipped as malformed.
_MAX_LINE = MAX_LINE
# small, so that merging hundreds of spooled members holds little at once
_SPOOL_CHUNK: Final = 64 * 1024
# lines of a member spooled at once: a block then ends within a few dozen
# KiB of _SPOOL_CHUNK, and a merge holds one block's lines per member
_SPOOL_BATCH: Final = 128
# Compressed spool kept in memory; past it, blocks go to an unnamed temporary
# file, so reading a large archive holds a constant amount (see #12).
_SPOOL_MEMORY: Final = 32 << 20
_MAX_RUN_JSON: Final = 1 << 20
# decompressed ahead by the reader thread: a few small blocks keep it busy
# without growing the peak memory of a read (see #12, #16)
_AHEAD_BLOCK: Final = 256 << 10
_AHEAD_DEPTH: Final = 4
# A pax or GNU long-name header is read whole by tarfile: a bigger one is
# refused (a 200 KB .tar.gz can hold a 200 MB header; see #12).
_MAX_HEADER: Final = 1 << 20
_LONG_HEADERS: Final = frozenset(
    {
        tarfile.XHDTYPE,
        tarfile.XGLTYPE,
        tarfile.SOLARIS_XHDTYPE,
        tarfile.GNUTYPE_LONGNAME,
        tarfile.GNUTYPE_LONGLINK,
    }
)
_UNREADABLE: Final[tuple[type[Exception], ...]] = (
    tarfile.TarError,
    OSError,
    *CORRUPT_ERRORS,
)
# Spool markers: a kept line starts with blanks or `{`, so these never clash.
_SKIP: Final = b"#"  # that many line numbers not kept (filtered out, reported)
_BAD: Final = b"!"  # that many malformed lines, to report on the way out
_REPEAT: Final = b"*"  # the next kept line stands for that many copies

_Block: TypeAlias = bytes | tuple[int, int]


class _BoundedTarInfo(tarfile.TarInfo):
    """A member header that refuses extended headers too big to hold (see #12)."""

    # _proc_member is tarfile's documented hook for subclasses (see its source)
    def _proc_member(self, tar: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _LONG_HEADERS and self.size > _MAX_HEADER:
            raise tarfile.HeaderError(
                f"an extended header of {self.size} bytes (at most {_MAX_HEADER})"
            )
        return super()._proc_member(tar)  # type: ignore[misc, no-any-return]  # private in typeshed


class _Blocks:
    """
    The sealed spool blocks of one archive read.

    Kept in memory up to ``_SPOOL_MEMORY`` bytes, then appended to an unnamed
    temporary file (no path ever appears on disk). Not thread-safe.
    """

    def __init__(self) -> None:
        self._held = 0
        self._file: IO[bytes] | None = None
        # zstd at level 1: four times zlib's speed at level 1, smaller (#16)
        self._pack = zstandard.ZstdCompressor(level=1).compress
        self._unpack = zstandard.ZstdDecompressor().decompress

    def put(self, data: bytes) -> _Block:
        """Keep *data*, compressed; the block :meth:`get` gives it back from."""
        # copied: python-zstandard's result keeps the whole bound allocated
        packed = bytes(memoryview(self._pack(data)))
        if self._held + len(packed) <= _SPOOL_MEMORY:
            self._held += len(packed)
            return packed
        try:
            if self._file is None:
                self._file = tempfile.TemporaryFile()  # noqa: SIM115  # closed by close()
            offset = self._file.seek(0, io.SEEK_END)
            self._file.write(packed)
        except OSError as exc:
            raise RunlogError(
                f"cannot spool the archive to {tempfile.gettempdir()!r}: "
                f"{exc.strerror or exc}"
            ) from exc
        return offset, len(packed)

    def get(self, block: _Block) -> bytes:
        """The data kept as *block*."""
        if isinstance(block, bytes):
            return self._unpack(block)
        assert self._file is not None  # a tuple is only made with a file
        offset, size = block
        self._file.seek(offset)
        return self._unpack(self._file.read(size))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


class _Spool:
    """
    One member's kept lines, compressed in blocks; line numbers implied.

    Runs are not stored one line each: lines not kept are one marker (``#n``
    skipped, ``!n`` malformed) and identical lines one line after ``*n``, so
    a member of a million blank or identical lines spools a few bytes (see
    #12).
    """

    def __init__(self, blocks: _Blocks) -> None:
        self._store = blocks
        self.blocks: list[_Block] = []
        self._lines: list[bytes] = []
        self._size = 0
        self._skipped = 0
        self._bad = 0

    def add(self, raw: bytes, count: int = 1) -> None:
        """Keep *raw* (a line that may be a record) as the next *count* lines."""
        if self._skipped or self._bad:
            self._mark()
        if count > 1:
            self._lines.append(b"%s%d" % (_REPEAT, count))
        self._lines.append(raw)
        self._size += len(raw) + 1
        if self._size >= _SPOOL_CHUNK:
            self._seal()

    def add_all(self, raws: Sequence[bytes]) -> None:
        """:meth:`add` of each of *raws*, one line each, in one go (see #16)."""
        if self._skipped or self._bad:
            self._mark()
        self._lines += raws
        self._size += sum(map(len, raws)) + len(raws)
        if self._size >= _SPOOL_CHUNK:
            self._seal()

    def skip(self, count: int) -> None:
        """Pass over *count* lines (not wanted, or already reported)."""
        if self._bad:
            self._mark()
        self._skipped += count

    def malformed(self, count: int) -> None:
        """Note *count* malformed lines, reported when read back."""
        if self._skipped:
            self._mark()
        self._bad += count

    def finish(self) -> None:
        """Seal what is left: the member is read, only compressed blocks stay."""
        self._skipped = 0  # nothing follows them
        self._mark()
        self._seal()

    def _mark(self) -> None:
        for marker, count in ((_SKIP, self._skipped), (_BAD, self._bad)):
            if count:
                self._lines.append(b"%s%d" % (marker, count))
                self._size += len(self._lines[-1]) + 1
        self._skipped = self._bad = 0

    def _seal(self) -> None:
        if self._lines:
            self.blocks.append(self._store.put(b"\n".join(self._lines)))
        self._lines = []
        self._size = 0

    def lines(self) -> Iterator[Line]:
        """The kept lines as :data:`Line` items (malformed runs with raw None)."""
        self.finish()
        # a block's items at once, not a generator step per line (see #16)
        return itertools.chain.from_iterable(self._blocks_lines())

    def _blocks_lines(self) -> Iterator[Iterable[Line]]:
        line_no = 1
        repeat = 1
        for block in self.blocks:
            kept = self._store.get(block).split(b"\n")
            if repeat == 1 and min(kept)[:1] == b"{":
                # no marker and no blank line: one kept line each
                yield zip(itertools.count(line_no), itertools.repeat(1), kept)
                line_no += len(kept)
                continue
            items: list[Line] = []
            for item in kept:
                head = item[:1]
                if head == _SKIP:
                    line_no += int(item[1:])
                elif head == _BAD:
                    count = int(item[1:])
                    items.append((line_no, count, None))
                    line_no += count
                elif head == _REPEAT:
                    repeat = int(item[1:])
                else:
                    items.append((line_no, repeat, item))
                    line_no += repeat
                    repeat = 1
            yield items


def _member_log_file(member: tarfile.TarInfo) -> LogFile | None:
    # member names come from the archive and are not trusted: only the exact
    # shapes runlog writes are read, and nothing is ever written to disk
    if not member.isreg():
        return None
    prefix = _paths.LOGS_DIR + "/"
    if not member.name.startswith(prefix):
        return None
    return classify(member.name[len(prefix) :])


def _member_lines(
    handle: _MemberData, path: Path, scan: Scanner | None = None
) -> Iterator[Line]:
    # Member data is not trusted (see #7, #12): lines are cut in linear time,
    # a line longer than _MAX_LINE is counted but never held, runs of blank
    # or non-record lines are counted in bulk, and a member that cannot be
    # read is a RunlogError, not a traceback. A chunk's lines come at once,
    # not a generator step per line (see #16).
    return itertools.chain.from_iterable(_member_chunks_lines(handle, path, scan))


def _member_chunks_lines(
    handle: _MemberData, path: Path, scan: Scanner | None
) -> Iterator[Iterable[Line]]:
    splitter = LineSplitter(_MAX_LINE, scan=scan)
    while True:
        try:
            chunk = handle.read(MAX_BLOCK)
        except _UNREADABLE as exc:
            raise RunlogError(f"archive {str(path)!r} cannot be read: {exc}") from exc
        if not chunk:
            break
        yield splitter.feed(chunk)
    rest = splitter.rest()  # the member is whole: its unended last line counts
    if rest is not None:
        yield (rest,)


class _MemberData:
    """
    One member's data, read from the archive's forward-only reader.

    It moves the reader to the data only when first read, so a member that
    is not wanted is passed over by the next header's seek. Not thread-safe.
    """

    def __init__(self, reader: ForwardReader, member: tarfile.TarInfo) -> None:
        self._reader = reader
        self._offset = member.offset_data
        self._left = member.size

    def read(self, size: int = -1) -> bytes:
        """The next *size* bytes of the member (all the rest when negative)."""
        if self._left <= 0:
            return b""
        if self._offset >= 0:
            self._reader.seek(self._offset)
            self._offset = -1
        wanted = self._left if size < 0 else min(size, self._left)
        data = self._reader.read(wanted)
        if len(data) < wanted:
            raise tarfile.ReadError("unexpected end of data")
        self._left -= len(data)
        return data


def _open_archive(path: Path) -> Iterator[tuple[tarfile.TarInfo, _MemberData | None]]:
    # One pass: a thread decompresses ahead while members are read here
    # (zlib and zstandard let go of the GIL), and member data is read in
    # big blocks straight from the decompressed stream (see #16).
    try:
        with open_reader(path) as raw:
            reader = ForwardReader(raw, size=_AHEAD_BLOCK, depth=_AHEAD_DEPTH)
            try:
                with tarfile.open(
                    fileobj=reader, mode="r:", tarinfo=_BoundedTarInfo
                ) as tar:
                    while (member := tar.next()) is not None:
                        data = _MemberData(reader, member) if member.isreg() else None
                        yield member, data
            finally:
                reader.close()
    except _UNREADABLE as exc:
        raise RunlogError(f"archive {str(path)!r} cannot be read: {exc}") from exc


def _archive_members(
    path: Path, filters: Filters
) -> Iterator[tuple[LogFile, _MemberData]]:
    for member, handle in _open_archive(path):
        log_file = _member_log_file(member)
        if log_file is not None and handle is not None and filters.wants_file(log_file):
            yield log_file, handle


def archive_batches(
    path: Path,
    filters: Filters,
    report: ReadReport | None,
    scan: Scanner | None = None,
) -> Iterator[list[Entry]]:
    """
    Every matching record of the archive at *path*, in time order, a list at
    a time (none empty).

    The archive is read once, in place; each member's wanted lines are
    spooled compressed (in memory up to a budget, then in an unnamed
    temporary file), then merged a batch at a time, as a directory's files
    are (see #16). Memory stays bounded whatever the line count or the
    compression ratio: a block per member, plus the longest line.

    *scan* (a prefilter's) may leave out lines the filters cannot match.

    Raises:
        RunlogError: If the archive cannot be read (named in the message).
    """
    # Without filters every line is kept as it is and parsed once, on the
    # way out; with filters lines are parsed here so only matches are kept.
    keep_all = filters.is_empty
    if keep_all:
        scan = None
    blocks = _Blocks()
    try:
        spools: list[tuple[LogFile, _Spool]] = []
        for log_file, handle in _archive_members(path, filters):
            spool = _Spool(blocks)
            lines = _member_lines(handle, path, scan)
            if keep_all:
                _spool_all(spool, lines)
            else:
                _spool_matches(spool, lines, log_file.rel, filters, report)
            spool.finish()
            spools.append((log_file, spool))
        spools.sort(key=lambda item: file_order(item[0]))
        late_report = report if keep_all else None
        takers = [
            lines_taker(spool.lines(), log_file.rel, late_report)
            for log_file, spool in spools
        ]
        yield from merge_batches(takers)
    finally:
        blocks.close()


def _spool_all(spool: _Spool, lines: Iterator[Line]) -> None:
    # every line kept as it is; malformed ones reported when read back
    expected = 1  # the next line number
    while items := list(itertools.islice(lines, _SPOOL_BATCH)):
        numbers, counts, raws = zip(*items, strict=True)
        if (
            numbers[0] == expected
            and counts.count(1) == len(counts)
            and None not in raws
        ):
            # the usual run of lines: one record each (see #16)
            spool.add_all(cast("tuple[bytes, ...]", raws))
            expected = numbers[-1] + 1
            continue
        for line_no, count, raw in items:
            if line_no > expected:
                spool.skip(line_no - expected)
            expected = line_no + count
            if raw is None:
                spool.malformed(count)
            else:
                spool.add(raw, count)


def _spool_matches(
    spool: _Spool,
    lines: Iterator[Line],
    rel: str,
    filters: Filters,
    report: ReadReport | None,
) -> None:
    # only the lines whose records match; malformed ones reported now
    expected = 1  # the next line number; a prefilter skips some
    for line_no, count, raw in lines:
        if line_no > expected:
            spool.skip(line_no - expected)
        expected = line_no + count
        if raw is None:
            if report is not None:
                report.add_run(rel, line_no, count)
            spool.skip(count)
            continue
        entry = parse_entry(raw, rel, line_no, report)
        if entry is None and count > 1 and report is not None:
            report.add_run(rel, line_no + 1, count - 1)
        if entry is not None and filters.matches(entry.record):
            spool.add(raw, count)
        else:
            spool.skip(count)


def archive_tail(
    path: Path, count: int, filters: Filters, report: ReadReport | None
) -> list[Entry]:
    """
    The last *count* matching records of the archive at *path*.

    Holds at most *count* records per member while it streams.

    Raises:
        RunlogError: If the archive cannot be read (named in the message).
    """
    if count <= 0:
        return []
    per_file: list[tuple[LogFile, list[Entry]]] = []
    for log_file, handle in _archive_members(path, filters):
        kept: deque[Entry] = deque(maxlen=count)
        for line_no, lines, raw in _member_lines(handle, path):
            if raw is None:
                if report is not None:
                    report.add_run(log_file.rel, line_no, lines)
                continue
            entry = parse_entry(raw, log_file.rel, line_no, report)
            if entry is None:
                if lines > 1 and report is not None:
                    report.add_run(log_file.rel, line_no + 1, lines - 1)
            elif filters.matches(entry.record):
                kept.append(entry)
                if lines > 1:
                    # only the last *count* copies of a repeated line can stay
                    kept.extend(copies(entry, max(1, lines - count), lines))
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
