"""
The run summary as GitHub-flavoured markdown: status line, steps table, errors.

Everything that comes from a run's files is put where markdown and HTML do
not act on it: inline code spans (``|`` escaped inside tables) and fenced
code blocks whose fence is longer than any run of backticks in them, after
``_text.clean`` has escaped control characters (see #17).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Final

from .._text import clean, format_duration, format_number
from ._layout import plural
from ._scan import Step
from ._summarizer import Report

MAX_TABLE_STEPS: Final = 50
_BACKTICKS: Final = re.compile(r"`+")
_STATUS_WORD: Final = re.compile(r"[A-Z][A-Z_]{0,19}")


def code(text: str, *, table: bool = False) -> str:
    """
    *text* as an inline code span: shown literally, never as markdown or HTML.

    The span's fence is one backtick longer than the longest run inside;
    in a table cell ``|`` is escaped as ``\\|`` (GFM reads it back as ``|``).
    """
    text = clean(text)
    if not text:
        return ""
    longest = max((len(run) for run in _BACKTICKS.findall(text)), default=0)
    ticks = "`" * (longest + 1)
    pad = " " if text[0] in "` " or text[-1] in "` " else ""
    if table:
        text = text.replace("|", "\\|")
    return f"{ticks}{pad}{text}{pad}{ticks}"


def fence(lines: Iterable[str]) -> list[str]:
    """*lines* as a fenced code block no line of them can close."""
    body = [clean(line) for line in lines]
    longest = max(
        (len(run) for line in body for run in _BACKTICKS.findall(line)), default=0
    )
    ticks = "`" * max(3, longest + 1)
    return [f"{ticks}text", *body, ticks]


def status_word(status: str) -> str:
    """A status in bold when it is one word of capitals, else as code."""
    return f"**{status}**" if _STATUS_WORD.fullmatch(status) else code(status)


def _details(title: str, lines: Sequence[str]) -> list[str]:
    # the <summary> holds only text made here: inside an HTML block markdown
    # is not read, so record text there would be HTML (see #17)
    return [f"<details><summary>{title}</summary>", "", *fence(lines), "", "</details>"]


def _table_steps(report: Report) -> tuple[list[Step], int]:
    """The steps of the table: notable ones first, then in order, sorted."""
    steps = report.steps
    if len(steps) <= MAX_TABLE_STEPS:
        return steps, 0
    ranked = sorted(steps, key=lambda s: (not report.notable(s), s.number))
    shown = sorted(ranked[:MAX_TABLE_STEPS], key=lambda s: s.number)
    return shown, len(steps) - len(shown)


def _steps_table(report: Report) -> list[str]:
    steps, hidden = _table_steps(report)
    if not steps:
        return ["No steps."]
    rows = [
        "| step | name | status | duration | attempts | API calls "
        "| LLM requests | tokens | warnings | errors |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for step in steps:
        rows.append(
            f"| {step.number:03d} | {code(step.name or '', table=True)} "
            f"| {status_word(step.final_status)} "
            f"| {format_duration(step.duration)} | {step.attempts} "
            f"| {step.api_calls} | {step.llm_requests} "
            f"| {format_number(step.total)} | {step.warnings} | {step.errors} |"
        )
    if hidden:
        rows.append(f"| | {hidden} more steps | | | | | | | | |")
    return rows


def _entries(report: Report, kind: str) -> list[str]:
    """The listed errors (or warnings) as in logs_summary.txt, in <details>."""
    found = report.scan.errors if kind == "error" else report.scan.warnings
    if not found.total:
        return []
    item = report.error_item if kind == "error" else report.warning_item
    lines = [line for entry in found.items() for line in item(entry)]
    hidden = found.total - len(found.items())
    if hidden:
        lines.append(f"  ... and {hidden} more: {report.show_command(level=kind)}")
    title = f"{kind.capitalize()}s ({found.total})"
    return ["", *_details(title, lines)]


def render_markdown(report: Report) -> str:
    """
    The markdown summary of one scanned run: a status line, the story of
    its first failure, a steps table, and its errors and warnings folded in
    ``<details>``. Extra sections follow the story.
    """
    s = report.s
    totals = report.totals
    parts = [
        status_word(report.final),
        plural(len(report.steps), "step")
        + (f" ({report.step_counts()})" if report.steps else ""),
        plural(totals.errors, "error"),
        plural(totals.warnings, "warning"),
        report.run_duration(),
    ]
    if totals.total:
        parts.append(f"{format_number(totals.total)} tokens")
    out = [
        f"### runlog: {code(s.framework)} / {code(s.run_id)}",
        "",
        " · ".join(parts),
    ]
    story = [*report.end_lines(), *report.first_failure()]
    if story:
        out += ["", *fence(story)]
    for extra in report.extra:
        out += ["", f"#### {code(extra.title)}", "", *fence(extra.lines)]
    out += ["", *_steps_table(report)]
    out += _entries(report, "error")
    out += _entries(report, "warning")
    return "\n".join(out) + "\n"


def markdown_from_text(summary: str, title: str) -> str:
    """
    The markdown of a run known only by its committed ``logs_summary.txt``:
    its first line as the status line, the whole text folded below it.
    """
    lines = summary.splitlines()
    status = lines[0].removeprefix("Status: ") if lines else "UNKNOWN"
    head = [
        f"### runlog: {code(title)}",
        "",
        f"{status_word(clean(status))} (from the committed logs_summary.txt)",
        "",
    ]
    return "\n".join([*head, *_details("logs_summary.txt", lines[1:])]) + "\n"
