"""Compressed archive streams: gzip and zstandard readers and writers, threaded I/O."""

from __future__ import annotations

import collections
import gzip
import io
import os
import queue
import sys
import threading
import zlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO, Final, Protocol, cast

import zstandard

from ..errors import ConfigurationError, RunlogError

FORMATS: Final = ("gz", "zst")
SUFFIXES: Final = {".gz": "gz", ".tgz": "gz", ".zst": "zst", ".tzst": "zst"}
# gzip 6, as `gzip` and `tar czf`: ~21x on JSON logs; level 3 takes ~35% less
# CPU for a ~17% bigger archive (docs/PERFORMANCE.md, "Archive").
DEFAULT_LEVELS: Final = {"gz": 6, "zst": 3}
LEVEL_RANGES: Final = {"gz": range(1, 10), "zst": range(1, 23)}
CHUNK: Final = 1 << 20
MAX_THREADS: Final = 4

# What a corrupt or truncated compressed stream raises while it is read.
# BadGzipFile is an OSError; EOFError is a stream cut short.
CORRUPT_ERRORS: Final[tuple[type[Exception], ...]] = (
    zlib.error,
    gzip.BadGzipFile,
    EOFError,
    zstandard.ZstdError,
)


def format_of(path: str | os.PathLike[str]) -> str:
    """
    The archive format of *path* from its suffix: ``"gz"`` or ``"zst"``.

    Raises:
        RunlogError: If the suffix is neither.
    """
    suffix = Path(path).suffix.lower()
    try:
        return SUFFIXES[suffix]
    except KeyError:
        raise RunlogError(
            f"archive {os.fspath(path)!r}: expected a name ending in .tar.gz "
            "or .tar.zst"
        ) from None


def check_level(fmt: str, level: int | None) -> int:
    """
    The compression level to use for *fmt*: *level*, or the default when None.

    Raises:
        ConfigurationError: If *fmt* is unknown or *level* is out of range.
    """
    if fmt not in FORMATS:
        raise ConfigurationError(f"archive format {fmt!r}: use one of {FORMATS}")
    if level is None:
        return DEFAULT_LEVELS[fmt]
    allowed = LEVEL_RANGES[fmt]
    if type(level) is not int or level not in allowed:
        raise ConfigurationError(
            f"{fmt} level {level!r}: use an int {allowed.start}-{allowed.stop - 1}"
        )
    return level


