"""runlog diff's comparison: steps by number, errors by fingerprint, thresholds."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from runlog import Archiver
from runlog._text import width_of
from runlog.errors import ConfigurationError, RunNotFoundError
from runlog.summary import summarize_run
from runlog.summary._diff import (
    Change,
    Limit,
    Thresholds,
    check_thresholds,
    collect_run,
    diff_runs,
    parse_limit,
)
from runlog.summary._diff_render import (
    baseline_section,
    changes_section,
    md_escape,
    render_json,
    render_markdown,
    render_text,
)

HOSTILE = "<script>alert(1)</script> `rm -rf /` | cell | [x](http://e.invalid) @team"


def _traceback(kind: str, message: str) -> str:
    return (
        "Traceback (most recent call last):\n"
        '  File "/work/app/agent.py", line 14, in check\n'
        "    raise " + kind + "(message)\n"
        f"{kind}: {message}"
    )


def _rec(
    second: float,
    level: str,
    event: str,
    component: str,
    step: int | None,
    run_id: str,
    **extra: Any,
) -> bytes:
    record = {
        "ts": f"2025-10-20T14:00:{second:09.6f}Z",
        "level": level,
        "event": event,
        "logger": "tests",
        "component": component,
        "run_id": run_id,
        "framework": "fw",
        "step": step,
        **extra,
    }
    return orjson.dumps(record) + b"\n"


def make_run(
    root: Path,
    run_id: str,
    *,
    tokens: Sequence[int] = (100, 100, 100),
    errors: dict[int, tuple[str, str]] | None = None,
    statuses: dict[int, str] | None = None,
    duration: float = 10.0,
    names: dict[int, str] | None = None,
) -> Path:
    """A finished run written record by record: one step per entry of *tokens*."""
    run_dir = root / "fw" / run_id
    logs = run_dir / "logs"
    logs.mkdir(parents=True)
    (logs / "run.json").write_bytes(
        orjson.dumps(
            {
                "run_id": run_id,
                "framework": "fw",
                "status": "success",
                "started_at": "2025-10-20T14:00:00.000000Z",
                "ended_at": "2025-10-20T14:00:10.000000Z",
                "duration_s": duration,
            }
        )
    )
    run_log = _rec(0, "info", "run_start", "orchestrator", None, run_id)
    for n, count in enumerate(tokens, 1):
        step = logs / f"step_{n:03d}"
        step.mkdir()
        name = (names or {}).get(n, f"s{n}")
        status = (statuses or {}).get(n, "success")
        orchestrator = _rec(
            n, "info", "step_start", "orchestrator", n, run_id, name=name, attempt=1
        )
        failure: dict[str, Any] = {}
        if status != "success" and errors and n in errors:
            kind, message = errors[n]
            failure = {
                "error_type": kind,
                "error": message,
                "traceback": _traceback(kind, message),
            }
        orchestrator += _rec(
            n + 0.5,
            "info" if status == "success" else "error",
            "step_end",
            "orchestrator",
            n,
            run_id,
            name=name,
            attempt=1,
            status=status,
            duration_s=0.5,
            **failure,
        )
        (step / "orchestrator.log").write_bytes(orchestrator)
        adapter = _rec(n + 0.1, "info", "api_call", "adapter", n, run_id)
        adapter += _rec(
            n + 0.2,
            "info",
            "llm_request",
            "adapter",
            n,
            run_id,
            prompt_tokens=count,
            completion_tokens=count // 2,
            total_tokens=count + count // 2,
        )
        if errors and n in errors:
            kind, message = errors[n]
            adapter += _rec(
                n + 0.3,
                "error",
                "check_failed",
                "adapter",
                n,
                run_id,
                exception=_traceback(kind, message),
            )
        (step / "adapter.log").write_bytes(adapter)
    run_log += _rec(
        9,
        "info",
        "run_end",
        "orchestrator",
        None,
        run_id,
        status="success",
        duration_s=duration,
    )
    (logs / "run.log").write_bytes(run_log)
    return run_dir


def test_one_new_error_and_more_tokens_are_found(tmp_path: Path) -> None:
    """B's extra exception is one new fingerprint in its step; tokens +30% per run."""
    a = make_run(tmp_path, "a")
    b = make_run(
        tmp_path,
        "b",
        tokens=(130, 130, 130),
        errors={2: ("ValueError", "expected 'gol', got 'goal'")},
    )

    diff = diff_runs(a, b)

    assert [g.fingerprint.kind for g in diff.new_errors] == ["ValueError"]
    group = diff.new_errors[0]
    assert group.fingerprint.message == "expected <str>, got <str>"
    assert group.fingerprint.frame == "agent.py in check"
    assert group.where == "step_002/adapter.log:3"
    assert group.steps == (2,)
    assert diff.resolved_errors == ()
    tokens = diff.metrics["total_tokens"]
    assert (tokens.a, tokens.b, tokens.delta) == (450, 585, 135)
    assert tokens.pct == pytest.approx(30.0)
    assert [s.new_errors for s in diff.steps] == [(), (group.fingerprint.key,), ()]


