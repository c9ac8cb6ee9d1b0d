"""What a run page shows above its records: header, timeline, charts, problems."""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from .. import _paths
from .._records import ERROR_MARKS, LEVEL_MARKS, ORCHESTRATOR
from .._status import effective_status, parse_time, read_run_json
from ..errors import RunlogError
from ..reading._archive_stream import archive_run_json
from ..reading._merge import read_records
from ..reading._runs import resolve_run, run_duration
from ..reading._source import (
    MAX_LINE,
    Entry,
    Filters,
    LogFile,
    ReadReport,
    RunSource,
    block_size,
    classify,
    entry_key,
    list_log_files,
    parse_entry,
    unreadable,
)
from ..summary._scan import (
    _LEVEL_INDEX,
    Counts,
    Scan,
    Step,
    _first_number,
    error_text,
    number,
)
from ..summary._summarizer import SummaryLimits

LIFECYCLE_EVENTS: Final = frozenset(("run_start", "run_end", "step_start", "step_end"))
MAX_PROBLEMS: Final = 1000  # problems listed in the overview; the table has all
_MAX_TRACEBACK: Final = 20_000
_PROBLEM_MARKS: Final = (LEVEL_MARKS["warning"], *ERROR_MARKS)
_TOKEN_ALIASES: Final = frozenset(
    ("tokens_prompt", "tokens_completion", "tokens_total")
)


def run_source(run: str | Path | RunSource) -> RunSource:
    """
    The :class:`RunSource` of *run*: a run directory, its archive, or a source.

    Raises:
        RunNotFoundError: If *run* is neither a run directory nor an archive.
    """
    if isinstance(run, RunSource):
        return run
    return resolve_run(str(run))


def run_info(source: RunSource) -> dict[str, Any]:
    """
    ``logs/run.json`` of the run (from its directory or its archive), or ``{}``.

    Raises:
        RunlogError: If run.json exists but cannot be read.
    """
    if source.archive is not None:
        return archive_run_json(source.archive) or {}
    try:
        return read_run_json(source.logs_dir) or {}
    except OSError as exc:
        raise RunlogError(
            f"run.json of {source.label!r} cannot be read: {exc.strerror or exc}"
        ) from exc


@dataclass
class AttemptSpan:
    """One attempt of one step, as a bar of the timeline."""

    step: int
    attempt: int
    name: str | None
    start: str | None
    end: str | None = None
    outcome: str | None = None  # step_end's status, lower case
    duration_s: float | None = None
    error: str = ""
    exception: str | None = None

    def as_json(self, *, retried: bool, run_over: bool) -> dict[str, Any]:
        """The bar's JSON; *retried*: a later attempt of the same step exists."""
        if self.outcome is None:
            status = "incomplete" if run_over else "running"
        elif self.outcome != "success" and retried:
            status = "retried"
        else:
            status = self.outcome
        return {
            "step": self.step,
            "attempt": self.attempt,
            "name": self.name,
            "status": status,
            "outcome": self.outcome,
            "start": self.start,
            "end": self.end,
            "duration_s": self.duration_s,
            "error": self.error,
        }


def is_lifecycle(record: dict[str, Any]) -> bool:
    """True for ``run_start``/``run_end``/``step_start``/``step_end`` records."""
    return (
        record.get("component") == ORCHESTRATOR
        and record.get("event") in LIFECYCLE_EVENTS
    )


def is_problem(record: dict[str, Any]) -> bool:
    """True for a warning, error or critical record."""
    level = record.get("level")
    return isinstance(level, str) and _LEVEL_INDEX.get(level.lower(), 0) >= 2


