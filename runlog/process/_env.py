"""Hands the run, step and settings to child processes through RUNLOG_* variables."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

from .._config import (
    CONSOLE_ENV,
    Settings,
    add_settings_listener,
    apply_settings,
    current_settings,
    settings_from_env,
    settings_to_env,
)
from ..context import LogContext, RunState, current_step
from ..errors import ContextError

RUN_ID: Final = "RUNLOG_RUN_ID"
FRAMEWORK: Final = "RUNLOG_FRAMEWORK"
LOGS_DIR: Final = "RUNLOG_LOGS_DIR"
STEP: Final = "RUNLOG_STEP"
OWNER_PID: Final = "RUNLOG_OWNER_PID"
# configure()'s settings, without extra sinks and without any secret value:
# redaction keys are key names (see #13)
SETTINGS: Final = "RUNLOG_SETTINGS"
CONSOLE: Final = CONSOLE_ENV
# Set while the parent exports records through OpenTelemetry: the export
# level and service name as JSON, never an endpoint header or other secret;
# a child builds its own exporter from the standard OTEL_* variables (see #13)
OTEL: Final = "RUNLOG_OTEL"
ALL: Final = (RUN_ID, FRAMEWORK, LOGS_DIR, STEP, OWNER_PID, SETTINGS)
# The key under which the hand-off rides in multiprocessing's per-process
# config, pickled with every spawn/forkserver Process (see #13).
HANDOFF_KEY: Final = "runlog_context"

# The generation of the run set in this process, None without one.
_active_generation: int | None = None
# (generation, redact keys, run-level components) of a run this process
# joined from its parent: kept whatever the process configures (see #13).
_run_keys: tuple[int, frozenset[str], frozenset[str]] | None = None
_encoded: tuple[Settings, str] | None = None


def encoded_settings(settings: Settings | None = None) -> str:
    """*settings* (default: the current ones) as the ``RUNLOG_SETTINGS`` value."""
    global _encoded
    settings = current_settings() if settings is None else settings
    cached = _encoded
    if cached is not None and cached[0] is settings:
        return cached[1]
    text = settings_to_env(settings)
    _encoded = (settings, text)
    return text


def is_default(settings: Settings) -> bool:
    """True if *settings* are the defaults (nobody here configured anything else)."""
    return replace(settings, extra_sinks=()) == Settings()


def run_settings(text: str, current: Settings | None = None) -> Settings:
    """
    The settings a process joining a run uses, given the run's *text*.

    A process that configured nothing takes the run's settings whole (its own
    extra sinks stay). One that called ``configure()`` keeps its settings, with
    the run's redaction keys and run-level components added, so it never
    writes in clear what the run hides nor routes a run-level component into
    a step. ``RUNLOG_CONSOLE=off`` keeps the console off either way.

    Raises:
        ConfigurationError: If *text* is not a settings value, naming it.
    """
    current = current_settings() if current is None else current
    run = settings_from_env(text, source=SETTINGS, extra_sinks=current.extra_sinks)
    if is_default(current):
        chosen = run
    else:
        chosen = _with_run_keys(current, run.redact_keys, run.run_level_components)
    if os.environ.get(CONSOLE) == "off" and chosen.console_format != "off":
        chosen = replace(chosen, console_format="off")
    return chosen


def _with_run_keys(
    settings: Settings, redact: frozenset[str], components: frozenset[str]
) -> Settings:
    if redact <= settings.redact_keys and components <= settings.run_level_components:
        return settings
    return replace(
        settings,
        redact_keys=settings.redact_keys | redact,
        run_level_components=settings.run_level_components | components,
    )


def export_run(old: RunState, new: RunState) -> None:
    """Context listener: keep ``os.environ`` in step with the run, for children."""
    global _active_generation
    if new.logs_dir is None:
        _active_generation = None
        for name in ALL:
            os.environ.pop(name, None)
        return
    if new.generation != old.generation:
        _active_generation = new.generation
        os.environ[RUN_ID] = new.run_id or ""
        os.environ[FRAMEWORK] = new.framework or ""
        os.environ[LOGS_DIR] = str(new.logs_dir)
        os.environ.setdefault(OWNER_PID, str(os.getpid()))
        os.environ[SETTINGS] = encoded_settings()
    export_step(new.step)


def export_step(step: int | None) -> None:
    """Set ``RUNLOG_STEP`` to *step* (or remove it) for children started next."""
    install_handoff()  # multiprocessing may have been imported since the run began
    if step is None:
        os.environ.pop(STEP, None)
    else:
        os.environ[STEP] = str(step)


def set_step_variable(step: int | None) -> None:
    """``RUNLOG_STEP`` for *step*, set only when it changes (per wrapped call)."""
    text = None if step is None else str(step)
    if os.environ.get(STEP) != text:
        if text is None:
            os.environ.pop(STEP, None)
        else:
            os.environ[STEP] = text


def export_settings(settings: Settings) -> None:
    """
    Settings listener: children started from now on take *settings*.

    While a run is set here, ``RUNLOG_SETTINGS`` follows every ``configure()``;
    a process that joined a run keeps the run's redaction keys and run-level
    components whatever it configures.
    """
    if _active_generation is None:
        return
    keys = _run_keys
    if keys is not None and keys[0] == _active_generation:
        kept = _with_run_keys(settings, keys[1], keys[2])
        if kept is not settings:
            apply_settings(kept)  # its listeners, this one included, run again
            return
    os.environ[SETTINGS] = encoded_settings(settings)


def child_env(
    base: Mapping[str, str] | None = None, *, console: bool = True
) -> dict[str, str]:
    """
    An environment for a child process that logs into the current run and step.

    Uses the calling thread's step (``os.environ`` holds the last one entered
    by any thread), so pass it as ``env=`` when starting children from worker
    threads. The child applies this process's ``configure()`` settings
    (``RUNLOG_SETTINGS``: no secret value, only key names). With *console*
    False, runlog in the child writes nothing to its console (for a parent
    that records the child's output already).
    """
    env = dict(os.environ if base is None else base)
    if not console:
        env[CONSOLE] = "off"
    if OTEL in os.environ:
        env[OTEL] = os.environ[OTEL]
    context = LogContext.get_instance()
    state = context.state
    for name in ALL:
        env.pop(name, None)
    if state.logs_dir is not None:
        env[RUN_ID] = state.run_id or ""
        env[FRAMEWORK] = state.framework or ""
        env[LOGS_DIR] = str(state.logs_dir)
        env[OWNER_PID] = os.environ.get(OWNER_PID, str(os.getpid()))
        env[SETTINGS] = encoded_settings()
        step = current_step(state)
        if step is not None:
            env[STEP] = str(step)
    return env


def install(context: LogContext) -> None:
    """Hand the run to children from now on; join the environment's run on first use."""
    context.add_listener(export_run)
    context.add_step_listener(export_step)
    context.add_first_use_hook(adopt_from_environment)
    add_settings_listener(export_settings)
    os.register_at_fork(after_in_child=_after_fork_in_child)
    install_handoff()


def adopt_from_environment(context: LogContext | None = None) -> bool:
    """
    Join the run named by ``RUNLOG_*`` variables, if any and none is set yet.

    Applies the run's settings first (see :func:`run_settings`).

    Returns:
        True if a run context was set from the environment.

    Raises:
        ContextError: If the variables name a bad run, framework or step.
        ConfigurationError: If ``RUNLOG_SETTINGS`` is not a settings value.
    """
    global _run_keys
    logs_dir = os.environ.get(LOGS_DIR)
    context = context or LogContext.get_instance()
    if not logs_dir or context.state.is_active:
        return False
    text = os.environ.get(SETTINGS)
    settings = current_settings()
    if text:
        settings = run_settings(text, settings)
    elif os.environ.get(CONSOLE) == "off":
        settings = replace(settings, console_format="off")
    if settings != current_settings():
        apply_settings(settings)
    run_id = os.environ.get(RUN_ID, "")
    framework = os.environ.get(FRAMEWORK, "")
    # read before set_run_context: its listener clears RUNLOG_STEP (no step yet)
    step_text = os.environ.get(STEP)
    context.set_run_context(run_id, framework, Path(logs_dir))
    if text:
        applied = current_settings()
        _run_keys = (
            context.state.generation,
            applied.redact_keys,
            applied.run_level_components,
        )
    if step_text:
        try:
            step = int(step_text)
        except ValueError:
            raise ContextError(f"{STEP}={step_text!r}: use an int >= 0") from None
        context.set_step_context(step)
    _capture_output()
    return True


def _capture_output() -> None:
    # a child that joins the run records what it prints, as the run does; not
    # under run_command, whose parent records this output already (see #15)
    mode = current_settings().capture
    if mode != "none" and os.environ.get(CONSOLE) != "off":
        from ..capture import start_capture

        start_capture(mode)


def _after_fork_in_child() -> None:
    # A forked child got the run and its settings in memory; like a spawned
    # one it keeps the run's redaction keys whatever it configures (see #13).
    global _run_keys
    if _active_generation is not None:
        settings = current_settings()
        _run_keys = (
            _active_generation,
            settings.redact_keys,
            settings.run_level_components,
        )


class _Handoff:
    """
    The run, step and settings for a spawn/forkserver child, read when it starts.

    Lives in ``multiprocessing.current_process()._config``, which every new
    ``Process`` copies and pickles to its child: pickled at ``start()``, it
    carries the starting thread's run and step *then*. A forkserver child
    would otherwise see the environment its server was started with, maybe
    before the run or in another step (see #13).
    """

    def __reduce__(self) -> tuple[Callable[[dict[str, str | None]], _Handoff], Any]:
        return (_arrive, (handoff_values(),))


_HANDOFF: Final = _Handoff()


def handoff_values() -> dict[str, str | None]:
    """The ``RUNLOG_*`` values a child started now needs; None: unset it."""
    base = {CONSOLE: os.environ[CONSOLE]} if CONSOLE in os.environ else {}
    env = child_env(base)
    return {name: env.get(name) for name in (*ALL, CONSOLE, OTEL)}


def _arrive(values: dict[str, str | None]) -> _Handoff:
    """
    In a spawn/forkserver child, before its target runs: join the parent's run.

    Joined now rather than at first use, so the run's settings hold from the
    first record on, and records of stdlib loggers reach the run even if the
    child never calls ``get_logger`` (see #13).

    Raises:
        ContextError, ConfigurationError: As :func:`adopt_from_environment`.
    """
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    adopt_from_environment()
    return _HANDOFF


def install_handoff() -> None:
    """Put the hand-off into multiprocessing's process config, if it is loaded."""
    # not imported here: `import runlog` stays free of multiprocessing (see #11)
    process = sys.modules.get("multiprocessing.process")
    if process is None:
        return
    config = getattr(process.current_process(), "_config", None)
    if isinstance(config, dict) and config.get(HANDOFF_KEY) is not _HANDOFF:
        config[HANDOFF_KEY] = _HANDOFF
