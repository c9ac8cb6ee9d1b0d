"""The summary's building blocks: its limits, extra sections, shrinkable lists."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from .._text import KIB
from ..errors import ConfigurationError

MIN_WIDTH: Final = 73  # the archive's "SHA-256: <64 hex>" line must fit
MIN_BYTES: Final = 2 * KIB


def plural(count: int, noun: str) -> str:
    """``1 warning``, ``2 warnings``, ``0 errors``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


@dataclass(frozen=True)
class SummarySection:
    """
    An extra block of the summary, shown right after its header.

    Rendered as ``== title ==`` and *lines* in ``logs_summary.txt`` (each
    line escaped and cut to the width), and as a titled block in the
    markdown summary. Used for what the run's own files cannot say, such
    as the changes since a baseline run.
    """

    title: str
    lines: tuple[str, ...] = ()


@dataclass(frozen=True)
class SummaryLimits:
    """
    Size limits of ``logs_summary.txt``; the defaults are those of docs/SUMMARY.md.

    Lists (steps, errors, warnings, HITL interactions, malformed files,
    metadata, metrics) are shown up to their own cap, then shortened further,
    longest first, until the whole summary fits in *max_bytes*; a cut list
    ends with ``... and N more``.

    Raises:
        ConfigurationError: If a limit is out of range (names the value).
    """

    width: int = 80
    max_bytes: int = 10_000  # 10 KB whether a KB is 1000 or 1024 bytes
    max_errors: int = 20
    max_warnings: int = 10
    max_hitl: int = 10
    max_malformed_files: int = 10
    max_metadata: int = 12
    max_metrics: int = 12
    max_line_bytes: int = 16 << 20

    def __post_init__(self) -> None:
        minimums = {"width": MIN_WIDTH, "max_bytes": MIN_BYTES, "max_line_bytes": 64}
        for name, value in vars(self).items():
            low = minimums.get(name, 0)
            if type(value) is not int or value < low:
                raise ConfigurationError(f"{name} {value!r}: use an int >= {low}")


@dataclass
class Section:
    """A block of lines whose item list can be shortened to fit the size limit."""

    head: list[str]
    items: list[list[str]] = field(default_factory=list)
    shown: int = 0
    more: Callable[[int], str] = lambda n: f"  ... and {n} more"
    order: Callable[[list[int]], list[int]] = sorted
    tail: list[str] = field(default_factory=list)
    hidden_total: int = 0  # items that were never rendered (beyond a cap)

    def lines(self) -> list[str]:
        keep = self.order(list(range(self.shown)))
        out = list(self.head)
        for index in keep:
            out.extend(self.items[index])
        hidden = len(self.items) - self.shown + self.hidden_total
        if hidden:
            out.append(self.more(hidden))
        out.extend(self.tail)
        return out

    def item_bytes(self) -> int:
        return sum(
            len(line.encode()) + 1 for item in self.items[: self.shown] for line in item
        )
