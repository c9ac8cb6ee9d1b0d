"""runlog: per-step, per-component run logs, a git-tracked summary, a hashed archive.

The write path (what ``get_logger`` and ``log.info`` need) is imported here;
every other public name is imported on first access (PEP 562), so a process
that only logs never loads the archive, summary, reading or CLI code.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any, Final

from ._version import __version__
from .context import LogContext
from .errors import (
    ArchiveIntegrityError,
    CommandError,
    ConfigurationError,
    ContextError,
    LogWriteError,
    RunlogError,
    UploadError,
)
from .handler import DynamicFileHandler, get_handler
from .integrations import stdlib as _stdlib_bridge
from .loggers import configure, get_logger
from .process import _env
from .process._env import child_env

if TYPE_CHECKING:
    from .archive import ArchiveInfo, Archiver, verify_archive
    from .process._propagate import (
        ContextProcessPoolExecutor,
        ContextThreadPoolExecutor,
        wrap,
    )
    from .process._subprocess import CommandResult, run_command
    from .run import Run, start_run
    from .summary import LogSummarizer

__all__ = [
    "ArchiveInfo",
    "ArchiveIntegrityError",
    "Archiver",
    "CommandError",
    "CommandResult",
    "ConfigurationError",
    "ContextError",
    "ContextProcessPoolExecutor",
    "ContextThreadPoolExecutor",
    "DynamicFileHandler",
    "LogContext",
    "LogSummarizer",
    "LogWriteError",
    "Run",
    "RunlogError",
    "UploadError",
    "__version__",
    "child_env",
    "configure",
    "get_logger",
    "run_command",
    "start_run",
    "verify_archive",
    "wrap",
]

# name -> the module that defines it, imported on first access
_LAZY: Final = {
    "ArchiveInfo": ".archive",
    "Archiver": ".archive",
    "verify_archive": ".archive",
    "ContextProcessPoolExecutor": ".process._propagate",
    "ContextThreadPoolExecutor": ".process._propagate",
    "wrap": ".process._propagate",
    "CommandResult": ".process._subprocess",
    "run_command": ".process._subprocess",
    "Run": ".run",
    "start_run": ".run",
    "LogSummarizer": ".summary",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'runlog' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


# Wiring, in memory only: the handler follows the context, the run is handed
# to children, and a run named in RUNLOG_* is joined at first use, not here.
get_handler()
_env.install(LogContext.get_instance())
_stdlib_bridge.install()


def _export_like_the_parent(context: LogContext) -> None:
    from .integrations.otel import enable_from_environment

    enable_from_environment()


if _env.OTEL in os.environ:  # a child of a process that exports (see #13)
    LogContext.get_instance().add_first_use_hook(_export_like_the_parent)
