"""``runlog.otel``: the import path of :mod:`runlog.integrations.otel`."""

from __future__ import annotations

from .integrations.otel import (
    OtelSink,
    attributes,
    disable_otel,
    enable_from_environment,
    enable_otel,
    is_enabled,
)

__all__ = [
    "OtelSink",
    "attributes",
    "disable_otel",
    "enable_from_environment",
    "enable_otel",
    "is_enabled",
]
