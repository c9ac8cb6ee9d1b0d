"""The markdown summary: layout, golden file, and record text that stays text."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from markdown_it import MarkdownIt

from runlog.summary import SummarySection
from runlog.summary._markdown import code, fence, markdown_from_text, render_markdown
from runlog.summary._summarizer import report_for

from .test_summary import (
    build,
    check_golden,
    full_run_files,
    lines,
    rec,
    step_records,
)

HOSTILE = (
    "::error::pwned %0A<script>alert(1)</script> ``` `tick` "
    "[x](javascript:alert(1)) a|b <img src=x onerror=alert(1)> **bold**"
)


def markdown_of(run_dir: Path, **kwargs: Any) -> str:
    """The markdown summary of the run in *run_dir*."""
    return render_markdown(report_for(run_dir, **kwargs))


def html_of(markdown: str) -> str:
    """*markdown* rendered as GitHub would: CommonMark, tables, raw HTML kept."""
    return MarkdownIt("commonmark").enable("table").render(markdown)


def hostile_run(run_dir: Path) -> Path:
    """A failed run whose step name, events, errors and fields are hostile."""
    files = full_run_files()
    files["logs/step_004/orchestrator.log"] = lines(
        step_records(
            4,
            f"name {HOSTILE}",
            {"status": "failed", "error_type": "ValueError", "error": HOSTILE},
        )
    )
    files["logs/step_004/validator.log"] = lines(
        [
            rec(240, "error", f"event {HOSTILE}\n```\n</details>", "validator", 4),
            rec(241, "warning", HOSTILE, "validator", 4, note=HOSTILE),
        ]
    )
    return build(run_dir, files)


def test_full_run_markdown_matches_golden_file(tmp_path: Path) -> None:
    """Status line, story, steps table and folded errors: the reviewed markdown."""
    text = markdown_of(build(tmp_path / "fw" / "r1", full_run_files()))
    check_golden("full_run.md", text)


def test_markdown_writes_nothing(tmp_path: Path) -> None:
    """Rendering markdown leaves the run directory as it was."""
    run_dir = build(tmp_path / "fw" / "r1", full_run_files())
    before = sorted(p.relative_to(run_dir) for p in run_dir.rglob("*"))
    markdown_of(run_dir)
    assert sorted(p.relative_to(run_dir) for p in run_dir.rglob("*")) == before


def test_hostile_record_text_renders_as_text(tmp_path: Path) -> None:
    """<script>, javascript: links, pipes and backticks from records stay text."""
    markdown = markdown_of(hostile_run(tmp_path / "fw" / "r1"))
    html = html_of(markdown)
    assert "<script" not in html
    assert "<img" not in html
    assert "href=" not in html
    assert "<strong>bold" not in html
    assert html.count("<details>") == html.count("</details>") == 2
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_hostile_step_name_keeps_the_table_shape(tmp_path: Path) -> None:
    """A '|' in a step name does not add a column: every row has ten cells."""
    html = html_of(markdown_of(hostile_run(tmp_path / "fw" / "r1")))
    rows = re.findall(r"<tr>(.*?)</tr>", html, re.S)
    assert len(rows) == 5
    assert {row.count("<td") + row.count("<th") for row in rows} == {10}
    assert "<code>name ::error::pwned" in html and "a|b" in html


@pytest.mark.parametrize(
    ("text", "span"),
    [
        ("plain", "`plain`"),
        ("a`b", "``a`b``"),
        ("`x`", "`` `x` ``"),
        ("a``b", "```a``b```"),
        ("", ""),
        ("line\nbreak", "`line\\nbreak`"),
    ],
)
def test_code_span_fence_is_longer_than_any_backtick_run(text: str, span: str) -> None:
    """An inline code span's fence outgrows the backticks inside it."""
    assert code(text) == span


def test_code_span_in_a_table_escapes_pipes() -> None:
    """Inside a table cell '|' is written '\\|'."""
    assert code("a|b", table=True) == "`a\\|b`"


def test_fence_cannot_be_closed_from_inside() -> None:
    """A fenced block's fence is longer than any run of backticks in it."""
    block = fence(["```", "x ````` y"])
    assert block[0] == "``````text" and block[-1] == "``````"


def test_extra_sections_are_rendered_after_the_story(tmp_path: Path) -> None:
    """A SummarySection appears with its title as code and its lines fenced."""
    run_dir = build(tmp_path / "fw" / "r1", full_run_files())
    text = markdown_of(
        run_dir, sections=[SummarySection("Changes <b>", ("tokens +5",))]
    )
    assert "#### `Changes <b>`\n\n```text\ntokens +5\n```\n" in text
    assert text.index("#### `Changes") < text.index("| step |")


def test_many_steps_table_keeps_failed_ones(tmp_path: Path) -> None:
    """Over 50 steps, the table keeps failed ones and counts the rest."""
    files = {
        f"logs/step_{n:03d}/orchestrator.log": lines(
            step_records(n, None, {"status": "failed" if n == 77 else "success"})
        )
        for n in range(1, 81)
    }
    text = markdown_of(build(tmp_path / "fw" / "r1", files))
    assert "| 077 |" in text
    assert "| | 30 more steps |" in text


def test_markdown_from_a_committed_summary_alone() -> None:
    """Without logs, the committed text is the status line and a folded block."""
    text = markdown_from_text("Status: FAILED\nErrors: 1\n<script>\n", "fw/r1")
    assert text.startswith("### runlog: `fw/r1`\n\n**FAILED** (from the committed")
    assert "```text\nErrors: 1\n<script>\n```" in text
    assert "<script" not in html_of(text).replace("&lt;script&gt;", "")
