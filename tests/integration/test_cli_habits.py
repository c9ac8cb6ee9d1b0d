"""CLI habits of git, rg and kubectl (#16): did you mean, --force, pager, completion."""

from __future__ import annotations

import io
import os
import pty
import re
import select
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pytest

from runlog.cli import main
from runlog.cli._app import build_parser
from runlog.cli._pager import DEFAULT_PAGER, paged, pager_command, strip_no_pager

REPO = Path(__file__).resolve().parents[2]
# a pager that records it was used, and what it was given
RECORDER = """
import sys
with open(sys.argv[1], "ab") as out:
    out.write(b"PAGED\\n" + sys.stdin.buffer.read())
"""


def env_without_runlog(**extra: str) -> dict[str, str]:
    """This process's environment without RUNLOG_* (and without PAGER), plus *extra*."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("RUNLOG_") and k not in ("PAGER", "NO_COLOR")
    }
    env["PYTHONPATH"] = str(REPO)
    return {**env, **extra}


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A runs directory with one real run made by `runlog demo`."""
    runs = tmp_path_factory.mktemp("demo") / "runs"
    subprocess.run(
        [sys.executable, "-m", "runlog", "demo", "--runs-dir", str(runs)],
        check=True,
        capture_output=True,
        env=env_without_runlog(),
        timeout=60,
    )
    return runs


@pytest.fixture
def runs(demo_runs: Path, tmp_path: Path) -> Path:
    """A copy of the demo runs directory for one test."""
    copy = tmp_path / "runs"
    shutil.copytree(demo_runs, copy, symlinks=True)
    return copy


def the_run(runs: Path) -> Path:
    """The one run under *runs*."""
    (run,) = (runs / "demo").iterdir()
    return run


