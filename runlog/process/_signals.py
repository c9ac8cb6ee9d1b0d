"""SIGTERM as KeyboardInterrupt while a run is open; signals kept off helper threads."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any


class TermHandler:
    """
    A SIGTERM handler that raises ``KeyboardInterrupt("received SIGTERM")``.

    Installed by start_run in the main thread when the program has no SIGTERM
    handler of its own, so ``with`` blocks and steps unwind and end
    ``interrupted``. In a forked child, or once *is_active* says the run is
    over, the signal gets its default action (the process dies by SIGTERM).
    """

    def __init__(self, is_active: Callable[[], bool]) -> None:
        self.pid = os.getpid()
        self.received: str | None = None
        self._is_active = is_active
        self._previous: Any = None

    def install(self) -> bool:
        """Become the SIGTERM handler if SIGTERM has its default action here."""
        if threading.current_thread() is not threading.main_thread():
            return False
        previous = signal.getsignal(signal.SIGTERM)
        if previous is not signal.SIG_DFL:
            return False  # the program handles SIGTERM itself; leave it alone
        signal.signal(signal.SIGTERM, self)
        self._previous = previous
        return True

    def restore(self) -> None:
        """Put the previous handler back (only possible from the main thread)."""
        previous = self._previous
        if (
            previous is None
            or threading.current_thread() is not threading.main_thread()
        ):
            return
        self._previous = None
        if signal.getsignal(signal.SIGTERM) is self:
            signal.signal(signal.SIGTERM, previous)

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if os.getpid() != self.pid or not self._is_active():
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.received = signal.Signals(signum).name
        raise KeyboardInterrupt(f"received {self.received}")


def block_termination_signals() -> None:
    """
    Keep SIGTERM and SIGINT away from the calling (helper) thread.

    The kernel hands a process-wide signal to any thread that does not block
    it; Python runs the handler in the main thread, but only once the main
    thread runs bytecode again. Blocking them in runlog's own threads makes
    the kernel deliver them to a thread that wakes up, so ``kill -TERM``
    interrupts a main thread blocked in a system call.
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})


_FORK_MASK = threading.local()


def _handler_installed() -> bool:
    return isinstance(signal.getsignal(signal.SIGTERM), TermHandler)


def _before_fork() -> None:
    # CPython drops a signal that reaches a forked child before its interpreter
    # has re-initialized, so a child terminated at once would never die (see
    # #3). Hold SIGTERM pending across fork() and give the child the default.
    if _handler_installed():
        _FORK_MASK.saved = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})


def _after_fork_in_parent() -> None:
    saved = getattr(_FORK_MASK, "saved", None)
    if saved is not None:
        _FORK_MASK.saved = None
        signal.pthread_sigmask(signal.SIG_SETMASK, saved)


def _after_fork_in_child() -> None:
    saved = getattr(_FORK_MASK, "saved", None)
    if saved is not None:
        _FORK_MASK.saved = None
        if _handler_installed():
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, saved)


os.register_at_fork(
    before=_before_fork,
    after_in_parent=_after_fork_in_parent,
    after_in_child=_after_fork_in_child,
)
