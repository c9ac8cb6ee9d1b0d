"""Text for people: escaping, terminal column widths, cutting, durations, sizes."""

from __future__ import annotations

import math
import unicodedata
from decimal import ROUND_HALF_UP, Decimal
from typing import Final

import orjson

from ._status import parse_time

KIB: Final = 1024
_ESCAPES: Final = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def clean(text: str, *, json: bool = False) -> str:
    """
    *text* safe for a terminal: every character that could act on it shown escaped.

    C0 and C1 controls, DEL, line and paragraph separators (U+2028/U+2029),
    bidi embeddings, overrides and isolates and other format characters,
    surrogates and unassigned code points become visible escapes (``\\x1b``,
    ``\\u202e``); everything printable stays as it is. The one function every
    output of runlog that a person may read goes through (see #12).

    Args:
        text: Any text, from records, run.json, archive members, file names.
        json: *text* is a JSON document: escape as JSON (``\\u001b``), so it
            stays valid JSON.
    """
    if text.isascii() and text.isprintable():
        return text
    out: list[str] = []
    for char in text:
        if char.isprintable() or char == " ":
            out.append(char)
            continue
        category = unicodedata.category(char)
        if category[0] != "C" and category not in ("Zl", "Zp"):
            out.append(char)  # e.g. a non-breaking space: visible, harmless
        elif json:
            code = ord(char)
            if code < 0x10000:
                out.append(f"\\u{code:04x}")
            else:  # a JSON escape of an astral character is a surrogate pair
                code -= 0x10000
                out.append(f"\\u{0xD800 + (code >> 10):04x}")
                out.append(f"\\u{0xDC00 + (code & 0x3FF):04x}")
        elif char in _ESCAPES:
            out.append(_ESCAPES[char])
        else:
            code = ord(char)
            out.append(
                f"\\x{code:02x}"
                if code < 0x100
                else f"\\u{code:04x}"
                if code < 0x10000
                else f"\\U{code:08x}"
            )
    return "".join(out)


def _char_width(char: str) -> int:
    """2 for a wide East Asian character, else 1.

    A combining mark takes no column on a terminal but counts one here, so a
    line that fits also has at most *width* characters.
    """
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def width_of(text: str) -> int:
    """Columns of *text*: wide East Asian characters count two, others one."""
    if text.isascii():
        return len(text)
    return sum(_char_width(char) for char in text)


def fit(text: str, width: int) -> str:
    """*text* cut to *width* columns, ending in ``...`` when cut."""
    if width_of(text) <= width:
        return text
    out: list[str] = []
    used = 0
    for char in text:
        size = _char_width(char)
        if used + size > width - 3:
            break
        out.append(char)
        used += size
    return "".join(out) + "..."


def format_number(value: float) -> str:
    """An int as is; a float without a fraction as an int, else to one decimal."""
    if isinstance(value, int) or value.is_integer():
        return str(int(value))
    return f"{value:.1f}"


def format_duration(seconds: float | None, *, short: bool = False) -> str:
    """
    *seconds* for people, rounded half up to the unit shown; ``-`` when unknown.

    Under a second in milliseconds (``181ms``), then tenths of a second up
    to a minute (``2.5s``, ``41.3s``), then ``2m 34s`` and ``1h 02m 05s``.
    With *short* (table columns) whole seconds from 10 s and the two largest
    units only: ``42s``, ``2h 01m``, ``1d 01h``. Every duration runlog shows
    a person goes through here, so ``ls`` and the summary agree (see #17).
    """
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "-"
    exact = Decimal(repr(float(seconds)))
    millis = int(exact.scaleb(3).to_integral_value(ROUND_HALF_UP))
    if millis < 1000:
        return f"{millis}ms"
    tenths = int(exact.scaleb(1).to_integral_value(ROUND_HALF_UP))
    if tenths < 600 and not (short and tenths >= 100):
        return f"{tenths // 10}.{tenths % 10}s"
    whole = int(exact.to_integral_value(ROUND_HALF_UP))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if short:
        if whole < 60:
            return f"{whole}s"
        if not hours:
            return f"{minutes}m {secs:02d}s"
        if hours < 24:
            return f"{hours}h {minutes:02d}m"
        return f"{hours // 24}d {hours % 24:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    return f"{minutes}m {secs:02d}s"


def format_time(value: object) -> str:
    """An RFC 3339 time to the second (``2025-10-20T14:23:45Z``); ``-`` if absent."""
    moment = parse_time(value)
    if moment is not None:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return clean(value) if isinstance(value, str) and value else "-"


def format_size(size: int, *, short: bool = False) -> str:
    """
    *size* bytes for people: ``812 bytes`` or ``2048 bytes (2.0 KiB)``.

    With *short* (one-line reports): ``512 B``, ``4.4 KB``, ``5.0 GB``.
    """
    if short:
        value = float(size)
        for unit in ("B", "KB", "MB"):
            if value < KIB:
                return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
            value /= KIB
        return f"{value:.1f} GB"
    if size < KIB:
        return f"{size} bytes"
    scaled = size / KIB
    for unit in ("KiB", "MiB", "GiB"):
        if scaled < KIB:
            return f"{size} bytes ({scaled:.1f} {unit})"
        scaled /= KIB
    return f"{size} bytes ({scaled:.1f} TiB)"


def value_text(value: object) -> str:
    """A record value as text: strings as they are, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    except orjson.JSONEncodeError:
        return repr(value)


# values shown as indented lines under a record, not as key=value (see #16)
BLOCK_KEYS: Final = ("exception", "traceback")


def is_block(key: str, value: object) -> bool:
    """Whether *value* of *key* is shown as indented lines under its record."""
    return type(value) is str and (key in BLOCK_KEYS or "\n" in value)


def block_lines(
    key: str, text: str, *, last: int | None = None
) -> list[tuple[str, str]]:
    """
    A multi-line value (a traceback) as the indented lines shown under a record.

    The look of ``runlog show``: a ``    key:`` label (none for
    ``exception``), then each line of *text* indented four spaces, every
    line escaped with :func:`clean`.

    Args:
        key: The record key holding *text*.
        text: The value.
        last: Show only the last *last* lines, after ``    ... N more lines``.

    Returns:
        ``(kind, line)`` pairs, *kind* being ``label``, ``more`` or ``text``,
        for a caller that colours them.
    """
    out: list[tuple[str, str]] = []
    if key != "exception":
        out.append(("label", f"    {clean(key)}:"))
    lines = text.rstrip("\n").splitlines()
    if last is not None and len(lines) > last:
        out.append(("more", f"    ... {len(lines) - last} more lines"))
        lines = lines[-last:]
    out.extend(("text", f"    {clean(line)}") for line in lines)
    return out
