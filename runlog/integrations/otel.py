"""Sends every runlog record to an OpenTelemetry LoggerProvider (runlog[otel])."""

from __future__ import annotations

import importlib
import importlib.util
import os
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import orjson

from .._config import apply_settings, current_settings, parse_level
from .._records import LEVEL_NUMBERS, dumps_value, fallback_value, iter_pairs, safe_text
from .._version import __version__
from ..errors import ConfigurationError
from ..process._env import OTEL

__all__ = [
    "OtelSink",
    "attributes",
    "disable_otel",
    "enable_from_environment",
    "enable_otel",
    "is_enabled",
]

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
# token counters as their OpenTelemetry GenAI names; the first key present wins
_TOKEN_ATTRIBUTES: Final = (
    (
        "gen_ai.usage.input_tokens",
        ("prompt_tokens", "tokens_prompt", "input_tokens"),
    ),
    (
        "gen_ai.usage.output_tokens",
        ("completion_tokens", "tokens_completion", "output_tokens"),
    ),
    ("gen_ai.usage.total_tokens", ("total_tokens", "tokens_total")),
)
# a value under this key holding the counters (``usage=response.usage``)
_USAGE_KEY: Final = "usage"
_HANDOFF_KEY: Final = "runlog_otel"
# the exporter a child builds, per OTEL_EXPORTER_OTLP_[LOGS_]PROTOCOL
_EXPORTERS: Final = {
    "http/protobuf": (
        "opentelemetry.exporter.otlp.proto.http._log_exporter",
        "opentelemetry-exporter-otlp-proto-http",
    ),
    "grpc": (
        "opentelemetry.exporter.otlp.proto.grpc._log_exporter",
        "opentelemetry-exporter-otlp-proto-grpc",
    ),
}


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
        self.provider: Any = provider

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

    def flush(self) -> None:
        """Export what the provider holds now (a child calls it before exiting)."""
        force_flush = getattr(self.provider, "force_flush", None)
        if callable(force_flush):
            force_flush()


def attributes(record: Mapping[str, Any]) -> dict[str, AnyValue]:
    """
    The OpenTelemetry attributes of one runlog record.

    Each value arrives as the file holds it: a string the file writes as
    ``"<object ...>"`` is that string, not its JSON text. A traceback gives
    ``exception.stacktrace``, ``exception.type`` and ``exception.message``;
    token counters (``prompt_tokens``...) are also sent under their
    ``gen_ai.usage.*`` names, unless the record has those names itself.
    """
    result: dict[str, AnyValue] = {}
    for key in _CONTEXT_KEYS:
        value = record.get(key)
        if value is not None:
            result[ATTRIBUTE_PREFIX + key] = _attribute(value)
    for key, value in iter_pairs(record):
        if value is None:
            continue
        if key == "exception":
            text = _attribute(value)
            result["exception.stacktrace"] = text
            if isinstance(text, str):
                kind, message = exception_parts(text)
                if kind:
                    result["exception.type"] = kind
                    result["exception.message"] = message
        else:
            result[safe_text(str(key))] = _attribute(value)
    _add_token_counts(record, result)
    return result


def _add_token_counts(record: Mapping[str, Any], result: dict[str, AnyValue]) -> None:
    usage = record.get(_USAGE_KEY)
    if not isinstance(usage, Mapping):
        usage = {}
    for name, keys in _TOKEN_ATTRIBUTES:
        if name in result:
            continue  # the caller's own gen_ai.usage.* value wins
        for key in keys:
            value = record.get(key, usage.get(key))
            if type(value) is int and _INT64[0] <= value <= _INT64[1]:
                result[name] = value
                break


