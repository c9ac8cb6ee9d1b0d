"""The fast reading path gives what a plain reader gives, for any filters (see #16).

A reference reader, written here as simply as it can be (parse every line
with orjson, keep what the filters match, stable-sort by timestamp), is
compared with ``read_records`` on generated runs full of hostile content, for
the run directory, its ``run.tar.gz`` and its ``run.tar.zst``. What a record
matches is :meth:`Filters.matches` and :meth:`Filters.wants_file` (the
semantics of ``show`` before #16): this checks that searching raw bytes first,
merging and skipping never change the records, their order, where they were
found, or the malformed lines counted.
"""

from __future__ import annotations

import contextlib
import heapq
import io
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import orjson
import pytest
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

from runlog.archive import Archiver
from runlog.cli._common import print_batches
from runlog.cli._render import Style, plain_lines, render_entry
from runlog.reading import _verdicts
from runlog.reading._merge import read_batches, read_records
from runlog.reading._prefilter import prefilter_for
from runlog.reading._source import (
    Entry,
    Filters,
    ReadReport,
    RunSource,
    classify,
    dir_entries,
    file_order,
)

pytestmark = pytest.mark.reliability

T0 = datetime(2025, 10, 20, 14, 0, 0, tzinfo=UTC)
TIMES = [
    (T0 + timedelta(seconds=s)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    for s in (0, 0, 1, 2, 2, 3, 5, 8, 13)
]
ODD_TIMES: list[Any] = ["2025-10-20 14:00:04", "", 12345, None, "2025-10-20T14:00:06Z"]
TEXTS = [
    "llm_request",
    "api_call",
    "validation_failed",
    'say "hi"',
    "naïve café",
    "line\nbreak",
    "tab\there",
    "esc\x1b[31m red",
    "back\\slash",
    "bidi\u202e",
    "gpt-4o",
    "x01",
    "None",
    "step_start",
    "",
    "emoji 🙂",
    "Kelvin \u212a",
    "sep\u2028arator",
    "del\x7f",
    "ctrl\x01",
    "request failed",
    "a=b c",
    'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: bad',
]
LEVELS: list[Any] = [
    "debug",
    "info",
    "info",
    "warning",
    "error",
    "critical",
    "ERROR",
    "Warn",
    "fatal",
    "exception",
    "notice",
    5,
    None,
]
COMPONENTS: list[Any] = [
    "adapter",
    "metrics",
    "orchestrator",
    "external",
    3,
    'ad"apter',
]
KEYS = [
    "model",
    "attempt",
    "note",
    'we"ird',
    "multi\nline",
    "exception",
    "traceback",
    "prompt_tokens",
    "é",
    "level",
    "step",
]
MALFORMED = [
    b"",
    b"not json",
    b'{"ts":"2025-10-20T14:00:00.000000Z","level":"info"',
    b'{"ts":"2025-10-20T14:00:01.000000Z","ev{"ts":"2025-10-20T14:00:02.000000Z",'
    b'"level":"error","event":"gpt-4o"}',
    b"{broken}",
    b"[1, 2]",
    b'"just a string"',
    b'{"ts":"x"} trailing',
    b"\x00\x00\x00",
    b'{"ts":"2025-10-20T14:00:04.000000Z","event":"raw\ttab gpt-4o"}',
    b"   ",
]
# valid JSON that runlog would not write: escapes of plain letters, numbers
# spelled otherwise than orjson spells them, keys given twice
ODD_LINES = [
    b'{"ts":"2025-10-20T14:00:03.000000Z","level":"error","event":"\\u0067pt-4o"}',
    b'{"ts":"2025-10-20T14:00:02.000000Z","level":"error","event":"big",'
    b'"n":123456789012345678901234567890}',
    b'{"ts":"2025-10-20T14:00:03.000000Z","level":"ERROR","event":"exp","x":1E5}',
    b'{"ts":"2025-10-20T14:00:01.000000Z","level":"error","level":"info","event":"d"}',
    b'{"ts":"2025-10-20T14:00:01.000000Z","level":"info","level":"error","event":"d2",'
    b'"component":"adapter","component":"metrics","step":2,"step":3}',
    b'{"ts":"2025-10-20T14:00:05.000000Z","level":"error","event":"in","x":-0,"y":1.50}',
    b'{"ts":"2025-10-20T14:00:05.000000Z","level":true,"component":null,"event":"t"}',
    b'{"ts":"2025-10-20T14:00:08.000000Z","level" : "critical","event":"sp"}',
    b'{"ts":"2025-10-20T14:00:08.000000Z","event":"nested","m":{"level":"error"}}',
    # level keys a byte search could misread: other case, a string "level",
    # a nested one beside a quiet level (see #16)
    b'{"ts":"2025-10-20T14:00:05.000000Z","level":"info","LEVEL":"ERROR","event":"u"}',
    b'{"ts":"2025-10-20T14:00:05.000000Z","level":"debug","event":"level"}',
    b'{"ts":"2025-10-20T14:00:13.000000Z","level":"warning","m":{"level":"fatal"}}',
    b'{"ts":"2025-10-20T14:00:13.000000Z","level":"Error","event":"mixed case"}',
]
PATTERNS = [
    "gpt-4o",
    "validation_failed",
    "step_start",
    "adapter",
    "x01",
    "x1b",
    "u202e",
    r"\\",
    '"',
    "é",
    "café",
    r"\n",
    r"\\n",
    "Traceback",
    "None",
    "True",
    "step",
    "step=",
    "42",
    "a.c",
    "^2025",
    "ERROR",
    "error",
    "(?i)error",
    "gpt|val",
    "\u2028",
    "k",
    "K",
    "info",
    " ",
    "=",
    r"\[adapter\]",
    r"tokens=\d+",
    'hi"',
    "tab",
    "\t",
    "🙂",
    "e+",
    "1e",
    "notice",
    "-",
    "z$",
    r"o\b",
    "request failed",
    "Kelvin",
    "x7f",
    "ValueError: bad",
    'we"ird',
    "null",
    "3.5",
    "100000",
    "1.5",
    "e\\+29",
    "gpt",
    "True",
    "d2",
]
FILES = [
    "run.log",
    "reconciliation.log",
    "step_001/orchestrator.log",
    "step_001/adapter.log",
    "step_002/adapter.log",
    "step_002/metrics.log",
    "step_003/adapter.log",
]

# texts runlog writes without an escape: what most files hold
PLAIN_TEXTS = [
    "llm_request",
    "api_call",
    "validation_failed",
    "gpt-4o",
    "step_start",
    "request failed",
    "a=b c",
    "x01",
    "None",
    "",
]
texts = st.sampled_from(PLAIN_TEXTS) | st.sampled_from(TEXTS)
scalars = st.one_of(
    texts,
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
)
values = st.one_of(
    scalars,
    st.lists(scalars, max_size=3),
    st.dictionaries(st.sampled_from(KEYS), scalars, max_size=2),
)


@st.composite
def records(draw: st.DrawFn, rel: str) -> dict[str, Any]:
    """One record as runlog writes it, often bent: odd values, keys, order."""
    log_file = classify(rel)
    assert log_file is not None
    step: Any = log_file.step
    if draw(st.integers(0, 9)) == 0:
        # odd steps too: a list or object, and True, which hashes as 1 (see #16)
        step = draw(st.sampled_from([None, 1, 2, 3, "3", 2.5, [1, 2], {"n": 1}, True]))
    record: dict[str, Any] = {
        "ts": draw(st.sampled_from(TIMES)),
        "level": draw(st.sampled_from(LEVELS)),
        "event": draw(texts),
        "logger": "bench",
        "component": log_file.component
        if draw(st.booleans())
        else draw(st.sampled_from(COMPONENTS)),
        "run_id": "r1",
        "framework": "fw",
        "step": step,
    }
    if draw(st.integers(0, 9)) == 0:
        record["ts"] = draw(st.sampled_from(ODD_TIMES))
    for key in draw(st.lists(st.sampled_from(list(record)), max_size=2, unique=True)):
        if key != "ts" or draw(st.booleans()):
            del record[key]
    extras = draw(st.dictionaries(st.sampled_from(KEYS), values, max_size=4))
    record.update(extras)
    return record


def ts_key(record: dict[str, Any]) -> str:
    """The merge key of a record: its timestamp, or "" when it has none."""
    ts = record.get("ts")
    return ts if isinstance(ts, str) else ""


@st.composite
def runs(draw: st.DrawFn) -> dict[str, list[bytes]]:
    """The lines of each log file of a run; each file in time order."""
    files: dict[str, list[bytes]] = {}
    for rel in draw(
        st.lists(st.sampled_from(FILES), min_size=1, max_size=6, unique=True)
    ):
        keyed = []
        for record in draw(st.lists(records(rel), max_size=12)):
            line = orjson.dumps(record)
            if draw(st.integers(0, 5)) == 0:
                # written by hand: spaces after separators, same record
                line = line.replace(b'","', b'", "').replace(b'":', b'": ')
            keyed.append((ts_key(record), line))
        for odd in draw(st.lists(st.sampled_from(ODD_LINES), max_size=2)):
            keyed.append((ts_key(orjson.loads(odd)), odd))
        # a file is in time order, files are not; now and then a file whose
        # clock went back (see #16)
        if draw(st.integers(0, 7)):
            keyed.sort(key=lambda item: item[0])
        lines = [line for _, line in keyed]
        for bad in draw(st.lists(st.sampled_from(MALFORMED), max_size=2)):
            lines.insert(draw(st.integers(0, len(lines))), bad)
        files[rel] = lines
    return files


@dataclass(frozen=True)
class Combo:
    """One set of ``show`` filters."""

    filters: Filters
    label: str


@st.composite
def combos(draw: st.DrawFn) -> Combo:
    """Random filters: steps, components, level, grep (+ ignore case), time window."""
    steps = draw(st.none() | st.frozensets(st.integers(1, 4), min_size=1, max_size=2))
    components = draw(
        st.none()
        | st.frozensets(
            st.sampled_from(
                [
                    "adapter",
                    "metrics",
                    "orchestrator",
                    "external",
                    "reconciliation",
                    "run",
                ]
            ),
            min_size=1,
            max_size=2,
        )
    )
    level = draw(st.sampled_from([0, 0, 0, 10, 20, 25, 30, 40, 50]))
    grep = draw(st.none() | st.sampled_from(PATTERNS))
    ignore_case = draw(st.booleans())
    pattern = re.compile(grep, re.IGNORECASE if ignore_case else 0) if grep else None
    since = draw(st.none() | st.sampled_from(TIMES))
    until = draw(st.none() | st.sampled_from(TIMES))
    filters = Filters(
        steps=steps,
        components=components,
        min_level=level,
        pattern=pattern,
        since=datetime.fromisoformat(since) if since else None,
        until=datetime.fromisoformat(until) if until else None,
    )
    label = (
        f"steps={steps} c={components} level={level} grep={grep!r} "
        f"i={ignore_case} since={since} until={until}"
    )
    return Combo(filters, label)


def reference(
    files: dict[str, list[bytes]], filters: Filters, *, by_file: bool = True
) -> tuple[list[tuple[Any, ...]], int, list[str]]:
    """Every line parsed with orjson, filtered, stable-sorted by timestamp."""
    per_file: list[list[tuple[str, str, int, dict[str, Any]]]] = []
    malformed: list[str] = []
    ordered = sorted(files, key=lambda rel: file_order(classify(rel)))  # type: ignore[arg-type]
    for rel in ordered:
        log_file = classify(rel)
        assert log_file is not None
        if by_file and not filters.wants_file(log_file):
            continue
        found_here = []
        for number, raw in enumerate(files[rel], start=1):
            try:
                record = orjson.loads(raw)
            except orjson.JSONDecodeError:
                record = None
            if not isinstance(record, dict):
                malformed.append(f"{rel}:{number}")
                continue
            if filters.matches(record):
                found_here.append((ts_key(record), rel, number, record))
        per_file.append(found_here)
    # files in time order merge as one stable sort by time; a file whose
    # clock went back merges as heapq.merge takes it (the order of show)
    found = list(heapq.merge(*per_file, key=lambda item: item[0]))
    return (
        [(ts, rel, n, rec) for ts, rel, n, rec in found],
        len(malformed),
        sorted(malformed),
    )


def observed(
    entries: list[Entry], report: ReadReport
) -> tuple[list[tuple[Any, ...]], int, list[str]]:
    """What read_records gave, in the reference's shape."""
    return (
        [(e.ts, e.source, e.line, e.record) for e in entries],
        report.malformed,
        sorted(report.where),
    )


def write_run(root: Path, files: dict[str, list[bytes]]) -> tuple[Path, Path, Path]:
    """The run directory with *files*, and its gz and zst archives beside it."""
    run_dir = root / "runs" / "fw" / "r1"
    logs = run_dir / "logs"
    for rel, lines in files.items():
        path = logs / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"".join(line + b"\n" for line in lines))
    archives = []
    for fmt in ("gz", "zst"):
        info = Archiver(run_dir).create_archive(format=fmt)
        kept = root / info.path.name
        shutil.move(info.path, kept)
        archives.append(kept)
    for sidecar in run_dir.glob("run.tar.*.sha256"):
        sidecar.unlink()
    return run_dir, archives[0], archives[1]


