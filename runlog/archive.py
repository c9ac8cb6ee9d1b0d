"""Archiver, ArchiveInfo, verify_archive: the hashed, reproducible run archive."""

from __future__ import annotations

import errno
import hashlib
import io
import itertools
import os
import re
import secrets
import stat
import tarfile
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final, Literal

from . import _compress, _paths
from ._files import as_write_error, atomic_write, fsync_dir, write_all
from .context import LogContext
from .errors import ArchiveIntegrityError, ConfigurationError, RunlogError

MANIFEST_NAME: Final = "MANIFEST.sha256"
SUMMARY_HASH_RE: Final = re.compile(r"^\s*SHA-256:\s+([0-9a-f]{64})\s*$", re.MULTILINE)

_BLOCK: Final = tarfile.BLOCKSIZE
_RECORD: Final = tarfile.RECORDSIZE
_CHUNK: Final = _compress.CHUNK
_MAX_MANIFEST: Final = 256 << 20  # a bound on what a hostile archive makes us hold
_HEX64: Final = re.compile(r"[0-9a-f]{64}")
_SIDECAR_LINE: Final = re.compile(rb"([0-9a-fA-F]{64}) [ *](.+)")
_MANIFEST_LINE: Final = re.compile(rb"(\\?)([0-9a-f]{64}) [ *](.+)")
_TEMP_RE: Final = re.compile(r"\.run\.tar\.(?:gz|zst)\.(\d+)\.[0-9a-f]+\.tmp")
_READ_FLAGS: Final = (
    os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0)
)
_HASH_THREADS: Final = 4
# Raised while reading a damaged archive (BadGzipFile is an OSError).
_CORRUPT_STREAM: Final[tuple[type[Exception], ...]] = (
    OSError,
    *_compress.CORRUPT_ERRORS,
)
_UNREADABLE: Final[tuple[type[Exception], ...]] = (
    tarfile.TarError,
    UnicodeError,
    *_CORRUPT_STREAM,
)

Progress = Callable[[int, int], None]
"""``progress(bytes_done, files_done)``: called as file data goes into the archive."""

Kind = Literal["file", "dir", "symlink"]


@dataclass(frozen=True, slots=True)
class ArchiveInfo:
    """
    A run archive on disk.

    Attributes:
        path: The ``run.tar.gz`` or ``run.tar.zst`` file.
        sha256: Hex SHA-256 of the whole archive file (what the sidecar holds).
        size_bytes: Size of the archive file.
        file_count: Regular files in the archive, as listed in its manifest
            (the manifest itself, directories and symlinks not counted).
    """

    path: Path
    sha256: str
    size_bytes: int
    file_count: int


@dataclass(slots=True)
class _Entry:
    arcname: str
    source: Path
    kind: Kind
    mode: int
    size: int = 0
    linkname: str = ""
    dev: int = 0
    ino: int = 0
    sha256: str = ""


