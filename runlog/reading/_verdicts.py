"""What the raw-byte search learnt about each log file, kept between reads.

A prefilter (:mod:`._prefilter`) reads a log file in *segments*: the whole
lines of one block, cut at its last newline. For each segment it notes how
many lines it holds, whether it is plain (so lines may be dropped by a byte
search) and, once a ``--level`` read looked, the highest level it names.
The next read of the same, unchanged file takes these facts from here: it
skips the checks, numbers lines without counting them, does not even read
a segment no line of which can match a ``--level``, and searches runs of
plain segments for a ``--grep`` needle with one read and one search, up to
1 MiB at a time (see #16).

Facts are kept per run in ``RUNS/.runlog-cache/read-<digest>.json``, each
file's under its device, inode, size, mtime and ctime. They are used only
while all five are unchanged: appending or rewriting a file changes its
size or ctime, replacing it changes its inode, and ctime cannot be set
back by a user. A file changed less than :data:`RACY_NS` before it was read
may change again within the same tick of a coarse file clock, so its facts
are not kept, nor are those of a file that changed while it was read.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson

from .. import _paths
from ._cache_file import CACHE_DIR, RACY_NS, load_cache, save_cache
from ._source import Line, Scanner, split_file, unreadable

__all__ = [
    "END",
    "LINES",
    "LOUD",
    "PLAIN",
    "TOP",
    "UNKNOWN",
    "Facts",
    "Segment",
    "cache_file_of",
    "segments",
]

_FORMAT: Final = "runlog-read-cache"
_VERSION: Final = 2
UNKNOWN: Final = -1
# The facts of a segment: where it ends, its lines, plain (0/1), the highest
# level number a line of it can have (20 or 30; 99 for any, 100 when a
# "level" key is not followed by :"), and the lines a --level above warning
# may match, as [start, size, index] (bytes from the segment's start, the
# line's index in it). Each but the first two is UNKNOWN until looked at.
END, LINES, PLAIN, TOP, LOUD = range(5)
_TOPS: Final = frozenset({UNKNOWN, 20, 30, 99, 100})

Facts = list[Any]
Plan = Callable[[Facts], list[list[int]] | None]

Key = tuple[int, int, int, int, int]


@dataclass(slots=True)
class Segment:
    """
    Whole lines of a file: ``data[:size]``, *newlines* of them, the first
    numbered *line_no*. *data* is reused for the next segment; *facts* are
    the segment's (see :data:`END`), filled in by the reader where UNKNOWN.
    """

    data: bytearray
    size: int
    line_no: int
    newlines: int
    facts: Facts

    def text(self) -> bytes:
        """The segment's bytes, as a ``bytes`` of their own."""
        return bytes(memoryview(self.data)[: self.size])


def _key(info: os.stat_result) -> Key:
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def _valid(entry: object, size: int) -> list[Facts] | None:
    # the facts as put() stores them, ends rising up to the file's size
    if not isinstance(entry, list) or not entry:
        return None
    start = 0
    for facts in entry:
        if (
            not isinstance(facts, list)
            or len(facts) != 5
            or not all(type(value) is int for value in facts[:LOUD])
            or not start < facts[END] <= size
            or not 0 < facts[LINES] <= facts[END] - start
            or facts[PLAIN] not in (UNKNOWN, 0, 1)
            or facts[TOP] not in _TOPS
            or not _valid_lines(facts[LOUD], facts[END] - start, facts[LINES])
        ):
            return None
        start = facts[END]
    checked: list[Facts] = entry
    return checked


def _valid_lines(lines: object, size: int, count: int) -> bool:
    # [start, size, index] of lines in a segment of *size* bytes and *count*
    # lines, in order, apart
    if lines == UNKNOWN:
        return True
    if not isinstance(lines, list):
        return False
    end = index = 0
    for line in lines:
        if (
            not isinstance(line, list)
            or len(line) != 3
            or not all(type(value) is int for value in line)
            or not end <= line[0] < line[0] + line[1] < size
            or not index <= line[2] < count
        ):
            return False
        end = line[0] + line[1] + 1
        index = line[2] + 1
    return True


