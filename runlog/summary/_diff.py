"""
``runlog diff``: two runs compared step by step (see #17); rendered by
:mod:`._diff_render`.

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
from .._records import ERROR_MARKS
from .._status import effective_status, read_run_json, run_names
from .._text import clean, format_duration, format_number
from ..archive._extract import extract_archive
from ..errors import ConfigurationError, RunNotFoundError
from ._fingerprint import Fingerprint, fingerprint
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
    "check_thresholds",
    "collect_run",
    "compare",
    "diff_runs",
    "differs",
    "metric_delta",
    "metric_label",
    "metric_pair",
    "metric_value",
    "parse_limit",
    "percent",
]

DEFAULT_WIDTH: Final = 80
_MAX_TEXT: Final = 300
_MIN_DURATION_DELTA_S: Final = 0.5
_MIN_DURATION_PCT: Final = 10.0
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
            if not any(mark in line for mark in ERROR_MARKS):
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
            or any(differs(name, change) for name, change in self.metrics.items())
        )


def differs(metric: str, change: Change) -> bool:
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
    actual = f"{metric_label(metric)} {metric_pair(metric, change)}"
    if delta is None or pct is None:
        return Crossing(option, str(limit), f"{actual} (unknown)", None)
    actual += f" ({metric_delta(metric, delta)}, {percent(pct)})"
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


def metric_label(metric: str) -> str:
    return _LABELS[metric]


def _amount(metric: str, value: float) -> str:
    if metric == "duration_s":
        return format_duration(abs(value))
    return format_number(abs(value))


def metric_value(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    return format_duration(value) if metric == "duration_s" else format_number(value)


def metric_pair(metric: str, change: Change) -> str:
    return f"{metric_value(metric, change.a)} -> {metric_value(metric, change.b)}"


def metric_delta(metric: str, delta: float) -> str:
    sign = "+" if delta >= 0 else "-"
    return f"{sign}{_amount(metric, delta)}"


def percent(pct: float) -> str:
    if math.isinf(pct):
        return "new"
    return f"{pct:+.1f}%"
