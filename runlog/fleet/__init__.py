"""Work over many runs at once: errors grouped by fingerprint, SQL, retention.

Its modules are private; the commands in :mod:`runlog.cli` are their users.
"""

from __future__ import annotations

__all__: list[str] = []
