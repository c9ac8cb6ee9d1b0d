"""GitHub output: annotations on summary lines, escaping, the job summary file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from runlog.errors import ConfigurationError, LogWriteError
from runlog.summary._github import (
    Annotation,
    append_step_summary,
    escape_data,
    escape_property,
    find_annotations,
    workflow_commands,
)

from .test_markdown import HOSTILE, hostile_run
from .test_summary import GOLDEN, build, generate, lines, rec

COMMAND = re.compile(
    r"^::(error|warning) file=(?P<file>[^,:]*),line=(?P<line>\d+),"
    r"title=(?P<title>[^,:]*)::(?P<message>[^\r\n]*)$"
)


def unescape(text: str) -> str:
    """What the runner reads back from an escaped message or property."""
    for escaped, char in (("%0D", "\r"), ("%0A", "\n"), ("%3A", ":"), ("%2C", ",")):
        text = text.replace(escaped, char)
    return text.replace("%25", "%")


def test_data_escapes_percent_and_line_breaks() -> None:
    """%, CR and LF are escaped in a message, % first so %0A stays literal."""
    assert escape_data("50% done\r\n%0A::x") == "50%25 done%0D%0A%250A::x"


def test_property_also_escapes_colon_and_comma() -> None:
    """A property value has ':' and ',' escaped as well."""
    assert escape_property("a:b,c%\n") == "a%3Ab%2Cc%25%0A"


def test_annotations_point_at_the_lines_they_describe() -> None:
    """The header's failure, each error and each warning: their own line numbers."""
    text = (GOLDEN / "full_run.txt").read_text()
    lines_ = text.splitlines()
    found = find_annotations(text)
    assert [(a.level, a.line) for a in found] == [
        ("error", 2),
        ("error", 48),
        ("error", 50),
        ("error", 51),
        ("error", 52),
        ("error", 54),
        ("warning", 56),
        ("warning", 57),
    ]
    for annotation in found:
        first = annotation.message.splitlines()[0]
        assert lines_[annotation.line - 1].strip() == first
    assert found[0].message == (
        "Failed step 004 (validate): ValueError: missing field 'answer'\n"
        "at pipeline.py:14 in check_answer\n"
        "see logs/step_004/orchestrator.log:2\n"
        "runlog show r1 --step 4 --level warning"
    )
    assert found[1].message == (
        "logs/step_002/orchestrator.log:2 (pipeline.py:31 in call_model)\n"
        "step_end: TimeoutError: upstream timed out"
    )


def test_crash_and_retry_are_annotated() -> None:
    """A crash is an error with its last record; a retried step a warning."""
    crashed = find_annotations((GOLDEN / "crashed_run.txt").read_text())[0]
    assert (crashed.level, crashed.line, crashed.title) == (
        "error",
        2,
        "runlog: run CRASHED",
    )
    assert crashed.message.endswith(
        "\nLast record: 14:02:39Z step 002 adapter: tool call 29 failed"
    )
    retried = find_annotations((GOLDEN / "retried_run.txt").read_text())[0]
    assert (retried.level, retried.line) == ("warning", 2)


def test_at_most_ten_annotations_of_each_level(tmp_path: Path) -> None:
    """GitHub shows ten errors and ten warnings a step: no more are printed."""
    files = {
        "logs/step_001/a.log": lines(
            [rec(i, "error", f"e{i}", "a", 1) for i in range(15)]
            + [rec(i, "warning", f"w{i}", "a", 1) for i in range(15)]
        )
    }
    found = find_annotations(generate(build(tmp_path / "fw" / "r1", files)))
    assert [a.level for a in found].count("error") == 10
    assert [a.level for a in found].count("warning") == 10


def test_hostile_record_text_cannot_start_a_command(tmp_path: Path) -> None:
    """'::', '%0A', CR/LF and commas from records stay inside one command line."""
    text = generate(hostile_run(tmp_path / "fw" / "r1"))
    commands = workflow_commands(text, "runs/fw,x:y/r1/logs_summary.txt")
    assert commands
    for command in commands:
        match = COMMAND.match(command)
        assert match, command
        assert unescape(match["file"]) == "runs/fw,x:y/r1/logs_summary.txt"
        assert "\n" not in command and "\r" not in command
    matches = [COMMAND.match(command) for command in commands]
    messages = [unescape(match["message"]) for match in matches if match]
    assert any("::error::pwned %0A<script>" in m for m in messages)
    assert "%250A" in "".join(commands)
    assert HOSTILE.split(" ")[0] in messages[0]


def test_annotation_command_escapes_its_title() -> None:
    """The title is a property: its ':' and ',' are escaped."""
    command = Annotation("error", 3, "a:b,c", "m").command("f.txt")
    assert command == "::error file=f.txt,line=3,title=a%3Ab%2Cc::m"


def test_step_summary_is_appended(tmp_path: Path) -> None:
    """The markdown is appended to the file $GITHUB_STEP_SUMMARY names."""
    target = tmp_path / "summary.md"
    target.write_text("# earlier step\n")
    env = {"GITHUB_STEP_SUMMARY": str(target)}
    assert append_step_summary("### runlog", env) == target
    assert target.read_text() == "# earlier step\n### runlog\n"


def test_step_summary_without_the_variable_names_it() -> None:
    """No $GITHUB_STEP_SUMMARY: a ConfigurationError that names the variable."""
    with pytest.raises(ConfigurationError, match="GITHUB_STEP_SUMMARY is not set"):
        append_step_summary("x", {})


def test_step_summary_that_cannot_be_written_is_an_error(tmp_path: Path) -> None:
    """A directory where the file should be: LogWriteError with the path."""
    with pytest.raises(LogWriteError, match=re.escape(str(tmp_path))):
        append_step_summary("x", {"GITHUB_STEP_SUMMARY": str(tmp_path)})


def test_cli_github_before_any_summary_annotates_the_fresh_text(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No logs_summary.txt yet: the lines are those it will have; a note says so."""
    from runlog import cli

    from .test_summary import full_run_files

    run_dir = build(tmp_path / "runs" / "fw" / "r1", full_run_files())
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "s.md"))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["summarize", str(run_dir), "--github"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith(
        "::error file=runs/fw/r1/logs_summary.txt,line=2,title=runlog%3A run FAILED::"
        "Failed step 004 (validate)"
    )
    assert "logs_summary.txt is not written yet" in captured.err
    assert not (run_dir / "logs_summary.txt").exists()


def test_cli_github_with_an_unreadable_summary_is_an_input_error(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A directory where logs_summary.txt should be: exit 2 naming the path."""
    from runlog import cli

    run_dir = build(tmp_path / "fw" / "r1", {})
    (run_dir / "logs_summary.txt").mkdir()
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "s.md"))
    assert cli.main(["summarize", str(run_dir), "--github"]) == 2
    assert "logs_summary.txt' cannot be read" in capsys.readouterr().err
