"""DynamicFileHandler: decides the file for one record and writes it."""

from __future__ import annotations

import errno
import logging
import os
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import orjson

from . import _paths
from ._config import Settings, add_settings_listener, current_settings
from ._files import LineWriter
from ._records import (
    FLAT_TYPES,
    LEVEL_NAMES,
    LINE_OPTIONS,
    RESERVED_KEYS,
    Redactor,
    build_record,
    dumps_line,
    fallback_value,
    utc_timestamp,
)
from ._status import FINISHED_STATUSES, read_run_json
from ._text import BLOCK_KEYS, block_lines, clean, is_block
from .combined import (
    CombinedLog,
    format_human,
    format_pairs,
    format_written,
    human_line,
    line_head,
)
from .context import LOCAL_STEP, LogContext, RunState
from .errors import LogWriteError

__all__ = [
    "DEFAULT_COMPONENT",
    "EXTERNAL",
    "DynamicFileHandler",
    "exc_info_text",
    "get_handler",
    "is_console_handler",
]

EXTERNAL: Final = "external"
# The component of a record that names none: a file name nobody takes for the
# run-level logs/run.log, as step_NNN/run.log was (see #14). Runs written
# before keep their step_NNN/run.log, read like any other component file.
DEFAULT_COMPONENT: Final = "run"  # the record format fixes it; see loggers
# Keys structlog's standard processors (add_log_level, add_logger_name) put in
# an event dict; dropped from a foreign record when they repeat its own level
# and logger, so they are not written a second time as level_/logger_ (see #14).
_REPEATED_KEYS: Final = ("level", "logger")
# What structlog's ProcessorFormatter.wrap_for_formatter adds as extra= to the
# LogRecord whose message is the event dict; bookkeeping, not the app's pairs.
_STRUCTLOG_EXTRA: Final = ("_logger", "_name")
# How often a process looks at run.json to see whether its run was finished
# meanwhile (by another process): records after that are refused (see #12).
SEAL_CHECK_S: Final = 1.0
# Lines queued by write_output(defer=True) longer than this are written by
# the next call that queues more (see #15).
DEFER_WRITE_S: Final = 0.02
ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]

# Attributes every LogRecord has; anything else came from ``extra=``.
_STANDARD_ATTRS: Final = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__
) | {"message", "asctime", "taskName"}


def level_name(level_no: int) -> str:
    """The SPEC level name for a stdlib level number (custom levels round down)."""
    name = LEVEL_NAMES.get(level_no)
    if name is not None:
        return name
    for number in (50, 40, 30, 20):
        if level_no >= number:
            return LEVEL_NAMES[number]
    return "debug"


def format_exception(exc_info: ExcInfo) -> str:
    """The traceback of *exc_info* as one string."""
    return "".join(traceback.format_exception(*exc_info))


def exc_info_text(exc_info: object) -> str | None:
    """
    The traceback named by a structlog-style ``exc_info`` value, or None.

    Args:
        exc_info: ``True`` (the exception being handled now), an exception,
            a ``sys.exc_info()`` tuple, or something false.
    """
    if not exc_info:
        return None
    info: Any
    if isinstance(exc_info, BaseException):
        info = (type(exc_info), exc_info, exc_info.__traceback__)
    elif isinstance(exc_info, tuple) and len(exc_info) == 3:
        info = exc_info
    else:
        info = sys.exc_info()
    if info[0] is None:
        return None
    return format_exception(info)


def is_console_handler(handler: logging.Handler) -> bool:
    """
    True if *handler* prints to the terminal: a StreamHandler on stdout/stderr.

    File handlers and streams in memory (pytest's caplog, a StringIO) are not
    consoles. Handlers of other kinds (rich's RichHandler) are not recognised.
    """
    if not isinstance(handler, logging.StreamHandler) or isinstance(
        handler, logging.FileHandler
    ):
        return False
    stream = handler.stream
    if stream is None:
        return False
    if any(
        stream is std
        for std in (sys.stderr, sys.stdout, sys.__stderr__, sys.__stdout__)
    ):
        return True
    fileno = getattr(stream, "fileno", None)
    if not callable(fileno):
        return False
    try:
        return fileno() in (1, 2)
    except (OSError, ValueError):  # in memory, or closed: not the terminal
        return False


