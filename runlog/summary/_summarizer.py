"""LogSummarizer: the git-tracked logs_summary.txt (see docs/SUMMARY.md)."""

from __future__ import annotations

import difflib
import os
import stat
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import orjson

from .. import _paths
from .._files import atomic_write
from .._status import effective_status, parse_time, read_run_json, run_names
from .._text import (
    clean,
    fit,
    format_duration,
    format_number,
    format_size,
    format_time,
    value_text,
    width_of,
)
from ..archive import describe_archive
from ..errors import ArchiveIntegrityError, ContextError
from ._layout import Section, plural
from ._layout import SummaryLimits as SummaryLimits  # its old home, still imported
from ._layout import SummarySection as SummarySection
from ._scan import (
    LEVELS,
    Counts,
    Entry,
    FirstN,
    Scan,
    Step,
    error_text,
    number,
    os_reason,
    word,
)
from ._wrap import wrap

_MAX_JSON_FILE: Final = 1 << 20
_STATUS_ORDER: Final = ("SUCCESS", "FAILED", "INTERRUPTED", "INCOMPLETE", "UNKNOWN")
_BAD_STEP: Final = ("FAILED", "INTERRUPTED", "INCOMPLETE")
_NAME_COLUMNS: Final = 32  # a step name in the header's story
_ERROR_LINES: Final = 6  # one listed error: its location, then its message
_WARNING_LINES: Final = 3


class LogSummarizer:
    """
    Builds ``logs_summary.txt`` from a run directory (see docs/SUMMARY.md).

    The summary is a pure function of the directory: records are read in a
    fixed order (run-level files, then steps in numeric order, files by name),
    lists are ordered by timestamp then file then line, and no clock time is
    written, so regenerating it gives the same bytes. The one exception is a
    run without ``run_end``: whether it reads ``INCOMPLETE`` or ``CRASHED``
    depends on its heartbeat's age and whether its process is alive; what
    it says of the run's end (last heartbeat, last record) comes from the
    run's files alone.

    Records are streamed line by line, so memory does not grow with the size
    of the logs. ``combined.log`` is never read (it repeats every record).
    Each :meth:`generate_summary` call reads the directory afresh and keeps
    no state, so one instance may be used from several threads.

    Raises:
        ContextError: If *run_id* or *framework* is not a safe name.
    """

    def __init__(
        self,
        run_id: str,
        framework: str,
        run_dir: str | os.PathLike[str],
        *,
        limits: SummaryLimits | None = None,
    ) -> None:
        self.run_id = _paths.check_name("run_id", run_id)
        self.framework = _paths.check_name("framework", framework)
        self.run_dir = Path(run_dir)
        self.limits = limits or SummaryLimits()

    @property
    def path(self) -> Path:
        """Where :meth:`write_summary` writes: ``run_dir/logs_summary.txt``."""
        return _paths.summary_file(self.run_dir)

    def generate_summary(self, *, sections: Sequence[SummarySection] = ()) -> str:
        """
        The summary text: ASCII structure, at most ``limits.width`` columns a
        line and ``limits.max_bytes`` bytes (UTF-8), ending with a newline.

        Args:
            sections: Extra blocks shown after the header, in this order.

        Raises:
            ContextError: If the run directory has no ``logs/`` directory.
        """
        return self._report(sections).render()

    def _report(self, sections: Sequence[SummarySection] = ()) -> Report:
        """One scan of the run, ready to render as text or markdown."""
        logs = _paths.logs_dir(self.run_dir)
        if not logs.is_dir():
            raise ContextError(
                f"run directory {str(self.run_dir)!r}: no logs/ directory to summarize"
            )
        limits = self.limits
        scan = Scan(
            max_errors=limits.max_errors,
            max_warnings=limits.max_warnings,
            max_hitl=limits.max_hitl,
            max_line_bytes=limits.max_line_bytes,
        )
        scan.run(logs)
        return Report(self, scan, sections)

    def write_summary(self, text: str) -> Path:
        """
        Atomically replace ``run_dir/logs_summary.txt`` with *text*.

        Raises:
            LogWriteError: With the path and the OS reason.
        """
        return atomic_write(self.path, text.encode("utf-8", "backslashreplace"))


