"""Line assembly for captured output: whole lines, ``\\r`` collapsed, long lines cut."""

from __future__ import annotations

from typing import Any, Final

# A line longer than this many characters is recorded in numbered parts, so
# one endless line cannot exhaust memory (see #15). Characters in "python"
# mode, decoded characters of the bytes in "fd" mode: 1 MiB for ASCII.
MAX_LINE: Final = 1 << 20

Emit = tuple[str, dict[str, Any]]


def collapse(text: str) -> str:
    """
    *text* as a terminal shows it once every ``\\r`` has moved the cursor home.

    ``"10%\\r100%"`` gives ``"100%"``; ``"hello\\rab"`` gives ``"abllo"``.
    """
    if "\r" not in text:
        return text
    shown = ""
    for segment in text.split("\r"):
        shown = segment + shown[len(segment) :]
    return shown


def _compact(text: str) -> str:
    # keep an unfinished progress line bounded: everything before its last
    # "\r" is collapsed, the last "\r" stays so the next write overwrites
    before, cr, after = text.rpartition("\r")
    if not cr or "\r" not in before:
        return text
    return collapse(before) + "\r" + after


class Pending:
    """
    The unterminated text one writer (a thread, or a descriptor) has printed.

    Not thread-safe: the owner guards it. *key* is the (run generation, step)
    the text was first written in, so a line is recorded in the step that
    printed it.
    """

    __slots__ = ("key", "last", "part", "text")

    def __init__(self, key: tuple[int, int | None], now: float) -> None:
        self.key = key
        self.text = ""
        self.last = now
        self.part = 0

    def feed(self, chunk: str, now: float) -> list[Emit]:
        """
        Add *chunk*; return the lines (and long-line parts) it completes.

        Each item is ``(event, fields)``: fields hold ``part``/``parts`` for a
        line cut into pieces. A line ends at ``\\n``; a ``\\r\\n`` ending is
        dropped; ``\\r`` inside a line keeps only its final state.
        """
        self.last = now
        out: list[Emit] = []
        if "\n" in chunk:
            lines = (self.text + chunk).split("\n")
            self.text = lines.pop()
            for line in lines:
                if line.endswith("\r"):
                    line = line[:-1]
                self._finish(collapse(line), out)
        else:
            self.text += chunk
            if "\r" in chunk:
                self.text = _compact(self.text)
        if len(self.text) > MAX_LINE:
            self._cut(out)
        return out

    def flush(self) -> list[Emit]:
        """The unterminated text as one ``partial`` record (nothing if empty)."""
        out: list[Emit] = []
        text = collapse(self.text)
        if text or self.part:
            self._finish(text, out)
            out[-1][1]["partial"] = True
        self.text = ""
        return out

    def _cut(self, out: list[Emit]) -> None:
        text = collapse(self.text) if "\r" in self.text else self.text
        while len(text) > MAX_LINE:
            self.part += 1
            out.append((text[:MAX_LINE], {"part": self.part}))
            text = text[MAX_LINE:]
        self.text = text

    def _finish(self, line: str, out: list[Emit]) -> None:
        if len(line) > MAX_LINE:
            self.text, rest = line, self.text
            self._cut(out)
            line, self.text = self.text, rest
        if self.part:
            self.part += 1
            out.append((line, {"part": self.part, "parts": self.part}))
            self.part = 0
        else:
            out.append((line, {}))
