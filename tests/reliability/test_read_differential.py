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

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from runlog.archive import Archiver
from runlog.cli._render import Style, render_entry
from runlog.reading._merge import read_records
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
        keyed.sort(key=lambda item: item[0])  # a file is in time order; files are not
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
    found: list[tuple[str, str, int, dict[str, Any]]] = []
    malformed: list[str] = []
    ordered = sorted(files, key=lambda rel: file_order(classify(rel)))  # type: ignore[arg-type]
    for rel in ordered:
        log_file = classify(rel)
        assert log_file is not None
        if by_file and not filters.wants_file(log_file):
            continue
        for number, raw in enumerate(files[rel], start=1):
            try:
                record = orjson.loads(raw)
            except orjson.JSONDecodeError:
                record = None
            if not isinstance(record, dict):
                malformed.append(f"{rel}:{number}")
                continue
            if filters.matches(record):
                found.append((ts_key(record), rel, number, record))
    found.sort(key=lambda item: item[0])
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


def check_run(files: dict[str, list[bytes]], batch: list[Combo]) -> None:
    """Each combo gives the reference's records for the dir and both archives."""
    with tempfile.TemporaryDirectory() as tmp:
        run_dir, gz, zst = write_run(Path(tmp), files)
        for combo in batch:
            want = reference(files, combo.filters)
            for source in (
                RunSource(run_dir),
                RunSource(run_dir, gz),
                RunSource(run_dir, zst),
            ):
                report = ReadReport()
                entries = list(read_records(source, combo.filters, report))
                assert observed(entries, report) == want, (combo.label, source.label)
            for entry in entries:
                for where in (False, True):
                    assert render_entry(
                        entry, Style(False), source=where
                    ) == render_entry(entry, _Careful(), source=where), combo.label


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
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f.log"
        for rel, lines in files.items():
            path.write_bytes(b"".join(line + b"\n" for line in lines))
            want = reference({rel: lines}, filters, by_file=False)
            report = ReadReport()
            got = list(dir_entries(path, rel, filters, report, block, scan))
            assert observed(got, report) == want, combo.label
