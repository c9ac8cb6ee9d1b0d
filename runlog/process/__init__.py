"""The run and step handed to threads, pools, child processes and commands.

Its modules are private; their public names are exported by :mod:`runlog`.
"""

from __future__ import annotations

__all__: list[str] = []
