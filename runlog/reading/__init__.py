"""Records read back from run directories, archives and stores, for the CLI.

Its modules are private; the commands in :mod:`runlog.cli` are their users.
"""

from __future__ import annotations

__all__: list[str] = []
