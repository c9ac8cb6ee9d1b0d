"""LogSummarizer: the git-tracked logs_summary.txt (see docs/SUMMARY.md)."""

from __future__ import annotations

import difflib
import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson

from .. import _paths
from .._files import atomic_write
from .._status import effective_status, read_run_json, run_names
from .._text import (
    KIB,
    clean,
    fit,
    format_duration,
    format_number,
    format_size,
    format_time,
    value_text,
)
from ..archive import describe_archive
from ..errors import ArchiveIntegrityError, ConfigurationError, ContextError
from ._scan import (
    LEVELS,
    Counts,
    FirstN,
    Scan,
    Step,
    error_text,
    number,
    os_reason,
    word,
)

MIN_WIDTH: Final = 73  # the archive's "SHA-256: <64 hex>" line must fit
MIN_BYTES: Final = 2 * KIB
_MAX_JSON_FILE: Final = 1 << 20
_STATUS_ORDER: Final = ("SUCCESS", "FAILED", "INTERRUPTED", "INCOMPLETE", "UNKNOWN")
_BAD_STEP: Final = ("FAILED", "INTERRUPTED", "INCOMPLETE")


@dataclass(frozen=True)
class SummaryLimits:
    """
    Size limits of ``logs_summary.txt``; the defaults are those of docs/SUMMARY.md.

    Lists (steps, errors, warnings, HITL interactions, malformed files,
    metadata, metrics) are shown up to their own cap, then shortened further,
    longest first, until the whole summary fits in *max_bytes*; a cut list
    ends with ``... and N more``.

    Raises:
        ConfigurationError: If a limit is out of range (names the value).
    """

    width: int = 80
    max_bytes: int = 10_000  # 10 KB whether a KB is 1000 or 1024 bytes
    max_errors: int = 20
    max_warnings: int = 10
    max_hitl: int = 10
    max_malformed_files: int = 10
    max_metadata: int = 12
    max_metrics: int = 12
    max_line_bytes: int = 16 << 20

    def __post_init__(self) -> None:
        minimums = {"width": MIN_WIDTH, "max_bytes": MIN_BYTES, "max_line_bytes": 64}
        for name, value in vars(self).items():
            low = minimums.get(name, 0)
            if type(value) is not int or value < low:
                raise ConfigurationError(f"{name} {value!r}: use an int >= {low}")


# -- rendering --------------------------------------------------------------


@dataclass
class _Section:
    """A block of lines whose item list can be shortened to fit the size limit."""

    head: list[str]
    items: list[list[str]] = field(default_factory=list)
    shown: int = 0
    more: Callable[[int], str] = lambda n: f"  ... and {n} more"
    order: Callable[[list[int]], list[int]] = sorted
    tail: list[str] = field(default_factory=list)
    hidden_total: int = 0  # items that were never rendered (beyond a cap)

    def lines(self) -> list[str]:
        keep = self.order(list(range(self.shown)))
        out = list(self.head)
        for index in keep:
            out.extend(self.items[index])
        hidden = len(self.items) - self.shown + self.hidden_total
        if hidden:
            out.append(self.more(hidden))
        out.extend(self.tail)
        return out

    def item_bytes(self) -> int:
        return sum(
            len(line.encode()) + 1 for item in self.items[: self.shown] for line in item
        )


