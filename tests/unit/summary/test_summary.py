"""logs_summary.txt: content, determinism, limits, malformed input, freshness."""

from __future__ import annotations

import os
import random
import re
import socket
import subprocess
import sys
import tracemalloc
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
import pytest

from runlog import LogContext, get_logger
from runlog._text import format_duration, format_size, width_of
from runlog.errors import ConfigurationError, ContextError
from runlog.summary import (
    LogSummarizer,
    SummaryLimits,
    check_summary,
    summarize_run,
)

GOLDEN = Path(__file__).parent / "golden"
SHA_RE = re.compile(r"^\s*SHA-256:\s+([0-9a-f]{64})\s*$", re.MULTILINE)
T0 = "2025-10-20T14:00:00.000000Z"
T_END = "2025-10-20T14:07:17.500000Z"


def ts(second: int, micro: int = 0) -> str:
    """A record timestamp *second* seconds after 14:00:00 on the test day."""
    minutes, secs = divmod(second, 60)
    return f"2025-10-20T14:{minutes:02d}:{secs:02d}.{micro:06d}Z"


def rec(
    second: int,
    level: str,
    event: str,
    component: str,
    step: int | None,
    **extra: Any,
) -> dict[str, Any]:
    """One record in SPEC §2 key order."""
    return {
        "ts": ts(second),
        "level": level,
        "event": event,
        "logger": "tests",
        "component": component,
        "run_id": "r1",
        "framework": "fw",
        "step": step,
        **extra,
    }


