"""The runlog command line, in-process through cli.main and as a real process."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import IO, Any

import orjson
import pytest

from runlog import Archiver, LogContext, configure, get_logger, start_run
from runlog._records import RESERVED_KEYS
from runlog.cli import gitignore_block, main
from tests.conftest import files_under

REPO = Path(__file__).resolve().parents[2]
COMMANDS = ("demo", "ls", "show", "tail", "summarize", "archive", "verify", "gitignore")
HASH_LINE = re.compile(r"^\s*SHA-256:\s+([0-9a-f]{64})\s*$", re.MULTILINE)


def runlog(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m runlog ARGS`` as a real process (the installed entry point)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNLOG_")}
    env["NO_COLOR"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "runlog", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd or REPO,
        env=env,
        check=False,
    )


def make_run(root: Path, run_id: str = "r1", *, steps: int = 3) -> Path:
    """A run written by the real logging path: run.log, steps 1..N, a traceback."""
    configure(console_format="off")
    run = root / "runs" / "fw" / run_id
    context = LogContext.get_instance()
    context.set_run_context(run_id, "fw", run / "logs")
    adapter = get_logger("app.adapter", component="adapter")
    validator = get_logger("app.validator", component="validator")
    get_logger("app", component="orchestrator").info("run_begins", steps=steps)
    for step in range(1, steps + 1):
        context.set_step_context(step)
        adapter.info("llm_request", prompt_tokens=10, total_tokens=15, step_no=step)
        adapter.debug("prompt", text=f"question {step}")
        if step == 3:
            adapter.warning("rate_limited", retry_in=2)
            try:
                float("negative price")
            except ValueError:
                validator.exception("schema_mismatch", field="price")
    context.clear_step_context()
    get_logger("app", component="orchestrator").info("run_done")
    context.clear_run_context()
    return run


HEAD = re.compile(r"(\S+ \S+) (\S+)\s+(run|step \d+)\s+(\S+)\s+(\S+)(.*)")


def head(line: str) -> tuple[str, ...]:
    """(time, level, step, component, event, rest) of a rendered record line."""
    match = HEAD.fullmatch(line)
    assert match is not None, line
    return match.groups()


def out_lines(text: str) -> list[str]:
    """Non-empty lines of *text*."""
    return [line for line in text.splitlines() if line.strip()]


# --- conventions -----------------------------------------------------------


def test_version_and_help_with_examples_on_every_command(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--version prints the version; every command's --help shows examples."""
    assert main(["--version"]) == 0
    assert re.fullmatch(r"runlog \d+\.\d+\.\d+\S*\n", capsys.readouterr().out)
    assert main(["--help"]) == 0
    top = capsys.readouterr().out
    assert "examples:" in top
    for command in COMMANDS:
        assert command in top
        assert main([command, "--help"]) == 0
        text = capsys.readouterr().out
        assert "examples:" in text, command
        assert f"runlog {command}" in text, command


def test_usage_errors_exit_2_without_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No command, an unknown command and a bad option all exit 2 with usage."""
    assert main([]) == 2
    assert "usage:" in capsys.readouterr().err
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err
    assert main(["show", "x", "--level", "loud"]) == 2
    assert "'loud'" in capsys.readouterr().err
    assert main(["show", "x", "--step", "three"]) == 2
    assert "'three'" in capsys.readouterr().err
    assert main(["show", "x", "--step", "5-2"]) == 2
    assert "'5-2' is backwards" in capsys.readouterr().err


def test_unknown_command_through_the_real_entry_point() -> None:
    """`python -m runlog nope` exits 2 with a usage message and no traceback."""
    done = runlog("nope")
    assert done.returncode == 2
    assert "unknown command 'nope'" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def test_missing_run_exits_2_with_one_line(tmp_path: Path) -> None:
    """A run that does not exist: exit 2, one `runlog: error:` line, no traceback."""
    for command in ("show", "tail", "summarize", "archive", "verify"):
        done = runlog(command, str(tmp_path / "no" / "such" / "run"), cwd=tmp_path)
        assert done.returncode == 2, command
        assert done.stderr.startswith("runlog: error: "), done.stderr
        assert len(done.stderr.splitlines()) == 1, done.stderr
        assert "Traceback" not in done.stderr
    done = runlog("ls", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("runlog: error: runs directory")


def test_gitignore_block_is_the_one_this_repo_uses(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`runlog gitignore` prints lines that ignore logs and archives, as .gitignore."""
    assert main(["gitignore"]) == 0
    block = capsys.readouterr().out
    assert block == gitignore_block()
    assert block in (REPO / ".gitignore").read_text()
    lines = block.splitlines()
    assert "runs/**/logs/" in lines
    assert {"runs/**/*.tar.gz", "runs/**/*.tar.zst"} <= set(lines)
    assert not any("summary" in line for line in lines[1:])
    assert main(["gitignore", "--runs-dir", "exp/"]) == 0
    assert "exp/**/logs/" in capsys.readouterr().out.splitlines()


