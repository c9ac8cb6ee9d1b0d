"""start_run and Run: run.json, the heartbeat thread, signals, atexit, finish()."""

from __future__ import annotations

import atexit
import contextvars
import importlib
import math
import os
import platform
import secrets
import socket
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

import orjson

from . import _env, _paths
from ._files import as_write_error, atomic_write
from ._liveness import (
    HEARTBEAT_MISSES,
    STATUSES,
    boot_id,
    effective_status,
    format_time,
    is_pid_alive,
    parse_time,
    process_start_ticks,
    read_run_json,
    status_reason,
)
from ._records import REDACTED, Redactor, dumps_line, exception_text, safe_text
from ._signals import TermHandler, block_termination_signals
from ._version import __version__
from .context import ORCHESTRATOR, LogContext
from .errors import ConfigurationError, ContextError, LogWriteError

if TYPE_CHECKING:
    from .archive import ArchiveInfo

FINAL_STATUSES: Final = ("success", "failed", "interrupted")
ARCHIVE_FORMATS: Final = ("gz", "zst")
NOT_FINISHED: Final = "not finished"
_RUN_ID_TRIES: Final = 100
_JOIN_TIMEOUT_S: Final = 5.0
_LEVELS: Final = {"success": 20, "interrupted": 30, "failed": 40}

FinishCallback = Callable[["Run"], object]

__all__ = [
    "HEARTBEAT_MISSES",
    "STATUSES",
    "Run",
    "boot_id",
    "effective_status",
    "finish_open_runs_at_exit",
    "format_time",
    "is_pid_alive",
    "new_run_id",
    "open_runs",
    "parse_time",
    "process_start_ticks",
    "read_run_json",
    "redact_argv",
    "start_run",
    "status_reason",
]


def new_run_id(now: datetime | None = None) -> str:
    """A sortable run id: UTC time and a random suffix, ``20251020T142345Z-3f9a1c``."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{moment:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def redact_argv(argv: Iterable[str], redactor: Redactor) -> list[str]:
    """
    *argv* with credential-looking option values replaced by ``***``.

    ``--api-key=VALUE`` and ``--api-key VALUE`` (any option whose name the
    redactor treats as a secret key) lose their value; remembered secrets are
    scrubbed from every argument.
    """
    out: list[str] = []
    hide_next = False
    for raw in argv:
        arg = safe_text(redactor.scrub_text(str(raw)))
        if hide_next:
            hide_next = False
            if not arg.startswith("-"):
                out.append(REDACTED)
                continue
        if arg.startswith("-"):
            name, equals, _ = arg.lstrip("-").partition("=")
            if name and redactor.is_secret_key(name):
                if equals:
                    arg = f"{arg.partition('=')[0]}={REDACTED}"
                else:
                    hide_next = True
        out.append(arg)
    return out


def _json_safe(value: Mapping[str, Any]) -> dict[str, Any]:
    # One pass through the record serializer gives plain JSON types (its
    # fallbacks for sets, models, bytes, cycles...), so run.json never fails.
    data = orjson.loads(dumps_line(dict(value)))
    assert isinstance(data, dict)
    return data


def _attempts_so_far(logs_dir: Path) -> dict[int, int]:
    """The highest ``attempt`` of every step's ``step_start`` already on disk."""
    counts: dict[int, int] = {}
    paths = [logs_dir / f"{ORCHESTRATOR}.log"]
    paths += sorted(logs_dir.glob(f"step_*/{ORCHESTRATOR}.log"))
    for path in paths:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise as_write_error(exc, path) from exc
        for line in data.splitlines():
            if b'"step_start"' not in line:
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue  # the torn last line of a killed run: that attempt is lost
            step, attempt = record.get("step"), record.get("attempt")
            if (
                record.get("event") == "step_start"
                and type(step) is int
                and type(attempt) is int
            ):
                counts[step] = max(counts.get(step, 0), attempt)
    return counts


class _Heartbeat:
    """A daemon thread calling *beat* every *interval* seconds until stopped."""

    def __init__(self, beat: Callable[[], None], interval: float, name: str) -> None:
        self._beat = beat
        self._interval = interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        block_termination_signals()
        while not self._stopped.wait(self._interval):
            self._beat()

    def stop(self) -> None:
        self._stopped.set()
        thread = self._thread
        if thread.is_alive() and thread is not threading.current_thread():
            thread.join(_JOIN_TIMEOUT_S)