def test_same_failure_with_other_numbers_is_not_new(tmp_path: Path) -> None:
    """An error differing only in numbers and quoted text keeps its fingerprint."""
    a = make_run(tmp_path, "a", errors={1: ("TimeoutError", "after 3.5s on 'x'")})
    b = make_run(tmp_path, "b", errors={1: ("TimeoutError", "after 12s on 'y'")})

    diff = diff_runs(a, b)

    assert diff.new_errors == diff.resolved_errors == ()
    assert not diff.steps[0].changed


def test_fixed_error_is_resolved_and_step_status_change_shown(tmp_path: Path) -> None:
    """A's failure missing from B is resolved; the step shows FAILED -> SUCCESS."""
    a = make_run(
        tmp_path, "a", errors={3: ("KeyError", "'answer'")}, statuses={3: "failed"}
    )
    b = make_run(tmp_path, "b")

    diff = diff_runs(a, b)
    text = render_text(diff)

    assert [g.fingerprint.kind for g in diff.resolved_errors] == ["KeyError"]
    assert (diff.steps[2].status_a, diff.steps[2].status_b) == ("FAILED", "SUCCESS")
    assert "Step 003 (s3): FAILED -> SUCCESS" in text
    assert "  resolved error: KeyError: <str> (agent.py in check)" in text
    assert "Unchanged: 001, 002" in text


def test_steps_are_matched_by_number_with_added_and_renamed(tmp_path: Path) -> None:
    """A step only in B is '(only in B)'; a renamed step says so."""
    a = make_run(tmp_path, "a", tokens=(100, 100))
    b = make_run(tmp_path, "b", tokens=(100, 100, 100), names={2: "fetch"})

    text = render_text(diff_runs(a, b))

    assert "Step 003 (s3): SUCCESS (only in B)" in text
    assert "Step 002 (fetch): SUCCESS\n  renamed: s2 -> fetch" in text


def test_an_archive_reads_like_its_directory(tmp_path: Path) -> None:
    """diff of a run against its own archive finds no change at all."""
    a = make_run(tmp_path, "a", errors={1: ("ValueError", "bad")})
    archive = Archiver(a).create_archive().path

    diff = diff_runs(a, archive)

    assert diff.new_errors == diff.resolved_errors == ()
    assert not any(step.changed for step in diff.steps)
    assert diff.metrics["duration_s"].delta == 0


def test_not_a_run_is_an_input_error(tmp_path: Path) -> None:
    """A directory without logs/ or an archive raises RunNotFoundError naming it."""
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunNotFoundError, match="empty"):
        collect_run(tmp_path / "empty")
    with pytest.raises(RunNotFoundError, match="nowhere"):
        collect_run(tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("limits", "crossed"),
    [
        (Thresholds(max_new_errors=0), ["--max-new-errors"]),
        (Thresholds(max_new_errors=1), []),
        (
            Thresholds(max_token_increase=Limit(10, percent=True)),
            ["--max-token-increase"],
        ),
        (Thresholds(max_token_increase=Limit(30, percent=True)), []),
        (
            Thresholds(max_token_increase=Limit(100, percent=False)),
            ["--max-token-increase"],
        ),
        (Thresholds(max_token_increase=Limit(135, percent=False)), []),
        (
            Thresholds(max_duration_increase=Limit(20, percent=True)),
            ["--max-duration-increase"],
        ),
        (Thresholds(max_duration_increase=Limit(25, percent=True)), []),
        (
            Thresholds(max_duration_increase=Limit(2, percent=False)),
            ["--max-duration-increase"],
        ),
    ],
)
def test_thresholds_cross_only_past_their_limit(
    tmp_path: Path, limits: Thresholds, crossed: list[str]
) -> None:
    """Each threshold is crossed above its limit and not at or below it."""
    a = make_run(tmp_path, "a", duration=10.0)
    b = make_run(
        tmp_path,
        "b",
        tokens=(130, 130, 130),
        duration=12.5,
        errors={2: ("ValueError", "boom")},
    )

    found = check_thresholds(diff_runs(a, b), limits)

    assert [c.option for c in found if c.crossed] == crossed
    assert len(found) == 1


