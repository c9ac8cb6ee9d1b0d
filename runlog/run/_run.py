"""Run: one open run's run.json, heartbeat, lifecycle records and finish()."""

from __future__ import annotations

import atexit
import contextvars
import os
import platform
import socket
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import orjson

from .. import _paths
from .._files import atomic_write
from .._records import Redactor, exception_text, safe_text
from .._status import (
    FINISHED_STATUSES,
    boot_id,
    format_time,
    process_start_ticks,
)
from .._version import __version__
from ..archive import ArchiveInfo
from ..capture import CaptureSession
from ..context import LogContext
from ..errors import ConfigurationError, ContextError, LogWriteError
from ..handler import get_handler
from ..loggers import lifecycle_logger
from ..process._signals import TermHandler
from ._finalize import finalize
from ._heartbeat import Heartbeat

_LEVELS: Final = {"success": 20, "interrupted": 30, "failed": 40}

FinishCallback = Callable[["Run"], object]


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
        self._heartbeat: Heartbeat | None = None
        self._callbacks: list[FinishCallback] = []
        self._capture: CaptureSession | None = None

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
        if final not in FINISHED_STATUSES:
            raise ConfigurationError(
                f"status {status!r}: use one of {list(FINISHED_STATUSES)}"
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
            capture, self._capture = self._capture, None
            if capture is not None:
                # pending lines land before run_end, descriptors are back
                # before the files close (see #15)
                capture.stop()
            context.clear_step_context()
            log = lifecycle_logger()
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
                forget(self)

    def _archive_and_summarize(self) -> Path:
        self.summary_path = _paths.summary_file(self.run_dir)
        try:
            self.archive_info, self.summary_path = finalize(
                self.run_dir, self.archive_format if self.archive else None
            )
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
                lifecycle_logger().info("heartbeat_recovered", failed_beats=streak)
            return
        self.heartbeat_failures += 1
        self._failure_streak += 1
        message = f"runlog heartbeat of run {self.run_id!r} failed: {failure}"
        try:
            lifecycle_logger().error(
                "heartbeat_failed",
                path=failure.filename,
                error=str(failure),
                failed_beats=self._failure_streak,
            )
        except LogWriteError as exc:
            message += f" (and the error record failed too: {exc})"
        warnings.warn(message, RuntimeWarning, stacklevel=1)

    def _start_heartbeat(self) -> None:
        self._heartbeat = Heartbeat(
            self._beat, self.heartbeat_interval_s, f"runlog-heartbeat-{self.run_id}"
        )
        self._heartbeat.start()


def _redactor() -> Redactor:
    return get_handler().redactor


# the open-run registry: finished at interpreter exit if left open

NOT_FINISHED: Final = "not finished"

_OPEN_RUNS: list[Run] = []
_OPEN_LOCK = threading.Lock()


def remember(run: Run) -> None:
    with _OPEN_LOCK:
        _OPEN_RUNS.append(run)


def forget(run: Run) -> None:
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