@dataclass
class RunModel:
    """
    Everything the run page shows but its records, built from one pass in time order.

    Feed every record with :meth:`add`, then read :meth:`overview`. Counts
    follow the summary's conventions (``summary/_scan``): a step's counts are
    those of the files in its ``step_NNN/``, ``api_call``/``llm_request``
    events, token fields and their aliases. Not thread-safe.
    """

    source: RunSource
    info: dict[str, Any]
    steps: dict[int, Step] = field(default_factory=dict)
    run_level: Counts = field(default_factory=Counts)
    attempts: dict[tuple[int, int], AttemptSpan] = field(default_factory=dict)
    problems: list[dict[str, Any]] = field(default_factory=list)
    problems_total: int = 0
    components: set[str] = field(default_factory=set)
    records: int = 0
    first_ts: str | None = None
    last_ts: str | None = None
    run_end: dict[str, Any] | None = None
    report: ReadReport = field(default_factory=ReadReport)
    _files: dict[str, LogFile | None] = field(default_factory=dict)
    _starts: dict[int, int] = field(default_factory=dict)

    def _step_of(self, entry: Entry) -> Step | None:
        try:
            log_file = self._files[entry.source]
        except KeyError:
            log_file = self._files[entry.source] = classify(entry.source)
        if log_file is None or log_file.step is None:
            return None
        step = self.steps.get(log_file.step)
        if step is None:
            step = self.steps[log_file.step] = Step(log_file.step)
        return step

    def _seen(self, entry: Entry) -> None:
        if entry.ts:
            if self.first_ts is None or entry.ts < self.first_ts:
                self.first_ts = entry.ts
            if self.last_ts is None or entry.ts > self.last_ts:
                self.last_ts = entry.ts
        component = entry.record.get("component")
        if isinstance(component, str):
            self.components.add(component)

    def add(self, entry: Entry) -> None:
        """Count one record (records must come in time order)."""
        rec = entry.record
        self.records += 1
        self._seen(entry)
        step = self._step_of(entry)
        level = _count(self.run_level if step is None else step, rec)
        if rec.get("component") == ORCHESTRATOR:
            event = rec.get("event")
            if step is not None and event == "step_start":
                step.start(rec)
            elif step is not None and event == "step_end":
                step.end(rec, entry.location)
            self.lifecycle(entry, step)
        if 2 <= level <= 4:  # warning, error, critical
            self.problem(entry)

    def lifecycle(self, entry: Entry, step: Step | None = None) -> None:
        """Take the attempt bars and run_end from one ``orchestrator`` record."""
        rec = entry.record
        event = rec.get("event")
        if step is None:
            step = self._step_of(entry)
        if step is not None and event == "step_start":
            self._start(step, rec, entry.ts)
        elif step is not None and event == "step_end":
            self._end(step, rec, entry.ts)
        elif step is None and event == "run_end":
            self.run_end = rec

    def problem(self, entry: Entry) -> None:
        """List one warning, error or critical record (the first MAX_PROBLEMS)."""
        self.problems_total += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(_problem(entry))

    def _start(self, step: Step, rec: dict[str, Any], ts: str) -> None:
        starts = self._starts[step.number] = self._starts.get(step.number, 0) + 1
        attempt = _attempt(rec.get("attempt"), starts)
        name = rec.get("name")
        self.attempts[(step.number, attempt)] = AttemptSpan(
            step.number, attempt, name if isinstance(name, str) else step.name, ts
        )

    def _end(self, step: Step, rec: dict[str, Any], ts: str) -> None:
        attempt = _attempt(rec.get("attempt"), self._starts.get(step.number, 1))
        span = self.attempts.get((step.number, attempt))
        if span is None:  # its step_start is missing: the bar ends where known
            span = AttemptSpan(step.number, attempt, step.name, None)
            self.attempts[(step.number, attempt)] = span
        span.end = ts
        status = rec.get("status")
        span.outcome = status.lower() if isinstance(status, str) else "unknown"
        span.duration_s = number(rec.get("duration_s"))
        span.error = error_text(rec)
        exception = rec.get("exception") or rec.get("traceback")
        span.exception = exception if isinstance(exception, str) else None
        if isinstance(rec.get("name"), str):
            span.name = rec["name"]

    def status(self, now: datetime | None = None) -> str:
        """The run's status: run.json's (``crashed`` when stale), else run_end's."""
        if self.info:
            return effective_status(self.info, now=now)
        if self.run_end is not None:
            status = self.run_end.get("status")
            return status if isinstance(status, str) and status else "success"
        return "incomplete"

    def overview(self, now: datetime | None = None) -> dict[str, Any]:
        """The JSON of the run page's header, timeline, charts and problems."""
        now = now or datetime.now(UTC)
        info = self.info
        status = self.status(now)
        started = parse_time(info.get("started_at")) or parse_time(self.first_ts)
        duration = run_duration(info, status, started, now) if info else None
        if duration is None and started is not None:
            last = parse_time(self.last_ts)
            duration = (last - started).total_seconds() if last else None
        run_over = status != "running"
        spans = sorted(self.attempts.values(), key=lambda s: (s.step, s.attempt))
        last_attempt = {span.step: span.attempt for span in spans}
        bars = [
            span.as_json(
                retried=span.attempt < last_attempt[span.step], run_over=run_over
            )
            for span in spans
        ]
        metadata = info.get("metadata")
        framework, run_id = self.names()
        return {
            "run": {
                "run_id": run_id,
                "framework": framework,
                "status": status,
                "started_at": info.get("started_at") or self.first_ts,
                "ended_at": info.get("ended_at"),
                "duration_s": duration,
                "host": info.get("host"),
                "metadata": metadata if isinstance(metadata, dict) else {},
                "first_failure": self._first_failure(spans),
                "source": self.source.label,
                "archived": self.source.archive is not None
                or _paths.find_archive(self.source.run_dir) is not None,
            },
            "steps": [self._step_json(self.steps[n]) for n in sorted(self.steps)],
            "attempts": bars,
            "run_level": _counts_json(self.run_level),
            "problems": self.problems,
            "problems_total": self.problems_total,
            "components": sorted(self.components),
            "records_total": self.records,
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
            "malformed": self.report.malformed,
        }

    def names(self) -> tuple[str, str]:
        """The run's framework and run id: run.json's if safe, else its directories'."""
        framework, run_id = self.info.get("framework"), self.info.get("run_id")
        run_dir = self.source.run_dir
        if not _paths.is_safe_name(framework):
            framework = run_dir.parent.name
        if not _paths.is_safe_name(run_id):
            run_id = run_dir.name
        return str(framework), str(run_id)

    def _first_failure(self, spans: list[AttemptSpan]) -> dict[str, Any] | None:
        failed = [s for s in spans if s.outcome not in (None, "success")]
        if failed:
            first = min(failed, key=lambda s: (s.end or "", s.step, s.attempt))
            return {
                "step": first.step,
                "attempt": first.attempt,
                "name": first.name,
                "error": first.error,
                "ts": first.end,
            }
        errors = [p for p in self.problems if p["level"] in ("error", "critical")]
        if errors:
            first_error = errors[0]
            return {
                "step": first_error["step"],
                "attempt": None,
                "name": None,
                "error": first_error["text"],
                "ts": first_error["ts"],
            }
        return None

    @staticmethod
    def _step_json(step: Step) -> dict[str, Any]:
        return {
            "step": step.number,
            "name": step.name,
            "status": step.final_status.lower(),
            "attempts": step.attempts,
            "duration_s": step.duration,
            **_counts_json(step),
        }


