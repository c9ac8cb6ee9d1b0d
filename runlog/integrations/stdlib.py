"""The stdlib bridge: ``configure(stdlib_propagate=True)`` hands records to logging."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Mapping
from dataclasses import replace
from types import FrameType
from typing import Any, Final

from .._config import Settings, add_settings_listener, apply_settings, current_settings
from .._records import LEVEL_NUMBERS
from ..handler import DynamicFileHandler, get_handler

__all__ = ["StdlibSink", "install"]

# Names a Formatter sets on a record: a pair with one of these names (or a
# name the LogRecord already has, such as ``name`` or ``lineno``) is set as
# ``<key>_``, the way build_record keeps a pair named like a reserved key.
_FORMATTER_ATTRIBUTES: Final = frozenset({"message", "asctime"})
# the record's keys a LogRecord carries in its own fields (name, levelno,
# msg, exc_text), or not at all (ts: ``created`` is the handover's time)
_NOT_ATTRIBUTES: Final = frozenset({"ts", "level", "event", "logger", "exception"})
# frames in runlog's own files are skipped when looking for the caller
_RUNLOG_PREFIX: Final = os.path.dirname(os.path.dirname(__file__)) + os.sep
# DynamicFileHandler.emit is how a stdlib record (a third-party library's)
# reaches the sinks: that record went through the hierarchy already.
_FOREIGN_CODE: Final = DynamicFileHandler.emit.__code__
_UNKNOWN_CALLER: Final = ("(unknown file)", 0, "(unknown function)")


class _Handover(threading.local):
    record: logging.LogRecord | None = None


_HANDOVER = _Handover()


def _not_handed_over(record: logging.LogRecord) -> bool:
    # runlog's own handler sits on the root logger while a run is set: the
    # record being handed over is already in the run's files (see #14)
    return record is not _HANDOVER.record


def _silent_logger() -> logging.Logger:
    # Outside the manager's tree, with one handler that does nothing: hooks on
    # Logger.callHandlers (Sentry's LoggingIntegration) still see a record
    # when the application configured no handler, and stdlib's last resort
    # does not print it next to runlog's own console line (see #14).
    logger = logging.Logger("runlog.stdlib_bridge")
    logger.addHandler(logging.NullHandler())
    logger.propagate = False
    return logger


_SILENT: Final = _silent_logger()


class StdlibSink:
    """
    A runlog extra sink: hands each finished record to the stdlib logger hierarchy.

    The record becomes a real ``logging.LogRecord`` made by the current
    record factory: ``name`` is the record's ``logger``, the level its
    level, ``msg`` its event (no ``args``), ``exc_text`` its traceback, the
    caller's file, line and function as stdlib would find them, and as
    attributes ``component``, ``run_id``, ``framework``, ``step`` and every
    pair of the record (a pair named like an existing attribute gets a
    trailing ``_``). Values are the logged objects after redaction, so a
    secret never reaches another handler. The logger's level, ``disabled``
    flag and filters apply as for a stdlib record, then every handler of the
    hierarchy gets it except runlog's own :class:`DynamicFileHandler`.

    Records of stdlib loggers that runlog writes (component ``external``)
    are not handed back: the hierarchy had them already. A record logged
    by a handler while a record is handed over is written by runlog but not
    handed over again, so a handler that logs cannot loop. Thread-safe.
    Not guaranteed: a custom level number reaches stdlib rounded down to
    the level name runlog writes (25 arrives as 20).
    """

    def __init__(self) -> None:
        # addFilter ignores a filter that is already there
        get_handler().addFilter(_not_handed_over)

    def __call__(self, record: Mapping[str, Any]) -> None:
        """Hand one finished (redacted) runlog record to the stdlib handlers."""
        if _HANDOVER.record is not None:
            return
        caller = _find_caller(sys._getframe(1))
        if caller is None:
            return
        logger = _logger(str(record.get("logger") or "root"))
        level = LEVEL_NUMBERS.get(str(record.get("level")), logging.INFO)
        if not logger.isEnabledFor(level):
            return
        made = _make_log_record(logger.name, level, caller, record)
        _HANDOVER.record = made
        try:
            if _has_other_handlers(logger):
                logger.handle(made)
            elif not logger.disabled and logger.filter(made):
                _SILENT.callHandlers(made)
        finally:
            _HANDOVER.record = None


def _logger(name: str) -> logging.Logger:
    # the manager's dict first: logging.getLogger takes the module lock
    found = logging.Logger.manager.loggerDict.get(name)
    if isinstance(found, logging.Logger):
        return found
    return logging.getLogger(name)


def _find_caller(frame: FrameType | None) -> tuple[str, int, str] | None:
    """The first frame outside runlog, or None for a stdlib record runlog wrote."""
    while frame is not None:
        code = frame.f_code
        if code is _FOREIGN_CODE:
            return None
        if not code.co_filename.startswith(_RUNLOG_PREFIX):
            return code.co_filename, frame.f_lineno or 0, code.co_name
        frame = frame.f_back
    return _UNKNOWN_CALLER


def _make_log_record(
    name: str, level: int, caller: tuple[str, int, str], record: Mapping[str, Any]
) -> logging.LogRecord:
    path, line, function = caller
    made = logging.getLogRecordFactory()(
        name, level, path, line, record.get("event"), None, None, function, None
    )
    attributes = made.__dict__
    # one pass in record order: component, run_id, framework, step, the pairs
    for key, value in record.items():
        if key in _NOT_ATTRIBUTES:
            continue
        if key in attributes or key in _FORMATTER_ATTRIBUTES:
            key = _free_name(attributes, str(key))
        attributes[key] = value
    exception = record.get("exception")
    if isinstance(exception, str):
        made.exc_text = exception
    return made


def _free_name(attributes: Mapping[str, Any], key: str) -> str:
    while key in attributes or key in _FORMATTER_ATTRIBUTES:
        key = f"{key}_"
    return key


def _has_other_handlers(logger: logging.Logger) -> bool:
    """Whether a handler other than runlog's would get a record of *logger*."""
    current: logging.Logger | None = logger
    while current is not None:
        for handler in current.handlers:
            if not isinstance(handler, DynamicFileHandler):
                return True
        if not current.propagate:
            return False
        current = current.parent
    return False


def _follow_settings(settings: Settings) -> None:
    """Keep one StdlibSink in ``extra_sinks`` while ``stdlib_propagate`` is on."""
    bridges = [s for s in settings.extra_sinks if isinstance(s, StdlibSink)]
    if len(bridges) == int(settings.stdlib_propagate):
        return
    others = tuple(s for s in settings.extra_sinks if not isinstance(s, StdlibSink))
    if settings.stdlib_propagate:
        others = (*others, bridges[0] if bridges else StdlibSink())
    apply_settings(replace(settings, extra_sinks=others))


_installed = False
_install_lock = threading.Lock()


def install() -> None:
    """
    Make ``configure(stdlib_propagate=...)`` add or remove the bridge. Idempotent.

    Called once when runlog is imported; from then on every new
    ``Settings`` with ``stdlib_propagate`` set gets exactly one bridge.
    """
    global _installed
    with _install_lock:
        if _installed:
            return
        _installed = True
    add_settings_listener(_follow_settings)
    _follow_settings(current_settings())