def _handlers_reached(name: str) -> Iterator[logging.Handler]:
    """Every handler a record of logger *name* reaches, as callHandlers walks them."""
    logger = logging.Logger.manager.loggerDict.get(name)
    current: logging.Logger | None = (
        logger if isinstance(logger, logging.Logger) else logging.getLogger()
    )
    while current is not None:
        yield from current.handlers
        if not current.propagate:
            return
        current = current.parent


def _own_level(name: str, default: int) -> int:
    """The level of logger *name* from the first ancestor (not root) that sets one."""
    loggers = logging.Logger.manager.loggerDict
    while name:
        logger = loggers.get(name)
        if isinstance(logger, logging.Logger) and logger.level:
            return logger.level
        name = name.rpartition(".")[0]
    return default


class _KeepAppThreshold(logging.Filter):
    """
    Keeps an application's handler to what it got before the run lowered root.

    Put on the application's handlers while runlog lowers the root level, so
    their output does not grow during a run (see #14). Once the application
    changes the root level or this handler's level itself
    (``caplog.set_level``), its choice counts instead.
    """

    def __init__(self, handler: logging.Handler, root_level: int, lowered: int):
        super().__init__()
        self.handler = handler
        self.handler_level = handler.level
        self.root_level = root_level
        self.lowered = lowered

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= self.root_level:
            return True
        if (
            logging.getLogger().level != self.lowered
            or self.handler.level != self.handler_level
        ):
            return True
        return record.levelno >= _own_level(record.name, self.root_level)


@dataclass(frozen=True, slots=True)
class _FoundRoot:
    """The root logger as install() found it, and what it changed."""

    level: int
    lowered_to: int | None
    filters: tuple[tuple[logging.Handler, _KeepAppThreshold], ...]