def compression_threads() -> int:
    """
    Compression threads to use: the CPUs this process may use, 1 to 4.

    The output does not depend on the count. Capped because each zstandard
    worker holds ~20 MB of buffers and two already keep up with the disk.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # no sched_getaffinity on macOS
        cpus = os.cpu_count() or 1
    return max(1, min(MAX_THREADS, cpus))


def open_reader(path: str | os.PathLike[str]) -> BinaryIO:
    """
    Open a ``run.tar.gz`` or ``run.tar.zst`` as a readable, decompressed stream.

    The format is chosen by the suffix. The stream suits
    ``tarfile.open(fileobj=..., mode="r|")`` for reading members in place;
    closing it closes the file.

    Raises:
        RunlogError: If the suffix is neither .gz nor .zst.
        OSError: If the file cannot be opened.
    """
    fmt = format_of(path)
    raw = open(path, "rb")  # noqa: SIM115  # the returned stream owns it
    return _decompressing(cast(BinaryIO, raw), fmt, owns=True)


class _OwningGzipReader(gzip.GzipFile):
    """A gzip reader that closes the file it reads when it is closed."""

    def __init__(self, raw: BinaryIO) -> None:
        super().__init__(filename="", mode="rb", fileobj=raw)
        self._raw = raw

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._raw.close()


def decompressing_reader(raw: io.RawIOBase, fmt: str) -> BinaryIO:
    """A decompressed view of *raw* (not closed with it), for *fmt*."""
    return _decompressing(cast(BinaryIO, raw), fmt, owns=False)


def _decompressing(raw: BinaryIO, fmt: str, *, owns: bool) -> BinaryIO:
    if fmt == "gz":
        if owns:
            return cast(BinaryIO, _OwningGzipReader(raw))
        return cast(BinaryIO, gzip.GzipFile(filename="", mode="rb", fileobj=raw))
    reader = zstandard.ZstdDecompressor().stream_reader(
        cast(BinaryIO, _WholeFramesReader(raw, owns=owns)),
        read_size=CHUNK,
        read_across_frames=True,
        closefd=owns,
    )
    return cast(BinaryIO, reader)


_ZSTD_MAGIC: Final = 0xFD2FB528
_SKIPPABLE_MAGIC: Final = 0x184D2A50  # low 4 bits are free
_DICT_ID_SIZES: Final = (0, 1, 2, 4)


class _WholeFramesReader(io.RawIOBase):
    """
    Passes a zstd file through, raising EOFError if it ends inside a frame.

    zstandard's reader returns what it could decode from a cut file without
    an error (even when the frame's checksum is gone), so this follows the
    frame layout (RFC 8878: header, block headers, checksum) as bytes pass.
    Closing it closes *raw* only when it *owns* it (also when it is dropped
    and collected, which closes it too).
    """

    def __init__(self, raw: BinaryIO | io.RawIOBase, *, owns: bool = True) -> None:
        super().__init__()
        self._raw = raw
        self._owns = owns
        self._header = bytearray()
        self._need = 4  # bytes of the next header field to collect
        self._state = "magic"
        self._skip = 0  # bytes of payload to pass over before that
        self._checksum = False
        self._frames = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        if data:
            self._follow(memoryview(data))
        elif self._skip or self._header or self._state != "magic" or not self._frames:
            raise EOFError("the zstd data ends before the end of its last frame")
        return data or b""

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]  # io's stub takes any buffer
        data = self.read(len(buffer))
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if self._owns:
            self._raw.close()
        super().close()

    def _follow(self, data: memoryview) -> None:
        pos = 0
        while pos < len(data):
            if self._skip:
                step = min(self._skip, len(data) - pos)
                self._skip -= step
                pos += step
                continue
            step = min(self._need - len(self._header), len(data) - pos)
            self._header += data[pos : pos + step]
            pos += step
            if len(self._header) == self._need:
                field = int.from_bytes(self._header, "little")
                self._header.clear()
                self._next(field)

    def _next(self, field: int) -> None:
        if self._state == "magic":
            if field == _ZSTD_MAGIC:
                self._state, self._need = "descriptor", 1
            elif field & ~0xF == _SKIPPABLE_MAGIC:
                self._state, self._need = "skippable", 4
            else:
                raise zstandard.ZstdError(f"not a zstd frame (magic {field:#010x})")
        elif self._state == "skippable":
            self._skip, self._state, self._need = field, "magic", 4
        elif self._state == "descriptor":
            single = bool(field & 0x20)
            self._checksum = bool(field & 0x04)
            content_size = ((1 if single else 0), 2, 4, 8)[field >> 6]
            window = 0 if single else 1
            self._skip = window + _DICT_ID_SIZES[field & 3] + content_size
            self._state, self._need = "block", 3
        else:  # a block header
            last, kind, size = field & 1, (field >> 1) & 3, field >> 3
            if kind == 3:
                raise zstandard.ZstdError("reserved zstd block type")
            self._skip = 1 if kind == 1 else size
            if last:
                self._skip += 4 if self._checksum else 0
                self._frames += 1
                self._state, self._need = "magic", 4


class Compressor(Protocol):
    """A compressing writer: closing it ends the compressed stream."""

    def write(self, data: bytes, /) -> int: ...

    def close(self) -> None: ...


def compressing_writer(sink: io.RawIOBase, fmt: str, level: int) -> Compressor:
    """
    A writer that compresses into *sink*; closing it ends the stream, not *sink*.

    The bytes depend only on the data, *fmt* and *level*, never on the number
    of threads or on how the data is split into writes: see
    :class:`ParallelGzipWriter`; zstandard always runs in multi-threaded mode,
    whose output does not depend on the number of worker threads.
    """
    if fmt == "gz":
        return ParallelGzipWriter(sink, level)
    compressor = zstandard.ZstdCompressor(
        level=level, threads=compression_threads(), write_checksum=True
    )
    return compressor.stream_writer(cast(BinaryIO, sink), closefd=False)


_GZIP_BLOCK: Final = 1 << 20
_DEFLATE_WINDOW: Final = 32 * 1024


class ParallelGzipWriter(io.RawIOBase):
    """
    Writes one gzip member, compressing 1 MiB blocks on several threads.

    The header has no file name and mtime 0. Each block is raw deflate primed
    with the 32 KiB of data before it (so the ratio stays that of one stream)
    and ends byte-aligned with a sync flush, the last with the final block;
    together they form one deflate stream any gzip reader accepts. Block
    boundaries fall every 1 MiB of input, so the bytes depend only on the
    data and the level. zlib releases the GIL: on 2 cores this runs about
    twice as fast as one ``gzip.GzipFile``. Closing finishes the member and
    leaves *sink* open. One producer thread.
    """

    def __init__(
        self, sink: io.RawIOBase, level: int, *, threads: int | None = None
    ) -> None:
        super().__init__()
        self._sink = sink
        self._level = level
        self._pending = bytearray()
        self._window = b""
        self._crc = 0
        self._size = 0
        workers = threads or compression_threads()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="runlog-gzip")
        self._jobs: collections.deque[Future[bytes]] = collections.deque()
        self._depth = 2 * workers
        xfl = 2 if level == 9 else 4 if level == 1 else 0
        # magic, deflate, no flags, mtime 0, extra flags, OS unknown (as gzip.py)
        self._sink.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00" + bytes((xfl, 255)))

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]  # io's stub takes any buffer
        self._pending += data
        while len(self._pending) >= _GZIP_BLOCK:
            block = bytes(self._pending[:_GZIP_BLOCK])
            del self._pending[:_GZIP_BLOCK]
            self._submit(block, final=False)
        return len(data)

    def _submit(self, block: bytes, *, final: bool) -> None:
        self._crc = zlib.crc32(block, self._crc)
        self._size += len(block)
        job = self._pool.submit(_deflate, block, self._window, self._level, final)
        self._jobs.append(job)
        tail = block[-_DEFLATE_WINDOW:]
        if len(tail) < _DEFLATE_WINDOW:
            tail = (self._window + tail)[-_DEFLATE_WINDOW:]
        self._window = tail
        while len(self._jobs) > self._depth:
            self._sink.write(self._jobs.popleft().result())

    def close(self) -> None:
        if self.closed:
            return
        try:
            self._submit(bytes(self._pending), final=True)
            self._pending.clear()
            while self._jobs:
                self._sink.write(self._jobs.popleft().result())
            self._sink.write(
                (self._crc & 0xFFFFFFFF).to_bytes(4, "little")
                + (self._size & 0xFFFFFFFF).to_bytes(4, "little")
            )
        finally:
            self.discard()

    def discard(self) -> None:
        """Stop the threads without finishing the member (after a failure)."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._jobs.clear()
        super().close()


def _deflate(block: bytes, window: bytes, level: int, final: bool) -> bytes:
    if window:
        compressor = zlib.compressobj(level, zlib.DEFLATED, -15, zdict=window)
    else:
        compressor = zlib.compressobj(level, zlib.DEFLATED, -15)
    body = compressor.compress(block)
    return body + compressor.flush(zlib.Z_FINISH if final else zlib.Z_SYNC_FLUSH)


_DONE: Final = b""


class BackgroundWriter:
    """
    Hands chunks to a thread that writes them into *target* (a compressor).

    zlib, zstandard and hashlib release the GIL, so the caller can read and
    hash the next input while this thread compresses the last. Small writes
    are batched into ~1 MiB chunks; at most *depth* chunks wait in the queue,
    so memory stays bounded. Not thread-safe: one producer thread.

    An error in the writing thread is raised from the next :meth:`write` or
    from :meth:`close`. After an error, or after :meth:`abort`, the thread
    drops what is queued and the target is left unfinished.
    """

    def __init__(self, target: Compressor, *, depth: int = 4) -> None:
        self._target = target
        self._queue: queue.Queue[bytes] = queue.Queue(maxsize=depth)
        self._pending = bytearray()
        self._error: BaseException | None = None
        self._abort = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="runlog-archive-writer", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        while True:
            chunk = self._queue.get()
            if chunk is _DONE:
                return
            if self._error is not None or self._abort.is_set():
                continue
            try:
                self._target.write(chunk)
            except BaseException as exc:  # noqa: BLE001  # handed to the producer
                self._error = exc

    def _raise_pending_error(self) -> None:
        if self._error is not None:
            raise self._error

    def write(self, data: bytes) -> int:
        """Queue *data*; blocks while the queue is full."""
        self._raise_pending_error()
        if len(data) >= CHUNK:
            self._flush_pending()
            self._queue.put(bytes(data))
        else:
            self._pending += data
            if len(self._pending) >= CHUNK:
                self._flush_pending()
        return len(data)

    def _flush_pending(self) -> None:
        if self._pending:
            self._queue.put(bytes(self._pending))
            self._pending.clear()

    def close(self) -> None:
        """Write what is queued, finish the target's stream, stop the thread."""
        self._flush_pending()
        self._queue.put(_DONE)
        self._thread.join()
        self._raise_pending_error()
        self._target.close()

    def abort(self) -> None:
        """Stop the thread without finishing the stream (the output is dropped)."""
        self._abort.set()
        self._pending.clear()
        self._queue.put(_DONE)
        self._thread.join()
        if isinstance(self._target, ParallelGzipWriter):
            self._target.discard()


class ForwardReader(io.RawIOBase):
    """
    Reads *source* ahead in a thread; seeks only forward.

    Decompressing in the thread overlaps the caller's parsing and hashing
    (zlib, zstandard and hashlib release the GIL). Forward seeks let
    ``tarfile.open(fileobj=..., mode="r:")`` read it, and :meth:`feed` hands
    member data to a hash without copying it. At most *depth* chunks of
    *size* bytes are held. Errors from *source* are raised in the caller's
    thread, after the data read before them. :meth:`close` stops the thread;
    it does not close *source*. One consumer thread.
    """

    def __init__(self, source: BinaryIO, *, size: int = CHUNK, depth: int = 4) -> None:
        super().__init__()
        self._source = source
        self._size = size
        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._buffer = memoryview(b"")
        self._position = 0
        self._eof = False
        # what the last read() returned: the header block tarfile stopped at
        self.last_read = b""
        self._thread = threading.Thread(
            target=self._run, name="runlog-archive-reader", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                chunk = self._source.read(self._size)
            except BaseException as exc:  # noqa: BLE001  # handed to the reader
                self._put(exc)
                return
            self._put(chunk)
            if not chunk:
                return

    def _put(self, item: bytes | BaseException) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
            except queue.Full:
                continue
            return

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move forward to *offset* (from the start, or the current position)."""
        target = offset + (self._position if whence == io.SEEK_CUR else 0)
        if whence not in (io.SEEK_SET, io.SEEK_CUR) or target < self._position:
            raise io.UnsupportedOperation("this stream only seeks forward")
        self.feed(target - self._position, lambda _: None)
        return self._position

    def feed(self, size: int, consume: Callable[[memoryview], object]) -> int:
        """
        Pass the next *size* bytes to *consume* in pieces, without copying them.

        Returns:
            How many bytes were passed: fewer than *size* only at the end.
        """
        done = 0
        while done < size:
            if not self._buffer and not self._fill():
                break
            piece = self._buffer[: size - done]
            consume(piece)
            self._buffer = self._buffer[len(piece) :]
            done += len(piece)
        self._position += done
        return done

    def read(self, size: int = -1) -> bytes:
        """The next *size* bytes (all the rest when negative); fewer only at the end."""
        if size is None or size < 0:
            size = sys.maxsize
        if len(self._buffer) >= size:
            out = self._buffer[:size].tobytes()
            self._buffer = self._buffer[size:]
            self._position += size
        else:
            parts: list[bytes] = []
            self.feed(size, lambda piece: parts.append(piece.tobytes()))
            out = b"".join(parts)
        self.last_read = out
        return out

    def readall(self) -> bytes:
        return self.read()

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]  # io's stub takes any buffer
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def _fill(self) -> bool:
        if self._eof:
            return False
        item = self._queue.get()
        if isinstance(item, BaseException):
            self._eof = True
            raise item
        if not item:
            self._eof = True
            return False
        self._buffer = memoryview(item)
        return True

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.get_nowait()
            except queue.Empty:
                self._thread.join(0.01)
        super().close()