class Archiver:
    """
    Writes a run's reproducible, hashed archive: ``run.tar.gz`` or ``run.tar.zst``.

    The archive is a tar stream whose first member ``MANIFEST.sha256`` lists
    the SHA-256 of every regular file in ``sha256sum`` format, so
    ``sha256sum -c MANIFEST.sha256`` works after extracting. Beside it,
    ``run.tar.gz.sha256`` holds the archive's own hash for ``sha256sum -c``.

    Reproducible: members in sorted path order (each directory before its
    contents), uid/gid 0, no user or group names, modes 0644/0755 for files,
    0755 for directories, 0777 for symlinks, and every mtime set to the run's
    end time (``ended_at`` of ``logs/run.json``), else ``SOURCE_DATE_EPOCH``,
    else the newest mtime among the archived files. Archiving the same files
    twice gives the same bytes (for the same zlib / zstd versions).

    Safe: symlinks are stored as symlinks and never followed (the roots
    passed in are the exception: they are what the caller named); FIFOs,
    sockets and devices are refused before anything is written. A run that is
    still open is refused (see :meth:`create_archive`).

    Streaming: memory does not grow with the size of the files (only by a
    few hundred bytes per file, for the manifest).
    """

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.run_dir = Path(run_dir)

    def create_archive(
        self,
        logs: Mapping[str, str | os.PathLike[str]] | None = None,
        workspace_dir: str | os.PathLike[str] | None = None,
        metrics_file: str | os.PathLike[str] | None = None,
        format: str = "gz",  # the name SPEC §3 gives it
        *,
        level: int | None = None,
        force: bool = False,
        progress: Progress | None = None,
    ) -> ArchiveInfo:
        """
        Archive the run into ``run_dir/run.tar.gz`` (or ``.zst``) and its sidecar.

        The archive is written to a temp file beside it, fsynced, read back and
        fully verified (its hash and every member against the manifest), then
        renamed into place; only then is the sidecar written. A failure or a
        crash at any point leaves no file under the final name, or the
        complete, verified archive. A previous archive of the run (in either
        format) is replaced, so a run has one archive.

        Args:
            logs: Archive name -> directory (or file) to store under it;
                default ``{"logs": run_dir / "logs"}``.
            workspace_dir: Also store this directory as ``workspace/``.
            metrics_file: Also store this file at the top, under its own name.
            format: ``"gz"`` (gzip) or ``"zst"`` (zstandard, multi-threaded).
            level: Compression level (gz 1-9, default 6; zst 1-22, default 3).
            force: Archive even while the run is open. Without it, a run whose
                ``run.json`` says ``running`` with a live process (or a run
                this process's log context still writes to) is refused,
                because files still being written would be archived half-way.
                Forced, each file is archived up to the size it had when the
                archive started (log files are append-only, so that is whole
                records); a file replaced or shortened meanwhile (such as
                ``combined.log`` when it is trimmed) fails the archive: retry.
            progress: Called as ``progress(bytes_done, files_done)`` while
                file data is written, from the calling thread.

        Returns:
            The archive's path, SHA-256, size and file count.

        Raises:
            RunlogError: Nothing to archive, a special file, a file that
                changed while it was archived, or a run still open.
            ConfigurationError: A bad format, level or archive name.
            LogWriteError: The archive could not be written (path, OS reason).
            ArchiveIntegrityError: The read-back did not match what was written.
        """
        level = _compress.check_level(format, level)
        roots = self._roots(logs, workspace_dir, metrics_file)
        if not self.run_dir.is_dir():
            raise RunlogError(f"run directory {str(self.run_dir)!r} does not exist")
        if not force:
            _refuse_open_run(self.run_dir, [path for _, path in roots])
        final = _paths.archive_file(self.run_dir, format)
        _remove_stale_temps(self.run_dir)
        tmp = final.with_name(f".{final.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(
                tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644
            )
        except OSError as exc:
            raise as_write_error(exc, final) from exc
        try:
            try:
                entries = _collect(roots, self.run_dir, os.fstat(fd))
                _hash_files(entries)
                mtime = _archive_mtime(self.run_dir, entries)
                sink = _HashingSink(fd, final)
                _write_tar(sink, format, level, entries, mtime, progress)
                try:
                    os.fsync(fd)
                except OSError as exc:
                    raise as_write_error(exc, final) from exc
            finally:
                os.close(fd)
            info = _check_read_back(tmp, format, sink, entries)
            _install(tmp, final)
        except BaseException:
            with suppress(FileNotFoundError):  # already renamed or never made
                os.unlink(tmp)
            raise
        fsync_dir(self.run_dir)
        atomic_write(
            _paths.sidecar_file(final), f"{info.sha256}  {final.name}\n".encode()
        )
        _remove_other_archives(self.run_dir, final)
        return ArchiveInfo(final, info.sha256, info.size_bytes, info.file_count)

    def _roots(
        self,
        logs: Mapping[str, str | os.PathLike[str]] | None,
        workspace_dir: str | os.PathLike[str] | None,
        metrics_file: str | os.PathLike[str] | None,
    ) -> list[tuple[str, Path]]:
        named: dict[str, Path] = {}
        if logs is None:
            logs = {_paths.LOGS_DIR: _paths.logs_dir(self.run_dir)}
        for name, path in logs.items():
            named[_check_arcname(name)] = Path(path)
        extras: list[tuple[str, Path]] = []
        if workspace_dir is not None:
            extras.append(("workspace", Path(workspace_dir)))
        if metrics_file is not None:
            extras.append((Path(metrics_file).name, Path(metrics_file)))
        for name, path in extras:
            if _check_arcname(name) in named:
                raise ConfigurationError(f"archive name {name!r} is used twice")
            named[name] = path
        names = sorted(named)
        for first, second in itertools.pairwise(names):
            if second.startswith(first + "/"):
                raise ConfigurationError(
                    f"archive names {first!r} and {second!r} overlap"
                )
        return [(name, named[name].absolute()) for name in names]


