"""LogContext: the process-wide run and step state, and the step scope."""

from __future__ import annotations

import contextvars
import os
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from . import _paths
from ._config import current_settings
from ._files import as_write_error
from ._records import exception_text
from .errors import ContextError

__all__ = ["LOCAL_STEP", "LogContext", "RunState", "current_step"]


@dataclass(frozen=True, slots=True)
class RunState:
    """A frozen snapshot of the run context; a new one replaces it on every change."""

    run_id: str | None = None
    framework: str | None = None
    logs_dir: Path | None = None
    step: int | None = None
    generation: int = 0

    @property
    def is_active(self) -> bool:
        """True while a run context is set."""
        return self.logs_dir is not None


# The step set by step_scope(): (run generation, step), local to a thread or
# asyncio task. It only counts while the run it was set for is current.
LOCAL_STEP: contextvars.ContextVar[tuple[int, int | None] | None] = (
    contextvars.ContextVar("runlog_step", default=None)
)

Listener = Callable[[RunState, RunState], None]
StepListener = Callable[[int | None], None]
LifecycleWriter = Callable[[int, str, dict[str, Any]], None]
FirstUseHook = Callable[["LogContext"], object]


@dataclass
class _StepAttempts:
    generation: int = -1
    counts: dict[int, int] = field(default_factory=dict)


