"""The heartbeat thread that keeps run.json's ``heartbeat_at`` fresh."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Final

from ..process._signals import block_termination_signals

_JOIN_TIMEOUT_S: Final = 5.0


class Heartbeat:
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
