"""Bridges to other systems (OpenTelemetry), imported only when used."""

from __future__ import annotations

__all__: list[str] = []
