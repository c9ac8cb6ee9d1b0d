"""Carrying the current run, step and settings into threads, executors and pools."""

from __future__ import annotations

import contextvars
import functools
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Final, Generic, NamedTuple, ParamSpec, Protocol, TypeVar

from .._config import Settings, apply_settings, current_settings, settings_from_env
from ..context import LOCAL_STEP, LogContext, RunState, current_step
from ..errors import ContextError
from . import _env

P = ParamSpec("P")
R = TypeVar("R")

_CONTEXT: Final = LogContext.get_instance()

# Names the settings a wrapped call carries, in messages.
SOURCE: Final = "runlog.wrap settings"
_NAMES: Final = frozenset(
    {*functools.WRAPPER_ASSIGNMENTS, "__wrapped__"} - {"__module__", "__doc__"}
)


class _RunRef(NamedTuple):
    """The run, step and settings of a wrapping; plain data, so it pickles."""

    run_id: str
    framework: str
    logs_dir: str
    step: int | None
    owner_pid: str | None
    settings: str


class TaskRunner(Protocol):
    """
    Takes over a wrapped call in a process that has an engine's plugin installed.

    Called with the call's run, the call in that run (records written to the
    run's files by this process) and the bare call; returns what the call
    returns. The Dask plugin sends records through the cluster's event
    channel instead when the run's directory is out of reach (see #13).
    """

    def __call__(
        self, run: _RunRef, in_run: Callable[[], R], bare: Callable[[], R]
    ) -> R: ...


_task_runner: TaskRunner | None = None


def set_task_runner(runner: TaskRunner | None) -> None:
    """Make *runner* take over every wrapped call that carries a run, here."""
    global _task_runner
    _task_runner = runner


def _current_ref() -> _RunRef | None:
    state = _CONTEXT.state
    if state.logs_dir is None or state.run_id is None or state.framework is None:
        return None
    return _RunRef(
        state.run_id,
        state.framework,
        str(state.logs_dir),
        current_step(state),
        os.environ.get(_env.OWNER_PID),
        _env.encoded_settings(),
    )


class ContextCarrier(Generic[P, R]):
    """
    *fn* bound to the run, step, settings and context variables of its wrapping.

    Called in this process (threads, executors, ``run_in_executor``), it runs
    *fn* in a fresh copy of the captured :mod:`contextvars` context, so it may
    be called many times and from several threads at once. Pickled to another
    process (``ProcessPoolExecutor``, ``multiprocessing.Pool``, a Dask worker),
    it carries the run, step and settings as plain data: for the call, the
    worker's process has that run and those settings current (see
    :class:`_Lease`) and the calling thread has that step; afterwards the
    worker has what it had before. Structlog's bound context variables do not
    cross processes.
    """

    def __init__(
        self,
        fn: Callable[P, R],
        context: contextvars.Context | None,
        run: _RunRef | None,
        *,
        copy_names: bool = True,
    ) -> None:
        self.fn = fn
        self._context = context
        self._run = run
        if copy_names:
            functools.update_wrapper(self, fn)

    def __getattr__(self, name: str) -> Any:
        # made without copy_names (in a worker, per task: update_wrapper
        # costs more than the rest of the call): names are looked up on fn
        fn = self.__dict__.get("fn")
        if fn is not None and name in _NAMES:
            return fn if name == "__wrapped__" else getattr(fn, name)
        raise AttributeError(name)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        if self._context is not None:
            return self._context.copy().run(self.fn, *args, **kwargs)
        if self._run is None:
            return self.fn(*args, **kwargs)
        runner = _task_runner
        if runner is not None:
            return contextvars.copy_context().run(
                runner,
                self._run,
                functools.partial(self._call_in_run, *args, **kwargs),
                functools.partial(self.fn, *args, **kwargs),
            )
        return contextvars.copy_context().run(self._call_in_run, *args, **kwargs)

    def _call_in_run(self, *args: P.args, **kwargs: P.kwargs) -> R:
        run = self._run
        assert run is not None
        generation = _LEASE.acquire(run)
        try:
            had = current_step(_CONTEXT.state)
            # (generation, None) is "no step in this call": records go to
            # run.log even if the worker's own step is set (see #13)
            LOCAL_STEP.set((generation, run.step))
            # like step_scope: children started without child_env() see the
            # step last entered by any thread
            _env.set_step_variable(run.step)
            try:
                return self.fn(*args, **kwargs)
            finally:
                _env.set_step_variable(had)
        finally:
            _LEASE.release()

    def __reduce__(self) -> tuple[Any, ...]:
        # a plain tuple pickles in C; a NamedTuple goes through copyreg
        run = None if self._run is None else tuple(self._run)
        return (_rebuild, (self.fn, run))

    def __repr__(self) -> str:
        return f"runlog.wrap({self.fn!r})"


