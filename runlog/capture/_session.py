"""The capture session: tees of sys.stdout/sys.stderr, descriptors 1/2 on pipes."""

from __future__ import annotations

import atexit
import codecs
import fcntl
import io
import logging
import os
import select
import signal
import stat
import sys
import termios
import threading
import time
import warnings
from functools import partial
from types import CodeType
from typing import IO, Any, Final

from .._config import CAPTURE_MODES
from ..context import LogContext, RunState, current_step
from ..errors import ConfigurationError, LogWriteError
from ..handler import DynamicFileHandler, get_handler
from ._fast import FastTee, flavour_of
from ._lines import MAX_LINE, Emit, Pending

__all__ = [
    "FDS_ENV",
    "LOGGER",
    "PARTIAL_AFTER_S",
    "CaptureSession",
    "StreamTee",
    "active_session",
    "check_mode",
    "start_capture",
]

LOGGER: Final = "runlog.capture"
# an unterminated line is recorded (``partial: true``) once nobody wrote to
# it for this long (see #15)
PARTIAL_AFTER_S: Final = 1.0
_TICK_S: Final = 0.2
# Captured lines are queued and written, whole, by the thread that printed
# them once the oldest is 20 ms old, or by the flusher at least this often
# (which also takes what a FastTee holds): a print() costs no system call of
# its own, and a line printed 50 ms before a SIGKILL is on disk (see #15).
_WRITE_EVERY_S: Final = 0.02
# Writes without a line break are kept as a list of pieces; past this many
# they are joined and checked (a carriage return, the 1 MiB cut).
_FAST_CHUNKS: Final = 256
_READ_SIZE: Final = 1 << 16
# How long stop() waits for a reader to drain its pipe; a child still holding
# the pipe keeps the reader (a daemon) alive past that.
_DRAIN_WAIT_S: Final = 2.0
# How long a step change waits for output still in the pipes; a writer that
# never pauses cannot hold a step boundary longer than this.
_SYNC_WAIT_S: Final = 0.5
# The pipes this process reads in "fd" mode, as "dev:ino" words: a child that
# inherits one leaves that stream to the parent, so nothing is recorded twice.
FDS_ENV: Final = "RUNLOG_CAPTURE_FDS"
_STREAMS: Final = (("stdout", 1), ("stderr", 2))
# printable ASCII and the line break: a block of only these needs no escape
_PLAIN_BYTES: Final = bytes(range(32, 127)) + b"\n"

# Writes made while recording (a warning printed by the handler) or by a
# console echo are passed through, never recorded again (see #15).
_busy = threading.local()
_PASS_THROUGH: Final[frozenset[CodeType]] = frozenset(
    (
        DynamicFileHandler._to_console.__code__,  # runlog's own console echo
        # an application's logging handler: runlog records that record already
        logging.StreamHandler.emit.__code__,
    )
)

Key = tuple[int, int | None]


def check_mode(mode: object) -> str:
    """
    *mode* if it is a capture mode.

    Raises:
        ConfigurationError: Naming the bad value.
    """
    if not isinstance(mode, str) or mode not in CAPTURE_MODES:
        raise ConfigurationError(f"capture {mode!r}: use one of {list(CAPTURE_MODES)}")
    return mode


class _Nowhere(io.TextIOBase):
    """What a tee writes to where ``sys.stdout`` was None: nothing, but recorded."""

    @property
    def encoding(self) -> str:  # type: ignore[override]  # TextIOBase: a property too
        return "utf-8"

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        return len(s)


class _Buffer:
    """
    The unterminated text one thread has written to one stream.

    Only its thread appends to *chunks*, without a lock; whoever takes text
    out (its thread at a line end, the flusher after a second of silence)
    holds the session's lock and takes from the front, so an append racing
    with a take is kept. *key* is the (run generation, step) the text was
    first written in.
    """

    __slots__ = (
        "chunks",
        "key",
        "lines",
        "pending",
        "seen",
        "seen_at",
        "stream",
        "thread",
    )

    def __init__(self, stream: str, now: float) -> None:
        self.stream = stream
        self.chunks: list[str] = []
        self.key: Key = (-1, None)
        self.lines = 0  # text taken out so far: the flusher sees activity
        self.pending = Pending((-1, None), now)
        self.seen = (0, 0)
        self.seen_at = now
        self.thread = threading.current_thread()


