"""Copying runs to object storage and reading them back (extra ``runlog[remote]``)."""

from __future__ import annotations

from ._fetch import (
    RemoteRun,
    fetch_run,
    fetched,
    find_remote_runs,
    read_remote_run_json,
    scan_remote_runs,
)
from ._store import (
    DEFAULT_BACKOFF_S,
    DEFAULT_RETRIES,
    LIVE_DIR,
    MAX_BACKOFF_S,
    TransferStats,
    display_url,
    is_transient,
)
from ._upload import (
    DEFAULT_INTERVAL_S,
    INTERVAL_ENV,
    RunUploader,
    attach_uploader,
    check_interval,
    check_url,
    default_interval,
    is_remote,
    run_names,
    run_url,
    upload_run,
)
from ._verify import StoredRunCheck, verify_stored

__all__ = [
    "DEFAULT_BACKOFF_S",
    "DEFAULT_INTERVAL_S",
    "DEFAULT_RETRIES",
    "INTERVAL_ENV",
    "LIVE_DIR",
    "MAX_BACKOFF_S",
    "RemoteRun",
    "RunUploader",
    "StoredRunCheck",
    "TransferStats",
    "attach_uploader",
    "check_interval",
    "check_url",
    "default_interval",
    "display_url",
    "fetch_run",
    "fetched",
    "find_remote_runs",
    "is_remote",
    "is_transient",
    "read_remote_run_json",
    "run_names",
    "run_url",
    "scan_remote_runs",
    "upload_run",
    "verify_stored",
]