def exception_parts(text: str) -> tuple[str, str]:
    """
    The type and message of the exception a formatted traceback ends with.

    ``"Traceback ...\\nValueError: boom\\n"`` gives ``("ValueError", "boom")``,
    a chained traceback its last exception, an exception group its group;
    ``("", "")`` if *text* does not end like a traceback.
    """
    lines = text.rstrip("\n").splitlines()
    if lines and lines[0].lstrip().startswith("+ Exception Group Traceback"):
        # the group's own lines are prefixed "  | " up to its first sub-exception
        block = []
        for line in lines[1:]:
            if line.startswith("  +-"):
                break
            block.append(line[4:] if line.startswith("  | ") else line)
        lines = block
    last_frame = -1
    for index, line in enumerate(lines):
        if not line or line[0].isspace() or line.startswith("Traceback ("):
            last_frame = index
    tail = lines[last_frame + 1 :]
    if not tail:
        return "", ""
    kind, _, message = tail[0].partition(": ")
    if not kind or " " in kind:
        return "", ""
    return kind, "\n".join([message, *tail[1:]]) if len(tail) > 1 else message


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
    if value is not None and not isinstance(value, dict | list | tuple):
        # what the file writes for it (see #13): a string stays a string,
        # not its JSON text; a set or an array becomes the list it is there
        converted = fallback_value(value)
        if type(converted) in (str, bool, int, float, list):
            return _attribute(converted)
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
    logger_provider: LoggerProvider | None = None,
    *,
    level: str | int = "debug",
    children: bool = True,
) -> OtelSink:
    """
    Export every record runlog writes through OpenTelemetry, from now on.

    Uses *logger_provider* (or the global one): configure its processors
    and exporter (OTLP to Loki, Elastic, Datadog...) as usual; runlog only
    emits. Redaction applies before export. Calling it again replaces the
    previous bridge; ``configure()`` keeps it. Thread-safe.

    With *children*, processes started from now on export their records
    too: a fork child through this provider, flushed when the child ends; a
    spawn or forkserver child (``multiprocessing``, process pools, so
    ``runlog.wrap`` tasks there) through its own OTLP exporter, configured
    from the standard ``OTEL_EXPORTER_OTLP_*`` variables it inherits, with
    this provider's ``service.name``. A ``subprocess`` child gets
    ``RUNLOG_OTEL`` and exports once it calls :func:`enable_from_environment`.
    Not guaranteed: a child killed by a signal, or ended with ``os._exit``
    outside ``multiprocessing``, loses what it had not flushed yet; its files
    keep every record.

    Args:
        logger_provider: An ``opentelemetry.sdk._logs.LoggerProvider`` (or
            any API LoggerProvider); None uses the global one.
        level: Lowest level exported.
        children: Whether child processes export too.

    Returns:
        The installed sink.

    Raises:
        ConfigurationError: For a bad level, or without the otel extra.
    """
    sink = OtelSink(logger_provider, level=level)
    settings = current_settings()
    others = tuple(s for s in settings.extra_sinks if not isinstance(s, OtelSink))
    apply_settings(replace(settings, extra_sinks=(*others, sink)))
    if not children:
        _stop_handing_to_children()
    elif _exporter_missing():
        _stop_handing_to_children()
        warnings.warn(
            f"runlog: child processes will not export their records: "
            f"pip install {_EXPORTERS[_protocol()][1]!r}",
            RuntimeWarning,
            stacklevel=2,
        )
    else:
        _hand_to_children(sink)
    return sink


def disable_otel() -> None:
    """
    Stop exporting records, here and in children started from now on. Idempotent.

    Does not flush or shut down the provider: that stays the caller's
    (``provider.force_flush()``, ``provider.shutdown()``).
    """
    settings = current_settings()
    others = tuple(s for s in settings.extra_sinks if not isinstance(s, OtelSink))
    if others != settings.extra_sinks:
        apply_settings(replace(settings, extra_sinks=others))
    _stop_handing_to_children()


def is_enabled() -> bool:
    """True while records are exported."""
    return any(isinstance(s, OtelSink) for s in current_settings().extra_sinks)


def enable_from_environment() -> OtelSink | None:
    """
    In a child of a process that exports: export this process's records too.

    Reads ``RUNLOG_OTEL`` (set by the parent's :func:`enable_otel`: the
    level and ``service.name``, no secret) and builds a LoggerProvider with a
    batching OTLP exporter that takes its endpoint, headers and protocol
    from the standard ``OTEL_EXPORTER_OTLP_*`` variables, and a resource
    with ``process.pid`` and ``host.name``. Multiprocessing children call it
    by themselves; call it in a ``subprocess`` child. The provider flushes
    at exit (``atexit``, and multiprocessing's exit).

    Returns:
        The installed sink; None if ``RUNLOG_OTEL`` is unset or this
        process exports already.

    Raises:
        ConfigurationError: If ``RUNLOG_OTEL`` is not such a value, the
            protocol is not one runlog can build, or a package is missing.
    """
    text = os.environ.get(OTEL)
    if not text or is_enabled():
        return None
    level, service = _read_flag(text)
    return enable_otel(_child_provider(service), level=level)