class Run:
    """
    One run: its directories, ``logs/run.json``, heartbeat and lifecycle records.

    Made by :func:`start_run`, not directly. A context manager: leaving the
    ``with`` block finishes the run as ``success``, ``failed`` (any exception,
    recorded and re-raised) or ``interrupted`` (KeyboardInterrupt, or SIGTERM,
    which start_run turns into KeyboardInterrupt in the main thread).

    Thread-safe. Only the process that started the run writes run.json,
    ``run_start``/``run_end`` and the heartbeat; child processes (forked ones
    hold a copy of this object) log into its files but never finish it.

    Attributes:
        run_id: The run id.
        framework: The framework name.
        run_dir: ``runs_dir/<framework>/<run_id>`` (absolute).
        logs_dir: ``run_dir/logs``.
        metadata: The JSON-safe, redacted metadata written to run.json.
        archive: Whether :meth:`finish` archives ``logs/``.
        archive_format: ``"gz"`` or ``"zst"``.
        upload_to: Where a remote uploader copies the run, or None.
        heartbeat_interval_s: Seconds between heartbeats.
        pid: The process that owns the run.
        summary_path: ``logs_summary.txt`` once :meth:`finish` wrote it.
        archive_info: The archive's ArchiveInfo once :meth:`finish` made it.
        heartbeat_failures: How many heartbeats could not be written.
    """

    def __init__(
        self,
        *,
        run_id: str,
        framework: str,
        run_dir: Path,
        metadata: dict[str, Any],
        archive: bool,
        archive_format: str,
        heartbeat_interval_s: float,
        upload_to: str | None,
        argv: list[str],
        started_at: datetime,
        resumes: int = 0,
        previous_duration_s: float = 0.0,
    ) -> None:
        self.run_id = run_id
        self.framework = framework
        self.run_dir = run_dir
        self.logs_dir = _paths.logs_dir(run_dir)
        self.metadata = metadata
        self.archive = archive
        self.archive_format = archive_format
        self.heartbeat_interval_s = heartbeat_interval_s
        self.upload_to = upload_to
        self.pid = os.getpid()
        self._pid_started = process_start_ticks(self.pid)
        self.summary_path: Path | None = None
        self.archive_info: ArchiveInfo | None = None
        self.heartbeat_failures = 0
        self._argv = argv
        self._started_at = started_at
        self._started_mono = time.monotonic()
        self._resumes = resumes
        self._previous_duration_s = previous_duration_s
        # a resumed run keeps its first started_at, but its pulse starts now
        self._heartbeat_at = datetime.now(UTC)
        self._cwd = safe_text(os.getcwd())
        self._status = "running"
        self._reason: str | None = None
        self._ended_at: datetime | None = None
        self._duration_s: float | None = None
        self._error: BaseException | None = None
        self._term = TermHandler(lambda: not self.is_finished)
        self._json_lock = threading.Lock()
        self._finish_lock = threading.RLock()
        self._failure_streak = 0
        self._heartbeat: _Heartbeat | None = None
        self._callbacks: list[FinishCallback] = []

    def __repr__(self) -> str:
        return (
            f"Run(run_id={self.run_id!r}, framework={self.framework!r}, "
            f"status={self._status!r})"
        )

    @property
    def status(self) -> str:
        """``running`` until finished, then ``success``/``failed``/``interrupted``."""
        return self._status

    @property
    def is_finished(self) -> bool:
        """True once :meth:`finish` has recorded the final status."""
        return self._status != "running"

    def step(
        self, step_num: int, name: str | None = None
    ) -> AbstractContextManager[None]:
        """
        Run a block as step *step_num*, as :meth:`LogContext.step_scope`.

        Logs ``step_start``/``step_end`` (status, duration, attempt; the error
        on failure) and re-raises any exception. The step is local to the
        calling thread or asyncio task; entering a number again is a retry.

        Raises:
            ContextError: If the run is finished or not the current run
                context, or *step_num* is not an int >= 0 (when entered).
        """
        if self.is_finished:
            raise ContextError(
                f"run {self.run_id!r} is finished ({self._status}); "
                "start a new run for more steps"
            )
        context = LogContext.get_instance()
        if context.logs_dir != self.logs_dir:
            raise ContextError(
                f"run {self.run_id!r} is not the current run context "
                f"(the current one is {context.run_id!r})"
            )
        return context.step_scope(step_num, name)

    def add_finish_callback(self, callback: FinishCallback) -> None:
        """
        Call *callback(run)* at the end of :meth:`finish`, after the summary.

        Callbacks run in the order added, also when archiving failed (then
        ``archive_info`` is None); an exception from one propagates from
        :meth:`finish` and skips the rest. Used by ``runlog.remote`` to upload.
        """
        self._callbacks.append(callback)

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if os.getpid() != self.pid or self.is_finished:
            return  # a forked child leaving the block, or finished inside it
        if exc is None or (isinstance(exc, SystemExit) and exc.code in (None, 0)):
            self.finish("success")
        elif isinstance(exc, KeyboardInterrupt):
            self.finish("interrupted", error=exc)
        else:
            self.finish("failed", error=exc)

    def finish(
        self,
        status: str | None = None,
        *,
        reason: str | None = None,
        error: BaseException | None = None,
    ) -> Path:
        """
        End the run: ``run_end``, final run.json, close files, archive, summary.

        In this order (nothing is written under ``logs/`` after the archive):
        logs ``run_end`` (status, duration, reason, the error and its
        traceback), writes the final run.json, stops the heartbeat, clears the
        run context (closing every file), archives ``logs/`` when the run was
        started with ``archive=True``, writes ``logs_summary.txt`` (also when
        archiving failed, then re-raises), then calls the finish callbacks.
        Calling it again returns the summary path and changes nothing.

        Args:
            status: ``"success"`` (the default), ``"failed"`` or ``"interrupted"``.
            reason: A short text stored as run.json's ``reason``.
            error: The exception that ended the run, recorded with its traceback.

        Returns:
            The path of ``logs_summary.txt``.

        Raises:
            ConfigurationError: If *status* is not one of the three.
            ContextError: If called in a process other than the one that
                started the run, or another run context is current.
            LogWriteError: If ``run_end`` or run.json cannot be written (the
                run is still closed as far as possible).
        """
        final = "success" if status is None else status
        if final not in FINAL_STATUSES:
            raise ConfigurationError(
                f"status {status!r}: use one of {list(FINAL_STATUSES)}"
            )
        if os.getpid() != self.pid:
            raise ContextError(
                f"run {self.run_id!r} belongs to process {self.pid}; "
                f"finish it there, not in process {os.getpid()}"
            )
        with self._finish_lock:
            if self.is_finished:
                if status is not None and status != self._status:
                    warnings.warn(
                        f"run {self.run_id!r} is already finished as "
                        f"{self._status!r}; ignoring status {status!r}",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                return _paths.summary_file(self.run_dir)
            self._close(final, reason, error)
            return self._archive_and_summarize()

    def _close(
        self, final: str, reason: str | None, error: BaseException | None
    ) -> None:
        self._term.restore()
        context = LogContext.get_instance()
        if context.logs_dir != self.logs_dir:
            if context.logs_dir is not None:
                raise ContextError(
                    f"cannot finish run {self.run_id!r}: run {context.run_id!r} "
                    "is the current run context"
                )
            # the context was cleared by hand: route run_end to this run again
            context.set_run_context(self.run_id, self.framework, self.logs_dir)
        received = self._term.received
        if reason is None and received is not None:
            reason = f"received {received}"
        duration = round(
            self._previous_duration_s + time.monotonic() - self._started_mono, 6
        )
        fields: dict[str, Any] = {"status": final, "duration_s": duration}
        if reason is not None:
            fields["reason"] = reason
        if received is not None:
            fields["signal"] = received
        if error is not None:
            fields["error_type"] = type(error).__name__
            fields["error"] = exception_text(error)
            fields["traceback"] = "".join(traceback.format_exception(error))
        try:
            context.clear_step_context()
            log = _lifecycle_logger()
            # an empty context: run_end never lands in a thread's step scope
            contextvars.Context().run(log.log, _LEVELS[final], "run_end", **fields)
        finally:
            try:
                with self._json_lock:
                    self._status = final
                    self._reason = reason
                    self._error = error
                    self._ended_at = self._heartbeat_at = datetime.now(UTC)
                    self._duration_s = duration
                    self._write_json()
            finally:
                if self._heartbeat is not None:
                    self._heartbeat.stop()
                context.clear_run_context()
                _forget(self)

    def _archive_and_summarize(self) -> Path:
        from .summary import summarize_run

        try:
            if self.archive:
                from .archive import Archiver

                self.archive_info = Archiver(self.run_dir).create_archive(
                    format=self.archive_format
                )
        finally:
            try:
                self.summary_path = summarize_run(self.run_dir)
            finally:
                for callback in list(self._callbacks):
                    callback(self)
        return self.summary_path

    # run.json and the heartbeat

    def info(self) -> dict[str, Any]:
        """What run.json holds now, as a dict (a snapshot; thread-safe)."""
        with self._json_lock:
            return self._info()

    def _info(self) -> dict[str, Any]:
        error = self._error
        return {
            "run_id": self.run_id,
            "framework": self.framework,
            "status": self._status,
            "reason": None
            if self._reason is None
            else _redactor().scrub_text(self._reason),
            "started_at": format_time(self._started_at),
            "ended_at": None if self._ended_at is None else format_time(self._ended_at),
            "duration_s": self._duration_s,
            "heartbeat_at": format_time(self._heartbeat_at),
            "heartbeat_interval_s": self.heartbeat_interval_s,
            "pid": self.pid,
            "pid_started": self._pid_started,
            "host": socket.gethostname(),
            "boot_id": boot_id(),
            "python": f"{platform.python_implementation()} {platform.python_version()}",
            "runlog_version": __version__,
            "argv": self._argv,
            "cwd": self._cwd,
            "resumes": self._resumes,
            "error_type": None if error is None else type(error).__name__,
            # remembered credentials never reach run.json either (see #7)
            "error": None
            if error is None
            else safe_text(_redactor().scrub_text(exception_text(error))),
            "signal": self._term.received,
            "metadata": self.metadata,
        }

    def _write_json(self) -> None:
        data = orjson.dumps(
            self._info(), option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE
        )
        atomic_write(_paths.run_json(self.logs_dir), data)

    def _beat(self) -> None:
        failure: LogWriteError | None = None
        with self._json_lock:
            if self.is_finished:
                return
            self._heartbeat_at = datetime.now(UTC)
            try:
                self._write_json()
            except LogWriteError as exc:
                failure = exc
        if failure is None:
            if self._failure_streak:
                streak, self._failure_streak = self._failure_streak, 0
                _lifecycle_logger().info("heartbeat_recovered", failed_beats=streak)
            return
        self.heartbeat_failures += 1
        self._failure_streak += 1
        message = f"runlog heartbeat of run {self.run_id!r} failed: {failure}"
        try:
            _lifecycle_logger().error(
                "heartbeat_failed",
                path=failure.filename,
                error=str(failure),
                failed_beats=self._failure_streak,
            )
        except LogWriteError as exc:
            message += f" (and the error record failed too: {exc})"
        warnings.warn(message, RuntimeWarning, stacklevel=1)

    def _start_heartbeat(self) -> None:
        self._heartbeat = _Heartbeat(
            self._beat, self.heartbeat_interval_s, f"runlog-heartbeat-{self.run_id}"
        )
        self._heartbeat.start()


def _lifecycle_logger() -> Any:
    from .loggers import lifecycle_logger

    return lifecycle_logger()


_OPEN_RUNS: list[Run] = []
_OPEN_LOCK = threading.Lock()


def _remember(run: Run) -> None:
    with _OPEN_LOCK:
        _OPEN_RUNS.append(run)


def _forget(run: Run) -> None:
    with _OPEN_LOCK:
        if run in _OPEN_RUNS:
            _OPEN_RUNS.remove(run)


def open_runs() -> list[Run]:
    """The runs this process started and has not finished, oldest first."""
    with _OPEN_LOCK:
        return [run for run in _OPEN_RUNS if run.pid == os.getpid()]


def _reset_lock_after_fork() -> None:
    global _OPEN_LOCK
    _OPEN_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_reset_lock_after_fork)


