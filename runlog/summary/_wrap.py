"""Record text wrapped onto indented lines of a fixed width, cut only when huge."""

from __future__ import annotations

from typing import Final

from .._text import clean, width_of

ELLIPSIS: Final = "\u2026"


def _pieces(word: str, room: int) -> list[str]:
    """*word* broken into pieces of at most *room* columns."""
    out: list[str] = []
    current: list[str] = []
    used = 0
    for char in word:
        size = width_of(char)
        if current and used + size > room:
            out.append("".join(current))
            current, used = [], 0
        current.append(char)
        used += size
    if current:
        out.append("".join(current))
    return out


def wrap(
    text: str,
    width: int,
    *,
    first: str = "",
    indent: str = "",
    max_lines: int = 6,
) -> list[str]:
    """
    *text* on lines of at most *width* columns: the first after *first*, the
    rest after *indent*; words are kept whole unless longer than a line.

    Each line of *text* starts a new line; every character that could act on
    a terminal is escaped (``_text.clean``). Beyond *max_lines* the last line
    ends with an ellipsis, so a cut is never silent (see #17).
    """
    out: list[str] = []
    line = first
    fresh = True  # nothing but the prefix on the line yet
    for number, raw in enumerate(text.split("\n")):
        if number:
            out.append(line)
            line, fresh = indent, True
        for word in clean(raw).split(" "):
            if not word:
                continue
            if fresh and line != indent and width - width_of(line) < width // 4:
                # a prefix that leaves no room: the text starts below it
                out.append(line)
                line = indent
            need = width_of(word) + (0 if fresh else 1)
            if width_of(line) + need <= width:
                line += word if fresh else f" {word}"
                fresh = False
                continue
            if not fresh:
                out.append(line)
                line, fresh = indent, True
            room = max(width - width_of(line), 1)
            pieces = _pieces(word, room)
            for piece in pieces[:-1]:
                out.append(line + piece)
                line = indent
            line += pieces[-1]
            fresh = False
    out.append(line)
    out = [text.rstrip() for text in out]
    if len(out) <= max_lines:
        return out
    kept = out[:max_lines]
    last = kept[-1]
    while last and width_of(last) + 2 > width:
        last = last[:-1]
    kept[-1] = f"{last.rstrip()} {ELLIPSIS}"
    return kept
