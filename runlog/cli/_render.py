"""What the CLI shows: record lines, the ls table, colours, durations and sizes."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Final, TextIO

from .._records import RESERVED_KEYS
from .._text import clean, format_duration
from ..combined import format_value
from ..reading._runs import RunRow
from ..reading._source import Entry

PROBLEM_STATUSES: Final = frozenset({"failed", "crashed", "interrupted", "incomplete"})
_LEVEL_COLORS: Final = {
    "debug": "2",
    "info": "32",
    "warning": "33",
    "error": "31",
    "critical": "1;31",
}
_STATUS_COLORS: Final = {
    "success": "32",
    "running": "36",
    "failed": "1;31",
    "crashed": "1;31",
    "interrupted": "1;33",
    "incomplete": "1;33",
}
# shown as indented blocks under the line, not as key=value
_BLOCK_KEYS: Final = ("exception", "traceback")
_RESERVED: Final = frozenset(RESERVED_KEYS)


class Style:
    """ANSI colors when writing to a terminal; plain text otherwise."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, code: str, text: str) -> str:
        if not self.enabled or not code:
            return text
        return f"\x1b[{code}m{text}\x1b[0m"


def is_terminal(stream: TextIO) -> bool:
    """Whether *stream* is a terminal that takes ANSI colors."""
    if os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty()) if callable(isatty) else False


def wants_color(choice: str, stream: TextIO) -> bool:
    """Whether --color *choice* colors *stream* (``auto`` honours NO_COLOR)."""
    if choice == "always":
        return True
    if choice == "never" or os.environ.get("NO_COLOR"):
        return False
    return is_terminal(stream)


def _display_ts(ts: str) -> str:
    # 2025-10-20T14:23:45.123456Z -> 2025-10-20 14:23:45.123 (all times are UTC)
    if len(ts) == 27 and ts[10] == "T" and ts.endswith("Z"):
        return f"{ts[:10]} {ts[11:23]}"
    return ts


def render_entry(
    entry: Entry,
    style: Style,
    *,
    source: bool = False,
    block_lines: int | None = None,
) -> str:
    """
    One record as a readable line (plus indented blocks for tracebacks).

    ``2025-10-20 14:23:45.123 WARNING  step 3   adapter        rate_limited k=v``

    Args:
        entry: The record and where it was read.
        style: Colors, or plain text.
        source: Append ``@ step_003/adapter.log:17``.
        block_lines: Show only the last lines of each traceback (None: all).
    """
    record = entry.record
    # records are not trusted: control characters (terminal escapes, CR,
    # bidi overrides) are printed escaped (see #7)
    level = clean(str(record.get("level", "")))
    step = record.get("step")
    step_text = "run" if step is None else clean(f"step {step}")
    component = clean(str(record.get("component", "")))
    event = record.get("event", "")
    if not isinstance(event, str) or "\n" in event or "\r" in event:
        event = format_value(event)
    event = clean(event)
    plain = not style.enabled
    pairs: list[str] = []
    blocks: list[tuple[str, str]] = []
    if component == "external" and record.get("logger"):
        pairs.append(style("2", "logger=") + clean(format_value(record["logger"])))
    for key, value in record.items():
        if key in _RESERVED:
            continue
        if type(value) is str and (key in _BLOCK_KEYS or "\n" in value):
            blocks.append((clean(key), value))
        elif plain:
            pairs.append(f"{clean(key)}={clean(format_value(value))}")
        else:
            pairs.append(style("2", f"{clean(key)}=") + clean(format_value(value)))
    ts = clean(_display_ts(entry.ts))
    if plain:
        head = f"{ts} {level.upper():<8} {step_text:<8} {component:<14} {event}"
    else:
        head = " ".join(
            [
                style("2", ts),
                style(_LEVEL_COLORS.get(level, ""), f"{level.upper():<8}"),
                style("36", f"{step_text:<8}"),
                style("35", f"{component:<14}"),
                style("1", event),
            ]
        )
    if pairs:
        head = f"{head} {' '.join(pairs)}"
    if source:
        head += "  " + style("2", f"@ {entry.location}")
    lines = [head]
    for key, text in blocks:
        if key != "exception":
            lines.append(style("2", f"    {key}:"))
        color = "31" if key in _BLOCK_KEYS else "2"
        text_lines = text.rstrip("\n").splitlines()
        if block_lines is not None and len(text_lines) > block_lines:
            hidden = len(text_lines) - block_lines
            lines.append(style("2", f"    ... {hidden} more lines"))
            text_lines = text_lines[-block_lines:]
        lines.extend(style(color, f"    {clean(line)}") for line in text_lines)
    return "\n".join(lines)


def ls_table(rows: Sequence[RunRow], style: Style) -> list[str]:
    """The ``runlog ls`` table of *rows*: a header, then one line per run."""
    header = ["FRAMEWORK", "RUN ID", "STATUS", "STARTED (UTC)", "DURATION"]
    header += ["STEPS", "ERRORS", "WARNINGS"]
    table = [header]
    for row in rows:
        status = row.status.upper() if row.status in PROBLEM_STATUSES else row.status
        started = row.started.strftime("%Y-%m-%d %H:%M:%S") if row.started else "-"
        table.append(
            [
                row.framework,
                row.run_id,
                status,
                started,
                format_duration(row.duration_s, short=True),
                str(row.steps) if row.steps or row.errors is not None else "-",
                "-" if row.errors is None else str(row.errors),
                "-" if row.warnings is None else str(row.warnings),
            ]
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    right = {4, 5, 6, 7}
    lines = []
    for index, cells in enumerate(table):
        padded = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(cells)
        ]
        if index == 0:
            lines.append(style("1", "  ".join(padded).rstrip()))
            continue
        row = rows[index - 1]
        padded[2] = style(_STATUS_COLORS.get(row.status, ""), padded[2])
        if row.errors:
            padded[6] = style("31", padded[6])
        lines.append("  ".join(padded).rstrip())
    return lines