def finish_open_runs_at_exit() -> None:
    """
    atexit hook: finish every run left open as ``failed`` (``not finished``).

    A run that received SIGTERM is finished as ``interrupted`` instead. Each
    one also gets a ResourceWarning naming it (shown with ``-W default``).
    """
    for run in open_runs():
        received = run._term.received
        if received is not None:
            status, reason = "interrupted", f"received {received}"
        else:
            status, reason = "failed", NOT_FINISHED
        try:
            run.finish(status, reason=reason)
        finally:
            warnings.warn(
                f"run {run.run_id!r} in {str(run.run_dir)!r} was not finished; "
                f"runlog finished it at exit as {status!r}",
                ResourceWarning,
                stacklevel=1,
            )


atexit.register(finish_open_runs_at_exit)


def _check_interval(value: object) -> float:
    if (
        not isinstance(value, (int, float))
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigurationError(
            f"heartbeat_interval_s {value!r}: use a finite number > 0"
        )
    return float(value)


def _claim_logs_dir(
    runs_dir: Path, framework: str, run_id: str | None, resume: bool
) -> tuple[str, Path, bool]:
    """Create the run's ``logs/`` (or find it on resume): run_id, run_dir, existed."""
    candidates: Iterable[str] = (
        [run_id] if run_id is not None else (new_run_id() for _ in range(_RUN_ID_TRIES))
    )
    for candidate in candidates:
        run_dir = _paths.run_dir(runs_dir, framework, candidate)
        logs = _paths.logs_dir(run_dir)
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            logs.mkdir()
        except FileExistsError:
            if run_id is None:
                continue  # a generated id taken in the same second: draw again
            if not resume:
                raise ContextError(
                    f"run {run_id!r} already exists in {str(run_dir)!r}: "
                    "use another run_id, or resume=True to continue it"
                ) from None
            if not logs.is_dir():
                raise ContextError(
                    f"run {run_id!r}: {str(logs)!r} exists and is not a directory"
                ) from None
            return candidate, run_dir, True
        except OSError as exc:
            raise as_write_error(exc, logs) from exc
        return candidate, run_dir, False
    raise ContextError(
        f"no free run id in {str(runs_dir / framework)!r} after {_RUN_ID_TRIES} tries"
    )


def start_run(
    framework: str,
    run_id: str | None = None,
    runs_dir: str | os.PathLike[str] = "runs",
    metadata: Mapping[str, Any] | None = None,
    *,
    archive: bool = True,
    archive_format: str = "gz",
    resume: bool = False,
    heartbeat_interval_s: float | None = None,
    upload_to: str | None = None,
) -> Run:
    """
    Start a run: ``runs_dir/<framework>/<run_id>/logs/``, run.json, ``run_start``.

    Creates the directories, writes ``logs/run.json`` (status ``running``),
    sets the run context (so every logger, thread and child process writes
    into the run), logs ``run_start`` and starts the heartbeat thread. When
    called in the main thread of a program that has no SIGTERM handler,
    SIGTERM raises KeyboardInterrupt until the run is finished, so steps and
    the run end ``interrupted``. A run left open at interpreter exit is
    finished by an atexit hook as ``failed`` with reason ``not finished``.

    Args:
        framework: Safe name of the framework (one path segment).
        run_id: Safe name of the run; None generates a sortable unique id
            (``20251020T142345Z-3f9a1c``) that never collides with an
            existing run directory.
        runs_dir: The directory holding ``<framework>/<run_id>/``.
        metadata: JSON-able facts about the run (``model``, ``dataset``...),
            written to run.json with credential-looking keys redacted.
        archive: Whether :meth:`Run.finish` archives ``logs/``.
        archive_format: ``"gz"`` (``run.tar.gz``) or ``"zst"`` (``run.tar.zst``).
        resume: Continue an existing run directory that is not running any
            more (crashed, failed, interrupted): records append to its files,
            step attempts continue counting, ``started_at`` is kept and
            ``resumes`` counts up. Without it an existing run is refused.
        heartbeat_interval_s: Seconds between heartbeats; None uses
            ``configure(heartbeat_interval_s=...)`` (default 30).
        upload_to: A URL (``s3://bucket/prefix``) the run is copied to by
            ``runlog.remote.attach_uploader``; needs the ``remote`` extra
            (``pip install 'runlog[remote]'``).

    Returns:
        The open :class:`Run`.

    Raises:
        ContextError: For a bad framework or run_id, an existing run without
            *resume*, a run still running, or another run still open here.
        ConfigurationError: For a bad archive_format, heartbeat interval,
            metadata or upload_to, or when the ``remote`` extra is missing.
        LogWriteError: If the directories or run.json cannot be written.
    """
    from .loggers import current_settings

    _paths.check_name("framework", framework)
    if run_id is not None:
        _paths.check_name("run_id", run_id)
    if archive_format not in ARCHIVE_FORMATS:
        raise ConfigurationError(
            f"archive_format {archive_format!r}: use one of {list(ARCHIVE_FORMATS)}"
        )
    interval = _check_interval(
        current_settings().heartbeat_interval_s
        if heartbeat_interval_s is None
        else heartbeat_interval_s
    )
    if metadata is not None and not isinstance(metadata, Mapping):
        raise ConfigurationError(f"metadata {metadata!r}: use a mapping (a dict)")
    attach_uploader = _uploader(upload_to)
    context = LogContext.get_instance()
    for other in open_runs():
        if context.logs_dir == other.logs_dir:
            raise ContextError(
                f"run {other.run_id!r} is still open: finish it before "
                "starting another run in this process"
            )
    base = Path(runs_dir).absolute()
    redactor = _redactor()
    clean_metadata = redactor.redact_value(_json_safe(metadata or {}))
    chosen_id, run_dir, existed = _claim_logs_dir(base, framework, run_id, resume)
    logs = _paths.logs_dir(run_dir)
    started_at = datetime.now(UTC)
    resumes, previous_duration = 0, 0.0
    previous_status: str | None = None
    if existed:
        old = read_run_json(logs) or {}
        previous_status = status_reason(old)[0] if old else None
        if previous_status == "running":
            raise ContextError(
                f"run {chosen_id!r} is still running (pid {old.get('pid')!r} "
                f"on {old.get('host')!r}); it can be resumed once it has ended"
            )
        started_at = parse_time(old.get("started_at")) or started_at
        old_resumes, old_duration = old.get("resumes"), old.get("duration_s")
        resumes = (old_resumes if type(old_resumes) is int else 0) + 1
        if isinstance(old_duration, (int, float)) and not isinstance(
            old_duration, bool
        ):
            previous_duration = float(old_duration)
    run = Run(
        run_id=chosen_id,
        framework=framework,
        run_dir=run_dir,
        metadata=clean_metadata,
        archive=bool(archive),
        archive_format=archive_format,
        heartbeat_interval_s=interval,
        upload_to=upload_to,
        argv=redact_argv(sys.argv, redactor),
        started_at=started_at,
        resumes=resumes,
        previous_duration_s=previous_duration,
    )
    context.set_run_context(chosen_id, framework, logs)
    # this process owns the run now, even if it adopted another from its parent
    os.environ[_env.OWNER_PID] = str(os.getpid())
    if existed:
        context.seed_attempts(_attempts_so_far(logs))
    fields: dict[str, Any] = {
        "pid": run.pid,
        "host": socket.gethostname(),
        "metadata": clean_metadata,
    }
    if existed:
        fields["resumes"] = resumes
        fields["previous_status"] = previous_status
    _remember(run)
    try:
        with run._json_lock:
            run._write_json()
        contextvars.Context().run(_lifecycle_logger().info, "run_start", **fields)
    except BaseException:
        # nothing to finish: leave the directory as it is and free the context
        _forget(run)
        context.clear_run_context()
        raise
    run._start_heartbeat()
    run._term.install()
    if attach_uploader is not None and upload_to is not None:
        try:
            attach_uploader(run, upload_to)
        except BaseException as exc:
            run.finish("failed", reason="the uploader could not be attached", error=exc)
            raise
    return run


def _redactor() -> Redactor:
    from .handler import get_handler

    return get_handler().redactor


def _uploader(upload_to: object) -> Callable[[Run, str], object] | None:
    if upload_to is None:
        return None
    if not isinstance(upload_to, str) or not upload_to:
        raise ConfigurationError(f"upload_to {upload_to!r}: use a URL string")
    try:
        remote = importlib.import_module(".remote", __package__)
    except ImportError as exc:
        raise ConfigurationError(
            f"upload_to {upload_to!r} needs the remote extra: "
            f"pip install 'runlog[remote]' ({exc})"
        ) from exc
    remote.check_url(upload_to)  # fsspec and the URL's package, before any mkdir
    attach: Callable[[Run, str], object] = remote.attach_uploader
    return attach