class StreamTee:
    """
    Stands in for ``sys.stdout``/``sys.stderr``: writes through, records lines.

    Every write reaches the stream it wraps first, unchanged, so the terminal
    gets the same bytes in the same order; then complete lines are recorded
    in the step of the writing thread or task. Every other attribute
    (``encoding``, ``isatty``, ``fileno``, ``buffer``, ``errors``) is the
    wrapped stream's. Thread-safe.
    """

    def __init__(
        self, session: CaptureSession | None, name: str, original: Any, target: Any
    ) -> None:
        self._runlog_session = session
        self._runlog_name = name
        self._runlog_original = original
        self._runlog_local = threading.local()
        self._runlog_set_target(target)

    def _runlog_set_target(self, target: Any) -> None:
        self._runlog_target = target
        self._runlog_write = target.write

    def write(self, s: str) -> int:
        """Write *s* to the wrapped stream, then record the lines it completes."""
        written: int = self._runlog_write(s)
        session = self._runlog_session
        if session is None or not s:
            return written
        try:
            buf: _Buffer = self._runlog_local.buf
        except AttributeError:
            buf = self._runlog_local.buf = session.new_buffer(self._runlog_name)
        chunks = buf.chunks
        # the fast path of a print(): its pieces before the line break
        if "\n" not in s and "\r" not in s and len(chunks) < _FAST_CHUNKS:
            if not chunks:
                buf.key = _thread_key()
            chunks.append(s)
            return written
        if getattr(_busy, "on", False):
            return written
        # no caller frame when C code writes (a traceback at exit)
        caller = sys._getframe(0).f_back
        if caller is None or caller.f_code not in _PASS_THROUGH:
            try:
                session.take(self._runlog_name, buf, s)
            except LogWriteError as exc:
                session.give_up(exc)
        return written

    def writelines(self, lines: Any) -> None:
        """Write each of *lines* as :meth:`write` does."""
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        """Flush the stream written to (and the wrapped one, when they differ)."""
        self._runlog_target.flush()
        if self._runlog_original is not self._runlog_target:
            self._runlog_original.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._runlog_original, name)

    def __repr__(self) -> str:
        return f"<runlog capture of {self._runlog_original!r}>"


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class _FdPipe:
    """One descriptor (1 or 2) moved onto a pipe, drained by a reader thread."""

    def __init__(self, session: CaptureSession, name: str, fd: int) -> None:
        self.session = session
        self.name = name
        self.fd = fd
        self.saved = os.dup(fd)
        read_end, write_end = os.pipe()
        try:
            os.dup2(write_end, fd)  # inheritable: subprocesses write into it
        finally:
            os.close(write_end)
        self.read_end = read_end
        # held while a chunk is read and recorded: sync() waits on it
        self.lock = threading.Lock()
        st = os.fstat(fd)
        self.identity = f"{st.st_dev}:{st.st_ino}"
        self.thread = threading.Thread(
            target=self._drain, name=f"runlog-capture-fd{fd}", daemon=True
        )
        self.thread.start()

    def restore(self) -> None:
        """Put the original descriptor back; the reader ends at the pipe's EOF."""
        os.dup2(self.saved, self.fd)

    def _drain(self) -> None:
        # signals go to the main thread, which can act on them (see #3)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        decoder = codecs.getincrementaldecoder("utf-8")("backslashreplace")
        terminal = True
        try:
            while True:
                select.select([self.read_end], [], [])
                with self.lock:
                    data = os.read(self.read_end, _READ_SIZE)
                    if not data:
                        break
                    if terminal:
                        try:
                            _write_all(self.saved, data)
                        except OSError:
                            # the terminal went away (EPIPE, EIO): keep
                            # draining and recording, or every writer would
                            # block (see #15)
                            terminal = False
                    self._feed(decoder.decode(data))
            self._feed(decoder.decode(b"", final=True))
            self._feed(None)
        finally:
            os.close(self.read_end)

    def sync(self, timeout: float) -> None:
        """
        Wait until what was written so far is recorded (at most *timeout* s).

        Called when a step starts or ends, so output written inside the step
        is recorded in it despite the reader's latency (see #15).
        """
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                if _unread(self.read_end) == 0:
                    return
            if time.monotonic() >= deadline:
                return
            time.sleep(0.0005)

    def _feed(self, text: str | None) -> None:
        try:
            if text is None:
                self.session.flush_owner(-self.fd)
            elif text:
                self.session.feed(self.name, text, owner=-self.fd)
        except LogWriteError as exc:
            # this thread must go on draining, or every writer blocks: the
            # failure is said as on_write_error="warn" would (see #15)
            _warn_write_error(exc)

    def close(self) -> None:
        """Close the copy of the original descriptor once the reader is done."""
        if not self.thread.is_alive():
            os.close(self.saved)


