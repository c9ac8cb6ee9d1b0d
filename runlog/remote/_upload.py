"""Copies a run to object storage while it runs and when it finishes."""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, Protocol, TypeGuard

from .. import _config, _paths, _status
from ..archive import ArchiveInfo
from ..archive._archiver import read_sidecar
from ..errors import (
    ArchiveIntegrityError,
    ConfigurationError,
    ContextError,
    UploadError,
)
from ..handler import get_handler
from ..loggers import lifecycle_logger
from ._store import (
    DEFAULT_BACKOFF_S,
    DEFAULT_RETRIES,
    LIVE_DIR,
    Store,
    TransferStats,
    describe_error,
    display_url,
    encode_segment,
    filesystem_errors,
    load_fsspec,
    strip_slash,
)


class OpenRun(Protocol):
    """What the uploader needs of a :class:`runlog.Run` (run/ sits above remote/)."""

    run_dir: Path
    archive_info: ArchiveInfo | None

    def add_finish_callback(self, callback: Callable[[Any], object]) -> None: ...


DEFAULT_INTERVAL_S: Final = 60.0
INTERVAL_ENV: Final = "RUNLOG_UPLOAD_INTERVAL_S"
"""Environment variable overriding the default periodic upload interval."""

_MAX_SEGMENT: Final = 64 << 20
_HEAD_BYTES: Final = 64  # what tells one log file from another under its name
_SCHEME_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


# --- URLs --------------------------------------------------------------------


def is_remote(path_or_url: object) -> TypeGuard[str]:
    """
    True if *path_or_url* is a URL with a scheme (``s3://...``, ``gs://...``).

    Plain paths and ``os.PathLike`` objects are local. Needs no optional extra,
    so the CLI can call it on every argument.
    """
    return isinstance(path_or_url, str) and _SCHEME_RE.match(path_or_url) is not None


def check_url(url: object) -> str:
    """
    *url* if its filesystem can be used here; makes no request.

    Checks that the ``remote`` extra is installed and that fsspec knows the
    URL's protocol and can import its package (``s3fs`` for ``s3://``), so a
    missing extra fails before a run directory is made.

    Raises:
        ConfigurationError: Naming the URL and what to install.
    """
    if not isinstance(url, str) or not url:
        raise ConfigurationError(f"url {url!r}: use a URL such as 's3://bucket/prefix'")
    fsspec = load_fsspec()
    protocol = fsspec.core.split_protocol(url)[0] or "file"
    with filesystem_errors(url):
        fsspec.get_filesystem_class(protocol)
    return url


def run_url(url: str, framework: str, run_id: str) -> str:
    """``<url>/<framework>/<run_id>``: where a run is stored under *url*."""
    _paths.check_name("framework", framework)
    _paths.check_name("run_id", run_id)
    return f"{strip_slash(url)}/{framework}/{run_id}"


def run_names(run_dir: str | os.PathLike[str]) -> tuple[str, str]:
    """
    The framework and run id of a local run: from run.json, else the directory names.

    Raises:
        ContextError: If neither gives safe names.
    """
    framework, run_id = _status.run_names(Path(run_dir).absolute())
    return _paths.check_name("framework", framework), _paths.check_name(
        "run_id", run_id
    )


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


# --- the uploader's own libraries ----------------------------------------------

# Loggers of the libraries an upload runs through: what they log while runlog
# uploads ("Found credentials in environment variables.") is about the upload,
# not the run, and never lands in the run being uploaded (see #13).
_UPLOAD_LIBRARIES: Final = (
    "botocore",
    "aiobotocore",
    "boto3",
    "s3transfer",
    "s3fs",
    "fsspec",
    "gcsfs",
    "adlfs",
    "azure",
    "google.auth",
    "urllib3",
    "aiohttp",
)
# the thread where fsspec runs async filesystems' requests (s3fs, gcsfs)
_FSSPEC_IO_THREAD: Final = "fsspecIO"


