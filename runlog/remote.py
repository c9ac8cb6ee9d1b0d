"""Copies runs to object storage and reads them back through fsspec (runlog[remote])."""

from __future__ import annotations

import errno
import functools
import hashlib
import importlib
import os
import random
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeGuard, TypeVar

from . import _paths
from .errors import ArchiveIntegrityError, ConfigurationError, ContextError, UploadError
from .loggers import lifecycle_logger
from .run import read_run_json

if TYPE_CHECKING:
    from ._reader import RunRow
    from .run import Run

T = TypeVar("T")

LIVE_DIR: Final = "live"
"""Remote folder of a run holding the log segments shipped while it runs."""
DEFAULT_RETRIES: Final = 4
DEFAULT_BACKOFF_S: Final = 0.5
MAX_BACKOFF_S: Final = 30.0
DEFAULT_INTERVAL_S: Final = 60.0
INTERVAL_ENV: Final = "RUNLOG_UPLOAD_INTERVAL_S"
"""Environment variable overriding the default periodic upload interval."""

_CHUNK: Final = 1 << 20
_MAX_SEGMENT: Final = 64 << 20
_SEGMENT_RE: Final = re.compile(r"(\d{15})-(\d{15})")
_SCHEME_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_USERINFO_RE: Final = re.compile(r"(?<=://)[^/@\s]*@")
_SHA256_RE: Final = re.compile(r"[0-9a-f]{64}")
# a store saying "no" (no such bucket, access denied) will say it again
_PERMANENT_OS_ERRORS: Final = (
    PermissionError,
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
)
_PERMANENT_ERRNOS: Final = frozenset({errno.EINVAL, errno.ENAMETOOLONG, errno.EACCES})


# --- URLs --------------------------------------------------------------------


def is_remote(path_or_url: object) -> TypeGuard[str]:
    """
    True if *path_or_url* is a URL with a scheme (``s3://...``, ``gs://...``).

    Plain paths and ``os.PathLike`` objects are local. Needs no optional extra,
    so the CLI can call it on every argument.
    """
    return isinstance(path_or_url, str) and _SCHEME_RE.match(path_or_url) is not None


def display_url(url: str) -> str:
    """*url* fit for messages and records: no user info, query or fragment."""
    text = _USERINFO_RE.sub("", url)
    for mark in ("?", "#"):
        text = text.split(mark, 1)[0]
    return text


def run_url(url: str, framework: str, run_id: str) -> str:
    """``<url>/<framework>/<run_id>``: where a run is stored under *url*."""
    _paths.check_name("framework", framework)
    _paths.check_name("run_id", run_id)
    return f"{_strip_slash(url)}/{framework}/{run_id}"


def _strip_slash(url: str) -> str:
    stripped = url.rstrip("/")
    # keep "file:///" and "/" meaningful
    return stripped if stripped and not stripped.endswith(":") else url


def run_names(run_dir: str | os.PathLike[str]) -> tuple[str, str]:
    """
    The framework and run id of a local run: from run.json, else the directory names.

    Raises:
        ContextError: If neither gives safe names.
    """
    path = Path(run_dir).absolute()
    info = read_run_json(_paths.logs_dir(path)) or {}
    framework = info.get("framework")
    run_id = info.get("run_id")
    if not _paths.is_safe_name(framework):
        framework = path.parent.name
    if not _paths.is_safe_name(run_id):
        run_id = path.name
    return _paths.check_name("framework", framework), _paths.check_name(
        "run_id", run_id
    )


# --- the store ---------------------------------------------------------------


@dataclass
class TransferStats:
    """Counters of one uploader: what went over the wire and how often it retried."""

    passes: int = 0
    objects: int = 0
    bytes_sent: int = 0
    bytes_verified: int = 0
    bytes_received: int = 0
    retries: int = 0
    failures: int = 0


class _MismatchError(OSError):
    """What the store holds is not what was sent (retried like a network error)."""


def _fsspec() -> Any:
    # fsspec is untyped and optional, so it is imported by name, on first use
    try:
        return importlib.import_module("fsspec")
    except ImportError as exc:
        raise ConfigurationError(
            "remote URLs need the remote extra: pip install 'runlog[remote]'"
        ) from exc


@functools.cache
def _store_errors() -> tuple[type[BaseException], ...]:
    """The exception types a store raises for a failed request."""
    errors: list[type[BaseException]] = [OSError]
    try:
        botocore = importlib.import_module("botocore.exceptions")
    except ImportError:  # botocore only comes with s3fs; other stores raise OSError
        return tuple(errors)
    errors.append(botocore.BotoCoreError)
    return tuple(errors)


@functools.cache
def _transient_boto_errors() -> tuple[type[BaseException], ...]:
    try:
        botocore = importlib.import_module("botocore.exceptions")
    except ImportError:  # without botocore every store error is an OSError
        return ()
    return (botocore.HTTPClientError, botocore.ConnectionError)


def is_transient(exc: BaseException) -> bool:
    """True if retrying the request that raised *exc* may succeed."""
    if isinstance(exc, _PERMANENT_OS_ERRORS):
        return False
    if isinstance(exc, OSError):
        return exc.errno not in _PERMANENT_ERRNOS
    return isinstance(exc, _transient_boto_errors())


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {_USERINFO_RE.sub('', text)}"