class DynamicFileHandler(logging.Handler):
    """
    Routes every record to its step/component file, combined.log and the console.

    One instance per process, installed on the root logger when a run context
    is first set. Records from runlog's own loggers reach :meth:`write`
    directly, without building a LogRecord; records from stdlib loggers
    (third-party libraries) arrive through :meth:`emit` and are written under
    component ``external`` unless they carry ``extra={"component": ...}``.

    Thread-safe and fork-safe. A record that cannot be written raises
    :class:`LogWriteError` at the logging call (or warns, with
    ``configure(on_write_error="warn")``) after the other destinations got it.
    """

    def __init__(self, settings: Settings | None = None) -> None:
        super().__init__(level=logging.NOTSET)
        self.context = LogContext.get_instance()
        self.settings = settings or current_settings()
        self.min_level = self.settings.min_level
        self.redactor = Redactor(self.settings.redact_keys)
        # one lock for the handler and both files: a record takes it once (#16)
        self.writer = LineWriter(self.settings.max_open_files, lock=self.lock)
        self.combined: CombinedLog | None = None
        self._routes: dict[tuple[str, int | None], Path] = {}
        self._routes_generation = -1
        self._seal_check_at = 0.0
        self._sealed: LogWriteError | None = None
        self._found: _FoundRoot | None = None
        # (path, line, human line) of records written with defer=True, in
        # order; appended without the lock, taken from the front under it
        self._deferred: list[tuple[Path, bytes, bytes]] = []
        self._deferred_at = 0.0
        self.deferred_failure: LogWriteError | None = None
        # called before a record is made: output a capture still holds goes
        # first, so timestamps, files and combined.log keep the order of events
        self.before_append: Callable[[], None] | None = None
        self.context.add_listener(self.on_context_change)

    def apply(self, settings: Settings) -> None:
        """Take new settings (from configure()); open files are reopened lazily."""
        old = self.settings
        self.settings = settings
        self.min_level = settings.min_level
        redactor = Redactor(settings.redact_keys)  # reads the environment again
        if settings.redact_keys == old.redact_keys:
            redactor.secrets |= self.redactor.secrets
        self.redactor = redactor
        self.writer.max_open = settings.max_open_files
        self._routes.clear()
        if self.combined is not None:
            self.combined.close()
        self.combined = self._make_combined(self.context.state)

    def on_context_change(self, old: RunState, new: RunState) -> None:
        """Close the files of a left run or step; prepare the new run's files."""
        if self._deferred:
            self.flush_deferred()
        if new.generation != old.generation:
            self.writer.close_all()
            if self.combined is not None:
                self.combined.close()
            self.combined = self._make_combined(new)
            self._routes.clear()
            self._seal_check_at = 0.0
            self._sealed = None
            if new.is_active:
                self.install()
            else:
                self.uninstall()
        elif old.step is not None and old.step != new.step and old.logs_dir is not None:
            self.writer.close_where(old.logs_dir / _paths.step_dir_name(old.step))

    def _make_combined(self, state: RunState) -> CombinedLog | None:
        if state.logs_dir is None or not self.settings.combined:
            return None
        return CombinedLog(
            _paths.combined_log(state.logs_dir),
            self.settings.combined_max_lines,
            self.settings.combined_trim_fraction,
            lock=self.lock,
        )

    def install(self) -> None:
        """
        Put this handler on the root logger so foreign records reach it.

        Lowers the root level to ``external_level`` when it is above it (a
        NOTSET root passes everything already and is left alone), and keeps
        what the application's own handlers pass as it was. Called when a run
        context is set; :meth:`uninstall` undoes it when the run ends. Not
        thread-safe on its own: the context calls it under its lock.
        """
        root = logging.getLogger()
        if self._found is None:
            level = root.level
            external = self.settings.external_level
            lowered = external if level > external else None
            filters: list[tuple[logging.Handler, _KeepAppThreshold]] = []
            if lowered is not None:
                for handler in _app_handlers(self):
                    keep = _KeepAppThreshold(handler, level, lowered)
                    handler.addFilter(keep)
                    filters.append((handler, keep))
                root.setLevel(lowered)
            self._found = _FoundRoot(level, lowered, tuple(filters))
        if self not in root.handlers:
            root.addHandler(self)

    def uninstall(self) -> None:
        """
        Give the root logger back as :meth:`install` found it (see #14).

        Removes this handler and the filters it put on the application's
        handlers, and restores the root level unless the application set
        another one meanwhile. Handlers the application added or removed
        during the run stay as it left them. Does nothing when not installed.
        """
        found = self._found
        if found is None:
            return
        self._found = None
        root = logging.getLogger()
        root.removeHandler(self)
        if found.lowered_to is not None and root.level == found.lowered_to:
            root.setLevel(found.level)
        for handler, keep in found.filters:
            handler.removeFilter(keep)

    def close(self) -> None:
        """Close every file; the handler keeps working and reopens files on demand."""
        if self._deferred:
            self.flush_deferred()
        self.writer.close_all()
        if self.combined is not None:
            self.combined.close()
        super().close()

    def emit(self, record: logging.LogRecord) -> None:
        """
        Write a stdlib LogRecord (a third-party library's) like any other record.

        ``extra=`` pairs become fields. A record whose message is a structlog
        event dict (structlog configured with ``ProcessorFormatter.wrap_for_formatter``)
        is written with the dict's ``event`` as the message and its other
        pairs as fields. The record is echoed to the console only when no
        console handler of the application gets it too, so nothing prints twice.

        Raises:
            LogWriteError: As :meth:`write`.
        """
        extra = {k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRS}
        exc_text = None
        message = record.msg
        if isinstance(message, dict) and "event" in message:
            # structlog through stdlib hands over its event dict as the
            # message: its pairs stay fields, not str(dict) (see #14)
            for key in _STRUCTLOG_EXTRA:
                extra.pop(key, None)
            fields = dict(message)
            event: Any = fields.pop("event")
            exc_text = exc_info_text(fields.pop("exc_info", None))
            fields.pop("stack_info", None)
            for key, value in extra.items():
                fields.setdefault(key, value)
            extra = fields
        else:
            event = record.getMessage()
        level = LEVEL_NAMES.get(record.levelno) or level_name(record.levelno)
        for key, same in zip(_REPEATED_KEYS, (level, record.name), strict=True):
            value = extra.get(key)
            if isinstance(value, str) and value.lower() == same.lower():
                del extra[key]
        component = extra.pop("component", EXTERNAL)
        if not _paths.is_safe_name(component):
            extra["component_"] = component
            component = EXTERNAL
        if exc_text is None:
            if record.exc_info and record.exc_info[0] is not None:
                exc_text = format_exception(record.exc_info)
            elif record.exc_text:
                exc_text = record.exc_text
        self.write(
            record.levelno,
            event,
            record.name,
            component,
            extra,
            exc_text,
            echo=not self._app_prints(record.name),
        )

    def _app_prints(self, name: str) -> bool:
        # one console line per record: when the app's own console handler
        # gets this record, runlog does not echo it as well (see #14)
        return any(
            handler is not self and is_console_handler(handler)
            for handler in _handlers_reached(name)
        )

    def write(
        self,
        level_no: int,
        event: Any,
        logger_name: str,
        component: str,
        extra: Mapping[str, Any],
        exc_text: str | None = None,
        *,
        echo: bool = True,
        key: tuple[int, int | None] | None = None,
        defer: bool = False,
    ) -> None:
        """
        Route one record: its step/run file, combined.log, then the console.

        Args:
            level_no: The stdlib level number.
            event: The message.
            logger_name: Written as ``logger``.
            component: Decides the file.
            extra: The caller's pairs, written after the reserved keys.
            exc_text: A formatted traceback, written as ``exception``.
            echo: False keeps the record off the console whatever
                ``console_level`` says (the application printed it already).
            key: ``(run generation, step)`` the record belongs to, instead
                of the calling thread's step (a step of another run counts
                as the process-wide step).
            defer: Queue the record's lines instead of writing them: they
                are written, whole, by the next :meth:`flush_deferred` or
                the next record written without *defer*, whichever is first.
                Whoever defers must call :meth:`flush_deferred` soon (output
                capture does so within 20 ms, see #15).

        Raises:
            ContextError: If *component* is not a safe name (when a run is set).
            LogWriteError: If a file could not be written, after every other
                destination was tried; only under ``on_write_error="raise"``.
        """
        if self.before_append is not None:
            self.before_append()
        # the first use of the context may join a run and apply its settings
        state = self.context.state
        settings = self.settings
        # current_step(), inlined: this runs for every record (see #16)
        local = LOCAL_STEP.get() if key is None else key
        if local is not None and local[0] == state.generation:
            step = local[1]
        else:
            step = state.step
        ts = utc_timestamp()
        level = LEVEL_NAMES.get(level_no) or level_name(level_no)
        redactor = self.redactor
        if (
            type(event) is str
            and not redactor.secrets
            and redactor.plain_keys.issuperset(extra)
            and FLAT_TYPES.issuperset(map(type, extra.values()))
        ):
            # build_record()'s common case, written out: every key seen
            # before and neither reserved nor a credential, every value flat,
            # so the record's own pairs are *extra* as it is (see #16)
            record = {
                "ts": ts,
                "level": level,
                "event": event,
                "logger": logger_name,
                "component": component,
                "run_id": state.run_id,
                "framework": state.framework,
                "step": step,
            }
            record.update(extra)
            pairs: Mapping[str, Any] | None = extra
        else:
            record = build_record(
                ts,
                level,
                event,
                logger_name,
                component,
                state.run_id,
                state.framework,
                step,
                extra,
                redactor,
            )
            pairs = None
        if exc_text is not None:
            record["exception"] = redactor.scrub_text(exc_text)
            pairs = None
        failure: LogWriteError | None = None
        if state.logs_dir is not None and level_no >= settings.file_level:
            if time.monotonic() >= self._seal_check_at:
                self._check_sealed(state)
            if self._sealed is not None:
                failure = self._sealed
            else:
                path = self._routes.get((component, step))
                if path is None or self._routes_generation != state.generation:
                    path = self._route(state, component, step)
                failure = self._write_files(record, path, defer, pairs)
        if (
            echo
            and level_no >= settings.console_level
            and settings.console_format != "off"
        ):
            self._to_console(record, settings.console_format)
        if settings.extra_sinks:
            for sink in settings.extra_sinks:
                sink(record)  # type: ignore[operator]  # sinks are callables by contract
        if failure is not None:
            self._report(failure)

    def write_output(
        self,
        logger_name: str,
        stream: str,
        key: tuple[int, int | None],
        lines: list[tuple[str, dict[str, Any]]],
        *,
        defer: bool = False,
    ) -> None:
        """
        Record lines a process printed: level info, component *stream*.

        The same records as :meth:`write` with ``extra={"stream": stream,
        **fields}``, ``echo=False`` and *key* makes for each ``(event,
        fields)`` of *lines*, built without its generality: captured output
        can be a line per print() (see #15, #16).

        Raises:
            LogWriteError: As :meth:`write`.
        """
        state = self.context.state
        redactor = self.redactor
        tail = self._fast_output_tail(state, stream, key)
        if (
            not tail
            # a part of a long line, or a partial one: the rare case
            or (lines[0][1] if len(lines) == 1 else any(f for _, f in lines))
        ):
            for event, fields in lines:
                extra = {"stream": stream, **fields} if fields else {"stream": stream}
                self.write(
                    20,
                    event,
                    logger_name,
                    stream,
                    extra,
                    echo=False,
                    key=key,
                    defer=defer,
                )
            return
        step = key[1]
        path = self._output_path(state, stream, step)
        if path is None:
            return
        combined = self.combined
        run_id = state.run_id
        framework = state.framework
        queued: list[tuple[Path, bytes, bytes]] = []
        secrets = redactor.secrets
        for event, _ in lines:
            if secrets:
                event = redactor.scrub_text(event)
            ts = utc_timestamp()
            record = {
                "ts": ts,
                "level": "info",
                "event": event,
                "logger": logger_name,
                "component": stream,
                "run_id": run_id,
                "framework": framework,
                "step": step,
                "stream": stream,
            }
            try:
                line = orjson.dumps(record, option=LINE_OPTIONS)
            except (orjson.JSONEncodeError, TypeError):
                line = dumps_line(record)  # a lone surrogate: written escaped
            human = (
                (line_head(ts, "info", stream, step, event) + tail).encode(
                    "utf-8", "backslashreplace"
                )
                + b"\n"
                if combined is not None
                else b""
            )
            queued.append((path, line, human))
        if defer:
            deferred = self._deferred
            now = time.monotonic()
            if not deferred:
                self._deferred_at = now
            deferred.extend(queued)
            if now - self._deferred_at >= DEFER_WRITE_S:
                # a thread that goes on printing writes its own lines, so the
                # flusher of whoever deferred seldom needs the GIL (see #15)
                self.flush_deferred()
            return
        for path, line, human in queued:
            failure = self._append(path, line, human)
            if failure is not None:
                self._report(failure)

    def _fast_output_tail(
        self, state: RunState, stream: str, key: tuple[int, int | None]
    ) -> str:
        # combined.log's " stream=..." of captured output of *stream*, or ""
        # when its records must be written one by one through write(): no
        # run, another run's key, info not written to files, extra sinks, or
        # a "stream" key that is redacted
        settings = self.settings
        if (
            state.logs_dir is None
            or key[0] != state.generation
            or settings.file_level > 20
            or settings.extra_sinks
            or self.redactor.is_secret_key("stream")
        ):
            return ""
        tail = _OUTPUT_TAILS.get(stream)
        return _output_tail(stream) if tail is None else tail

    def _output_path(
        self, state: RunState, stream: str, step: int | None
    ) -> Path | None:
        # the file of captured output of *stream* in *step*; None (reported
        # as a logging call would) once the run is finished
        if time.monotonic() >= self._seal_check_at:
            self._check_sealed(state)
        if self._sealed is not None:
            self._report(self._sealed)
            return None
        path = self._routes.get((stream, step))
        if path is None or self._routes_generation != state.generation:
            path = self._route(state, stream, step)
        return path

    def write_plain_block(
        self,
        logger_name: str,
        stream: str,
        key: tuple[int, int | None],
        block: bytes,
    ) -> None:
        """
        Record a block of whole printed lines, stamped now, as
        :meth:`write_output` would record them one by one.

        The caller has checked that *block* is lines each ending in ``\\n``
        of printable ASCII without ``"`` or ``\\``: nothing to escape in
        either file, so the block becomes its JSON lines and its combined.log
        lines by one ``bytes.replace`` each, written with one ``os.write`` per
        file (see #15).

        Raises:
            LogWriteError: As :meth:`write`.
        """
        if not block:
            return
        state = self.context.state
        tail = self._fast_output_tail(state, stream, key)
        # secrets in the text are scrubbed line by line, on the careful path
        if not tail or self.redactor.secrets:
            lines = block.decode("ascii").split("\n")[:-1]
            self.write_output(logger_name, stream, key, [(x, {}) for x in lines])
            return
        step = key[1]
        path = self._output_path(state, stream, step)
        if path is None:
            return
        ts = utc_timestamp()
        template = orjson.dumps(
            {
                "ts": ts,
                "level": "info",
                "event": "\0",
                "logger": logger_name,
                "component": stream,
                "run_id": state.run_id,
                "framework": state.framework,
                "step": step,
                "stream": stream,
            },
            option=LINE_OPTIONS,
        )
        head, after = template.split(b'"event":"\\u0000"', 1)
        head += b'"event":"'
        after = b'"' + after
        # made in one pass, never copied whole: the head joins the (smaller)
        # input, and the head its last line break brings is left unwritten
        made = (head + block).replace(b"\n", after + head)
        records = memoryview(made)[: len(made) - len(head)]
        human = b""
        count = 0
        combined = self.combined
        if combined is not None:
            # lines a trim would drop at once are not written (see #15)
            cut = block.rsplit(b"\n", combined.keep + 1)
            shown = block if len(cut) <= combined.keep + 1 else block[len(cut[0]) + 1 :]
            count = len(cut) - 1 if shown is block else combined.keep
            start = line_head(ts, "info", stream, step, "").encode("utf-8")
            ending = tail.encode("utf-8") + b"\n"
            human = (start + shown[:-1]).replace(b"\n", ending + start) + ending
        failure = self._append(path, records, human, count)
        if failure is not None:
            self._report(failure)

    def _write_files(
        self,
        record: dict[str, Any],
        path: Path,
        defer: bool = False,
        pairs: Mapping[str, Any] | None = None,
    ) -> LogWriteError | None:
        # *pairs*: the caller's pairs, when the record holds them unchanged
        try:
            line = orjson.dumps(record, default=fallback_value, option=LINE_OPTIONS)
        except (orjson.JSONEncodeError, TypeError, RecursionError):
            line = dumps_line(record)  # the slow, safe path of every odd value
        if self.combined is None:
            human = b""
        elif pairs is None:
            human = format_written(record).encode("utf-8", "backslashreplace") + b"\n"
        else:
            # format_written() from the pieces at hand (see #16)
            human = human_line(
                record["ts"],
                record["level"],
                record["component"],
                record["step"],
                record["event"],
                pairs,
            )
        if defer:
            self._deferred.append((path, line, human))
            return None
        return self._append(path, line, human)

    def _append(
        self, path: Path, line: bytes | memoryview, human: bytes, count: int = 1
    ) -> LogWriteError | None:
        """
        One record's line (or *count* records' lines) to its file and to
        combined.log; the failure, if any.
        """
        failure: LogWriteError | None = None
        combined = self.combined
        # one lock for both files: threads queue once per record, not twice
        with self.lock:  # type: ignore[union-attr]  # createLock() made it
            if self._deferred:
                # queued lines first, so each file keeps the order of events
                self._write_deferred()
            try:
                self.writer.append_locked(path, line)
            except LogWriteError as exc:
                failure = exc
            if combined is not None:
                try:
                    combined.append_locked(human, count)
                except LogWriteError as exc:
                    failure = failure or exc
        return failure

    def flush_deferred(self) -> None:
        """
        Write the lines queued by ``write(..., defer=True)``. Thread-safe.

        Each file gets one ``os.write`` of whole lines. A failure does not
        raise here (the records' callers are gone): it is kept in
        :attr:`deferred_failure` for the code that deferred them to report.
        """
        with self.lock:  # type: ignore[union-attr]  # createLock() made it
            self._write_deferred()

    def _write_deferred(self) -> None:
        # called with self.lock held; writers append at the end meanwhile,
        # so only the first *count* items are taken
        queue = self._deferred
        count = len(queue)
        if not count:
            return
        taken = queue[:count]
        del queue[:count]
        paths, lines, humans = zip(*taken, strict=True)
        by_path: dict[Path, list[bytes]]
        if paths.count(paths[0]) == count:  # one file: the common case
            by_path = {paths[0]: list(lines)}
        else:
            by_path = {}
            for path, line in zip(paths, lines, strict=True):
                by_path.setdefault(path, []).append(line)
        failure: LogWriteError | None = None
        for path, chunk in by_path.items():
            try:
                self.writer.append(path, b"".join(chunk))
            except LogWriteError as exc:
                failure = failure or exc
        combined = self.combined
        written = b"".join(humans)
        if combined is not None and written:
            try:
                combined.append(written, written.count(b"\n"))
            except LogWriteError as exc:
                failure = failure or exc
        if failure is not None and self.deferred_failure is None:
            self.deferred_failure = failure

    def _check_sealed(self, state: RunState) -> None:
        # A process that inherited the run may outlive its finish() in the
        # owner: once run.json says the run ended, its records are refused
        # rather than written after the archive was made (see #12).
        self._seal_check_at = time.monotonic() + SEAL_CHECK_S
        assert state.logs_dir is not None
        try:
            info = read_run_json(state.logs_dir)
        except OSError:
            return  # unreadable: the summary reports it; logging goes on
        status = info.get("status") if info else None
        if status in FINISHED_STATUSES:
            self._sealed = LogWriteError(
                errno.EROFS,
                f"run {state.run_id!r} is finished ({status}); records after "
                "finish() are refused",
                str(state.logs_dir),
            )

    def _route(self, state: RunState, component: str, step: int | None) -> Path:
        if self._routes_generation != state.generation:
            self._routes.clear()
            self._routes_generation = state.generation
        key = (component, step)
        path = self._routes.get(key)
        if path is None:
            _paths.check_name("component", component)
            assert state.logs_dir is not None
            path = _paths.route(
                state.logs_dir, component, step, self.settings.run_level_components
            )
            if len(self._routes) > 10_000:
                self._routes.clear()
            self._routes[key] = path
        return path

    def _to_console(self, record: dict[str, Any], console_format: str) -> None:
        stream = sys.stderr
        if stream is None:
            return
        # past a capture tee, to what it writes to: runlog's own echo is
        # never recorded back as a stderr line (see #15)
        stream = getattr(stream, "_runlog_target", stream)
        if console_format == "json":
            line = dumps_line(record).decode("utf-8")
            text = clean(line[:-1], json=True) + "\n"
        else:
            text = _pretty(record, _is_tty(stream))
        stream.write(text)

    def _report(self, failure: LogWriteError) -> None:
        if self.settings.on_write_error == "warn":
            warnings.warn(
                f"runlog could not write a record: {failure}",
                RuntimeWarning,
                stacklevel=4,
            )
            return
        raise failure

    def reset_after_fork(self) -> None:
        """In a forked child: fresh locks (the parent's may have been held)."""
        self.createLock()
        self._deferred = []  # the parent writes what it queued
        self.writer.reset_after_fork(self.lock)
        if self.combined is not None:
            self.combined.reset_after_fork(self.lock)


