"""Archiver, ArchiveInfo, verify_archive: the hashed, reproducible run archive."""

from __future__ import annotations

import fcntl
import itertools
import os
import re
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from .. import _paths
from .._files import as_write_error, atomic_write, fsync_dir
from .._status import effective_status, is_pid_alive, parse_time, read_run_json
from ..context import LogContext
from ..errors import ArchiveIntegrityError, ConfigurationError, RunlogError
from . import _codecs
from ._tarread import UNREADABLE, read_back, read_manifest_of
from ._tarwrite import (
    MANIFEST_NAME,
    Entry,
    HashingSink,
    Progress,
    collect,
    hash_files,
    write_tar,
)

SUMMARY_HASH_RE: Final = re.compile(r"^\s*SHA-256:\s+([0-9a-f]{64})\s*$", re.MULTILINE)
_HEX64: Final = re.compile(r"[0-9a-f]{64}")
_SUMMARY_FIELD_RE: Final = re.compile(
    r"^(Run ID|Framework):[ \t]+(\S+)[ \t]*$", re.MULTILINE
)
_SIDECAR_LINE: Final = re.compile(rb"([0-9a-fA-F]{64}) [ *](.+)")
_TEMP_RE: Final = re.compile(r"\.run\.tar\.(?:gz|zst)\.(\d+)\.[0-9a-f]+\.tmp")


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
        symlinks: (member, target) of every symlink stored, as a link (never
            followed), when the archive was read back; empty otherwise.
    """

    path: Path
    sha256: str
    size_bytes: int
    file_count: int
    symlinks: tuple[tuple[str, str], ...] = ()


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

    Thread- and process-safe: archivers of the same run take turns (an
    exclusive ``flock`` on the run directory), so the sidecar always belongs
    to the archive beside it.
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
        level = _codecs.check_level(format, level)
        roots = self._roots(logs, workspace_dir, metrics_file)
        if not self.run_dir.is_dir():
            raise RunlogError(f"run directory {str(self.run_dir)!r} does not exist")
        if not force:
            _refuse_open_run(self.run_dir, [path for _, path in roots])
        with _archiving(self.run_dir):
            return self._create(roots, format, level, progress)

    def _create(
        self,
        roots: list[tuple[str, Path]],
        fmt: str,
        level: int,
        progress: Progress | None,
    ) -> ArchiveInfo:
        final = _paths.archive_file(self.run_dir, fmt)
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
                entries = collect(roots, self.run_dir, os.fstat(fd), _is_own)
                hash_files(entries)
                mtime = _archive_mtime(self.run_dir, entries)
                sink = HashingSink(fd, final)
                write_tar(sink, fmt, level, entries, mtime, progress)
                try:
                    os.fsync(fd)
                except OSError as exc:
                    raise as_write_error(exc, final) from exc
            finally:
                os.close(fd)
            info = _check_read_back(tmp, fmt, sink, entries)
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


def locate_archive(run_or_archive: str | os.PathLike[str]) -> Path:
    """
    The archive named by *run_or_archive*: an archive file, or a run directory.

    Raises:
        RunlogError: If the path does not exist or the run has no archive.
    """
    path = Path(run_or_archive)
    if path.is_dir():
        found = _paths.find_archive(path)
        if found is None:
            raise RunlogError(
                f"no run.tar.gz or run.tar.zst in {str(path)!r}: "
                "run `runlog archive` first"
            )
        return found
    if not path.is_file():
        raise RunlogError(f"archive {str(path)!r} does not exist")
    _codecs.format_of(path)
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
    _codecs.format_of(archive)
    sha256 = read_sidecar(archive)
    try:
        size = archive.stat().st_size
        manifest = read_manifest_of(archive)
    except UNREADABLE as exc:
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
    fmt = _codecs.format_of(archive)
    expected = _check_hex(expected_sha256)
    if not archive.is_file():
        raise RunlogError(f"archive {str(archive)!r} does not exist")
    sidecar_hash = read_sidecar(archive)
    recorded = recorded_hash(archive)
    back = read_back(archive, fmt)
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
    return ArchiveInfo(archive, back.sha256, back.size, back.file_count, back.symlinks)


def verify_logs(archive: str | os.PathLike[str]) -> int:
    """
    Check that ``logs/`` beside *archive* holds nothing the archive does not.

    Every file under ``logs/`` (runlog's scratch files aside) must be in the
    archive's manifest with the same SHA-256: a record written after the
    archive was made (a late writer, see #12), or a file changed since, is a
    mismatch. Files the archive has and ``logs/`` lost are not: runs may be
    trimmed to their archive. A run whose ``logs/`` is gone passes.

    Returns:
        How many files were compared.

    Raises:
        ArchiveIntegrityError: Naming the first file that is not in the
            archive or differs from it.
    """
    archive = Path(archive)
    run_dir = archive.parent
    logs = _paths.logs_dir(run_dir)
    if not logs.is_dir():
        return 0
    manifest = read_manifest_of(archive)
    entries = collect([(_paths.LOGS_DIR, logs)], run_dir, os.stat(archive), _is_own)
    hash_files(entries)
    files = [entry for entry in entries if entry.kind == "file"]
    for entry in files:
        recorded = manifest.get(entry.arcname)
        if recorded is None:
            raise ArchiveIntegrityError(
                f"{str(entry.source)!r} is not in {archive.name}: it was written "
                "after the archive was made"
            )
        if recorded != entry.sha256:
            raise ArchiveIntegrityError(
                f"{str(entry.source)!r} differs from its copy in {archive.name} "
                f"(SHA-256 {entry.sha256!r}, archived {recorded!r}): it changed "
                "after the archive was made"
            )
    return len(files)


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


@contextmanager
def _archiving(run_dir: Path) -> Iterator[None]:
    # One archiver per run at a time (threads or processes): an exclusive
    # flock on the run directory itself, so no lock file is left behind.
    fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _remove_stale_temps(run_dir: Path) -> None:
    # A temp file left by a process killed mid-archive; a live one is left alone.

    with suppress(FileNotFoundError):  # no run dir yet: collect reports it
        for name in os.listdir(run_dir):
            match = _TEMP_RE.fullmatch(name)
            if match and not is_pid_alive(int(match.group(1))):
                with suppress(FileNotFoundError):  # another archiver removed it
                    os.unlink(run_dir / name)


_ARCHIVE_NAMES: Final = frozenset(_paths.ARCHIVE_NAMES.values())


def _is_own(name: str) -> bool:
    """True for the files archiving makes in a run dir: never archived themselves."""
    return (
        name in _ARCHIVE_NAMES
        or name.removesuffix(_paths.SIDECAR_SUFFIX) in _ARCHIVE_NAMES
        or _TEMP_RE.fullmatch(name) is not None
    )


def _archive_mtime(run_dir: Path, entries: list[Entry]) -> int:

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
            with suppress(FileNotFoundError):  # gone since: write_tar reports it
                newest = max(newest, int(os.lstat(entry.source).st_mtime))
    return newest


def _check_read_back(
    tmp: Path, fmt: str, sink: HashingSink, entries: list[Entry]
) -> ArchiveInfo:
    back = read_back(tmp, fmt)
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
    for fmt in _codecs.FORMATS:
        other = _paths.archive_file(run_dir, fmt)
        if other != keep:
            for path in (_paths.sidecar_file(other), other):
                with suppress(FileNotFoundError):  # there was none
                    os.unlink(path)


def read_sidecar(archive: Path) -> str:
    """
    The SHA-256 the sidecar ``<archive>.sha256`` records (one sha256sum line).

    Raises:
        ArchiveIntegrityError: If the sidecar is missing, unreadable or not
            one ``<64 hex digits>  <name>`` line.
    """
    sidecar = _paths.sidecar_file(archive)
    try:
        lines = sidecar.read_bytes().splitlines()
    except FileNotFoundError:
        raise ArchiveIntegrityError(
            f"sidecar {str(sidecar)!r} is missing, so it cannot be read: the "
            "archive was never verified after it was written (or the sidecar "
            "was deleted)"
        ) from None
    except OSError as exc:
        raise ArchiveIntegrityError(
            f"sidecar {str(sidecar)!r} cannot be read: {exc.strerror or exc}"
        ) from exc
    match = _SIDECAR_LINE.fullmatch(lines[0]) if len(lines) == 1 else None
    if match is None:
        raise ArchiveIntegrityError(
            f"sidecar {str(sidecar)!r} holds no SHA-256: it is not one sha256sum "
            f"line ('<64 hex digits>  {archive.name}')"
        )
    return match.group(1).decode().lower()


@dataclass(frozen=True, slots=True)
class SummaryRecord:
    """
    What a ``logs_summary.txt`` says about its run and its archive.

    Attributes:
        framework: The ``Framework:`` line's name, or None.
        run_id: The ``Run ID:`` line's name, or None.
        archive_name: ``run.tar.gz`` or ``run.tar.zst`` when the summary
            names exactly one of them, else None.
        sha256: The archive's recorded ``SHA-256:``, or None.
    """

    framework: str | None
    run_id: str | None
    archive_name: str | None
    sha256: str | None


def read_summary_record(text: str) -> SummaryRecord:
    """The run and archive a summary's text names; a field it lacks is None."""
    fields: dict[str, str] = {}
    for match in _SUMMARY_FIELD_RE.finditer(text):
        fields.setdefault(match.group(1), match.group(2))  # the header's, first
    # a name cut to the summary's width ends in "...": not the name
    framework, run_id = (
        None if value is None or value.endswith("...") else value
        for value in (fields.get("Framework"), fields.get("Run ID"))
    )
    named = [name for name in _paths.ARCHIVE_NAMES.values() if name in text]
    recorded = SUMMARY_HASH_RE.search(text)
    return SummaryRecord(
        framework=framework if _paths.is_safe_name(framework) else None,
        run_id=run_id if _paths.is_safe_name(run_id) else None,
        archive_name=named[0] if len(named) == 1 else None,
        sha256=recorded.group(1) if recorded else None,
    )


def recorded_hash(archive: Path) -> str | None:
    """The hash ``logs_summary.txt`` beside *archive* records for it, or None."""
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
