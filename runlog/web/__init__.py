"""See a run: ``runlog report`` (one offline HTML file) and ``runlog serve``.

:func:`write_report` needs nothing beyond runlog itself; :func:`create_app`
needs the extra ``runlog[web]`` (Starlette and uvicorn), imported only when
it is called.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ._report import DEFAULT_MAX_RECORDS, write_report

if TYPE_CHECKING:
    from starlette.applications import Starlette

__all__ = ["DEFAULT_MAX_RECORDS", "create_app", "write_report"]


def create_app(
    runs_dir_or_url: str | os.PathLike[str],
    *,
    allowed_hosts: Sequence[str] | None = None,
    poll_interval_s: float = 0.5,
    warm: bool = True,
) -> Starlette:
    """
    The read-only web viewer of the runs under *runs_dir_or_url*, as an ASGI app.

    Args:
        runs_dir_or_url: A runs directory (``runs/``), or an object storage
            URL (``s3://bucket/runs``; extra ``runlog[remote]``).
        allowed_hosts: ``Host`` header values accepted; default the local
            names (``127.0.0.1``, ``localhost``, ``::1``), which keeps pages
            elsewhere from reaching the server through a rebound DNS name.
        poll_interval_s: How often a live run's files are polled for the
            event stream.
        warm: Compute the overviews of the newest finished runs in the
            background when the app starts.

    Returns:
        A Starlette application: serve it with uvicorn, or ``runlog serve``.

    Raises:
        ConfigurationError: Without the extra ``runlog[web]``.
    """
    from ._server import create_app as create

    return create(
        runs_dir_or_url,
        allowed_hosts=allowed_hosts,
        poll_interval_s=poll_interval_s,
        warm=warm,
    )
