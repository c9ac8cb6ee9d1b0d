"""``sys.stdout``/``sys.stderr`` captured without running Python per print."""

from __future__ import annotations

import collections
import io
from collections.abc import Callable
from typing import Any

__all__ = ["FastTee", "flavour_of"]


def flavour_of(stream: Any) -> str | None:
    """
    How a :class:`FastTee` can stand in for *stream*: ``"block"`` for a plain
    ``TextIOWrapper`` neither line-buffered nor write-through (what Python
    makes of ``sys.stdout`` on a file or a pipe), ``"line"`` for one that is
    (a terminal, ``sys.stderr``, ``PYTHONUNBUFFERED``), None for anything else.
    """
    if type(stream) is not io.TextIOWrapper or stream.closed:
        return None
    return "line" if stream.line_buffering or stream.write_through else "block"


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
    Stands in for ``sys.stdout`` or ``sys.stderr`` in a single-threaded process.

    ``write`` and ``print`` are the C ``TextIOWrapper``'s: the text is encoded
    as the wrapped stream encodes it and queued in blocks. The capture takes
    the text (:meth:`take`) at least every 20 ms, at a flush, at a step
    change and before each record of the run, writes it to the wrapped
    stream, unchanged and in order, and records its lines. In the ``"line"``
    flavour each line (or ``\\r``) also calls *on_line* as it ends, which
    writes it to the stream at once: one Python call a line, not one a
    piece, and one ``write`` to the stream. Every attribute it
    does not have (``mode``, ...) is the wrapped stream's, and so is
    ``buffer``: bytes written there go before text still held, as they go
    before the text a ``TextIOWrapper`` holds.
    """

    def __init__(
        self,
        original: Any,
        on_flush: Callable[[FastTee], None],
        on_change: Callable[[FastTee], None],
        on_line: Callable[[], object] | None = None,
    ) -> None:
        blocks = _Blocks(original)
        # "line": every write goes to the blocks at once (so a take never
        # needs the C object, which another thread may be inside), and a line
        # end calls on_line through the buffer's flush
        line = on_line is not None
        super().__init__(
            blocks,  # type: ignore[arg-type]  # the buffer protocol TextIOWrapper uses
            encoding=original.encoding,
            errors=original.errors,
            newline="\n",
            line_buffering=line,
            write_through=line,
        )
        if on_line is not None:
            blocks.flush = on_line
        self._runlog_line = line
        # lines on_line wrote to the stream already, to be recorded
        self._runlog_written: list[bytes] = []
        self._runlog_blocks = blocks
        self._runlog_original = original
        # runlog's console echo writes here, never into the capture
        self._runlog_target = original
        self._runlog_on_flush = on_flush
        self._runlog_on_change = on_change

    def holds(self) -> bool:
        """True if text was written since the last take."""
        if not self._runlog_line:
            io.TextIOWrapper.flush(self)  # the pending text into the blocks
        return bool(self._runlog_blocks._queue or self._runlog_written)

    def take(self) -> bytes:
        """What was written since the last take, encoded, in order. Thread-safe."""
        if not self._runlog_line:
            io.TextIOWrapper.flush(self)  # the pending text into the blocks
        return self._runlog_blocks.take()

    def take_written(self) -> bytes:
        """The lines written to the stream by *on_line* since the last call."""
        written = self._runlog_written
        if not written:
            return b""
        self._runlog_written = []
        return b"".join(written)

    def forward(self, write: Callable[[str], object]) -> None:
        """From now on, pass every write at once to *write* (the text)."""
        encoding = self.encoding

        def forward_bytes(data: bytes) -> None:
            write(data.decode(encoding, "surrogateescape"))

        self._runlog_blocks.flush = int
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
