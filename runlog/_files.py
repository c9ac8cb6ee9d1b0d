"""Low-level writing: whole-line appends, the descriptor cache, atomic_write()."""

from __future__ import annotations

import errno
import os
import re
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Final

from . import _paths
from .errors import LogWriteError

# O_NOFOLLOW: a link where a log file should be is refused, never written
# through (see #12)
_APPEND_FLAGS: Final = (
    os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOFOLLOW
)
_DIR_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_FILE_MODE: Final = 0o644
DEFAULT_MAX_OPEN: Final = 64
LINKED_FILE: Final = "log file is a symlink, not followed"
LINKED_STEP_DIR: Final = "step directory is a symlink, not followed"


def as_write_error(exc: OSError, path: Path) -> LogWriteError:
    """Wrap *exc* as a LogWriteError naming *path*, keeping errno and reason."""
    return LogWriteError(exc.errno or errno.EIO, exc.strerror or str(exc), str(path))


def log_home(path: Path) -> tuple[Path, str | None]:
    """
    The logs directory *path* lies in, and the step directory between them.

    A log file is ``logs/<name>`` or ``logs/step_NNN/<name>`` (SPEC §1). The
    logs directory is followed like any path a caller names (``runs/`` may
    be a link to a bigger disk); nothing below it is. So a logs directory
    that is itself named like a step directory must not be a link.
    """
    parent = path.parent
    if _paths.parse_step_dir(parent.name) is not None:
        return parent.parent, parent.name
    return parent, None


def open_log(path: Path, *, readable: bool = False) -> tuple[int, int, int | None]:
    """
    Open the log file *path* for appending whole lines, never through a link.

    The logs directory is opened first; the step directory, when there is
    one, and then the file are opened relative to it without following a
    link (see #12), so no record can land outside the run. Missing
    directories are created. Refuses anything that is not a regular file (a
    FIFO, a device, a directory), so a record can never block forever or
    vanish into a special file. *readable* opens it for reading too
    (combined.log counts its own lines).

    Returns:
        The descriptor, the file's inode, and the inode of the step directory
        it was opened in (None for a file directly in the logs directory).

    Raises:
        LogWriteError: With the path and the OS reason; ``ELOOP`` naming the
            link when a symlink is where the step directory or the file
            should be.
    """
    flags = _APPEND_FLAGS | (os.O_RDWR if readable else os.O_WRONLY)
    root, step = log_home(path)
    home = _open_home(root, step)
    try:
        home_ino = os.fstat(home).st_ino if step is not None else None
        fd = os.open(path.name, flags, _FILE_MODE, dir_fd=home)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise LogWriteError(errno.ELOOP, LINKED_FILE, str(path)) from exc
        raise as_write_error(exc, path) from exc
    finally:
        os.close(home)
    try:
        info = os.fstat(fd)
    except OSError as exc:
        os.close(fd)
        raise as_write_error(exc, path) from exc
    if not _is_regular(info.st_mode):
        os.close(fd)
        raise LogWriteError(errno.EINVAL, "not a regular file", str(path))
    if readable and info.st_size:
        try:
            _end_cut_line(fd, info.st_size)
        except OSError as exc:
            os.close(fd)
            raise as_write_error(exc, path) from exc
    return fd, info.st_ino, home_ino


def open_append(path: Path, *, readable: bool = False) -> int:
    """
    Open *path* for appending whole lines: :func:`open_log`'s descriptor.

    Raises:
        LogWriteError: With the path and the OS reason.
    """
    return open_log(path, readable=readable)[0]


def _open_home(root: Path, step: str | None) -> int:
    """A descriptor of the directory a log file goes in, made if missing."""
    try:
        try:
            root_fd = os.open(root, _DIR_FLAGS)  # followed: the caller named it
        except FileNotFoundError:
            root.mkdir(parents=True, exist_ok=True)
            root_fd = os.open(root, _DIR_FLAGS)
    except OSError as exc:
        raise as_write_error(exc, root) from exc
    if step is None:
        return root_fd
    try:
        return _open_step_dir(root_fd, step, root / step)
    finally:
        os.close(root_fd)