def archive_run(
    run_dir: str | os.PathLike[str],
    format: str = "gz",  # same name as create_archive's
    progress: Progress | None = None,
    *,
    level: int | None = None,
    force: bool = False,
) -> ArchiveInfo:
    """
    Archive the run's ``logs/``, then rewrite ``logs_summary.txt`` to record it.

    What ``runlog archive`` does. After the summary is rewritten, checks that it
    records the new archive's hash, so the archive, the summary and the
    directory agree.

    Raises:
        The errors of :meth:`Archiver.create_archive`, and
        ArchiveIntegrityError: If the rewritten summary does not record the hash.
    """
    info = Archiver(run_dir).create_archive(
        format=format, level=level, force=force, progress=progress
    )
    # Imported here: the summary module reads archives through this one.
    from .summary import summarize_run

    summary = summarize_run(run_dir)
    recorded = SUMMARY_HASH_RE.search(summary.read_text(encoding="utf-8"))
    if recorded is None or recorded.group(1) != info.sha256:
        found = recorded.group(1) if recorded else None
        raise ArchiveIntegrityError(
            f"{str(summary)!r} records archive hash {found!r}, "
            f"not {info.sha256!r} of {str(info.path)!r}"
        )
    return info


def find_archive(run_dir: str | os.PathLike[str]) -> Path | None:
    """``run.tar.gz`` in *run_dir* if present, else ``run.tar.zst``, else None."""
    for fmt in _compress.FORMATS:
        path = _paths.archive_file(Path(run_dir), fmt)
        if path.is_file():
            return path
    return None


def locate_archive(run_or_archive: str | os.PathLike[str]) -> Path:
    """
    The archive named by *run_or_archive*: an archive file, or a run directory.

    Raises:
        RunlogError: If the path does not exist or the run has no archive.
    """
    path = Path(run_or_archive)
    if path.is_dir():
        found = find_archive(path)
        if found is None:
            raise RunlogError(
                f"no run.tar.gz or run.tar.zst in {str(path)!r}: "
                "run `runlog archive` first"
            )
        return found
    if not path.is_file():
        raise RunlogError(f"archive {str(path)!r} does not exist")
    _compress.format_of(path)
    return path


def describe_archive(path: str | os.PathLike[str]) -> ArchiveInfo:
    """
    What an archive is, cheaply: hash from its sidecar, size, manifest's count.

    Reads only the sidecar and the first member; nothing is verified.

    Raises:
        ArchiveIntegrityError: If the sidecar or the manifest is missing or
            unreadable.
        RunlogError: If *path* is not a .tar.gz or .tar.zst file.
    """
    archive = Path(path)
    _compress.format_of(archive)
    sha256 = _read_sidecar(archive)
    try:
        size = archive.stat().st_size
        with (
            _compress.open_reader(archive) as stream,
            tarfile.open(fileobj=stream, mode="r|", bufsize=_CHUNK) as tar,
        ):
            manifest = _read_manifest(tar)
    except _UNREADABLE as exc:
        raise ArchiveIntegrityError(
            f"{str(archive)!r}: cannot read its manifest: {exc}"
        ) from exc
    return ArchiveInfo(archive, sha256, size, len(manifest))


def verify_archive(
    path: str | os.PathLike[str], expected_sha256: str | None = None
) -> ArchiveInfo:
    """
    Re-read an archive and check it against everything that vouches for it.

    In one streaming pass (nothing is extracted; member names are only
    compared, never used as paths) it hashes the file and every member. Then
    it checks, in order: the sidecar ``<archive>.sha256`` (required), then
    *expected_sha256*, then the hash ``logs_summary.txt`` beside the archive
    records (when it records one and does not name another archive), then
    every member against ``MANIFEST.sha256``: same set of files, same hashes,
    only files, directories and symlinks, safe names, a complete tar stream.

    Returns:
        The archive's path, actual SHA-256, size and file count.

    Raises:
        ArchiveIntegrityError: Naming the first mismatch: which file, the
            expected and the actual value.
        RunlogError: If *path* does not exist or is not a .tar.gz/.tar.zst.
        ConfigurationError: If *expected_sha256* is not 64 hex digits.
    """
    archive = Path(path)
    fmt = _compress.format_of(archive)
    expected = _check_hex(expected_sha256)
    if not archive.is_file():
        raise RunlogError(f"archive {str(archive)!r} does not exist")
    sidecar_hash = _read_sidecar(archive)
    recorded = _recorded_hash(archive)
    back = _read_back(archive, fmt)
    vouchers = [(f"its sidecar {_paths.sidecar_file(archive).name}", sidecar_hash)]
    if expected is not None:
        vouchers.append(("expected_sha256", expected))
    if recorded is not None:
        vouchers.append((_paths.SUMMARY_FILE, recorded))
    for source, want in vouchers:
        if back.sha256 != want:
            detail = f"; reading it: {back.problem}" if back.problem else ""
            raise ArchiveIntegrityError(
                f"{str(archive)!r}: SHA-256 expected {want!r} ({source}), "
                f"actual {back.sha256!r}{detail}"
            )
    if back.problem is not None:
        raise ArchiveIntegrityError(f"{str(archive)!r}: {back.problem}")
    return ArchiveInfo(archive, back.sha256, back.size, back.file_count)


