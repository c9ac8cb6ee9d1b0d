"""Hands the run and step to child processes through RUNLOG_* environment variables."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Final

from .._config import CONSOLE_ENV, apply_settings, current_settings
from ..context import LogContext, RunState, current_step
from ..errors import ContextError

RUN_ID: Final = "RUNLOG_RUN_ID"
FRAMEWORK: Final = "RUNLOG_FRAMEWORK"
LOGS_DIR: Final = "RUNLOG_LOGS_DIR"
STEP: Final = "RUNLOG_STEP"
OWNER_PID: Final = "RUNLOG_OWNER_PID"
CONSOLE: Final = CONSOLE_ENV
ALL: Final = (RUN_ID, FRAMEWORK, LOGS_DIR, STEP, OWNER_PID)


def export_run(old: RunState, new: RunState) -> None:
    """Context listener: keep ``os.environ`` in step with the run, for children."""
    if new.logs_dir is None:
        for name in ALL:
            os.environ.pop(name, None)
        return
    if new.generation != old.generation:
        os.environ[RUN_ID] = new.run_id or ""
        os.environ[FRAMEWORK] = new.framework or ""
        os.environ[LOGS_DIR] = str(new.logs_dir)
        os.environ.setdefault(OWNER_PID, str(os.getpid()))
    export_step(new.step)


def export_step(step: int | None) -> None:
    """Set ``RUNLOG_STEP`` to *step* (or remove it) for children started next."""
    if step is None:
        os.environ.pop(STEP, None)
    else:
        os.environ[STEP] = str(step)


def child_env(
    base: dict[str, str] | None = None, *, console: bool = True
) -> dict[str, str]:
    """
    An environment for a child process that logs into the current run and step.

    Uses the calling thread's step (``os.environ`` holds the last one entered
    by any thread), so pass it as ``env=`` when starting children from worker
    threads. With *console* False, runlog in the child writes nothing to its
    console (for a parent that records the child's output already).
    """
    env = dict(os.environ if base is None else base)
    if not console:
        env[CONSOLE] = "off"
    context = LogContext.get_instance()
    state = context.state
    for name in ALL:
        env.pop(name, None)
    if state.logs_dir is not None:
        env[RUN_ID] = state.run_id or ""
        env[FRAMEWORK] = state.framework or ""
        env[LOGS_DIR] = str(state.logs_dir)
        env[OWNER_PID] = os.environ.get(OWNER_PID, str(os.getpid()))
        step = current_step(state)
        if step is not None:
            env[STEP] = str(step)
    return env


def install(context: LogContext) -> None:
    """Hand the run to children from now on; join the environment's run on first use."""
    context.add_listener(export_run)
    context.add_step_listener(export_step)
    context.add_first_use_hook(adopt_from_environment)


def adopt_from_environment(context: LogContext | None = None) -> bool:
    """
    Join the run named by ``RUNLOG_*`` variables, if any and none is set yet.

    Returns:
        True if a run context was set from the environment.

    Raises:
        ContextError: If the variables name a bad run, framework or step.
    """
    logs_dir = os.environ.get(LOGS_DIR)
    context = context or LogContext.get_instance()
    if not logs_dir or context.state.is_active:
        return False
    if os.environ.get(CONSOLE) == "off":
        apply_settings(replace(current_settings(), console_format="off"))
    run_id = os.environ.get(RUN_ID, "")
    framework = os.environ.get(FRAMEWORK, "")
    # read before set_run_context: its listener clears RUNLOG_STEP (no step yet)
    step_text = os.environ.get(STEP)
    context.set_run_context(run_id, framework, Path(logs_dir))
    if step_text:
        try:
            step = int(step_text)
        except ValueError:
            raise ContextError(f"{STEP}={step_text!r}: use an int >= 0") from None
        context.set_step_context(step)
    return True