def _attempt(value: object, default: int) -> int:
    return value if type(value) is int and value > 0 else max(default, 1)


def _count(counts: Counts, rec: dict[str, Any]) -> int:
    """Add *rec* to *counts* exactly as the summary's scan does; its level index."""
    counts.records += 1
    level = rec.get("level")
    index = _LEVEL_INDEX.get(level.lower(), 5) if isinstance(level, str) else 5
    counts.levels[index] += 1
    event = rec.get("event")
    if event == "api_call":
        counts.api_calls += 1
    elif event == "llm_request":
        counts.llm_requests += 1
    elif event == "hitl":
        counts.hitl += 1
    p, c, n = (
        rec.get("prompt_tokens"),
        rec.get("completion_tokens"),
        rec.get("total_tokens"),
    )
    if p.__class__ is int and c.__class__ is int and n.__class__ is int:
        if p >= 0 and c >= 0 and n >= 0:
            counts.prompt += p
            counts.completion += c
            counts.total += n
            return index
    elif p is None and c is None and n is None and not _TOKEN_ALIASES & rec.keys():
        return index
    prompt = _first_number(rec, "prompt_tokens", "tokens_prompt")
    completion = _first_number(rec, "completion_tokens", "tokens_completion")
    total = _first_number(rec, "total_tokens", "tokens_total")
    if total is None:
        total = (prompt or 0) + (completion or 0)
    counts.prompt += prompt or 0
    counts.completion += completion or 0
    counts.total += total
    return index


