"""
``runlog diff`` as text, JSON and markdown, and the summary's "Changes since"
block (see #17): the comparison itself is :mod:`._diff`.
"""

from __future__ import annotations

import os
import re
from typing import Any, Final

import orjson

from .._text import clean, fit
from ._diff import (
    DEFAULT_WIDTH,
    METRICS,
    Change,
    Crossing,
    ErrorGroup,
    RunDiff,
    RunFacts,
    StepDiff,
    diff_runs,
    differs,
    metric_delta,
    metric_label,
    metric_pair,
    metric_value,
    percent,
)
from ._layout import SummarySection

__all__ = [
    "baseline_section",
    "changes_section",
    "describe_change",
    "md_escape",
    "render_json",
    "render_markdown",
    "render_text",
]

_MAX_CHANGES_LINES: Final = 10
_MAX_LISTED: Final = 20  # error groups listed in full, per kind
_SHOWN: Final = ("attempts", "api_calls", "llm_requests", "total_tokens", "duration_s")


def describe_change(metric: str, change: Change, *, headline: bool = False) -> str:
    """
    ``tokens 1200 -> 1500 (+300, +25.0%)``; just the value when unchanged.

    With *headline*: ``Tokens: 1200 -> 1500 (+300, +25.0%)``.
    """
    label = _cap(metric_label(metric)) + ":" if headline else metric_label(metric)
    if change.a == change.b:
        return f"{label} {metric_value(metric, change.b)}"
    text = f"{label} {metric_pair(metric, change)}"
    delta, pct = change.delta, change.pct
    if delta is not None and pct is not None:
        text += f" ({metric_delta(metric, delta)}, {percent(pct)})"
    return text


def _status_change(a: str | None, b: str | None) -> str:
    if a is None:
        return f"{b} (only in B)"
    if b is None:
        return f"{a} (only in A)"
    return b if a == b else f"{a} -> {b}"


def _names(run: RunFacts) -> str:
    return f"{run.framework}/{run.run_id}"


def _group_line(group: ErrorGroup) -> str:
    steps = ", ".join("run" if s is None else f"{s:03d}" for s in group.steps)
    return f"{group.where} ({group.count}x, steps {steps})"


def render_text(
    diff: RunDiff,
    crossings: list[Crossing] | None = None,
    *,
    width: int = DEFAULT_WIDTH,
) -> str:
    """
    The diff for a terminal: at most *width* columns a line, record text escaped.

    Lists the steps that changed (unchanged ones by number only), then the
    new and resolved error fingerprints, then the thresholds checked.
    """
    a, b = diff.a, diff.b
    lines = [
        f"A: {_names(a)} ({a.status})",
        f"B: {_names(b)} ({b.status})",
        f"Status: {_status_change(a.status, b.status)}",
    ]
    for metric in ("duration_s", "total_tokens"):
        lines.append(describe_change(metric, diff.metrics[metric], headline=True))
    lines.append(
        _cap(
            " | ".join(
                describe_change(m, diff.metrics[m])
                for m in ("api_calls", "llm_requests", "attempts")
            )
        )
    )
    errors = diff.metrics["errors"]
    lines.append(
        f"Errors: {metric_pair('errors', errors)} records | new fingerprints: "
        f"{len(diff.new_errors)} | resolved: {len(diff.resolved_errors)}"
    )
    changed = [step for step in diff.steps if step.changed]
    same = [step for step in diff.steps if not step.changed]
    lines += ["", f"== Steps ({len(diff.steps)}: {len(changed)} changed) =="]
    for step in changed:
        lines.extend(_step_lines(step, diff))
    if same:
        numbers = ", ".join(f"{step.number:03d}" for step in same)
        lines.append(f"Unchanged: {numbers}")
    if not diff.steps:
        lines.append("No steps in either run.")
    for title, groups in (
        ("New errors", diff.new_errors),
        ("Resolved errors", diff.resolved_errors),
    ):
        lines += ["", f"== {title} ({len(groups)}) =="]
        for group in groups[:_MAX_LISTED]:
            lines.append(f"  {clean(str(group.fingerprint))}")
            lines.append(f"    {clean(group.text)}")
            lines.append(f"    at {clean(_group_line(group))}")
        if len(groups) > _MAX_LISTED:
            lines.append(f"  ... and {len(groups) - _MAX_LISTED} more")
        if not groups:
            lines.append("  none")
    if crossings:
        lines += ["", "== Checks =="]
        for crossing in crossings:
            lines.extend(_crossing_lines(crossing))
    return "\n".join(fit(line, width) for line in lines) + "\n"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _step_lines(step: StepDiff, diff: RunDiff) -> list[str]:
    head = f"Step {step.number:03d}"
    if step.name:
        head += f" ({clean(step.name)})"
    lines = [f"{head}: {_status_change(step.status_a, step.status_b)}"]
    if step.a and step.b and step.a.name != step.b.name:
        lines.append(f"  renamed: {step.a.name or '-'} -> {step.b.name or '-'}")
    parts = [
        describe_change(metric, step.metrics[metric])
        for metric in (*_SHOWN, "warnings", "errors")
        if differs(metric, step.metrics[metric])
    ]
    lines.extend(_pack(parts, "  "))
    for key in step.new_errors:
        lines.append(f"  new error: {clean(str(diff.b.errors[key].fingerprint))}")
    for key in step.resolved_errors:
        lines.append(f"  resolved error: {clean(str(diff.a.errors[key].fingerprint))}")
    return lines