def _open_step_dir(root_fd: int, name: str, shown: Path) -> int:
    flags = _DIR_FLAGS | os.O_NOFOLLOW
    try:
        try:
            return os.open(name, flags, dir_fd=root_fd)
        except FileNotFoundError:
            with suppress(FileExistsError):  # made by another thread or process
                os.mkdir(name, dir_fd=root_fd)  # never follows a link at *name*
            return os.open(name, flags, dir_fd=root_fd)
    except NotADirectoryError as exc:
        # O_DIRECTORY | O_NOFOLLOW gives ENOTDIR for a link too: tell them apart
        if _is_link(name, root_fd):
            raise LogWriteError(errno.ELOOP, LINKED_STEP_DIR, str(shown)) from exc
        raise as_write_error(exc, shown) from exc
    except OSError as exc:
        raise as_write_error(exc, shown) from exc


def _is_link(name: str, dir_fd: int) -> bool:
    try:
        mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
    except FileNotFoundError:  # gone since: the caller reports the first error
        return False
    return stat.S_ISLNK(mode)


def _end_cut_line(fd: int, size: int) -> None:
    # A write cut short (EFBIG, ENOSPC, a writer killed mid-line) leaves a
    # piece of a line: end it, so the next record is a line of its own rather
    # than glued to the piece (see #7). While another process writes a line
    # the file may end mid-line for an instant: only a piece that stays put
    # is ended.
    for pause in (0.001, 0.01, None):
        now = os.fstat(fd).st_size
        if now != size or os.pread(fd, 1, now - 1) == b"\n":
            return
        if pause is not None:
            time.sleep(pause)
    write_all(fd, b"\n")


def _is_regular(mode: int) -> bool:
    return (mode & 0o170000) == 0o100000


def write_all(fd: int, data: bytes | memoryview) -> None:
    """
    Write *data* with one ``os.write``; loop only if the kernel wrote part of it.

    A short write on a regular file means the disk filled or a size limit hit
    mid-line; the rest is attempted so the error, not a torn line, is reported.
    """
    written = os.write(fd, data)
    while written < len(data):
        more = os.write(fd, memoryview(data)[written:])
        if more == 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written += more