def lines(records: Iterable[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in records)


def step_records(
    n: int, name: str | None, *ends: dict[str, Any]
) -> list[dict[str, Any]]:
    """step_start/step_end pairs for step *n*, one per entry in *ends*."""
    out = []
    for attempt, end in enumerate(ends, 1):
        second = end.pop("at", n * 60)
        out.append(
            rec(
                second,
                "info",
                "step_start",
                "orchestrator",
                n,
                name=name,
                attempt=attempt,
            )
        )
        level = "info" if end.get("status") == "success" else "error"
        out.append(
            rec(
                second + 1,
                level,
                "step_end",
                "orchestrator",
                n,
                name=name,
                attempt=attempt,
                **end,
            )
        )
    return out


def traceback_text(func: str, line: int, last: str) -> str:
    """A traceback through the standard library into user code (pipeline.py)."""
    return (
        "Traceback (most recent call last):\n"
        '  File "/usr/lib/python3.12/contextlib.py", line 81, in inner\n'
        "    return func(*args, **kwds)\n"
        f'  File "/home/ci/project/pipeline.py", line {line}, in {func}\n'
        "    raise error\n"
        '  File "/usr/lib/python3.12/json/decoder.py", line 353, in raw_decode\n'
        "    obj, end = self.scan_once(s, idx)\n"
        f"{last}\n"
    )


def full_run_files() -> dict[str, bytes]:
    """Relative path -> content of a finished run that failed in step 4."""
    llm = {"model": "gpt-4o"}
    return {
        "logs/run.json": orjson.dumps(
            {
                "run_id": "r1",
                "framework": "fw",
                "status": "failed",
                "started_at": T0,
                "ended_at": T_END,
                "duration_s": 437.5,
                "heartbeat_at": T_END,
                "heartbeat_interval_s": 30.0,
                "pid": 1,
                "host": "ci",
                "metadata": {"model": "gpt-4o", "dataset": "squad"},
            }
        ),
        "logs/run.log": lines(
            [
                rec(0, "info", "run_start", "orchestrator", None, pid=1),
                rec(
                    437,
                    "error",
                    "run_end",
                    "orchestrator",
                    None,
                    status="failed",
                    duration_s=437.5,
                    error_type="RuntimeError",
                    error="step 4 failed validation",
                ),
            ]
        ),
        "logs/reconciliation.log": lines(
            [
                rec(430, "warning", "totals differ", "reconciliation", None, diff=3),
            ]
        ),
        # combined.log repeats records as human text: it must never be parsed
        "logs/combined.log": b"2025-10-20T14:00:00Z info [adapter] step=1 api_call\n"
        b"not json at all\n",
        "logs/step_001/orchestrator.log": lines(
            step_records(1, "fetch data", {"status": "success", "duration_s": 154.2})
        ),
        "logs/step_001/adapter.log": lines(
            [
                rec(61, "info", "api_call", "adapter", 1, endpoint="/v1/items"),
                rec(62, "info", "api_call", "adapter", 1, endpoint="/v1/items"),
                rec(
                    63,
                    "info",
                    "llm_request",
                    "adapter",
                    1,
                    prompt_tokens=1200,
                    completion_tokens=300,
                    total_tokens=1500,
                    **llm,
                ),
                rec(64, "debug", "progress", "adapter", 1, done=0.5),
            ]
        ),
        "logs/step_001/metrics.log": lines(
            [
                rec(65, "info", "accuracy", "metrics", 1, value=0.91),
            ]
        ),
        "logs/step_002/orchestrator.log": lines(
            step_records(
                2,
                "call model",
                {
                    "status": "failed",
                    "duration_s": 30.0,
                    "error_type": "TimeoutError",
                    "error": "upstream timed out",
                    "traceback": traceback_text(
                        "call_model", 31, "TimeoutError: upstream timed out"
                    ),
                    "at": 120,
                },
                {"status": "success", "duration_s": 11.0, "at": 160},
            )
        ),
        "logs/step_002/adapter.log": lines(
            [
                rec(125, "warning", "slow response", "adapter", 2, latency_ms=4200),
                rec(
                    161,
                    "info",
                    "llm_request",
                    "adapter",
                    2,
                    tokens_prompt=800,
                    tokens_completion=150,
                    **llm,
                ),
            ]
        ),
        "logs/step_003/orchestrator.log": lines(
            [
                *step_records(
                    3, "human review", {"status": "success", "duration_s": 95.0}
                ),
                rec(
                    185,
                    "info",
                    "hitl",
                    "orchestrator",
                    3,
                    question="Deploy to prod?",
                    answer="yes",
                    reviewer="dana",
                ),
            ]
        ),
        "logs/step_003/validator.log": lines(
            [
                rec(186, "info", "api_call", "validator", 3, endpoint="/check"),
            ]
        ),
        "logs/step_004/orchestrator.log": lines(
            step_records(
                4,
                "validate",
                {
                    "status": "failed",
                    "duration_s": 2.5,
                    "error_type": "ValueError",
                    "error": "missing field 'answer'",
                    "traceback": traceback_text(
                        "check_answer", 14, "ValueError: missing field 'answer'"
                    ),
                },
            )
        ),
        "logs/step_004/validator.log": lines(
            [
                rec(
                    240,
                    "error",
                    "schema check failed",
                    "validator",
                    4,
                    exception='Traceback (most recent call last):\n  File "v.py"\n'
                    "KeyError: 'answer'\n",
                ),
                rec(240, "critical", "giving up", "validator", 4),
            ]
        ),
        "metadata.json": orjson.dumps({"git_commit": "0a1b2c3", "seed": 7}),
        "metrics.json": orjson.dumps({"accuracy": 0.91, "cost_usd": 1.25}),
    }


def build(
    run_dir: Path, files: dict[str, bytes], *, shuffle: int | None = None
) -> Path:
    """Write *files* under *run_dir* (in a shuffled order when *shuffle* is a seed)."""
    items = list(files.items())
    if shuffle is not None:
        random.Random(shuffle).shuffle(items)
    for index, (rel, data) in enumerate(items):
        path = run_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        if shuffle is not None:
            os.utime(path, (1_000_000 + index * 7919, 1_000_000 + index * 7919))
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    return run_dir


def summarizer(run_dir: Path, **limits: int) -> LogSummarizer:
    return LogSummarizer("r1", "fw", run_dir, limits=SummaryLimits(**limits))


def generate(run_dir: Path, **limits: int) -> str:
    return summarizer(run_dir, **limits).generate_summary()


def check_golden(name: str, text: str) -> None:
    """Compare with tests/unit/summary/golden/<name>; UPDATE_GOLDEN=1 rewrites it."""
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


def assert_limits(text: str, width: int = 80, max_bytes: int = 10_000) -> None:
    assert text.endswith("\n")
    assert len(text.encode()) <= max_bytes
    too_wide = [
        line
        for line in text.splitlines()
        if width_of(line) > width or len(line) > width
    ]
    assert too_wide == []


@pytest.fixture
def full_run(tmp_path: Path) -> Path:
    return build(tmp_path / "runs" / "fw" / "r1", full_run_files())


# -- content -----------------------------------------------------------------


def test_full_run_matches_golden_file(full_run: Path) -> None:
    """A finished run with every kind of step gives the reviewed golden summary."""
    from runlog.archive import Archiver

    info = Archiver(full_run).create_archive()
    path = summarize_run(full_run)
    text = path.read_text(encoding="utf-8")
    assert path == full_run / "logs_summary.txt"
    assert SHA_RE.findall(text) == [info.sha256]
    assert f"Size:    {info.size_bytes} bytes" in text
    assert f"Files:   {info.file_count}\n" in text
    normalized = re.sub(r"(?m)^SHA-256: [0-9a-f]{64}$", "SHA-256: <sha256>", text)
    normalized = re.sub(r"(?m)^Size: .*$", "Size:    <size>", normalized)
    check_golden("full_run.txt", normalized)
    assert_limits(text)


def crashed_run_files() -> dict[str, bytes]:
    """A run that died in step 2: stale heartbeat, cut-off lines, many errors."""
    errors = [
        rec(
            130 + i,
            "error",
            f"tool call {i} failed",
            "adapter",
            2,
            error_type="ToolError",
            error="exit status 2",
        )
        for i in range(30)
    ]
    warnings = [rec(125, "warning", f"retrying {i}", "adapter", 2) for i in range(12)]
    return {
        "logs/run.json": orjson.dumps(
            {
                "run_id": "r1",
                "framework": "fw",
                "status": "running",
                "started_at": T0,
                "ended_at": None,
                "duration_s": None,
                "heartbeat_at": ts(150),
                "heartbeat_interval_s": 30.0,
                "pid": 4242,
                "host": "ci-runner-7",
                "metadata": {"model": "claude-x", "prompt": 3},
            }
        ),
        "logs/run.log": lines([rec(0, "info", "run_start", "orchestrator", None)]),
        "logs/step_001/orchestrator.log": lines(
            step_records(1, "plan", {"status": "success", "duration_s": 59.9})
        ),
        "logs/step_001/adapter.log": lines(
            [
                rec(
                    61,
                    "info",
                    "llm_request",
                    "adapter",
                    1,
                    prompt_tokens=5000,
                    completion_tokens=700,
                    total_tokens=5700,
                ),
            ]
        ),
        "logs/step_002/orchestrator.log": lines(
            [
                rec(
                    120, "info", "step_start", "orchestrator", 2, name="act", attempt=1
                ),
            ]
        ),
        "logs/step_002/adapter.log": lines(warnings + errors)
        + b"\x89PNG\r\n\x1a\n binary\n"
        + b'{"ts": "2025-10-20T14:02:40.0',
    }


def test_crashed_run_matches_golden_file(tmp_path: Path) -> None:
    """A run whose heartbeat went stale mid-step gives the reviewed golden summary."""
    text = generate(build(tmp_path / "fw" / "r1", crashed_run_files()))
    check_golden("crashed_run.txt", text)
    assert_limits(text)


def test_header_puts_status_and_failed_step_first(full_run: Path) -> None:
    """The first lines give the final status, then the failed step and its error."""
    top = generate(full_run).splitlines()[:6]
    assert top == [
        "Status: FAILED",
        "Failed step 004 (validate): ValueError: missing field 'answer'",
        "  at pipeline.py:14 in check_answer",
        "  see logs/step_004/orchestrator.log:2",
        "  runlog show r1 --step 4 --level warning",
        "Run error: RuntimeError: step 4 failed validation",
    ]


def test_successful_run_with_a_handled_step_failure_says_so(tmp_path: Path) -> None:
    """A run that ends in success still names a step that failed in its header."""
    files = full_run_files()
    info = orjson.loads(files["logs/run.json"])
    info["status"] = "success"
    files["logs/run.json"] = orjson.dumps(info)
    files["logs/run.log"] = lines(
        [rec(437, "info", "run_end", "orchestrator", None, status="success")]
    )
    text = generate(build(tmp_path / "fw" / "r1", files))
    assert text.splitlines()[:2] == [
        "Status: SUCCESS",
        "Failed step 004 (validate): ValueError: missing field 'answer'",
    ]


def test_step_blocks_report_retries_tokens_and_zero_token_steps(
    full_run: Path,
) -> None:
    """Each step block opens with status, duration and retries; 0 tokens say so."""
    text = generate(full_run)
    assert "Step 001: SUCCESS (duration: 2m 34s, retries: 0)\n" in text
    assert "Step 002: SUCCESS (duration: 41.0s, retries: 1)\n" in text
    assert "  attempt 1: FAILED - TimeoutError: upstream timed out\n" in text
    assert "  tokens: prompt 800 | completion 150 | total 950\n" in text
    block3 = text.split("Step 003:")[1].split("Step 004:")[0]
    assert "  tokens: 0 (no LLM calls)\n" in block3
    assert "  API calls: 1 | LLM requests: 0 | HITL: 1\n" in block3
    assert "Step 004: FAILED (duration: 2.5s, retries: 0)\n" in text
    assert "Tokens:     prompt 2000 | completion 450 | total 2450\n" in text


def test_errors_and_warnings_point_at_file_and_line(full_run: Path) -> None:
    """Each listed error or warning names its file and line, oldest first."""
    text = generate(full_run)
    errors = text.split("Errors (5):\n")[1].split("Warnings")[0].splitlines()
    assert errors == [
        "  logs/step_002/orchestrator.log:2 (pipeline.py:31 in call_model)",
        "    step_end: TimeoutError: upstream timed out",
        "  logs/step_004/validator.log:1 schema check failed: KeyError: 'answer'",
        "  logs/step_004/validator.log:2 CRITICAL giving up",
        "  logs/step_004/orchestrator.log:2 (pipeline.py:14 in check_answer)",
        "    step_end: ValueError: missing field 'answer'",
        "  logs/run.log:2 run_end: RuntimeError: step 4 failed validation",
    ]
    assert "  logs/reconciliation.log:1 totals differ diff=3\n" in text


def test_combined_log_is_never_parsed(full_run: Path) -> None:
    """combined.log's human lines are neither counted nor reported as malformed."""
    text = generate(full_run)
    assert "== Malformed lines skipped (0) ==\nNone.\n" in text
    assert "combined" not in text


def test_hitl_and_metrics_json_are_listed(full_run: Path) -> None:
    """HITL records list their own fields; metrics.json and metadata.json appear."""
    text = generate(full_run)
    assert (
        "== HITL interactions (1) ==\n"
        "  logs/step_003/orchestrator.log:3 answer=yes question=Deploy to prod? "
        "review...\n"
    ) in text
    assert "  accuracy=0.91\n  cost_usd=1.25\n" in text
    assert "Model:      gpt-4o\n" in text
    assert "  dataset=squad\n  git_commit=0a1b2c3\n  seed=7\n" in text


def test_no_archive_says_none(full_run: Path) -> None:
    """Without run.tar.gz or run.tar.zst the archive section says None."""
    text = generate(full_run)
    assert "== Archive ==\nNone.\n" in text
    assert SHA_RE.search(text) is None


def test_archive_without_sidecar_is_reported_not_hashed(full_run: Path) -> None:
    """An archive whose sidecar is gone is named with the problem, and no hash."""
    from runlog.archive import Archiver

    info = Archiver(full_run).create_archive()
    Path(f"{info.path}.sha256").unlink()
    text = generate(full_run)
    section = text.split("== Archive ==\n")[1]
    assert section.startswith("File:    run.tar.gz\nProblem: ")
    assert SHA_RE.search(text) is None


# -- status ------------------------------------------------------------------


def test_run_without_run_end_is_incomplete(tmp_path: Path) -> None:
    """No run_end record: INCOMPLETE, even with a run.json that says running."""
    run_dir = tmp_path / "fw" / "r1"
    build(
        run_dir,
        {
            "logs/run.json": orjson.dumps(
                {
                    "run_id": "r1",
                    "framework": "fw",
                    "status": "running",
                    "started_at": T0,
                    "heartbeat_at": T0,
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "heartbeat_interval_s": 1e9,
                }
            ),
            "logs/run.log": lines([rec(0, "info", "run_start", "orchestrator", None)]),
            "logs/step_001/orchestrator.log": lines(
                [
                    rec(
                        1, "info", "step_start", "orchestrator", 1, name="a", attempt=1
                    ),
                ]
            ),
        },
    )
    text = generate(run_dir)
    assert text.startswith(
        "Status: INCOMPLETE\n"
        "Incomplete: no run_end; last heartbeat 14:00:00Z, 1.0s before the last"
        " record\n"
        "Last record: 14:00:01Z step 001 orchestrator: step_start\n"
        "Incomplete step 001 (a)\n"
    )
    assert "Step 001: INCOMPLETE (duration: -, retries: 0)\n" in text
    assert "Completed:  -\n" in text


def test_run_whose_process_died_is_crashed(tmp_path: Path) -> None:
    """run.json says running but its process is gone: CRASHED."""
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    run_dir = tmp_path / "fw" / "r1"
    build(
        run_dir,
        {
            "logs/run.json": orjson.dumps(
                {
                    "run_id": "r1",
                    "framework": "fw",
                    "status": "running",
                    "started_at": T0,
                    "heartbeat_at": T0,
                    "pid": int(child.stdout),
                    "host": socket.gethostname(),
                    "heartbeat_interval_s": 30.0,
                }
            ),
        },
    )
    text = generate(run_dir)
    assert text.startswith(
        "Status: CRASHED\nCrashed: no run_end; last heartbeat 14:00:00Z\n"
    )
    assert "Heartbeat:  2025-10-20T14:00:00Z\n" in text


def test_run_with_only_a_logs_directory_is_incomplete(tmp_path: Path) -> None:
    """A bare logs/ directory (no run.json, no records) still gets a summary."""
    run_dir = build(tmp_path / "fw" / "r1", {})
    text = generate(run_dir)
    assert text.startswith(
        "Status: INCOMPLETE\nIncomplete: no run_end; no heartbeat recorded\nSteps: 0\n"
    )
    assert "== Steps (0) ==\nNo steps.\n" in text
    assert_limits(text)


def test_run_end_gives_status_when_run_json_is_missing(tmp_path: Path) -> None:
    """Without run.json, run_end's status and times are used."""
    run_dir = build(
        tmp_path / "fw" / "r1",
        {
            "logs/run.log": lines(
                [
                    rec(0, "info", "run_start", "orchestrator", None),
                    rec(
                        75,
                        "warning",
                        "run_end",
                        "orchestrator",
                        None,
                        status="interrupted",
                        duration_s=75.0,
                        reason="received SIGTERM",
                    ),
                ]
            ),
        },
    )
    text = generate(run_dir)
    assert text.startswith("Status: INTERRUPTED\nReason: received SIGTERM\n")
    assert "Started:    2025-10-20T14:00:00Z\n" in text
    assert "Completed:  2025-10-20T14:01:15Z\n" in text
    assert "Duration:   1m 15s\n" in text


def act(context: LogContext, log: Any) -> None:
    """Step 2: a warning, then a KeyError that fails the step."""
    with context.step_scope(2, "act"):
        log.warning("odd")
        raise KeyError("x")


def test_summary_of_records_written_by_runlog_itself(tmp_path: Path) -> None:
    """Records from get_logger and step_scope are counted as the conventions say."""
    logs = tmp_path / "runs" / "fw" / "r1" / "logs"
    context = LogContext.get_instance()
    context.set_run_context("r1", "fw", logs)
    log = get_logger("m", component="adapter")
    with context.step_scope(1, "plan"):
        log.info("api_call")
        log.info("llm_request", prompt_tokens=10, completion_tokens=5)
    with pytest.raises(KeyError):
        act(context, log)
    context.clear_run_context()
    text = summarize_run(logs.parent).read_text()
    assert re.search(r"Step 001: SUCCESS \(duration: \d+ms, retries: 0\)\n", text)
    assert "\n  name: plan\n" in text
    assert "  tokens: prompt 10 | completion 5 | total 15\n" in text
    assert "Failed step 002 (act): KeyError: 'x'\n" in text
    assert "  logs/step_002/orchestrator.log:2 (test_summary.py:" in text
    assert "in act)\n    step_end: KeyError: 'x'\n" in text
    assert "Records:    7 in 4 files\n" in text
    assert "Levels:     debug 0, info 5, warning 1, error 1, critical 0\n" in text


# -- determinism -------------------------------------------------------------


def test_regenerating_gives_identical_bytes(full_run: Path) -> None:
    """Generating twice gives the same text; the written file matches it."""
    first = generate(full_run)
    path = summarize_run(full_run)
    assert path.read_bytes() == first.encode()
    assert generate(full_run) == first
    assert sorted(p.name for p in full_run.iterdir()) == [
        "logs",
        "logs_summary.txt",
        "metadata.json",
        "metrics.json",
    ]


def test_file_creation_order_and_mtimes_do_not_matter(tmp_path: Path) -> None:
    """Two copies written in different orders with different mtimes summarize alike."""
    files = full_run_files()
    texts = {
        generate(build(tmp_path / str(seed) / "fw" / "r1", files, shuffle=seed))
        for seed in (1, 2, 3)
    }
    assert len(texts) == 1


def test_no_clock_time_in_summary(full_run: Path) -> None:
    """The only times in the summary are the run's own (no generation time)."""
    text = generate(full_run)
    years = set(re.findall(r"\b(20\d\d)-\d\d-\d\d", text))
    assert years == {"2025"}


# -- limits ------------------------------------------------------------------


def many_errors_run(run_dir: Path, count: int) -> Path:
    records = [
        rec(
            i % 3000,
            "error",
            f"request {i} failed " + "x" * 120,
            "adapter",
            1,
            error_type="HTTPError",
            error="503 Service Unavailable",
        )
        for i in range(count)
    ]
    return build(run_dir, {"logs/step_001/adapter.log": lines(records)})


def test_ten_thousand_errors_fit_in_80_columns_and_10_kb(tmp_path: Path) -> None:
    """10,000 long errors: every line <= 80 columns, <= 10 KB, list ends with more."""
    text = generate(many_errors_run(tmp_path / "fw" / "r1", 10_000))
    assert_limits(text)
    assert "Errors: 10000 | warnings: 0 | malformed lines: 0\n" in text
    listed = re.findall(r"(?m)^  logs/step_001/adapter\.log:\d+\n    request", text)
    assert len(listed) == 20
    assert "  ... and 9980 more: runlog show r1 --level error\n" in text
    assert "  logs/step_001/adapter.log:1\n    request 0 failed\n    xxx" in text


def test_custom_limits_are_respected(tmp_path: Path) -> None:
    """A wider, smaller summary: every line <= width, total <= max_bytes."""
    run_dir = many_errors_run(tmp_path / "fw" / "r1", 500)
    text = generate(run_dir, width=100, max_bytes=2048, max_errors=50)
    assert_limits(text, width=100, max_bytes=2048)
    assert re.search(
        r"(?m)^  \.\.\. and (\d+) more: runlog show r1 --level error$", text
    )
    assert len(max(text.splitlines(), key=len)) == 100


@pytest.mark.parametrize(
    ("name", "value"),
    [("width", 72), ("max_bytes", 100), ("max_errors", -1), ("max_hitl", "3")],
)
def test_bad_limits_are_refused(name: str, value: object) -> None:
    """A limit out of range raises ConfigurationError naming the value."""
    with pytest.raises(ConfigurationError, match=re.escape(f"{name} {value!r}")):
        SummaryLimits(**{name: value})  # type: ignore[arg-type]


def test_many_steps_are_cut_but_failed_ones_stay(tmp_path: Path) -> None:
    """300 steps do not fit: failed and retried steps stay, the rest are counted."""
    files: dict[str, bytes] = {}
    for n in range(1, 301):
        status = "failed" if n == 250 else "success"
        ends = [{"status": status, "duration_s": 1.0, "at": n}]
        if n == 7:
            ends.insert(0, {"status": "failed", "duration_s": 1.0, "at": n})
        files[f"logs/step_{n:03d}/orchestrator.log"] = lines(
            step_records(n, f"s{n}", *ends)
        )
    text = generate(build(tmp_path / "fw" / "r1", files))
    assert_limits(text)
    assert "Step 250: FAILED" in text
    assert "Step 007: SUCCESS (duration: 2.0s, retries: 1)" in text
    shown = re.findall(r"(?m)^Step (\d+):", text)
    assert shown == sorted(shown)
    more = re.search(r"(?m)^\.\.\. and (\d+) more steps \((\d+) success\)$", text)
    assert more is not None
    assert int(more.group(1)) == int(more.group(2)) == 300 - len(shown)


def test_many_failed_steps_are_listed_on_one_line(tmp_path: Path) -> None:
    """The header lists failed step numbers on one line, ending '... and N more'."""
    files = {
        f"logs/step_{n:03d}/orchestrator.log": lines(
            step_records(n, None, {"status": "failed", "error": "boom"})
        )
        for n in range(1, 41)
    }
    lines_ = generate(build(tmp_path / "fw" / "r1", files)).splitlines()
    assert lines_[3:5] == [
        "Failed step 001: boom",
        "  see logs/step_001/orchestrator.log:2",
    ]
    listed = lines_[6]
    assert listed.startswith("Failed or incomplete steps (40): 001, 002, 003, ")
    more = re.search(r", \.\.\. and (\d+) more$", listed)
    assert more is not None
    assert listed.count(", ") + int(more.group(1)) == 40  # one ", " per number shown
    assert len(listed) <= 80


def test_long_and_wide_values_are_cut_to_80_columns(tmp_path: Path) -> None:
    """Long names, wide characters and combining marks are cut to fit, with '...'."""
    run_dir = build(
        tmp_path / "fw" / "r1",
        {
            "logs/run.json": orjson.dumps(
                {
                    "metadata": {
                        "model": "m" * 200,
                        "note": "\u5b9f\u9a13" * 60,
                        "tags": list(range(80)),
                        "zalgo": "e\u0301\u0302\u0303" * 50,
                    }
                }
            ),
            "logs/step_001/orchestrator.log": lines(
                step_records(1, "n" * 300, {"status": "success", "duration_s": 1})
            ),
        },
    )
    text = generate(run_dir)
    assert_limits(text)
    assert re.search(r"(?m)^Model:      m+\.\.\.$", text)
    assert re.search(r"(?m)^  note=(\u5b9f\u9a13)+\u5b9f?\.\.\.$", text)


def test_control_and_bidi_characters_are_escaped(tmp_path: Path) -> None:
    """Terminal escapes, newlines and bidi overrides never reach the summary raw."""
    run_dir = build(
        tmp_path / "fw" / "r1",
        {
            "logs/step_001/adapter.log": lines(
                [
                    rec(
                        1,
                        "error",
                        "red \x1b[31malert\nsecond line \u202egnp.exe",
                        "adapter",
                        1,
                    ),
                ]
            ),
        },
    )
    text = generate(run_dir)
    assert (
        "  logs/step_001/adapter.log:1\n"
        "    red \\x1b[31malert\n"
        "    second line \\u202egnp.exe\n"
    ) in text
    assert all(ch == "\n" or ch.isprintable() for ch in text)


# -- malformed input ---------------------------------------------------------


GOOD = lines(
    [rec(1, "info", "api_call", "adapter", 1), rec(2, "warning", "slow", "adapter", 1)]
)


@pytest.mark.parametrize(
    ("content", "malformed", "where", "records"),
    [
        pytest.param(
            GOOD + b'{"ts": "2025-10',
            1,
            "(3); last line cut off",
            2,
            id="truncated-last-line",
        ),
        pytest.param(
            GOOD + bytes(range(11, 256)) * 3 + b"\n" + GOOD,
            1,
            "(3)",
            4,
            id="binary-garbage",
        ),
        pytest.param(
            GOOD + b'[1, 2]\n"text"\n42\nnull\n',
            4,
            "(3, 4, 5, 6)",
            2,
            id="non-object-json",
        ),
        pytest.param(b'{"event": "caf\xe9"}\n' + GOOD, 1, "(1)", 2, id="invalid-utf8"),
        pytest.param(GOOD + b"\x00\x00\x00\n" + GOOD, 1, "(3)", 4, id="nul-bytes"),
        pytest.param(GOOD.replace(b"\n", b"\r\n"), 0, None, 2, id="crlf-endings"),
        pytest.param(b"\n\n" + GOOD + b"   \n", 0, None, 2, id="blank-lines"),
        pytest.param(b"", 0, None, 0, id="empty-file"),
        pytest.param(
            b'{"a":' + b"1" * 5000 + b"}\n" + GOOD, 1, "(1)", 2, id="line-over-limit"
        ),
        pytest.param(
            GOOD + b'{"a":"' + b"z" * 5000,
            1,
            "(3); last line cut off",
            2,
            id="endless-last-line",
        ),
    ],
)
def test_malformed_lines_are_counted_and_located(
    tmp_path: Path, content: bytes, malformed: int, where: str | None, records: int
) -> None:
    """Bad lines are skipped and reported by file and line; good lines still count."""
    run_dir = build(tmp_path / "fw" / "r1", {"logs/step_001/adapter.log": content})
    text = generate(run_dir, max_line_bytes=1024)
    assert_limits(text)
    assert f"== Malformed lines skipped ({malformed}) ==\n" in text
    if where is not None:
        noun = "line" if malformed == 1 else "lines"
        assert f"  logs/step_001/adapter.log: {malformed} {noun} {where}\n" in text
    assert f"Records:    {records} in 1 file\n" in text


def test_many_malformed_lines_list_first_line_numbers(tmp_path: Path) -> None:
    """A file of garbage shows its count and first five line numbers."""
    run_dir = build(
        tmp_path / "fw" / "r1",
        {
            "logs/step_002/adapter.log": b"garbage\n" * 1000,
        },
    )
    text = generate(run_dir)
    assert "  logs/step_002/adapter.log: 1000 lines (1, 2, 3, 4, 5, ...)\n" in text


def test_records_with_missing_keys_and_wrong_types_are_tolerated(
    tmp_path: Path,
) -> None:
    """Records without level/event/ts or with odd types count but never crash."""
    odd: list[dict[str, Any]] = [
        {},
        {"level": ["error"], "event": {"nested": True}},
        {"level": "ERROR", "event": ["api_call"], "prompt_tokens": "12"},
        {"level": 40, "event": None, "total_tokens": True},
        {
            "event": "llm_request",
            "prompt_tokens": 3.0,
            "tokens_completion": 2,
            "total_tokens": -5,
        },
        {
            "event": "step_end",
            "component": "orchestrator",
            "attempt": "two",
            "status": 7,
            "duration_s": "long",
        },
        {"event": "step_start", "component": "adapter"},
        {"event": "hitl"},
        {"level": "warning", "event": "w", "ts": 12345},
    ]
    run_dir = build(tmp_path / "fw" / "r1", {"logs/step_001/x.log": lines(odd)})
    text = generate(run_dir)
    assert_limits(text)
    assert "Records:    9 in 1 file\n" in text
    assert (
        "Levels:     debug 0, info 0, warning 1, error 1, critical 0, other 7\n" in text
    )
    assert "  tokens: prompt 3 | completion 2 | total 5\n" in text
    assert "Step 001: UNKNOWN (duration: -, retries: 0)\n" in text
    assert "  logs/step_001/x.log:8 (no details)\n" in text
    assert '  logs/step_001/x.log:3 ["api_call"]\n' in text


def test_empty_step_directories_are_listed(tmp_path: Path) -> None:
    """A step directory with no files is a step with no records."""
    run_dir = build(tmp_path / "fw" / "r1", {})
    (run_dir / "logs" / "step_005").mkdir()
    (run_dir / "logs" / "step_1234").mkdir()
    text = generate(run_dir)
    assert "Step 005: UNKNOWN (duration: -, retries: 0)\n" in text
    assert "Step 1234: UNKNOWN" in text
    assert text.index("Step 005") < text.index("Step 1234")


def test_files_that_are_not_regular_are_not_read(tmp_path: Path) -> None:
    """A symlinked log, a FIFO and a symlinked step dir are named, not followed."""
    outside = tmp_path / "outside.log"
    outside.write_bytes(GOOD)
    run_dir = build(tmp_path / "fw" / "r1", {"logs/step_001/adapter.log": GOOD})
    logs = run_dir / "logs"
    (logs / "step_001" / "link.log").symlink_to(outside)
    os.mkfifo(logs / "step_001" / "pipe.log")
    (logs / "step_002").symlink_to(logs / "step_001")
    text = generate(run_dir)
    assert "  logs/step_001/link.log: not read, a symlink, not followed\n" in text
    assert "  logs/step_001/pipe.log: not read, not a regular file\n" in text
    assert "  logs/step_002: not read, a symlink, not followed\n" in text
    assert "Records:    2 in 1 file\n" in text
    assert "Step 002" not in text


def test_broken_metadata_and_metrics_files_are_noted(tmp_path: Path) -> None:
    """An invalid metadata.json or a non-object metrics.json is a note, not a crash."""
    run_dir = build(
        tmp_path / "fw" / "r1",
        {
            "metadata.json": b"{not json",
            "metrics.json": b"[1, 2, 3]",
        },
    )
    text = generate(run_dir)
    assert "Note: metadata.json ignored: not valid JSON\n" in text
    assert "Note: metrics.json ignored: not a JSON object\n" in text


def test_unreadable_or_linked_side_files_are_noted(tmp_path: Path) -> None:
    """A run.json that cannot be read, a linked or huge metadata file: notes only."""
    secret = tmp_path / "secret.json"
    secret.write_bytes(b'{"token": "hunter2"}')
    run_dir = build(tmp_path / "fw" / "r1", {"metrics.json": b" " * (2 << 20)})
    (run_dir / "logs" / "run.json").symlink_to("run.json")  # a loop: ELOOP
    (run_dir / "metadata.json").symlink_to(secret)
    text = summarize_run(run_dir).read_text()
    assert "Note: run.json unreadable: Too many levels of symbolic links\n" in text
    assert "Note: metadata.json ignored: a symlink, not followed\n" in text
    assert "Note: metrics.json ignored: larger than 1 MiB\n" in text
    assert "hunter2" not in text


def test_fifo_metadata_file_is_not_read(tmp_path: Path) -> None:
    """A FIFO named metrics.json is skipped at once instead of blocking."""
    run_dir = build(tmp_path / "fw" / "r1", {})
    os.mkfifo(run_dir / "metrics.json")
    assert "Note: metrics.json ignored: not a regular file\n" in generate(run_dir)


def test_tiny_limit_with_a_huge_header_cuts_whole_lines(tmp_path: Path) -> None:
    """When even empty lists do not fit, whole lines are dropped and counted."""
    files = full_run_files()
    files["logs/step_004/orchestrator.log"] = lines(
        step_records(4, "v" * 3000, {"status": "failed", "error": "e" * 3000})
    )
    text = generate(build(tmp_path / "fw" / "r1", files), width=5000, max_bytes=2048)
    assert len(text.encode()) <= 2048
    assert text.startswith("Status: FAILED\n")
    assert re.search(r"\n\.\.\. and \d+ more lines\n$", text)


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (None, "-"),
        (float("nan"), "-"),
        (-1.0, "-"),
        (0.0004, "0ms"),
        (0.0005, "1ms"),
        (0.180742, "181ms"),
        (0.9995, "1.0s"),
        (0.25 + 1, "1.3s"),
        (59.94, "59.9s"),
        (59.95, "1m 00s"),
        (60, "1m 00s"),
        (154.5, "2m 35s"),
        (3725.4, "1h 02m 05s"),
        (90061, "25h 01m 01s"),
    ],
)
def test_durations_are_formatted_for_people(seconds: float | None, shown: str) -> None:
    """Durations read 181ms, 41.3s, 2m 34s or 1h 02m 05s, rounded half up."""
    assert format_duration(seconds) == shown