class Report:
    """Turns one scan into the summary's sections, then fits them in the limit."""

    def __init__(
        self,
        summarizer: LogSummarizer,
        scan: Scan,
        sections: Sequence[SummarySection] = (),
    ) -> None:
        self.s = summarizer
        self.scan = scan
        self.extra = tuple(sections)
        self.limits = summarizer.limits
        self.width = summarizer.limits.width
        self.steps = [scan.steps[n] for n in sorted(scan.steps)]
        self.totals = Counts()
        self.totals.add(scan.run_level)
        for step in self.steps:
            self.totals.add(step)
        self.problems: list[str] = []
        try:
            self.info = read_run_json(_paths.logs_dir(summarizer.run_dir))
        except OSError as exc:
            self.info = None
            self.problems.append(f"run.json unreadable: {os_reason(exc)}")
        run_dir = summarizer.run_dir
        self.metadata = self._json_file(run_dir / _paths.METADATA_JSON)
        self.metrics = self._json_file(run_dir / _paths.METRICS_JSON)
        self.final = self.status()
        self.bad = [step for step in self.steps if step.final_status in _BAD_STEP]

    def _json_file(self, path: Path) -> dict[str, Any]:
        try:
            fd = os.open(
                path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
            )
        except FileNotFoundError:
            return {}
        except OSError as exc:
            # never followed: a link could copy a secret into a git-tracked file
            why = "a symlink, not followed" if path.is_symlink() else os_reason(exc)
            self.problems.append(f"{path.name} ignored: {why}")
            return {}
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                self.problems.append(f"{path.name} ignored: not a regular file")
                return {}
            data = b""
            while len(data) <= _MAX_JSON_FILE and (
                more := os.read(fd, _MAX_JSON_FILE + 1 - len(data))
            ):
                data += more
        finally:
            os.close(fd)
        if len(data) > _MAX_JSON_FILE:
            self.problems.append(f"{path.name} ignored: larger than 1 MiB")
            return {}
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError:
            self.problems.append(f"{path.name} ignored: not valid JSON")
            return {}
        if not isinstance(value, dict):
            self.problems.append(f"{path.name} ignored: not a JSON object")
            return {}
        return value

    # the sections, in the documented order

    def render(self) -> str:
        sections = [
            *self.header(),
            *self.extra_sections(),
            *self.step_sections(),
            *self.issue_sections(),
            self.hitl_section(),
            *self.totals_sections(),
            Section(self.archive_lines()),
            self.malformed_section(),
        ]
        return self.fit(sections)

    def status(self) -> str:
        """The final status word: run.json's, run_end's, CRASHED or INCOMPLETE."""
        info = self.info
        run_end = self.scan.run_end
        if run_end is None:
            if info is not None and effective_status(info) == "crashed":
                return "CRASHED"
            return "INCOMPLETE"
        recorded = info.get("status") if info is not None else None
        if isinstance(recorded, str) and recorded not in ("", "running"):
            return word(recorded)
        return word(run_end.get("status"))

    def show_command(self, step: int | None = None, level: str = "warning") -> str:
        """The ``runlog show`` line that lists what went wrong (one step's)."""
        where = "" if step is None else f" --step {step}"
        return f"runlog show {self.s.run_id}{where} --level {level}"

    def header(self) -> list[Section]:
        top = [f"Status: {self.final}"]
        top.extend(self.end_lines())
        top.extend(self.first_failure())
        run_end = self.scan.run_end or {}
        if isinstance(run_end.get("reason"), str) and run_end["reason"]:
            top.append(f"Reason: {clean(run_end['reason'])}")
        reason = error_text(run_end)
        if reason and not self.scan.run_end_repeats:
            top.extend(self.wrap(reason, first="Run error: ", indent="  "))
        top.extend(self.overview())
        top.extend(f"Note: {problem}" for problem in self.problems)
        top.append("")
        return [Section(top), self.run_fields()]

    def wrap(
        self, text: str, *, first: str = "", indent: str = "  ", lines: int = 6
    ) -> list[str]:
        return wrap(text, self.width, first=first, indent=indent, max_lines=lines)

    def first_failure(self) -> list[str]:
        """The first failed step, its error, where it was raised, what to run."""
        if not self.bad:
            return self.first_retry()
        first = self.bad[0]
        label = f"{first.final_status.capitalize()} step {first.number:03d}"
        if first.name:
            label += f" ({fit(clean(first.name), _NAME_COLUMNS)})"
        attempt = first.last_failure
        lines = self.wrap(
            attempt.text if attempt and attempt.text else "",
            first=f"{label}: " if attempt and attempt.text else label,
            indent="  ",
        )
        if attempt and attempt.frame:
            lines.append(f"  at {clean(attempt.frame)}")
        if attempt:
            lines.append(f"  see {clean(attempt.pointer)}")
        lines.append(f"  {self.show_command(first.number)}")
        if len(self.bad) > 1:
            lines.append(self._step_list(self.bad))
        return lines

    def first_retry(self) -> list[str]:
        """In a run whose steps all ended well: the first step that needed retries."""
        retried = [
            (step, step.last_failure)
            for step in self.steps
            if step.last_failure is not None
        ]
        if not retried:
            return []
        step, failure = retried[0]
        label = f"Retried step {step.number:03d}"
        if step.name:
            label += f" ({fit(clean(step.name), _NAME_COLUMNS)})"
        label += f" after {plural(step.failed_total, 'failure')}"
        lines = self.wrap(
            failure.text,
            first=f"{label}, last: " if failure.text else label,
            indent="  ",
        )
        return [*lines, f"  see {clean(failure.pointer)}"]

    def end_lines(self) -> list[str]:
        """
        For a run without ``run_end``: its last heartbeat and last record.

        Only times from the run's own files, never the clock, so the text
        stays the same however late it is regenerated (see #17).
        """
        if self.scan.run_end is not None:
            return []
        word_ = self.final.capitalize()
        last = self.scan.last
        beat = parse_time((self.info or {}).get("heartbeat_at"))
        last_at = parse_time(last[0]) if last else None
        if beat is None:
            lines = [f"{word_}: no run_end; no heartbeat recorded"]
        elif last_at is None:
            lines = [f"{word_}: no run_end; last heartbeat {self.clock(beat)}"]
        else:
            gap = (beat - last_at).total_seconds()
            side = "after" if gap >= 0 else "before"
            apart = format_duration(abs(gap))
            when = "at" if apart == "0ms" else f"{apart} {side}"
            lines = [
                f"{word_}: no run_end; last heartbeat {self.clock(beat)}, "
                f"{when} the last record"
            ]
        if last is not None and last_at is not None:
            _ts, step, component, event = last
            where = (
                f"step {step:03d}"
                if type(step) is int
                else "run"
                if step is None
                else f"step {value_text(step)}"
            )
            lines.extend(
                self.wrap(
                    f"{where} {value_text(component)}: {value_text(event)}",
                    first=f"Last record: {self.clock(last_at)} ",
                    lines=2,
                )
            )
        return [fit(line, self.width) for line in lines]

    def clock(self, moment: datetime) -> str:
        """A time of the run: ``14:02:30Z`` on its start day, else in full."""
        start = parse_time((self.info or {}).get("started_at"))
        if start is not None and start.date() == moment.date():
            return moment.strftime("%H:%M:%SZ")
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")

    def extra_sections(self) -> list[Section]:
        return [
            Section(
                [f"== {clean(extra.title)} ==", *(clean(x) for x in extra.lines), ""]
            )
            for extra in self.extra
        ]

    def _step_list(self, steps: list[Step]) -> str:
        """``Failed or incomplete steps (N): 003, 007`` cut to one line."""
        line = f"Failed or incomplete steps ({len(steps)}): "
        room = self.width - len(line) - len(f", ... and {len(steps)} more")
        shown: list[str] = []
        for step in steps:
            if sum(len(n) + 2 for n in shown) + len(f"{step.number:03d}") > room:
                break
            shown.append(f"{step.number:03d}")
        hidden = len(steps) - len(shown)
        return line + ", ".join(shown) + (f", ... and {hidden} more" if hidden else "")

    def overview(self) -> list[str]:
        steps = f"Steps: {len(self.steps)}"
        parts = self.step_counts()
        if parts:
            steps += f" ({parts})"
        malformed = sum(bad.count for bad in self.scan.malformed.values())
        return [
            steps,
            f"Errors: {self.totals.errors} | warnings: {self.totals.warnings}"
            f" | malformed lines: {malformed}",
        ]

    def step_counts(self) -> str:
        """``3 success, 1 failed, 1 retried``: steps by final status."""
        by_status: dict[str, int] = {}
        for step in self.steps:
            by_status[step.final_status] = by_status.get(step.final_status, 0) + 1
        order = sorted(
            by_status,
            key=lambda s: (_STATUS_ORDER.index(s) if s in _STATUS_ORDER else 99, s),
        )
        parts = [f"{by_status[s]} {s.lower()}" for s in order]
        retried = sum(1 for step in self.steps if step.attempts > 1)
        if retried:
            parts.append(f"{retried} retried")
        return ", ".join(parts)

    def run_duration(self) -> str:
        """The run's duration; for a run without an end, up to its last sign."""
        info = self.info or {}
        run_end = self.scan.run_end or {}
        duration = number(info.get("duration_s"))
        if duration is None:
            duration = number(run_end.get("duration_s"))
        if duration is not None or self.scan.run_end is not None:
            return format_duration(duration)
        started = parse_time(info.get("started_at"))
        if started is None and self.scan.run_start is not None:
            started = parse_time(self.scan.run_start.get("ts"))
        signs = [
            parse_time(info.get("heartbeat_at")),
            parse_time(self.scan.last[0]) if self.scan.last else None,
        ]
        latest = max((t for t in signs if t is not None), default=None)
        if started is None or latest is None:
            return "-"
        lasted = max((latest - started).total_seconds(), 0.0)
        # to its last sign of life, said in the header's end lines (see #17)
        return format_duration(lasted)

    def run_fields(self) -> Section:
        info = self.info or {}
        run_start = self.scan.run_start or {}
        run_end = self.scan.run_end or {}
        meta: dict[str, Any] = {}
        if isinstance(info.get("metadata"), dict):
            meta.update(info["metadata"])
        meta.update(self.metadata)
        lines = [f"Run ID:     {self.s.run_id}", f"Framework:  {self.s.framework}"]
        if "model" in meta:
            lines.append(f"Model:      {clean(value_text(meta.pop('model')))}")
        started = info.get("started_at") or run_start.get("ts")
        ended = info.get("ended_at") or run_end.get("ts")
        lines += [
            f"Started:    {format_time(started)}",
            f"Completed:  {format_time(ended)}",
            f"Duration:   {self.run_duration()}",
        ]
        if self.final in ("INCOMPLETE", "CRASHED") and info.get("heartbeat_at"):
            lines.append(f"Heartbeat:  {format_time(info.get('heartbeat_at'))}")
        items = [
            [f"  {clean(str(key))}={clean(value_text(meta[key]))}"]
            for key in sorted(meta, key=str)
        ]
        section = Section(lines, items, more=lambda n: f"  ... and {n} more")
        if items:
            section.head.append(f"Metadata ({len(items)}):")
        section.shown = min(len(items), self.limits.max_metadata)
        section.tail = [""]
        return section

    def step_sections(self) -> list[Section]:
        blocks = [self.step_block(step) for step in self.steps]
        # when steps must be cut, failed, retried and erroring ones stay
        rank = sorted(
            range(len(self.steps)),
            key=lambda i: (not self.notable(self.steps[i]), i),
        )
        section = Section(
            [f"== Steps ({len(self.steps)}) =="],
            [blocks[i] for i in rank],
            more=self._more_steps(rank),
            order=lambda shown: sorted(shown, key=lambda i: rank[i]),
        )
        section.shown = len(blocks)
        if not blocks:
            section.head.append("No steps.")
        section.tail = [""]
        return [section]

    @staticmethod
    def notable(step: Step) -> bool:
        return step.final_status != "SUCCESS" or step.attempts > 1 or step.errors > 0

    def _more_steps(self, rank: list[int]) -> Callable[[int], str]:
        def more(hidden: int) -> str:
            statuses: dict[str, int] = {}
            for i in rank[len(rank) - hidden :]:
                status = self.steps[i].final_status
                statuses[status] = statuses.get(status, 0) + 1
            parts = ", ".join(f"{n} {s.lower()}" for s, n in sorted(statuses.items()))
            return f"... and {hidden} more steps ({parts})"

        return more

    def step_block(self, step: Step) -> list[str]:
        retries = max(step.attempts - 1, 0)
        lines = [
            f"Step {step.number:03d}: {step.final_status} "
            f"(duration: {format_duration(step.duration)}, retries: {retries})"
        ]
        if step.name:
            lines.append(f"  name: {clean(step.name)}")
        for attempt in step.failed:
            head = f"  attempt {attempt.number}: {attempt.status}"
            if attempt.text:
                lines.extend(self.wrap(attempt.text, first=f"{head} - ", indent="    "))
            else:
                lines.append(head)
        if step.failed_total > len(step.failed):
            lines.append(f"  ... and {step.failed_total - len(step.failed)} more")
        lines.append(
            f"  API calls: {step.api_calls} | LLM requests: {step.llm_requests}"
            f" | HITL: {step.hitl}"
        )
        lines.append(self.tokens_line("  tokens: ", step))
        lines.append(f"  warnings: {step.warnings} | errors: {step.errors}")
        if step.final_status in _BAD_STEP:
            lines.append(f"  {self.show_command(step.number)}")
        if step.stdout or step.stderr:
            # captured print() output (see #15)
            lines.append(
                f"  output: {plural(step.stdout, 'stdout line')}"
                f" | {plural(step.stderr, 'stderr line')}"
            )
        return lines

    @staticmethod
    def tokens_line(prefix: str, counts: Counts) -> str:
        if not counts.total and not counts.prompt and not counts.completion:
            if counts.llm_requests:
                return f"{prefix}0 (no token counts recorded)"
            return f"{prefix}0 (no LLM calls)"
        return (
            f"{prefix}prompt {format_number(counts.prompt)} | completion"
            f" {format_number(counts.completion)} | total {format_number(counts.total)}"
        )

    def issue_sections(self) -> list[Section]:
        errors = self.scan.errors
        warnings = self.scan.warnings
        head = [
            f"== Errors and warnings ({plural(errors.total, 'error')}, "
            f"{plural(warnings.total, 'warning')}) =="
        ]
        if self.scan.repeats:
            # see #17: step_end and run_end repeat the exception that ended them
            head.append(
                f"({plural(self.scan.repeats, 'step_end/run_end record')} "
                "repeating an error above, not counted again)"
            )
        out = [
            Section(head),
            self._entries(
                f"Errors ({errors.total}):",
                errors,
                self.error_item,
                self._more("error"),
            ),
            self._entries(
                f"Warnings ({warnings.total}):",
                warnings,
                self.warning_item,
                self._more("warning"),
            ),
        ]
        out[-1].tail = [""]
        return out

    def _more(self, level: str) -> Callable[[int], str]:
        return lambda n: f"  ... and {n} more: {self.show_command(level=level)}"

    def error_item(self, entry: Entry) -> list[str]:
        """``logs/...:17 (file.py:14 in func)``, then the whole message."""
        head = f"  {clean(entry.pointer)}"
        if entry.frame:
            head += f" ({clean(entry.frame)})"
        elif "\n" not in entry.text:
            line = f"{head} {clean(entry.text)}"
            if width_of(line) <= self.width:
                return [line]
        body = self.wrap(
            entry.text, first="    ", indent="    ", lines=_ERROR_LINES - 1
        )
        return [fit(head, self.width), *body]

    def warning_item(self, entry: Entry) -> list[str]:
        """One line when it fits, else its location and the text below it."""
        line = f"  {clean(entry.pointer)} {clean(entry.text)}"
        if width_of(line) <= self.width:
            return [line]
        body = self.wrap(
            entry.text, first="    ", indent="    ", lines=_WARNING_LINES - 1
        )
        return [fit(f"  {clean(entry.pointer)}", self.width), *body]

    def hitl_item(self, entry: Entry) -> list[str]:
        return [f"  {clean(entry.pointer)} {clean(entry.text)}"]

    def _entries(
        self,
        title: str,
        found: FirstN,
        item: Callable[[Entry], list[str]],
        more: Callable[[int], str] = lambda n: f"  ... and {n} more",
        none: str = "  none",
    ) -> Section:
        items = [item(entry) for entry in found.items()]
        section = Section(
            [title], items, more=more, hidden_total=found.total - len(items)
        )
        section.shown = len(items)
        if not found.total:
            section.head.append(none)
        return section

    def hitl_section(self) -> Section:
        section = self._entries(
            f"== HITL interactions ({self.scan.hitl.total}) ==",
            self.scan.hitl,
            self.hitl_item,
            none="None.",
        )
        section.tail = [""]
        return section

    def totals_sections(self) -> list[Section]:
        t = self.totals
        attempts = sum(step.attempts for step in self.steps)
        retries = sum(max(step.attempts - 1, 0) for step in self.steps)
        levels = ", ".join(
            f"{name} {count}"
            for name, count in zip(LEVELS, t.levels, strict=True)
            if count or name != "other"
        )
        lines = [
            "== Totals ==",
            f"Steps:      {len(self.steps)} (attempts: {attempts}, retries: {retries})",
            f"API calls:  {t.api_calls} | LLM requests: {t.llm_requests}"
            f" | HITL: {t.hitl}",
            self.tokens_line("Tokens:     ", t),
            f"Records:    {t.records} in {plural(self.scan.files, 'file')}",
            f"Levels:     {levels}",
        ]
        out = [Section(lines)]
        if self.metrics:
            metrics = self.metrics
            items = [
                [f"  {clean(str(key))}={clean(value_text(metrics[key]))}"]
                for key in sorted(metrics, key=str)
            ]
            section = Section([f"Metrics (metrics.json, {len(items)}):"], items)
            section.shown = min(len(items), self.limits.max_metrics)
            out.append(section)
        out[-1].tail = [""]
        return out

    def archive_lines(self) -> list[str]:

        lines = ["== Archive =="]
        path = _paths.find_archive(self.s.run_dir)
        if path is None:
            return [*lines, "None.", ""]
        lines.append(f"File:    {path.name}")
        try:
            info = describe_archive(path)
        except ArchiveIntegrityError as exc:
            return [*lines, f"Problem: {clean(str(exc))}", ""]
        return [
            *lines,
            f"Size:    {format_size(info.size_bytes)}",
            f"Files:   {info.file_count}",
            f"SHA-256: {info.sha256}",
            "",
        ]

    def malformed_section(self) -> Section:
        bad = self.scan.malformed
        total = sum(entry.count for entry in bad.values())
        head = [f"== Malformed lines skipped ({total}) =="]
        items: list[list[str]] = []
        for shown, entry in bad.items():
            numbers = ", ".join(str(n) for n in entry.lines)
            if entry.count > len(entry.lines):
                numbers += ", ..."
            note = "; last line cut off" if entry.cut_off else ""
            lines = "line" if entry.count == 1 else "lines"
            items.append(
                [f"  logs/{clean(shown)}: {entry.count} {lines} ({numbers}){note}"]
            )
        for shown, why in self.scan.skipped:
            items.append([f"  logs/{clean(shown)}: not read, {clean(why)}"])
        if not items:
            head.append("None.")
        section = Section(head, items, more=lambda n: f"  ... and {n} more files")
        section.shown = min(len(items), self.limits.max_malformed_files)
        return section

    # fitting

    def fit(self, sections: list[Section]) -> str:
        """Shorten the longest lists until the text fits in ``max_bytes``."""
        while True:
            text = self.join(sections)
            if len(text.encode()) <= self.limits.max_bytes:
                return text
            candidates = [s for s in sections if s.shown > 0]
            if not candidates:
                return self.cut(text)
            biggest = max(candidates, key=lambda s: s.item_bytes())
            biggest.shown -= max(1, biggest.shown // 4)

    def join(self, sections: Iterable[Section]) -> str:
        lines = [fit(line, self.width) for s in sections for line in s.lines()]
        while lines and not lines[-1]:
            lines.pop()
        return "\n".join(lines) + "\n"

    def cut(self, text: str) -> str:
        """Last resort for tiny limits: drop whole lines from the end."""
        lines = text.splitlines()
        budget = self.limits.max_bytes - 80
        kept: list[str] = []
        used = 0
        for line in lines:
            size = len(line.encode()) + 1
            if used + size > budget:
                break
            kept.append(line)
            used += size
        kept.append(f"... and {len(lines) - len(kept)} more lines")
        return "\n".join(kept) + "\n"


def summarize_run(
    run_dir: str | os.PathLike[str],
    *,
    limits: SummaryLimits | None = None,
    sections: Sequence[SummarySection] = (),
) -> Path:
    """
    Generate and atomically write ``run_dir/logs_summary.txt``; return its path.

    The run id and framework come from ``logs/run.json``, else from the
    directory names (``<framework>/<run_id>``). *sections* are extra blocks
    shown after the header (see :class:`SummarySection`).

    Raises:
        ContextError: If the directory has no ``logs/`` or its names are unsafe.
        LogWriteError: If the summary cannot be written.
    """
    summarizer = summarizer_for(run_dir, limits=limits)
    return summarizer.write_summary(summarizer.generate_summary(sections=sections))


def report_for(
    run_dir: str | os.PathLike[str],
    *,
    limits: SummaryLimits | None = None,
    sections: Sequence[SummarySection] = (),
) -> Report:
    """
    One scan of the run in *run_dir*, for the text and the markdown summary.

    Raises:
        ContextError: If the directory has no ``logs/`` or its names are unsafe.
    """
    return summarizer_for(run_dir, limits=limits)._report(sections)


def summarizer_for(
    run_dir: str | os.PathLike[str], *, limits: SummaryLimits | None = None
) -> LogSummarizer:
    """The summarizer of *run_dir*, named from run.json or its directories."""
    path = Path(run_dir)
    framework, run_id = run_names(path)
    return LogSummarizer(run_id, framework, path, limits=limits)


def check_summary(
    run_dir: str | os.PathLike[str],
    *,
    limits: SummaryLimits | None = None,
    max_diff_lines: int = 40,
    sections: Sequence[SummarySection] = (),
) -> str | None:
    """
    None if ``logs_summary.txt`` is what :func:`summarize_run` would write now;
    else a short unified diff (committed -> regenerated). Writes nothing.

    Raises:
        ContextError: If the directory has no ``logs/`` or its names are unsafe.
    """
    summarizer = summarizer_for(run_dir, limits=limits)
    fresh = summarizer.generate_summary(sections=sections)
    target = summarizer.path
    try:
        old = target.read_bytes().decode("utf-8", "replace")
        label = f"{target.name} (committed)"
    except FileNotFoundError:
        old = ""
        label = f"{target.name} (missing)"
    if old == fresh:
        return None
    diff = list(
        difflib.unified_diff(
            old.splitlines(keepends=True),
            fresh.splitlines(keepends=True),
            label,
            f"{target.name} (regenerated)",
            n=1,
        )
    )
    if len(diff) > max_diff_lines:
        hidden = len(diff) - max_diff_lines
        diff = [*diff[:max_diff_lines], f"... and {hidden} more diff lines\n"]
    return "".join(line if line.endswith("\n") else line + "\n" for line in diff)
