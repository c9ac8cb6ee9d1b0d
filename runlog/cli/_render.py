"""What the CLI shows: record lines, the ls table, colours, durations and sizes."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Final, TextIO

import orjson

from .._records import RESERVED_KEYS
from .._text import clean, fit, format_duration, width_of
from ..combined import format_value
from ..reading._runs import UNREADABLE, RunRow
from ..reading._source import Entry

PROBLEM_STATUSES: Final = frozenset(
    {"failed", "crashed", "interrupted", "incomplete", UNREADABLE}
)
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
    UNREADABLE: "1;31",
}
# the widest an ls cell copied from a run's files may be: a name is at most
# 128 characters (SPEC 1), so only a tampered value is ever cut (see #12)
_NAME_CELL: Final = 128
_STATUS_CELL: Final = 32
_REASON_CELL: Final = 256
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
    """
    The ``runlog ls`` table of *rows*: a header, then one line per run.

    Every value read from a run (names, status, reason) is escaped with
    :func:`clean` and cut to a sane width, so a tampered run.json or a
    hostile directory name cannot move the cursor, recolor or reorder the
    terminal, or widen every other row (see #12). A REASON column is added
    when a run could not be read.
    """
    header = ["FRAMEWORK", "RUN ID", "STATUS", "STARTED (UTC)", "DURATION"]
    header += ["STEPS", "ERRORS", "WARNINGS"]
    with_reason = any(row.reason is not None for row in rows)
    if with_reason:
        header.append("REASON")
    table = [header]
    for row in rows:
        status = row.status.upper() if row.status in PROBLEM_STATUSES else row.status
        started = row.started.strftime("%Y-%m-%d %H:%M:%S") if row.started else "-"
        cells = [
            fit(clean(row.framework), _NAME_CELL),
            fit(clean(row.run_id), _NAME_CELL),
            fit(clean(status), _STATUS_CELL),
            started,
            format_duration(row.duration_s, short=True),
            str(row.steps) if row.steps or row.errors is not None else "-",
            "-" if row.errors is None else str(row.errors),
            "-" if row.warnings is None else str(row.warnings),
        ]
        if with_reason:
            cells.append(fit(clean(row.reason or ""), _REASON_CELL))
        table.append(cells)
    widths = [max(width_of(line[i]) for line in table) for i in range(len(header))]
    right = {4, 5, 6, 7}
    lines = []
    for index, cells in enumerate(table):
        padded = [
            _pad(cell, widths[i], right=i in right) for i, cell in enumerate(cells)
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


def _pad(cell: str, width: int, *, right: bool) -> str:
    # by terminal columns, so a wide CJK name keeps the columns aligned
    gap = " " * (width - width_of(cell))
    return gap + cell if right else cell + gap


def ls_json(rows: Sequence[RunRow]) -> str:
    """
    *rows* as one JSON array, safe to print to a terminal.

    The values are exact: a character :func:`clean` would escape is written
    as a JSON ``\\uXXXX`` escape, which any JSON reader turns back into the
    same character, so no escape sequence or bidi control reaches the
    terminal raw (see #12). A lone surrogate (a file name that is not UTF-8)
    cannot be JSON, so it is written as its Python escape text (``\\udcff``).
    """
    text = orjson.dumps([_json_safe(row.as_json()) for row in rows]).decode()
    if clean(text) == text:
        return text
    return "".join(char if clean(char) == char else _json_escape(char) for char in text)


def _json_safe(values: dict[str, object]) -> dict[str, object]:
    return {
        key: value.encode("utf-8", "backslashreplace").decode("utf-8")
        if isinstance(value, str)
        else value
        for key, value in values.items()
    }


def _json_escape(char: str) -> str:
    code = ord(char)
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000  # a UTF-16 surrogate pair, as JSON spells astral characters
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