@pytest.mark.parametrize(
    ("size", "shown"),
    [
        (0, "0 bytes"),
        (1023, "1023 bytes"),
        (2048, "2048 bytes (2.0 KiB)"),
        (5 << 30, "5368709120 bytes (5.0 GiB)"),
    ],
)
def test_sizes_are_exact_bytes_plus_a_readable_unit(size: int, shown: str) -> None:
    """Archive sizes give the exact byte count and a binary unit."""
    assert format_size(size) == shown


# -- streaming ---------------------------------------------------------------


def big_run(run_dir: Path, mb: int) -> Path:
    """About *mb* MB of records in 4 steps, with errors and tokens."""
    block = lines(
        [
            rec(
                1,
                "info",
                "llm_request",
                "adapter",
                1,
                prompt_tokens=10,
                completion_tokens=2,
                total_tokens=12,
                note="y" * 100,
            ),
            rec(2, "error", "failed", "adapter", 1, error_type="E", error="boom"),
            rec(3, "debug", "progress", "adapter", 1, done=0.5),
        ]
    )
    per_step = (mb << 20) // 4 // len(block) + 1
    for n in range(1, 5):
        path = run_dir / "logs" / f"step_{n:03d}" / "adapter.log"
        path.parent.mkdir(parents=True)
        with path.open("wb") as out:
            for _ in range(per_step):
                out.write(block)
    return run_dir


