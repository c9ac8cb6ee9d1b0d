"""The settings configure() changes, as one frozen value."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from ._records import DEFAULT_REDACT_KEYS

CONSOLE_FORMATS: Final = ("pretty", "json", "off")
ON_WRITE_ERROR: Final = ("raise", "warn")
DEFAULT_RUN_LEVEL_COMPONENTS: Final = frozenset({"reconciliation"})


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything configure() sets; replaced whole, never mutated."""

    console_level: int = 20
    console_format: str = "pretty"
    file_level: int = 10
    combined: bool = True
    combined_max_lines: int = 5000
    combined_trim_fraction: float = 0.1
    run_level_components: frozenset[str] = DEFAULT_RUN_LEVEL_COMPONENTS
    redact_keys: frozenset[str] = DEFAULT_REDACT_KEYS
    on_write_error: str = "raise"
    external_level: int = 20
    max_open_files: int = 64
    heartbeat_interval_s: float = 30.0
    extra_sinks: tuple[object, ...] = field(default=())

    @property
    def min_level(self) -> int:
        """The lowest level any destination takes; lower levels are dropped at once."""
        if self.console_format == "off":
            return self.file_level
        return min(self.file_level, self.console_level)
