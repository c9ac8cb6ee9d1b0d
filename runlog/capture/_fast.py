"""``sys.stdout``/``sys.stderr`` captured without running Python per print."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["FastTee", "flavour_of"]

# set while runlog itself flushes a fast stream to take its text
_internal = threading.local()


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
    The buffer under a fast stream. Its ``write`` is a ``BytesIO``'s, so the
    ``TextIOWrapper`` above hands it encoded text by C calls alone; ``take``
    swaps the ``BytesIO`` in two assignments, which a concurrent ``write``
    sees either before or after. ``flush`` is the capture's: the application
    (or, in the "line" flavour, a line end) asked for the text to go out.
    """

    def __init__(self, original: Any, flush: Callable[[], object]) -> None:
        self.closed = False
        self.original = original
        self._bytes = io.BytesIO()
        self.write: Callable[[bytes], object] = self._bytes.write
        self.flush = flush
        self.forwarding = False

    def readable(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def fileno(self) -> int:
        return int(self.original.fileno())

    def isatty(self) -> bool:
        return bool(self.original.isatty())

    @property
    def name(self) -> Any:
        return self.original.name

    @property
    def raw(self) -> Any:
        return self.original.buffer.raw

    def close(self) -> None:
        self.closed = True  # the wrapped stream stays open

    def holds(self) -> bool:
        return self._bytes.tell() > 0

    def take(self) -> bytes:
        old = self._bytes
        if not old.tell():
            return b""
        new = io.BytesIO()
        self._bytes = new
        if not self.forwarding:
            self.write = new.write
        return old.getvalue()

    def forward(self, write: Callable[[bytes], object]) -> None:
        # what was queued before goes first, whichever thread writes next
        blocks = self

        def forward(data: bytes) -> int:
            rest = blocks.take()
            if rest:
                write(rest)
            write(data)
            return len(data)

        self.forwarding = True
        self.write = forward
        rest = self.take()
        if rest:
            write(rest)


class FastTee:
    """
    A ``TextIOWrapper`` (:attr:`stream`) that stands in for ``sys.stdout`` or
    ``sys.stderr`` in a single-threaded process, and what runlog does with it.

    :attr:`stream` is a plain ``io.TextIOWrapper`` (a subclass would pay an
    attribute lookup per write), encoding as the wrapped stream does, over a
    buffer that keeps the bytes: ``print`` runs no Python code. The capture
    takes the text (:meth:`take`) at least every 20 ms, at a flush, at a
    step change and before each record of the run, writes it to the wrapped
    stream, unchanged and in order, and records its lines. In the ``"line"``
    flavour every write reaches the buffer at once and each line (or ``\\r``)
    calls *on_flush*, which writes it to the stream: one Python call a line,
    not one a piece, and one ``write`` to the stream. ``buffer`` is the
    kept bytes (binary writes keep their place among the text), ``fileno``,
    ``isatty``, ``name``, ``mode``, ``encoding`` and ``errors`` are the
    wrapped stream's.
    """

    def __init__(self, original: Any, on_flush: Callable[[], object], line: bool):
        self.original = original
        self.line = line
        self._on_flush = on_flush
        # "block": the buffer's flush is the application's unless runlog is
        # taking the text; "line": a line end, always runlog's to act on
        self.blocks = _Blocks(original, on_flush if line else self._flush_asked)
        buffer: Any = self.blocks  # the part of the buffer protocol TextIOWrapper uses
        self.stream = io.TextIOWrapper(
            buffer,
            encoding=original.encoding,
            errors=original.errors,
            newline="\n",
            line_buffering=line,
            write_through=line,
        )
        mode = getattr(original, "mode", None)
        if mode is not None:
            self.stream.mode = mode  # type: ignore[misc]  # as open() sets it
        # runlog's console echo writes here, never into the capture
        self.stream._runlog_target = original  # type: ignore[attr-defined]
        # lines the "line" flavour wrote to the stream already, to be recorded
        self.written: list[bytes] = []

    def holds(self) -> bool:
        """True if text was written since the last take."""
        if not self.line:
            # _pending_to_blocks, inlined: each record of the run asks
            _internal.on = True
            try:
                self.stream.flush()
            finally:
                _internal.on = False
        return self.blocks.holds() or bool(self.written)

    def take(self) -> bytes:
        """What was written since the last take, encoded, in order. Thread-safe."""
        if not self.line:
            self._pending_to_blocks()
        return self.blocks.take()

    def take_written(self) -> bytes:
        """The lines written to the stream since the last call, to be recorded."""
        written = self.written
        if not written:
            return b""
        self.written = []
        return b"".join(written)

    def forward(self, write: Callable[[str], object]) -> None:
        """From now on, pass every write at once to *write* (the text)."""
        encoding = self.stream.encoding
        original = self.original

        def forward_bytes(data: bytes) -> None:
            write(data.decode(encoding, "surrogateescape"))

        self._pending_to_blocks()
        self.blocks.flush = original.flush
        self.blocks.forward(forward_bytes)
        self.stream.reconfigure(write_through=True)

    def _flush_asked(self) -> None:
        if not getattr(_internal, "on", False):
            self._on_flush()

    def _pending_to_blocks(self) -> None:
        # the text the C TextIOWrapper still holds, into the blocks, without
        # the flush the application would mean by it
        _internal.on = True
        try:
            self.stream.flush()
        finally:
            _internal.on = False