def test_crossing_says_by_how_much(tmp_path: Path) -> None:
    """A crossed percentage names the excess in points; a count, in units."""
    a = make_run(tmp_path, "a")
    b = make_run(tmp_path, "b", tokens=(130, 130, 130))
    diff = diff_runs(a, b)

    (pct,) = check_thresholds(diff, Thresholds(max_token_increase=Limit(10, True)))
    (count,) = check_thresholds(diff, Thresholds(max_token_increase=Limit(100, False)))

    assert pct.over == "by 20 points"
    assert pct.actual == "tokens 450 -> 585 (+135, +30.0%)"
    assert count.over == "by 35"
    assert "--max-token-increase 10%: CROSSED by 20 points" in render_text(diff, [pct])


def test_increase_from_zero_crosses_any_percentage(tmp_path: Path) -> None:
    """Tokens from 0 to some cross a percent limit 'from 0'; the pct is infinite."""
    a = make_run(tmp_path, "a", tokens=(0,))
    b = make_run(tmp_path, "b", tokens=(10,))
    diff = diff_runs(a, b)

    (found,) = check_thresholds(diff, Thresholds(max_token_increase=Limit(50, True)))

    assert found.over == "from 0"
    assert math.isinf(diff.metrics["total_tokens"].pct or 0)
    assert orjson.loads(render_json(diff))["metrics"]["total_tokens"]["pct"] is None


@pytest.mark.parametrize(
    ("text", "limit"),
    [
        ("10%", Limit(10, True)),
        ("2.5%", Limit(2.5, True)),
        ("500", Limit(500, False)),
        ("30s", Limit(30, False)),
    ],
)
def test_parse_limit(text: str, limit: Limit) -> None:
    """A limit is a percentage, a count or seconds."""
    assert parse_limit(text) == limit


@pytest.mark.parametrize("text", ["", "ten", "-5%", "10%%", "5 %s"])
def test_parse_limit_rejects_nonsense(text: str) -> None:
    """Anything else is a ConfigurationError quoting it."""
    with pytest.raises(ConfigurationError, match=re.escape(repr(text))):
        parse_limit(text, "--max-token-increase")


def test_change_percentages() -> None:
    """Deltas and percentages of a Change, unknown when a side is missing."""
    assert Change(200, 150).pct == -25.0
    assert Change(0, 0).pct == 0.0
    assert Change(None, 3).delta is None
    assert Change(None, 3).pct is None
    assert Change(4, None).as_json() == {"a": 4, "b": None, "delta": None, "pct": None}


def test_text_fits_80_columns_and_escapes_record_text(tmp_path: Path) -> None:
    """Every line is at most 80 columns; control characters arrive escaped."""
    a = make_run(tmp_path, "a")
    b = make_run(
        tmp_path,
        "b",
        errors={1: ("RuntimeError", "x\x1b[31m" + "y" * 300)},
        names={1: "n" * 120},
    )

    text = render_text(diff_runs(a, b))

    assert all(width_of(line) <= 80 for line in text.splitlines())
    assert "\x1b" not in text
    assert "\\x1b[31m" in text


def test_json_has_runs_metrics_steps_and_errors(tmp_path: Path) -> None:
    """--json: both runs, metrics with a/b/delta/pct, steps, error groups, checks."""
    a = make_run(tmp_path, "a")
    b = make_run(
        tmp_path, "b", tokens=(130, 130, 130), errors={2: ("ValueError", "boom")}
    )
    diff = diff_runs(a, b)

    doc = orjson.loads(render_json(diff, check_thresholds(diff, Thresholds(0))))

    assert set(doc) == {
        "a",
        "b",
        "status",
        "metrics",
        "steps",
        "new_errors",
        "resolved_errors",
        "checks",
    }
    assert doc["a"]["run_id"] == "a" and doc["b"]["total_tokens"] == 585
    assert doc["metrics"]["total_tokens"] == {
        "a": 450,
        "b": 585,
        "delta": 135,
        "pct": 30.0,
    }
    assert [s["step"] for s in doc["steps"]] == [1, 2, 3]
    assert doc["steps"][1]["new_errors"] == [doc["new_errors"][0]["key"]]
    assert doc["new_errors"][0]["kind"] == "ValueError"
    assert doc["new_errors"][0]["where"] == "step_002/adapter.log:3"
    assert doc["checks"] == [
        {
            "option": "--max-new-errors",
            "limit": "0",
            "actual": "1 new error fingerprint(s)",
            "crossed": True,
            "over": "by 1",
        }
    ]


