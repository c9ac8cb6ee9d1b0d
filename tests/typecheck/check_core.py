"""A small orchestrator written against the public core API; mypy must accept it."""

from __future__ import annotations

from pathlib import Path

from runlog import (
    ContextError,
    LogContext,
    LogWriteError,
    RunlogError,
    configure,
    get_logger,
)

log = get_logger(__name__, component="adapter", model="gpt-4o")


def drive(logs_dir: Path) -> Path | None:
    """Route a few records and return where the adapter's next one goes."""
    configure(console_level="warning", combined_max_lines=1000, on_write_error="warn")
    context = LogContext.get_instance()
    context.set_run_context("r1", "fw", logs_dir)
    with context.step_scope(1, name="fetch"):
        log.bind(attempt=1).info("api_call", prompt_tokens=12, completion_tokens=3)
    context.set_step_context(2)
    step: int | None = context.step
    try:
        path: Path = context.log_path("adapter")
    except ContextError as exc:
        code: int = exc.exit_code
        raise SystemExit(code) from exc
    except LogWriteError as exc:
        reason: str | None = exc.strerror
        raise RunlogError(reason) from exc
    context.clear_run_context()
    return path if step is not None else None