class _RunFacts:
    """The kept facts of one run's files. Its lock guards every method."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.users = 0
        self.changed = False
        self.stamp: tuple[int, ...] = ()  # the stat of what was loaded or saved
        self.saved_at = -_SAVE_EVERY_S
        self.files: dict[str, Any] = self._load()

    def is_current(self) -> bool:
        """True if the cache file is still the one loaded or saved here."""
        return self.path is not None and _stamp(self.path) == self.stamp

    def _load(self) -> dict[str, Any]:
        if self.path is None:
            return {}
        data, info = load_cache(self.path, _FORMAT, _VERSION)
        if info is not None:
            self.stamp = _key(info)
        files = data.get("files")
        return files if isinstance(files, dict) else {}

    def get(self, rel: str, key: Key) -> list[Facts] | None:
        """The facts of file *rel* if kept under *key*, else None."""
        with self.lock:
            entry = self.files.get(rel)
        if not isinstance(entry, list) or len(entry) != 2 or entry[0] != list(key):
            return None
        return _valid(entry[1], key[2])

    def put(self, rel: str, key: Key, facts: list[Facts], started_ns: int) -> None:
        """Keep *facts* of file *rel* under *key*, unless it changed too recently."""
        if max(key[3], key[4]) > started_ns - RACY_NS:
            return
        with self.lock:
            self.files[rel] = [list(key), facts]
            self.changed = True

    def save(self) -> None:
        """
        Write the facts when they changed. A runs directory that may not be
        written (read-only, another user's) is read all the same.
        """
        with self.lock:
            if not self.changed or self.path is None:
                return
            data = orjson.dumps(
                {"format": _FORMAT, "version": _VERSION, "files": self.files}
            )
            self.changed = False
        if save_cache(self.path, data):
            self.stamp = _stamp(self.path)
        self.saved_at = time.monotonic()


def _stamp(path: Path) -> tuple[int, ...]:
    try:
        return _key(os.stat(path))
    except OSError:
        return ()


_LOCK: Final = threading.Lock()
# the facts of the runs read lately, so that the files of one read, read one
# after the other, load and write the run's cache once (a few runs at most)
_LOADED: dict[Path, _RunFacts] = {}
_KEEP: Final = 8
_SAVE_EVERY_S: Final = 1.0
# consecutive plain segments searched at once: one read, one search
_GROUP_BYTES: Final = 1 << 20
_LOCAL: Final = threading.local()
_UNSAVED: list[_RunFacts] = []  # written at exit
_AT_EXIT: list[bool] = []  # [True] once _save_unsaved is registered


def _where(path: Path) -> tuple[Path | None, str]:
    # the cache file of the run of the log file at *path* (None when it is
    # not in a run's logs/: nothing is written then), and its name in it
    parent = Path(os.path.abspath(path.parent))
    if _paths.parse_step_dir(parent.name) is not None:
        logs, rel = parent.parent, f"{parent.name}/{path.name}"
    else:
        logs, rel = parent, path.name
    if logs.name != _paths.LOGS_DIR:
        return None, rel
    name = str(logs).encode("utf-8", "surrogateescape")
    digest = hashlib.blake2b(name, digest_size=16).hexdigest()
    runs_dir = logs.parent.parent.parent
    return runs_dir / CACHE_DIR / f"read-{digest}.json", rel


def cache_file_of(logs_dir: Path) -> Path | None:
    """Where the read cache of the run whose logs are in *logs_dir* is kept."""
    return _where(Path(logs_dir) / "run.log")[0]


def _open_facts(where: Path | None) -> _RunFacts:
    if where is None:
        return _RunFacts(None)
    with _LOCK:
        found = _LOADED.pop(where, None)
        if found is None or (found.users == 0 and not found.is_current()):
            found = _RunFacts(where)  # another process wrote it meanwhile
        _LOADED[where] = found  # the most recent last
        found.users += 1
        idle = [path for path, facts in _LOADED.items() if facts.users == 0]
        for path in idle[: max(0, len(_LOADED) - _KEEP)]:
            del _LOADED[path]  # if unsaved, it is written at exit
    return found


def _close_facts(facts: _RunFacts) -> None:
    # What was learnt is written when the last reader of the run is done, at
    # most once a second: the files of one read are often read one after
    # the other. The rest is written when the process ends.
    if facts.path is None:
        return
    with _LOCK:
        facts.users -= 1
        if facts.users or not facts.changed:
            return
        due = time.monotonic() - facts.saved_at >= _SAVE_EVERY_S
        if not due and facts not in _UNSAVED:
            if not _UNSAVED and not _AT_EXIT:
                atexit.register(_save_unsaved)
                _AT_EXIT.append(True)
            _UNSAVED.append(facts)
    if due:
        facts.save()


def _save_unsaved() -> None:
    with _LOCK:
        unsaved = list(_UNSAVED)
        _UNSAVED.clear()
    for facts in unsaved:
        facts.save()


def _read_at(path: Path, key: Key, buffer: bytearray, size: int, offset: int) -> int:
    # *size* bytes at *offset* into *buffer*; 0 if the file is gone or is
    # another file now. Opened for each segment, so that merging thousands
    # of files never holds thousands of descriptors.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:  # removed while we read: it ends here
        return 0
    except OSError as exc:
        raise unreadable(path, exc) from exc
    try:
        info = os.fstat(fd)
        if (info.st_dev, info.st_ino) != key[:2]:
            return 0  # replaced while we read: what we knew is not about it
        return os.preadv(fd, [memoryview(buffer)[:size]], offset)
    except OSError as exc:
        raise unreadable(path, exc) from exc
    finally:
        os.close(fd)


def segments(
    path: Path,
    block: int,
    max_line: int,
    scan: Scanner,
    plan: Plan | None = None,
    absent: Callable[[bytearray, int], bool] | None = None,
) -> Iterator[Segment | Line]:
    """
    The file at *path* as :class:`Segment` items, each read once the one
    before was used, then the :data:`Line` items of its unfinished end (cut
    by *scan*). Facts the reader fills in are kept for the next read. Where
    *plan* gives a list for a segment's kept facts, only those of its lines
    are read, and given as :data:`Line` items (none: the segment is skipped).
    Consecutive plain segments to be read whole are first read together
    when their facts are kept: where *absent* is true of their bytes, none
    of them is given.

    A line longer than *block* ends the segments: the rest of the file is
    given as :data:`Line` items, as :func:`split_file` cuts them.

    Raises:
        RunlogError: If the file exists but cannot be read.
    """
    started_ns = time.time_ns()
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise unreadable(path, exc) from exc
    if not stat.S_ISREG(info.st_mode):
        # a FIFO, a device, a directory: read and fail as before
        yield from split_file(path, block, max_line, scan)
        return
    key = _key(info)
    where, rel = _where(path)
    run_facts = _open_facts(where)
    try:
        known = run_facts.get(rel, key)
        if known is not None and max(f[END] - s for f, s in _spans(known)) > block:
            known = None  # cut for bigger blocks: would hold more than one
        found: list[Facts] = []
        buffer = bytearray(block)
        offset = line_no = 0
        whole = True
        learnt = known is None
        alone = 0  # segments before this one are not grouped again
        done = 0  # segments before this one were searched in a group
        for number, facts in enumerate(known if known is not None else _endless()):
            if number < done:
                continue
            if known is not None and absent is not None and number >= alone:
                # consecutive plain segments are searched at once (see #16)
                group = _group(known, number, offset, plan)
                if group - number > 1:
                    last = known[group - 1]
                    space = _group_buffer()
                    got = _read_at(path, key, space, last[END] - offset, offset)
                    if got < last[END] - offset:
                        return  # shortened or replaced while we read
                    if absent(space, got):
                        found.extend(known[number:group])
                        offset = last[END]
                        line_no += sum(f[LINES] for f in known[number:group])
                        done = group
                        continue
                alone = group
            if facts is None:
                size = min(block, key[2] - offset)
                if size <= 0:
                    break
                got = _read_at(path, key, buffer, size, offset)
                cut = buffer.rfind(b"\n", 0, got) + 1
                if not cut:
                    # no newline: the unfinished last line, or a long one
                    whole = got == key[2] - offset
                    break
                lines = buffer.count(b"\n", 0, cut)
                facts = [offset + cut, lines, UNKNOWN, UNKNOWN, UNKNOWN]
            elif plan is not None and (wanted := plan(facts)) is not None:
                for start, size, index in wanted:
                    got = _read_at(path, key, buffer, size, offset + start)
                    if got < size:
                        return  # shortened or replaced while we read
                    yield line_no + 1 + index, 1, bytes(memoryview(buffer)[:size])
                found.append(facts)
                offset = facts[END]
                line_no += facts[LINES]
                continue
            else:
                got = _read_at(path, key, buffer, facts[END] - offset, offset)
                if got < facts[END] - offset:
                    return  # shortened or replaced while we read: it ends here
            before = list(facts)
            yield Segment(buffer, facts[END] - offset, line_no + 1, facts[LINES], facts)
            learnt = learnt or facts != before
            found.append(facts)
            offset = facts[END]
            line_no += facts[LINES]
        if offset < key[2] or not whole:
            yield from split_file(
                path, block, max_line, scan, offset=offset, line_no=line_no
            )
        if (
            whole
            and found
            and learnt
            and all(facts[PLAIN] != UNKNOWN for facts in found)
            and _unchanged(path, key)
        ):
            run_facts.put(rel, key, found, started_ns)
    finally:
        _close_facts(run_facts)


def _group(known: list[Facts], first: int, offset: int, plan: Plan | None) -> int:
    # the end of the run of plain segments from known[first] on (it starts
    # at *offset*) that would be read whole, within _GROUP_BYTES
    end = first
    while end < len(known):
        facts = known[end]
        if facts[PLAIN] != 1 or facts[END] - offset > _GROUP_BYTES:
            break
        if plan is not None and plan(facts) is not None:
            break
        end += 1
    return end


def _group_buffer() -> bytearray:
    # one a thread: used only while a group is searched, never across a yield
    space: bytearray | None = getattr(_LOCAL, "space", None)
    if space is None:
        space = _LOCAL.space = bytearray(_GROUP_BYTES)
    return space


def _spans(known: list[Facts]) -> Iterator[tuple[Facts, int]]:
    start = 0
    for facts in known:
        yield facts, start
        start = facts[END]


def _endless() -> Iterator[None]:
    while True:
        yield None


def _unchanged(path: Path, key: Key) -> bool:
    try:
        return _key(os.stat(path)) == key
    except OSError:
        return False
