"""What the CLI shows: record lines, the ls table, colours, durations and sizes."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from itertools import islice
from typing import Any, Final, TextIO

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
# format_value's rules, inlined for the usual values (see #16)
_is_bare: Final = re.compile(r'[^\s"=\\]+').fullmatch
_BIG: Final = 1 << 63
_RIGHT: Final = frozenset({4, 5, 6, 7})  # ls columns aligned right
# runlog's own keys, in the order it writes them (SPEC 2)
_HEAD: Final = tuple(RESERVED_KEYS)
_HEAD_SIZE: Final = len(_HEAD)
# what plain_line remembers between records: the text between the time and
# the event, per (level, component, step), and how a short string value is
# written (a value with a newline is never kept: its record is not plain)
_CACHE_SIZE: Final = 4096
_CACHED_VALUE: Final = 64
_MIDDLES: dict[tuple[str, str, int | None], str] = {}
_VALUE_TEXTS: dict[str, str] = {}
# what plain_lines remembers: the format of the pairs per key layout, the
# middle per (level, component, step) of records it has seen (keys of exact
# types only)
_LAYOUTS: dict[tuple[str, ...], str] = {}
_FAST_MIDDLES: dict[tuple[str, str, int | None], str] = {}
# the ASCII a line may not hold: what str.isprintable() refuses
_CONTROL_BYTES: Final = bytes(range(32)) + b"\x7f"


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
    prefix: str = "",
) -> str:
    """
    One record as a readable line (plus indented blocks for tracebacks).

    ``2025-10-20 14:23:45.123 WARNING  step 3   adapter        rate_limited k=v``

    Args:
        entry: The record and where it was read.
        style: Colors, or plain text.
        source: Append ``@ step_003/adapter.log:17``.
        block_lines: Show only the last lines of each traceback (None: all).
        prefix: Put before the file's path after ``@`` (the run's ``logs/``
            as seen from the current directory: see #16).
    """
    if not style.enabled:
        line = plain_line(entry, source, prefix)
        if line is not None:
            return line
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
        head += "  " + style("2", clean(f"@ {prefix}{entry.location}"))
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


def plain_line(entry: Entry, source: bool, prefix: str) -> str | None:
    """
    The line :func:`render_entry` makes without colour, built in one go for
    the usual record (see #16): string level, component and event, an int
    or no step, no block to show below. None for anything else, and for a
    line holding a character ``clean()`` would escape: render_entry's
    careful path then makes it.
    """
    record = entry.record
    level = record.get("level", "")
    component = record.get("component", "")
    event = record.get("event", "")
    if type(level) is not str or type(component) is not str or type(event) is not str:
        return None
    step = record.get("step")
    if step is not None and type(step) is not int:
        return None
    if component == "external" and record.get("logger"):
        return None
    # keyed on exact types only (an int step or None): True would hash as 1
    middle = _MIDDLES.get((level, component, step))
    if middle is None:
        step_text = "run" if step is None else f"step {step}"
        middle = f" {level.upper():<8} {step_text:<8} {component:<14} "
        if len(_MIDDLES) >= _CACHE_SIZE:
            _MIDDLES.clear()
        _MIDDLES[(level, component, step)] = middle
    ts = entry.ts
    if len(ts) == 27 and ts[10] == "T" and ts[26] == "Z":
        ts = f"{ts[:10]} {ts[11:23]}"
    head = ts + middle + event
    items: Iterable[tuple[str, Any]] = record.items()
    if len(record) >= _HEAD_SIZE and tuple(islice(record, _HEAD_SIZE)) == _HEAD:
        # written by runlog: its own keys first, so the rest are the caller's
        items = islice(items, _HEAD_SIZE, None)
        check = False
    else:
        check = True
    parts = [head]
    append = parts.append
    texts = _VALUE_TEXTS
    for key, value in items:
        if check and key in _RESERVED:
            continue
        kind = type(value)
        if kind is str:
            text = texts.get(value)
            if text is None:
                if key in _BLOCK_KEYS or "\n" in value:
                    return None
                text = value if _is_bare(value) else format_value(value)
                if len(value) <= _CACHED_VALUE:
                    if len(texts) >= _CACHE_SIZE:
                        texts.clear()
                    texts[value] = text
            elif key in _BLOCK_KEYS:
                return None
            append(f"{key}={text}")
        elif kind is int and -_BIG < value < _BIG:
            append(f"{key}={value}")
        else:
            append(f"{key}={format_value(value)}")
    if source:
        append(f" @ {prefix}{entry.location}")
    line = " ".join(parts)
    return line if line.isascii() and line.isprintable() else None


def plain_lines(
    entries: Sequence[Entry], source: bool = False, prefix: str = ""
) -> list[str | None]:
    """
    :func:`plain_line` of each of *entries*, made a batch at a time (see #16).

    A record written by runlog (its own keys first, in its order) whose
    other values are strings, ints and floats is rendered with one format
    string kept per key layout, so a record costs a few C calls instead of
    a call and an f-string per key. An item is None where :func:`plain_line`
    may give None, or where the record is not of that kind: the caller then
    makes that line as :func:`render_entry` does.
    """
    lines: list[str | None] = []
    append = lines.append
    layouts = _LAYOUTS
    middles = _FAST_MIDDLES
    texts = _VALUE_TEXTS
    for entry in entries:
        record = entry.record
        keys = tuple(record)
        layout = layouts.get(keys)
        if layout is None:
            layout = _layout(keys)
        if not layout:
            append(plain_line(entry, source, prefix))
            continue
        values = tuple(record.values())
        level, event, component, step = values[1], values[2], values[4], values[7]
        if (
            type(event) is not str
            or type(level) is not str
            or type(component) is not str
            or (step is not None and type(step) is not int)
        ):
            append(plain_line(entry, source, prefix))
            continue
        # keyed on exact types only (an int step or None): True would hash as 1
        middle = middles.get((level, component, step))
        if middle is None:
            middle = _fast_middle(level, component, step)
            if middle is None:
                append(plain_line(entry, source, prefix))
                continue
        shown: list[object] = []
        for value in values[_HEAD_SIZE:]:
            kind = type(value)
            if kind is str:
                text = texts.get(value)
                if text is None:
                    if "\n" in value:
                        break
                    text = value if _is_bare(value) else format_value(value)
                    if len(value) <= _CACHED_VALUE:
                        if len(texts) >= _CACHE_SIZE:
                            texts.clear()
                        texts[value] = text
                shown.append(text)
            elif kind is int and -_BIG < value < _BIG:
                shown.append(value)  # str(value): what format_value gives
            elif kind is float:
                # repr and orjson both write the shortest text that reads
                # back as the same float, alike but for exponents (1e+16 /
                # 1e16) and inf/nan (null); those go through format_value
                text = repr(value)
                if "e" in text or "n" in text:
                    text = format_value(value)
                shown.append(text)
            else:
                break
        else:
            ts = entry.ts
            if len(ts) == 27 and ts[10] == "T" and ts[26] == "Z":
                ts = f"{ts[:10]} {ts[11:23]}"
            line = ts + middle + event
            if shown:
                line = f"{line} {layout.format(*shown)}"
            if source:
                line = f"{line}  @ {prefix}{entry.location}"
            append(line)  # checked below, with the whole batch
            continue
        append(plain_line(entry, source, prefix))
    if not _all_printable(lines):
        lines = [
            line if line is None or (line.isascii() and line.isprintable()) else None
            for line in lines
        ]
    return lines


def _all_printable(lines: list[str | None]) -> bool:
    # True if every line is printable ASCII: one check of the batch costs a
    # third of a check per line (see #16); False sends each line to its own
    shown = [line for line in lines if line is not None]
    text = "\n".join(shown)
    if not text.isascii():
        return False
    data = text.encode("ascii")
    # the only control bytes allowed are the newlines put between the lines
    separators = max(0, len(shown) - 1)
    return len(data.translate(None, _CONTROL_BYTES)) == len(data) - separators


def _fast_middle(level: str, component: str, step: int | None) -> str | None:
    """The text between time and event for :func:`plain_lines`, remembered."""
    if component == "external":  # its logger= pair comes first: plain_line's
        return None
    step_text = "run" if step is None else f"step {step}"
    middle = f" {level.upper():<8} {step_text:<8} {component:<14} "
    if len(_FAST_MIDDLES) >= _CACHE_SIZE:
        _FAST_MIDDLES.clear()
    _FAST_MIDDLES[(level, component, step)] = middle
    return middle


def _layout(keys: tuple[str, ...]) -> str:
    """
    The format string of the ``key=value`` pairs of a record with *keys*,
    or "" when its line is not made by :func:`plain_lines`.
    """
    layout = ""
    if keys[:_HEAD_SIZE] == _HEAD and not any(k in _BLOCK_KEYS for k in keys):
        pairs = [k.replace("{", "{{").replace("}", "}}") + "={}" for k in keys]
        # the pairs are 1 to n; a record of runlog's keys alone has none
        layout = " ".join(pairs[_HEAD_SIZE:]) or " "
    if len(_LAYOUTS) >= _CACHE_SIZE:
        _LAYOUTS.clear()
    _LAYOUTS[keys] = layout
    return layout


def ls_table(rows: Sequence[RunRow], style: Style) -> list[str]:
    """
    The ``runlog ls`` table of *rows*: a header, then one line per run.

    Every value read from a run (names, status, reason) is escaped with
    :func:`clean` and cut to a sane width, so a tampered run.json or a
    hostile directory name cannot move the cursor, recolor or reorder the
    terminal, or widen every other row (see #12). A last column says why a
    run could not be read (REASON), or that only its summary is here
    (NOTE ``summary only``, as in a fresh clone: see #17).
    """
    header = ["FRAMEWORK", "RUN ID", "STATUS", "STARTED (UTC)", "DURATION"]
    header += ["STEPS", "ERRORS", "WARNINGS"]
    notes = [_note(row) for row in rows]
    if any(note is not None for note in notes):
        header.append("REASON" if any(r.reason is not None for r in rows) else "NOTE")
    columns = len(header)
    table = [header]
    for row, note in zip(rows, notes, strict=True):
        status = row.status.upper() if row.status in PROBLEM_STATUSES else row.status
        # isoformat is several times faster than strftime over 10,000 rows
        started = row.started.isoformat(" ", "seconds")[:19] if row.started else "-"
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
        if columns > len(cells):
            cells.append(note or "")
        table.append(cells)
    sizes = [[width_of(cell) for cell in cells] for cells in table]
    widths = [max(line[i] for line in sizes) for i in range(columns)]
    lines = []
    for index, cells in enumerate(table):
        # by terminal columns, so a wide CJK name keeps the columns aligned
        gaps = [" " * (widths[i] - size) for i, size in enumerate(sizes[index])]
        padded = [
            gaps[i] + cell if i in _RIGHT else cell + gaps[i]
            for i, cell in enumerate(cells)
        ]
        if index == 0:
            lines.append(style("1", "  ".join(padded).rstrip()))
            continue
        row = rows[index - 1]
        if style.enabled:
            padded[2] = style(_STATUS_COLORS.get(row.status, ""), padded[2])
            if row.errors:
                padded[6] = style("31", padded[6])
        lines.append("  ".join(padded).rstrip())
    return lines


def _note(row: RunRow) -> str | None:
    if row.reason is not None:
        return fit(clean(row.reason), _REASON_CELL)
    if row.source == "summary":
        return "summary only"
    return None


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