def _pack(parts: list[str], indent: str, width: int = DEFAULT_WIDTH) -> list[str]:
    """*parts* joined with `` | `` into as few lines of *width* as they fit in."""
    lines: list[str] = []
    current = ""
    for part in parts:
        candidate = f"{current} | {part}" if current else part
        if current and len(indent + candidate) > width:
            lines.append(indent + current)
            candidate = part
        current = candidate
    if current:
        lines.append(indent + current)
    return lines


def _crossing_lines(crossing: Crossing) -> list[str]:
    verdict = f"CROSSED {crossing.over}" if crossing.over else "ok"
    return [f"{crossing.option} {crossing.limit}: {verdict}", f"  {crossing.actual}"]


def render_json(diff: RunDiff, crossings: list[Crossing] | None = None) -> str:
    """The diff as one JSON document (see docs/CLI.md for its shape)."""

    def run(facts: RunFacts) -> dict[str, Any]:
        return {
            "framework": facts.framework,
            "run_id": facts.run_id,
            "status": facts.status,
            "steps": len(facts.steps),
            "error_fingerprints": len(facts.errors),
            **{name: facts.metrics[name] for name in METRICS},
        }

    def group(g: ErrorGroup) -> dict[str, Any]:
        return {
            "key": g.fingerprint.key,
            "kind": g.fingerprint.kind,
            "message": g.fingerprint.message,
            "frame": g.fingerprint.frame,
            "text": g.text,
            "count": g.count,
            "steps": list(g.steps),
            "where": g.where,
        }

    def step(s: StepDiff) -> dict[str, Any]:
        return {
            "step": s.number,
            "name_a": s.a.name if s.a else None,
            "name_b": s.b.name if s.b else None,
            "status_a": s.status_a,
            "status_b": s.status_b,
            "changed": s.changed,
            "metrics": {name: s.metrics[name].as_json() for name in METRICS},
            "new_errors": list(s.new_errors),
            "resolved_errors": list(s.resolved_errors),
        }

    document: dict[str, Any] = {
        "a": run(diff.a),
        "b": run(diff.b),
        "status": {"a": diff.a.status, "b": diff.b.status},
        "metrics": {name: diff.metrics[name].as_json() for name in METRICS},
        "steps": [step(s) for s in diff.steps],
        "new_errors": [group(g) for g in diff.new_errors],
        "resolved_errors": [group(g) for g in diff.resolved_errors],
    }
    if crossings is not None:
        document["checks"] = [
            {
                "option": c.option,
                "limit": c.limit,
                "actual": c.actual,
                "crossed": c.crossed,
                "over": c.over,
            }
            for c in crossings
        ]
    return orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n"


_MD_ESCAPES: Final = {
    "&": "&amp;",
    "<": "&lt;",
    ">": "&gt;",
    '"': "&quot;",
    "`": "&#96;",
    "|": "&#124;",
    "[": "&#91;",
    "]": "&#93;",
    "@": "&#64;",
    "\\": "&#92;",
    "*": "&#42;",
    "_": "&#95;",
    "~": "&#126;",
    "#": "&#35;",
    "!": "&#33;",
    ":": "&#58;",
}
_MD_RE: Final = re.compile("[" + re.escape("".join(_MD_ESCAPES)) + "]")


def md_escape(text: str) -> str:
    """
    *text* as inert markdown/HTML: no tags, code spans, links, tables or mentions.

    Every character that means something to GitHub's markdown (or to HTML
    inside it) becomes an entity, and line breaks become visible ``\\n``:
    record text can neither run code in a page nor break out of a table cell.
    """
    return _MD_RE.sub(lambda m: _MD_ESCAPES[m.group(0)], clean(text))