class LineWriter:
    """
    Appends whole lines to many files through a bounded cache of descriptors.

    Thread-safe: one lock guards the cache and each write, so a descriptor is
    never closed while another thread writes to it. Each line is one
    ``os.write`` on an ``O_APPEND`` descriptor, so lines from several threads
    or processes never interleave.

    A file deleted while open (``rm -r logs/step_003`` mid-run) is noticed
    within *check_every* appends or *check_interval_s* seconds, and before its
    descriptor is closed: it is re-created from the still-open descriptor, so
    no record is lost, and the deletion is reported as a LogWriteError.
    A file moved away while open (its step directory renamed, and maybe a
    link to it put in its place) is noticed within *check_interval_s*
    seconds, and when its step or run is closed: its descriptor is closed,
    so no more records follow it out of the run, which is reported; the next
    record opens the path again (and a link there is refused).
    (Checking after every write would double the cost of a record; looking
    every file up by its path every *check_every* appends would add a tenth.)
    """

    def __init__(
        self,
        max_open: int = DEFAULT_MAX_OPEN,
        check_every: int = 64,
        check_interval_s: float = 1.0,
        *,
        lock: threading.RLock | None = None,
    ) -> None:
        # a lock of the caller's: its writes under it take no second lock
        self._lock = lock if lock is not None else threading.RLock()
        self._fds: dict[Path, int] = {}
        # what each open file was when opened: its inode, and the inode of
        # the step directory it was opened in, if any (see #12)
        self._ids: dict[Path, tuple[int, Path | None, int | None]] = {}
        self.max_open = max_open
        self.check_every = check_every
        self.check_interval_s = check_interval_s
        self._unchecked = 0
        self._checked_at = self._paths_checked_at = time.monotonic()

    def append(self, path: Path, line: bytes) -> None:
        """
        Append *line* (one whole ``\\n``-terminated record) to *path*.

        Raises:
            LogWriteError: The line could not be written (the descriptor is
                dropped so the next record reopens the file), or an open file
                was found deleted and was restored.
        """
        with self._lock:
            self.append_locked(path, line)

    def append_locked(self, path: Path, line: bytes | memoryview) -> None:
        """
        :meth:`append`, for a caller holding the lock this writer was given.

        Raises:
            LogWriteError: As :meth:`append`.
        """
        fd = self._fds.get(path)
        if fd is None:
            fd = self._open(path)
        try:
            written = os.write(fd, line)
            if written != len(line):
                write_all(fd, line[written:])
        except OSError as exc:
            self._drop(path)
            raise as_write_error(exc, path) from exc
        self._unchecked += 1
        if (
            self._unchecked >= self.check_every
            or time.monotonic() - self._checked_at >= self.check_interval_s
        ):
            self.check_deleted()

    def check_deleted(self, paths: list[Path] | None = None) -> None:
        """
        Restore every open file (or those in *paths*) deleted or moved while open.

        Deletions are looked for at every call; moves when *paths* is given
        and at most every *check_interval_s* seconds otherwise.

        Raises:
            LogWriteError: For the first restored file (all are restored first).
        """
        with self._lock:
            self._unchecked = 0
            now = self._checked_at = time.monotonic()
            by_path = (
                paths is not None
                or now - self._paths_checked_at >= self.check_interval_s
            )
            if by_path:
                self._paths_checked_at = now
            report: LogWriteError | None = None
            dirs: dict[Path, int | None] = {}
            for path in list(self._fds) if paths is None else paths:
                fd = self._fds.get(path)
                # found at its path, it has a name: it was not deleted either
                if fd is None or (by_path and self._in_place(path, dirs)):
                    continue
                try:
                    deleted = os.fstat(fd).st_nlink == 0
                except OSError as exc:
                    self._drop(path)
                    report = report or as_write_error(exc, path)
                    continue
                if deleted:
                    # restore every file, not only the first (see #7)
                    restored = self._restore(path, fd)
                    report = report or restored
                elif by_path:
                    report = report or self._drop_moved(path)
            if report is not None:
                raise report

    def _in_place(self, path: Path, dirs: dict[Path, int | None]) -> bool:
        """
        True if *path* still leads to the file opened there, through no link.

        One ``lstat`` per file and one per step directory (cached in *dirs*).
        """
        ino, home, home_ino = self._ids[path]
        if home is not None:
            if home not in dirs:
                dirs[home] = _lstat_ino(home)
            # a step directory renamed away, or swapped for a link to it (#12)
            if dirs[home] != home_ino:
                return False
        return _lstat_ino(path) == ino

    def _drop_moved(self, path: Path) -> LogWriteError:
        # The file lies elsewhere now (outside the run, maybe): close it, so
        # no record follows it there; the next one opens its path again, and
        # a link there is refused then (see #12).
        self._drop(path)
        return LogWriteError(
            errno.ENOENT,
            "log file was moved away while open; closed it, the next record "
            "opens its path again",
            str(path),
        )

    def _restore(self, path: Path, old_fd: int) -> LogWriteError:
        del self._fds[path]
        ids = self._ids.pop(path)
        try:
            new_fd = self._open(path)
        except OSError as exc:
            # The path is taken (a directory, a link, a read-only mount): keep
            # the deleted file's descriptor, so its records are not lost, and
            # check again at the next append until it can be re-created (#7).
            self._fds[path] = old_fd
            self._ids[path] = ids
            self._unchecked = self.check_every
            return LogWriteError(
                exc.errno or errno.EIO,
                f"log file was deleted while open and cannot be re-created "
                f"({exc.strerror}); its records stay in the open descriptor "
                "until the path is free again or the file is closed",
                str(path),
            )
        try:
            size = os.fstat(old_fd).st_size
            offset = 0
            while offset < size:
                chunk = os.pread(old_fd, min(1 << 20, size - offset), offset)
                if not chunk:
                    break
                write_all(new_fd, chunk)
                offset += len(chunk)
        except OSError as exc:
            self._drop(path)
            return as_write_error(exc, path)
        finally:
            with suppress(OSError):  # the descriptor of a deleted file
                os.close(old_fd)
        return LogWriteError(
            errno.ENOENT,
            f"log file was deleted while open; re-created it with the {offset} "
            "bytes it held",
            str(path),
        )

    def _open(self, path: Path) -> int:
        if len(self._fds) >= self.max_open:
            self.close_where(paths=[next(iter(self._fds))])
        fd, ino, home_ino = open_log(path, readable=True)
        self._fds[path] = fd
        self._ids[path] = (ino, None if home_ino is None else path.parent, home_ino)
        return fd

    def _drop(self, path: Path) -> None:
        self._ids.pop(path, None)
        fd = self._fds.pop(path, None)
        if fd is not None:
            with suppress(OSError):  # closing a failed descriptor can fail again
                os.close(fd)

    def close_where(
        self, under: Path | None = None, *, paths: list[Path] | None = None
    ) -> None:
        """
        Close the descriptors of *paths*, or of files under *under* (all if None).

        Files deleted while open are restored first.

        Raises:
            LogWriteError: If one of them had been deleted (it is restored).
        """
        with self._lock:
            if paths is None:
                paths = [
                    p for p in self._fds if under is None or p.is_relative_to(under)
                ]
            try:
                self.check_deleted(paths)
            finally:
                for path in paths:
                    self._drop(path)

    def close_all(self) -> None:
        """Close every cached descriptor (restoring files deleted while open)."""
        self.close_where()

    def open_paths(self) -> list[Path]:
        """The files that have an open descriptor now (for tests and diagnostics)."""
        with self._lock:
            return list(self._fds)

    def reset_after_fork(self, lock: threading.RLock | None = None) -> None:
        """In a forked child: a fresh lock (the parent's may have been held)."""
        self._lock = lock if lock is not None else threading.RLock()