# --- collecting and hashing the files --------------------------------------


def _check_arcname(name: object) -> str:
    parts = name.split("/") if isinstance(name, str) else []
    if (
        not parts
        or name == MANIFEST_NAME
        or any(part in ("", ".", "..") or "\0" in part for part in parts)
    ):
        raise ConfigurationError(
            f"archive name {name!r}: use a relative path of '/'-separated names, "
            f"without '.', '..' or empty parts, other than {MANIFEST_NAME!r}"
        )
    return name  # type: ignore[return-value]  # parts is non-empty only for a str


def _refuse_open_run(run_dir: Path, roots: list[Path]) -> None:
    # Imported here: the run module archives through this one.
    from .run import effective_status, read_run_json

    info = read_run_json(_paths.logs_dir(run_dir))
    if info is not None and effective_status(info) == "running":
        raise RunlogError(
            f"run {str(run_dir)!r} is still running (run.json: status 'running', "
            f"pid {info.get('pid')!r} on {info.get('host')!r}): finish it first, "
            "or pass force=True to archive the files as they are now"
        )
    active = LogContext.get_instance().logs_dir
    if active is None:
        return
    active = active.resolve()
    for root in roots:
        real = root.resolve()
        if real == active or real in active.parents or active in real.parents:
            raise RunlogError(
                f"this process still logs into {str(active)!r}: call "
                "clear_run_context() or finish the run first, or pass force=True"
            )


def _remove_stale_temps(run_dir: Path) -> None:
    # A temp file left by a process killed mid-archive; a live one is left alone.
    from .run import is_pid_alive

    with suppress(FileNotFoundError):  # no run dir yet: _collect reports it
        for name in os.listdir(run_dir):
            match = _TEMP_RE.fullmatch(name)
            if match and not is_pid_alive(int(match.group(1))):
                with suppress(FileNotFoundError):  # another archiver removed it
                    os.unlink(run_dir / name)


def _own_names(run_dir: Path) -> set[str]:
    names = {_paths.archive_file(run_dir, fmt).name for fmt in _compress.FORMATS}
    return names | {name + _paths.SIDECAR_SUFFIX for name in names}


def _collect(
    roots: list[tuple[str, Path]], run_dir: Path, temp: os.stat_result
) -> list[_Entry]:
    entries: list[_Entry] = []
    own = _own_names(run_dir)
    for arcname, root in roots:
        try:
            info = os.stat(root)  # a root is followed: the caller named it
        except FileNotFoundError:
            raise RunlogError(
                f"nothing to archive as {arcname!r}: {str(root)!r} does not exist"
            ) from None
        entry = _entry(arcname, root, info)
        entries.append(entry)
        if entry.kind == "dir":
            _walk(root, arcname, entries, run_dir, own, temp)
    return entries