def backoff_delay(backoff: float, attempt: int) -> float:
    """Seconds to wait before retry *attempt* (0-based): doubling, capped, jittered."""
    ceiling: float = min(MAX_BACKOFF_S, backoff * 2.0**attempt)
    # jitter spreads the retries of many nodes hitting one store at once
    return ceiling * (0.5 + random.random() / 2)


def _check_policy(retries: object, backoff: object) -> tuple[int, float]:
    if type(retries) is not int or retries < 0:
        raise ConfigurationError(f"retries {retries!r}: use an int >= 0")
    if (
        not isinstance(backoff, (int, float))
        or isinstance(backoff, bool)
        or not backoff >= 0
    ):
        raise ConfigurationError(f"backoff {backoff!r}: use a number of seconds >= 0")
    return retries, float(backoff)


class _Store:
    """One location in a filesystem fsspec knows, with retries and counters."""

    def __init__(
        self,
        url: str,
        *,
        retries: int,
        backoff: float,
        storage_options: Mapping[str, Any] | None,
        stats: TransferStats,
    ) -> None:
        if not isinstance(url, str) or not url:
            raise ConfigurationError(
                f"url {url!r}: use a URL such as 's3://bucket/prefix'"
            )
        self.retries, self.backoff = _check_policy(retries, backoff)
        self.url = _strip_slash(url)
        self.stats = stats
        fsspec = _fsspec()
        try:
            fs, root = fsspec.core.url_to_fs(self.url, **dict(storage_options or {}))
        except ImportError as exc:  # e.g. s3:// without s3fs installed
            raise ConfigurationError(
                f"url {display_url(url)!r} needs a filesystem package "
                f"(pip install 'runlog[remote]'): {exc}"
            ) from exc
        except ValueError as exc:  # a protocol fsspec does not know
            raise ConfigurationError(f"url {display_url(url)!r}: {exc}") from exc
        self.fs: Any = fs
        self.root: str = root.rstrip("/") or root
        protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
        # object stores have no directories; a local or mounted target does
        self.needs_dirs = bool({"file", "local"} & set(protocols))

    def path(self, rel: str) -> str:
        """The filesystem path of *rel* below the root."""
        return f"{self.root}/{rel}" if rel else self.root

    def display(self, rel: str = "") -> str:
        """The URL of *rel*, fit for messages."""
        return display_url(f"{self.url}/{rel}" if rel else self.url)

    def call(self, what: str, rel: str, action: Callable[[], T]) -> T:
        """
        Run *action*, retrying transient store errors with exponential backoff.

        Raises:
            UploadError: Naming the URL, after the last attempt or at once for
                an error that retrying cannot fix (no bucket, access denied).
        """
        attempt = 0
        while True:
            try:
                return action()
            except _store_errors() as exc:
                if not is_transient(exc) or attempt >= self.retries:
                    raise UploadError(
                        f"{what} {self.display(rel)!r} failed after "
                        f"{attempt + 1} attempt(s): {_describe(exc)}"
                    ) from exc
                self.stats.retries += 1
                time.sleep(backoff_delay(self.backoff, attempt))
                attempt += 1

    def put_file(self, local: Path, rel: str, expected_sha256: str | None) -> None:
        """Upload *local* as *rel*, then re-read it from the store and compare."""

        def action() -> None:
            size, digest = hash_file(local)
            if expected_sha256 is not None and digest != expected_sha256:
                raise ArchiveIntegrityError(
                    f"archive {str(local)!r}: SHA-256 {digest} does not match its "
                    f"sidecar ({expected_sha256}); not uploading it"
                )
            path = self.path(rel)
            self._make_parent(path)
            self.fs.put_file(str(local), path)
            self.stats.objects += 1
            self.stats.bytes_sent += size
            self.verify(rel, size, digest)

        self.call("upload to", rel, action)

    def put_bytes(self, rel: str, data: bytes) -> None:
        """Store *data* as *rel* (one request; no read-back)."""

        def action() -> None:
            path = self.path(rel)
            self._make_parent(path)
            self.fs.pipe_file(path, data)
            self.stats.objects += 1
            self.stats.bytes_sent += len(data)

        self.call("upload to", rel, action)

    def verify(self, rel: str, size: int, digest: str) -> None:
        """
        Raise _MismatchError unless the store holds *size* bytes hashing to *digest*.
        """
        path = self.path(rel)
        self.fs.invalidate_cache(path)
        stored = self.fs.info(path).get("size")
        if stored != size:
            raise _MismatchError(
                errno.EIO, f"stored size is {stored!r} bytes, sent {size}", path
            )
        hasher = hashlib.sha256()
        with self.fs.open(path, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                hasher.update(chunk)
                self.stats.bytes_verified += len(chunk)
        if hasher.hexdigest() != digest:
            raise _MismatchError(
                errno.EIO,
                f"stored SHA-256 is {hasher.hexdigest()}, sent {digest}",
                path,
            )

    def _make_parent(self, path: str) -> None:
        if self.needs_dirs:
            self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)

    def listing(self, rel: str = "") -> dict[str, int]:
        """Every object below *rel*, as path relative to the root -> size."""
        path = self.path(rel)

        def action() -> dict[str, int]:
            self.fs.invalidate_cache(path)
            if not self.fs.exists(path):
                return {}
            found = self.fs.find(path, detail=True)
            prefix = self.root.rstrip("/") + "/"
            result: dict[str, int] = {}
            for name, info in found.items():
                key = name if name.startswith(prefix) else "/" + name
                if key.startswith(prefix) and info.get("type", "file") == "file":
                    result[key[len(prefix) :]] = int(info.get("size") or 0)
            return result

        return self.call("list", rel, action)

    def read(self, rel: str) -> bytes:
        """The contents of *rel*."""

        def action() -> bytes:
            data: bytes = self.fs.cat_file(self.path(rel))
            self.stats.bytes_received += len(data)
            return data

        return self.call("read", rel, action)

    def download(self, rel: str, local: Path) -> None:
        """Copy *rel* to *local*, which appears whole or not at all."""
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(f".{local.name}.{os.getpid()}.part")

        def action() -> None:
            self.fs.get_file(self.path(rel), str(tmp))
            self.stats.bytes_received += tmp.stat().st_size
            os.replace(tmp, local)

        try:
            self.call("download of", rel, action)
        finally:
            tmp.unlink(missing_ok=True)

    def remove_tree(self, rel: str) -> None:
        """Delete every object below *rel* (remote only)."""

        def action() -> None:
            path = self.path(rel)
            self.fs.invalidate_cache(path)
            if self.fs.exists(path):
                self.fs.rm(path, recursive=True)

        self.call("delete of", rel, action)


