"""
``runlog diff``: two runs compared step by step (see #17).

Steps are matched by number (a renamed step is shown as such): status,
attempts, API calls, LLM requests, tokens, duration, warnings and errors,
each with its delta and percentage; error records are grouped by their
fingerprint (:mod:`._fingerprint`), so an error counts as new only when
no record of the baseline has the same fingerprint.
"""

from __future__ import annotations

import math
import os
import re
import stat
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson

from .. import _paths
from .._status import effective_status, read_run_json, run_names
from .._text import clean, fit, format_duration, format_number
from ..archive._extract import extract_archive
from ..errors import ConfigurationError, RunNotFoundError
from ._fingerprint import Fingerprint, fingerprint
from ._layout import SummarySection
from ._scan import Counts, Scan, error_text, number, word

__all__ = [
    "DEFAULT_WIDTH",
    "Change",
    "Crossing",
    "ErrorGroup",
    "Limit",
    "RunDiff",
    "RunFacts",
    "StepDiff",
    "StepFacts",
    "Thresholds",
    "baseline_section",
    "changes_section",
    "check_thresholds",
    "collect_run",
    "compare",
    "describe_change",
    "diff_runs",
    "md_escape",
    "parse_limit",
    "render_json",
    "render_markdown",
    "render_text",
]

DEFAULT_WIDTH: Final = 80
_MAX_CHANGES_LINES: Final = 10
_MAX_LISTED: Final = 20  # error groups listed in full, per kind
_MAX_TEXT: Final = 300
_MIN_DURATION_DELTA_S: Final = 0.5
_MIN_DURATION_PCT: Final = 10.0
_ERROR_MARKS: Final = (b'"level":"error"', b'"level":"critical"')
_ERROR_LEVELS: Final = frozenset(("error", "critical", "fatal"))
_LIMIT_RE: Final = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(%|s)?\s*")
# the numbers compared per step and per run, in the order shown
METRICS: Final = (
    "attempts",
    "api_calls",
    "llm_requests",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "duration_s",
    "warnings",
    "errors",
)
_LABELS: Final = {
    "attempts": "attempts",
    "api_calls": "API calls",
    "llm_requests": "LLM requests",
    "prompt_tokens": "prompt tokens",
    "completion_tokens": "completion tokens",
    "total_tokens": "tokens",
    "duration_s": "duration",
    "warnings": "warnings",
    "errors": "errors",
}
_SHOWN: Final = ("attempts", "api_calls", "llm_requests", "total_tokens", "duration_s")


# -- what one run holds -------------------------------------------------------


@dataclass(frozen=True)
class ErrorGroup:
    """
    The error records of one run that share a fingerprint.

    Attributes:
        fingerprint: What they are known by (its ``key`` matches across runs).
        count: How many records.
        steps: The steps they are in, sorted (None: outside any step).
        where: The first one's place: ``step_002/adapter.log:3``.
        text: The first one's ``ErrorType: message`` (or event), unmasked.
    """

    fingerprint: Fingerprint
    count: int
    steps: tuple[int | None, ...]
    where: str
    text: str


@dataclass(frozen=True)
class StepFacts:
    """One step of one run: its status and what its records add up to."""

    number: int
    name: str | None
    status: str
    metrics: Mapping[str, float | None]
    errors: frozenset[str]  # fingerprint keys


@dataclass(frozen=True)
class RunFacts:
    """
    What :func:`diff_runs` compares of one run.

    Attributes:
        framework, run_id: The run's names.
        status: ``SUCCESS``, ``FAILED``, ``INCOMPLETE``, ``CRASHED``...
        metrics: Totals over the run (see ``METRICS``).
        steps: Step number -> its facts.
        errors: Fingerprint key -> the group of error records.
    """

    framework: str
    run_id: str
    status: str
    metrics: Mapping[str, float | None]
    steps: Mapping[int, StepFacts]
    errors: Mapping[str, ErrorGroup]


