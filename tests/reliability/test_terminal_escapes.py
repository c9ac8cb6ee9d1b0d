"""No character that acts on a terminal reaches one raw, from any output (#12)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from runlog._text import clean

pytestmark = pytest.mark.reliability

REPO = Path(__file__).resolve().parents[2]
# What an attacker would put in a record: a title change, clear screen, a CSI
# in its one-byte C1 form, a bidi override, a line separator, DEL, NEL, BEL.
HOSTILE = "title\x1b]0;pwned\x07 \x1b[2J \x9b31m ab\u202ecd \u2028 \x7f \x85"
RAW = ("\x1b", "\x07", "\x9b", "\u202e", "\u2028", "\x7f", "\x85")


def assert_no_raw(text: str) -> None:
    found = sorted({repr(char) for char in RAW if char in text})
    assert found == [], f"raw control characters reached the output: {found}"


def run_python(code: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
    )


LOG_HOSTILE = f"""
import runlog
runlog.configure(console_format=CONSOLE_FORMAT)
run = runlog.start_run("fw", "r1", "runs", archive=False)
log = runlog.get_logger("app", component="adapter")
with run.step(1, name={HOSTILE!r}):
    log.info({HOSTILE!r}, plain="\\x1b[2J", c1="\\x9b31m", bidi="ab\\u202ecd")
    log.warning("key", **{{"k\\x1bey": 1}})
    try:
        raise ValueError({HOSTILE!r})
    except ValueError:
        log.exception("failed")
run.finish()
"""


def test_clean_escapes_every_kind_and_keeps_printable_text() -> None:
    """clean() shows controls as visible escapes; accents and CJK stay as they are."""
    assert clean("é 漢字 a b") == "é 漢字 a b"
    assert (
        clean("\x1b[2J\x9b\u202e\u2028\x7f\t") == "\\x1b[2J\\x9b\\u202e\\u2028\\x7f\\t"
    )
    assert_no_raw(clean(HOSTILE))


def test_clean_json_stays_valid_json_and_round_trips() -> None:
    """clean(json=True) escapes as JSON: the document still decodes to the same data."""
    document = orjson.dumps({"event": HOSTILE, "astral": "\U000f0000"}).decode()
    escaped = clean(document, json=True)
    assert_no_raw(escaped)
    assert json.loads(escaped) == {"event": HOSTILE, "astral": "\U000f0000"}


def test_console_pretty_echo_escapes_records_names_and_tracebacks(
    tmp_path: Path,
) -> None:
    """The stderr echo of a hostile record, step name and exception is escaped."""
    done = run_python(LOG_HOSTILE.replace("CONSOLE_FORMAT", "'pretty'"), tmp_path)
    assert done.returncode == 0, done.stderr
    assert_no_raw(done.stderr)
    assert "title\\x1b]0;pwned\\x07" in done.stderr
    assert "ab\\u202ecd" in done.stderr
    assert "k\\x1bey=1" in done.stderr
    assert "ValueError: title\\x1b]0;pwned" in done.stderr


def test_console_json_echo_is_escaped_and_still_json(tmp_path: Path) -> None:
    """The JSON console lines carry no raw control and decode to the record."""
    done = run_python(LOG_HOSTILE.replace("CONSOLE_FORMAT", "'json'"), tmp_path)
    assert done.returncode == 0, done.stderr
    assert_no_raw(done.stderr)
    records = [json.loads(line) for line in done.stderr.splitlines()]
    assert any(r["event"] == HOSTILE and r["bidi"] == "ab\u202ecd" for r in records)


def test_combined_log_lines_are_escaped_and_step_files_keep_the_data(
    tmp_path: Path,
) -> None:
    """combined.log (for tail -f) is escaped; step_001/adapter.log keeps the value."""
    done = run_python(LOG_HOSTILE.replace("CONSOLE_FORMAT", "'off'"), tmp_path)
    assert done.returncode == 0, done.stderr
    logs = tmp_path / "runs" / "fw" / "r1" / "logs"
    combined = (logs / "combined.log").read_text(encoding="utf-8")
    assert_no_raw(combined)
    assert "ab\\u202ecd" in combined
    record = orjson.loads(
        (logs / "step_001" / "adapter.log").read_bytes().split(b"\n")[0]
    )
    assert record["event"] == HOSTILE


def test_show_tail_and_summary_of_a_hostile_run_are_escaped(tmp_path: Path) -> None:
    """runlog show, tail and the written summary print no raw control."""
    assert (
        run_python(LOG_HOSTILE.replace("CONSOLE_FORMAT", "'off'"), tmp_path).returncode
        == 0
    )
    run_dir = str(tmp_path / "runs" / "fw" / "r1")
    for command in (["show", run_dir], ["tail", run_dir, "-n", "50"]):
        done = run_python(
            f"import sys, runlog.cli; sys.exit(runlog.cli.main({command!r}))", tmp_path
        )
        assert done.returncode == 0, done.stderr
        assert_no_raw(done.stdout + done.stderr)
        assert "\\u202e" in done.stdout
    summary = (tmp_path / "runs" / "fw" / "r1" / "logs_summary.txt").read_text()
    assert_no_raw(summary)


def test_error_messages_naming_hostile_paths_are_escaped(tmp_path: Path) -> None:
    """`runlog: error:` naming a path with controls in it shows them escaped."""
    bad = str(tmp_path / "no\x1b]0;x\x07such\u202e")
    for command in (["show", bad], ["verify", bad], ["summarize", bad]):
        done = run_python(
            f"import sys, runlog.cli; sys.exit(runlog.cli.main({command!r}))", tmp_path
        )
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith("runlog: error: ")
        assert_no_raw(done.stderr)


def test_verify_and_archive_print_hostile_run_paths_escaped(tmp_path: Path) -> None:
    """A run directory whose name holds a bidi control is printed escaped."""
    runs = tmp_path / "runs\u202e"
    code = (
        "import runlog\n"
        "runlog.configure(console_format='off')\n"
        f"runlog.start_run('fw', 'r1', {str(runs)!r}).finish()\n"
    )
    assert run_python(code, tmp_path).returncode == 0
    run_dir = str(runs / "fw" / "r1")
    for command in (["verify", run_dir], ["archive", run_dir]):
        done = run_python(
            f"import sys, runlog.cli; sys.exit(runlog.cli.main({command!r}))", tmp_path
        )
        assert done.returncode == 0, done.stderr
        assert_no_raw(done.stdout + done.stderr)
        assert "runs\\u202e" in done.stdout