def _unread(fd: int) -> int:
    try:
        buf = fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0")
    except OSError:  # closed at EOF: nothing more to read
        return 0
    return int.from_bytes(buf, sys.byteorder)


def _terminal_writer(original: Any, fd: int) -> IO[str] | None:
    """A text stream on a copy of *fd* as it was, if *original* writes to *fd*."""
    try:
        same = original is not None and original.fileno() == fd
    except (AttributeError, OSError, ValueError):  # no descriptor (Jupyter, capsys)
        same = False
    if not same:
        return None
    copy = os.dup(fd)
    # line-buffered whatever the original did: output reaching fd 1/2 through
    # the pipe comes out within the reader's latency, so Python's own lines
    # must not wait for a full block to keep their place among it (see #15)
    return open(  # closed by CaptureSession.stop
        copy,
        "w",
        buffering=1,
        encoding=getattr(original, "encoding", None) or "utf-8",
        errors=getattr(original, "errors", None) or "strict",
        closefd=True,
    )


def _inherited_pipes() -> frozenset[str]:
    return frozenset(os.environ.get(FDS_ENV, "").split())


class CaptureSession:
    """
    One process's capture while a run is open (see :func:`start_capture`).

    Thread-safe. Lines are recorded with component ``stdout``/``stderr``,
    level info, ``stream``, and ``partial``/``part``/``parts`` when they
    apply. In ``"fd"`` mode, output that reaches descriptors 1/2 without
    passing through ``sys.stdout``/``sys.stderr`` (C code, ``os.write``,
    children) is attributed to the step last entered in this process, not to
    a thread's; its order on the terminal relative to Python-level output is
    not guaranteed.
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.pid = os.getpid()
        self.generation = LogContext.get_instance().state.generation
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, int], Pending] = {}
        self._buffers: list[_Buffer] = []
        # lines are queued for the flusher; never in a forked child, which
        # has no flusher and may leave through os._exit (see #15)
        self._defer = True
        self._tees: list[tuple[str, StreamTee, Any]] = []
        self._writers: list[IO[str]] = []
        self._pipes: list[_FdPipe] = []
        self._stopped = threading.Event()
        self._flusher: threading.Thread | None = None
        self._exported_fds: str | None = None
        # Python's own streams in a single-threaded process (see FastTee):
        # their lines go to the step of the thread that started the capture
        self._fast: list[tuple[str, FastTee, Any]] = []
        self._fast_pending: dict[str, Pending] = {}
        self._owner = threading.get_ident()
        self._recording = True

    def start(self) -> None:
        """
        Install the tees (and in ``"fd"`` mode the pipes) and the flusher.

        Raises:
            ConfigurationError: In ``"fd"`` mode, if descriptor 1 or 2 does
                not exist.
        """
        skip: set[str] = set()
        if self.mode == "fd":
            inherited = _inherited_pipes()
            for name, fd in _STREAMS:
                try:
                    st = os.fstat(fd)
                except OSError as exc:
                    raise ConfigurationError(
                        f"capture 'fd': file descriptor {fd} ({name}) does not "
                        f"exist here ({exc.strerror}); use capture='python'"
                    ) from exc
                if stat.S_ISFIFO(st.st_mode) and f"{st.st_dev}:{st.st_ino}" in (
                    inherited
                ):
                    skip.add(name)  # the parent records this pipe already
        try:
            for name, fd in _STREAMS:
                if name in skip:
                    continue
                original = getattr(sys, name)
                flavour = flavour_of(original)
                if self.mode == "python" and flavour and _alone(self._owner):
                    line = flavour == "line"
                    on_flush = self._line_ended if line else self._flush_fast
                    fast = FastTee(original, partial(on_flush, name), line)
                    self._fast.append((name, fast, original))
                    self._fast_pending[name] = Pending(_thread_key(), time.monotonic())
                    setattr(sys, name, fast.stream)
                    continue
                target: Any = original if original is not None else _Nowhere()
                if self.mode == "fd":
                    if original is not None:
                        original.flush()
                    writer = _terminal_writer(original, fd)
                    self._pipes.append(_FdPipe(self, name, fd))
                    if writer is not None:
                        self._writers.append(writer)
                        target = writer
                tee = StreamTee(
                    self, name, target if original is None else original, target
                )
                self._tees.append((name, tee, original))
                setattr(sys, name, tee)
        except BaseException:
            self.stop()
            raise
        if self._fast:
            get_handler().before_append = self._before_record
            _watch_threads(True)
        if self._pipes:
            ids = " ".join(pipe.identity for pipe in self._pipes)
            self._exported_fds = " ".join(sorted(_inherited_pipes() | {*ids.split()}))
            os.environ[FDS_ENV] = self._exported_fds
        self._flusher = threading.Thread(
            target=self._flush_loop, name="runlog-capture-flush", daemon=True
        )
        self._flusher.start()

    @property
    def streams(self) -> tuple[str, ...]:
        """The streams captured (``stdout``, ``stderr``), for messages and tests."""
        return tuple(name for name, _, _ in [*self._fast, *self._tees])

    def take_fast(self) -> None:
        """Write what the FastTees hold to their streams and record its lines."""
        if not self._fast:
            return
        was_busy = getattr(_busy, "on", False)
        _busy.on = True
        try:
            # takers record in the order they take: under the lock
            with self._lock:
                for name, fast, _ in self._fast:
                    written = fast.take_written()
                    data = fast.take()
                    if data:
                        _write_out(fast, data)
                    data = written + data if written else data
                    if data and self._recording:
                        self._record_fast(name, fast, data)
        except LogWriteError as exc:
            self.give_up(exc)
        finally:
            _busy.on = was_busy

    def _line_ended(self, name: str) -> None:
        # a "line" FastTee's line (or \r) ends, or the application flushed:
        # it reaches the stream now and is recorded with the next take
        for stream, fast, _ in self._fast:
            if stream != name:
                continue
            if getattr(_busy, "on", False):
                # runlog's own output (a warning while recording) passes
                data = fast.take()
                if data:
                    _write_out(fast, data)
                return
            # an application's logging handler: runlog records its record
            # already; no caller frame when C code writes (a traceback at exit)
            caller = sys._getframe(0).f_back
            keep = caller is None or caller.f_code not in _PASS_THROUGH
            with self._lock:
                data = fast.take()
                if data:
                    _write_out(fast, data)
                    if keep:
                        fast.written.append(data)
            return

    def _record_fast(self, name: str, fast: FastTee, data: bytes) -> None:
        # called with self._lock held
        pending = self._fast_pending[name]
        now = time.monotonic()
        if (
            not pending.text
            and not pending.part
            and data.isascii()
            and not data.translate(None, _PLAIN_BYTES)
            and b'"' not in data
            and b"\\" not in data
            and _no_line_over(data, MAX_LINE)
        ):
            # whole lines with nothing to escape: recorded as the block of
            # bytes they are, not a record at a time (see #15)
            end = data.rfind(b"\n") + 1
            pending.text = data[end:].decode("ascii")
            pending.last = now
            _HANDLER.write_plain_block(LOGGER, name, pending.key, data[:end])
            return
        text = data.decode(fast.stream.encoding, "surrogateescape")
        emits = pending.feed(text, now)
        if emits:
            _HANDLER.write_output(LOGGER, name, pending.key, emits)

    def _fast_partials(self, wanted: Any) -> None:
        # the unterminated text of the FastTees *wanted* picks, as partial lines
        was_busy = getattr(_busy, "on", False)
        _busy.on = True
        try:
            with self._lock:
                for name, pending in self._fast_pending.items():
                    if (pending.text or pending.part) and wanted(pending):
                        emits = pending.flush()
                        if emits and self._recording:
                            _HANDLER.write_output(LOGGER, name, pending.key, emits)
        except LogWriteError as exc:
            self.give_up(exc)
        finally:
            _busy.on = was_busy

    def _before_record(self) -> None:
        # a record of the thread that prints through the FastTees comes after
        # the lines it printed before it, in its files and in combined.log
        if threading.get_ident() != self._owner:
            return
        for _, tee, _ in self._fast:
            if tee.holds():
                if not getattr(_busy, "on", False):
                    self.take_fast()
                return

    def _flush_fast(self, name: str) -> None:
        # the application flushed a "block" FastTee: its text reaches the
        # stream now
        self.take_fast()
        for stream, _, original in self._fast:
            if stream == name:
                original.flush()

    def step_changed(self) -> None:
        """Record the FastTees' text in the step being left; follow the new one."""
        self.take_fast()
        self._fast_partials(lambda _: True)
        key = _thread_key()
        with self._lock:
            for pending in self._fast_pending.values():
                pending.key = key

    def to_precise(self) -> None:
        """
        Replace the FastTees by StreamTees: another thread or task may print
        in another step now. What they hold is recorded first; a FastTee the
        application kept writes through its StreamTee from then on.
        """
        if not self._fast:
            return
        self.take_fast()
        self._fast_partials(lambda _: True)
        with self._lock:
            fasts, self._fast = self._fast, []
            self._fast_pending.clear()
        _stop_fast_hooks(self)
        for name, fast, original in fasts:
            tee = StreamTee(self, name, original, original)
            self._tees.append((name, tee, original))
            if getattr(sys, name) is fast.stream:
                setattr(sys, name, tee)
            fast.forward(tee.write)

    def feed(self, stream: str, text: str, owner: int | None = None) -> None:
        """
        Take *text* written to *stream*; record the lines it completes.

        Args:
            stream: ``stdout`` or ``stderr``.
            text: What was written.
            owner: Whose unterminated line *text* continues: the calling
                thread (None), or a descriptor's reader (``-fd``), whose
                lines go to the step last entered in this process.

        Raises:
            LogWriteError: As a logging call, when a line cannot be written.
        """
        now = time.monotonic()
        who = threading.get_ident() if owner is None else owner
        with self._lock:
            pending = self._pending.get((stream, who))
            if pending is None:
                key = _thread_key() if owner is None else _process_key()
                pending = self._pending[(stream, who)] = Pending(key, now)
            emits = pending.feed(text, now)
            if not pending.text and not pending.part:
                del self._pending[(stream, who)]
        if emits:
            _record(stream, pending.key, emits, self._defer)

    def new_buffer(self, stream: str) -> _Buffer:
        """A buffer for the calling thread's unterminated text on *stream*."""
        buf = _Buffer(stream, time.monotonic())
        with self._lock:
            self._buffers.append(buf)
        return buf

    def take(self, stream: str, buf: _Buffer, text: str) -> None:
        """
        Take *text* written to *stream* by *buf*'s thread; record what it completes.

        Raises:
            LogWriteError: As a logging call, when a line cannot be written.
        """
        with self._lock:
            chunks = buf.chunks
            pending = buf.pending
            if chunks:
                count = len(chunks)
                text = "".join(chunks[:count]) + text
                del chunks[:count]
                key = buf.key
            else:
                key = _thread_key()
            if (
                text[-1] == "\n"
                and text.count("\n") == 1
                and "\r" not in text
                and not pending.part
                and len(text) <= MAX_LINE
            ):
                # one whole plain line, as print() makes: nothing to collapse,
                # cut or keep (see #16)
                emits: list[Emit] = [(text[:-1], {})]
            else:
                emits = pending.feed(text, time.monotonic())
            buf.lines += 1
            if pending.text:
                # what follows the last line break started now
                if "\n" in text:
                    buf.key = _thread_key()
                else:
                    buf.key = key
                chunks.append(pending.text)
                pending.text = ""
        if emits:
            _record(stream, key, emits, self._defer)

    def _take_stale(
        self, cutoff: float, now: float
    ) -> list[tuple[str, Key, list[Emit]]]:
        """The unterminated lines of threads silent since *cutoff*, taken out."""
        out: list[tuple[str, Key, list[Emit]]] = []
        with self._lock:
            for buf in list(self._buffers):
                seen = (buf.lines, len(buf.chunks))
                if seen != buf.seen:
                    buf.seen = seen
                    buf.seen_at = now
                    continue
                if buf.seen_at > cutoff:
                    continue
                if buf.chunks or buf.pending.part:
                    emits = self._take_buffer(buf)
                    out.append((buf.stream, buf.key, emits))
                elif not buf.thread.is_alive():
                    self._buffers.remove(buf)
        return out

    def _take_buffer(self, buf: _Buffer) -> list[Emit]:
        # called with self._lock held
        chunks = buf.chunks
        count = len(chunks)
        buf.pending.text = "".join(chunks[:count])
        del chunks[:count]
        buf.lines += 1
        return buf.pending.flush()

    def give_up(self, exc: LogWriteError) -> None:
        """
        Stop recording after *exc*, with a RuntimeWarning that says so.

        A print() never fails because its line could not be recorded (a full
        disk, a run finished by its owner): the text reached the terminal
        already. The warning names the path; later lines are not recorded.
        """
        self._recording = False
        for _, tee, _ in self._tees:
            tee._runlog_session = None
        was_busy = getattr(_busy, "on", False)
        _busy.on = True
        try:
            warnings.warn(
                f"runlog stopped recording captured output: {exc}",
                RuntimeWarning,
                stacklevel=3,
            )
        finally:
            _busy.on = was_busy

    def flush_owner(self, owner: int) -> None:
        """
        Record the unterminated lines of *owner* (a thread id, or ``-fd``).

        A thread's lines are found only when *owner* is the calling thread.
        """
        if owner == threading.get_ident():
            flushed: list[tuple[str, Key, list[Emit]]] = []
            with self._lock:
                for _, tee, _ in self._tees:
                    buf = getattr(tee._runlog_local, "buf", None)
                    if buf is not None and (buf.chunks or buf.pending.part):
                        flushed.append((buf.stream, buf.key, self._take_buffer(buf)))
            self._record_all(flushed, self._defer)
        self._flush(lambda who, _: who == owner)

    def _flush(self, wanted: Any, defer: bool | None = None) -> None:
        with self._lock:
            taken = [
                (where, pending)
                for where, pending in self._pending.items()
                if wanted(where[1], pending)
            ]
            flushed: list[tuple[str, Key, list[Emit]]] = []
            for where, pending in taken:
                del self._pending[where]
                flushed.append((where[0], pending.key, pending.flush()))
        self._record_all(flushed, self._defer if defer is None else defer)

    @staticmethod
    def _record_all(flushed: list[tuple[str, Key, list[Emit]]], defer: bool) -> None:
        for stream, key, emits in flushed:
            if emits:
                _record(stream, key, emits, defer)

    def _flush_loop(self) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        # what this thread prints (a warning) is never recorded back
        _busy.on = True
        handler = get_handler()
        ticks = 0
        per_check = round(_TICK_S / _WRITE_EVERY_S)
        while not self._stopped.wait(_WRITE_EVERY_S):
            handler.flush_deferred()
            self._report_deferred(handler)
            if self._fast:
                if _alone(self._owner):
                    self.take_fast()
                else:  # a thread started past the hook (_thread, C code)
                    self.to_precise()
            ticks += 1
            if ticks < per_check:
                continue
            ticks = 0
            now = time.monotonic()
            cutoff = now - PARTIAL_AFTER_S
            self._fast_partials(lambda pending, cut=cutoff: pending.last <= cut)
            try:
                self._flush(lambda _, pending, cut=cutoff: pending.last <= cut)
                self._record_all(self._take_stale(cutoff, now), self._defer)
            except LogWriteError as exc:
                # no caller to raise to in this thread (see #15)
                _warn_write_error(exc)

    def _report_deferred(self, handler: DynamicFileHandler) -> None:
        failure = handler.deferred_failure
        if failure is None:
            return
        handler.deferred_failure = None
        if handler.settings.on_write_error == "warn":
            _warn_write_error(failure)
        else:
            self.give_up(failure)

    def stop(self) -> None:
        """
        Record what is pending and put every stream and descriptor back.

        ``sys.stdout``/``sys.stderr`` get back exactly the objects replaced,
        unless the application replaced the tee meanwhile (then the tee stays
        where it is and only writes through). Safe to call twice, and in a
        forked child (which restores only its own streams).

        Raises:
            LogWriteError: If a pending line cannot be recorded (after every
                stream and descriptor was put back).
        """
        global _active
        if _active is self:
            _active = None
        self._stopped.set()
        fasts = self._fast
        for _, tee, _ in self._tees:
            tee.flush()
        own = os.getpid() == self.pid
        pipes, self._pipes = self._pipes, []
        for pipe in pipes:
            pipe.restore()
        if own:
            for pipe in pipes:
                pipe.thread.join(_DRAIN_WAIT_S)
                pipe.close()
            if self._flusher is not None and self._flusher.is_alive():
                self._flusher.join()
        if self._exported_fds is not None:
            if os.environ.get(FDS_ENV) == self._exported_fds:
                os.environ.pop(FDS_ENV, None)
            self._exported_fds = None
        try:
            if own:
                self.take_fast()
                self._fast_partials(lambda _: True)
                handler = get_handler()
                # queued lines first: they were printed before the pending ones
                handler.flush_deferred()
                self._report_deferred(handler)
                self._flush(lambda *_: True, defer=False)
                with self._lock:
                    flushed = [
                        (buf.stream, buf.key, self._take_buffer(buf))
                        for buf in self._buffers
                        if buf.chunks or buf.pending.part
                    ]
                    self._buffers.clear()
                self._record_all(flushed, False)
            else:
                with self._lock:
                    self._pending.clear()
                    self._buffers.clear()
        finally:
            self._fast = []
            self._fast_pending.clear()
            _stop_fast_hooks(self)
            for name, fast, original in fasts:
                if getattr(sys, name) is fast.stream:
                    setattr(sys, name, original)
                fast.forward(original.write)
            tees, self._tees = self._tees, []
            for name, tee, original in tees:
                tee._runlog_session = None
                if getattr(sys, name) is tee:
                    setattr(sys, name, original)
            writers, self._writers = self._writers, []
            for writer in writers:
                writer.flush()
                for _, tee, original in tees:
                    if tee._runlog_target is writer:
                        # a tee the application kept writes on where it wraps
                        tee._runlog_set_target(original)
                writer.close()

    def sync(self) -> None:
        """Wait (briefly) until the pipes' unread output is recorded."""
        if os.getpid() == self.pid:
            for pipe in self._pipes:
                pipe.sync(_SYNC_WAIT_S)

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        self._pending.clear()
        for _, fast, _ in self._fast:
            # the parent writes and records what it printed
            fast.take()
            fast.take_written()
        for pending in self._fast_pending.values():
            pending.text = ""
            pending.part = 0
        self._owner = threading.get_ident()
        for buf in self._buffers:
            buf.chunks.clear()  # the parent records what it printed
            buf.pending.part = 0
        self._flusher = None
        self._defer = False
        # the parent drains the pipes; this process only writes into them
        self._pipes = []
        # no flusher here to take what a FastTee holds
        self.to_precise()