def _counts_json(counts: Counts) -> dict[str, Any]:
    return {
        "records": counts.records,
        "llm_requests": counts.llm_requests,
        "api_calls": counts.api_calls,
        "prompt_tokens": counts.prompt,
        "completion_tokens": counts.completion,
        "total_tokens": counts.total,
        "warnings": counts.warnings,
        "errors": counts.errors,
        "hitl": counts.hitl,
    }


def _problem(entry: Entry) -> dict[str, Any]:
    rec = entry.record
    exception = rec.get("exception") or rec.get("traceback")
    if isinstance(exception, str) and len(exception) > _MAX_TRACEBACK:
        exception = exception[-_MAX_TRACEBACK:]
    event = rec.get("event")
    reason = error_text(rec)
    text = event if isinstance(event, str) else str(event)
    level = rec.get("level")
    return {
        "ts": entry.ts,
        "level": level.lower() if isinstance(level, str) else "other",
        "step": rec.get("step"),
        "component": rec.get("component"),
        "text": f"{text}: {reason}" if reason else text,
        "exception": exception if isinstance(exception, str) else None,
        "source": entry.location,
    }


def build_overview(source: RunSource, *, now: datetime | None = None) -> dict[str, Any]:
    """
    The overview JSON of the run (header, steps, attempts, charts, problems).

    Reads every record once, in time order, in bounded memory.

    Raises:
        RunlogError: If the run's files cannot be read.
    """
    if source.archive is not None:
        model = RunModel(source, run_info(source))
        for entry in read_records(source, report=model.report):
            model.add(entry)
        return model.overview(now)
    return dir_model(source).overview(now)


def dir_model(source: RunSource) -> RunModel:
    """
    The model of a run directory in three cheap passes instead of one full one.

    Counts come from the summary's own scan (its fast loop); attempts from
    the ``orchestrator`` files only; problems from the lines that carry a
    warning, error or critical level, found by a regex over whole blocks
    (runlog writes ``"level":"error"`` exactly so), so only those are
    parsed again (see #18: a 300 MB run's page must open in seconds).
    """
    model = RunModel(source, run_info(source))
    logs = source.logs_dir
    scan = Scan(
        max_errors=0,
        max_warnings=0,
        max_hitl=0,
        max_line_bytes=SummaryLimits().max_line_bytes,
    )
    scan.run(logs)
    model.steps = dict(scan.steps)
    model.run_level = scan.run_level
    model.records = scan.run_level.records + sum(
        step.records for step in scan.steps.values()
    )
    model.report.malformed = sum(bad.count for bad in scan.malformed.values())
    lifecycle = Filters(components=frozenset((ORCHESTRATOR,)))
    for entry in read_records(source, lifecycle):
        model._seen(entry)
        model.lifecycle(entry)
    for entry in problem_entries(logs):
        model._seen(entry)
        model.problem(entry)
    for log_file in list_log_files(logs):
        if log_file.step is not None or log_file.component != "run":
            model.components.add(log_file.component)
    _add_step_dirs(model)
    return model


