"""combined.log: the human line format shared with the console, and the line cap."""

from __future__ import annotations

import fcntl
import os
import re
import threading
from collections.abc import Mapping
from contextlib import suppress
from pathlib import Path
from typing import Any, Final

from ._files import as_write_error, atomic_write, open_append, write_all
from ._records import RESERVED_KEYS, dumps_value

DEFAULT_MAX_LINES: Final = 5000
DEFAULT_TRIM_FRACTION: Final = 0.1
# No human line is shorter than this: a 27-character timestamp, the level
# padded to 8, "[c]", "step=-" and the spaces between them.
_MIN_LINE_BYTES: Final = 48
_READ_CHUNK: Final = 1 << 20
_PLAIN_VALUE: Final = re.compile(r'[^\s"=\\]+')
_COLORS: Final = {
    "debug": "\x1b[2m",
    "info": "\x1b[32m",
    "warning": "\x1b[33m",
    "error": "\x1b[31m",
    "critical": "\x1b[1;31m",
}
_RESET: Final = "\x1b[0m"


def format_value(value: Any) -> str:
    """A value for ``key=value``: bare when unambiguous, else JSON (escaped)."""
    kind = type(value)
    if kind is str:
        if _PLAIN_VALUE.fullmatch(value):
            return value  # type: ignore[no-any-return]  # type() proved str
        return dumps_value(value)
    if kind is int or kind is float or kind is bool or value is None:
        return dumps_value(value)
    return dumps_value(value)


def format_human(record: Mapping[str, Any], *, color: bool = False) -> str:
    """
    One line: ``ts level [component] step=N event key=value ...`` (no newline).

    Newlines inside the event or any value are escaped, so one record is
    always one line.
    """
    level = record.get("level", "")
    step = record.get("step")
    event = record.get("event", "")
    if type(event) is not str or not _is_one_line(event):
        event = dumps_value(event)
    level_text = f"{level:<8}"
    if color:
        level_text = f"{_COLORS.get(level, '')}{level_text}{_RESET}"
    parts = [
        f"{record.get('ts', '')} {level_text} [{record.get('component', '')}] "
        f"step={'-' if step is None else step} {event}"
    ]
    for key, value in record.items():
        if key not in RESERVED_KEYS:
            parts.append(f"{key}={format_value(value)}")
    return " ".join(parts)


def _is_one_line(text: str) -> bool:
    return "\n" not in text and "\r" not in text


class CombinedLog:
    """
    Appends human lines to ``logs/combined.log`` and keeps it under *max_lines*.

    Never trimmed before it holds *max_lines* lines; then the oldest lines are
    dropped in batches of *trim_fraction* of the cap by atomic replace, so an
    append stays O(1) amortized. Several processes may append at once: the
    line count is read from the file's size (not a per-process counter), a
    trim holds an exclusive ``flock`` on the logs directory, and a writer whose
    file was replaced by another process's trim reopens it and writes its line
    again. In that rare race a line may appear twice; none is lost. Thread-safe.
    """

    def __init__(
        self,
        path: Path,
        max_lines: int = DEFAULT_MAX_LINES,
        trim_fraction: float = DEFAULT_TRIM_FRACTION,
    ) -> None:
        self.path = path
        self.max_lines = max_lines
        self.batch = max(1, int(max_lines * trim_fraction))
        self._lock = threading.RLock()
        self._fd: int | None = None
        self._counted_offset = 0
        self._counted_lines = 0

    def append(self, line: bytes) -> None:
        """
        Append one whole line.

        Raises:
            LogWriteError: With the path and the OS reason.
        """
        with self._lock:
            fd = self._fd if self._fd is not None else self._open()
            try:
                write_all(fd, line)
                info = os.fstat(fd)
                if info.st_nlink == 0:
                    fd = self._reopen()
                    write_all(fd, line)
                    info = os.fstat(fd)
            except OSError as exc:
                self.close()
                raise as_write_error(exc, self.path) from exc
            pending = info.st_size - self._counted_offset
            if self._counted_lines + pending // _MIN_LINE_BYTES >= self.max_lines:
                self._count_to(fd, info.st_size)
                if self._counted_lines >= self.max_lines:
                    self._trim()

    def close(self) -> None:
        """Close the descriptor; the next append reopens the file."""
        with self._lock:
            if self._fd is not None:
                with suppress(OSError):  # closing after a failed write can fail again
                    os.close(self._fd)
                self._fd = None

    def reset_after_fork(self) -> None:
        """In a forked child: a fresh lock (the parent's may have been held)."""
        self._lock = threading.RLock()

    def _open(self) -> int:
        fd = open_append(self.path)
        self._fd = fd
        self._counted_offset = 0
        self._counted_lines = 0
        self._count_to(fd, os.fstat(fd).st_size)
        return fd

    def _reopen(self) -> int:
        self.close()
        return self._open()

    def _count_to(self, fd: int, size: int) -> None:
        offset = self._counted_offset
        lines = self._counted_lines
        while offset < size:
            chunk = os.pread(fd, min(_READ_CHUNK, size - offset), offset)
            if not chunk:
                break
            lines += chunk.count(b"\n")
            offset += len(chunk)
        self._counted_offset = offset
        self._counted_lines = lines

    def _trim(self) -> None:
        try:
            dir_fd = os.open(
                self.path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
            )
        except OSError as exc:
            raise as_write_error(exc, self.path) from exc
        try:
            fcntl.flock(dir_fd, fcntl.LOCK_EX)
            self._trim_locked()
        except OSError as exc:
            raise as_write_error(exc, self.path) from exc
        finally:
            os.close(dir_fd)  # closing releases the flock

    def _trim_locked(self) -> None:
        assert self._fd is not None
        if os.stat(self.path).st_ino != os.fstat(self._fd).st_ino:
            # another process trimmed while we waited for the lock
            self._reopen()
            return
        old_fd = self._fd
        size = os.fstat(old_fd).st_size
        data = _read_range(old_fd, 0, size)
        total = data.count(b"\n")
        if total < self.max_lines:
            return
        keep = self.max_lines - self.batch
        cut = 0
        for _ in range(total - keep):
            cut = data.index(b"\n", cut) + 1
        atomic_write(self.path, data[cut:], fsync=False)
        # lines another process appended after our read went to the old file
        stragglers = _read_range(old_fd, size, os.fstat(old_fd).st_size)
        self._fd = None
        os.close(old_fd)
        fd = open_append(self.path)
        self._fd = fd
        if stragglers:
            write_all(fd, stragglers)
        self._counted_offset = 0
        self._counted_lines = 0
        self._count_to(fd, os.fstat(fd).st_size)


def _read_range(fd: int, start: int, end: int) -> bytes:
    chunks = []
    offset = start
    while offset < end:
        chunk = os.pread(fd, min(_READ_CHUNK, end - offset), offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)