@contextmanager
def _logs_of(run: str | os.PathLike[str]) -> Iterator[Path]:
    """The run directory of *run* (a run dir, or an archive unpacked for a while)."""
    path = Path(run)
    archive: Path | None = None
    if path.is_file():
        archive = path
    elif path.is_dir() and not _paths.logs_dir(path).is_dir():
        archive = _paths.find_archive(path)
        if archive is None:
            raise RunNotFoundError(
                f"run {str(run)!r}: not a run directory (no logs/ and no run "
                "archive in it)"
            )
    elif not path.is_dir():
        raise RunNotFoundError(f"run {str(run)!r}: no such file or directory")
    if archive is None:
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="runlog-diff-") as tmp:
        # named like the original so run names fall back the same way
        run_dir = Path(tmp) / archive.parent.parent.name / archive.parent.name
        run_dir.mkdir(parents=True, exist_ok=True)
        extract_archive(archive, run_dir)
        yield run_dir


def collect_run(run: str | os.PathLike[str]) -> RunFacts:
    """
    Read one run (a run directory, or a ``run.tar.gz``/``.zst``) for comparing.

    One streaming pass for the counts (the summary's own scan), one for the
    error records' fingerprints; an archive is unpacked to a temporary
    directory and removed after.

    Raises:
        RunNotFoundError: If *run* is neither a run directory nor an archive.
        ArchiveIntegrityError: If an archive cannot be unpacked.
    """
    with _logs_of(run) as run_dir:
        logs = _paths.logs_dir(run_dir)
        if not logs.is_dir():
            raise RunNotFoundError(f"run {str(run)!r}: no logs/ in the archive")
        scan = Scan(max_errors=0, max_warnings=0, max_hitl=0, max_line_bytes=16 << 20)
        scan.run(logs)
        try:
            info = read_run_json(logs)
        except OSError:
            info = None  # an unreadable run.json: status from the records
        framework, run_id = run_names(run_dir)
        groups, step_keys = _error_groups(logs)
    totals = Counts()
    totals.add(scan.run_level)
    steps: dict[int, StepFacts] = {}
    for n in sorted(scan.steps):
        step = scan.steps[n]
        totals.add(step)
        steps[n] = StepFacts(
            number=n,
            name=clean(step.name) if step.name else None,
            status=step.final_status,
            metrics=_metrics(step, step.attempts, step.duration),
            errors=frozenset(step_keys.get(n, ())),
        )
    attempts = sum(step.attempts for step in scan.steps.values())
    return RunFacts(
        framework=framework,
        run_id=run_id,
        status=_run_status(info, scan),
        metrics=_metrics(totals, attempts, _run_duration(info, scan)),
        steps=steps,
        errors=groups,
    )


def _metrics(
    counts: Counts, attempts: int, duration: float | None
) -> dict[str, float | None]:
    return {
        "attempts": attempts,
        "api_calls": counts.api_calls,
        "llm_requests": counts.llm_requests,
        "prompt_tokens": counts.prompt,
        "completion_tokens": counts.completion,
        "total_tokens": counts.total,
        "duration_s": duration,
        "warnings": counts.warnings,
        "errors": counts.errors,
    }


def _run_status(info: dict[str, Any] | None, scan: Scan) -> str:
    if scan.run_end is None:
        if info is not None and effective_status(info) == "crashed":
            return "CRASHED"
        return "INCOMPLETE"
    recorded = info.get("status") if info is not None else None
    if isinstance(recorded, str) and recorded not in ("", "running"):
        return word(recorded)
    return word(scan.run_end.get("status"))


def _run_duration(info: dict[str, Any] | None, scan: Scan) -> float | None:
    duration = number((info or {}).get("duration_s"))
    if duration is None:
        duration = number((scan.run_end or {}).get("duration_s"))
    return duration


def _record_files(logs: Path) -> Iterator[tuple[str, Path, int | None]]:
    """(shown name, path, step) of every record file, in the scan's order."""
    entries = sorted(os.scandir(logs), key=lambda e: e.name)
    for entry in entries:
        if (
            entry.name.endswith(".log")
            and entry.name != _paths.COMBINED_LOG
            and entry.is_file(follow_symlinks=False)
        ):
            yield entry.name, Path(entry.path), None
    for entry in entries:
        step = _paths.parse_step_dir(entry.name)
        if step is None or not entry.is_dir(follow_symlinks=False):
            continue
        for inner in sorted(os.scandir(entry.path), key=lambda e: e.name):
            if inner.name.endswith(".log") and inner.is_file(follow_symlinks=False):
                yield f"{entry.name}/{inner.name}", Path(inner.path), step