def render_markdown(diff: RunDiff, crossings: list[Crossing] | None = None) -> str:
    """The diff as GitHub markdown (a PR comment, a job summary); text escaped."""
    a, b = diff.a, diff.b
    out = [
        f"### runlog diff: {md_escape(_names(a))} &rarr; {md_escape(_names(b))}",
        "",
        "| | A | B | change |",
        "|---|---|---|---|",
        f"| status | {md_escape(a.status)} | {md_escape(b.status)} | "
        f"{'' if a.status == b.status else 'changed'} |",
    ]
    for metric in ("duration_s", *_SHOWN[:4], "errors", "warnings"):
        change = diff.metrics[metric]
        out.append(
            f"| {metric_label(metric)} | {metric_value(metric, change.a)} | "
            f"{metric_value(metric, change.b)} | {_md_delta(metric, change)} |"
        )
    out.append(
        f"| new / resolved error fingerprints | | | {len(diff.new_errors)} / "
        f"{len(diff.resolved_errors)} |"
    )
    changed = [step for step in diff.steps if step.changed]
    out += [
        "",
        f"#### Steps ({len(diff.steps)}: {len(changed)} changed)",
        "",
        "| step | status | attempts | API calls | LLM requests | tokens | duration "
        "| new errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for step in diff.steps:
        name = f" {md_escape(step.name)}" if step.name else ""
        cells = [
            f"{step.number:03d}{name}",
            md_escape(_status_change(step.status_a, step.status_b)),
            *(_md_cell(m, step.metrics[m]) for m in _SHOWN),
            str(len(step.new_errors)),
        ]
        out.append("| " + " | ".join(cells) + " |")
    for title, groups in (
        ("New errors", diff.new_errors),
        ("Resolved errors", diff.resolved_errors),
    ):
        out += ["", f"#### {title} ({len(groups)})", ""]
        for group in groups[:_MAX_LISTED]:
            out.append(
                f"- **{md_escape(group.fingerprint.kind)}**: "
                f"{md_escape(group.text)} "
                f"<br>at {md_escape(_group_line(group))}"
            )
        if len(groups) > _MAX_LISTED:
            out.append(f"- ... and {len(groups) - _MAX_LISTED} more")
        if not groups:
            out.append("None.")
    if crossings:
        out += ["", "#### Checks", ""]
        for c in crossings:
            verdict = f"**crossed** {md_escape(c.over)}" if c.over else "ok"
            out.append(
                f"- {md_escape(c.option)} {md_escape(c.limit)}: "
                f"{md_escape(c.actual)}: {verdict}"
            )
    return "\n".join(out) + "\n"


def _md_delta(metric: str, change: Change) -> str:
    delta, pct = change.delta, change.pct
    if delta is None or pct is None or delta == 0:
        return ""
    return f"({metric_delta(metric, delta)}, {percent(pct)})"


def _md_cell(metric: str, change: Change) -> str:
    if change.a == change.b or change.a is None or change.b is None:
        return metric_value(metric, change.b if change.b is not None else change.a)
    return f"{metric_pair(metric, change)} {_md_delta(metric, change)}"


# -- the summary's section ------------------------------------------------------


def changes_section(
    run_dir: str | os.PathLike[str],
    baseline: str | os.PathLike[str],
    *,
    width: int = DEFAULT_WIDTH,
) -> list[str]:
    """
    The summary's "Changes since <baseline run id>" section: at most ten lines
    of *width* columns (the last one blank), run B being *run_dir*.

    Raises:
        RunNotFoundError: If *baseline* is neither a run directory nor an archive.
        ArchiveIntegrityError: If an archive cannot be unpacked.
    """
    diff = diff_runs(baseline, run_dir)
    lines = [f"== Changes since {diff.a.run_id} =="]
    lines.append(f"Status: {_status_change(diff.a.status, diff.b.status)}")
    changed = [step for step in diff.steps if step.changed]
    if changed:
        lines.append(
            f"Steps changed ({len(changed)}): "
            + ", ".join(_short_step(step) for step in changed)
        )
    lines.append(
        f"Errors: {metric_pair('errors', diff.metrics['errors'])} records "
        f"({len(diff.new_errors)} new, {len(diff.resolved_errors)} resolved)"
    )
    for group in diff.new_errors[:2]:
        lines.append(f"  new: {clean(str(group.fingerprint))}")
    if len(diff.new_errors) > 2:
        lines.append(f"  ... and {len(diff.new_errors) - 2} more new")
    for metric in ("total_tokens", "duration_s"):
        lines.append(describe_change(metric, diff.metrics[metric], headline=True))
    lines.append(
        _cap(
            " | ".join(
                describe_change(m, diff.metrics[m])
                for m in ("api_calls", "llm_requests")
            )
        )
    )
    lines = [fit(line, width) for line in lines[: _MAX_CHANGES_LINES - 1]]
    return [*lines, ""]


def baseline_section(
    run_dir: str | os.PathLike[str], baseline: str | os.PathLike[str]
) -> SummarySection:
    """
    :func:`changes_section` as the summary's extra block, for
    ``summarize_run(run_dir, sections=[baseline_section(run_dir, baseline)])``.

    Raises:
        As :func:`changes_section`.
    """
    lines = changes_section(run_dir, baseline)
    title = lines[0].removeprefix("== ").removesuffix(" ==")
    return SummarySection(title=title, lines=tuple(lines[1:-1]))


def _short_step(step: StepDiff) -> str:
    if step.a is None:
        return f"{step.number:03d} (new)"
    if step.b is None:
        return f"{step.number:03d} (gone)"
    if step.a.status != step.b.status:
        return f"{step.number:03d} ({step.a.status} -> {step.b.status})"
    return f"{step.number:03d}"