def _warn_write_error(exc: LogWriteError) -> None:
    warnings.warn(
        f"runlog could not record a captured line: {exc}", RuntimeWarning, stacklevel=2
    )


_CONTEXT: Final = LogContext.get_instance()
_HANDLER: Final = get_handler()


def _thread_key() -> Key:
    state = _CONTEXT.state
    return (state.generation, current_step(state))


# The step last entered or left by any thread of this process: output that
# reaches descriptor 1/2 directly is attributed to it (see #15).
_announced: Key | None = None


def _process_key() -> Key:
    state = LogContext.get_instance().state
    announced = _announced
    if announced is not None and announced[0] == state.generation:
        return announced
    return (state.generation, state.step)


def _record(stream: str, key: Key, emits: list[Emit], defer: bool) -> None:
    was_busy = getattr(_busy, "on", False)
    _busy.on = True
    try:
        _HANDLER.write_output(LOGGER, stream, key, emits, defer=defer)
    finally:
        _busy.on = was_busy


_active: CaptureSession | None = None
_installed = False


def active_session() -> CaptureSession | None:
    """The capture running in this process, or None."""
    return _active


def _on_step(step: int | None) -> None:
    global _announced
    session = _active
    if session is None:
        return
    if session._fast:
        if threading.get_ident() != session._owner or _in_event_loop():
            session.to_precise()
        else:
            session.step_changed()
    # what reached fd 1/2 so far was written in the step being left (see #15)
    session.sync()
    _announced = (LogContext.get_instance().state.generation, step)
    # a line left unterminated by a step is recorded when the step ends
    session.flush_owner(threading.get_ident())