def _error_groups(
    logs: Path,
) -> tuple[dict[str, ErrorGroup], dict[int, set[str]]]:
    """Every error and critical record of a run, grouped by fingerprint."""
    found: dict[str, dict[str, Any]] = {}
    step_keys: dict[int, set[str]] = {}
    for shown, path, step in _record_files(logs):
        for lineno, rec in _error_records(path):
            fp = fingerprint(rec)
            group = found.get(fp.key)
            if group is None:
                text = error_text(rec) or _event(rec)
                group = found[fp.key] = {
                    "fingerprint": fp,
                    "count": 0,
                    "steps": set(),
                    "where": f"{shown}:{lineno}",
                    "text": clean(text[:_MAX_TEXT]),
                }
            group["count"] += 1
            group["steps"].add(step)
            if step is not None:
                step_keys.setdefault(step, set()).add(fp.key)
    groups = {
        key: ErrorGroup(
            fingerprint=value["fingerprint"],
            count=value["count"],
            steps=tuple(sorted(value["steps"], key=lambda s: -1 if s is None else s)),
            where=value["where"],
            text=value["text"],
        )
        for key, value in found.items()
    }
    return groups, step_keys


def _event(rec: Mapping[str, Any]) -> str:
    event = rec.get("event")
    return event if isinstance(event, str) else repr(event)


def _error_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) of the error and critical records in one file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return  # the scan reports files it cannot read; nothing to group here
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return
        for lineno, line in enumerate(handle, 1):
            # a cheap filter first: writers never escape the level's name
            if not any(mark in line for mark in _ERROR_MARKS):
                continue
            try:
                rec = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue  # malformed lines are the summary's to report
            level = rec.get("level") if isinstance(rec, dict) else None
            if isinstance(level, str) and level.lower() in _ERROR_LEVELS:
                yield lineno, rec


# -- the comparison -----------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One number in run A and run B; None where a run does not have it."""

    a: float | None
    b: float | None

    @property
    def delta(self) -> float | None:
        """B - A, or None when either is unknown."""
        if self.a is None or self.b is None:
            return None
        return self.b - self.a

    @property
    def pct(self) -> float | None:
        """The change in percent of A; ``inf`` from 0 to more, None if unknown."""
        delta = self.delta
        if delta is None or self.a is None:
            return None
        if self.a == 0:
            return 0.0 if delta == 0 else math.copysign(math.inf, delta)
        return 100.0 * delta / self.a

    def as_json(self) -> dict[str, Any]:
        pct = self.pct
        return {
            "a": self.a,
            "b": self.b,
            "delta": None if self.delta is None else round(self.delta, 6),
            "pct": None if pct is None or math.isinf(pct) else round(pct, 2),
        }


@dataclass(frozen=True)
class StepDiff:
    """
    One step number in both runs.

    Attributes:
        number: The step.
        a, b: Its facts in each run; None where the run has no such step.
        metrics: Metric name -> :class:`Change`.
        new_errors, resolved_errors: Fingerprint keys in B only / in A only.
    """

    number: int
    a: StepFacts | None
    b: StepFacts | None
    metrics: Mapping[str, Change]
    new_errors: tuple[str, ...]
    resolved_errors: tuple[str, ...]

    @property
    def status_a(self) -> str | None:
        return self.a.status if self.a else None

    @property
    def status_b(self) -> str | None:
        return self.b.status if self.b else None

    @property
    def name(self) -> str | None:
        """The step's name (B's, else A's)."""
        return (self.b and self.b.name) or (self.a and self.a.name) or None

    @property
    def changed(self) -> bool:
        """True when anything but the duration differs."""
        if self.a is None or self.b is None:
            return True
        return (
            self.a.status != self.b.status
            or self.a.name != self.b.name
            or bool(self.new_errors or self.resolved_errors)
            or any(_differs(name, change) for name, change in self.metrics.items())
        )


