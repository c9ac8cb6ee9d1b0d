"""combined.log: the human line format shared with the console, and the line cap."""

from __future__ import annotations

import errno
import fcntl
import os
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Final

from ._files import as_write_error, open_append, write_all
from ._records import RESERVED_KEYS, dumps_value
from ._text import clean

__all__ = [
    "CombinedLog",
    "format_human",
    "format_pairs",
    "format_value",
    "format_written",
    "human_line",
    "line_head",
]

DEFAULT_MAX_LINES: Final = 5000
DEFAULT_TRIM_FRACTION: Final = 0.1
# How many appends go by between checks for other writers: another process's
# lines (which count toward the cap) or a trim by another process.
_CHECK_EVERY: Final = 64
# Written into a replaced combined.log by whoever carries its late lines over
# to the new one: what follows the last mark has not been carried yet. No
# record line can look like it (each starts with its timestamp).
_CARRIED: Final = b"\x00carried\n"
_READ_CHUNK: Final = 1 << 20
_PLAIN_VALUE: Final = re.compile(r'[^\s"=\\]+')
_is_plain: Final = _PLAIN_VALUE.fullmatch
# plain and printable ASCII: nothing in it to escape for a terminal (see #16)
_is_safe_plain: Final = re.compile(r"[!#-<>-\[\]-~]+").fullmatch
# the first character that is not: a search that finds none makes no match
# object, so a plain value costs less than with _is_safe_plain (see #16)
_find_unsafe: Final = re.compile(r"[^!#-<>-\[\]-~]").search
# ints of under 64 bits are written with str(); a comparison costs less than
# bit_length() < 64, the same test (see #16)
_INT_MIN: Final = -(1 << 63)
_INT_LIMIT: Final = 1 << 63
_COLORS: Final = {
    "debug": "\x1b[2m",
    "info": "\x1b[32m",
    "warning": "\x1b[33m",
    "error": "\x1b[31m",
    "critical": "\x1b[1;31m",
}
_RESET: Final = "\x1b[0m"
_prefixes: dict[tuple[str, str, int | None, bool], str] = {}
_plain_prefixes: dict[tuple[str, str, int | None], str] = {}


def format_value(value: Any) -> str:
    """A value for ``key=value``: bare when unambiguous, else JSON (escaped)."""
    kind = type(value)
    if kind is str:
        return value if _PLAIN_VALUE.fullmatch(value) else dumps_value(value)
    if kind is int and value.bit_length() < 64:
        return str(value)
    return dumps_value(value)


def _prefix(level: str, component: str, step: int | None, color: bool) -> str:
    key = (level, component, step, color)
    prefix = _prefixes.get(key)
    if prefix is None:
        level_text = f"{clean(level):<8}"
        if color:
            level_text = f"{_COLORS.get(level, '')}{level_text}{_RESET}"
        step_text = "-" if step is None else clean(str(step))
        prefix = f" {level_text} [{clean(component)}] step={step_text} "
        if len(_prefixes) > 4096:
            _prefixes.clear()
        _prefixes[key] = prefix
    return prefix


def format_human(record: Mapping[str, Any], *, color: bool = False) -> str:
    """
    One line: ``ts level [component] step=N event key=value ...`` (no newline).

    Newlines inside the event or any value are escaped, so one record is
    always one line, and every other character that could act on a terminal
    is shown escaped (see #12). Keys may come in any order.
    """
    return _format(
        record.get("ts", ""),
        record.get("level", ""),
        record.get("event", ""),
        record.get("component", ""),
        record.get("step"),
        [(k, v) for k, v in record.items() if k not in RESERVED_KEYS],
        color,
    )


