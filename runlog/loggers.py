"""configure() and get_logger(): structlog loggers that write through runlog."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Collection, Iterable
from dataclasses import replace
from typing import Any, Final

import structlog
import structlog.contextvars

from . import _env, _paths
from ._config import CONSOLE_FORMATS, ON_WRITE_ERROR, Settings
from ._records import DEFAULT_REDACT_KEYS, LEVEL_NUMBERS
from .context import ORCHESTRATOR
from .errors import ConfigurationError
from .handler import format_exception, get_handler

# structlog keeps bind_contextvars() values in one ContextVar per key; reading
# that dict directly skips a copy of the whole context when it is empty.
_STRUCTLOG_VARS: dict[str, Any] | None = getattr(
    structlog.contextvars, "_CONTEXT_VARS", None
)
_UNSET: Final = Ellipsis
_STRUCTLOG_PREFIX: Final = getattr(
    structlog.contextvars, "STRUCTLOG_KEY_PREFIX", "structlog_"
)


_HANDLER: Final = get_handler()


class _Threshold:
    level = 10


_THRESHOLD = _Threshold()


def _merge_contextvars(values: dict[str, Any]) -> None:
    if _STRUCTLOG_VARS is None:
        values.update(
            (k, v)
            for k, v in structlog.contextvars.get_contextvars().items()
            if k not in values
        )
        return
    for key, var in _STRUCTLOG_VARS.items():
        value = var.get(_UNSET)
        if value is not _UNSET:
            # structlog names its variables "structlog_<key>"
            key = key.removeprefix(_STRUCTLOG_PREFIX)
            if key not in values:
                values[key] = value


class RunlogLogger(structlog.stdlib.BoundLogger):
    """
    A structlog stdlib BoundLogger whose records go straight to runlog's files.

    ``bind``/``unbind``/``new`` and structlog's context variables work as
    usual; the bound ``component`` decides the file. Records skip stdlib's
    LogRecord and formatter chain (that is what makes runlog fast); levels
    below every destination's threshold cost one comparison.
    """

    def _emit(
        self, level_no: int, event: Any, args: tuple[Any, ...], kw: dict[str, Any]
    ) -> None:
        values = {**self._context, **kw} if kw else dict(self._context)
        if _STRUCTLOG_VARS or _STRUCTLOG_VARS is None:
            _merge_contextvars(values)
        exc_text = None
        if "exc_info" in values:
            exc_text = _exception_text(values.pop("exc_info"))
        values.pop("stack_info", None)
        if args:
            event = _format_args(event, args)
        component = values.pop("component", "run")
        _HANDLER.write(level_no, event, self._logger.name, component, values, exc_text)

    def debug(self, event: str | None = None, *args: Any, **kw: Any) -> Any:
        """Log at debug."""
        if _THRESHOLD.level <= 10:
            self._emit(10, event, args, kw)

    def info(self, event: str | None = None, *args: Any, **kw: Any) -> Any:
        """Log at info."""
        if _THRESHOLD.level <= 20:
            self._emit(20, event, args, kw)

    def warning(self, event: str | None = None, *args: Any, **kw: Any) -> Any:
        """Log at warning."""
        if _THRESHOLD.level <= 30:
            self._emit(30, event, args, kw)

    warn = warning

    def error(self, event: str | None = None, *args: Any, **kw: Any) -> Any:
        """Log at error."""
        if _THRESHOLD.level <= 40:
            self._emit(40, event, args, kw)

    def critical(self, event: str | None = None, *args: Any, **kw: Any) -> Any:
        """Log at critical."""
        self._emit(50, event, args, kw)

    fatal = critical

    def exception(self, event: str | None = None, *args: Any, **kw: Any) -> Any:
        """Log at error with the current exception's traceback."""
        kw.setdefault("exc_info", True)
        self._emit(40, event, args, kw)

    def log(self, level: int, event: str | None = None, *args: Any, **kw: Any) -> Any:
        """Log at a stdlib level number."""
        if level >= _THRESHOLD.level:
            self._emit(level, event, args, kw)

    def msg(self, event: str | None = None, *args: Any, **kw: Any) -> Any:
        """Log at info (structlog's ``msg``)."""
        self.info(event, *args, **kw)

    def _proxy_to_logger(
        self,
        method_name: str,
        event: str | None = None,
        *event_args: Any,
        **event_kw: Any,
    ) -> Any:
        level = LEVEL_NUMBERS.get(method_name, 20)
        if level >= _THRESHOLD.level:
            self._emit(level, event, event_args, event_kw)


def _format_args(event: Any, args: tuple[Any, ...]) -> str:
    try:
        return str(event) % args
    except (TypeError, ValueError):
        return f"{event} {args!r}"


def _exception_text(exc_info: Any) -> str | None:
    if not exc_info:
        return None
    info: Any
    if isinstance(exc_info, BaseException):
        info = (type(exc_info), exc_info, exc_info.__traceback__)
    elif isinstance(exc_info, tuple):
        info = exc_info
    else:
        info = sys.exc_info()
    if info[0] is None:
        return None
    return format_exception(info)


