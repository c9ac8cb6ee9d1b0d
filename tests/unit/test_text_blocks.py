"""Tracebacks and other multi-line values as the indented lines under a record."""

from __future__ import annotations

from runlog._text import block_lines, is_block


def test_a_traceback_is_labelled_indented_and_escaped() -> None:
    """A traceback gets a label line, then each line indented four spaces, escaped."""
    text = "Traceback (most recent call last):\n  File x\nValueError: \x1b[2J\n"
    assert block_lines("traceback", text) == [
        ("label", "    traceback:"),
        ("text", "    Traceback (most recent call last):"),
        ("text", "      File x"),
        ("text", "    ValueError: \\x1b[2J"),
    ]


def test_an_exception_has_no_label_and_long_text_keeps_its_end() -> None:
    """exception has no label line; last=N keeps the last N lines after a count."""
    text = "\n".join(f"line {n}" for n in range(10))
    assert block_lines("exception", text, last=2) == [
        ("more", "    ... 8 more lines"),
        ("text", "    line 8"),
        ("text", "    line 9"),
    ]


def test_block_values_are_tracebacks_and_multi_line_strings() -> None:
    """exception/traceback strings and any string with a line break are blocks."""
    assert is_block("traceback", "one line")
    assert is_block("note", "two\nlines")
    assert not is_block("note", "one line")
    assert not is_block("exception", 3)
