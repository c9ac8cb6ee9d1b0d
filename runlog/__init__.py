"""runlog: per-step, per-component run logs, a git-tracked summary, a hashed archive."""

from __future__ import annotations

from ._env import adopt_from_environment as _adopt_from_environment
from ._env import child_env
from ._env import export_run as _export_run
from ._propagate import ContextThreadPoolExecutor, wrap
from ._subprocess import CommandResult, run_command
from ._version import __version__
from .archive import ArchiveInfo, Archiver, verify_archive
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
from .loggers import configure, get_logger
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

get_handler()
LogContext.get_instance().add_listener(_export_run)
_adopt_from_environment()