def build_head(source: RunSource, *, now: datetime | None = None) -> dict[str, Any]:
    """
    The cheap part of the overview: header, steps and attempts, no counts.

    Reads run.json and the ``orchestrator`` files only, so a big run's page
    draws its header and timeline at once while :func:`build_overview`
    counts (see #18). Counts, charts and problems are left empty and
    ``complete`` is False. An archive has no cheap part: its head is the
    whole overview.

    Raises:
        RunlogError: If the run's files cannot be read.
    """
    if source.archive is not None:
        data = build_overview(source, now=now)
        data["complete"] = True
        return data
    model = RunModel(source, run_info(source))
    lifecycle = Filters(components=frozenset((ORCHESTRATOR,)))
    for entry in read_records(source, lifecycle, report=model.report):
        model._seen(entry)
        step = model._step_of(entry)
        event = entry.record.get("event")
        if step is not None and event == "step_start":
            step.start(entry.record)
        elif step is not None and event == "step_end":
            step.end(entry.record, entry.location)
        model.lifecycle(entry, step)
    for log_file in list_log_files(source.logs_dir):
        if log_file.step is not None or log_file.component != "run":
            model.components.add(log_file.component)
    _add_step_dirs(model)
    data = model.overview(now)
    data.update(records_total=None, problems_total=None, malformed=None, complete=False)
    return data


def problem_entries(logs: Path) -> Iterator[Entry]:
    """The warning, error and critical records of the run, in time order."""
    files = list_log_files(logs)
    # the read-ahead budget the record merge uses, shared by every stream
    block = block_size(len(files))
    streams = [_file_problems(logs / f.rel, f.rel, block) for f in files]
    return heapq.merge(*streams, key=entry_key)


def _marked_lines(data: bytes, start: int, end: int) -> list[int]:
    """Where the lines of ``data[start:end]`` holding a problem level begin."""
    # bytes.find runs at memory speed; a regex over every line does not
    starts: set[int] = set()
    for mark in _PROBLEM_MARKS:
        found = data.find(mark, start, end)
        while found >= 0:
            starts.add(data.rfind(b"\n", start, found) + 1 or start)
            found = data.find(mark, found + len(mark), end)
    return sorted(starts)


def _file_problems(path: Path, rel: str, block: int) -> Iterator[Entry]:
    """The warning, error and critical records of one file, in file order."""
    try:
        handle = open(path, "rb")  # noqa: SIM115  # closed by the with below
    except FileNotFoundError:
        return
    except OSError as exc:
        raise unreadable(path, exc) from exc
    with handle:
        newlines = 0  # before the block
        carry = b""
        skipping = False  # inside a line longer than MAX_LINE
        while True:
            try:
                chunk = handle.read(block)
            except OSError as exc:
                raise unreadable(path, exc) from exc
            data = carry + chunk if carry else chunk
            if not data:
                return
            end = data.rfind(b"\n") + 1 if chunk else len(data)
            if end == 0:
                carry = b"" if skipping or len(data) > MAX_LINE else data
                skipping = skipping or len(data) > MAX_LINE
                continue
            start = 0
            if skipping:  # the rest of an over-long line is not a record
                start = data.find(b"\n") + 1
                newlines += 1
                skipping = False
            pos = start
            for first in _marked_lines(data, start, end):
                newlines += data.count(b"\n", pos, first)
                stop = data.find(b"\n", first, end)
                raw = data[first : end if stop < 0 else stop]
                entry = parse_entry(raw, rel, newlines + 1, None)
                if entry is not None and is_problem(entry.record):
                    yield entry
                pos = first
            newlines += data.count(b"\n", pos, end)
            carry = data[end:]
            if not chunk:
                return


def _add_step_dirs(model: RunModel) -> None:
    """Steps with a directory but no record yet are shown too, as the summary does."""
    if model.source.archive is not None:
        return
    for log_file in list_log_files(model.source.logs_dir):
        if log_file.step is not None and log_file.step not in model.steps:
            model.steps[log_file.step] = Step(log_file.step)


def default_report_path(source: RunSource, run_arg: str | Path) -> Path:
    """Where ``runlog report`` writes when not told (see ``write_report``)."""
    if source.archive is None:
        return source.run_dir / "report.html"
    given = Path(run_arg)
    if given.is_dir():
        return given / "report.html"
    info = archive_run_json(source.archive) or {}
    run_id = info.get("run_id")
    name = run_id if _paths.is_safe_name(run_id) else source.run_dir.name
    return source.archive.parent / f"{name}.report.html"