def format_written(record: dict[str, Any]) -> str:
    """:func:`format_human` for a record built by runlog (reserved keys first)."""
    # The hot path of every record (see #16). Each piece is checked for what
    # could act on a terminal as it is made, not the whole line at the end:
    # a printable piece is kept, any other goes through clean(), which gives
    # the same line clean() of the whole would (see #12).
    items = iter(record.items())
    ts = next(items)[1]
    level = next(items)[1]
    event = next(items)[1]
    next(items)
    component = next(items)[1]
    next(items)
    next(items)
    step = next(items)[1]
    head = line_head(ts, level, component, step, event)
    if len(record) == len(RESERVED_KEYS):
        return head
    return f"{head} {format_pairs(items)}"


def line_head(ts: str, level: str, component: str, step: int | None, event: str) -> str:
    """The start of a :func:`format_written` line: ``ts level [comp] step=N event``."""
    if not event.isprintable():
        if "\n" in event or "\r" in event:
            event = dumps_value(event)
        event = clean(event)
    prefix = _plain_prefixes.get((level, component, step))
    if prefix is None:
        prefix = _prefix(level, component, step, False)
        if len(_plain_prefixes) > 4096:
            _plain_prefixes.clear()
        _plain_prefixes[(level, component, step)] = prefix
    if not ts.isprintable():
        ts = clean(ts)
    return ts + prefix + event


def human_line(
    ts: str,
    level: str,
    component: str,
    step: int | None,
    event: str,
    pairs: Mapping[str, Any],
) -> bytes:
    """
    ``format_written(record)`` as combined.log's bytes, newline included.

    For a record of these pieces whose own pairs are *pairs*, and whose *ts*
    is from :func:`~runlog._records.utc_timestamp` (printable, so not checked):
    one call instead of three on the path of every record (see #16).
    """
    # line_head's body, inlined: a call costs ~100 ns of every record here
    if not event.isprintable():
        if "\n" in event or "\r" in event:
            event = dumps_value(event)
        event = clean(event)
    prefix = _plain_prefixes.get((level, component, step))
    if prefix is None:
        prefix = _prefix(level, component, step, False)
        if len(_plain_prefixes) > 4096:
            _plain_prefixes.clear()
        _plain_prefixes[(level, component, step)] = prefix
    if pairs:
        text = f"{ts}{prefix}{event} {format_pairs(pairs.items())}\n"
    else:
        text = f"{ts}{prefix}{event}\n"
    return text.encode("utf-8", "backslashreplace")


def format_pairs(items: Iterable[tuple[str, Any]]) -> str:
    """The rest of :func:`format_written`'s line: ``key=value ...``, escaped."""
    parts: list[str] = []
    append = parts.append
    keys = _key_texts
    for key, value in items:
        text = keys.get(key)
        if text is None:
            text = _key_text(key)
        kind = type(value)
        if kind is int:
            # a huge int has no str() (over 4300 digits): dumps_value below
            if _INT_MIN < value < _INT_LIMIT:
                append(f"{text}={value}")
                continue
        elif kind is str:
            if value and _find_unsafe(value) is None:
                append(f"{text}={value}")
                continue
            if _is_plain(value):
                append(f"{text}={clean(value)}")
                continue
        append(f"{text}={clean(dumps_value(value))}")
    return " ".join(parts)


# a caller's key as written: line breaks escaped, so one record stays one
# line (see #7), and cleaned (see #12); remembered, so a record pays one
# dict lookup per key
_key_texts: dict[str, str] = {}


def _key_text(key: str) -> str:
    text = clean(_one_line(key))
    if len(_key_texts) < 10_000:
        _key_texts[key] = text
    return text


def _one_line(text: str) -> str:
    # values and the event are escaped already; a caller's key may still hold
    # a line break, which must not split the record in two (see #7)
    if "\n" in text or "\r" in text:
        return text.replace("\n", "\\n").replace("\r", "\\r")
    return text


