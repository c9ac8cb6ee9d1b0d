"""Which lines of a block can match the filters, found in the raw bytes before parsing.

A run's lines are searched as bytes, at ``bytes.find`` speed, and only lines
that may match are parsed (see #16). A prefilter may only over-match: every
line it drops must be one the filters would drop after parsing, with the same
count of malformed lines. So it works on a block only when the block is
*plain*: ASCII, no backslash (no JSON escape anywhere), no DEL, and every line
a single ``{"ts":"...}`` object. In such a block a string's text is in the
file byte for byte, so a literal the ``--grep`` regex needs in every match is
in the raw line whenever it is in the text ``--grep`` searches; any other
block is read line by line as before.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from ._source import LEVEL_ALIASES, MAX_LINE, Filters, Line, Scanner, scan_lines
from ._verdicts import LOUD, PLAIN, TOP, UNKNOWN, Facts, Segment, segments

__all__ = ["Prefilter", "Scanner", "is_plain", "prefilter_for", "required_literal"]

# Every character that separates fields in the text --grep searches (the human
# line: `ts LEVEL [component] step=N event key=value`, Python reprs of odd
# values) or in the JSON line. A literal free of them lies inside one field.
_SEPARATORS: Final = frozenset(" \t\r\n\"'=:,[]{}()\\")
# Fields of the searched text that are not a string's text from the file:
# numbers as Python or orjson spells them, and words runlog adds. A literal
# that fits inside one of them may be in the text but not the file.
_NUMBER_CHARS: Final = frozenset("0123456789.+-eE")
_MADE_WORDS: Final = ("step", "true", "false", "none", "null", "inf", "nan", "infinity")
_FIRST: Final = b'{"ts":"'
# Bytes that make a block not plain: an escape, DEL, and the control bytes a
# JSON string may not hold raw (such a line is malformed, and must be counted)
_UNPLAIN: Final = (b"\\", b"\x7f", b"\x00", b"\t", b"\r", b"\x1b")
# the highest level a plain segment names (see _verdicts.TOP): a bound, any,
# or any with a "level" key the level scan cannot read
_WARNING: Final = LEVEL_ALIASES["warning"]
_BOUNDS: Final = (LEVEL_ALIASES["info"], _WARNING)
_ANY: Final = 99
_UNCHECKED: Final = 100
# what a line naming a level above warning holds, lowercased
_LOUD: Final = tuple(
    b'"level":"%s"' % name.encode() for name, n in LEVEL_ALIASES.items() if n > 30
)


@dataclass(frozen=True, slots=True)
class Prefilter:
    """
    Byte strings one of which every line that can match contains.

    Attributes:
        needles: A line that may match holds one of these.
        fold: The needles are lowercase and are looked for in the lowercased block.
        checks: ``(key, key_and_quote)`` pairs: in a block where a key is not
            always followed by ``:"`` (a string value, as runlog writes it),
            no line is dropped.
        components: The component names the needles stand for, when they
            are a ``--component`` test (a file of that name is read whole).
        min_level: The ``--level`` of the filters: a plain segment of a file
            naming no level at or above it holds no match.
    """

    needles: tuple[bytes, ...]
    fold: bool = False
    checks: tuple[tuple[bytes, bytes], ...] = ()
    components: frozenset[str] = frozenset()
    min_level: int = 0

    def scanner_for(self, component: str) -> Scanner | None:
        """
        The scan for a log file of *component*, or None where it would keep
        nearly every line: a file named for a wanted component holds its
        records (see #16).
        """
        return None if component in self.components else self.scan

    def scan(
        self,
        data: bytes,
        pos: int,
        stop: int,
        line_no: int,
        max_line: int = MAX_LINE,
        newlines: int | None = None,
    ) -> Iterator[Line]:
        """
        The lines of ``data[pos:stop]`` that may match, as :data:`Line` items.

        On a plain block only lines holding a needle are returned (the others
        are left out: their numbers are skipped); on any other block every
        line is, as :func:`scan_lines` cuts them.
        """
        return self._scan(data, pos, stop, line_no, max_line, newlines)

    def _scan(
        self,
        data: bytes,
        pos: int,
        stop: int,
        line_no: int,
        max_line: int,
        newlines: int | None,
        plain: bool | None = None,
    ) -> Iterator[Line]:
        # scan(), told whether the block is plain when that is known
        if newlines is None:
            newlines = data.count(b"\n", pos, stop)
        hits = -1
        if not self.fold:
            hits = sum(data.count(needle, pos, stop) for needle in self.needles)
            if hits * 5 >= newlines * 4:
                # most lines may match: cutting them all in one split costs
                # less than finding each, and needs no plain block (see #16)
                return scan_lines(data, pos, stop, line_no, max_line, newlines)
        haystack = self._haystack(data, pos, stop, newlines, max_line, plain)
        if haystack is None:
            return scan_lines(data, pos, stop, line_no, max_line, newlines)
        if hits < 0:
            hits = sum(map(haystack.count, self.needles))
            if hits * 5 >= newlines * 4:
                return scan_lines(data, pos, stop, line_no, max_line, newlines)
        if not hits:
            return iter(())
        if len(self.needles) == 1:
            return self._found(haystack, self.needles[0], data, pos, stop, line_no)
        return self._candidates(haystack, data, pos, stop, line_no)

    def _haystack(
        self,
        data: bytes,
        pos: int,
        stop: int,
        newlines: int,
        max_line: int,
        plain: bool | None,
    ) -> bytes | None:
        # the block to search (lowercased when folding), or None if not plain
        if plain is None:
            plain = is_plain(data, pos, stop, newlines, max_line)
        if not plain:
            return None
        region = data[pos:stop]
        if self.fold:
            region = region.lower()
        for key, key_and_quote in self.checks:
            if region.count(key) != region.count(key_and_quote):
                return None
        return region

    def _found(
        self,
        haystack: bytes,
        needle: bytes,
        data: bytes,
        pos: int,
        stop: int,
        line_no: int,
    ) -> Iterator[Line]:
        # one needle: its lines come in order, each once
        find = haystack.find
        at = find(needle)
        counted = 0
        while at >= 0:
            first = haystack.rfind(b"\n", 0, at) + 1
            end = find(b"\n", at)
            line_no += haystack.count(b"\n", counted, first)
            counted = first
            yield line_no, 1, data[pos + first : pos + end]
            at = find(needle, end + 1)

    def _candidates(
        self, haystack: bytes, data: bytes, pos: int, stop: int, line_no: int
    ) -> Iterator[Line]:
        starts: set[int] = set()
        for needle in self.needles:
            at = haystack.find(needle)
            while at >= 0:
                starts.add(haystack.rfind(b"\n", 0, at) + 1)
                at = haystack.find(needle, haystack.find(b"\n", at) + 1)
        counted = pos
        for first in sorted(starts):
            first += pos
            line_no += data.count(b"\n", counted, first)
            counted = first
            yield line_no, 1, data[first : data.find(b"\n", first, stop)]

    def read_file(
        self, path: Path, block: int, max_line: int = MAX_LINE
    ) -> Iterator[Line] | None:
        """
        The items :func:`~runlog.reading._source.split_file` gives with this
        scan for the file at *path*, read in segments whose facts are kept
        between reads (:mod:`._verdicts`); None for a ``--component`` test,
        which is read as before.
        """
        if self.checks and not self.min_level:
            return None
        return self._read(path, block, max_line)

    def _read(self, path: Path, block: int, max_line: int) -> Iterator[Line]:
        absent = None if self.fold else self._absent
        for item in segments(path, block, max_line, self.scan, self._plan, absent):
            if isinstance(item, tuple):
                yield item
            else:
                yield from self._segment(item, max_line)

    def _absent(self, data: bytearray, size: int) -> bool:
        # True if no needle is in the plain lines data[:size]: none can match
        find = data.find
        return all(find(needle, 0, size) < 0 for needle in self.needles)

    def _plan(self, facts: Facts) -> list[list[int]] | None:
        # The lines of a segment to read, as its kept facts tell: none when
        # it names no level as high as --level, its loud lines for a level
        # above warning; None (read it all) when they cannot tell.
        if facts[PLAIN] != 1:
            return None
        top = facts[TOP]
        if top in _BOUNDS and top < self.min_level:
            return []
        if top == _ANY and self.min_level > _WARNING and facts[LOUD] != UNKNOWN:
            loud: list[list[int]] = facts[LOUD]
            return loud
        return None

    def _segment(self, segment: Segment, max_line: int) -> Iterator[Line]:
        facts = segment.facts
        data, size = segment.data, segment.size
        if facts[PLAIN] == UNKNOWN:
            facts[PLAIN] = int(is_plain(data, 0, size, segment.newlines, max_line))
        if facts[PLAIN] and self.min_level > LEVEL_ALIASES["info"]:
            if facts[TOP] == UNKNOWN:
                lowered = segment.text().lower()
                facts[TOP], facts[LOUD] = _level_facts(lowered, self.min_level)
            if facts[TOP] in _BOUNDS and facts[TOP] < self.min_level:
                return iter(())
            if facts[TOP] == _ANY and self.min_level > _WARNING:
                return self._loud(segment, facts[LOUD])
        if facts[PLAIN] and not self.fold and self._absent(data, size):
            return iter(())
        plain = bool(facts[PLAIN])
        return self._scan(
            segment.text(), 0, size, segment.line_no, max_line, segment.newlines, plain
        )

    @staticmethod
    def _loud(segment: Segment, loud: list[list[int]]) -> Iterator[Line]:
        data, first = segment.data, segment.line_no
        for start, size, index in loud:
            yield first + index, 1, bytes(data[start : start + size])


def _loud_lines(lowered: bytes) -> list[list[int]]:
    # [start, size, index] of each line of a plain block (lowercased, every
    # "level" key followed by :") that holds one of _LOUD: the only lines
    # that can match a --level above warning (see #16)
    starts: set[int] = set()
    for needle in _LOUD:
        at = lowered.find(needle)
        while at >= 0:
            starts.add(lowered.rfind(b"\n", 0, at) + 1)
            at = lowered.find(needle, lowered.find(b"\n", at) + 1)
    found: list[list[int]] = []
    index = counted = 0
    for start in sorted(starts):
        index += lowered.count(b"\n", counted, start)
        counted = start
        found.append([start, lowered.find(b"\n", start) - start, index])
    return found


def is_plain(
    data: bytes | bytearray, pos: int, stop: int, newlines: int, max_line: int
) -> bool:
    """
    True if the *newlines* lines ``data[pos:stop]`` are plain: ASCII, no
    backslash, DEL or control byte but the newlines, each line one
    ``{"ts":"...}`` object, none longer than *max_line*.
    """
    if newlines == 0 or stop - pos > max_line:
        return False
    region = data[pos:stop]
    if not region.isascii() or any(byte in region for byte in _UNPLAIN):
        return False
    # each line one {"ts":"...} object: a torn or hand-made line has no
    # first key, two of them, or no closing brace
    if not region.startswith(_FIRST) or not region.endswith(b"}\n"):
        return False
    if region.count(_FIRST) != newlines:
        return False
    return newlines == 1 or region.count(b'}\n{"ts":"') == newlines - 1


def _level_facts(lowered: bytes, min_level: int) -> tuple[int, list[list[int]] | int]:
    # The highest level number a line of a plain block (lowercased) can
    # have, and its loud lines (see _loud_lines). In a plain block every
    # "level" is a key or a whole string; when each is followed by :", a
    # line whose level is above warning holds one of _LOUD, and one at
    # warning holds "level":"warn. A line without a level counts as info.
    # Where that is so, the level scan keeps no line without those either.
    if lowered.count(b'"level"') != lowered.count(b'"level":"'):
        return _UNCHECKED, UNKNOWN  # the level scan keeps every line of it
    loud = _loud_lines(lowered)
    if loud:
        return _ANY, loud
    if min_level <= _WARNING and lowered.find(b'"level":"warn') < 0:
        return LEVEL_ALIASES["info"], loud
    return _WARNING, loud  # a bound, found without looking for warnings


def _parser() -> Any:
    # the regex parser of the standard library: private, but the only way to
    # read the structure of a pattern the user gave (see #16)
    return importlib.import_module("re._parser")


def required_literal(pattern: re.Pattern[str]) -> str | None:
    """
    The longest text every match of *pattern* contains, found at its top
    level (a run of plain characters), or None when there is none.
    """
    parser = _parser()
    constants = importlib.import_module("re._constants")
    try:
        parsed = parser.parse(pattern.pattern, pattern.flags)
    except re.error:  # it compiled, so this does not happen; be safe
        return None
    best = ""
    run: list[str] = []
    for op, value in [*parsed, (None, None)]:
        if op is constants.LITERAL:
            run.append(chr(value))
            continue
        text = "".join(run)
        if len(text) > len(best):
            best = text
        run = []
    return best or None


def _is_safe(literal: str) -> bool:
    # True if the literal, wherever it is in the text --grep searches, is in
    # the raw line of a plain block too
    if not literal.isascii() or any(char in _SEPARATORS for char in literal):
        return False
    if set(literal) <= _NUMBER_CHARS:
        return False
    lowered = literal.lower()
    return not any(lowered in word for word in _MADE_WORDS)


def prefilter_for(filters: Filters) -> Prefilter | None:
    """
    The prefilter of *filters*, or None when no byte test can drop a line.

    Chooses one test: a literal the ``--grep`` regex needs; else the level
    names at or above ``--level`` (when above info); else the components.
    The filters themselves still decide every line the prefilter keeps.
    """
    if filters.pattern is not None:
        literal = required_literal(filters.pattern)
        fold = bool(filters.pattern.flags & re.IGNORECASE)
        if literal is not None and _is_safe(literal):
            text = literal.lower() if fold else literal
            return Prefilter(
                (text.encode("ascii"),), fold=fold, min_level=filters.min_level
            )
    if filters.min_level > LEVEL_ALIASES["info"]:
        # unknown level names count as info, so above info only these match,
        # in any case (level names are compared lowercased)
        names = sorted(n for n, v in LEVEL_ALIASES.items() if v >= filters.min_level)
        return Prefilter(
            tuple(b'"level":"%s"' % name.encode() for name in names),
            fold=True,
            checks=((b'"level"', b'"level":"'),),
            min_level=filters.min_level,
        )
    if filters.components is not None:
        if not all(_is_plain_text(name) for name in filters.components):
            return None
        return Prefilter(
            tuple(b'"component":"%s"' % c.encode() for c in sorted(filters.components)),
            checks=((b'"component"', b'"component":"'),),
            components=filters.components,
        )
    return None


def _is_plain_text(text: str) -> bool:
    return (
        text.isascii() and text.isprintable() and '"' not in text and "\\" not in text
    )
