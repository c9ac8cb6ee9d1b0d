"""The summary's first screen: the failure, where it was raised, what to run next."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from runlog import start_run
from runlog.summary import LogSummarizer, SummaryLimits, SummarySection, summarize_run
from runlog.summary._wrap import wrap

from .test_summary import (
    T0,
    assert_limits,
    build,
    check_golden,
    full_run_files,
    generate,
    lines,
    rec,
    step_records,
    traceback_text,
    ts,
)


def run_json(status: str, **extra: Any) -> bytes:
    """logs/run.json of run r1 of fw, started at T0."""
    return orjson.dumps(
        {
            "run_id": "r1",
            "framework": "fw",
            "status": status,
            "started_at": T0,
            "heartbeat_interval_s": 30.0,
            "pid": 1,
            "host": "ci",
            "metadata": {"model": "gpt-4o"},
            **extra,
        }
    )


def finished(status: str, seconds: float) -> dict[str, Any]:
    """run.json fields of a run that ended *seconds* after T0."""
    return {
        "ended_at": ts(int(seconds), int(seconds % 1 * 1e6)),
        "heartbeat_at": ts(int(seconds)),
        "duration_s": seconds,
    }


def retried_run_files() -> dict[str, bytes]:
    """A successful run whose step 2 timed out twice before it went through."""
    timeout = {
        "status": "failed",
        "duration_s": 30.0,
        "error_type": "TimeoutError",
        "error": "upstream timed out after 30s",
        "traceback": traceback_text(
            "call_model", 31, "TimeoutError: upstream timed out after 30s"
        ),
    }
    return {
        "logs/run.json": run_json("success", **finished("success", 185.25)),
        "logs/run.log": lines(
            [
                rec(0, "info", "run_start", "orchestrator", None),
                rec(
                    90, "warning", "retrying_step", "orchestrator", None, next_attempt=2
                ),
                rec(
                    185,
                    "info",
                    "run_end",
                    "orchestrator",
                    None,
                    status="success",
                    duration_s=185.25,
                ),
            ]
        ),
        "logs/step_001/orchestrator.log": lines(
            step_records(1, "plan", {"status": "success", "duration_s": 0.180742})
        ),
        "logs/step_002/orchestrator.log": lines(
            step_records(
                2,
                "call model",
                {**timeout, "at": 60},
                {**timeout, "at": 100},
                {"status": "success", "duration_s": 12.5, "at": 140},
            )
        ),
        "logs/step_002/adapter.log": lines(
            [
                rec(
                    141,
                    "info",
                    "llm_request",
                    "adapter",
                    2,
                    prompt_tokens=800,
                    completion_tokens=150,
                    total_tokens=950,
                ),
                rec(142, "warning", "memory_high", "adapter", 2, rss_mb=30000),
            ]
        ),
    }


def successful_run_files() -> dict[str, bytes]:
    """A clean run: two steps, tokens, no warnings or errors."""
    return {
        "logs/run.json": run_json("success", **finished("success", 75.5)),
        "logs/run.log": lines(
            [
                rec(0, "info", "run_start", "orchestrator", None),
                rec(75, "info", "run_end", "orchestrator", None, status="success"),
            ]
        ),
        "logs/step_001/orchestrator.log": lines(
            step_records(1, "fetch", {"status": "success", "duration_s": 1.5})
        ),
        "logs/step_002/orchestrator.log": lines(
            step_records(2, "answer", {"status": "success", "duration_s": 59.96})
        ),
        "logs/step_002/adapter.log": lines(
            [
                rec(
                    121,
                    "info",
                    "llm_request",
                    "adapter",
                    2,
                    prompt_tokens=10,
                    completion_tokens=5,
                    total_tokens=15,
                ),
            ]
        ),
    }


def double_count_files() -> dict[str, bytes]:
    """
    Two exceptions, five error records: step 1's KeyError is handled; step 2
    logs its ValueError with log.exception, step_end and run_end repeat it.
    """
    key_error = traceback_text("load", 12, "KeyError: 'gold'")
    value_error = traceback_text("check", 40, "pipeline.CheckError: bad answer 7")
    return {
        "logs/run.json": run_json("failed", **finished("failed", 130.0)),
        "logs/run.log": lines(
            [
                rec(0, "info", "run_start", "orchestrator", None),
                rec(
                    130,
                    "error",
                    "run_end",
                    "orchestrator",
                    None,
                    status="failed",
                    error_type="CheckError",
                    error="bad answer 7",
                    traceback=value_error,
                ),
            ]
        ),
        "logs/step_001/orchestrator.log": lines(
            step_records(
                1,
                "load",
                {
                    "status": "failed",
                    "error_type": "KeyError",
                    "error": "'gold'",
                    "traceback": key_error,
                },
            )
        ),
        "logs/step_002/adapter.log": lines(
            [
                rec(
                    125,
                    "error",
                    "check failed",
                    "adapter",
                    2,
                    exception=value_error,
                ),
            ]
        ),
        "logs/step_002/orchestrator.log": lines(
            step_records(
                2,
                "check",
                {
                    "status": "failed",
                    "error_type": "CheckError",
                    "error": "bad answer 7",
                    "traceback": value_error,
                    "at": 126,
                },
            )
        ),
    }


def crashed_files(heartbeat: int) -> dict[str, bytes]:
    """A run killed in step 3: no run_end, its heartbeat at *heartbeat* s."""
    return {
        "logs/run.json": run_json(
            "running", heartbeat_at=ts(heartbeat), ended_at=None, duration_s=None
        ),
        "logs/run.log": lines([rec(0, "info", "run_start", "orchestrator", None)]),
        "logs/step_003/orchestrator.log": lines(
            [rec(180, "info", "step_start", "orchestrator", 3, name="act", attempt=1)]
        ),
        "logs/step_003/adapter.log": lines(
            [rec(185, "info", "llm_request", "adapter", 3, model="gpt-4o")]
        ),
    }


@pytest.mark.parametrize(
    ("name", "files"),
    [
        ("retried_run.txt", retried_run_files),
        ("successful_run.txt", successful_run_files),
        ("double_count_run.txt", double_count_files),
    ],
)
def test_summary_matches_golden_file(tmp_path: Path, name: str, files: Any) -> None:
    """Retried, successful and double-count runs give their reviewed summaries."""
    text = generate(build(tmp_path / "fw" / "r1", files()))
    check_golden(name, text)
    assert_limits(text)


def test_one_exception_is_counted_once(tmp_path: Path) -> None:
    """An exception logged, then repeated by step_end and run_end, counts once."""
    text = generate(build(tmp_path / "fw" / "r1", double_count_files()))
    assert "Errors: 2 | warnings: 0 | malformed lines: 0\n" in text
    assert "== Errors and warnings (2 errors, 0 warnings) ==\n" in text
    assert "(2 step_end/run_end records repeating an error above," in text
    assert "run_end: CheckError" not in text
    assert "Run error:" not in text  # it is the step's error, shown above
    assert "  warnings: 0 | errors: 0\n  runlog show r1 --step 2" not in text


def test_retried_failure_with_the_same_error_counts_each_attempt(
    tmp_path: Path,
) -> None:
    """Two attempts failing alike are two exceptions: both are counted."""
    text = generate(build(tmp_path / "fw" / "r1", retried_run_files()))
    assert "Errors: 2 | warnings: 2 | malformed lines: 0\n" in text
    assert text.count("step_end: TimeoutError: upstream timed out after 30s") == 2


def _fail_twice(run: Any) -> None:
    """Step 1's error is handled; step 2's is logged, then ends the run."""
    log = __import__("runlog").get_logger("pipeline", component="adapter")
    try:
        with run.step(1, "load"):
            raise KeyError("gold")
    except KeyError:
        pass
    with run.step(2, "check"):
        try:
            raise ValueError("bad answer 7")
        except ValueError:
            log.exception("check failed")
            raise


def test_real_run_with_two_exceptions_shows_two_errors(tmp_path: Path) -> None:
    """start_run, two real exceptions (one re-raised to the end): Errors: 2."""
    run = start_run("fw", "r1", runs_dir=tmp_path, archive=False)
    with pytest.raises(ValueError, match="bad answer"), run:
        _fail_twice(run)
    text = (tmp_path / "fw" / "r1" / "logs_summary.txt").read_text()
    assert "Errors: 2 | warnings: 0 | malformed lines: 0\n" in text
    assert re.search(
        r"(?m)^Failed step 001 \(load\): KeyError: 'gold'\n"
        r"  at test_story\.py:\d+ in _fail_twice\n"
        r"  see logs/step_001/orchestrator\.log:2\n"
        r"  runlog show r1 --step 1 --level warning\n"
        r"Failed or incomplete steps \(2\): 001, 002\n"
        r"Steps: 2 \(2 failed\)\n",
        text,
    )
    assert "    step_end: ValueError: bad answer 7\n" not in text
    assert "    check failed: ValueError: bad answer 7\n" in text


def test_crashed_run_names_last_record_and_heartbeat(tmp_path: Path) -> None:
    """A crashed run: last heartbeat and how long before the last record, no clock."""
    text = generate(build(tmp_path / "fw" / "r1", crashed_files(heartbeat=150)))
    assert text.splitlines()[:5] == [
        "Status: CRASHED",
        "Crashed: no run_end; last heartbeat 14:02:30Z, 35.0s before the last record",
        "Last record: 14:03:05Z step 003 adapter: llm_request",
        "Incomplete step 003 (act)",
        "  runlog show r1 --step 3 --level warning",
    ]
    assert "Completed:  -\nDuration:   3m 05s\n" in text


def test_crashed_run_whose_heartbeat_outlived_its_records(tmp_path: Path) -> None:
    """A hung run's heartbeat after its last record is said to be after it."""
    text = generate(build(tmp_path / "fw" / "r1", crashed_files(heartbeat=336)))
    assert (
        "Crashed: no run_end; last heartbeat 14:05:36Z, 2m 31s after the last record\n"
    ) in text
    assert "Duration:   5m 36s\n" in text