def _lstat_ino(path: Path) -> int | None:
    try:
        return os.lstat(path).st_ino
    except (FileNotFoundError, NotADirectoryError):
        return None  # nothing at the path now, or a file where a directory was


_SCRATCH_RE: Final = re.compile(
    r"\.combined\.log\.(?:spare|previous)|\..+\.\d+\.\d+\.tmp"
)


def is_scratch_name(name: str) -> bool:
    """
    True for runlog's own scratch files in a logs directory.

    The spare and previous files of combined.log trims and the temp files of
    atomic_write(): a crash can leave them behind; they hold no evidence.
    """
    return _SCRATCH_RE.fullmatch(name) is not None


def atomic_write(
    path: str | os.PathLike[str], data: bytes, *, fsync: bool = True
) -> Path:
    """
    Replace *path* with *data* so readers see the old file or the new, never half.

    Writes a temp file in the same directory, flushes, fsyncs (unless *fsync* is
    False), then ``os.replace``s it into place and fsyncs the directory.

    Raises:
        LogWriteError: With the path and the OS reason; the temp file is removed.
    """
    target = Path(path)
    with _temp_beside(target) as (fd, tmp):
        try:
            write_all(fd, data)
            if fsync:
                os.fsync(fd)
        except OSError as exc:
            raise as_write_error(exc, target) from exc
    try:
        os.replace(tmp, target)
    except OSError as exc:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise as_write_error(exc, target) from exc
    if fsync:
        fsync_dir(target.parent)
    return target


@contextmanager
def _temp_beside(target: Path) -> Iterator[tuple[int, Path]]:
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    # O_EXCL: a link at the temp name is never written through (see #12)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        try:
            fd = os.open(tmp, flags, _FILE_MODE)
        except FileExistsError:
            # left by a crashed process that had our pid, or put there: a
            # scratch name, so it is removed (a link, not what it points to)
            os.unlink(tmp)
            fd = os.open(tmp, flags, _FILE_MODE)
    except OSError as exc:
        raise as_write_error(exc, target) from exc
    try:
        yield fd, tmp
    except BaseException:
        os.close(fd)
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    os.close(fd)


def fsync_dir(directory: Path) -> None:
    """fsync a directory so a rename in it survives a power loss."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