def _on_context(old: RunState, new: RunState) -> None:
    global _announced
    session = _active
    if new.generation != old.generation:
        _announced = None
        if session is not None and session.generation == old.generation:
            session.stop()  # the run it recorded for is gone
    elif session is not None and session._fast and new.step != old.step:
        # set_step_context() moved the process's step
        if threading.get_ident() == session._owner:
            session.step_changed()
        else:
            session.to_precise()


def _after_fork_in_child() -> None:
    if _active is not None:
        _active._after_fork_in_child()


def _write_out(fast: FastTee, data: bytes) -> None:
    # the bytes as the wrapped stream would have encoded them (binary writes
    # to the FastTee's buffer included), after the text it holds itself
    original = fast.original
    original.flush()
    original.buffer.write(data)
    if fast.line:
        original.buffer.flush()


def _before_fork() -> None:
    # what a FastTee holds is written once, by this process (see #15)
    if _active is not None and os.getpid() == _active.pid:
        _active.take_fast()


def _no_line_over(data: bytes, limit: int) -> bool:
    # True if every run of bytes without a line break is shorter than
    # *limit*: each aligned window of limit/2 bytes holds a line break
    if len(data) < limit:
        return True
    window = limit // 2
    return all(
        data.find(b"\n", start, start + window) >= 0
        for start in range(0, len(data) - window + 1, window)
    )