def test_long_error_is_wrapped_whole_within_80_columns(tmp_path: Path) -> None:
    """A 300-character message is wrapped onto indented lines, never cut."""
    message = "expected 'gold', got 'silver' " + " ".join(f"word{i}" for i in range(40))
    files = full_run_files()
    files["logs/step_004/validator.log"] = lines(
        [rec(240, "error", "rejected", "validator", 4, error_type="E", error=message)]
    )
    text = generate(build(tmp_path / "fw" / "r1", files))
    assert_limits(text)
    entry = text.split("  logs/step_004/validator.log:1\n")[1].split("\n  logs/")[0]
    body = [line.removeprefix("    ") for line in entry.splitlines()]
    assert " ".join(body) == f"rejected: E: {message}"
    assert "\u2026" not in entry


def test_huge_error_is_cut_after_six_lines_with_an_ellipsis(tmp_path: Path) -> None:
    """Only a truly huge message is cut: six lines, the last ending in '…'."""
    files = full_run_files()
    files["logs/step_004/validator.log"] = lines(
        [rec(240, "error", "rejected", "validator", 4, error="w " * 2000)]
    )
    text = generate(build(tmp_path / "fw" / "r1", files))
    assert_limits(text)
    entry = text.split("  logs/step_004/validator.log:1\n")[1].split("\n  logs/")[0]
    assert len(entry.splitlines()) == 5  # + the location line: six
    assert entry.endswith(" \u2026")


