"""Summaries (and show, ls) of damaged logs never crash and say what they skipped."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runlog import cli
from runlog.summary import summarize_run
from tests.reliability._checks import REPO, add_figures

pytestmark = pytest.mark.reliability

TS = "2025-01-01T00:00:0{}.000000Z"


def record(step: int | None, event: str, **fields: object) -> bytes:
    """One well-formed record line."""
    base = {
        "ts": TS.format(step or 0),
        "level": "info",
        "event": event,
        "logger": "m",
        "component": "adapter",
        "run_id": "r1",
        "framework": "fw",
        "step": step,
    }
    return orjson.dumps({**base, **fields}) + b"\n"


# Records whose fields have the wrong types or absurd values: all are JSON
# objects, so they count as records, never as malformed lines.
ODD_RECORDS: list[dict[str, object] | bytes] = [
    {"ts": 5, "level": 7, "event": {"nested": True}, "step": "abc"},
    {"level": "ERROR", "event": None, "step": -3},
    {"event": "llm_request", "prompt_tokens": "many", "completion_tokens": -5},
    {"event": "llm_request", "prompt_tokens": 1e308, "total_tokens": 2**63 - 1},
    {"event": "llm_request", "tokens_prompt": [1], "tokens_completion": {"a": 1}},
    {"event": "step_start", "step": 1, "attempt": "first", "name": ["x"]},
    {"event": "step_end", "step": 1, "status": 5, "duration_s": "slow"},
    {"event": "step_end", "step": 1, "status": "success", "duration_s": 1e300},
    b'{"event": "step_end", "step": 1, "duration_s": -1, "attempt": 1'
    + b"0" * 40
    + b"}",
    {"event": "run_end", "status": None, "duration_s": [1]},
    {"event": "hitl", "level": "warning", "question": "\x1b[2J" * 50},
    {"level": "critical", "event": "x" * 5000, "error": "\n" * 500},
    b'{"event": "\\u202e\\ud800 escaped lone surrogate"}',
    {},
]

# Lines that are not records: each is one malformed line.
BAD_LINES = [
    b"not json",
    b'{"ts": "cut',
    b"[1, 2, 3]",
    b'"a string"',
    b"42",
    b"null",
    b'{"event": "bad utf-8 \xff\xfe"}',
    b"\x00" * 300,
    bytes(range(1, 10)) + bytes(range(11, 256)),
    b'{"a": 1}{"b": 2}',
]


def expected_malformed(data: bytes) -> int:
    """How many lines of *data* are not blank and not one JSON object."""
    count = 0
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            parsed = orjson.loads(line)
        except orjson.JSONDecodeError:
            count += 1
            continue
        count += not isinstance(parsed, dict)
    return count


def damaged_run(run_dir: Path) -> tuple[int, set[str]]:
    """
    A run dir with every kind of damage; returns the malformed-line count
    the summary must report and the files it must name as not read.
    """
    logs = run_dir / "logs"
    step1 = logs / "step_001"
    step1.mkdir(parents=True)
    (logs / "run.json").write_bytes(b'{"run_id": "r1", "status": "runn')
    files = {
        logs / "run.log": record(None, "run_start")
        + b"\n".join(BAD_LINES)
        + b"\n"
        + record(None, "after the bad lines"),
        step1 / "adapter.log": b"".join(
            (odd if isinstance(odd, bytes) else orjson.dumps(odd)) + b"\n"
            for odd in ODD_RECORDS
        )
        + b'{"ts": "2025-01-01T00:00:01.000000Z", "event": "cut off mid-li',
        step1 / "validator.log": os.urandom(20_000),
        step1 / "orchestrator.log": b"\x00" * 100_000,
        logs / "step_002" / "adapter.log": b"\n\n\r\n" + record(2, "after blanks"),
    }
    for path, data in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    malformed = sum(expected_malformed(data) for data in files.values())
    # not read: special files, a directory and symlinks (never followed)
    os.mkfifo(step1 / "fifo.log")
    (step1 / "directory.log").mkdir()
    (step1 / "zero.log").symlink_to("/dev/zero")
    (step1 / "passwd.log").symlink_to("/etc/passwd")
    (step1 / "loop.log").symlink_to(step1 / "loop.log")
    (logs / "step_003").symlink_to(logs / "step_003")
    (logs / "step_abc").mkdir()
    (logs / "step_99999999999999999999999").mkdir()
    (run_dir / "metadata.json").write_bytes(b"\xff{not json")
    (run_dir / "metrics.json").write_bytes(b"[1, 2")
    skipped = {"fifo.log", "directory.log", "zero.log", "passwd.log", "loop.log"}
    skipped.add("step_003")
    return malformed, skipped


def test_summary_of_a_damaged_run_reports_what_it_skipped(tmp_path: Path) -> None:
    """
    Every kind of damage at once: the summary is written, fits its limits,
    counts exactly the malformed lines, names the files it did not read, and
    is the same when made twice. Nothing blocks (FIFO) or reads forever.
    """
    run_dir = tmp_path / "runs" / "fw" / "r1"
    malformed, skipped = damaged_run(run_dir)
    path = summarize_run(run_dir)
    text = path.read_text(encoding="utf-8")
    assert len(text.encode()) <= 10 * 1024
    assert max(len(line) for line in text.splitlines()) <= 80
    assert f"== Malformed lines skipped ({malformed}) ==" in text
    for name in skipped:
        assert name in text, name
    assert "root:" not in text  # /etc/passwd was not read
    assert "\x1b" not in text and "\u202e" not in text
    assert summarize_run(run_dir).read_text(encoding="utf-8") == text
    add_figures("summary.damaged", runs=1, malformed=malformed, crashes=0)


def test_cli_reads_a_damaged_run_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """summarize, show, tail and ls all exit 0 on it and report skipped lines."""
    run_dir = tmp_path / "runs" / "fw" / "r1"
    damaged_run(run_dir)
    for argv in (
        ["summarize", str(run_dir)],
        ["show", str(run_dir), "--color", "never"],
        ["tail", str(run_dir), "--color", "never"],
        ["ls", str(tmp_path / "runs")],
    ):
        code = cli.main(argv)
        out, err = capsys.readouterr()
        assert code == 0, (argv, err)
        assert "Traceback" not in out + err
        if argv[0] in ("show", "tail"):
            assert re.search(r"skipped \d+ malformed line", err), err
            assert "\x1b" not in out  # the hitl question's escapes, escaped


def test_summarize_a_damaged_run_in_a_fresh_process_finishes(tmp_path: Path) -> None:
    """`runlog summarize` as a program: no hang on the FIFO or /dev/zero (60 s cap)."""
    run_dir = tmp_path / "runs" / "fw" / "r1"
    damaged_run(run_dir)
    result = subprocess.run(
        [sys.executable, "-m", "runlog", "summarize", str(run_dir)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (run_dir / "logs_summary.txt").is_file()


@given(
    garbage=st.lists(st.binary(max_size=200), min_size=1, max_size=8),
    positions=st.lists(st.integers(min_value=0, max_value=10_000), max_size=8),
)
@settings(max_examples=60, deadline=None)
def test_random_damage_is_counted_exactly(
    garbage: list[bytes], positions: list[int], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Random bytes spliced into a valid log: the summary counts what broke."""
    run_dir = tmp_path_factory.mktemp("damage") / "fw" / "r1"
    log = run_dir / "logs" / "step_001" / "adapter.log"
    log.parent.mkdir(parents=True)
    data = bytearray(b"".join(record(1, "ok", i=i) for i in range(40)))
    for piece, at in zip(garbage, positions + [len(data)] * len(garbage), strict=False):
        data[min(at, len(data)) : min(at, len(data))] = piece
    log.write_bytes(bytes(data))
    text = summarize_run(run_dir).read_text(encoding="utf-8")
    assert f"== Malformed lines skipped ({expected_malformed(bytes(data))}) ==" in text
    shutil.rmtree(run_dir.parent.parent)