def peak_bytes(run_dir: Path) -> int:
    tracemalloc.start()
    try:
        generate(run_dir)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_log_size(tmp_path: Path) -> None:
    """Peak memory summarizing 16 MB of logs is about that of 2 MB."""
    small = peak_bytes(big_run(tmp_path / "s" / "fw" / "r1", 2))
    large = peak_bytes(big_run(tmp_path / "l" / "fw" / "r1", 16))
    assert large < small + (1 << 20)
    assert large < 8 << 20


# -- writing and checking ----------------------------------------------------


def test_summarize_run_takes_names_from_run_json_or_directories(
    tmp_path: Path,
) -> None:
    """Names come from run.json, else from <framework>/<run_id> directory names."""
    named = build(
        tmp_path / "a" / "b",
        {
            "logs/run.json": orjson.dumps({"run_id": "r9", "framework": "fw9"}),
        },
    )
    assert "Run ID:     r9\nFramework:  fw9\n" in summarize_run(named).read_text()
    bare = build(tmp_path / "fw2" / "r2", {})
    assert "Run ID:     r2\nFramework:  fw2\n" in summarize_run(bare).read_text()


def test_summarize_run_without_logs_directory_is_an_error(tmp_path: Path) -> None:
    """A directory with no logs/ raises ContextError naming it; nothing is written."""
    run_dir = tmp_path / "fw" / "r1"
    run_dir.mkdir(parents=True)
    with pytest.raises(ContextError, match="no logs/ directory"):
        summarize_run(run_dir)
    assert list(run_dir.iterdir()) == []


