"""Sends every runlog record to an OpenTelemetry LoggerProvider (runlog[otel])."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from .._config import apply_settings, current_settings, parse_level
from .._records import LEVEL_NUMBERS, dumps_value, iter_pairs, safe_text
from .._version import __version__
from ..errors import ConfigurationError

__all__ = ["OtelSink", "attributes", "disable_otel", "enable_otel", "is_enabled"]

if TYPE_CHECKING:
    from opentelemetry._logs import Logger, LoggerProvider
    from opentelemetry.util.types import AnyValue

SCOPE: Final = "runlog"
"""The instrumentation scope name of every exported LogRecord."""
ATTRIBUTE_PREFIX: Final = "runlog."
_INT64: Final = (-(2**63), 2**63 - 1)
# the record's own keys that become runlog.* attributes (event is the body)
_CONTEXT_KEYS: Final = ("run_id", "framework", "step", "component", "logger")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def _import_otel() -> Any:
    try:
        from opentelemetry import _logs
    except ImportError as exc:
        raise ConfigurationError(
            "OpenTelemetry export needs the otel extra: pip install 'runlog[otel]'"
        ) from exc
    return _logs


class OtelSink:
    """
    A runlog extra sink: turns each finished record into an OpenTelemetry LogRecord.

    Severity from the record's level; body the event; attributes the
    record's own key-value pairs plus ``runlog.run_id``, ``runlog.framework``,
    ``runlog.step``, ``runlog.component`` and ``runlog.logger`` (omitted
    when unset), and a traceback as ``exception.stacktrace``. Values
    OpenTelemetry cannot carry (dicts, mixed lists, None inside lists,
    integers beyond 64 bits) are sent as their JSON text; None is left out.
    Records reach the sink after redaction, so secrets never leave the process.

    Thread-safe as far as the provider is. A record logged while one is
    being exported (the SDK's own warnings, routed through logging) is
    written to the run's files but not exported again, so export cannot loop.
    """

    def __init__(
        self, logger_provider: LoggerProvider | None = None, *, level: str | int = 10
    ) -> None:
        """
        Args:
            logger_provider: Where records go; None uses the global one
                (``opentelemetry._logs.set_logger_provider``).
            level: Lowest level exported (a name or a stdlib number).

        Raises:
            ConfigurationError: For a bad level, or without the otel extra.
        """
        logs = _import_otel()
        self.level = parse_level("level", level)
        provider = logger_provider or logs.get_logger_provider()
        self.logger: Logger = provider.get_logger(SCOPE, __version__)
        severity = logs.SeverityNumber
        self._severity: dict[str, Any] = {
            "debug": severity.DEBUG,
            "info": severity.INFO,
            "warning": severity.WARN,
            "error": severity.ERROR,
            "critical": severity.FATAL,
        }
        self._record_class: Any = logs.LogRecord
        self._local = threading.local()

    def __call__(self, record: Mapping[str, Any]) -> None:
        """Export one finished (redacted) runlog record."""
        level = str(record.get("level", "info"))
        if LEVEL_NUMBERS.get(level, 20) < self.level:
            return
        if getattr(self._local, "busy", False):
            return
        self._local.busy = True
        try:
            self.logger.emit(
                self._record_class(
                    timestamp=_timestamp_ns(record.get("ts")),
                    severity_number=self._severity.get(level),
                    severity_text=level.upper(),
                    body=_body(record.get("event")),
                    attributes=attributes(record),
                )
            )
        finally:
            self._local.busy = False


def attributes(record: Mapping[str, Any]) -> dict[str, AnyValue]:
    """The OpenTelemetry attributes of one runlog record."""
    result: dict[str, AnyValue] = {}
    for key in _CONTEXT_KEYS:
        value = record.get(key)
        if value is not None:
            result[ATTRIBUTE_PREFIX + key] = _attribute(value)
    for key, value in iter_pairs(record):
        if value is None:
            continue
        if key == "exception":
            result["exception.stacktrace"] = _attribute(value)
        else:
            result[safe_text(str(key))] = _attribute(value)
    return result


def _attribute(value: Any) -> AnyValue:
    if isinstance(value, str):
        return safe_text(value)
    if isinstance(value, bool | float):
        return value
    if isinstance(value, int):
        return value if _INT64[0] <= value <= _INT64[1] else str(value)
    if isinstance(value, list | tuple) and value:
        kinds = {type(item) for item in value}
        if len(kinds) == 1 and kinds <= {str, bool, int, float}:
            items = tuple(_attribute(item) for item in value)
            if all(type(item) is type(value[0]) for item in items):
                return items
    return dumps_value(value)


def _body(event: Any) -> AnyValue:
    if isinstance(event, str):
        return safe_text(event)
    return _attribute(event)


def _timestamp_ns(ts: Any) -> int:
    if isinstance(ts, str):
        try:
            moment = datetime.fromisoformat(ts.replace("Z", "+00:00"))
        except ValueError:
            return time.time_ns()
        if moment.tzinfo is not None:
            delta = moment - _EPOCH
            return (
                delta.days * 86_400_000_000 + delta.seconds * 1_000_000
            ) * 1000 + delta.microseconds * 1000
    return time.time_ns()


def enable_otel(
    logger_provider: LoggerProvider | None = None, *, level: str | int = "debug"
) -> OtelSink:
    """
    Export every record runlog writes through OpenTelemetry, from now on.

    Uses *logger_provider* (or the global one): configure its processors
    and exporter (OTLP to Loki, Elastic, Datadog...) as usual; runlog only
    emits. Redaction applies before export. Calling it again replaces the
    previous bridge; ``configure()`` keeps it. Thread-safe.

    Args:
        logger_provider: An ``opentelemetry.sdk._logs.LoggerProvider`` (or
            any API LoggerProvider); None uses the global one.
        level: Lowest level exported.

    Returns:
        The installed sink.

    Raises:
        ConfigurationError: For a bad level, or without the otel extra.
    """
    sink = OtelSink(logger_provider, level=level)
    settings = current_settings()
    others = tuple(s for s in settings.extra_sinks if not isinstance(s, OtelSink))
    apply_settings(replace(settings, extra_sinks=(*others, sink)))
    return sink


def disable_otel() -> None:
    """
    Stop exporting records. Idempotent.

    Does not flush or shut down the provider: that stays the caller's
    (``provider.force_flush()``, ``provider.shutdown()``).
    """
    settings = current_settings()
    others = tuple(s for s in settings.extra_sinks if not isinstance(s, OtelSink))
    if others != settings.extra_sinks:
        apply_settings(replace(settings, extra_sinks=others))


def is_enabled() -> bool:
    """True while records are exported."""
    return any(isinstance(s, OtelSink) for s in current_settings().extra_sinks)
