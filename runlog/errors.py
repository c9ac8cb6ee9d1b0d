"""The exceptions runlog raises on purpose."""

from __future__ import annotations

import subprocess
from typing import ClassVar

__all__ = [
    "ArchiveIntegrityError",
    "CommandError",
    "ConfigurationError",
    "ContextError",
    "LogWriteError",
    "RunNotFoundError",
    "RunlogError",
    "UploadError",
]


class RunlogError(Exception):
    """Base for every error runlog raises on purpose."""

    exit_code: ClassVar[int] = 2  # usage or input error


class ContextError(RunlogError, ValueError):
    """A bad run id, framework, component or step, or no run where one is needed."""


class LogWriteError(RunlogError, OSError):
    """A record could not be written; carries the path and the OS reason."""


class ArchiveIntegrityError(RunlogError):
    """An archive does not match its manifest, its sidecar or a recorded hash."""

    exit_code = 1  # a check failed


class ConfigurationError(RunlogError, ValueError):
    """A bad argument to configure() or start_run()."""


class CommandError(RunlogError, subprocess.CalledProcessError):
    """A command run by run_command(check=True) exited non-zero or was killed."""

    exit_code = 1  # the command failed


class UploadError(RunlogError):
    """A run could not be copied to or read from object storage; names the URL."""

    exit_code = 1  # the transfer failed; local files are untouched


class RunNotFoundError(RunlogError):
    """The path or run id given does not name a run or a run archive."""


class MismatchError(Exception):
    """A member of an archive read back differs from what was written.

    Internal: verify_archive reports it as ArchiveIntegrityError.
    """


class StoreMismatchError(OSError):
    """What the store holds is not what was sent.

    Internal: an OSError so it is retried like a network error.
    """