def _differs(metric: str, change: Change) -> bool:
    """
    True when *change* is worth a reviewer's eye: any count that moved, a
    duration only by at least 0.5 s and 10% (timing noise is not a change).
    """
    if metric != "duration_s":
        return change.a != change.b
    delta, pct = change.delta, change.pct
    if delta is None or pct is None:
        return change.a != change.b
    return abs(delta) >= _MIN_DURATION_DELTA_S and abs(pct) >= _MIN_DURATION_PCT


@dataclass(frozen=True)
class RunDiff:
    """Run B compared with run A (the baseline): see :func:`diff_runs`."""

    a: RunFacts
    b: RunFacts
    metrics: Mapping[str, Change]
    steps: tuple[StepDiff, ...]
    new_errors: tuple[ErrorGroup, ...]
    resolved_errors: tuple[ErrorGroup, ...]


def diff_runs(run_a: str | os.PathLike[str], run_b: str | os.PathLike[str]) -> RunDiff:
    """
    Compare run B with run A (the baseline), step by step.

    Each run is a run directory or its archive. Steps are matched by number;
    error records by fingerprint (a new error is one whose fingerprint no
    record of A has; a resolved one, the reverse).

    Raises:
        RunNotFoundError: If either is not a run directory or an archive.
        ArchiveIntegrityError: If an archive cannot be unpacked.
    """
    return compare(collect_run(run_a), collect_run(run_b))


def compare(a: RunFacts, b: RunFacts) -> RunDiff:
    """:func:`diff_runs` of two runs already read."""
    steps: list[StepDiff] = []
    for n in sorted(set(a.steps) | set(b.steps)):
        sa, sb = a.steps.get(n), b.steps.get(n)
        keys_a = sa.errors if sa else frozenset()
        keys_b = sb.errors if sb else frozenset()
        steps.append(
            StepDiff(
                number=n,
                a=sa,
                b=sb,
                metrics={
                    name: Change(
                        sa.metrics[name] if sa else None,
                        sb.metrics[name] if sb else None,
                    )
                    for name in METRICS
                },
                new_errors=tuple(sorted(keys_b - keys_a)),
                resolved_errors=tuple(sorted(keys_a - keys_b)),
            )
        )
    return RunDiff(
        a=a,
        b=b,
        metrics={name: Change(a.metrics[name], b.metrics[name]) for name in METRICS},
        steps=tuple(steps),
        new_errors=_ordered(b.errors, a.errors),
        resolved_errors=_ordered(a.errors, b.errors),
    )


def _ordered(
    have: Mapping[str, ErrorGroup], other: Mapping[str, ErrorGroup]
) -> tuple[ErrorGroup, ...]:
    """Groups in *have* whose fingerprint *other* lacks: by first step, then key."""
    only = [group for key, group in have.items() if key not in other]
    return tuple(
        sorted(
            only,
            key=lambda g: (
                min((s for s in g.steps if s is not None), default=-1),
                g.fingerprint.key,
            ),
        )
    )


# -- thresholds ---------------------------------------------------------------


@dataclass(frozen=True)
class Limit:
    """An allowed increase: *value* percent of A, or *value* units (tokens, s)."""

    value: float
    percent: bool

    def __str__(self) -> str:
        return f"{format_number(self.value)}{'%' if self.percent else ''}"


def parse_limit(text: str, what: str = "limit") -> Limit:
    """
    ``"10%"`` (of run A's value), ``"500"`` (absolute) or ``"30s"`` as a Limit.

    Raises:
        ConfigurationError: Naming *what* and the bad value.
    """
    match = _LIMIT_RE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ConfigurationError(
            f"{what} {text!r}: use a percentage like '10%' or a number >= 0"
        )
    return Limit(float(match.group(1)), match.group(2) == "%")


@dataclass(frozen=True)
class Thresholds:
    """
    What ``runlog diff --check`` allows; None leaves a check out.

    Attributes:
        max_new_errors: New error fingerprints allowed in B.
        max_token_increase: Allowed increase of total tokens.
        max_duration_increase: Allowed increase of the run's duration.
    """

    max_new_errors: int | None = None
    max_token_increase: Limit | None = None
    max_duration_increase: Limit | None = None