# shrinking a failing run takes minutes; DIFF_SHRINK=0 skips it while debugging
_PHASES = (
    list(Phase)
    if os.environ.get("DIFF_SHRINK", "1") == "1"
    else [Phase.explicit, Phase.reuse, Phase.generate]
)


class _Careful(Style):
    """No colour, through render_entry's careful path (an identity style)."""

    def __init__(self) -> None:
        super().__init__(True)

    def __call__(self, code: str, text: str) -> str:
        return text


@contextmanager
def facts_kept_at_once() -> Iterator[None]:
    """
    What a read learns of a file is kept even though it was just written
    (the files of a test are not written again), and nothing learnt
    about an earlier example's files is in memory.
    """
    _verdicts._LOADED.clear()
    # small groups of segments, so that the tiny files here make several
    with (
        mock.patch.object(_verdicts, "RACY_NS", 0),
        mock.patch.object(_verdicts, "_GROUP_BYTES", 300),
    ):
        yield
    _verdicts._LOADED.clear()


def check_run(files: dict[str, list[bytes]], batch: list[Combo]) -> None:
    """Each combo gives the reference's records for the dir and both archives.

    The directory is read twice: the first read of a file learns its facts
    (kept under runs/.runlog-cache/), later reads use them (see #16).
    """
    with tempfile.TemporaryDirectory() as tmp, facts_kept_at_once():
        run_dir, gz, zst = write_run(Path(tmp), files)
        for combo in batch:
            want = reference(files, combo.filters)
            for source in (
                RunSource(run_dir),
                RunSource(run_dir),
                RunSource(run_dir, gz),
                RunSource(run_dir, zst),
            ):
                report = ReadReport()
                entries = list(read_records(source, combo.filters, report))
                assert observed(entries, report) == want, (combo.label, source.label)
                check_output(source, combo, entries)
            for entry in entries:
                for where in (False, True):
                    assert render_entry(
                        entry, Style(False), source=where
                    ) == render_entry(entry, _Careful(), source=where), combo.label
            for where in (False, True):
                for line, entry in zip(
                    plain_lines(entries, where, "p/"), entries, strict=True
                ):
                    if line is not None:
                        assert line == render_entry(
                            entry, Style(False), source=where, prefix="p/"
                        ), combo.label