def test_md_escape_leaves_nothing_active() -> None:
    """Tags, code spans, table pipes, links and mentions become entities."""
    escaped = md_escape(HOSTILE + "\n# heading")

    assert not set("<>`|[]@\n") & set(escaped)
    assert "# heading" not in escaped
    assert "&lt;script&gt;" in escaped and "&#96;rm -rf /&#96;" in escaped


def test_markdown_escapes_hostile_record_text(tmp_path: Path) -> None:
    """Hostile error text and step names cannot add tags, code or table cells."""
    a = make_run(tmp_path, "a")
    b = make_run(
        tmp_path, "b", errors={1: ("ValueError", HOSTILE)}, names={1: "x|y`<b>z</b>"}
    )

    markdown = render_markdown(diff_runs(a, b))

    assert "<script>" not in markdown and "<b>" not in markdown
    assert "`" not in markdown
    table = [line for line in markdown.splitlines() if line.startswith("| 00")]
    assert len(table) == 3
    assert {line.count("|") for line in table} == {9}
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in markdown


def test_changes_section_is_short_and_narrow(tmp_path: Path) -> None:
    """At most ten lines of 80 columns, titled with the baseline's run id."""
    a = make_run(tmp_path, "base-1")
    b = make_run(
        tmp_path,
        "b",
        tokens=(130, 130, 130, 100),
        errors={n: ("ValueError", f"kind {'x' * n}") for n in (1, 2, 3)},
        statuses={2: "failed"},
        names={1: "n" * 200},
    )

    lines = changes_section(b, a)

    assert lines[0] == "== Changes since base-1 =="
    assert lines[-1] == ""
    assert len(lines) <= 10
    assert all(width_of(line) <= 80 for line in lines)
    assert "Status: SUCCESS" in lines
    assert "Tokens: 450 -> 735 (+285, +63.3%)" in lines
    assert any(
        line.startswith("Steps changed (4): 001, 002 (SUCCESS -> FAILED)")
        for line in lines
    )


def test_step_durations_change_only_beyond_noise(tmp_path: Path) -> None:
    """A step 2 s slower is a change; a few milliseconds are not."""
    a = make_run(tmp_path, "a")
    b = make_run(tmp_path, "b")
    end = b / "logs" / "step_002" / "orchestrator.log"
    end.write_bytes(end.read_bytes().replace(b'"duration_s":0.5', b'"duration_s":2.5'))
    end = b / "logs" / "step_003" / "orchestrator.log"
    end.write_bytes(end.read_bytes().replace(b'"duration_s":0.5', b'"duration_s":0.51'))

    diff = diff_runs(a, b)
    text = render_text(diff)

    assert [step.changed for step in diff.steps] == [False, True, False]
    assert "Step 002 (s2): SUCCESS\n  duration " in text
    assert " -> 2.5s (+2.0s, +400.0%)\nUnchanged: 001, 003\n" in text


def test_baseline_section_goes_into_the_summary(tmp_path: Path) -> None:
    """summarize_run with the section: its block after the header, 80 columns."""
    a = make_run(tmp_path, "base-1")
    b = make_run(tmp_path, "b", tokens=(130, 130, 130))

    path = summarize_run(b, sections=[baseline_section(b, a)])

    text = path.read_text()
    block = text.split("== Changes since base-1 ==\n", 1)[1].split("\n\n", 1)[0]
    assert block.splitlines() == [
        "Status: SUCCESS",
        "Steps changed (3): 001, 002, 003",
        "Errors: 0 -> 0 records (0 new, 0 resolved)",
        "Tokens: 450 -> 585 (+135, +30.0%)",
        block.splitlines()[4],
        "API calls 3 | LLM requests 3",
    ]
    assert block.splitlines()[4].startswith("Duration: ")
    assert text.index("== Changes since") < text.index("== Steps")
    assert all(width_of(line) <= 80 for line in text.splitlines())