def _alone(owner: int) -> bool:
    # no thread but *owner* and runlog's own may print
    return all(
        thread.ident == owner or thread.name.startswith("runlog-")
        for thread in threading.enumerate()
    )


def _in_event_loop() -> bool:
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return False
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


_previous_profile: Any = None


def _watch_threads(on: bool) -> None:
    # threading calls its profile hook in every thread it starts, before the
    # thread's own code: the moment FastTees must give way (see #15)
    global _previous_profile
    hook = threading.getprofile()
    if on and hook is not _thread_started:
        _previous_profile = hook
        threading.setprofile(_thread_started)
    elif not on and hook is _thread_started:
        threading.setprofile(_previous_profile)
        _previous_profile = None


def _thread_started(frame: Any, event: str, arg: Any) -> None:
    sys.setprofile(_previous_profile)
    session = _active
    if session is not None and not threading.current_thread().name.startswith(
        "runlog-"
    ):
        session.to_precise()


def _stop_fast_hooks(session: CaptureSession) -> None:
    handler = get_handler()
    if handler.before_append == session._before_record:
        handler.before_append = None
    _watch_threads(False)


def _write_at_exit() -> None:
    # the flusher is a daemon thread: lines it has not written yet are
    # written before the interpreter goes (see #15)
    session = _active
    if session is not None and os.getpid() == session.pid:
        # and what a FastTee holds: a child that joined the run ends
        # without finishing it (see #15)
        session.take_fast()
        session._fast_partials(lambda _: True)
        handler = get_handler()
        handler.flush_deferred()
        session._report_deferred(handler)


def _install_listeners() -> None:
    global _installed
    if _installed:
        return
    _installed = True
    context = LogContext.get_instance()
    context.add_step_listener(_on_step)
    context.add_listener(_on_context)
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
    atexit.register(_write_at_exit)
    # threading._shutdown runs these before atexit, also where a process
    # leaves through os._exit after it (multiprocessing's children)
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        register(_write_at_exit)


def start_capture(mode: str) -> CaptureSession | None:
    """
    Start capturing this process's output into the current run, per *mode*.

    ``"none"`` captures nothing; ``"python"`` tees ``sys.stdout`` and
    ``sys.stderr``; ``"fd"`` also moves descriptors 1 and 2 onto pipes that
    a reader thread drains to the original descriptors and the run. A
    capture still running here is stopped first. The capture stops with the
    run context (and by :meth:`CaptureSession.stop`).

    Returns:
        The session, or None for ``"none"``.

    Raises:
        ConfigurationError: For a bad *mode*, or ``"fd"`` where descriptor 1
            or 2 does not exist.
    """
    check_mode(mode)
    if mode == "none":
        return None
    global _active
    previous = _active
    if previous is not None:
        previous.stop()
    _install_listeners()
    session = CaptureSession(mode)
    session.start()
    _active = session
    return session
