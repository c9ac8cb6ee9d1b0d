"""A block-buffered ``sys.stdout`` captured without running Python per print."""

from __future__ import annotations

import collections
import io
from collections.abc import Callable
from typing import Any

__all__ = ["FastTee", "is_block_buffered"]


def is_block_buffered(stream: Any) -> bool:
    """
    True for a text stream as Python makes ``sys.stdout`` on a file or pipe:
    a plain ``TextIOWrapper``, neither line-buffered nor write-through.
    """
    return (
        type(stream) is io.TextIOWrapper
        and not stream.closed
        and not stream.line_buffering
        and not stream.write_through
    )


class _Blocks:
    """
    What a :class:`FastTee` encodes into: blocks of bytes queued by C calls
    alone (``write`` is ``deque.append``, ``flush`` is ``int``, a no-op), so a
    print() runs no Python code (see #15). :meth:`take` swaps the queue in
    two assignments, which a concurrent ``write`` sees either before or after.
    """

    def __init__(self, original: Any) -> None:
        self.closed = False
        self._original = original
        self._queue: collections.deque[bytes] = collections.deque()
        self._forwarding = False
        self.write: Callable[[bytes], object] = self._queue.append
        self.flush: Callable[[], object] = int

    def readable(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def fileno(self) -> int:
        return int(self._original.fileno())

    def isatty(self) -> bool:
        return bool(self._original.isatty())

    @property
    def name(self) -> Any:
        return self._original.name

    def close(self) -> None:
        self.closed = True  # the wrapped stream stays open

    def take(self) -> bytes:
        old = self._queue
        if not old:
            return b""
        new: collections.deque[bytes] = collections.deque()
        self._queue = new
        if not self._forwarding:
            self.write = new.append
        return b"".join(old)

    def forward(self, write: Callable[[bytes], object]) -> None:
        # what was queued before goes first, whichever thread writes next
        blocks = self

        def forward(data: bytes) -> None:
            rest = blocks.take()
            if rest:
                write(rest)
            write(data)

        self._forwarding = True
        self.write = forward
        rest = self.take()
        if rest:
            write(rest)


class FastTee(io.TextIOWrapper):
    """
    Stands in for a block-buffered ``sys.stdout`` (or ``sys.stderr``).

    ``write`` and ``print`` are the C ``TextIOWrapper``'s: the text is encoded
    as the wrapped stream encodes it and queued in blocks. The capture takes
    the text (:meth:`take`) at least every 20 ms, at a flush, at a step
    change and before each record of the run, writes it to the wrapped
    stream, unchanged and in order, and records its lines. Every attribute it
    does not have (``mode``, ...) is the wrapped stream's, and so is
    ``buffer``: bytes written there go before text still held, as they go
    before the text a ``TextIOWrapper`` holds.
    """

    def __init__(
        self,
        original: Any,
        on_flush: Callable[[FastTee], None],
        on_change: Callable[[FastTee], None],
    ) -> None:
        blocks = _Blocks(original)
        super().__init__(
            blocks,  # type: ignore[arg-type]  # the buffer protocol TextIOWrapper uses
            encoding=original.encoding,
            errors=original.errors,
            newline="\n",
        )
        self._runlog_blocks = blocks
        self._runlog_original = original
        # runlog's console echo writes here, never into the capture
        self._runlog_target = original
        self._runlog_on_flush = on_flush
        self._runlog_on_change = on_change

    def holds(self) -> bool:
        """True if text was written since the last take."""
        io.TextIOWrapper.flush(self)  # the pending text into the blocks
        return bool(self._runlog_blocks._queue)

    def take(self) -> bytes:
        """What was written since the last take, encoded, in order. Thread-safe."""
        io.TextIOWrapper.flush(self)  # the pending text into the blocks
        return self._runlog_blocks.take()

    def forward(self, write: Callable[[str], object]) -> None:
        """From now on, pass every write at once to *write* (the text)."""
        encoding = self.encoding

        def forward_bytes(data: bytes) -> None:
            write(data.decode(encoding, "surrogateescape"))

        io.TextIOWrapper.flush(self)
        self._runlog_blocks.forward(forward_bytes)
        self._runlog_on_flush = _flush_forwarded
        self._runlog_on_change = _unchanged
        super().reconfigure(write_through=True)

    def flush(self) -> None:
        """Write what was printed to the wrapped stream (and the run); flush it."""
        self._runlog_on_flush(self)

    def reconfigure(self, **changes: Any) -> None:
        """Reconfigure the wrapped stream (and the encoding of this one)."""
        self.flush()
        self._runlog_original.reconfigure(**changes)
        mine = {k: v for k, v in changes.items() if k in ("encoding", "errors")}
        if mine:
            super().reconfigure(**mine)
        self._runlog_on_change(self)

    @property
    def buffer(self) -> Any:  # the wrapped stream's
        return self._runlog_original.buffer

    @property
    def line_buffering(self) -> bool:
        return bool(self._runlog_original.line_buffering)

    @property
    def write_through(self) -> bool:
        return bool(self._runlog_original.write_through)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_runlog_"):
            raise AttributeError(name)
        return getattr(self._runlog_original, name)

    def __repr__(self) -> str:
        return f"<runlog capture of {self._runlog_original!r}>"


def _flush_forwarded(tee: FastTee) -> None:
    io.TextIOWrapper.flush(tee)
    tee._runlog_original.flush()


def _unchanged(tee: FastTee) -> None:
    pass