def test_bad_names_are_refused(tmp_path: Path) -> None:
    """LogSummarizer checks run_id and framework like every other entry point."""
    with pytest.raises(ContextError, match=r"run_id '\.\./x'"):
        LogSummarizer("../x", "fw", tmp_path)


def test_check_summary_is_none_when_fresh(full_run: Path) -> None:
    """A summary just written is current: check_summary returns None."""
    summarize_run(full_run)
    assert check_summary(full_run) is None


def test_check_summary_diffs_a_stale_summary_and_writes_nothing(
    full_run: Path,
) -> None:
    """After a new error record the check returns a unified diff; files unchanged."""
    path = summarize_run(full_run)
    before = path.read_bytes()
    with (full_run / "logs" / "step_001" / "adapter.log").open("ab") as out:
        out.write(lines([rec(70, "error", "late failure", "adapter", 1)]))
    diff = check_summary(full_run)
    assert diff is not None
    assert diff.startswith(
        "--- logs_summary.txt (committed)\n+++ logs_summary.txt (regenerated)\n"
    )
    assert "+  logs/step_001/adapter.log:5 late failure\n" in diff
    assert "-Errors: 5 | warnings: 2 | malformed lines: 0\n" in diff
    assert path.read_bytes() == before


def test_check_summary_reports_a_missing_summary(full_run: Path) -> None:
    """No logs_summary.txt yet: the diff adds every line."""
    diff = check_summary(full_run)
    assert diff is not None
    assert diff.startswith("--- logs_summary.txt (missing)\n")
    assert "+Status: FAILED\n" in diff
    assert not (full_run / "logs_summary.txt").exists()