def _protocol() -> str:
    return (
        os.environ.get("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    )


def _exporter_missing() -> bool:
    spec = _EXPORTERS.get(_protocol())
    if spec is None:
        return False  # a protocol runlog cannot build fails in the child, named
    try:
        return importlib.util.find_spec(spec[0]) is None
    except ImportError:  # a parent package of the exporter is not installed
        return True


def _import(module: str, package: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigurationError(
            f"OpenTelemetry export from child processes needs {package!r}: "
            "pip install 'runlog[otel]'"
        ) from exc


def _service_name(provider: Any) -> str | None:
    resource = getattr(provider, "resource", None)
    name = getattr(resource, "attributes", {}).get("service.name")
    if isinstance(name, str) and not name.startswith("unknown_service"):
        return name
    return None


def _flag(sink: OtelSink) -> str:
    values: dict[str, object] = {"level": sink.level}
    service = _service_name(sink.provider)
    if service is not None:
        values["service.name"] = service
    return orjson.dumps(values).decode("utf-8")


def _read_flag(text: str) -> tuple[int, str | None]:
    try:
        values = orjson.loads(text)
    except orjson.JSONDecodeError:
        values = None
    if not isinstance(values, dict):
        raise ConfigurationError(
            f"{OTEL}={text!r}: not a value runlog.otel.enable_otel wrote"
        )
    level = parse_level(OTEL, values.get("level"))
    service = values.get("service.name")
    return level, service if isinstance(service, str) else None


def _child_provider(service: str | None) -> Any:
    protocol = _protocol()
    spec = _EXPORTERS.get(protocol)
    if spec is None:
        raise ConfigurationError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL {protocol!r}: runlog builds a child's "
            f"exporter for {sorted(_EXPORTERS)}"
        )
    sdk_logs = _import("opentelemetry.sdk._logs", "opentelemetry-sdk")
    sdk_export = _import("opentelemetry.sdk._logs.export", "opentelemetry-sdk")
    resources = _import("opentelemetry.sdk.resources", "opentelemetry-sdk")
    exporter = _import(*spec).OTLPLogExporter()
    extra: dict[str, object] = {
        "process.pid": os.getpid(),
        "host.name": socket.gethostname(),
    }
    if (
        service is not None
        and not os.environ.get("OTEL_SERVICE_NAME")
        and "service.name=" not in os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
    ):
        extra["service.name"] = service
    provider = sdk_logs.LoggerProvider(resource=resources.Resource.create(extra))
    provider.add_log_record_processor(sdk_export.BatchLogRecordProcessor(exporter))
    return provider


class _Handoff:
    """
    Turns export on in a spawn or forkserver child, before its target runs.

    Lives in ``multiprocessing.current_process()._config``, which every new
    ``Process`` copies and pickles to its child (like the run's own hand-off
    in ``process/_env``): pickled at ``start()``, it carries ``RUNLOG_OTEL``
    as it is then (see #13).
    """

    def __reduce__(self) -> tuple[Callable[[str | None], _Handoff], Any]:
        return (_arrive, (os.environ.get(OTEL),))


_HANDOFF: Final = _Handoff()


def _arrive(text: str | None) -> _Handoff:
    """
    In a spawn/forkserver child: export like the parent, if it did at start.

    Raises:
        ConfigurationError: As :func:`enable_from_environment`.
    """
    if text is None:
        os.environ.pop(OTEL, None)
    else:
        os.environ[OTEL] = text
        enable_from_environment()
    return _HANDOFF


def _hand_to_children(sink: OtelSink) -> None:
    os.environ[OTEL] = _flag(sink)
    # not at import: `import runlog.otel` stays free of multiprocessing
    process = importlib.import_module("multiprocessing.process")
    config = getattr(process.current_process(), "_config", None)
    if isinstance(config, dict):
        config[_HANDOFF_KEY] = _HANDOFF
    util = importlib.import_module("multiprocessing.util")
    # runs in every multiprocessing child, after its fork or its unpickling;
    # a weak reference: a sink replaced since is not flushed
    util.register_after_fork(sink, _flush_at_exit)


def _stop_handing_to_children() -> None:
    os.environ.pop(OTEL, None)
    process = sys.modules.get("multiprocessing.process")
    if process is not None:
        config = getattr(process.current_process(), "_config", None)
        if isinstance(config, dict):
            config.pop(_HANDOFF_KEY, None)


def _flush_at_exit(sink: OtelSink) -> None:
    """
    In a multiprocessing child: flush *sink*'s provider when the child ends.

    A fork child ends with ``os._exit``, so atexit (where the SDK flushes)
    never runs there; multiprocessing's finalizers do, for fork and spawn
    alike (see #13).
    """
    if sink in current_settings().extra_sinks:
        util = importlib.import_module("multiprocessing.util")
        util.Finalize(None, sink.flush, exitpriority=10)