def _walk(
    root: Path,
    arcname: str,
    entries: list[_Entry],
    run_dir: Path,
    own: set[str],
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
        if (info.st_dev, info.st_ino) == (temp.st_dev, temp.st_ino) or (
            in_run_dir and (child.name in own or _TEMP_RE.fullmatch(child.name))
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


def _entry(arcname: str, path: Path, info: os.stat_result) -> _Entry:
    mode = info.st_mode
    if stat.S_ISREG(mode):
        return _Entry(
            arcname,
            path,
            "file",
            0o755 if mode & stat.S_IXUSR else 0o644,
            size=info.st_size,
            dev=info.st_dev,
            ino=info.st_ino,
        )
    if stat.S_ISDIR(mode):
        return _Entry(arcname, path, "dir", 0o755)
    if stat.S_ISLNK(mode):
        return _Entry(arcname, path, "symlink", 0o777, linkname=os.readlink(path))
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


def _hash_files(entries: list[_Entry]) -> None:
    # hashlib releases the GIL, so files hash in parallel on several cores.
    files = [entry for entry in entries if entry.kind == "file"]
    workers = min(_HASH_THREADS, _compress.compression_threads())
    with ThreadPoolExecutor(workers, thread_name_prefix="runlog-hash") as pool:
        for entry, digest in zip(files, pool.map(_hash_file, files), strict=True):
            entry.sha256 = digest


def _hash_file(entry: _Entry) -> str:
    digest = hashlib.sha256()
    for chunk in _read_file(entry):
        digest.update(chunk)
    return digest.hexdigest()


def _read_file(entry: _Entry) -> Iterator[bytes]:
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


def _changed(entry: _Entry, how: str) -> RunlogError:
    return RunlogError(
        f"{str(entry.source)!r} changed while it was being archived ({how}); "
        "archive the run once nothing writes to it"
    )


def _changed_or_unreadable(entry: _Entry, exc: OSError) -> RunlogError:
    if exc.errno in (errno.ENOENT, errno.ELOOP):
        return _changed(entry, "it was removed or replaced")
    return RunlogError(f"cannot read {str(entry.source)!r}: {exc.strerror or exc}")


def _archive_mtime(run_dir: Path, entries: list[_Entry]) -> int:
    # Imported here: the run module archives through this one.
    from .run import parse_time, read_run_json

    info = read_run_json(_paths.logs_dir(run_dir)) or {}
    ended = parse_time(info.get("ended_at"))
    if ended is not None:
        return max(0, int(ended.timestamp()))
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch is not None:
        if not epoch.isdigit():
            raise ConfigurationError(
                f"SOURCE_DATE_EPOCH={epoch!r}: use a whole number of seconds"
            )
        return int(epoch)
    # Files only: a directory's mtime moves whenever an entry is added to it.
    newest = 0
    for entry in entries:
        if entry.kind != "dir":
            with suppress(FileNotFoundError):  # gone since: _write_tar reports it
                newest = max(newest, int(os.lstat(entry.source).st_mtime))
    return newest


# --- writing ---------------------------------------------------------------


class _HashingSink(io.RawIOBase):
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


def _write_tar(
    sink: _HashingSink,
    fmt: str,
    level: int,
    entries: list[_Entry],
    mtime: int,
    progress: Progress | None,
) -> None:
    writer = _compress.BackgroundWriter(_compress.compressing_writer(sink, fmt, level))
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


def _manifest(entries: list[_Entry]) -> bytes:
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


def _check_read_back(
    tmp: Path, fmt: str, sink: _HashingSink, entries: list[_Entry]
) -> ArchiveInfo:
    back = _read_back(tmp, fmt)
    written = sink.digest.hexdigest()
    files = sum(1 for entry in entries if entry.kind == "file")
    if back.sha256 != written or back.size != sink.size:
        raise ArchiveIntegrityError(
            f"archive read back from {str(tmp)!r} differs from what was written: "
            f"SHA-256 expected {written!r}, actual {back.sha256!r} "
            f"(size {sink.size} vs {back.size}); the disk or filesystem is suspect"
        )
    if back.problem is not None:
        raise ArchiveIntegrityError(
            f"archive read back failed: {back.problem} (did a file change while "
            "it was being archived?); nothing was written"
        )
    if back.file_count != files:
        raise ArchiveIntegrityError(
            f"archive read back has {back.file_count} files, expected {files}"
        )
    return ArchiveInfo(tmp, written, sink.size, files)


def _install(tmp: Path, final: Path) -> None:
    # The old sidecar would vouch for the old archive: remove it first, so a
    # crash before the new one is written leaves an archive without a sidecar.
    sidecar = _paths.sidecar_file(final)
    try:
        with suppress(FileNotFoundError):  # first archive of this run
            os.unlink(sidecar)
        os.replace(tmp, final)
    except OSError as exc:
        raise as_write_error(exc, final) from exc


def _remove_other_archives(run_dir: Path, keep: Path) -> None:
    for fmt in _compress.FORMATS:
        other = _paths.archive_file(run_dir, fmt)
        if other != keep:
            for path in (_paths.sidecar_file(other), other):
                with suppress(FileNotFoundError):  # there was none
                    os.unlink(path)


# --- reading and verifying -------------------------------------------------


class _MismatchError(Exception):
    """A member-level problem found while reading an archive back."""


@dataclass(frozen=True, slots=True)
class _ReadBack:
    sha256: str
    size: int
    file_count: int
    problem: str | None


class _HashingReader(io.RawIOBase):
    """Reads a file, hashing and counting every byte read."""

    def __init__(self, raw: BinaryIO) -> None:
        super().__init__()
        self._raw = raw
        self.digest = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]  # io's stub takes any buffer
        count = self._raw.readinto(buffer)  # type: ignore[attr-defined]  # a raw file has it
        if count:
            view = memoryview(buffer)[:count]
            self.digest.update(view)
            self.size += count
        return int(count or 0)

    def drain(self) -> None:
        buffer = bytearray(_CHUNK)
        while self.readinto(buffer):
            pass


def _read_back(archive: Path, fmt: str) -> _ReadBack:
    """Hash *archive* and check its members in one pass; never raises on content."""
    try:
        raw_file = open(archive, "rb", buffering=0)  # noqa: SIM115  # closed below
    except OSError as exc:
        raise RunlogError(
            f"cannot read {str(archive)!r}: {exc.strerror or exc}"
        ) from exc
    with raw_file:
        raw = _HashingReader(raw_file)
        count = 0
        problem: str | None = None
        stream = _compress.decompressing_reader(raw, fmt)
        reader = _compress.ForwardReader(stream)
        try:
            count = _check_members(reader)
        except _MismatchError as exc:
            problem = str(exc)
        except (tarfile.TarError, UnicodeError) as exc:
            problem = f"the tar data is corrupt: {exc}"
        except _CORRUPT_STREAM as exc:
            problem = f"the {fmt} data is corrupt or cut short: {exc}"
        finally:
            reader.close()
        try:
            raw.drain()
        except OSError as exc:
            raise RunlogError(
                f"cannot read {str(archive)!r}: {exc.strerror or exc}"
            ) from exc
    return _ReadBack(raw.digest.hexdigest(), raw.size, count, problem)


def _read_manifest(tar: tarfile.TarFile) -> dict[str, str]:
    first = tar.next()
    if first is None:
        raise _MismatchError(f"the archive is empty; expected {MANIFEST_NAME!r} first")
    if first.name != MANIFEST_NAME or not first.isreg():
        raise _MismatchError(f"first member is {first.name!r}, not {MANIFEST_NAME!r}")
    if first.size > _MAX_MANIFEST:
        raise _MismatchError(
            f"{MANIFEST_NAME} is implausibly large ({first.size} bytes)"
        )
    data = tar.extractfile(first)
    if data is None:  # pragma: no cover  # a regular member always has data
        raise _MismatchError(f"{MANIFEST_NAME} has no data")
    return _parse_manifest(data.read())


def _parse_manifest(data: bytes) -> dict[str, str]:
    listed: dict[str, str] = {}
    for number, line in enumerate(data.split(b"\n")[:-1], start=1):
        match = _MANIFEST_LINE.fullmatch(line)
        if match is None:
            raise _MismatchError(
                f"{MANIFEST_NAME} line {number} is not in sha256sum format: "
                f"{line[:120]!r}"
            )
        escaped, digest, raw_name = match.groups()
        if escaped:
            raw_name = _unescape(raw_name)
        name = raw_name.decode("utf-8", "surrogateescape")
        if name in listed:
            raise _MismatchError(f"{MANIFEST_NAME} lists {name!r} twice")
        listed[name] = digest.decode()
    if data and not data.endswith(b"\n"):
        raise _MismatchError(f"{MANIFEST_NAME} does not end with a newline")
    return listed


def _unescape(name: bytes) -> bytes:
    out = bytearray()
    pairs = {b"\\": b"\\", b"n": b"\n", b"r": b"\r"}
    index = 0
    while index < len(name):
        char = name[index : index + 1]
        if char == b"\\":
            nxt = name[index + 1 : index + 2]
            if nxt not in pairs:
                raise _MismatchError(f"{MANIFEST_NAME}: bad escape in {name!r}")
            out += pairs[nxt]
            index += 2
        else:
            out += char
            index += 1
    return bytes(out)


def _check_members(reader: _compress.ForwardReader) -> int:
    # Mode "r:" on a forward-only reader: tarfile parses the headers (PAX
    # included) and member data is hashed straight from the reader's buffers.
    with tarfile.open(fileobj=reader, mode="r:") as tar:
        return _check_tar(tar, reader)


def _check_tar(tar: tarfile.TarFile, reader: _compress.ForwardReader) -> int:
    listed = _read_manifest(tar)
    seen: set[str] = {MANIFEST_NAME}
    # Not `for member in tar`: in stream mode that yields the manifest again.
    while (member := tar.next()) is not None:
        name = member.name
        if name in seen:
            raise _MismatchError(f"member {name!r} appears twice")
        seen.add(name)
        if not _is_safe_member_name(name):
            raise _MismatchError(f"member {name!r} has an unsafe name")
        if member.isreg():
            want = listed.get(name)
            if want is None:
                raise _MismatchError(
                    f"member {name!r} is not listed in {MANIFEST_NAME}"
                )
            actual = _hash_member(reader, member)
            if actual != want:
                raise _MismatchError(
                    f"member {name!r}: SHA-256 expected {want!r} ({MANIFEST_NAME}), "
                    f"actual {actual!r}"
                )
        elif not (member.isdir() or member.issym()):
            raise _MismatchError(
                f"member {name!r} is of tar type {member.type!r}: only files, "
                "directories and symlinks belong in a run archive"
            )
        elif name in listed:
            raise _MismatchError(f"{MANIFEST_NAME} lists {name!r}, which is not a file")
    missing = sorted(listed.keys() - seen)
    if missing:
        raise _MismatchError(
            f"{missing[0]!r} is listed in {MANIFEST_NAME} but missing from the archive"
        )
    _check_end(reader)
    return len(listed)


def _hash_member(reader: _compress.ForwardReader, member: tarfile.TarInfo) -> str:
    digest = hashlib.sha256()
    reader.seek(member.offset_data)
    if reader.feed(member.size, digest.update) != member.size:
        raise _MismatchError(f"member {member.name!r} is cut short")
    return digest.hexdigest()


def _check_end(reader: _compress.ForwardReader) -> None:
    # tarfile stops silently at a truncated or damaged header; a whole archive
    # ends with two zero blocks (tarfile has read the first) and zero padding.
    rest = 0
    while chunk := reader.read(_CHUNK):
        if chunk.count(0) != len(chunk):
            raise _MismatchError("data follows the end-of-archive marker")
        rest += len(chunk)
    if rest < _BLOCK:
        raise _MismatchError("the tar stream is cut short (no end-of-archive marker)")


def _is_safe_member_name(name: str) -> bool:
    parts = name.split("/")
    return not name.startswith("/") and all(
        part not in ("", ".", "..") and "\0" not in part for part in parts
    )


def _read_sidecar(archive: Path) -> str:
    sidecar = _paths.sidecar_file(archive)
    try:
        lines = sidecar.read_bytes().splitlines()
    except FileNotFoundError:
        raise ArchiveIntegrityError(
            f"{str(sidecar)!r} is missing: the archive was never verified after "
            "it was written (or the sidecar was deleted)"
        ) from None
    except OSError as exc:
        raise ArchiveIntegrityError(
            f"cannot read {str(sidecar)!r}: {exc.strerror or exc}"
        ) from exc
    match = _SIDECAR_LINE.fullmatch(lines[0]) if len(lines) == 1 else None
    if match is None:
        raise ArchiveIntegrityError(
            f"{str(sidecar)!r} is not one sha256sum line "
            f"('<64 hex digits>  {archive.name}')"
        )
    return match.group(1).decode().lower()


def _recorded_hash(archive: Path) -> str | None:
    summary = archive.parent / _paths.SUMMARY_FILE
    try:
        text = summary.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None
    match = SUMMARY_HASH_RE.search(text)
    if match is None:
        return None
    # A summary naming only the other format's archive does not vouch for this one.
    named = {name for name in _paths.ARCHIVE_NAMES.values() if name in text}
    if named and archive.name not in named:
        return None
    return match.group(1)


def _check_hex(value: str | None) -> str | None:
    if value is None:
        return None
    lowered = value.strip().lower() if isinstance(value, str) else value
    if not isinstance(lowered, str) or not _HEX64.fullmatch(lowered):
        raise ConfigurationError(
            f"expected_sha256 {value!r}: use 64 hex digits (a SHA-256)"
        )
    return lowered