def printed(function: Any, *args: Any, **kwargs: Any) -> tuple[str, int]:
    """What *function* writes to stdout (not a terminal), and what it returns."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        count = function(*args, **kwargs)
    return out.getvalue(), count


def check_output(source: RunSource, combo: Combo, entries: list[Entry]) -> None:
    """
    show's printing of batches gives, byte for byte, the lines of each record
    rendered one at a time (plain, coloured, with -s, --json).
    """
    for style, as_json, where in (
        (Style(False), False, False),
        (Style(False), False, True),
        (Style(True), False, False),
        (Style(True), False, True),
        (Style(False), True, False),
    ):
        if as_json:
            want = "".join(orjson.dumps(e.record).decode() + "\n" for e in entries)
        else:
            want = "".join(
                render_entry(e, style, source=where, prefix="r/") + "\n"
                for e in entries
            )
        got = printed(
            print_batches,
            read_batches(source, combo.filters, ReadReport()),
            style,
            as_json=as_json,
            source=where,
            prefix="r/",
        )
        assert got == (want, len(entries)), (combo.label, style.enabled, as_json)


@settings(
    max_examples=int(os.environ.get("DIFF_EXAMPLES", "12")),
    phases=_PHASES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(files=runs(), batch=st.lists(combos(), min_size=25, max_size=25))
def test_fast_path_matches_reference_reader(
    files: dict[str, list[bytes]], batch: list[Combo]
) -> None:
    """Records, order, places, malformed counts: as the reference, dir and archives."""
    check_run(files, batch)


@pytest.mark.stress
@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(files=runs(), batch=st.lists(combos(), min_size=25, max_size=25))
def test_fast_path_matches_reference_reader_at_length(
    files: dict[str, list[bytes]], batch: list[Combo]
) -> None:
    """The same comparison on many more runs and filter combinations."""
    check_run(files, batch)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(files=runs(), combo=combos(), block=st.integers(16, 700))
def test_prefilter_over_small_blocks_matches_reference(
    files: dict[str, list[bytes]], combo: Combo, block: int
) -> None:
    """Read in blocks cutting lines anywhere, a file gives the reference's records."""
    filters = combo.filters
    prefilter = prefilter_for(filters)
    scan = prefilter.scan if prefilter is not None else None
    with tempfile.TemporaryDirectory() as tmp, facts_kept_at_once():
        logs = Path(tmp) / "runs" / "fw" / "r1" / "logs"
        logs.mkdir(parents=True)
        for number, (rel, lines) in enumerate(files.items()):
            # a file of its own each: one written again at once could keep
            # its size and ctime, which only RACY_NS guards against
            path = logs / f"f{number}.log"
            path.write_bytes(b"".join(line + b"\n" for line in lines))
            want = reference({rel: lines}, filters, by_file=False)
            for _ in range(2):  # learning the facts, then using them
                report = ReadReport()
                got = list(dir_entries(path, rel, filters, report, block, scan))
                assert observed(got, report) == want, combo.label


