"""One streaming pass over a run's record files: counts per step, first errors."""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson

from .. import _paths
from .._records import ORCHESTRATOR
from .._text import clean, value_text
from ._fingerprint import fingerprint, user_frame

_CHUNK: Final = 1 << 17  # small reads: fewer page faults than 1 MiB ones
_MAX_FAILED_ATTEMPTS: Final = 3
_MAX_LINE_NUMBERS: Final = 5
_MAX_TEXT: Final = 400  # characters kept of one listed warning or HITL record
_MAX_ERROR_TEXT: Final = 1200  # an error is wrapped, never cut, up to ~6 lines
_MAX_KEYS: Final = 10_000  # failure fingerprints remembered for the double count
_MAX_CACHED: Final = 1024
_NO_TS: Final = "\uffff"  # records without a timestamp sort after every real one
_RESERVED: Final = frozenset(
    ("ts", "level", "event", "logger", "component", "run_id", "framework", "step")
)
LEVELS: Final = ("debug", "info", "warning", "error", "critical", "other")
_LEVEL_INDEX: Final = {
    "debug": 0,
    "info": 1,
    "warning": 2,
    "warn": 2,
    "error": 3,
    "critical": 4,
    "fatal": 4,
}
_OUTPUT_FILES: Final = ("stdout.log", "stderr.log")
_SPECIAL_EVENTS: Final = frozenset(
    ("hitl", "step_start", "step_end", "run_start", "run_end")
)
_NOT_FIELDS: Final = frozenset(("exception", "traceback", "error_type", "error"))


class Counts:
    """What a set of records adds up to (one step, or the run-level files)."""

    __slots__ = (
        "api_calls",
        "completion",
        "hitl",
        "levels",
        "llm_requests",
        "prompt",
        "records",
        "stderr",
        "stdout",
        "total",
    )

    def __init__(self) -> None:
        self.records = 0
        # captured output lines (see #15): info records, never warnings
        self.stdout = 0
        self.stderr = 0
        self.levels = [0] * len(LEVELS)
        self.api_calls = 0
        self.llm_requests = 0
        self.hitl = 0
        self.prompt: float = 0
        self.completion: float = 0
        self.total: float = 0

    @property
    def warnings(self) -> int:
        return self.levels[2]

    @property
    def errors(self) -> int:
        return self.levels[3] + self.levels[4]

    def add(self, other: Counts) -> None:
        self.records += other.records
        self.levels = [a + b for a, b in zip(self.levels, other.levels, strict=True)]
        self.api_calls += other.api_calls
        self.llm_requests += other.llm_requests
        self.hitl += other.hitl
        self.stdout += other.stdout
        self.stderr += other.stderr
        self.prompt += other.prompt
        self.completion += other.completion
        self.total += other.total


@dataclass
class Attempt:
    """One attempt of a step that did not succeed."""

    number: int
    status: str
    text: str
    pointer: str
    frame: str = ""


