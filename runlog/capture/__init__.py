"""Capture of what a step prints: ``sys.stdout``/``sys.stderr`` and descriptors 1/2."""

from __future__ import annotations

from ._lines import MAX_LINE, collapse
from ._session import (
    FDS_ENV,
    LOGGER,
    PARTIAL_AFTER_S,
    CaptureSession,
    StreamTee,
    active_session,
    check_mode,
    start_capture,
)

__all__ = [
    "FDS_ENV",
    "LOGGER",
    "MAX_LINE",
    "PARTIAL_AFTER_S",
    "CaptureSession",
    "StreamTee",
    "active_session",
    "check_mode",
    "collapse",
    "start_capture",
]