# values a record written by runlog holds after its own keys: mostly what
# plain_lines renders itself (strings, ints up to u64, floats of every size,
# exponents and -0.0 included), now and then any other JSON value
friendly_values = st.one_of(
    st.sampled_from(PLAIN_TEXTS),
    st.text(alphabet=st.characters(max_codepoint=127), max_size=4),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e16, 1e-7, 1.5e300, -0.0, 0.1, 1e15, 0.0001, 5e-324, 2.5]),
)
odd_values = st.one_of(
    st.sampled_from(TEXTS),
    st.text(max_size=4),
    st.booleans(),
    st.none(),
    st.lists(scalars, max_size=2),
    st.dictionaries(st.sampled_from(KEYS), scalars, max_size=2),
)
extra_keys = st.sampled_from(["model", "n", "done", "a{b}", "é", 'we"ird', "k=v"])


@st.composite
def written_records(draw: st.DrawFn) -> dict[str, Any]:
    """A record in runlog's key order, as a line of orjson reads back."""
    record: dict[str, Any] = {
        "ts": draw(st.sampled_from(TIMES) | st.sampled_from(ODD_TIMES)),
        # a level or component may be any JSON value, one that cannot be
        # hashed too
        "level": draw(st.sampled_from([*LEVELS, {"a": 1}, [1]])),
        "event": draw(texts),
        "logger": draw(st.sampled_from(["bench", "", "x"])),
        "component": draw(st.sampled_from([*COMPONENTS, {"a": 1}, ["x"]])),
        "run_id": "r1",
        "framework": "fw",
        "step": draw(st.sampled_from([None, 1, 7, 1000, True, 2.0, "3"])),
    }
    extras = draw(st.dictionaries(extra_keys, friendly_values, max_size=3))
    if draw(st.integers(0, 3)) == 0:
        extras.update(draw(st.dictionaries(st.sampled_from(KEYS), odd_values)))
    record.update({k: v for k, v in extras.items() if k not in record})
    loaded: dict[str, Any] = orjson.loads(orjson.dumps(record))
    return loaded


@settings(max_examples=400, deadline=None)
@given(st.lists(written_records(), min_size=1, max_size=8), st.booleans())
def test_batch_rendering_is_render_entry(
    records: list[dict[str, Any]], where: bool
) -> None:
    """Each line plain_lines makes is render_entry's line for that record."""
    entries = [
        Entry(ts_key(record), record, "step_001/adapter.log", n)
        for n, record in enumerate(records, start=1)
    ]
    # twice: the second time from what the first remembered
    for _ in range(2):
        lines = plain_lines(entries, where, "runs/x/logs/")
        for line, entry in zip(lines, entries, strict=True):
            if line is not None:
                assert line == render_entry(
                    entry, Style(False), source=where, prefix="runs/x/logs/"
                )
    event(f"lines made: {sum(line is not None for line in lines) > 0}")