# --- did you mean ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("word", "hint"),
    [
        ("shwo", "did you mean 'show'?"),
        ("tial", "did you mean 'tail'?"),
        ("archvie", "did you mean 'archive'?"),
        ("xyzzy", "see `runlog --help`"),
    ],
)
def test_a_misspelled_command_gets_did_you_mean(
    word: str, hint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unknown command: one error line with the nearest command, exit 2."""
    assert main([word, "RUN"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"runlog: error: unknown command '{word}' ({hint})\n"


def test_did_you_mean_escapes_the_word(capsys: pytest.CaptureFixture[str]) -> None:
    """A command word with a terminal escape is shown escaped."""
    assert main(["\x1b[2Jls"]) == 2
    err = capsys.readouterr().err
    assert err == "runlog: error: unknown command '\\x1b[2Jls' (see `runlog --help`)\n"


def test_did_you_mean_as_a_real_process() -> None:
    """`runlog shwo` prints exactly the issue's line and exits 2."""
    done = subprocess.run(
        [sys.executable, "-m", "runlog", "shwo"],
        capture_output=True,
        text=True,
        env=env_without_runlog(),
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr == (
        "runlog: error: unknown command 'shwo' (did you mean 'show'?)\n"
    )


# --- --force -----------------------------------------------------------------------


def test_every_message_that_suggests_force_names_a_flag_that_exists() -> None:
    """Each `runlog CMD ... --force` in the code is an option of CMD's parser."""
    commands = {
        action.dest: action
        for action in build_parser()._actions
        if action.dest == "==SUPPRESS=="
    }
    (subparsers,) = commands.values()
    found = []
    for path in sorted((REPO / "runlog").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"runlog (\w+)[^`'\"\n]*?(--force)\b", text):
            found.append((path.name, match.group(1)))
    assert ("_cmd_archive.py", "archive") in found
    for _, command in found:
        parser = subparsers.choices[command]  # type: ignore[attr-defined]
        flags = {flag for action in parser._actions for flag in action.option_strings}
        assert "--force" in flags, command


def running_run(runs: Path) -> Path:
    """The demo run made to look still running: this process is its pid."""
    run = the_run(runs)
    info = orjson.loads((run / "logs" / "run.json").read_bytes())
    info.update(
        status="running",
        ended_at=None,
        pid=os.getpid(),
        pid_started=None,
        host=socket.gethostname(),
    )
    (run / "logs" / "run.json").write_bytes(orjson.dumps(info))
    return run


def test_archive_of_a_running_run_points_at_force(
    runs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run still running is refused; the message names `runlog archive --force`."""
    run = running_run(runs)
    before = (run / "run.tar.gz").read_bytes()
    assert main(["archive", str(run)]) == 2
    err = capsys.readouterr().err
    assert "is still running" in err
    assert "`runlog archive --force`" in err
    assert (run / "run.tar.gz").read_bytes() == before


def test_archive_force_archives_a_running_run_as_it_is(
    runs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--force archives the run's files as they are now; verify agrees."""
    run = running_run(runs)
    assert main(["archive", str(run), "--force", "--format", "zst"]) == 0
    out = capsys.readouterr().out
    assert "archive  " in out
    assert (run / "run.tar.zst").is_file()
    assert main(["verify", str(run)]) == 0


# --- archive in the other format ---------------------------------------------------


def test_archive_in_the_other_format_says_it_replaced_the_old_one(
    runs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """gz -> zst: the old archive and sidecar are replaced, and the output says so."""
    run = the_run(runs)
    old_hash = (run / "run.tar.gz.sha256").read_text().split()[0]
    assert main(["archive", str(run), "--format", "zst"]) == 0
    out = capsys.readouterr().out
    assert (
        "replaced run.tar.gz: a run keeps one archive, the one its summary records\n"
        f"         (its sha256 was {old_hash})\n"
    ) in out
    assert sorted(p.name for p in run.iterdir() if "tar" in p.name) == [
        "run.tar.zst",
        "run.tar.zst.sha256",
    ]
    new_hash = (run / "run.tar.zst.sha256").read_text().split()[0]
    assert new_hash in (run / "logs_summary.txt").read_text()
    assert main(["verify", str(run)]) == 0


def test_archive_again_in_the_same_format_replaces_nothing_it_names(
    runs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same files give the same bytes: no `replaced` line."""
    run = the_run(runs)
    assert main(["archive", str(run)]) == 0
    assert "replaced" not in capsys.readouterr().out
    assert (run / "run.tar.gz").is_file()


# --- ls --runs-dir, summary-only runs ----------------------------------------------


def test_ls_takes_runs_dir_as_an_option_or_positional(
    runs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--runs-dir, the positional, or both the same: one listing; different: exit 2."""
    outputs = []
    for argv in (
        ["ls", str(runs)],
        ["ls", "--runs-dir", str(runs)],
        ["ls", str(runs), "--runs-dir", str(runs)],
    ):
        assert main(argv) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] == outputs[2]
    assert the_run(runs).name in outputs[0]
    assert main(["ls", str(runs), "--runs-dir", "elsewhere"]) == 2
    assert capsys.readouterr().err == (
        f"runlog: error: runs directory given twice: RUNS_DIR {str(runs)!r} and "
        "--runs-dir 'elsewhere' (give one)\n"
    )


def git(*args: str, cwd: Path) -> str:
    """Run git in *cwd* with a throwaway identity and no user or system config."""
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=cwd,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.stdout


def test_ls_in_a_fresh_clone_lists_the_committed_summaries(
    runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only summaries are in git: ls lists them, marked summary only."""
    project = runs.parent
    assert main(["gitignore"]) == 0
    (project / ".gitignore").write_text(capsys.readouterr().out)
    git("init", "-q", cwd=project)
    git("add", ".", cwd=project)
    git("commit", "-q", "-m", "a run", cwd=project)
    clone = tmp_path / "clone"
    git("clone", "-q", str(project), str(clone), cwd=tmp_path)
    run = the_run(clone / "runs")
    assert sorted(p.name for p in run.iterdir()) == ["logs_summary.txt", "metrics.json"]
    assert main(["ls", "--runs-dir", str(clone / "runs")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[-1] == "NOTE"
    assert lines[1].split()[1:3] == [run.name, "success"]
    assert lines[1].endswith("5       2         3  summary only")
    assert main(["ls", str(clone / "runs"), "--json"]) == 0
    (row,) = orjson.loads(capsys.readouterr().out)
    assert (row["source"], row["status"], row["errors"], row["archived"]) == (
        "summary",
        "success",
        2,
        False,
    )


# --- completion --------------------------------------------------------------------


def complete(words: list[str], *, cwd: Path, script: str | None = None) -> list[str]:
    """What real bash's completion of *words* offers, with `runlog` on PATH."""
    script = (
        script
        or subprocess.run(
            [sys.executable, "-m", "runlog", "completion", "bash"],
            capture_output=True,
            text=True,
            check=True,
            env=env_without_runlog(),
            timeout=60,
        ).stdout
    )
    shim = cwd / "bin"
    shim.mkdir(exist_ok=True)
    (shim / "runlog").write_text(f'#!/bin/sh\nexec {sys.executable} -m runlog "$@"\n')
    (shim / "runlog").chmod(0o755)
    words_text = " ".join(f"'{w}'" for w in words)
    program = (
        f"source {cwd / 'completion.bash'}\n"
        f"COMP_WORDS=({words_text}); COMP_CWORD={len(words) - 1}\n"
        '_runlog; printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    (cwd / "completion.bash").write_text(script)
    env = env_without_runlog(PATH=f"{shim}:{os.environ['PATH']}")
    done = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", program],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=60,
        check=True,
    )
    return [line for line in done.stdout.splitlines() if line]


def test_bash_completion_completes_commands(tmp_path: Path) -> None:
    """`runlog sh<TAB>` offers show; `runlog <TAB>` offers every command."""
    assert complete(["runlog", "sh"], cwd=tmp_path) == ["show"]
    every = complete(["runlog", ""], cwd=tmp_path)
    for command in ("demo", "ls", "show", "tail", "archive", "completion"):
        assert command in every
    assert "--no-pager" in every


def test_bash_completion_completes_options_and_choices(tmp_path: Path) -> None:
    """Options of the command, a level's names, a format's choices."""
    assert complete(["runlog", "show", "RUN", "--le"], cwd=tmp_path) == ["--level"]
    assert complete(["runlog", "show", "RUN", "--level", "w"], cwd=tmp_path) == [
        "warning"
    ]
    assert complete(["runlog", "archive", "RUN", "--format", ""], cwd=tmp_path) == [
        "gz",
        "zst",
    ]
    assert complete(["runlog", "archive", "RUN", "--fo"], cwd=tmp_path) == [
        "--format",
        "--force",
    ]


def test_bash_completion_offers_run_ids_but_runs_nothing(
    runs: Path, tmp_path: Path
) -> None:
    """Run ids under --runs-dir are offered; a hostile directory name is not run."""
    hostile = runs / "demo" / "$(touch pwned)"
    shutil.copytree(the_run(runs), hostile)
    offered = complete(["runlog", "show", "--runs-dir", str(runs), "2"], cwd=tmp_path)
    assert the_run_id(runs) in offered
    assert not (tmp_path / "pwned").exists()
    assert not any("touch" in word for word in offered)


def the_run_id(runs: Path) -> str:
    """The id of the demo run under *runs* (the one whose name starts with 2)."""
    (name,) = (p.name for p in (runs / "demo").iterdir() if p.name.startswith("2"))
    return name


def test_completion_run_ids_lists_safe_names_only(
    runs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`completion --run-ids DIR` prints one safe run id a line, nothing else."""
    shutil.copytree(the_run(runs), runs / "demo" / "a b;c")
    assert main(["completion", "--run-ids", str(runs)]) == 0
    assert capsys.readouterr().out == f"{the_run_id(runs)}\n"


def test_completion_without_a_shell_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`runlog completion` alone names the shells and exits 2."""
    assert main(["completion"]) == 2
    assert "bash, zsh, fish" in capsys.readouterr().err


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_and_fish_scripts_name_every_command_and_option(
    shell: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every command and the options of show are in the script."""
    assert main(["completion", shell]) == 0
    script = capsys.readouterr().out
    for command in ("demo", "ls", "show", "tail", "archive", "completion"):
        assert re.search(rf"\b{command}\b", script), command
    assert "debug info warning error critical" in script
    assert "gz zst" in script


@pytest.mark.parametrize(("shell", "check"), [("zsh", "-n"), ("fish", "--no-execute")])
def test_zsh_and_fish_scripts_parse(shell: str, check: str, tmp_path: Path) -> None:
    """The shell itself reads the script without a syntax error."""
    # scripts/test installs zsh and fish; without them this fails, never skips
    assert shutil.which(shell), f"{shell} is not installed: apt-get install {shell}"
    script = tmp_path / f"runlog.{shell}"
    script.write_text(
        subprocess.run(
            [sys.executable, "-m", "runlog", "completion", shell],
            capture_output=True,
            text=True,
            check=True,
            env=env_without_runlog(),
            timeout=60,
        ).stdout
    )
    subprocess.run([shell, check, str(script)], check=True, timeout=60)


def test_bash_script_parses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`bash -n` reads the bash script without a syntax error."""
    assert main(["completion", "bash"]) == 0
    (tmp_path / "runlog.bash").write_text(capsys.readouterr().out)
    subprocess.run(["bash", "-n", str(tmp_path / "runlog.bash")], check=True)


# --- pager -------------------------------------------------------------------------


def test_pager_command_follows_git() -> None:
    """RUNLOG_PAGER over PAGER over less -FRX; empty or cat turns paging off."""
    assert pager_command({}) == DEFAULT_PAGER == "less -FRX"
    assert pager_command({"PAGER": "more"}) == "more"
    assert pager_command({"PAGER": "more", "RUNLOG_PAGER": "most"}) == "most"
    assert pager_command({"PAGER": "more", "RUNLOG_PAGER": ""}) is None
    assert pager_command({"PAGER": ""}) is None
    assert pager_command({"PAGER": "cat"}) is None


def test_no_pager_is_taken_from_anywhere_before_a_double_dash() -> None:
    """--no-pager before or after the command; after `--` it is an operand."""
    assert strip_no_pager(["--no-pager", "ls"]) == (["ls"], True)
    assert strip_no_pager(["ls", "--no-pager", "x"]) == (["ls", "x"], True)
    assert strip_no_pager(["show", "--", "--no-pager"]) == (
        ["show", "--", "--no-pager"],
        False,
    )
    assert strip_no_pager(["ls"]) == (["ls"], False)


def on_a_pty(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[int, bytes]:
    """Run ``python -m runlog ARGV`` with a pty as stdout; its exit code and output."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: exec at once, nothing of pytest runs here
        os.chdir(cwd)
        os.execve(sys.executable, [sys.executable, "-m", "runlog", *argv], env)
    out = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1)
        if not ready:
            continue
        try:
            data = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the pty
            break
        if not data:
            break
        out += data
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), out


@pytest.fixture
def recorder(tmp_path: Path) -> tuple[str, Path]:
    """A PAGER command that records its input in a file, and that file."""
    script = tmp_path / "recorder.py"
    script.write_text(RECORDER)
    record = tmp_path / "paged.txt"
    return f"{sys.executable} {script} {record}", record


def test_ls_on_a_terminal_goes_through_the_pager_with_colors(
    runs: Path, recorder: tuple[str, Path]
) -> None:
    """stdout a pty: the table reaches PAGER, colored, and not the pty directly."""
    command, record = recorder
    code, out = on_a_pty(["ls", str(runs)], env_without_runlog(PAGER=command), runs)
    assert code == 0
    paged_text = record.read_bytes()
    assert paged_text.startswith(b"PAGED\n")
    assert the_run(runs).name.encode() in paged_text
    assert b"\x1b[32msuccess\x1b[0m" in paged_text  # colors kept, for less -R
    assert the_run(runs).name.encode() not in out


@pytest.mark.parametrize(
    ("argv", "extra"),
    [
        (["--no-pager", "ls"], {}),
        (["ls", "--no-pager"], {}),
        (["ls"], {"RUNLOG_PAGER": ""}),
    ],
)
def test_no_pager_and_an_empty_runlog_pager_turn_it_off(
    argv: list[str],
    extra: dict[str, str],
    runs: Path,
    recorder: tuple[str, Path],
) -> None:
    """--no-pager (before or after the command) or RUNLOG_PAGER= : no pager."""
    command, record = recorder
    env = env_without_runlog(PAGER=command, **extra)
    code, out = on_a_pty([*argv, str(runs)], env, runs)
    assert code == 0
    assert not record.exists()
    assert the_run(runs).name.encode() in out


def test_no_pager_when_stdout_is_not_a_terminal(
    runs: Path, recorder: tuple[str, Path]
) -> None:
    """Piped output is never paged."""
    command, record = recorder
    done = subprocess.run(
        [sys.executable, "-m", "runlog", "ls", str(runs)],
        capture_output=True,
        env=env_without_runlog(PAGER=command),
        timeout=60,
        check=True,
    )
    assert the_run(runs).name.encode() in done.stdout
    assert not record.exists()


def test_a_command_without_pages_is_not_paged(
    tmp_path: Path, recorder: tuple[str, Path]
) -> None:
    """gitignore does not ask for a pager: it prints straight to the terminal."""
    command, record = recorder
    code, out = on_a_pty(["gitignore"], env_without_runlog(PAGER=command), tmp_path)
    assert code == 0
    assert b"logs/" in out
    assert not record.exists()


@contextmanager
def stdout_on_a_pty() -> Iterator[None]:
    """
    File descriptor 1 and sys.stdout on a new pty for the block.

    Used inside a test's body: pytest's capture puts fd 1 back between a
    fixture's setup and the test's call.
    """
    master, slave = os.openpty()
    saved_fd, saved_stdout = os.dup(1), sys.stdout
    os.dup2(slave, 1)
    os.close(slave)
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8")
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stdout = saved_stdout
        os.dup2(saved_fd, 1)
        os.close(saved_fd)
        os.close(master)


def test_paged_in_process_sends_stdout_and_fd_1_to_the_pager(
    recorder: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inside paged(): writes and a child's fd 1 go to the pager; after, the pty."""
    command, record = recorder
    monkeypatch.setenv("PAGER", command)
    monkeypatch.delenv("RUNLOG_PAGER", raising=False)
    with stdout_on_a_pty():
        with paged(True):
            inside = sys.stdout.isatty()
            sys.stdout.write("from print\n")
            sys.stdout.flush()
            subprocess.run(["echo", "from a child"], check=True)
        after = os.isatty(1)
    assert (inside, after) == (True, True)
    assert record.read_bytes() == b"PAGED\nfrom print\nfrom a child\n"


def flood_the_pager() -> None:
    """Write 100 KB through a pager that has already exited."""
    with paged(True):
        time.sleep(0.2)  # `true` has exited
        for _ in range(1000):
            sys.stdout.write("x" * 100 + "\n")


def test_a_pager_quit_early_drops_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pager that exits at once: BrokenPipeError, fd 1 back on the terminal."""
    monkeypatch.setenv("PAGER", "true")
    monkeypatch.delenv("RUNLOG_PAGER", raising=False)
    with stdout_on_a_pty():
        with pytest.raises(BrokenPipeError):
            flood_the_pager()
        after = (os.isatty(1), sys.stdout.isatty())
    assert after == (True, True)


def test_a_pager_that_cannot_run_is_named_and_output_printed_without_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """PAGER names no program: a warning naming it, the output still printed."""
    monkeypatch.setenv("PAGER", "/nonexistent/pager -x")
    monkeypatch.delenv("RUNLOG_PAGER", raising=False)
    with stdout_on_a_pty():
        with paged(True):
            inside = sys.stdout.isatty()
        after = os.isatty(1)
    assert (inside, after) == (True, True)
    err = capsys.readouterr().err
    assert err == (
        "runlog: warning: cannot run the pager '/nonexistent/pager -x' (No such "
        "file or directory); printing without it (set RUNLOG_PAGER to choose "
        "another)\n"
    )


def test_ls_does_not_point_show_at_a_run_of_which_only_the_summary_is_here(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A failed summary-only run is counted, but `show` is not suggested for it."""
    run = tmp_path / "runs" / "fw" / "r1"
    run.mkdir(parents=True)
    (run / "logs_summary.txt").write_text(
        "Status: FAILED\nSteps: 2 (1 success, 1 failed)\n"
        "Errors: 1 | warnings: 0 | malformed lines: 0\n\nRun ID:     r1\n"
    )
    assert main(["ls", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1].split()[:3] == ["fw", "r1", "FAILED"]
    assert out.endswith("\n1 run: 1 failed\n")
    assert "newest problem" not in out
