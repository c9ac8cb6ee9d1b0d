"""The tar stream of a run archive: collecting the files, hashing, writing them."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import stat
import tarfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from .._files import as_write_error, is_scratch_name, write_all
from ..errors import RunlogError
from . import _codecs

MANIFEST_NAME: Final = "MANIFEST.sha256"

_BLOCK: Final = tarfile.BLOCKSIZE
_RECORD: Final = tarfile.RECORDSIZE
_CHUNK: Final = _codecs.CHUNK
_READ_FLAGS: Final = (
    os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0)
)
_HASH_THREADS: Final = 4
# Raised while reading a damaged archive (BadGzipFile is an OSError).

Progress = Callable[[int, int], None]
"""``progress(bytes_done, files_done)``: called as file data goes into the archive."""

Kind = Literal["file", "dir", "symlink"]


@dataclass(slots=True)
class Entry:
    """One member to archive: its name, where it comes from, what it is."""

    arcname: str
    source: Path
    kind: Kind
    mode: int
    size: int = 0
    linkname: str = ""
    dev: int = 0
    ino: int = 0
    sha256: str = ""


def collect(
    roots: list[tuple[str, Path]],
    run_dir: Path,
    temp: os.stat_result,
    is_own: Callable[[str], bool],
) -> list[Entry]:
    """
    Every member to archive under *roots* (archive name, path), in order.

    Skips the file *temp* (the archive being written), directly in
    *run_dir* the names *is_own* accepts (archives, sidecars, temp files),
    and runlog's scratch files a crash may leave (``_files.is_scratch_name``).

    Raises:
        RunlogError: A root is missing, a directory cannot be listed, or a
            special file (FIFO, socket, device) is found.
    """
    entries: list[Entry] = []
    for arcname, root in roots:
        try:
            info = os.stat(root)  # a root is followed: the caller named it
        except FileNotFoundError:
            raise RunlogError(
                f"nothing to archive as {arcname!r}: {str(root)!r} does not exist"
            ) from None
        if stat.S_ISREG(info.st_mode) and root.is_symlink():
            # files are read without following links: read the one it names
            root = Path(os.path.realpath(root))
        entry = _entry(arcname, root, info)
        entries.append(entry)
        if entry.kind == "dir":
            _walk(root, arcname, entries, run_dir, is_own, temp)
    return entries


def _walk(
    root: Path,
    arcname: str,
    entries: list[Entry],
    run_dir: Path,
    is_own: Callable[[str], bool],
    temp: os.stat_result,
) -> None:
    # Depth-first with an explicit stack, so deep trees cannot hit the
    # recursion limit; each directory comes right before its sorted contents.
    stack: list[tuple[Iterator[os.DirEntry[str]], str, bool]] = [
        _sorted_children(root, arcname, run_dir)
    ]
    while stack:
        children, prefix, in_run_dir = stack[-1]
        child = next(children, None)
        if child is None:
            stack.pop()
            continue
        info = child.stat(follow_symlinks=False)
        if (
            (info.st_dev, info.st_ino) == (temp.st_dev, temp.st_ino)
            or (in_run_dir and is_own(child.name))
            or (stat.S_ISREG(info.st_mode) and is_scratch_name(child.name))
        ):
            continue
        entry = _entry(f"{prefix}/{child.name}", Path(child.path), info)
        entries.append(entry)
        if entry.kind == "dir":
            stack.append(_sorted_children(entry.source, entry.arcname, run_dir))


def _sorted_children(
    directory: Path, arcname: str, run_dir: Path
) -> tuple[Iterator[os.DirEntry[str]], str, bool]:
    try:
        with os.scandir(directory) as scan:
            children = sorted(scan, key=lambda child: os.fsencode(child.name))
        in_run_dir = os.path.samefile(directory, run_dir)
    except FileNotFoundError:
        in_run_dir = False
        children = []
    except OSError as exc:
        raise RunlogError(
            f"cannot list {str(directory)!r}: {exc.strerror or exc}"
        ) from exc
    return iter(children), arcname, in_run_dir


def _entry(arcname: str, path: Path, info: os.stat_result) -> Entry:
    mode = info.st_mode
    if stat.S_ISREG(mode):
        return Entry(
            arcname,
            path,
            "file",
            0o755 if mode & stat.S_IXUSR else 0o644,
            size=info.st_size,
            dev=info.st_dev,
            ino=info.st_ino,
        )
    if stat.S_ISDIR(mode):
        return Entry(arcname, path, "dir", 0o755)
    if stat.S_ISLNK(mode):
        return Entry(arcname, path, "symlink", 0o777, linkname=os.readlink(path))
    raise RunlogError(
        f"cannot archive {str(path)!r}: it is a {_special_kind(mode)}; only "
        "regular files, directories and symlinks are archived"
    )


def _special_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode):
        return "character device"
    if stat.S_ISBLK(mode):
        return "block device"
    return f"special file (mode {oct(mode)})"


def hash_files(entries: list[Entry]) -> None:
    """
    Set ``sha256`` of every file entry, reading each up to its listed size.

    Raises:
        RunlogError: A file is unreadable, or was replaced or cut shorter.
    """
    # hashlib releases the GIL, so files hash in parallel on several cores.
    files = [entry for entry in entries if entry.kind == "file"]
    workers = min(_HASH_THREADS, _codecs.compression_threads())
    with ThreadPoolExecutor(workers, thread_name_prefix="runlog-hash") as pool:
        for entry, digest in zip(files, pool.map(_hash_file, files), strict=True):
            entry.sha256 = digest


def _hash_file(entry: Entry) -> str:
    digest = hashlib.sha256()
    for chunk in _read_file(entry):
        digest.update(chunk)
    return digest.hexdigest()


def _read_file(entry: Entry) -> Iterator[bytes]:
    """
    Yield exactly ``entry.size`` bytes of the file first seen at ``entry.source``.

    A file replaced (another inode, a symlink) or cut shorter since it was
    listed is an error; one that grew is read up to its listed size, which
    for an append-only log is a set of whole records.
    """
    try:
        fd = os.open(entry.source, _READ_FLAGS)
    except OSError as exc:
        raise _changed_or_unreadable(entry, exc) from exc
    try:
        info = os.fstat(fd)
        if (info.st_dev, info.st_ino) != (entry.dev, entry.ino) or not stat.S_ISREG(
            info.st_mode
        ):
            raise _changed(entry, "it was replaced")
        remaining = entry.size
        while remaining:
            chunk = os.read(fd, min(_CHUNK, remaining))
            if not chunk:
                raise _changed(entry, "it got shorter")
            remaining -= len(chunk)
            yield chunk
    except OSError as exc:
        raise _changed_or_unreadable(entry, exc) from exc
    finally:
        os.close(fd)


def _changed(entry: Entry, how: str) -> RunlogError:
    return RunlogError(
        f"{str(entry.source)!r} changed while it was being archived ({how}); "
        "archive the run once nothing writes to it"
    )


def _changed_or_unreadable(entry: Entry, exc: OSError) -> RunlogError:
    if exc.errno in (errno.ENOENT, errno.ELOOP):
        return _changed(entry, "it was removed or replaced")
    return RunlogError(f"cannot read {str(entry.source)!r}: {exc.strerror or exc}")


class HashingSink(io.RawIOBase):
    """Writes to a descriptor, hashing and counting every byte on the way."""

    def __init__(self, fd: int, path: Path) -> None:
        super().__init__()
        self._fd = fd
        self._path = path
        self.digest = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]  # io's stub takes any buffer
        try:
            write_all(self._fd, bytes(data))
        except OSError as exc:
            raise as_write_error(exc, self._path) from exc
        self.digest.update(data)
        self.size += len(data)
        return len(data)


def _header(
    name: str, kind: Kind, mode: int, mtime: int, size: int = 0, linkname: str = ""
) -> bytes:
    info = tarfile.TarInfo(name)
    info.type = {
        "file": tarfile.REGTYPE,
        "dir": tarfile.DIRTYPE,
        "symlink": tarfile.SYMTYPE,
    }[kind]
    info.mode = mode
    info.size = size
    info.mtime = mtime
    info.linkname = linkname
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _padding(size: int, unit: int = _BLOCK) -> bytes:
    return b"\0" * (-size % unit)


def write_tar(
    sink: HashingSink,
    fmt: str,
    level: int,
    entries: list[Entry],
    mtime: int,
    progress: Progress | None,
) -> None:
    """
    Write the compressed tar stream: MANIFEST.sha256, then every entry.

    Every member gets uid/gid 0, no owner names and *mtime*; the stream ends
    with two zero blocks and is padded to a whole tar record. On any failure
    the compressing threads are stopped and the exception propagates.
    """
    writer = _codecs.BackgroundWriter(_codecs.compressing_writer(sink, fmt, level))
    written = 0

    def put(data: bytes) -> None:
        nonlocal written
        writer.write(data)
        written += len(data)

    try:
        manifest = _manifest(entries)
        put(_header(MANIFEST_NAME, "file", 0o644, mtime, len(manifest)))
        put(manifest + _padding(len(manifest)))
        done_bytes = done_files = 0
        for entry in entries:
            put(
                _header(
                    entry.arcname,
                    entry.kind,
                    entry.mode,
                    mtime,
                    entry.size,
                    entry.linkname,
                )
            )
            if entry.kind != "file":
                continue
            for chunk in _read_file(entry):
                put(chunk)
                done_bytes += len(chunk)
                if progress is not None:
                    progress(done_bytes, done_files)
            put(_padding(entry.size))
            done_files += 1
            if progress is not None:
                progress(done_bytes, done_files)
        put(b"\0" * (2 * _BLOCK))
        put(_padding(written, _RECORD))
    except BaseException:
        writer.abort()
        raise
    writer.close()


def _manifest(entries: list[Entry]) -> bytes:
    return b"".join(
        _manifest_line(entry.sha256, entry.arcname)
        for entry in entries
        if entry.kind == "file"
    )


def _manifest_line(sha256: str, name: str) -> bytes:
    # GNU sha256sum's escaping: a name with '\\', '\n' or '\r' gets a leading '\\'.
    raw = name.encode("utf-8", "surrogateescape")
    if any(c in raw for c in b"\\\n\r"):
        escaped = (
            raw.replace(b"\\", b"\\\\").replace(b"\n", b"\\n").replace(b"\r", b"\\r")
        )
        return b"\\" + sha256.encode() + b"  " + escaped + b"\n"
    return sha256.encode() + b"  " + raw + b"\n"