def _format(
    ts: Any,
    level: Any,
    event: Any,
    component: Any,
    step: Any,
    pairs: Iterable[tuple[str, Any]],
    color: bool = False,
) -> str:
    if type(event) is not str or "\n" in event or "\r" in event:
        event = dumps_value(event)
    parts = [event]
    for key, value in pairs:
        kind = type(value)
        if (kind is int and value.bit_length() < 64) or (
            kind is str and _PLAIN_VALUE.fullmatch(value)
        ):
            parts.append(f"{key}={value}")
        else:
            parts.append(f"{key}={dumps_value(value)}")
    # the prefix may hold colour codes of our own; everything else is escaped
    prefix = _prefix(str(level), str(component), step, color)
    return f"{clean(str(ts))}{prefix}{clean(_one_line(' '.join(parts)))}"


class CombinedLog:
    """
    Appends human lines to ``logs/combined.log`` and keeps it under *max_lines*.

    Never trimmed before it holds *max_lines* lines; then the oldest lines are
    dropped in batches of *trim_fraction* of the cap by atomic replace, so an
    append stays O(1) amortized. The new file is written as
    ``.combined.log.spare`` and renamed into place. When no other process
    has the replaced file open (every writer holds a shared ``flock`` on the
    file it appends to), the replaced inode becomes the next spare: rewriting
    already-allocated blocks costs a small fraction of allocating new ones.

    Several processes may append at once: each line is one ``O_APPEND`` write;
    every few appends a writer re-reads the file's size (other processes'
    lines count toward the cap) and notices a trim made by another process.
    Trims hold an exclusive ``flock`` on the logs directory. Lines other
    processes append to the replaced file are carried over to the new one:
    by the trim for those written before it (all of them, when the replaced
    file is reused as the spare), by each writer when it notices the trim for
    those written after; a writer that notices waits for the trim to end, so
    each process's lines stay in its order. Only a process killed in the
    middle of a trim or a carry-over can leave lines out of combined.log;
    every record is still in its step file. Thread-safe.
    """

    def __init__(
        self,
        path: Path,
        max_lines: int = DEFAULT_MAX_LINES,
        trim_fraction: float = DEFAULT_TRIM_FRACTION,
        *,
        lock: threading.RLock | None = None,
    ) -> None:
        self.path = path
        self.spare_path = path.with_name(f".{path.name}.spare")
        self._previous_path = path.with_name(f".{path.name}.previous")
        self.max_lines = max_lines
        self.batch = max(1, int(max_lines * trim_fraction))
        # a trim keeps at least the newest line, whatever the cap and batch
        self.keep = max(1, max_lines - self.batch)
        # a lock of the caller's: its appends under it take no second lock
        self._lock = lock if lock is not None else threading.RLock()
        self._fd: int | None = None
        self._size = 0
        self._lines = 0
        # the last point up to which the file's lines were counted, not
        # inferred: past it, other writers' lines interleave with ours (#7)
        self._counted_size = 0
        self._counted_lines = 0
        self._unchecked = 0
        self._busy = False
        self._deferred: list[tuple[bytes, int]] = []

    def append(self, line: bytes, count: int = 1) -> None:
        """
        Append one whole ``\\n``-terminated line (or *count* of them at once).

        A line logged from inside an append (a signal handler that logs while
        a trim holds the directory lock) is written right after it, so it
        neither deadlocks on that lock nor upsets the trim.

        Raises:
            LogWriteError: With the path and the OS reason.
        """
        with self._lock:
            self.append_locked(line, count)

    def append_locked(self, line: bytes, count: int = 1) -> None:
        """
        :meth:`append`, for a caller holding the lock this log was given.

        Raises:
            LogWriteError: As :meth:`append`.
        """
        fd = self._fd
        if (
            fd is not None
            and not self._busy
            and self._lines + count < self.max_lines
            and self._unchecked + count < _CHECK_EVERY
        ):
            # the common case (see #16): no check and no trim due, so one
            # write and three counters; a line logged from a signal
            # handler meanwhile takes the full path below
            try:
                written = os.write(fd, line)
                if written != len(line):
                    write_all(fd, line[written:])
            except OSError as exc:
                self._close_fd()
                raise as_write_error(exc, self.path) from exc
            self._size += len(line)
            self._lines += count
            self._unchecked += count
            return
        if self._busy:
            self._deferred.append((line, count))  # see #7
            return
        self._busy = True
        try:
            self._append(line, count)
            if self._deferred:
                while self._deferred:
                    self._append(*self._deferred.pop(0))
        finally:
            self._busy = False

    def _append(self, line: bytes, count: int = 1) -> None:
        # called with self._lock held
        try:
            fd = self._fd if self._fd is not None else self._open()
            write_all(fd, line)
            self._size += len(line)
            self._lines += count
            self._unchecked += count
            if self._unchecked >= _CHECK_EVERY:
                self._check()
            if self._lines >= self.max_lines and self._lines > self.keep:
                self._check()
                if self._lines >= self.max_lines:
                    self._trim()
        except OSError as exc:
            self._close_fd()
            raise as_write_error(exc, self.path) from exc

    def close(self) -> None:
        """Close the file and drop the spare; the next append reopens it."""
        with self._lock:
            if self._fd is not None:
                try:
                    self._check()  # carry over lines a trim elsewhere left (#7)
                    if self._lines >= self.max_lines and self._lines > self.keep:
                        self._trim()
                except OSError as exc:
                    self._close_fd()
                    raise as_write_error(exc, self.path) from exc
            self._close_fd()
            # a read-only mount refuses to unlink even a name that is not
            # there (EROFS), so look first (see #7)
            if os.path.lexists(self.spare_path):
                # under the lock: another process may be trimming into it
                with self._dir_locked(), suppress(FileNotFoundError):
                    os.unlink(self.spare_path)

    def reset_after_fork(self, lock: threading.RLock | None = None) -> None:
        """
        In a forked child: a fresh lock (*lock*, if given), and a descriptor of its own.

        The inherited descriptor shares the parent's shared flock, which would
        hide the child from the parent's check for other writers.
        """
        self._lock = lock if lock is not None else threading.RLock()
        self._busy = False
        self._deferred = []
        self._close_fd()

    def _close_fd(self) -> None:
        if self._fd is not None:
            with suppress(OSError):  # closing after a failed write can fail again
                os.close(self._fd)
            self._fd = None

    def _open(self, known: tuple[int, int] = (0, 0)) -> int:
        """
        Open the file and count its lines.

        *known* is (bytes, lines) of a head the caller wrote itself: only what
        follows it is read. Other writers may have appended already (#7).
        """
        self._close_fd()
        while True:
            fd = open_append(self.path, readable=True)
            fcntl.flock(fd, fcntl.LOCK_SH)
            # a trim may have replaced the file between the open and the flock
            with suppress(FileNotFoundError):
                if os.lstat(self.path).st_ino == os.fstat(fd).st_ino:
                    break
            os.close(fd)
        self._fd = fd
        self._size, self._lines = known
        self._counted_size, self._counted_lines = known
        self._sync(os.fstat(fd).st_size)
        self._unchecked = 0
        return fd

    def _sync(self, size: int) -> None:
        """
        Bring the line count up to *size*, the file's size now.

        When only this writer appended since the last count, the size matches
        and nothing is read. Otherwise every line past the last count is
        counted again, ours included: our lines landed wherever O_APPEND put
        them among the others', so adding the others' bytes' newlines to ours
        miscounts (and a low count lets the file grow past the cap, #7).
        """
        assert self._fd is not None
        if size != self._size:
            self._lines = self._counted_lines + _count_lines(
                self._fd, self._counted_size, size
            )
            self._size = size
        self._counted_size = size
        self._counted_lines = self._lines

    def _check(self, *, locked: bool = False) -> None:
        """Catch up with other writers: their lines, their trims, a deletion."""
        assert self._fd is not None
        self._unchecked = 0
        info = os.fstat(self._fd)
        try:
            # lstat: a link put at the name is a replacement too (see #12)
            current = os.lstat(self.path).st_ino
        except FileNotFoundError:
            current = -1
        if info.st_nlink == 0 or current != info.st_ino:
            old = self._fd
            self._fd = None
            try:
                if locked:
                    self._move_to_new_file(old)
                else:
                    # A trim may still be under way: wait for it, so it has
                    # carried our older lines over before we append newer ones
                    # to the new file. Appending at once put them out of order,
                    # and a later trim cutting between the two left a gap (#7).
                    with self._dir_locked():
                        self._move_to_new_file(old)
            finally:
                os.close(old)
        else:
            self._sync(info.st_size)

    def _move_to_new_file(self, old: int) -> None:
        """Open the file now at the name; carry over what *old* holds for it."""
        self._open()
        # looked at again under the directory lock: the trim is over now
        info = os.fstat(old)
        if info.st_nlink == 0 and info.st_size:
            # lines written to the replaced file after a trim, or a deleted
            # file's lines (#7)
            self._carry_over(old, None)

    @contextmanager
    def _dir_locked(self) -> Iterator[None]:
        """Hold the exclusive flock on the logs directory that trims take."""
        dir_fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(dir_fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(dir_fd)  # closing releases the flock

    def _trim(self) -> None:
        with self._dir_locked():
            # another process may have trimmed while we waited
            self._check(locked=True)
            # lines carried over from the replaced file may need another pass
            while self._lines >= self.max_lines and self._lines > self.keep:
                self._replace_with_tail()

    def _replace_with_tail(self) -> None:
        assert self._fd is not None
        keep = self.keep
        cut = _offset_after_lines(self._fd, self._lines - keep)
        length = self._size - cut
        spare = self._open_spare()
        try:
            _copy_range(self._fd, spare, cut, length)
            os.ftruncate(spare, length)
        finally:
            os.close(spare)
        with suppress(FileNotFoundError):  # left over by a crash mid-trim
            os.unlink(self._previous_path)
        # the name itself, never what a link put there points to (see #12)
        os.link(self.path, self._previous_path, follow_symlinks=False)
        os.replace(self.spare_path, self.path)
        old = self._fd
        self._fd = None
        try:
            # writers that noticed the new file may have appended to it already
            self._open(known=(length, keep))
            try:
                # the file is out of reach by its name now: if no other writer
                # holds it, it is ours alone and can be the next spare
                fcntl.flock(old, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.unlink(self._previous_path)
                self._carry_over(old, cut + length)  # a fresh spare next time (#7)
            else:
                # Lines appended after the copy by writers that have closed it
                # since: no writer can add to the old file now, so all of them
                # are carried over before it is reused (#7).
                self._carry_lines(old, cut + length, os.fstat(old).st_size)
                os.replace(self._previous_path, self.spare_path)
        finally:
            os.close(old)

    def _open_spare(self) -> int:
        """
        Open the spare for a trim to write into, never through a link (#12).

        Anything at the spare's name but a regular file of one link (a
        symlink, a hard link to a file elsewhere, a FIFO) is removed and a
        fresh spare made: the name is runlog's scratch, and removing a link
        changes nothing it points to. Called under the directory lock.
        """
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(self.spare_path, flags, 0o644)
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
        else:
            try:
                info = os.fstat(fd)
            except OSError:
                os.close(fd)
                raise
            # a regular file (S_IFREG) that is linked nowhere else
            if (info.st_mode & 0o170000) == 0o100000 and info.st_nlink == 1:
                return fd
            os.close(fd)
        os.unlink(self.spare_path)
        return os.open(self.spare_path, flags | os.O_EXCL, 0o644)

    def _carry_over(self, old: int, start: int | None) -> None:
        """
        Append the lines of the replaced file *old* not carried over yet.

        Called under the directory lock. They are the lines past *start* (the
        end of what a trim copied), or past the last carry-over mark (or the
        whole file, when it was deleted rather than trimmed). A mark appended
        now ends what is carried: lines other writers append after it are
        carried over by the next one to notice.
        """
        assert self._fd is not None
        write_all(old, _CARRIED)
        end = os.fstat(old).st_size
        if start is None:
            start, mark = _last_two_marks(old, end)
        else:
            # the first mark after what the trim copied (which ends a line)
            data = b"".join(_read_range(old, start - 1, end))
            mark = start + data.find(b"\n" + _CARRIED)
        self._carry_lines(old, start, mark)

    def _carry_lines(self, old: int, start: int, end: int) -> None:
        """Append the lines between *start* and *end* of *old* to the file."""
        assert self._fd is not None
        if end > start:
            data = b"".join(_read_range(old, start, end))
            write_all(self._fd, data)  # one write: whole lines, not interleaved
            self._size += len(data)
            self._lines += data.count(b"\n")
            # other writers may have appended around it (#7)
            self._sync(os.fstat(self._fd).st_size)


def _offset_after_lines(fd: int, lines: int) -> int:
    """The offset just past the first *lines* newlines, reading only the head."""
    offset = 0
    while lines > 0:
        chunk = os.pread(fd, 1 << 16, offset)
        if not chunk:
            break
        # split in C, up to the last newline wanted: a count() of the chunk
        # first cost as much again, as does a find() per line (see #16)
        parts = chunk.split(b"\n", lines)
        if len(parts) <= lines:  # the chunk ends before that newline
            lines -= len(parts) - 1
            offset += len(chunk)
            continue
        offset += len(chunk) - len(parts[-1])
        lines = 0
    return offset


def _copy_range(source: int, target: int, start: int, length: int) -> None:
    """Copy *length* bytes at *start* of *source* to offset 0 of *target*."""
    copied = 0
    try:
        while copied < length:
            step = os.copy_file_range(
                source, target, length - copied, start + copied, copied
            )
            if step == 0:
                break
            copied += step
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise
    while copied < length:  # no kernel-side copy here: go through user space
        chunk = os.pread(source, min(_READ_CHUNK, length - copied), start + copied)
        if not chunk:
            break
        copied += os.pwrite(target, chunk, copied)


def _last_two_marks(fd: int, end: int) -> tuple[int, int]:
    """
    Where the lines after the second-to-last carry-over mark start, and the last.

    Reads backwards from *end* only as far as the two marks (0 when there is
    one: a file deleted rather than trimmed is carried over whole).
    """
    pattern = b"\n" + _CARRIED
    marks: list[int] = []  # where each mark line starts, newest first
    offset = end
    overlap = b""
    while offset > 0 and len(marks) < 2:
        size = min(_READ_CHUNK, offset)
        offset -= size
        data = os.pread(fd, size, offset) + overlap
        at = data.rfind(pattern)
        while at >= 0 and len(marks) < 2:
            if at < size:  # a match lying in *overlap* alone was found before
                marks.append(offset + at + 1)
            at = data.rfind(pattern, 0, at + len(pattern) - 1)
        overlap = data[: len(pattern) - 1]
    last = marks[0] if marks else end
    return (marks[1] + len(_CARRIED) if len(marks) > 1 else 0), last


def _read_range(fd: int, start: int, end: int) -> Iterator[bytes]:
    offset = start
    while offset < end:
        chunk = os.pread(fd, min(_READ_CHUNK, end - offset), offset)
        if not chunk:
            break
        offset += len(chunk)
        yield chunk


def _count_lines(fd: int, start: int, end: int) -> int:
    lines = 0
    offset = start
    while offset < end:
        chunk = os.pread(fd, min(_READ_CHUNK, end - offset), offset)
        if not chunk:
            break
        lines += chunk.count(b"\n")
        offset += len(chunk)
    return lines