def hash_file(path: Path) -> tuple[int, str]:
    """
    The size and SHA-256 of a local file.

    Raises:
        UploadError: If the file cannot be read.
    """
    hasher = hashlib.sha256()
    size = 0
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                hasher.update(chunk)
                size += len(chunk)
    except OSError as exc:
        raise UploadError(
            f"cannot read {str(path)!r} to upload it: {_describe(exc)}"
        ) from exc
    return size, hasher.hexdigest()


def _read_sidecar(sidecar: Path) -> str:
    try:
        text = sidecar.read_text("utf-8", "replace")
    except OSError as exc:
        raise ArchiveIntegrityError(
            f"sidecar {str(sidecar)!r} cannot be read ({_describe(exc)}); "
            "run `runlog archive` again before uploading"
        ) from exc
    match = _SHA256_RE.match(text.strip())
    if match is None:
        raise ArchiveIntegrityError(
            f"sidecar {str(sidecar)!r} holds no SHA-256: {text[:80]!r}"
        )
    return match.group(0)


def find_archive(run_dir: Path) -> Path | None:
    """``run.tar.gz`` or ``run.tar.zst`` in *run_dir* (gz first), else None."""
    for name in _paths.ARCHIVE_NAMES.values():
        candidate = run_dir / name
        if candidate.is_file():
            return candidate
    return None


def _is_safe_rel(rel: str) -> bool:
    return all(_paths.is_safe_name(part) for part in rel.split("/"))


def _walk_files(directory: Path, rel: str = "") -> Iterator[tuple[str, Path]]:
    """Regular files below *directory* with safe names; symlinks are not followed."""
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except FileNotFoundError:
        return
    for entry in entries:
        if not _paths.is_safe_name(entry.name):
            continue  # temp files (".x.tmp") and names runlog never writes
        name = f"{rel}{entry.name}"
        if entry.is_dir(follow_symlinks=False):
            yield from _walk_files(Path(entry.path), name + "/")
        elif entry.is_file(follow_symlinks=False):
            yield name, Path(entry.path)


def _growing_logs(logs_dir: Path) -> Iterator[tuple[str, Path]]:
    """The JSON-lines logs a run appends to: ``*.log`` and ``step_NNN/*.log``."""
    for rel, path in _walk_files(logs_dir):
        parts = rel.split("/")
        if not rel.endswith(".log") or rel == _paths.COMBINED_LOG:
            # combined.log is trimmed by replacement, and every record in it
            # is in a step or run file too
            continue
        if len(parts) == 1 or (
            len(parts) == 2 and _paths.parse_step_dir(parts[0]) is not None
        ):
            yield rel, path


# --- uploading -----------------------------------------------------------------

_FinalError = UploadError | ArchiveIntegrityError | ContextError