def _app_handlers(own: logging.Handler) -> list[logging.Handler]:
    """Every handler on the root logger and the named loggers, except *own*, once."""
    found: dict[int, logging.Handler] = {}
    loggers: list[Any] = [logging.getLogger()]
    loggers += list(logging.Logger.manager.loggerDict.values())
    for logger in loggers:
        for handler in getattr(logger, "handlers", ()):  # a PlaceHolder has none
            if handler is not own:
                found.setdefault(id(handler), handler)
    return list(found.values())


def _pretty(record: dict[str, Any], color: bool) -> str:
    """
    The console lines of *record*: the human line, then its blocks.

    A traceback (``exception``, or ``traceback`` of a failed ``step_end``)
    and any other value holding line breaks is shown below the line,
    indented, as ``runlog show`` shows it (see #16).
    """
    blocks = [
        (key, value)
        for key, value in record.items()
        if key not in RESERVED_KEYS and is_block(key, value)
    ]
    if not blocks:
        return format_human(record, color=color) + "\n"
    shown_below = {key for key, _ in blocks}
    inline = {key: value for key, value in record.items() if key not in shown_below}
    lines = [format_human(inline, color=color)]
    for key, value in blocks:
        for kind, line in block_lines(key, value):
            if color:
                code = "31" if kind == "text" and key in BLOCK_KEYS else "2"
                line = f"\x1b[{code}m{line}\x1b[0m"
            lines.append(line)
    return "\n".join(lines) + "\n"


def _is_tty(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except ValueError:  # a closed stream
        return False


# " stream=stdout": what follows the event in a captured line's human line;
# "" for a stream name that is not a plain one (then write() is used)
_OUTPUT_TAILS: dict[str, str] = {}


def _output_tail(stream: str) -> str:
    tail = ""
    if type(stream) is str and stream not in RESERVED_KEYS:
        tail = f" {format_pairs([('stream', stream)])}"
    if len(_OUTPUT_TAILS) < 64:
        _OUTPUT_TAILS[stream] = tail
    return tail


_HANDLER: DynamicFileHandler | None = None


def get_handler() -> DynamicFileHandler:
    """The process's one DynamicFileHandler (created on first use)."""
    global _HANDLER
    if _HANDLER is None:
        _HANDLER = DynamicFileHandler()
        add_settings_listener(_HANDLER.apply)
        os.register_at_fork(after_in_child=_after_fork_in_child)
    return _HANDLER


def _after_fork_in_child() -> None:
    if _HANDLER is not None:
        _HANDLER.reset_after_fork()