class Step(Counts):
    """One step: its counts plus what step_start/step_end records say."""

    __slots__ = (
        "duration",
        "end_attempt",
        "failed",
        "failed_total",
        "last_failure",
        "name",
        "number",
        "start_attempt",
        "starts",
        "status",
    )

    def __init__(self, number: int) -> None:
        super().__init__()
        self.number = number
        self.name: str | None = None
        self.starts = 0
        self.start_attempt = 0
        self.end_attempt = 0
        self.status: str | None = None
        self.duration: float | None = None
        self.failed: list[Attempt] = []
        self.failed_total = 0
        self.last_failure: Attempt | None = None

    @property
    def attempts(self) -> int:
        return max(self.starts, self.start_attempt, self.end_attempt)

    @property
    def final_status(self) -> str:
        if self.starts == 0 and self.end_attempt == 0:
            return "UNKNOWN"
        if self.start_attempt > self.end_attempt or self.status is None:
            return "INCOMPLETE"
        return self.status

    def start(self, rec: dict[str, Any]) -> None:
        self.starts += 1
        attempt = _attempt(rec.get("attempt"), self.starts)
        self.start_attempt = max(self.start_attempt, attempt)
        self._name(rec)

    def end(self, rec: dict[str, Any], pointer: str) -> None:
        attempt = _attempt(rec.get("attempt"), max(self.starts, 1))
        status = word(rec.get("status"))
        if attempt >= self.end_attempt:
            self.end_attempt = attempt
            self.status = status
        duration = number(rec.get("duration_s"))
        if duration is not None:
            self.duration = (self.duration or 0) + duration
        if status != "SUCCESS":
            failure = Attempt(
                attempt,
                status,
                error_text(rec)[:_MAX_ERROR_TEXT],
                pointer,
                frame_of(rec),
            )
            self.failed_total += 1
            if len(self.failed) < _MAX_FAILED_ATTEMPTS:
                self.failed.append(failure)
            if self.last_failure is None or attempt >= self.last_failure.number:
                self.last_failure = failure
        self._name(rec)

    def _name(self, rec: dict[str, Any]) -> None:
        name = rec.get("name")
        if isinstance(name, str) and name:
            self.name = name


@dataclass(order=True)
class Entry:
    """One listed record: sorted by time, then file, then line."""

    key: tuple[str, int, int]
    pointer: str = field(compare=False)
    text: str = field(compare=False)
    frame: str = field(compare=False, default="")


