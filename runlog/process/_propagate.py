"""Carrying the current run and step into worker threads, executors and pool workers."""

from __future__ import annotations

import contextvars
import functools
import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Generic, NamedTuple, ParamSpec, TypeVar

from ..context import LOCAL_STEP, LogContext, current_step
from . import _env

P = ParamSpec("P")
R = TypeVar("R")


class _RunRef(NamedTuple):
    """The run and step a wrapped callable was made in; plain data, so it pickles."""

    run_id: str
    framework: str
    logs_dir: str
    step: int | None
    owner_pid: str | None


def _current_ref() -> _RunRef | None:
    state = LogContext.get_instance().state
    if state.logs_dir is None or state.run_id is None or state.framework is None:
        return None
    return _RunRef(
        state.run_id,
        state.framework,
        str(state.logs_dir),
        current_step(state),
        os.environ.get(_env.OWNER_PID),
    )


class ContextCarrier(Generic[P, R]):
    """
    *fn* bound to the run, step and context variables current when it was wrapped.

    Called in this process (threads, executors, ``run_in_executor``), it runs
    *fn* in a fresh copy of the captured :mod:`contextvars` context, so it may
    be called many times and from several threads at once. Pickled to another
    process (``ProcessPoolExecutor``, ``multiprocessing.Pool``), it carries
    the run and step as plain data: the worker joins that run (leaving one it
    joined for an earlier task) and logs into that step for the call, so a
    pool worker started in step 1 and reused in step 2 writes into step 2.
    Structlog's bound context variables do not cross processes.
    """

    def __init__(
        self,
        fn: Callable[P, R],
        context: contextvars.Context | None,
        run: _RunRef | None,
    ) -> None:
        self.fn = fn
        self._context = context
        self._run = run
        functools.update_wrapper(self, fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        if self._context is not None:
            return self._context.copy().run(self.fn, *args, **kwargs)
        return contextvars.copy_context().run(self._call_in_run, *args, **kwargs)

    def _call_in_run(self, *args: P.args, **kwargs: P.kwargs) -> R:
        _join(self._run)
        return self.fn(*args, **kwargs)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.fn, self._run))

    def __repr__(self) -> str:
        return f"runlog.wrap({self.fn!r})"


def _rebuild(fn: Callable[P, R], run: _RunRef | None) -> ContextCarrier[P, R]:
    return ContextCarrier(fn, None, run)


def _join(run: _RunRef | None) -> None:
    """In a pool worker: make *run* current and set its step for this context."""
    if run is None:
        return
    context = LogContext.get_instance()
    if context.logs_dir != Path(run.logs_dir):
        if run.owner_pid is not None:
            os.environ[_env.OWNER_PID] = run.owner_pid
        context.set_run_context(run.run_id, run.framework, run.logs_dir)
    if run.step is not None:
        LOCAL_STEP.set((context.state.generation, run.step))


def wrap(fn: Callable[P, R]) -> Callable[P, R]:
    """
    *fn*, carrying the current run, step and context variables to where it runs.

    ``threading.Thread``, ``ThreadPoolExecutor`` and ``loop.run_in_executor``
    do not copy :mod:`contextvars`, so without this a worker thread logs into
    the process-wide default step instead of the caller's ``run.step(n)``.
    ``asyncio`` tasks and ``asyncio.to_thread`` copy the context already.
    The result also pickles to process pools (see :class:`ContextCarrier`).

    Example::

        with run.step(3):
            threading.Thread(target=runlog.wrap(work)).start()
            loop.run_in_executor(None, runlog.wrap(work), item)
            process_pool.submit(runlog.wrap(work), item)

    Thread-safe; the wrapped callable may run many times, concurrently.
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
