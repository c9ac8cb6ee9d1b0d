"""configure() and get_logger(): structlog loggers that write through runlog."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING, Any, Final

from . import _paths
from ._config import (
    CONSOLE_ENV,
    Settings,
    apply_settings,
    current_settings,
    parse_level,
)
from ._records import DEFAULT_REDACT_KEYS, ORCHESTRATOR
from .context import LogContext
from .errors import ConfigurationError
from .handler import DEFAULT_COMPONENT

if TYPE_CHECKING:
    from ._logger import RunlogLogger

__all__ = ["configure", "get_logger"]


def get_logger(
    name: str | None = None, component: str = DEFAULT_COMPONENT, **initial_values: Any
) -> RunlogLogger:
    """
    A structlog bound logger for *component*, usable at import time.

    Works before any run exists (records then go to the console only) and
    picks up the run and step current when each record is logged.

    Args:
        name: The logger name written as ``logger`` (usually ``__name__``).
        component: Decides the file: ``step_NNN/<component>.log``. The
            default ``"run"`` writes ``step_NNN/run.log`` inside a step and
            ``logs/run.log`` outside one: the run's own records.
        initial_values: Pairs bound to every record of this logger.

    Raises:
        ContextError: If *component* is not a safe name.

    Warns:
        RuntimeWarning: When a key of *initial_values* looks like a misspelt
            parameter (``componet=``, ``Component=``, ``nmae=``): it is bound
            as a field, and the component stays *component*.
    """
    _paths.check_name("component", component)
    for key in initial_values:
        parameter = near_miss_parameter(key)
        if parameter is not None:
            # a typo would silently route to the default component and keep
            # the intended component as a field (see #14)
            warnings.warn(
                f"get_logger({name!r}): {key}={initial_values[key]!r} looks "
                f"like a misspelling of {parameter!r}; it is bound as a field "
                f"and the component is {component!r}",
                RuntimeWarning,
                stacklevel=2,
            )
    # structlog costs ~40 ms to import: it loads with the first logger, not
    # with `import runlog` (see #11)
    from ._logger import RunlogLogger

    return RunlogLogger(
        logging.getLogger(name),
        processors=(),
        context={"component": component, **initial_values},
    )


# get_logger's own parameters, which a key of its initial values may misspell
_PARAMETERS: Final = ("component", "name")


def near_miss_parameter(key: str) -> str | None:
    """
    The parameter of get_logger that *key* looks like a misspelling of, or None.

    A near miss differs from the parameter only in case, by two adjacent
    letters swapped, or, for names of six letters or more, by at most two
    letters added, dropped or changed after the same first letter
    (``componet``, ``Component``, ``components``; not ``opponent``).
    """
    folded = key.lower()
    for parameter in _PARAMETERS:
        if key == parameter:
            continue
        if folded == parameter or _is_swap(folded, parameter):
            return parameter
        if (
            len(parameter) >= 6
            and folded[:1] == parameter[:1]
            and _edit_distance(folded, parameter, 2) <= 2
        ):
            return parameter
    return None


def _is_swap(a: str, b: str) -> bool:
    if len(a) != len(b) or a == b:
        return False
    diffs = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
    return (
        len(diffs) == 2
        and diffs[1] == diffs[0] + 1
        and a[diffs[0]] == b[diffs[1]]
        and a[diffs[1]] == b[diffs[0]]
    )


def _edit_distance(a: str, b: str, limit: int) -> int:
    """Levenshtein distance of *a* and *b*, or ``limit + 1`` once it exceeds *limit*."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y))
            )
        if min(current) > limit:
            return limit + 1
        previous = current
    return previous[-1]


def lifecycle_logger() -> RunlogLogger:
    """The logger for run_start/run_end/step_start/step_end (component orchestrator)."""
    return get_logger("runlog", component=ORCHESTRATOR)


def _write_lifecycle(level_no: int, event: str, fields: dict[str, Any]) -> None:
    lifecycle_logger().log(level_no, event, **fields)


LogContext.get_instance().set_lifecycle_writer(_write_lifecycle)


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
    stdlib_propagate: bool = False,
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
        stdlib_propagate: Also hand every runlog record, after redaction, to
            the other handlers of the stdlib logger hierarchy (pytest's
            caplog, Sentry's LoggingIntegration, an application's handlers)
            as a ``LogRecord`` carrying the record's pairs as attributes.
            Off by default: it costs a LogRecord per record (see #14).

    Raises:
        ConfigurationError: Naming the bad value.
    """
    if os.environ.get(CONSOLE_ENV) == "off":
        console_format = "off"  # a parent records this process's stderr already
    if isinstance(run_level_components, str):
        raise ConfigurationError(
            f"run_level_components {run_level_components!r}: use a set of names"
        )
    apply_settings(
        Settings(
            console_level=parse_level("console_level", console_level),
            console_format=console_format,
            file_level=parse_level("file_level", file_level),
            combined=bool(combined),
            combined_max_lines=combined_max_lines,
            combined_trim_fraction=combined_trim_fraction,
            run_level_components=frozenset(run_level_components),
            redact_keys=DEFAULT_REDACT_KEYS
            if redact_keys is None
            else frozenset(redact_keys),
            on_write_error=on_write_error,
            external_level=parse_level("external_level", external_level),
            max_open_files=max_open_files,
            heartbeat_interval_s=heartbeat_interval_s,
            stdlib_propagate=stdlib_propagate,
            # not arguments of configure(): kept as the run set them
            extra_sinks=current_settings().extra_sinks,
            capture=current_settings().capture,
        )
    )