def test_check_summary_diff_is_short(tmp_path: Path) -> None:
    """A large change gives at most max_diff_lines lines plus one 'more' line."""
    run_dir = many_errors_run(tmp_path / "fw" / "r1", 50)
    diff = check_summary(run_dir, max_diff_lines=10)
    assert diff is not None
    assert len(diff.splitlines()) == 11
    assert re.search(r"\.\.\. and \d+ more diff lines\n$", diff)


def test_write_summary_replaces_atomically(full_run: Path) -> None:
    """write_summary replaces the file whole and leaves no temp file behind."""
    writer = summarizer(full_run)
    (full_run / "logs_summary.txt").write_text("old\n")
    path = writer.write_summary("new\n")
    assert path.read_text() == "new\n"
    assert sorted(p.name for p in full_run.iterdir() if p.name.startswith(".")) == []


def test_cli_summarize_check_exit_codes(full_run: Path, capsys: Any) -> None:
    """`runlog summarize RUN --check`: 1 with a diff when stale, 0 once rewritten."""
    from runlog import cli

    assert cli.main(["summarize", str(full_run), "--check"]) == 1
    assert "+Status: FAILED" in capsys.readouterr().out
    assert not (full_run / "logs_summary.txt").exists()
    assert cli.main(["summarize", str(full_run)]) == 0
    assert (full_run / "logs_summary.txt").read_text().startswith("Status: FAILED\n")
    assert cli.main(["summarize", str(full_run), "--check"]) == 0