def get_logger(
    name: str | None = None, component: str = "run", **initial_values: Any
) -> RunlogLogger:
    """
    A structlog bound logger for *component*, usable at import time.

    Works before any run exists (records then go to the console only) and
    picks up the run and step current when each record is logged.

    Args:
        name: The logger name written as ``logger`` (usually ``__name__``).
        component: Decides the file: ``step_NNN/<component>.log``.
        initial_values: Pairs bound to every record of this logger.

    Raises:
        ContextError: If *component* is not a safe name.
    """
    _paths.check_name("component", component)
    return RunlogLogger(
        logging.getLogger(name),
        processors=(),
        context={"component": component, **initial_values},
    )


def lifecycle_logger() -> RunlogLogger:
    """The logger for run_start/run_end/step_start/step_end (component orchestrator)."""
    return get_logger("runlog", component=ORCHESTRATOR)


_LEVEL_ARG: Final = tuple(LEVEL_NUMBERS)


def _level(option: str, value: str | int) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.lower() in LEVEL_NUMBERS:
        return LEVEL_NUMBERS[value.lower()]
    raise ConfigurationError(
        f"{option} {value!r}: use one of {list(_LEVEL_ARG)} or a level number"
    )


def configure(
    *,
    console_level: str | int = "info",
    console_format: str = "pretty",
    file_level: str | int = "debug",
    combined: bool = True,
    combined_max_lines: int = 5000,
    combined_trim_fraction: float = 0.1,
    run_level_components: Iterable[str] = ("reconciliation",),
    redact_keys: Collection[str] | None = None,
    on_write_error: str = "raise",
    external_level: str | int = "info",
    max_open_files: int = 64,
    heartbeat_interval_s: float = 30.0,
) -> None:
    """
    Set how runlog writes; every argument has a sane default. Thread-safe.

    Args:
        console_level: Lowest level echoed to stderr.
        console_format: ``"pretty"`` (human lines), ``"json"`` or ``"off"``;
            always ``"off"`` under ``RUNLOG_CONSOLE=off`` (set by run_command).
        file_level: Lowest level written to the run's files.
        combined: Write ``combined.log`` at all.
        combined_max_lines: Cap of ``combined.log`` in lines.
        combined_trim_fraction: Share of the cap dropped at once when it is reached.
        run_level_components: Components written to ``logs/<component>.log``
            whatever the step.
        redact_keys: Keys whose values are written as ``"***"``: exact names
            or ``"*_suffix"`` rules, case-insensitive. None keeps the defaults
            (``runlog._records.DEFAULT_REDACT_KEYS``); an empty set redacts nothing.
        on_write_error: ``"raise"`` a LogWriteError at the logging call, or
            ``"warn"`` with a RuntimeWarning naming the path.
        external_level: The root logger is lowered to this level while a run
            is set, so third-party INFO records reach the step files.
        max_open_files: Bound on the descriptors kept open for log files.
        heartbeat_interval_s: How often an open run refreshes ``heartbeat_at``.

    Raises:
        ConfigurationError: Naming the bad value.
    """
    if os.environ.get(_env.CONSOLE) == "off":
        console_format = "off"  # a parent records this process's stderr already
    if console_format not in CONSOLE_FORMATS:
        raise ConfigurationError(
            f"console_format {console_format!r}: use one of {list(CONSOLE_FORMATS)}"
        )
    if on_write_error not in ON_WRITE_ERROR:
        raise ConfigurationError(
            f"on_write_error {on_write_error!r}: use one of {list(ON_WRITE_ERROR)}"
        )
    if type(combined_max_lines) is not int or combined_max_lines < 1:
        raise ConfigurationError(
            f"combined_max_lines {combined_max_lines!r}: use an int >= 1"
        )
    if not 0 < combined_trim_fraction <= 1:
        raise ConfigurationError(
            f"combined_trim_fraction {combined_trim_fraction!r}: use 0 < f <= 1"
        )
    if type(max_open_files) is not int or max_open_files < 1:
        raise ConfigurationError(f"max_open_files {max_open_files!r}: use an int >= 1")
    if not heartbeat_interval_s > 0:
        raise ConfigurationError(
            f"heartbeat_interval_s {heartbeat_interval_s!r}: use a number > 0"
        )
    if isinstance(run_level_components, str):
        raise ConfigurationError(
            f"run_level_components {run_level_components!r}: use a set of names"
        )
    components = frozenset(run_level_components)
    for component in components:
        _paths.check_name("component", component)
    handler = get_handler()
    settings = replace(
        Settings(),
        console_level=_level("console_level", console_level),
        console_format=console_format,
        file_level=_level("file_level", file_level),
        combined=bool(combined),
        combined_max_lines=combined_max_lines,
        combined_trim_fraction=float(combined_trim_fraction),
        run_level_components=components,
        redact_keys=DEFAULT_REDACT_KEYS
        if redact_keys is None
        else frozenset(redact_keys),
        on_write_error=on_write_error,
        external_level=_level("external_level", external_level),
        max_open_files=max_open_files,
        heartbeat_interval_s=float(heartbeat_interval_s),
        extra_sinks=handler.settings.extra_sinks,
    )
    apply_settings(settings)


def apply_settings(settings: Settings) -> None:
    """Make *settings* current for every logger and the handler."""
    get_handler().apply(settings)
    _THRESHOLD.level = settings.min_level


def current_settings() -> Settings:
    """The settings in force now."""
    return get_handler().settings
