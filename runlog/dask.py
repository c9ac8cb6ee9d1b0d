"""``runlog.dask``: the import path of :mod:`runlog.integrations.dask`."""

from __future__ import annotations

from .integrations.dask import (
    FLUSH_INTERVAL_S,
    TOPIC,
    ChannelStats,
    RunlogPlugin,
    channel_stats,
    subscribe,
)

__all__ = [
    "FLUSH_INTERVAL_S",
    "TOPIC",
    "ChannelStats",
    "RunlogPlugin",
    "channel_stats",
    "subscribe",
]