class _UploadNoise(logging.Filter):
    """
    Drops the upload libraries' records made for runlog's own upload calls.

    A record is dropped when its logger is one of ``_UPLOAD_LIBRARIES`` (or
    below one) and it comes from a thread inside an uploader call, or from
    fsspec's IO thread while one runs. Not guaranteed: an application's own
    s3fs request that runs in that IO thread at that moment is dropped from
    the run's files too (its own handlers still get it). Thread-safe.
    """

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._threads: dict[int, int] = {}

    @contextmanager
    def uploading(self) -> Iterator[None]:
        """While inside, the calling thread's library records are dropped."""
        me = threading.get_ident()
        with self._lock:
            self._threads[me] = self._threads.get(me, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                left = self._threads[me] - 1
                if left:
                    self._threads[me] = left
                else:
                    del self._threads[me]

    def filter(self, record: logging.LogRecord) -> bool:
        """False for a library record made by an upload in progress."""
        threads = self._threads
        if not threads:
            return True
        name = record.name
        if not any(
            name == library or name.startswith(library + ".")
            for library in _UPLOAD_LIBRARIES
        ):
            return True
        return record.thread not in threads and record.threadName != _FSSPEC_IO_THREAD


_NOISE: Final = _UploadNoise()


def _quiet_libraries() -> _UploadNoise:
    # on runlog's handler, not on the libraries' loggers: a logger's filter
    # does not apply to its children (botocore.credentials); idempotent
    get_handler().addFilter(_NOISE)
    return _NOISE


# --- uploading -----------------------------------------------------------------

_FinalError = UploadError | ArchiveIntegrityError | ContextError


class RunUploader:
    """
    Copies one run to ``<url>/<framework>/<run_id>/`` on any fsspec store.

    While the run is open, :meth:`ship_logs` (called every interval by the
    thread :meth:`start` begins) sends only the bytes each step log gained
    since the last pass, as whole lines, gzip-compressed, to
    ``live/logs/<file>/<from>-<to>.gz`` (byte offsets in the log),
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
        self._noise = _quiet_libraries()
        with self._noise.uploading():
            self.store = Store(
                self.url,
                retries=retries,
                backoff=backoff,
                storage_options=storage_options,
                stats=self.stats,
            )
        self.interval_s: float | None = None
        self.last_error: UploadError | None = None
        self._offsets: dict[str, int] = {}
        self._heads: dict[str, bytes] = {}
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
        with self._lock, self._noise.uploading():
            self.stats.passes += 1
            sent = 0
            for rel, path in _growing_logs(self.logs_dir):
                sent += self._ship_growth(rel, path)
            return sent + self._ship_run_json()

    def _ship_growth(self, rel: str, path: Path) -> int:
        try:
            info = path.stat()
        except FileNotFoundError:  # removed since it was listed
            return 0
        except OSError as exc:
            raise UploadError(
                f"cannot read {str(path)!r} to upload it: {describe_error(exc)}"
            ) from exc
        size = info.st_size
        offset = self._offsets.get(rel, 0)
        remote_dir = f"{LIVE_DIR}/logs/{rel}"
        head = self._heads.get(rel, b"")
        if size < offset or (head and _read_range(path, 0, len(head)) != head):
            # runlog's logs only grow, so a shorter file, or one that starts
            # differently (the first record's timestamp), was re-created under
            # the same name (the writer does so when one is deleted while open;
            # inode numbers are reused at once, so they cannot tell)
            lifecycle_logger().warning(
                "upload_log_replaced",
                file=rel,
                shipped_bytes=offset,
                size=size,
                url=self.store.display(remote_dir),
            )
            self.store.remove_tree(remote_dir)
            offset = self._offsets[rel] = 0
            head = b""
        sent = 0
        while offset < size:
            data = _read_range(path, offset, min(size - offset, _MAX_SEGMENT))
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                if len(data) < _MAX_SEGMENT:
                    break  # the line being written goes next pass, whole
                cut = len(data)  # one line longer than a segment: split it
            end = offset + cut
            name, packed = encode_segment(offset, data[:cut])
            self.store.put_bytes(f"{remote_dir}/{name}", packed)
            if len(head) < _HEAD_BYTES and offset == 0:
                head = self._heads[rel] = data[:_HEAD_BYTES]
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
                f"cannot read run.json of {str(self.run_dir)!r}: {describe_error(exc)}"
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
        with self._lock, self._noise.uploading():
            plan = self._final_plan(use_archive)
            urls: list[str] = []
            for local, rel, expected in plan:
                self.store.put_file(local, rel, expected)
                urls.append(display_url(f"{self.url}/{rel}"))
            self._remove_live()
            return urls

    def _final_plan(self, use_archive: bool) -> list[tuple[Path, str, str | None]]:
        plan: list[tuple[Path, str, str | None]] = []
        archive = _paths.find_archive(self.run_dir) if use_archive else None
        run_json = _paths.run_json(self.logs_dir)
        run_json_rel = f"{_paths.LOGS_DIR}/{_paths.RUN_JSON}"
        if archive is not None:
            sidecar = _paths.sidecar_file(archive)
            plan.append((archive, archive.name, read_sidecar(archive)))
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
        self._heads.clear()

    def finish(self, run: OpenRun) -> None:
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
            f"cannot read {str(path)!r} to upload it: {describe_error(exc)}"
        ) from exc


def check_interval(interval_s: object) -> float:
    """
    *interval_s* as a finite float > 0.

    Raises:
        ConfigurationError: Naming the bad value.
    """
    return _config.check_interval("interval_s", interval_s)


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
    run: OpenRun,
    url: str,
    *,
    interval_s: float | None = None,
    retries: int = DEFAULT_RETRIES,
    backoff: float = DEFAULT_BACKOFF_S,
    storage_options: Mapping[str, Any] | None = None,
) -> RunUploader:
    """
    Upload *run* to *url* while it runs and when it finishes.

    Ships the logs right away (so a wrong bucket or missing credentials
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