def test_warnings_show_their_first_fields(tmp_path: Path) -> None:
    """A warning lists its event and its own fields in record order."""
    text = generate(build(tmp_path / "fw" / "r1", retried_run_files()))
    assert "  logs/step_002/adapter.log:2 memory_high rss_mb=30000\n" in text
    assert "  logs/run.log:2 retrying_step next_attempt=2\n" in text


def test_long_warning_keeps_its_end_on_a_second_line(tmp_path: Path) -> None:
    """A warning too long for one line goes below its location, wrapped."""
    url = "https://api.example.invalid/v1/chat/completions"
    files = {
        "logs/step_001/external.log": lines(
            [
                rec(
                    1,
                    "warning",
                    f'HTTP Request: POST {url} "HTTP/1.1 429 Too Many Requests"',
                    "external",
                    1,
                )
            ]
        )
    }
    text = generate(build(tmp_path / "fw" / "r1", files))
    assert (
        "  logs/step_001/external.log:1\n"
        f'    HTTP Request: POST {url} "HTTP/1.1\n'
        '    429 Too Many Requests"\n'
    ) in text


def test_counts_are_singular_or_plural(tmp_path: Path) -> None:
    """One error and one warning read '1 error', '1 warning'."""
    files = {
        "logs/step_001/a.log": lines(
            [rec(1, "warning", "w", "a", 1), rec(2, "error", "e", "a", 1)]
        )
    }
    text = generate(build(tmp_path / "fw" / "r1", files))
    assert "== Errors and warnings (1 error, 1 warning) ==\n" in text


def test_many_huge_errors_stay_under_10_kb(tmp_path: Path) -> None:
    """Forty six-line errors do not fit: fewer are listed, with a command."""
    files = {
        "logs/step_001/a.log": lines(
            [
                rec(i, "error", f"e{i}", "a", 1, error_type="E", error="x " * 600)
                for i in range(40)
            ]
        )
    }
    text = generate(build(tmp_path / "fw" / "r1", files), max_errors=40)
    assert_limits(text)
    more = re.search(
        r"(?m)^  \.\.\. and (\d+) more: runlog show r1 --level error$", text
    )
    assert more is not None
    shown = len(re.findall(r"(?m)^  logs/step_001/a\.log:\d+$", text))
    assert shown + int(more.group(1)) == 40
    assert 10 <= shown < 40


def test_extra_sections_come_after_the_header(tmp_path: Path) -> None:
    """A SummarySection is shown after the header, escaped and within the width."""
    run_dir = build(tmp_path / "fw" / "r1", successful_run_files())
    section = SummarySection("Changes since r0", ("tokens: +15 (+100%)", "x\x1b" * 60))
    path = summarize_run(run_dir, sections=[section])
    text = path.read_text()
    assert_limits(text)
    head, rest = text.split("\n== Changes since r0 ==\n")
    assert head.startswith("Status: SUCCESS\n") and "Run ID:" in head
    assert rest.startswith("tokens: +15 (+100%)\nx\\x1bx\\x1b")
    assert rest.index("== Steps (2) ==") > 0
    plain = LogSummarizer("r1", "fw", run_dir, limits=SummaryLimits())
    assert "Changes since" not in plain.generate_summary()


def test_wrap_breaks_words_longer_than_a_line() -> None:
    """A word longer than the room is split; wide characters count two columns."""
    assert wrap("a " + "b" * 12, 8, first="> ", indent="  ") == [
        "> a",
        "  bbbbbb",
        "  bbbbbb",
    ]
    assert wrap("\u5b9f" * 5, 6, indent="") == ["\u5b9f\u5b9f\u5b9f", "\u5b9f\u5b9f"]
    assert wrap("", 10, first="x: ") == ["x:"]