def _rebuild(fn: Callable[P, R], run: tuple[Any, ...] | None) -> ContextCarrier[P, R]:
    ref = None if run is None else _RunRef(*run)
    return ContextCarrier(fn, None, ref, copy_names=False)


@dataclass(frozen=True, slots=True)
class _Saved:
    """What a worker had before wrapped calls joined it to a run, to put back."""

    generation: int
    state: RunState | None = None
    owner_pid: str | None = None
    settings: Settings | None = None
    applied: Settings | None = None

    @property
    def is_empty(self) -> bool:
        """True if nothing was changed, so nothing is to be put back."""
        return self.state is None and self.settings is None


class _Lease:
    """
    The run and settings that wrapped calls in this process have made current.

    The run context and the settings are per process, so while wrapped calls
    of one run (and one set of settings) are running, in any number of
    threads, that run is current here; when the last one returns, what the
    process had before comes back. A wrapped call of another run waits for
    them to finish, so no record lands in the wrong run; one started inside
    a wrapped call of another run, in the same thread, would wait forever and
    raises :class:`ContextError` instead. Threads that log without a wrapped
    call while one is running write into its run (the context is per process).
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._key: tuple[str, str, str] | None = None
        self._count = 0
        self._holders: dict[int, int] = {}
        self._saved: _Saved | None = None
        # key, state and settings of the last call that changed nothing: the
        # next such call skips the comparisons (pool workers run many)
        self._unchanged: tuple[tuple[str, str, str], RunState, Settings] | None = None

    def reset_after_fork(self) -> None:
        """In a forked child: no wrapped call runs there; its run is its own."""
        self._reset()

    def acquire(self, run: _RunRef) -> int:
        """
        Make *run* current here (if it is not) for one more wrapped call.

        Returns:
            The run's generation, for the caller's step.

        Raises:
            ContextError: If this thread is inside a wrapped call of another
                run, or *run* names a bad run.
            ConfigurationError: If *run* carries bad settings.
        """
        key = (run.logs_dir, run.run_id, run.settings)
        me = threading.get_ident()
        with self._cond:
            while self._key is not None and self._key != key:
                if me in self._holders:
                    raise ContextError(
                        f"runlog.wrap: a call for run {run.run_id!r} inside a "
                        f"wrapped call of run {self._key[1]!r} in one thread"
                    )
                self._cond.wait()
            if not self._count:
                unchanged = self._unchanged
                state = _CONTEXT.state
                if (
                    unchanged is not None
                    and unchanged[0] == key
                    and unchanged[1] is state
                    and unchanged[2] is current_settings()
                ):
                    self._saved = _Saved(state.generation)
                else:
                    self._saved = _enter(run)
                    if self._saved.is_empty:
                        self._unchanged = (key, _CONTEXT.state, current_settings())
                self._key = key
            self._count += 1
            self._holders[me] = self._holders.get(me, 0) + 1
            assert self._saved is not None
            return self._saved.generation

    def release(self) -> None:
        """
        End one wrapped call; after the last, give back what the process had.

        Raises:
            ContextError, LogWriteError: If the run the process had cannot be
                set again (its directory is gone and cannot be made).
        """
        me = threading.get_ident()
        with self._cond:
            self._count -= 1
            left = self._holders[me] - 1
            if left:
                self._holders[me] = left
            else:
                del self._holders[me]
            if self._count:
                return
            saved, self._saved, self._key = self._saved, None, None
            try:
                if saved is not None and not saved.is_empty:
                    _leave(saved)
            finally:
                self._cond.notify_all()


_LEASE: Final = _Lease()
os.register_at_fork(after_in_child=_LEASE.reset_after_fork)
_decoded: tuple[str, tuple[object, ...], bool, Settings] | None = None


def _run_settings(text: str, current: Settings) -> Settings:
    """The run's settings from *text*, with this process's sinks and console rule."""
    global _decoded
    console_off = os.environ.get(_env.CONSOLE) == "off"
    cached = _decoded
    if (
        cached is not None
        and cached[0] == text
        and cached[1] is current.extra_sinks
        and cached[2] == console_off
    ):
        return cached[3]
    settings = settings_from_env(text, source=SOURCE, extra_sinks=current.extra_sinks)
    if console_off and settings.console_format != "off":
        settings = replace(settings, console_format="off")
    _decoded = (text, current.extra_sinks, console_off, settings)
    return settings


def _is_current(state: RunState, run: _RunRef) -> bool:
    return (
        state.logs_dir is not None
        and state.run_id == run.run_id
        and str(state.logs_dir) == run.logs_dir
    )


def _enter(run: _RunRef) -> _Saved:
    """Make *run* and its settings current; what to put back afterwards."""
    context = _CONTEXT
    before = context.state
    current = current_settings()
    wanted = _run_settings(run.settings, current)
    saved_settings = applied = None
    if wanted != current:
        apply_settings(wanted)
        saved_settings, applied = current, current_settings()
    if _is_current(before, run):
        return _Saved(before.generation, None, None, saved_settings, applied)
    owner = os.environ.get(_env.OWNER_PID)
    try:
        if run.owner_pid is not None:
            os.environ[_env.OWNER_PID] = run.owner_pid
        context.set_run_context(run.run_id, run.framework, run.logs_dir)
    except BaseException:
        _restore_owner(owner)
        if saved_settings is not None:
            apply_settings(saved_settings)
        raise
    return _Saved(context.state.generation, before, owner, saved_settings, applied)


def _leave(saved: _Saved) -> None:
    """Put back the run and settings the process had before :func:`_enter`."""
    context = _CONTEXT
    before = saved.state
    # only if nobody set another run meanwhile (a wrapped call's own start_run)
    if before is not None and context.state.generation == saved.generation:
        if before.logs_dir is None:
            context.clear_run_context()
        else:
            assert before.run_id is not None
            assert before.framework is not None
            _restore_owner(saved.owner_pid)
            context.set_run_context(before.run_id, before.framework, before.logs_dir)
            if before.step is not None:
                context.set_step_context(before.step)
    if saved.settings is not None and current_settings() is saved.applied:
        apply_settings(saved.settings)


def _restore_owner(owner: str | None) -> None:
    if owner is None:
        os.environ.pop(_env.OWNER_PID, None)
    else:
        os.environ[_env.OWNER_PID] = owner


def wrap(fn: Callable[P, R]) -> Callable[P, R]:
    """
    *fn*, carrying the current run, step, settings and context variables.

    ``threading.Thread``, ``ThreadPoolExecutor`` and ``loop.run_in_executor``
    do not copy :mod:`contextvars`, so without this a worker thread logs into
    the process-wide default step instead of the caller's ``run.step(n)``.
    ``asyncio`` tasks and ``asyncio.to_thread`` copy the context already.
    The result pickles whenever *fn* does: in a process-pool or Dask worker,
    started before the run or in another step, the call runs with the
    wrapping run and ``configure()`` settings current and, in its thread, the
    wrapping step; then the worker has what it had before (see
    :class:`ContextCarrier`).

    Example::

        with run.step(3):
            threading.Thread(target=runlog.wrap(work)).start()
            loop.run_in_executor(None, runlog.wrap(work), item)
            process_pool.submit(runlog.wrap(work), item)

    Thread-safe; the wrapped callable may run many times, concurrently. Not
    guaranteed: in another process, wrapped calls of two different runs do
    not run at the same time (the second waits), and a thread that logs
    outside any wrapped call while one runs writes into that call's run.
    """
    return ContextCarrier(fn, contextvars.copy_context(), _current_ref())


class ContextThreadPoolExecutor(ThreadPoolExecutor):
    """
    A ThreadPoolExecutor whose tasks run in a copy of the submitter's context.

    Each ``submit()`` (and so ``map()``, and ``loop.run_in_executor`` given
    this executor) captures the calling thread's or task's context variables,
    so a task logs into the step that submitted it, with its structlog bound
    values. A drop-in replacement: same constructor, same methods.
    """

    def submit(
        self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs
    ) -> Future[R]:
        """Schedule ``fn(*args, **kwargs)`` in a copy of the current context."""
        context = contextvars.copy_context()
        return super().submit(functools.partial(context.run, fn, *args, **kwargs))


class ContextProcessPoolExecutor(ProcessPoolExecutor):
    """
    A ProcessPoolExecutor whose tasks run in the submitter's run, step and settings.

    Each ``submit()`` (and so each chunk of ``map()``) wraps its callable with
    :func:`wrap` in the submitting thread or task, so a worker started before
    the run, or in another step, writes each task's records into the step
    that submitted it, with the submitter's ``configure()`` settings. A
    drop-in replacement: same constructor, same methods; *fn* must pickle, as
    for any process pool. Thread-safe, like ProcessPoolExecutor.
    """

    def submit(
        self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs
    ) -> Future[R]:
        """Schedule ``fn(*args, **kwargs)`` in a worker, in the current run and step."""
        if not isinstance(fn, ContextCarrier):
            # no contextvars copy: it would never leave this process
            fn = ContextCarrier(fn, None, _current_ref(), copy_names=False)
        return super().submit(fn, *args, **kwargs)