def _neutral(text: str) -> str:
    """*text* with run ids, times, durations, sizes and hashes made neutral."""
    for pattern, token in (
        (r"\b\d{8}T\d{6}Z-[0-9a-f]{6}\b", "<run_id>"),
        (r"\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "<time>"),
        (r"\b\d+ms\b|\b\d+\.\ds\b", "<duration>"),
        (r"(?m)^Size: .*$", "Size:    <size>"),
        (r"(?m)^SHA-256: [0-9a-f]{64}$", "SHA-256: <sha256>"),
    ):
        text = re.sub(pattern, token, text)
    return text


def test_docs_examples_are_a_demo_run_and_the_golden_files(tmp_path: Path) -> None:
    """docs/SUMMARY.md shows what `runlog demo` writes today, and the goldens."""
    doc = (GOLDEN.parents[3] / "docs" / "SUMMARY.md").read_text(encoding="utf-8")
    blocks = re.findall(r"(?ms)^```text\n(.*?)^```\n", doc)
    demo = subprocess.run(
        [sys.executable, "-m", "runlog", "demo", "--runs-dir", str(tmp_path)],
        capture_output=True,
        check=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("RUNLOG_")},
    )
    assert demo.returncode == 0
    (summary,) = tmp_path.glob("demo/*/logs_summary.txt")
    assert _neutral(blocks[0]) == _neutral(summary.read_text(encoding="utf-8"))
    failed = (GOLDEN / "full_run.txt").read_text(encoding="utf-8")
    assert failed.startswith(blocks[1])
    crashed = (GOLDEN / "crashed_run.txt").read_text(encoding="utf-8")
    assert crashed.startswith(blocks[2])
    markdown = re.findall(r"(?ms)^````markdown\n(.*?)^````\n", doc)
    assert markdown == [(GOLDEN / "full_run.md").read_text(encoding="utf-8")]