def test_gitignore_keeps_logs_out_and_summaries_in(tmp_path: Path) -> None:
    """With the block, git ignores logs/ and archives but tracks logs_summary.txt."""
    if subprocess.run(
        ["git", "--version"], capture_output=True, check=False
    ).returncode:
        pytest.skip("git is not installed")
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text(gitignore_block())
    run = tmp_path / "runs" / "fw" / "r1"
    (run / "logs" / "step_001").mkdir(parents=True)
    for name in (
        "logs/run.json",
        "logs/step_001/a.log",
        "logs_summary.txt",
        "run.tar.gz",
        "run.tar.gz.sha256",
        "run.tar.zst",
    ):
        (run / name).write_text("x")
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert sorted(line[3:] for line in status.splitlines()) == [
        ".gitignore",
        "runs/fw/r1/logs_summary.txt",
    ]


# --- show ----------------------------------------------------------------------


def test_show_prints_every_record_in_time_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """show prints one line per record (debug included), tracebacks indented."""
    run = make_run(tmp_path)
    assert main(["show", str(run)]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    lines = captured.out.splitlines()
    events = [head(line)[4] for line in lines if not line.startswith(" ")]
    assert events == [
        "run_begins",
        *["llm_request", "prompt"] * 2,
        "llm_request",
        "prompt",
        "rate_limited",
        "schema_mismatch",
        "run_done",
    ]
    error_at = next(i for i, line in enumerate(lines) if "schema_mismatch" in line)
    assert head(lines[error_at])[1:4] == ("ERROR", "step 3", "validator")
    assert "field=price" in lines[error_at]
    assert lines[error_at + 1] == "    Traceback (most recent call last):"
    assert (
        lines[error_at + 4]
        == "    ValueError: could not convert string to float: 'negative price'"
    )
    assert "\x1b[" not in captured.out  # plain when not a terminal


def test_show_step_and_level_is_the_2am_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--step 3 --level warning shows that step's warnings and errors; -s paths open."""
    run = make_run(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["show", str(run), "--step", "3", "--level", "warning", "-s"]) == 0
    lines = out_lines(capsys.readouterr().out)
    heads = [line for line in lines if not line.startswith(" ")]
    assert len(heads) == 2
    assert "rate_limited retry_in=2" in heads[0]
    # relative to the current directory, so a terminal or an editor opens it
    assert heads[0].endswith("@ runs/fw/r1/logs/step_003/adapter.log:3")
    assert heads[1].endswith("@ runs/fw/r1/logs/step_003/validator.log:1")
    path, line = heads[0].rsplit("@ ", 1)[1].rsplit(":", 1)
    assert "rate_limited" in Path(path).read_text().splitlines()[int(line) - 1]


def test_show_filters_component_grep_json_and_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--component, --grep, --json, --since/--until select and format records."""
    run = make_run(tmp_path)
    assert main(["show", str(run), "-c", "orchestrator", "--json"]) == 0
    records = [orjson.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [r["event"] for r in records] == ["run_begins", "run_done"]
    assert list(records[0])[:8] == list(RESERVED_KEYS)
    assert main(["show", str(run), "--grep", "NEGATIVE PRICE", "-i", "--json"]) == 0
    found = [orjson.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [r["event"] for r in found] == ["schema_mismatch"]
    assert main(["show", str(run), "--step", "1-2", "--grep", "llm_request"]) == 0
    assert len(out_lines(capsys.readouterr().out)) == 2
    first, last = records[0]["ts"], records[-1]["ts"]
    assert main(["show", str(run), "--since", last, "--json"]) == 0
    assert [orjson.loads(x)["event"] for x in capsys.readouterr().out.splitlines()] == [
        "run_done"
    ]
    assert main(["show", str(run), "--until", first, "--json"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1
    assert main(["show", str(run), "--since", "tomorrow"]) == 2
    assert "'tomorrow'" in capsys.readouterr().err


def test_show_says_so_when_nothing_matches(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A step that does not exist: exit 1, nothing on stdout, the run's steps named."""
    run = make_run(tmp_path)
    assert main(["show", str(run), "--step", "9"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "no records match (this run's steps: 1, 2, 3)" in captured.err


def test_show_finds_a_run_by_id_under_runs_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bare run id (or a prefix) is looked up under --runs-dir."""
    make_run(tmp_path, "20251020T142345Z-3f9a1c")
    runs = str(tmp_path / "runs")
    assert main(["show", "20251020T1423", "--runs-dir", runs, "-c", "validator"]) == 0
    assert "schema_mismatch" in capsys.readouterr().out


def test_show_reads_an_archive_in_place(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """show on run.tar.gz (or a run whose logs/ is gone) prints the same records."""
    run = make_run(tmp_path)
    assert main(["show", str(run), "--level", "info"]) == 0
    from_dir = capsys.readouterr().out
    info = Archiver(run).create_archive()
    before = files_under(tmp_path)
    assert main(["show", str(info.path), "--level", "info"]) == 0
    assert capsys.readouterr().out == from_dir
    assert files_under(tmp_path) == before
    for path in sorted((run / "logs").rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    (run / "logs").rmdir()
    assert main(["show", str(run), "--level", "info"]) == 0
    captured = capsys.readouterr()
    assert captured.out == from_dir
    assert "reading run.tar.gz" in captured.err
    assert main(["tail", str(run), "-n", "1", "--json"]) == 0
    assert orjson.loads(capsys.readouterr().out)["event"] == "run_done"
    assert main(["tail", str(info.path), "-f"]) == 2
    assert "cannot follow run.tar.gz" in capsys.readouterr().err


def test_show_reports_malformed_lines_and_keeps_going(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A garbage line is skipped with its file:line on stderr; the rest is shown."""
    run = make_run(tmp_path)
    with open(run / "logs" / "step_002" / "adapter.log", "ab") as handle:
        handle.write(b"\x00\xffnot json\n")
    assert main(["show", str(run), "--step", "2"]) == 0
    captured = capsys.readouterr()
    assert len(out_lines(captured.out)) == 2
    assert "skipped 1 malformed line(s): step_002/adapter.log:3" in captured.err


def test_show_piped_into_head_stops_quietly(tmp_path: Path) -> None:
    """`runlog show RUN | head -1`: the closed pipe ends runlog without a traceback."""
    logs = tmp_path / "fw" / "big" / "logs"
    (logs / "step_001").mkdir(parents=True)
    line = {
        "ts": "2025-10-20T14:00:00.000000Z",
        "level": "info",
        "event": "tick",
        "logger": "x",
        "component": "adapter",
        "run_id": "big",
        "framework": "fw",
        "step": 1,
        "pad": "x" * 200,
    }
    (logs / "step_001" / "adapter.log").write_bytes(
        (orjson.dumps(line) + b"\n") * 20_000
    )
    env = {**os.environ, "NO_COLOR": "1"}
    with subprocess.Popen(
        [sys.executable, "-m", "runlog", "show", str(logs.parent)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    ) as proc:
        assert proc.stdout is not None
        assert proc.stderr is not None
        assert b"tick" in proc.stdout.readline()
        proc.stdout.close()
        err = proc.stderr.read()
        assert proc.wait(timeout=60) == 0
    assert b"Traceback" not in err


# --- tail ------------------------------------------------------------------------


def test_tail_prints_the_last_records(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """tail -n 2 prints the two newest records of the whole run, oldest first."""
    run = make_run(tmp_path)
    assert main(["tail", str(run), "-n", "2", "--json"]) == 0
    events = [orjson.loads(x)["event"] for x in capsys.readouterr().out.splitlines()]
    assert events == ["schema_mismatch", "run_done"]
    assert main(["tail", str(run), "-n", "1", "--level", "warning", "--json"]) == 0
    assert orjson.loads(capsys.readouterr().out)["event"] == "schema_mismatch"


def _lines_of(stream: IO[str]) -> Iterator[str]:
    yield from iter(stream.readline, "")


def _reader_thread(stream: IO[str]) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in _lines_of(stream):
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _wait_for(lines: queue.Queue[str], needle: str, seen: list[str]) -> bool:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.1)
        except queue.Empty:
            continue
        seen.append(line)
        if needle in line:
            return True
    return False


def test_tail_follow_picks_up_records_of_a_step_that_starts_later(
    tmp_path: Path,
) -> None:
    """tail -f prints a record written after it started, in a new step's file."""
    run = make_run(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNLOG_")}
    command = [sys.executable, "-m", "runlog", "tail", str(run), "-f", "-n", "1"]
    with subprocess.Popen(
        [*command, "--interval", "0.05"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**env, "NO_COLOR": "1"},
    ) as proc:
        try:
            assert proc.stdout is not None
            lines = _reader_thread(proc.stdout)
            seen: list[str] = []
            assert _wait_for(lines, "run_done", seen), seen
            context = LogContext.get_instance()
            context.set_run_context("r1", "fw", run / "logs")
            context.set_step_context(7)
            get_logger("late", component="metrics").info("late_record", n=7)
            context.clear_run_context()
            assert _wait_for(lines, "late_record", seen), seen
            last = head(seen[-1].rstrip("\n"))
            assert last[1:5] == ("INFO", "step 7", "metrics", "late_record")
        finally:
            # Ctrl-C is how a follow ends
            proc.send_signal(signal.SIGINT)
            try:
                code = proc.wait(timeout=20)
            finally:
                proc.kill()
        assert proc.stderr is not None
        err = proc.stderr.read()
    assert code == 0, err
    assert "Traceback" not in err
    assert (run / "logs" / "step_007" / "metrics.log").is_file()


def test_show_exits_1_when_grep_matches_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """show --grep: exit 0 with a match, 1 without one (as grep); no filter is 0."""
    run = make_run(tmp_path)
    assert main(["show", str(run), "--grep", "rate_limit"]) == 0
    assert "rate_limited" in capsys.readouterr().out
    assert main(["show", str(run), "--grep", "validation_failed"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "no records match" in captured.err


def test_show_context_records_around_matches(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """-B/-A/-C add records around each match in time order, `--` between groups."""
    run = make_run(tmp_path)
    assert main(["show", str(run), "--grep", "question 1|schema", "-B", "1"]) == 0
    lines = out_lines(capsys.readouterr().out)
    heads = [
        head(line)[4] if line != "--" else "--" for line in lines if line[0] != " "
    ]
    assert heads == ["llm_request", "prompt", "--", "rate_limited", "schema_mismatch"]
    assert main(["show", str(run), "--grep", "rate_limited", "-A", "1", "--json"]) == 0
    events = [orjson.loads(x)["event"] for x in capsys.readouterr().out.splitlines()]
    assert events == ["rate_limited", "schema_mismatch"]
    assert main(["show", str(run), "-c", "validator", "-C", "5", "--json"]) == 0
    events = [orjson.loads(x)["event"] for x in capsys.readouterr().out.splitlines()]
    # context stays inside the --component selection
    assert events == ["schema_mismatch"]


def test_show_without_run_reads_the_newest_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No RUN: the run that started last under --runs-dir, named on stderr."""
    make_run(tmp_path, "20251020T110000Z-aaaaaa", steps=1)
    make_run(tmp_path, "20251020T100000Z-bbbbbb", steps=2)
    # no run.json: its directory's time counts; the other's started_at wins
    os.utime(tmp_path / "runs" / "fw" / "20251020T110000Z-aaaaaa", (1e9, 1e9))
    newer = tmp_path / "runs" / "fw" / "20251020T100000Z-bbbbbb"
    (newer / "logs" / "run.json").write_bytes(
        orjson.dumps({"status": "success", "started_at": "2030-01-01T00:00:00.000000Z"})
    )
    assert main(["show", "--runs-dir", str(tmp_path / "runs"), "--json"]) == 0
    captured = capsys.readouterr()
    assert "reading the newest run:" in captured.err
    assert "20251020T100000Z-bbbbbb" in captured.err
    steps = {orjson.loads(x)["step"] for x in captured.out.splitlines()}
    assert steps == {None, 1, 2}
    assert main(["show", "--runs-dir", str(tmp_path / "none")]) == 2
    assert "no runs under" in capsys.readouterr().err


def test_show_unknown_component_lists_the_run_components(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """-c with a name the run does not have: exit 1, and the run's components."""
    run = make_run(tmp_path)
    assert main(["show", str(run), "-c", "adaptr"]) == 1
    err = capsys.readouterr().err
    assert "no component 'adaptr' in this run" in err
    assert "its components: adapter, run, validator" in err


def test_tail_follow_of_an_ended_run_ends_with_its_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """tail -f on a finished run prints its last records, then `run ended`, exit 0."""
    run = make_run(tmp_path)
    (run / "logs" / "run.json").write_bytes(
        orjson.dumps({"status": "failed", "duration_s": 12.34})
    )
    assert main(["tail", str(run), "-f", "-n", "1", "--json"]) == 0
    captured = capsys.readouterr()
    assert [orjson.loads(x)["event"] for x in captured.out.splitlines()] == ["run_done"]
    assert captured.err.strip().endswith("runlog: run ended: failed (12.3s)")


def test_tail_follow_ends_by_itself_when_the_run_finishes(tmp_path: Path) -> None:
    """tail -f of a live run prints its last records and exits 0 when it finishes."""
    configure(console_format="off")
    live = start_run("fw", "live", runs_dir=tmp_path / "runs", archive=False)
    get_logger("app", component="adapter").info("first_record")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNLOG_")}
    command = [sys.executable, "-m", "runlog", "tail", str(live.run_dir), "-f"]
    with subprocess.Popen(
        [*command, "--interval", "0.05"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**env, "NO_COLOR": "1"},
    ) as proc:
        try:
            assert proc.stdout is not None
            lines = _reader_thread(proc.stdout)
            seen: list[str] = []
            assert _wait_for(lines, "first_record", seen), seen
            get_logger("app", component="adapter").info("last_record")
            live.finish()
            code = proc.wait(timeout=20)
        finally:
            proc.kill()
        assert proc.stderr is not None
        err = proc.stderr.read()
        with suppress(queue.Empty):  # what it printed before it ended
            while True:
                seen.append(lines.get(timeout=2))
    assert code == 0, err
    assert any("last_record" in line for line in seen), seen
    assert any("run_end" in line for line in seen), seen
    assert re.search(r"runlog: run ended: success \(\d+ms|[\d.]+s\)", err), err


# --- ls ----------------------------------------------------------------------------


def _run_json(run: Path, **info: Any) -> None:
    (run / "logs").mkdir(parents=True, exist_ok=True)
    base = {"run_id": run.name, "framework": run.parent.name}
    (run / "logs" / "run.json").write_bytes(orjson.dumps({**base, **info}))


def test_ls_lists_newest_first_and_makes_problems_stand_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """ls: one row per run, newest first, FAILED/CRASHED in capitals, a hint."""
    runs = tmp_path / "runs"
    _run_json(
        runs / "fw" / "a-ok",
        status="success",
        started_at="2025-10-20T10:00:00.000000Z",
        duration_s=154.2,
    )
    _run_json(
        runs / "fw" / "b-failed",
        status="failed",
        started_at="2025-10-21T10:00:00.000000Z",
        duration_s=3.5,
    )
    _run_json(
        runs / "bench" / "c-crashed",
        status="running",
        started_at="2025-10-22T10:00:00.000000Z",
        pid=2**22 + 4321,
        host=socket.gethostname(),
    )
    assert main(["ls", str(runs)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["FRAMEWORK", "RUN", "ID"]
    rows = [line.split() for line in lines[1:4]]
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("bench", "c-crashed", "CRASHED"),
        ("fw", "b-failed", "FAILED"),
        ("fw", "a-ok", "success"),
    ]
    assert "2m 34s" in lines[3]
    assert lines[5] == "3 runs: 1 crashed, 1 failed"
    assert (
        lines[6]
        == f"newest problem: runlog show {runs}/bench/c-crashed --level warning"
    )
    assert main(["ls", str(runs), "--json"]) == 0
    listed = orjson.loads(capsys.readouterr().out)
    assert [(r["run_id"], r["status"]) for r in listed] == [
        ("c-crashed", "crashed"),
        ("b-failed", "failed"),
        ("a-ok", "success"),
    ]


def test_ls_counts_steps_and_errors_of_a_run_without_run_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run made with set_run_context alone is listed INCOMPLETE with its counts."""
    make_run(tmp_path)
    assert main(["ls", str(tmp_path / "runs"), "--json"]) == 0
    (row,) = orjson.loads(capsys.readouterr().out)
    assert (row["status"], row["steps"], row["errors"], row["warnings"]) == (
        "incomplete",
        3,
        1,
        1,
    )


def test_ls_of_an_empty_dir_suggests_the_demo(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No runs: exit 0 and a hint on stderr."""
    assert main(["ls", str(tmp_path)]) == 0
    assert "runlog demo" in capsys.readouterr().err


# --- summarize, archive, verify ----------------------------------------------------


def test_summarize_writes_and_check_detects_stale(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """summarize writes logs_summary.txt; --check is 0 when fresh, 1 with a diff."""
    run = make_run(tmp_path)
    summary = run / "logs_summary.txt"
    assert main(["summarize", str(run), "--check"]) == 1
    assert not summary.exists()
    capsys.readouterr()
    assert main(["summarize", str(run)]) == 0
    assert capsys.readouterr().out.strip() == str(summary)
    text = summary.read_text()
    assert "Step 003" in text
    assert main(["summarize", str(run), "--check"]) == 0
    assert "up to date" in capsys.readouterr().out
    with open(run / "logs" / "step_002" / "adapter.log", "ab") as handle:
        handle.write(
            orjson.dumps(
                {
                    "ts": "2099-01-01T00:00:00.000000Z",
                    "level": "error",
                    "event": "late_error",
                    "logger": "x",
                    "component": "adapter",
                    "run_id": "r1",
                    "framework": "fw",
                    "step": 2,
                }
            )
            + b"\n"
        )
    assert main(["summarize", str(run), "--check"]) == 1
    captured = capsys.readouterr()
    assert "+" in captured.out
    assert "late_error" in captured.out
    assert "stale" in captured.err
    assert summary.read_text() == text


def test_summarize_format_markdown_prints_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--format markdown prints the markdown summary; logs_summary.txt is not made."""
    run = make_run(tmp_path)
    assert main(["summarize", str(run), "--format", "markdown"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("### runlog: `fw` / `r1`\n\n**INCOMPLETE** · 3 steps")
    assert "| 003 | " in out
    assert "<details><summary>Errors (1)</summary>" in out
    assert not (run / "logs_summary.txt").exists()


def test_summarize_github_annotates_the_committed_summary(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """--github appends markdown to $GITHUB_STEP_SUMMARY and prints annotations."""
    run = make_run(tmp_path)
    assert main(["summarize", str(run)]) == 0
    text = (run / "logs_summary.txt").read_text()
    job_summary = tmp_path / "step_summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(job_summary))
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["summarize", str(run), "--github"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert job_summary.read_text().startswith("### runlog: `fw` / `r1`\n")
    error = next(line for line in out if line.startswith("::error "))
    match = re.match(r"::error file=runs/fw/r1/logs_summary.txt,line=(\d+),", error)
    assert match, error
    assert text.splitlines()[int(match.group(1)) - 1].startswith(
        "  logs/step_003/validator.log:1 (test_cli.py:"
    )
    assert any(line.startswith("::warning file=runs/fw/r1/") for line in out)
    assert (run / "logs_summary.txt").read_text() == text


def test_summarize_github_in_a_clone_with_only_the_summary(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without logs/, --github annotates the committed text and folds it in markdown."""
    run = make_run(tmp_path)
    assert main(["summarize", str(run)]) == 0
    clone = tmp_path / "clone" / "runs" / "fw" / "r1"
    clone.mkdir(parents=True)
    (clone / "logs_summary.txt").write_bytes((run / "logs_summary.txt").read_bytes())
    job_summary = tmp_path / "step_summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(job_summary))
    monkeypatch.chdir(tmp_path / "clone")
    capsys.readouterr()
    assert main(["summarize", "runs/fw/r1", "--github"]) == 0
    out = capsys.readouterr().out
    assert "::error file=runs/fw/r1/logs_summary.txt,line=" in out
    assert "(from the committed logs_summary.txt)" in job_summary.read_text()
    assert sorted(p.name for p in clone.iterdir()) == ["logs_summary.txt"]


def test_summarize_github_flags_a_stale_summary(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A committed summary the logs no longer give gets a warning on its line 1."""
    run = make_run(tmp_path)
    (run / "logs_summary.txt").write_text("Status: SUCCESS\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "s.md"))
    monkeypatch.chdir(tmp_path)
    assert main(["summarize", str(run), "--github"]) == 0
    out = capsys.readouterr().out
    stale = "::warning file=runs/fw/r1/logs_summary.txt,line=1,title=runlog%3A stale"
    assert stale in out
    assert (run / "logs_summary.txt").read_text() == "Status: SUCCESS\n"


KILLED_CHILD = """
import os, signal, sys, time
import runlog
run = runlog.start_run("fw", "r1", runs_dir=sys.argv[1], archive=False)
log = runlog.get_logger("job", component="adapter")
with run.step(1, "work"):
    for i in range(15):
        log.info("tick", i=i)
        time.sleep(0.1)
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_killed_run_lasts_until_its_last_record_in_ls_and_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run killed after ~1.5 s reads ~1.5s in ls and its summary, not 0."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNLOG_")}
    child = subprocess.run(
        [sys.executable, "-c", KILLED_CHILD, str(tmp_path / "runs")],
        capture_output=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert main(["ls", str(tmp_path / "runs"), "--json"]) == 0
    (row,) = orjson.loads(capsys.readouterr().out)
    assert row["status"] == "crashed"
    assert 1.3 < row["duration_s"] < 10
    run = tmp_path / "runs" / "fw" / "r1"
    assert main(["summarize", str(run)]) == 0
    text = (run / "logs_summary.txt").read_text()
    assert text.startswith("Status: CRASHED\nCrashed: no run_end; last heartbeat ")
    assert re.search(r"\d\.\ds before the last record\n", text)
    assert re.search(r"\nLast record: \S+Z step 001 adapter: tick\n", text)
    assert re.search(r"\nDuration:   [1-9]\.\ds\n", text)


def test_summarize_github_without_the_variable_is_a_usage_error(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """--github outside GitHub Actions: exit 2, the variable named, nothing printed."""
    run = make_run(tmp_path)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    assert main(["summarize", str(run), "--github"]) == 2
    captured = capsys.readouterr()
    assert "GITHUB_STEP_SUMMARY is not set" in captured.err
    assert captured.out == ""
    assert main(["summarize", str(run), "--check", "--format", "markdown"]) == 2


def test_archive_then_verify_then_tamper(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """archive prints the hash the sidecar and summary hold; verify fails on a flip."""
    run = make_run(tmp_path)
    assert main(["archive", str(run)]) == 0
    out = capsys.readouterr().out
    digest = re.search(r"sha256\s+([0-9a-f]{64})", out)
    assert digest is not None
    sidecar = (run / "run.tar.gz.sha256").read_text()
    assert sidecar.split()[0] == digest.group(1)
    recorded = HASH_LINE.search((run / "logs_summary.txt").read_text())
    assert recorded is not None
    assert recorded.group(1) == digest.group(1)
    assert main(["verify", str(run)]) == 0
    assert "OK" in capsys.readouterr().out
    assert main(["verify", str(run / "run.tar.gz")]) == 0
    capsys.readouterr()
    archive = run / "run.tar.gz"
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive.write_bytes(bytes(data))
    assert main(["verify", str(run)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("runlog: error: ")
    assert "Traceback" not in err


def test_archive_zst_is_readable_by_show(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--format zst writes run.tar.zst; show reads it in place."""
    run = make_run(tmp_path)
    assert main(["archive", str(run), "--format", "zst"]) == 0
    capsys.readouterr()
    assert (run / "run.tar.zst").is_file()
    assert main(["show", str(run / "run.tar.zst"), "-c", "validator", "--json"]) == 0
    (rec,) = [orjson.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert rec["event"] == "schema_mismatch"
    assert main(["verify", str(run)]) == 0


def test_verify_without_an_archive_is_an_input_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """verify on a run never archived: exit 2, says how to make one."""
    run = make_run(tmp_path)
    assert main(["verify", str(run)]) == 2
    assert "runlog archive" in capsys.readouterr().err


# --- demo --------------------------------------------------------------------------


def test_demo_in_process_makes_a_complete_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """demo leaves logs of 5 steps, a summary and a verified archive; says what next."""
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--runs-dir", "out"]) == 0
    out = capsys.readouterr().out
    (run,) = (tmp_path / "out" / "demo").iterdir()
    files = files_under(run)
    assert {
        "logs/run.json",
        "logs/run.log",
        "logs/combined.log",
        "logs/reconciliation.log",
        "logs/step_003/adapter.log",
        "logs/step_003/external.log",
        "logs/step_004/validator.log",
        "logs/step_005/metrics.log",
        "logs_summary.txt",
        "run.tar.gz",
        "run.tar.gz.sha256",
    } <= files
    assert f"runlog show out/demo/{run.name} --step 3 --level warning" in out
    assert "Status: SUCCESS" in out
    assert main(["verify", str(run)]) == 0


def test_demo_end_to_end_through_the_entry_point(tmp_path: Path) -> None:
    """`python -m runlog demo` then `verify` and the 2 a.m. command all work."""
    started = time.monotonic()
    done = runlog("demo", "--runs-dir", str(tmp_path / "runs"), cwd=tmp_path)
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert elapsed < 30
    (run,) = (tmp_path / "runs" / "demo").iterdir()
    assert "Traceback" not in done.stderr
    assert f"run      runs/demo/{run.name}  (success)" in done.stdout
    verify = runlog("verify", str(run), cwd=tmp_path)
    assert verify.returncode == 0, verify.stderr
    assert verify.stdout.startswith(f"OK  {run}/run.tar.gz")
    show = runlog("show", str(run), "--step", "3", "--level", "warning", cwd=tmp_path)
    assert show.returncode == 0
    heads = [x for x in show.stdout.splitlines() if not x.startswith(" ")]
    assert [head(x)[4] for x in heads] == [
        "HTTP",
        "rate_limited",
        "step_end",
    ]
    assert "status=failed" in heads[2]
    listing = runlog("ls", str(tmp_path / "runs"), cwd=tmp_path)
    assert listing.returncode == 0
    assert run.name in listing.stdout


# --- output details ----------------------------------------------------------------


def test_color_only_when_asked_or_on_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--color always colors levels and problem statuses; NO_COLOR keeps auto plain."""
    run = make_run(tmp_path)
    assert main(["show", str(run), "--level", "error", "--color", "always"]) == 0
    out = capsys.readouterr().out
    assert "\x1b[31mERROR" in out
    assert "\x1b[31m    ValueError" in out
    _run_json(tmp_path / "runs" / "fw" / "bad", status="failed")
    assert main(["ls", str(tmp_path / "runs"), "--color", "always"]) == 0
    assert "\x1b[1;31mFAILED" in capsys.readouterr().out
    monkeypatch.setenv("NO_COLOR", "1")
    assert main(["show", str(run), "--level", "error"]) == 0
    assert "\x1b[" not in capsys.readouterr().out


def test_durations_and_sizes_read_like_a_person_wrote_them() -> None:
    """Durations and sizes in ls/archive output use the largest sensible units."""
    from runlog._text import format_duration, format_size

    assert [
        format_duration(x, short=True) for x in (None, 0.234, 42, 154.2, 7260, 90000)
    ] == [
        "-",
        "234ms",
        "42s",
        "2m 34s",
        "2h 01m",
        "1d 01h",
    ]
    assert [format_size(x, short=True) for x in (512, 4542, 5 * 1024**3)] == [
        "512 B",
        "4.4 KB",
        "5.0 GB",
    ]


def test_archive_progress_draws_and_clears_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Progress shows bytes, share and files on one line, at most ten times a second."""
    from runlog.cli._cmd_archive import _Progress

    progress = _Progress(2048)
    progress(1024, 3)
    progress(2048, 4)  # too soon after the first: not drawn
    progress.clear()
    err = capsys.readouterr().err
    assert err == "\rarchiving: 1.0 KB of 2.0 KB (50%), 3 files\x1b[K\r\x1b[K"


def test_tail_follow_in_process_ends_cleanly_on_ctrl_c(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """tail -f prints a record appended later, then Ctrl-C returns 0."""
    import _thread

    run = make_run(tmp_path)
    late = orjson.dumps(
        {
            "ts": "2099-01-01T00:00:00.000000Z",
            "level": "info",
            "event": "appended_later",
            "logger": "x",
            "component": "metrics",
            "run_id": "r1",
            "framework": "fw",
            "step": 9,
        }
    )

    def append_then_interrupt() -> None:
        time.sleep(0.3)
        path = run / "logs" / "step_009" / "metrics.log"
        path.parent.mkdir()
        path.write_bytes(late + b"\n")
        time.sleep(1.0)
        _thread.interrupt_main()

    helper = threading.Thread(target=append_then_interrupt)
    helper.start()
    try:
        code = main(["tail", str(run), "-f", "-n", "0", "--interval", "0.02"])
    finally:
        helper.join()
    assert code == 0
    (line,) = out_lines(capsys.readouterr().out)
    assert head(line)[1:5] == ("INFO", "step 9", "metrics", "appended_later")


def test_python_dash_m_runlog_runs_main(tmp_path: Path) -> None:
    """`python -m runlog` hands its arguments to main and exits with its code."""
    done = subprocess.run(
        [sys.executable, "-m", "runlog", "gitignore"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == gitignore_block()
    bad = subprocess.run(
        [sys.executable, "-m", "runlog", "show", str(tmp_path / "none")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert bad.returncode == 2