class LogContext:
    """
    The process-wide run/step context every record is routed by. Thread-safe.

    There is one instance per process (``LogContext.get_instance()``; calling
    ``LogContext()`` returns it too). One lock guards changes; readers get the
    current frozen :class:`RunState`, so nobody sees a new step with an old run.
    The step set by :meth:`step_scope` is local to the thread or asyncio task;
    :meth:`set_step_context` sets the default for everyone else.
    """

    _instance: ClassVar[LogContext | None] = None
    _instance_lock: ClassVar[threading.Lock] = threading.Lock()

    state: RunState
    _lock: threading.RLock
    _listeners: list[Listener]
    _step_listeners: list[StepListener]
    _first_use_hooks: list[FirstUseHook]
    _lifecycle: LifecycleWriter | None
    _attempts: _StepAttempts

    def __new__(cls) -> LogContext:
        with cls._instance_lock:
            if cls._instance is None:
                instance = super().__new__(cls)
                instance._lock = threading.RLock()
                instance._listeners = []
                instance._step_listeners = []
                instance._first_use_hooks = []
                instance._lifecycle = None
                instance._attempts = _StepAttempts()
                cls._instance = instance
            return cls._instance

    def __getattr__(self, name: str) -> Any:
        # ``state`` is made on first use, not at import: that is when a run
        # named by the environment is joined, and a bad one raises (see #11)
        if name != "state":
            raise AttributeError(name)
        with self._lock:
            if "state" not in self.__dict__:
                self.state = RunState()
                for hook in list(self._first_use_hooks):
                    hook(self)
        return self.state

    def add_first_use_hook(self, hook: FirstUseHook) -> None:
        """Call *hook(context)* once, when the context is first used."""
        with self._lock:
            self._first_use_hooks.append(hook)

    def add_step_listener(self, listener: StepListener) -> None:
        """Call *listener(step)* when a step scope is entered or left (its new step)."""
        with self._lock:
            self._step_listeners.append(listener)

    def set_lifecycle_writer(self, writer: LifecycleWriter) -> None:
        """Write ``step_start``/``step_end`` through *writer(level, event, fields)*."""
        self._lifecycle = writer

    @classmethod
    def get_instance(cls) -> LogContext:
        """The process-wide instance (always the same object)."""
        return cls()

    def add_listener(self, listener: Listener) -> None:
        """Call *listener(old, new)* after every change; now too, if a run is set."""
        with self._lock:
            self._listeners.append(listener)
            state = self.__dict__.get("state")
            if state is not None and state.is_active:
                listener(RunState(), state)

    def _replace(self, **changes: Any) -> RunState:
        old = self.state
        new = RunState(
            run_id=changes.get("run_id", old.run_id),
            framework=changes.get("framework", old.framework),
            logs_dir=changes.get("logs_dir", old.logs_dir),
            step=changes.get("step", old.step),
            generation=old.generation + (1 if "logs_dir" in changes else 0),
        )
        self.state = new
        for listener in self._listeners:
            listener(old, new)
        return new

    def set_run_context(
        self, run_id: str, framework: str, logs_dir: str | os.PathLike[str]
    ) -> None:
        """
        Route records to the run *run_id* of *framework*, under *logs_dir*.

        Creates *logs_dir*, installs the DynamicFileHandler on the root logger
        (until the run context is cleared, see #14) and clears the current
        step. Writes no record.

        Raises:
            ContextError: If *run_id* or *framework* is not a safe path segment.
            LogWriteError: If *logs_dir* cannot be created.
        """
        _paths.check_name("run_id", run_id)
        _paths.check_name("framework", framework)
        path = Path(logs_dir).absolute()
        try:
            # followed, links and all: the caller named it (runs/ may be a
            # link to a bigger disk); nothing below it is (see #12)
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise as_write_error(exc, path) from exc
        with self._lock:
            self._replace(run_id=run_id, framework=framework, logs_dir=path, step=None)

    def set_step_context(self, step_num: int) -> None:
        """
        Make *step_num* the process-wide current step. Thread-safe.

        Args:
            step_num: Step number >= 0; records go to ``step_{step_num:03d}/``.

        Raises:
            ContextError: If *step_num* is a bool, not an int, or negative, or
                no run context is set.
            LogWriteError: If ``step_NNN/`` cannot be created. A link or a
                file already at its name is not followed: the first record
                written there reports it.
        """
        _paths.check_step(step_num)
        with self._lock:
            state = self._require_run()
            self._make_step_dir(state, step_num)
            self._replace(step=step_num)

    def clear_step_context(self) -> None:
        """Records outside a step scope go to ``run.log`` again. Thread-safe."""
        with self._lock:
            if self.state.step is not None:
                self._replace(step=None)

    def clear_run_context(self) -> None:
        """
        Close every file of the run; later records go to the console only.

        The root logger gets back the level and handlers it had before the run
        context was set (see #14).
        """
        with self._lock:
            if self.state.is_active or self.state.step is not None:
                self._replace(run_id=None, framework=None, logs_dir=None, step=None)

    @property
    def run_id(self) -> str | None:
        """The current run id, or None."""
        return self.state.run_id

    @property
    def framework(self) -> str | None:
        """The current framework, or None."""
        return self.state.framework

    @property
    def logs_dir(self) -> Path | None:
        """The current run's ``logs/`` directory, or None."""
        return self.state.logs_dir

    @property
    def step(self) -> int | None:
        """The step records from this thread/task go to now, or None."""
        return current_step(self.state)

    def log_path(self, component: str) -> Path:
        """
        The file the next record of *component* from this thread/task goes to.

        Raises:
            ContextError: If *component* is not a safe name or no run is set.
        """
        _paths.check_name("component", component)
        state = self._require_run()
        assert state.logs_dir is not None
        return _paths.route(
            state.logs_dir,
            component,
            current_step(state),
            current_settings().run_level_components,
        )

    def _require_run(self) -> RunState:
        state = self.state
        if not state.is_active:
            raise ContextError(
                "no run context: call set_run_context() or start_run() first"
            )
        return state

    def _make_step_dir(self, state: RunState, step_num: int) -> None:
        assert state.logs_dir is not None
        step_dir = state.logs_dir / _paths.step_dir_name(step_num)
        try:
            # mkdir never follows a link at its last name. Something already
            # there that is not a directory (a link, a file) is refused by the
            # first record written there, at the logging call, like any write
            # failure, so on_write_error applies (see #12).
            with suppress(FileExistsError):
                os.mkdir(step_dir)
        except OSError as exc:
            raise as_write_error(exc, step_dir) from exc

    def next_attempt(self, step_num: int) -> int:
        """Count one more attempt of *step_num* in the current run and return it."""
        with self._lock:
            generation = self.state.generation
            if self._attempts.generation != generation:
                self._attempts = _StepAttempts(generation)
            count = self._attempts.counts.get(step_num, 0) + 1
            self._attempts.counts[step_num] = count
            return count

    def seed_attempts(self, counts: dict[int, int]) -> None:
        """Continue attempt numbers of the current run from *counts* (on resume)."""
        with self._lock:
            self._attempts = _StepAttempts(self.state.generation, dict(counts))

    @contextmanager
    def step_scope(self, step_num: int, name: str | None = None) -> Iterator[None]:
        """
        Run a block as step *step_num*: records from this thread/task go to its files.

        Logs ``step_start`` (``step``, ``name``, ``attempt``) on entry and
        ``step_end`` (``status``, ``duration_s``, ``name``, ``attempt``; on a
        failure ``error_type``, ``error`` and the traceback) on exit, under
        component ``orchestrator``. Entering the same number again is a retry.
        The exception is re-raised unchanged, never swallowed.

        Raises:
            ContextError: If *step_num* is not an int >= 0 or no run is set.
            LogWriteError: As :meth:`set_step_context`; and from ``step_start``
                when it cannot be written (a link at ``step_NNN``, see #12).
        """

        _paths.check_step(step_num)
        state = self._require_run()
        self._make_step_dir(state, step_num)
        attempt = self.next_attempt(step_num)
        token = LOCAL_STEP.set((state.generation, step_num))
        self._announce_step(step_num)
        try:
            self._write_lifecycle(20, "step_start", {"name": name, "attempt": attempt})
        except BaseException:
            # step_start could not be written (a link at step_NNN, see #12):
            # the block never runs, so its step must not stay current either
            LOCAL_STEP.reset(token)
            self._announce_step(current_step(self.state))
            raise
        started = time.monotonic()
        try:
            yield
        except BaseException as exc:
            status = "interrupted" if _is_interrupt(exc) else "failed"
            self._write_lifecycle(
                40 if status == "failed" else 30,
                "step_end",
                {
                    "name": name,
                    "attempt": attempt,
                    "status": status,
                    "duration_s": round(time.monotonic() - started, 6),
                    "error_type": type(exc).__name__,
                    # re-raise exc, not its str()'s error
                    "error": exception_text(exc),
                    "traceback": "".join(traceback.format_exception(exc)),
                },
            )
            raise
        else:
            self._write_lifecycle(
                20,
                "step_end",
                {
                    "name": name,
                    "attempt": attempt,
                    "status": "success",
                    "duration_s": round(time.monotonic() - started, 6),
                },
            )
        finally:
            LOCAL_STEP.reset(token)
            self._announce_step(current_step(self.state))

    def _announce_step(self, step: int | None) -> None:
        for listener in self._step_listeners:
            listener(step)

    def _write_lifecycle(
        self, level_no: int, event: str, fields: dict[str, Any]
    ) -> None:
        if self._lifecycle is not None:
            self._lifecycle(level_no, event, fields)


def _is_interrupt(exc: BaseException) -> bool:
    # Run turns SIGTERM into KeyboardInterrupt, so both read "interrupted"
    return isinstance(exc, KeyboardInterrupt)


def current_step(state: RunState) -> int | None:
    """The step for the calling thread/task: its step scope's, else the default."""
    local = LOCAL_STEP.get()
    if local is not None and local[0] == state.generation:
        return local[1]
    return state.step
