"""configure() and get_logger(): structlog loggers that write through runlog."""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from ._logger import RunlogLogger

__all__ = ["configure", "get_logger"]


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
    # structlog costs ~40 ms to import: it loads with the first logger, not
    # with `import runlog` (see #11)
    from ._logger import RunlogLogger

    return RunlogLogger(
        logging.getLogger(name),
        processors=(),
        context={"component": component, **initial_values},
    )


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
            extra_sinks=current_settings().extra_sinks,
        )
    )