class FirstN:
    """Keeps the *n* smallest entries seen, in bounded memory."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.total = 0
        self._items: list[Entry] = []
        self._worst: tuple[str, int, int] | None = None

    def wants(self, key: tuple[str, int, int]) -> bool:
        """Count one more entry; True if it may be among the first *n*."""
        self.total += 1
        return self.n > 0 and (self._worst is None or key < self._worst)

    def add(self, entry: Entry) -> None:
        self._items.append(entry)
        if len(self._items) >= 2 * self.n:
            self._compact()

    def _compact(self) -> None:
        self._items.sort()
        del self._items[self.n :]
        if len(self._items) == self.n:
            self._worst = self._items[-1].key

    def items(self) -> list[Entry]:
        self._compact()
        return list(self._items)


@dataclass
class Malformed:
    """The lines of one file that were not JSON objects."""

    count: int = 0
    lines: list[int] = field(default_factory=list)
    cut_off: bool = False  # the last line has no newline and does not parse


class Scan:
    """One streaming pass over every record file of a run."""

    def __init__(
        self, *, max_errors: int, max_warnings: int, max_hitl: int, max_line_bytes: int
    ) -> None:
        self.max_line_bytes = max_line_bytes
        self.steps: dict[int, Step] = {}
        self.run_level = Counts()
        self.errors = FirstN(max_errors)
        self.warnings = FirstN(max_warnings)
        self.hitl = FirstN(max_hitl)
        self.malformed: dict[str, Malformed] = {}
        self.skipped: list[tuple[str, str]] = []  # (file, why it was not read)
        self.files = 0
        self.run_start: dict[str, Any] | None = None
        self.run_end: dict[str, Any] | None = None
        # the newest record: (ts, step, component, event)
        self.last: tuple[str, object, object, object] | None = None
        # lifecycle records that re-report an exception already counted (see #17)
        self.repeats = 0
        self._keys: set[tuple[str, str, str]] = set()  # every failure so far
        self._step_keys: set[tuple[str, str, str]] = set()  # the current step's
        self.pending: list[tuple[tuple[str, str, str], int, Counts, Entry]] = []
        self.pending_run_end: tuple[tuple[str, str, str], int, Counts, Entry] | None
        self.pending_run_end = None
        self.run_end_repeats = False  # run_end re-raised an error already counted
        self._failures: dict[tuple[object, ...], tuple[str, str, str]] = {}

    def run(self, logs: Path) -> None:
        run_files, step_dirs = self._layout(logs)
        for name in run_files:
            self._file(logs / name, name, self.run_level, None)
        self._settle(self.pending)
        for number, dir_name in step_dirs:
            step = self.steps.setdefault(number, Step(number))
            for name in self._logs_in(logs / dir_name, dir_name):
                self._file(logs / dir_name / name, f"{dir_name}/{name}", step, step)
            self._settle(self.pending)
        self._step_keys = self._keys
        if self.pending_run_end is not None:
            self.run_end_repeats = self._settle([self.pending_run_end]) == 1

    def failure_key(self, rec: dict[str, Any]) -> tuple[str, str, str]:
        """
        What makes two error records one failure: the fingerprint's type
        (``ValueError`` and ``mod.ValueError`` alike: a traceback names the
        module), masked message and user frame. Cached: a run repeats its
        failures, and fingerprinting is the costly part of an error.
        """
        get = rec.get
        raw = (get("error_type"), get("error"), get("exception"), get("traceback"))
        try:
            return self._failures[raw]
        except KeyError:
            cacheable = True
        except TypeError:  # a list or dict value: fingerprinted, not cached
            cacheable = False
        failure = fingerprint(rec)
        key = (failure.kind.rpartition(".")[2], failure.message, failure.frame)
        if cacheable:
            if len(self._failures) >= _MAX_CACHED:
                self._failures.clear()
            self._failures[raw] = key
        return key

    def remember(self, key: tuple[str, str, str]) -> None:
        """Note a failure logged by user code in the current step (or run)."""
        if key not in self._step_keys and len(self._keys) < _MAX_KEYS:
            self._keys.add(key)
            self._step_keys.add(key)

    def _settle(
        self, pending: list[tuple[tuple[str, str, str], int, Counts, Entry]]
    ) -> int:
        """
        Count the step_end (or run_end) records held back until their step was
        read: one that repeats a failure of its step (run_end: of the run) is
        the same exception told again, so it is not counted twice (see #17).
        Returns how many were repeats.
        """
        before = self.repeats
        for key, index, counts, entry in pending:
            if key in self._step_keys:
                counts.levels[index] -= 1
                self.repeats += 1
                continue
            if len(self._keys) < _MAX_KEYS:
                self._keys.add(key)
            if self.errors.wants(entry.key):
                self.errors.add(entry)
        pending.clear()
        self._step_keys = set()
        return self.repeats - before

    def note_last(self, rec: dict[str, Any]) -> None:
        ts = rec.get("ts")
        if isinstance(ts, str) and (self.last is None or ts >= self.last[0]):
            self.last = (ts, rec.get("step"), rec.get("component"), rec.get("event"))

    def _layout(self, logs: Path) -> tuple[list[str], list[tuple[int, str]]]:
        run_files: list[str] = []
        step_dirs: list[tuple[int, str]] = []
        for entry in sorted(os.scandir(logs), key=lambda e: e.name):
            number = _paths.parse_step_dir(entry.name)
            if number is not None and entry.is_dir(follow_symlinks=False):
                step_dirs.append((number, entry.name))
            elif number is not None and entry.is_symlink():
                self.skipped.append((entry.name, "a symlink, not followed"))
            elif entry.name.endswith(".log") and entry.name != _paths.COMBINED_LOG:
                run_files.append(entry.name)
        # run.log first: it holds run_start and run_end
        run_files.sort(key=lambda name: (name != _paths.RUN_LOG, name))
        step_dirs.sort()
        for number, _dir in step_dirs:
            self.steps.setdefault(number, Step(number))
        return run_files, step_dirs

    def _logs_in(self, directory: Path, shown: str) -> list[str]:
        try:
            names = os.listdir(directory)
        except OSError as exc:
            self.skipped.append((shown, os_reason(exc)))
            return []
        return sorted(name for name in names if name.endswith(".log"))

    def _file(self, path: Path, shown: str, counts: Counts, step: Step | None) -> None:
        """Stream one JSON-lines file into *counts*; never holds more than a line."""
        try:
            fd = os.open(
                path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
            )
        except OSError as exc:
            # a vanished or unreadable file: say so in the summary, read the rest
            why = "a symlink, not followed" if path.is_symlink() else os_reason(exc)
            self.skipped.append((shown, why))
            return
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                self.skipped.append((shown, "not a regular file"))
                return
            self.files += 1
            before = counts.records
            _FileReader(self, shown, self.files, counts, step).read(fd)
            if step is not None and path.name in _OUTPUT_FILES:
                # a step's stdout.log/stderr.log holds its captured lines only
                lines = counts.records - before
                if path.name == _OUTPUT_FILES[0]:
                    counts.stdout += lines
                else:
                    counts.stderr += lines
        except OSError as exc:
            self.skipped.append((shown, f"read failed: {os_reason(exc)}"))
        finally:
            os.close(fd)

    def bad_line(self, shown: str, lineno: int, *, cut_off: bool = False) -> None:
        bad = self.malformed.setdefault(shown, Malformed())
        bad.count += 1
        if len(bad.lines) < _MAX_LINE_NUMBERS:
            bad.lines.append(lineno)
        bad.cut_off = bad.cut_off or cut_off


class _FileReader:
    """The per-line loop for one file: hot path inline, rare cases in methods."""

    def __init__(
        self, scan: Scan, shown: str, index: int, counts: Counts, step: Step | None
    ) -> None:
        self.scan = scan
        self.shown = shown
        self.index = index
        self.counts = counts
        self.step = step

    def read(self, fd: int) -> None:
        max_line = self.scan.max_line_bytes
        # a chunk never exceeds max_line, so only a line spanning chunks can
        chunk_size = min(_CHUNK, max_line)
        pieces: list[bytes] = []
        pending = 0
        skipping = False
        lineno = 0
        while chunk := os.read(fd, chunk_size):
            lines = chunk.split(b"\n")
            tail = lines.pop()
            if lines:
                if skipping or pending + len(lines[0]) > max_line:
                    lineno += 1
                    self.scan.bad_line(self.shown, lineno)
                    del lines[0]
                elif pieces:
                    pieces.append(lines[0])
                    lines[0] = b"".join(pieces)
                pieces = []
                pending = 0
                skipping = False
                self.lines(lines, lineno + 1)
                lineno += len(lines)
            if skipping:
                continue
            pending += len(tail)
            if pending > max_line:
                skipping = True
                pieces = []
            elif tail:
                pieces.append(tail)
        if skipping:
            self.scan.bad_line(self.shown, lineno + 1, cut_off=True)
        elif pieces:
            last = b"".join(pieces)
            if self.lines([last], lineno + 1) == 0 and last.strip():
                bad = self.scan.malformed[self.shown]
                bad.cut_off = True

    def lines(self, lines: list[bytes], first: int) -> int:
        """Count *lines* (numbered from *first*); returns how many were records."""
        # the hot loop of the summary: locals only, rare cases in methods
        loads = orjson.loads
        decode_error = orjson.JSONDecodeError
        records = api = llm = debug = info = prompt = completion = total = 0
        last: dict[str, Any] | None = None
        for lineno, line in enumerate(lines, first):
            try:
                rec = loads(line)
            except decode_error:
                if line.strip():  # a blank line is not a record
                    self.scan.bad_line(self.shown, lineno)
                continue
            if rec.__class__ is not dict:
                self.scan.bad_line(self.shown, lineno)
                continue
            records += 1
            last = rec
            level = rec.get("level")
            if level == "info":
                info += 1
            elif level == "debug":
                debug += 1
            else:
                self.level(rec, level, lineno)
            event = rec.get("event")
            if event == "api_call":
                api += 1
            elif event == "llm_request":
                llm += 1
            elif event.__class__ is str and event in _SPECIAL_EVENTS:
                self.special(rec, event, lineno)
            # a cheap filter first: writers never escape ASCII key names
            if b"tokens" in line:
                p = rec.get("prompt_tokens")
                c = rec.get("completion_tokens")
                n = rec.get("total_tokens")
                if (
                    p.__class__ is int
                    and c.__class__ is int
                    and n.__class__ is int
                    and p >= 0
                    and c >= 0
                    and n >= 0
                ):
                    prompt += p
                    completion += c
                    total += n
                else:
                    self.tokens(rec)
        if last is not None:
            self.scan.note_last(last)
        counts = self.counts
        counts.records += records
        counts.api_calls += api
        counts.llm_requests += llm
        counts.levels[0] += debug
        counts.levels[1] += info
        counts.prompt += prompt
        counts.completion += completion
        counts.total += total
        return records

    def level(self, rec: dict[str, Any], level: object, lineno: int) -> None:
        index = _LEVEL_INDEX.get(level.lower(), 5) if isinstance(level, str) else 5
        self.counts.levels[index] += 1
        if index not in (2, 3, 4):
            return
        key = (_sort_ts(rec.get("ts")), self.index, lineno)
        scan = self.scan
        if index == 2:
            if scan.warnings.wants(key):
                scan.warnings.add(Entry(key, self.pointer(lineno), warning_text(rec)))
        elif _has_exception(rec):
            self.failure(rec, index, key, lineno)
        elif scan.errors.wants(key):
            text = _error_entry_text(rec, index)
            scan.errors.add(Entry(key, self.pointer(lineno), text))

    def pointer(self, lineno: int) -> str:
        """``logs/step_003/adapter.log:17``: a line of this file, from the run dir."""
        return f"{_paths.LOGS_DIR}/{self.shown}:{lineno}"

    def failure(
        self, rec: dict[str, Any], index: int, key: tuple[str, int, int], lineno: int
    ) -> None:
        """An error record with an exception: counted once (see #17), listed."""
        scan = self.scan
        pointer = self.pointer(lineno)
        same = scan.failure_key(rec)
        event = rec.get("event")
        lifecycle = rec.get("component") == ORCHESTRATOR
        if lifecycle and event == "step_end" and self.step is not None:
            entry = Entry(key, pointer, _error_entry_text(rec, index), frame_of(rec))
            scan.pending.append((same, index, self.counts, entry))
        elif lifecycle and event == "run_end" and self.shown == _paths.RUN_LOG:
            entry = Entry(key, pointer, _error_entry_text(rec, index), frame_of(rec))
            scan.pending_run_end = (same, index, self.counts, entry)
        else:
            scan.remember(same)
            if scan.errors.wants(key):
                text = _error_entry_text(rec, index)
                scan.errors.add(Entry(key, pointer, text, frame_of(rec)))

    def special(self, rec: dict[str, Any], event: str, lineno: int) -> None:
        if event == "hitl":
            self.counts.hitl += 1
            key = (_sort_ts(rec.get("ts")), self.index, lineno)
            if self.scan.hitl.wants(key):
                text = _fields(rec) or "(no details)"
                pointer = f"{_paths.LOGS_DIR}/{self.shown}:{lineno}"
                self.scan.hitl.add(Entry(key, pointer, text))
            return
        if rec.get("component") != ORCHESTRATOR:
            return
        if self.step is not None and event == "step_start":
            self.step.start(rec)
        elif self.step is not None and event == "step_end":
            self.step.end(rec, f"{_paths.LOGS_DIR}/{self.shown}:{lineno}")
        elif self.step is None and self.shown == _paths.RUN_LOG:
            if event == "run_end":
                self.scan.run_end = rec
            elif event == "run_start" and self.scan.run_start is None:
                self.scan.run_start = rec

    def tokens(self, rec: dict[str, Any]) -> None:
        prompt = _first_number(rec, "prompt_tokens", "tokens_prompt")
        completion = _first_number(rec, "completion_tokens", "tokens_completion")
        total = _first_number(rec, "total_tokens", "tokens_total")
        if total is None:
            total = (prompt or 0) + (completion or 0)
        self.counts.prompt += prompt or 0
        self.counts.completion += completion or 0
        self.counts.total += total


def _first_number(rec: dict[str, Any], *keys: str) -> float | None:
    """The first of *keys* whose value is a number (aliases of one count)."""
    for key in keys:
        value = number(rec.get(key))
        if value is not None:
            return value
    return None


def number(value: object) -> float | None:
    """A finite, non-negative int or float (a bool is not a number here)."""
    if type(value) is int and value >= 0:
        return value
    if type(value) is float and math.isfinite(value) and value >= 0:
        return value
    return None


def _attempt(value: object, default: int) -> int:
    """A record's ``attempt`` if it is an int >= 1, else *default*."""
    return value if type(value) is int and value > 0 else default


def word(value: object) -> str:
    """A status as shown: ``SUCCESS``, ``FAILED``...; ``UNKNOWN`` if not a string."""
    return clean(value[:20]).upper() if isinstance(value, str) and value else "UNKNOWN"


def _sort_ts(value: object) -> str:
    """A record's ``ts`` as a sort key (runlog's timestamps sort as text)."""
    return value if isinstance(value, str) else _NO_TS


def error_text(rec: Mapping[str, Any]) -> str:
    """``ErrorType: message`` from a record's error fields or its traceback."""
    kind, error = rec.get("error_type"), rec.get("error")
    if isinstance(kind, str) and kind:
        return f"{kind}: {error}" if isinstance(error, str) and error else kind
    if isinstance(error, str) and error:
        return error
    for key in ("exception", "traceback"):
        text = rec.get(key)
        if isinstance(text, str):
            lines = [line for line in text[-2000:].splitlines() if line.strip()]
            if lines:
                return lines[-1].strip()
    return ""


def _has_exception(rec: Mapping[str, Any]) -> bool:
    """Whether *rec* carries an exception (its type or a traceback)."""
    if "error_type" not in rec and "exception" not in rec and "traceback" not in rec:
        return False
    kind = rec.get("error_type")
    if isinstance(kind, str) and kind:
        return True
    return any(
        isinstance(rec.get(key), str) and rec[key].strip()
        for key in ("exception", "traceback")
    )


def frame_of(rec: Mapping[str, Any]) -> str:
    """``file.py:14 in func`` of the innermost user frame of *rec*'s traceback."""
    for key in ("exception", "traceback"):
        text = rec.get(key)
        if isinstance(text, str) and text.strip():
            frame = user_frame(text)
            return str(frame) if frame is not None else ""
    return ""


def _error_entry_text(rec: Mapping[str, Any], index: int) -> str:
    text = _describe(rec)[:_MAX_ERROR_TEXT]
    return f"CRITICAL {text}" if index == 4 else text


def warning_text(rec: Mapping[str, Any]) -> str:
    """A warning as listed: its event (and error), then its first own fields."""
    parts = [_describe(rec)]
    size = len(parts[0])
    for key in rec:
        if size > _MAX_TEXT:
            break
        if key in _RESERVED or key in _NOT_FIELDS:
            continue
        part = f"{key}={value_text(rec[key])}"[:_MAX_TEXT]
        parts.append(part)
        size += len(part) + 1
    return " ".join(parts)[:_MAX_TEXT]


def _describe(rec: Mapping[str, Any]) -> str:
    """One listed error or warning: its event, then its error if it has one."""
    event = rec.get("event")
    text = event if isinstance(event, str) else value_text(event)
    reason = error_text(rec)
    return f"{text}: {reason}" if reason else text


def _fields(rec: Mapping[str, Any]) -> str:
    """The caller's own fields as ``key=value``, sorted, cut to _MAX_TEXT."""
    parts: list[str] = []
    size = 0
    for key in sorted(k for k in rec if k not in _RESERVED):
        part = f"{key}={value_text(rec[key])}"[:_MAX_TEXT]
        parts.append(part)
        size += len(part) + 1
        if size > _MAX_TEXT:
            break
    return " ".join(parts)[:_MAX_TEXT]


def os_reason(exc: OSError) -> str:
    """The OS's words for *exc* (``Permission denied``), without the path."""
    return exc.strerror or type(exc).__name__