@dataclass(frozen=True)
class Crossing:
    """One threshold checked: its option, the limit, what was found, by how much."""

    option: str
    limit: str
    actual: str
    over: str | None  # None: within the limit

    @property
    def crossed(self) -> bool:
        return self.over is not None


def check_thresholds(diff: RunDiff, limits: Thresholds) -> list[Crossing]:
    """Each threshold set in *limits*, checked against *diff* (crossed or not)."""
    out: list[Crossing] = []
    if limits.max_new_errors is not None:
        new = len(diff.new_errors)
        allowed = limits.max_new_errors
        out.append(
            Crossing(
                "--max-new-errors",
                str(allowed),
                f"{new} new error fingerprint(s)",
                f"by {new - allowed}" if new > allowed else None,
            )
        )
    for option, metric, limit in (
        ("--max-token-increase", "total_tokens", limits.max_token_increase),
        ("--max-duration-increase", "duration_s", limits.max_duration_increase),
    ):
        if limit is not None:
            out.append(_check_increase(option, metric, diff.metrics[metric], limit))
    return out


def _check_increase(option: str, metric: str, change: Change, limit: Limit) -> Crossing:
    delta, pct = change.delta, change.pct
    actual = f"{_label(metric)} {_pair(metric, change)}"
    if delta is None or pct is None:
        return Crossing(option, str(limit), f"{actual} (unknown)", None)
    actual += f" ({_delta(metric, delta)}, {_pct(pct)})"
    if limit.percent:
        over = None
        if pct > limit.value:
            over = (
                "from 0"
                if math.isinf(pct)
                else f"by {format_number(round(pct - limit.value, 1))} points"
            )
    else:
        excess = delta - limit.value
        over = f"by {_amount(metric, excess)}" if excess > 0 else None
    return Crossing(option, str(limit), actual, over)


# -- rendering ------------------------------------------------------------------


def _label(metric: str) -> str:
    return _LABELS[metric]


def _amount(metric: str, value: float) -> str:
    if metric == "duration_s":
        return format_duration(abs(value))
    return format_number(abs(value))


def _value(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    return format_duration(value) if metric == "duration_s" else format_number(value)


def _pair(metric: str, change: Change) -> str:
    return f"{_value(metric, change.a)} -> {_value(metric, change.b)}"


def _delta(metric: str, delta: float) -> str:
    sign = "+" if delta >= 0 else "-"
    return f"{sign}{_amount(metric, delta)}"


def _pct(pct: float) -> str:
    if math.isinf(pct):
        return "new"
    return f"{pct:+.1f}%"


def describe_change(metric: str, change: Change, *, headline: bool = False) -> str:
    """
    ``tokens 1200 -> 1500 (+300, +25.0%)``; just the value when unchanged.

    With *headline*: ``Tokens: 1200 -> 1500 (+300, +25.0%)``.
    """
    label = _cap(_label(metric)) + ":" if headline else _label(metric)
    if change.a == change.b:
        return f"{label} {_value(metric, change.b)}"
    text = f"{label} {_pair(metric, change)}"
    delta, pct = change.delta, change.pct
    if delta is not None and pct is not None:
        text += f" ({_delta(metric, delta)}, {_pct(pct)})"
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
        f"Errors: {_pair('errors', errors)} records | new fingerprints: "
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
        if _differs(metric, step.metrics[metric])
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
            f"| {_label(metric)} | {_value(metric, change.a)} | "
            f"{_value(metric, change.b)} | {_md_delta(metric, change)} |"
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
    return f"({_delta(metric, delta)}, {_pct(pct)})"


def _md_cell(metric: str, change: Change) -> str:
    if change.a == change.b or change.a is None or change.b is None:
        return _value(metric, change.b if change.b is not None else change.a)
    return f"{_pair(metric, change)} {_md_delta(metric, change)}"


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
        f"Errors: {_pair('errors', diff.metrics['errors'])} records "
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