class LogSummarizer:
    """
    Builds ``logs_summary.txt`` from a run directory (see docs/SUMMARY.md).

    The summary is a pure function of the directory: records are read in a
    fixed order (run-level files, then steps in numeric order, files by name),
    lists are ordered by timestamp then file then line, and no clock time is
    written, so regenerating it gives the same bytes. The one exception is a
    run without ``run_end``: whether it reads ``INCOMPLETE`` or ``CRASHED``
    depends on its heartbeat's age and whether its process is alive.

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

    def generate_summary(self) -> str:
        """
        The summary text: ASCII structure, at most ``limits.width`` columns a
        line and ``limits.max_bytes`` bytes (UTF-8), ending with a newline.

        Raises:
            ContextError: If the run directory has no ``logs/`` directory.
        """
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
        return _Renderer(self, scan).render()

    def write_summary(self, text: str) -> Path:
        """
        Atomically replace ``run_dir/logs_summary.txt`` with *text*.

        Raises:
            LogWriteError: With the path and the OS reason.
        """
        return atomic_write(self.path, text.encode("utf-8", "backslashreplace"))


class _Renderer:
    """Turns one scan into the summary's sections, then fits them in the limit."""

    def __init__(self, summarizer: LogSummarizer, scan: Scan) -> None:
        self.s = summarizer
        self.scan = scan
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
        self.final, self.why = self.status()

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
            *self.step_sections(),
            *self.issue_sections(),
            self.hitl_section(),
            *self.totals_sections(),
            _Section(self.archive_lines()),
            self.malformed_section(),
        ]
        return self.fit(sections)

    def status(self) -> tuple[str, str]:
        """The final status word and why, when it is not simply run.json's."""
        info = self.info
        run_end = self.scan.run_end
        if run_end is None:
            if info is not None and effective_status(info) == "crashed":
                return "CRASHED", "no run_end; heartbeat stale or process gone"
            return "INCOMPLETE", "no run_end record"
        recorded = info.get("status") if info is not None else None
        if isinstance(recorded, str) and recorded not in ("", "running"):
            return word(recorded), ""
        return word(run_end.get("status")), ""

    def header(self) -> list[_Section]:
        top = [f"Status: {self.final}" + (f" ({self.why})" if self.why else "")]
        bad = [step for step in self.steps if step.final_status in _BAD_STEP]
        if bad:
            first = bad[0]
            label = f"{first.final_status.capitalize()} step {first.number:03d}"
            if first.name:
                label += f" ({clean(first.name)})"
            attempt = first.last_failure
            detail = clean(attempt.text) if attempt and attempt.text else ""
            top.append(f"{label}: {detail}" if detail else label)
            if attempt:
                top.append(f"  see {clean(attempt.pointer)}")
            if len(bad) > 1:
                top.append(self._step_list(bad))
        run_end = self.scan.run_end or {}
        if isinstance(run_end.get("reason"), str) and run_end["reason"]:
            top.append(f"Reason: {clean(run_end['reason'])}")
        reason = error_text(run_end)
        if reason:
            top.append(f"Run error: {clean(reason)}")
        top.extend(self.overview())
        top.extend(f"Note: {problem}" for problem in self.problems)
        top.append("")
        return [_Section(top), self.run_fields()]

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
        steps = f"Steps: {len(self.steps)}"
        if parts:
            steps += f" ({', '.join(parts)})"
        malformed = sum(bad.count for bad in self.scan.malformed.values())
        return [
            steps,
            f"Errors: {self.totals.errors} | warnings: {self.totals.warnings}"
            f" | malformed lines: {malformed}",
        ]

    def run_fields(self) -> _Section:
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
        duration = number(info.get("duration_s"))
        if duration is None:
            duration = number(run_end.get("duration_s"))
        started = info.get("started_at") or run_start.get("ts")
        ended = info.get("ended_at") or run_end.get("ts")
        lines += [
            f"Started:    {format_time(started)}",
            f"Completed:  {format_time(ended)}",
            f"Duration:   {format_duration(duration)}",
        ]
        if self.final in ("INCOMPLETE", "CRASHED") and info.get("heartbeat_at"):
            lines.append(f"Heartbeat:  {format_time(info.get('heartbeat_at'))}")
        items = [
            [f"  {clean(str(key))}={clean(value_text(meta[key]))}"]
            for key in sorted(meta, key=str)
        ]
        section = _Section(lines, items, more=lambda n: f"  ... and {n} more")
        if items:
            section.head.append(f"Metadata ({len(items)}):")
        section.shown = min(len(items), self.limits.max_metadata)
        section.tail = [""]
        return section

    def step_sections(self) -> list[_Section]:
        blocks = [self.step_block(step) for step in self.steps]
        # when steps must be cut, failed, retried and erroring ones stay
        rank = sorted(
            range(len(self.steps)),
            key=lambda i: (not self._notable(self.steps[i]), i),
        )
        section = _Section(
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
    def _notable(step: Step) -> bool:
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
            text = f"  attempt {attempt.number}: {attempt.status}"
            if attempt.text:
                text += f" - {clean(attempt.text)}"
            lines.append(text)
        if step.failed_total > len(step.failed):
            lines.append(f"  ... and {step.failed_total - len(step.failed)} more")
        lines.append(
            f"  API calls: {step.api_calls} | LLM requests: {step.llm_requests}"
            f" | HITL: {step.hitl}"
        )
        lines.append(self.tokens_line("  tokens: ", step))
        lines.append(f"  warnings: {step.warnings} | errors: {step.errors}")
        if step.stdout or step.stderr:
            # captured print() output (see #15)
            lines.append(
                f"  output: {step.stdout} stdout lines | {step.stderr} stderr lines"
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

    def issue_sections(self) -> list[_Section]:
        errors = self.scan.errors
        warnings = self.scan.warnings
        out = [
            _Section(
                [
                    f"== Errors and warnings ({errors.total} errors, "
                    f"{warnings.total} warnings) =="
                ]
            )
        ]
        for title, found in (("Errors", errors), ("Warnings", warnings)):
            out.append(self._entries(f"{title} ({found.total}):", found))
        out[-1].tail = [""]
        return out

    def _entries(self, title: str, found: FirstN, none: str = "  none") -> _Section:
        items = [[f"  {clean(e.pointer)} {clean(e.text)}"] for e in found.items()]
        section = _Section([title], items, hidden_total=found.total - len(items))
        section.shown = len(items)
        if not found.total:
            section.head.append(none)
        return section

    def hitl_section(self) -> _Section:
        section = self._entries(
            f"== HITL interactions ({self.scan.hitl.total}) ==", self.scan.hitl, "None."
        )
        section.tail = [""]
        return section

    def totals_sections(self) -> list[_Section]:
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
            f"Records:    {t.records} in {self.scan.files} files",
            f"Levels:     {levels}",
        ]
        out = [_Section(lines)]
        if self.metrics:
            metrics = self.metrics
            items = [
                [f"  {clean(str(key))}={clean(value_text(metrics[key]))}"]
                for key in sorted(metrics, key=str)
            ]
            section = _Section([f"Metrics (metrics.json, {len(items)}):"], items)
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

    def malformed_section(self) -> _Section:
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
            items.append([f"  {clean(shown)}: {entry.count} {lines} ({numbers}){note}"])
        for shown, why in self.scan.skipped:
            items.append([f"  {clean(shown)}: not read, {clean(why)}"])
        if not items:
            head.append("None.")
        section = _Section(head, items, more=lambda n: f"  ... and {n} more files")
        section.shown = min(len(items), self.limits.max_malformed_files)
        return section

    # fitting

    def fit(self, sections: list[_Section]) -> str:
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

    def join(self, sections: Iterable[_Section]) -> str:
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
    run_dir: str | os.PathLike[str], *, limits: SummaryLimits | None = None
) -> Path:
    """
    Generate and atomically write ``run_dir/logs_summary.txt``; return its path.

    The run id and framework come from ``logs/run.json``, else from the
    directory names (``<framework>/<run_id>``).

    Raises:
        ContextError: If the directory has no ``logs/`` or its names are unsafe.
        LogWriteError: If the summary cannot be written.
    """
    path = Path(run_dir)
    framework, run_id = run_names(path)
    summarizer = LogSummarizer(run_id, framework, path, limits=limits)
    return summarizer.write_summary(summarizer.generate_summary())


def check_summary(
    run_dir: str | os.PathLike[str],
    *,
    limits: SummaryLimits | None = None,
    max_diff_lines: int = 40,
) -> str | None:
    """
    None if ``logs_summary.txt`` is what :func:`summarize_run` would write now;
    else a short unified diff (committed -> regenerated). Writes nothing.

    Raises:
        ContextError: If the directory has no ``logs/`` or its names are unsafe.
    """
    path = Path(run_dir)
    framework, run_id = run_names(path)
    summarizer = LogSummarizer(run_id, framework, path, limits=limits)
    fresh = summarizer.generate_summary()
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