class RunUploader:
    """
    Copies one run to ``<url>/<framework>/<run_id>/`` on any fsspec store.

    While the run is open, :meth:`ship_logs` (called every interval by the
    thread :meth:`start` begins) sends only the bytes each step log gained
    since the last pass, as whole lines, to ``live/logs/<file>/<from>-<to>``,
    and refreshes ``logs/run.json``; a node lost mid-run therefore loses at
    most one interval. :meth:`upload_final` then copies the archive, its
    sidecar, ``logs/run.json`` and last ``logs_summary.txt`` (or, with no
    archive, every file of ``logs/``), re-reads each object from the store to
    check size and SHA-256, and deletes the ``live/`` segments the archive
    supersedes. Uploading again gives the same objects.

    Thread-safe: passes and the final upload never overlap. Never deletes or
    changes a local file. Credentials (in ``storage_options``, the
    environment or the URL's user info) are never logged or put in messages.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        url: str,
        *,
        retries: int = DEFAULT_RETRIES,
        backoff: float = DEFAULT_BACKOFF_S,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        """
        Args:
            run_dir: The local run directory (``runs/<framework>/<run_id>``).
            url: The base URL; the run goes to ``<url>/<framework>/<run_id>/``.
            retries: Retries of each request after a transient error.
            backoff: Seconds before the first retry; doubled each time
                (capped at 30 s, jittered).
            storage_options: Passed to the fsspec filesystem (endpoint,
                profile...); prefer the environment for credentials.

        Raises:
            ContextError: If *run_dir* is not a directory or has no safe names.
            ConfigurationError: For a bad URL or policy, or without the extra.
        """
        self.run_dir = Path(run_dir).absolute()
        if not self.run_dir.is_dir():
            raise ContextError(f"run {str(run_dir)!r}: not a directory")
        self.framework, self.run_id = run_names(self.run_dir)
        self.logs_dir = _paths.logs_dir(self.run_dir)
        if not isinstance(url, str) or not url:
            raise ConfigurationError(
                f"url {url!r}: use a URL such as 's3://bucket/prefix'"
            )
        self.url = run_url(url, self.framework, self.run_id)
        self.stats = TransferStats()
        self.store = _Store(
            self.url,
            retries=retries,
            backoff=backoff,
            storage_options=storage_options,
            stats=self.stats,
        )
        self.interval_s: float | None = None
        self.last_error: UploadError | None = None
        self._offsets: dict[str, int] = {}
        self._run_json_sent: bytes | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"RunUploader({str(self.run_dir)!r}, {display_url(self.url)!r})"

    @property
    def shipped(self) -> dict[str, int]:
        """Bytes of each log (relative to ``logs/``) already in the store."""
        with self._lock:
            return dict(self._offsets)

    # the periodic part

    def ship_logs(self) -> int:
        """
        Send what the run's logs gained since the last pass; returns the bytes sent.

        Raises:
            UploadError: Naming the URL; what was not sent is sent next pass.
        """
        with self._lock:
            self.stats.passes += 1
            sent = 0
            for rel, path in _growing_logs(self.logs_dir):
                sent += self._ship_growth(rel, path)
            return sent + self._ship_run_json()

    def _ship_growth(self, rel: str, path: Path) -> int:
        try:
            size = path.stat().st_size
        except FileNotFoundError:  # removed since it was listed
            return 0
        except OSError as exc:
            raise UploadError(
                f"cannot read {str(path)!r} to upload it: {_describe(exc)}"
            ) from exc
        offset = self._offsets.get(rel, 0)
        remote_dir = f"{LIVE_DIR}/logs/{rel}"
        if size < offset:
            # runlog's logs only grow; a smaller file was replaced (deleted and
            # re-created by the writer), so its shipped bytes are stale
            lifecycle_logger().warning(
                "upload_log_replaced",
                file=rel,
                shipped_bytes=offset,
                size=size,
                url=self.store.display(remote_dir),
            )
            self.store.remove_tree(remote_dir)
            offset = self._offsets[rel] = 0
        sent = 0
        while offset < size:
            data = _read_range(path, offset, min(size - offset, _MAX_SEGMENT))
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                if len(data) < _MAX_SEGMENT:
                    break  # the line being written goes next pass, whole
                cut = len(data)  # one line longer than a segment: split it
            end = offset + cut
            self.store.put_bytes(f"{remote_dir}/{offset:015d}-{end:015d}", data[:cut])
            self._offsets[rel] = offset = end
            sent += cut
        return sent

    def _ship_run_json(self) -> int:
        try:
            data = _paths.run_json(self.logs_dir).read_bytes()
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise UploadError(
                f"cannot read run.json of {str(self.run_dir)!r}: {_describe(exc)}"
            ) from exc
        if data == self._run_json_sent:
            return 0
        self.store.put_bytes(f"{_paths.LOGS_DIR}/{_paths.RUN_JSON}", data)
        self._run_json_sent = data
        return len(data)

    def start(self, interval_s: float = DEFAULT_INTERVAL_S) -> None:
        """
        Ship the logs every *interval_s* seconds from a daemon thread.

        A failed pass is logged as ``upload_failed`` (component orchestrator)
        and tried again next interval; nothing is lost locally.

        Raises:
            ConfigurationError: For a bad interval or a second start.
        """
        interval = check_interval(interval_s)
        if self._thread is not None:
            raise ConfigurationError(f"{self!r} is already running")
        self.interval_s = interval
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._loop, name=f"runlog-upload-{self.run_id}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop the periodic thread (waiting for a pass in progress). Idempotent."""
        thread = self._thread
        if thread is None:
            return
        self._stop.set()
        thread.join()
        self._thread = None

    @property
    def is_running(self) -> bool:
        """True while the periodic thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def _loop(self) -> None:
        assert self.interval_s is not None
        while not self._stop.wait(self.interval_s):
            try:
                self.ship_logs()
            except UploadError as exc:
                self._report(exc, "periodic")

    def _report(self, exc: _FinalError, phase: str) -> None:
        self.stats.failures += 1
        if isinstance(exc, UploadError):
            self.last_error = exc
        lifecycle_logger().error(
            "upload_failed",
            url=display_url(self.url),
            phase=phase,
            error_type=type(exc).__name__,
            error=str(exc),
        )

    # the final part

    def upload_final(self, *, use_archive: bool = True) -> list[str]:
        """
        Copy the finished run and check every object; returns the URLs written.

        With an archive (and *use_archive*): the archive, its sidecar,
        ``logs/run.json``, then ``logs_summary.txt``; else every file of
        ``logs/`` and the summary. The summary goes last, so a reader who
        finds it finds the archive it names. Then the ``live/`` segments are
        deleted from the store (a failure there is only a warning record).

        Raises:
            UploadError: Naming the URL, when a transfer or check failed after
                the retries.
            ArchiveIntegrityError: If the local archive does not match its
                sidecar (nothing is uploaded then).
            ContextError: If the run has nothing to upload.
        """
        with self._lock:
            plan = self._final_plan(use_archive)
            urls: list[str] = []
            for local, rel, expected in plan:
                self.store.put_file(local, rel, expected)
                urls.append(display_url(f"{self.url}/{rel}"))
            self._remove_live()
            return urls

    def _final_plan(self, use_archive: bool) -> list[tuple[Path, str, str | None]]:
        plan: list[tuple[Path, str, str | None]] = []
        archive = find_archive(self.run_dir) if use_archive else None
        run_json = _paths.run_json(self.logs_dir)
        run_json_rel = f"{_paths.LOGS_DIR}/{_paths.RUN_JSON}"
        if archive is not None:
            sidecar = _paths.sidecar_file(archive)
            plan.append((archive, archive.name, _read_sidecar(sidecar)))
            plan.append((sidecar, sidecar.name, None))
            if run_json.is_file():
                plan.append((run_json, run_json_rel, None))
        else:
            files = [
                (path, f"{_paths.LOGS_DIR}/{rel}", None)
                for rel, path in _walk_files(self.logs_dir)
            ]
            # run.json last among the logs: its final status means "all here"
            files.sort(key=lambda item: item[1] == run_json_rel)
            plan.extend(files)
        summary = _paths.summary_file(self.run_dir)
        if summary.is_file():
            plan.append((summary, summary.name, None))
        if not plan:
            raise ContextError(
                f"run {str(self.run_dir)!r}: nothing to upload "
                "(no archive, no files under logs/, no summary)"
            )
        return plan

    def _remove_live(self) -> None:
        try:
            self.store.remove_tree(LIVE_DIR)
        except UploadError as exc:
            lifecycle_logger().warning(
                "upload_cleanup_failed",
                url=self.store.display(LIVE_DIR),
                error=str(exc),
            )
        self._offsets.clear()

    def finish(self, run: Run) -> None:
        """
        Run.finish callback: stop the thread, then :meth:`upload_final`.

        Raises:
            UploadError, ArchiveIntegrityError, ContextError: After logging
                ``upload_failed``; the run's local files are complete.
        """
        self.stop()
        try:
            self.upload_final(use_archive=run.archive_info is not None)
        except (UploadError, ArchiveIntegrityError, ContextError) as exc:
            self._report(exc, "final")
            raise


def _read_range(path: Path, offset: int, length: int) -> bytes:
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            return handle.read(length)
    except OSError as exc:
        raise UploadError(
            f"cannot read {str(path)!r} to upload it: {_describe(exc)}"
        ) from exc


def check_interval(interval_s: object) -> float:
    """
    *interval_s* as a float > 0.

    Raises:
        ConfigurationError: Naming the bad value.
    """
    if (
        not isinstance(interval_s, (int, float))
        or isinstance(interval_s, bool)
        or not interval_s > 0
        or interval_s == float("inf")
    ):
        raise ConfigurationError(
            f"interval_s {interval_s!r}: use a number of seconds > 0"
        )
    return float(interval_s)


def default_interval() -> float:
    """The upload interval: ``RUNLOG_UPLOAD_INTERVAL_S`` if set, else 60 s."""
    text = os.environ.get(INTERVAL_ENV)
    if not text:
        return DEFAULT_INTERVAL_S
    try:
        value = float(text)
    except ValueError:
        raise ConfigurationError(
            f"{INTERVAL_ENV}={text!r}: use a number of seconds > 0"
        ) from None
    return check_interval(value)


def upload_run(
    run_dir: str | os.PathLike[str],
    url: str,
    *,
    retries: int = DEFAULT_RETRIES,
    backoff: float = DEFAULT_BACKOFF_S,
    storage_options: Mapping[str, Any] | None = None,
) -> list[str]:
    """
    Copy a finished run to ``<url>/<framework>/<run_id>/`` and check it there.

    Copies the archive and its sidecar (after checking they agree),
    ``logs/run.json`` and ``logs_summary.txt``; a run without an archive has
    every file of ``logs/`` copied instead. Each object is re-read from the
    store and its size and SHA-256 compared. Transient errors are retried
    with exponential backoff. Safe to repeat; never deletes local files.

    Args:
        run_dir: The local run directory.
        url: Base URL (``s3://bucket/prefix``; any fsspec URL or a local path).
        retries: Retries of each request after a transient error.
        backoff: Seconds before the first retry, doubled each time.
        storage_options: Passed to the fsspec filesystem.

    Returns:
        The URLs written, the summary last.

    Raises:
        UploadError: Naming the URL, when the store failed or the check did.
        ArchiveIntegrityError: If the archive does not match its sidecar.
        ContextError: If *run_dir* is not a run.
        ConfigurationError: For a bad URL or policy, or without the extra.
    """
    uploader = RunUploader(
        run_dir, url, retries=retries, backoff=backoff, storage_options=storage_options
    )
    return uploader.upload_final()


def attach_uploader(
    run: Run,
    url: str,
    *,
    interval_s: float | None = None,
    retries: int = DEFAULT_RETRIES,
    backoff: float = DEFAULT_BACKOFF_S,
    storage_options: Mapping[str, Any] | None = None,
) -> RunUploader:
    """
    Upload *run* to *url* while it runs and when it finishes.

    Ships the logs once at once (so a wrong bucket or missing credentials
    fail the start, not the end), then every *interval_s* seconds; the
    run's :meth:`~runlog.Run.finish` stops the thread and uploads the
    archive and summary, raising :class:`UploadError` if that fails.
    ``start_run(..., upload_to=url)`` calls this.

    Args:
        run: The open run.
        url: Base URL; the run goes to ``<url>/<framework>/<run_id>/``.
        interval_s: Seconds between passes; None reads
            ``RUNLOG_UPLOAD_INTERVAL_S``, else 60.

    Raises:
        UploadError: If the first pass fails.
        ConfigurationError: For a bad URL, interval or policy, or without the extra.
    """
    interval = default_interval() if interval_s is None else check_interval(interval_s)
    uploader = RunUploader(
        run.run_dir,
        url,
        retries=retries,
        backoff=backoff,
        storage_options=storage_options,
    )
    uploader.ship_logs()
    run.add_finish_callback(uploader.finish)
    uploader.start(interval)
    return uploader


# --- reading -------------------------------------------------------------------


@dataclass(frozen=True)
class RemoteRun:
    """One run found in a store: where it is and what it holds.

    *prefix* is its folder relative to the URL listed ("" when the URL is
    the run's own folder); *steps* are those seen in shipped or mirrored logs.
    """

    framework: str
    run_id: str
    url: str
    prefix: str
    archive: str | None
    has_summary: bool
    live_files: int
    steps: frozenset[int]


def _split_run_rel(rel: str) -> tuple[str, str] | None:
    """(kind, rest) for a key inside one run's folder, else None."""
    if rel == _paths.SUMMARY_FILE:
        return "summary", rel
    if rel in _paths.ARCHIVE_NAMES.values():
        return "archive", rel
    if rel.endswith(_paths.SIDECAR_SUFFIX) and (
        rel[: -len(_paths.SIDECAR_SUFFIX)] in _paths.ARCHIVE_NAMES.values()
    ):
        return "sidecar", rel
    head, _, rest = rel.partition("/")
    if head == _paths.LOGS_DIR and rest and _is_safe_rel(rest):
        return "logs", rest
    if head == LIVE_DIR and rest.startswith(f"{_paths.LOGS_DIR}/"):
        file_rel, _, segment = rest[len(_paths.LOGS_DIR) + 1 :].rpartition("/")
        if file_rel and _is_safe_rel(file_rel) and _SEGMENT_RE.fullmatch(segment):
            return "live", rest
    return None


def find_remote_runs(
    url: str,
    *,
    retries: int = DEFAULT_RETRIES,
    backoff: float = DEFAULT_BACKOFF_S,
    storage_options: Mapping[str, Any] | None = None,
) -> list[RemoteRun]:
    """
    Every run stored under *url* (``<url>/<framework>/<run_id>/``), or *url*
    itself when it is one run's folder; one listing request.

    Raises:
        UploadError: If the store cannot be listed.
    """
    store = _Store(
        url,
        retries=retries,
        backoff=backoff,
        storage_options=storage_options,
        stats=TransferStats(),
    )
    return _find_runs(store)


def _find_runs(store: _Store) -> list[RemoteRun]:
    listing = store.listing()
    groups: dict[tuple[str, ...], list[str]] = {}
    for rel in listing:
        parts = rel.split("/", 2)
        if _split_run_rel(rel) is not None:
            groups.setdefault((), []).append(rel)
        elif (
            len(parts) == 3
            and _split_run_rel(parts[2]) is not None
            and _paths.is_safe_name(parts[0])
            and _paths.is_safe_name(parts[1])
        ):
            groups.setdefault((parts[0], parts[1]), []).append(parts[2])
    runs: list[RemoteRun] = []
    for key, rels in sorted(groups.items()):
        if key:
            framework, run_id = key
            prefix = f"{framework}/{run_id}"
        else:
            framework, run_id = _names_from_path(store.root)
            prefix = ""
        runs.append(_describe_remote(framework, run_id, store, prefix, rels))
    return runs


def _describe_remote(
    framework: str, run_id: str, store: _Store, prefix: str, rels: list[str]
) -> RemoteRun:
    archive = next(
        (name for name in _paths.ARCHIVE_NAMES.values() if name in rels), None
    )
    steps: set[int] = set()
    live_files: set[str] = set()
    for rel in rels:
        split = _split_run_rel(rel)
        if split is None or split[0] not in ("logs", "live"):
            continue
        file_rel = split[1] if split[0] == "logs" else split[1].split("/", 1)[1]
        if split[0] == "live":
            file_rel = file_rel.rpartition("/")[0]
            live_files.add(file_rel)
        step = _paths.parse_step_dir(file_rel.split("/", 1)[0])
        if step is not None and "/" in file_rel:
            steps.add(step)
    return RemoteRun(
        framework=framework,
        run_id=run_id,
        url=store.display(prefix),
        prefix=prefix,
        archive=archive,
        has_summary=_paths.SUMMARY_FILE in rels,
        live_files=len(live_files),
        steps=frozenset(steps),
    )


def _names_from_path(root: str) -> tuple[str, str]:
    parts = [part for part in root.split("/") if part]
    run_id = parts[-1] if parts and _paths.is_safe_name(parts[-1]) else "run"
    framework = (
        parts[-2] if len(parts) > 1 and _paths.is_safe_name(parts[-2]) else "remote"
    )
    return framework, run_id


def read_remote_run_json(
    url: str,
    *,
    retries: int = DEFAULT_RETRIES,
    backoff: float = DEFAULT_BACKOFF_S,
    storage_options: Mapping[str, Any] | None = None,
) -> dict[str, Any] | None:
    """
    ``logs/run.json`` of the run stored at *url*; None when absent or not JSON.

    Raises:
        UploadError: If the store fails (other than the file being absent).
    """
    import orjson

    store = _Store(
        url,
        retries=retries,
        backoff=backoff,
        storage_options=storage_options,
        stats=TransferStats(),
    )
    try:
        data = store.read(f"{_paths.LOGS_DIR}/{_paths.RUN_JSON}")
    except UploadError as exc:
        if isinstance(exc.__cause__, FileNotFoundError):
            return None
        raise
    try:
        info = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return info if isinstance(info, dict) else None


def fetch_run(
    url: str,
    dest: str | os.PathLike[str],
    *,
    retries: int = DEFAULT_RETRIES,
    backoff: float = DEFAULT_BACKOFF_S,
    storage_options: Mapping[str, Any] | None = None,
) -> Path:
    """
    Download the run stored at *url* into ``dest/<framework>/<run_id>/`` for reading.

    *url* names a run's folder (``s3://bucket/prefix/<framework>/<run_id>``)
    or its archive (``.../run.tar.gz``). A finished run comes down as its
    archive, sidecar and summary (read in place like a local archive); a run
    still going, or lost mid-run, as ``logs/`` rebuilt from the segments
    shipped so far (whole lines, in order) plus its ``run.json``. Only
    names runlog writes are fetched, so nothing lands outside the folder.

    Returns:
        The local run directory, or the local archive when *url* names one.

    Raises:
        ContextError: If nothing that makes a run is stored at *url*.
        UploadError: Naming the URL, if the store fails.
        ConfigurationError: For a bad URL, or without the extra.
    """
    base = _strip_slash(url)
    archive_name: str | None = None
    tail = base.rsplit("/", 1)[-1]
    if tail in _paths.ARCHIVE_NAMES.values():
        base, archive_name = base.rsplit("/", 1)[0], tail
    store = _Store(
        base,
        retries=retries,
        backoff=backoff,
        storage_options=storage_options,
        stats=TransferStats(),
    )
    listing = store.listing()
    framework, run_id = _names_from_path(store.root)
    run_dir = Path(dest) / framework / run_id
    kinds: dict[str, list[str]] = {}
    for rel in sorted(listing):
        split = _split_run_rel(rel)
        if split is not None:
            kinds.setdefault(split[0], []).append(rel)
    archives = kinds.get("archive", [])
    if archive_name is not None and archive_name not in archives:
        raise ContextError(f"archive {display_url(url)!r}: not found in the store")
    chosen = archive_name or next(
        (n for n in _paths.ARCHIVE_NAMES.values() if n in archives), None
    )
    if chosen is not None:
        wanted = [chosen]
        sidecar = chosen + _paths.SIDECAR_SUFFIX
        if sidecar in listing:
            wanted.append(sidecar)
        if _paths.SUMMARY_FILE in listing:
            wanted.append(_paths.SUMMARY_FILE)
        for rel in wanted:
            store.download(rel, run_dir / rel)
        local_archive = run_dir / chosen
        return local_archive if archive_name is not None else run_dir
    if not kinds.get("logs") and not kinds.get("live"):
        raise ContextError(
            f"run {display_url(url)!r}: no run is stored there "
            "(no archive, logs/ or live/ objects)"
        )
    for rel in kinds.get("summary", []) + kinds.get("logs", []):
        store.download(rel, run_dir / rel)
    _rebuild_live(store, kinds.get("live", []), run_dir)
    return run_dir


def _rebuild_live(store: _Store, rels: list[str], run_dir: Path) -> None:
    """Concatenate the shipped segments of each log into ``run_dir/logs/``."""
    files: dict[str, list[tuple[int, int, str]]] = {}
    for rel in rels:
        # rel: live/logs/<file rel>/<from>-<to>
        inner = rel[len(LIVE_DIR) + 1 + len(_paths.LOGS_DIR) + 1 :]
        file_rel, _, segment = inner.rpartition("/")
        match = _SEGMENT_RE.fullmatch(segment)
        assert match is not None  # _split_run_rel checked the name
        start, end = int(match.group(1)), int(match.group(2))
        if end > start:
            files.setdefault(file_rel, []).append((start, end, rel))
    for file_rel, segments in files.items():
        target = _paths.logs_dir(run_dir) / file_rel
        if target.exists():
            continue  # a complete copy under logs/ wins over the live segments
        segments.sort(key=lambda item: (item[0], -item[1]))
        chunks: list[bytes] = []
        position = 0
        for start, end, rel in segments:
            if end <= position:
                continue  # a retried pass sent these bytes twice
            data = store.read(rel)
            # a gap (start > position) keeps what follows: lines stay whole
            chunks.append(data[max(0, position - start) :])
            position = end
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
        tmp.write_bytes(b"".join(chunks))
        os.replace(tmp, target)


def scan_remote_runs(
    url: str,
    *,
    now: datetime | None = None,
    retries: int = DEFAULT_RETRIES,
    backoff: float = DEFAULT_BACKOFF_S,
    storage_options: Mapping[str, Any] | None = None,
) -> list[RunRow]:
    """
    The ``runlog ls`` rows of every run stored under *url*, newest first.

    One listing plus one batched read of the runs' ``logs/run.json``: status
    (``crashed`` once the shipped heartbeat is stale), start and duration.
    Steps are counted from shipped logs; errors and warnings are left
    unknown (None) rather than downloading every archive.

    Raises:
        UploadError: Naming the URL, if the store fails.
    """
    from ._reader import RunRow, _duration
    from .run import effective_status, parse_time

    store = _Store(
        url,
        retries=retries,
        backoff=backoff,
        storage_options=storage_options,
        stats=TransferStats(),
    )
    runs = _find_runs(store)
    infos = _read_run_jsons(store, runs)
    moment = now or datetime.now(UTC)
    rows: list[RunRow] = []
    for found, info in zip(runs, infos, strict=True):
        status = effective_status(info, now=moment) if info else "incomplete"
        started = parse_time(info.get("started_at")) if info else None
        rows.append(
            RunRow(
                framework=found.framework,
                run_id=found.run_id,
                path=Path(found.prefix or "."),
                status=status,
                started=started,
                duration_s=_duration(info or {}, status, started, moment),
                steps=len(found.steps),
                errors=None,
                warnings=None,
                archived=found.archive is not None,
                url=found.url,
            )
        )
    oldest = datetime.min.replace(tzinfo=UTC)
    rows.sort(key=lambda row: (row.started or oldest, row.run_id), reverse=True)
    return rows


def _read_run_jsons(
    store: _Store, runs: list[RemoteRun]
) -> list[dict[str, Any] | None]:
    import orjson

    rel = f"{_paths.LOGS_DIR}/{_paths.RUN_JSON}"
    paths = [store.path(f"{r.prefix}/{rel}" if r.prefix else rel) for r in runs]
    if not paths:
        return []

    def action() -> dict[str, Any]:
        # one batched request set (concurrent on async stores such as s3fs)
        found: dict[str, Any] = store.fs.cat(paths, on_error="return")
        for value in found.values():
            if isinstance(value, BaseException) and not isinstance(
                value, FileNotFoundError
            ):
                raise value
        return {store.fs._strip_protocol(k): v for k, v in found.items()}

    found = store.call("read", "", action)
    infos: list[dict[str, Any] | None] = []
    for path in paths:
        data = found.get(store.fs._strip_protocol(path))
        info: object = None
        if isinstance(data, bytes):
            store.stats.bytes_received += len(data)
            try:
                info = orjson.loads(data)
            except orjson.JSONDecodeError:
                info = None
        infos.append(info if isinstance(info, dict) else None)
    return infos


@contextmanager
def fetched(
    url: str,
    *,
    retries: int = DEFAULT_RETRIES,
    backoff: float = DEFAULT_BACKOFF_S,
    storage_options: Mapping[str, Any] | None = None,
) -> Iterator[Path]:
    """
    A temporary local copy of the run or archive at *url*, removed on exit.

    Yields the archive when the run has one (read it in place), else the
    run directory rebuilt from the shipped logs. For ``runlog show``,
    ``tail`` and ``verify`` with a URL.

    Raises:
        As :func:`fetch_run`.
    """
    with tempfile.TemporaryDirectory(prefix="runlog-fetch-") as tmp:
        local = fetch_run(
            url,
            tmp,
            retries=retries,
            backoff=backoff,
            storage_options=storage_options,
        )
        archive = find_archive(local) if local.is_dir() else None
        yield archive or local
