"""run_command streams a command's output into the step and records how it ended."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from runlog import (
    CommandError,
    ConfigurationError,
    Run,
    configure,
    run_command,
    start_run,
)
from tests.conftest import read_records


def python(code: str) -> list[str]:
    """A command line running *code* with this interpreter."""
    return [sys.executable, "-c", code]


def by_event(records: list[dict[str, Any]], event: str) -> dict[str, Any]:
    """The one record with *event*."""
    [record] = [r for r in records if r["event"] == event]
    return record


def test_output_lines_land_in_the_steps_component_log(run: Run) -> None:
    """Each stdout/stderr line is a record of the component in the current step."""
    code = (
        "import sys\n"
        "print('out 1'); print('out 2', flush=True)\n"
        "print('err 1', file=sys.stderr); print('', file=sys.stderr)\n"
    )
    with run.step(2):
        result = run_command(python(code), component="agent")
    assert result.ok
    assert result.status == "success"
    assert result.signal is None
    assert (result.stdout_lines, result.stderr_lines) == (2, 2)
    assert result.stderr_tail == ("err 1", "")
    records = read_records(run.logs_dir / "step_002" / "agent.log")
    assert records[0]["event"] == "command_start"
    assert records[0]["argv"] == python(code)
    assert records[0]["pid"] == result.pid
    assert records[-1]["event"] == "command_end"
    lines = records[1:-1]
    assert [(r["stream"], r["event"]) for r in lines if r["stream"] == "stdout"] == [
        ("stdout", "out 1"),
        ("stdout", "out 2"),
    ]
    assert [r["event"] for r in lines if r["stream"] == "stderr"] == ["err 1", ""]
    assert {(r["step"], r["component"], r["logger"]) for r in records} == {
        (2, "agent", Path(sys.executable).name)
    }
    end = records[-1]
    assert end["status"] == "success"
    assert end["returncode"] == 0
    assert end["signal"] is None
    assert end["stdout_lines"] == 2
    assert end["timed_out"] is False
    assert end["level"] == "info"


def test_non_zero_exit_is_recorded_and_check_raises(run: Run) -> None:
    """Exit status 3 is command_end status failed; check=True raises CommandError."""
    code = "import sys; print('bad input', file=sys.stderr); sys.exit(3)"
    with pytest.raises(CommandError) as caught, run.step(1):
        run_command(python(code), component="tool", check=True)
    assert caught.value.returncode == 3
    assert caught.value.stderr == "bad input"
    assert caught.value.exit_code == 1
    step = read_records(run.logs_dir / "step_001" / "orchestrator.log")
    assert step[-1]["status"] == "failed"
    assert step[-1]["error_type"] == "CommandError"
    end = by_event(read_records(run.logs_dir / "step_001" / "tool.log"), "command_end")
    assert (end["status"], end["returncode"], end["level"]) == ("failed", 3, "error")


def test_death_by_signal_is_recorded(run: Run) -> None:
    """A command killed by SIGKILL reads returncode -9, signal SIGKILL, killed."""
    code = "import os, signal; print('dying', flush=True); os.kill(os.getpid(), 9)"
    with run.step(1):
        result = run_command(python(code), component="tool")
    assert result.returncode == -signal.SIGKILL
    assert result.signal == "SIGKILL"
    assert result.status == "killed"
    records = read_records(run.logs_dir / "step_001" / "tool.log")
    assert [r["event"] for r in records] == ["command_start", "dying", "command_end"]
    assert records[-1]["signal"] == "SIGKILL"
    assert records[-1]["status"] == "killed"
    with pytest.raises(CommandError, match=r"died with <Signals\.SIGKILL: 9>"):
        result.check_returncode()


def test_timeout_stops_the_command_and_its_children(run: Run, tmp_path: Path) -> None:
    """On timeout the process group gets SIGTERM; the result says timed out."""
    marker = tmp_path / "grandchild.pid"
    code = (
        "import subprocess, sys, time\n"
        "sleeper = [sys.executable, '-c', 'import time; time.sleep(60)']\n"
        "child = subprocess.Popen(sleeper)\n"
        f"open({str(marker)!r}, 'w').write(str(child.pid))\n"
        "print('started', flush=True)\n"
        "time.sleep(60)\n"
    )
    started = time.monotonic()
    with run.step(1):
        result = run_command(python(code), component="slow", timeout=2.0)
    assert time.monotonic() - started < 20
    assert result.timed_out
    assert result.status == "timeout"
    assert result.signal == "SIGTERM"
    grandchild = int(marker.read_text())
    from runlog._status import is_pid_alive

    deadline = time.monotonic() + 10
    while is_pid_alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not is_pid_alive(grandchild)
    end = by_event(read_records(run.logs_dir / "step_001" / "slow.log"), "command_end")
    assert (end["status"], end["timed_out"], end["signal"]) == (
        "timeout",
        True,
        "SIGTERM",
    )


def test_command_that_ignores_sigterm_is_killed(run: Run) -> None:
    """After kill_after_s, a command that ignores SIGTERM gets SIGKILL."""
    code = (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    result = run_command(python(code), timeout=1.0, kill_after_s=0.2)
    assert result.signal == "SIGKILL"
    assert result.timed_out


def test_child_using_runlog_logs_into_the_same_step(run: Run) -> None:
    """The command inherits the run and the caller's step through RUNLOG_*."""
    code = (
        "import runlog\n"
        "runlog.configure()\n"
        "runlog.get_logger('c', component='child').warning('from the child')\n"
    )
    with run.step(5):
        run_command(python(code), component="launcher", check=True)
    [record] = read_records(run.logs_dir / "step_005" / "child.log")
    assert record["event"] == "from the child"
    assert record["run_id"] == "r1"
    assert record["step"] == 5
    # the child's console stays quiet, so its record does not come back as stderr
    launcher = read_records(run.logs_dir / "step_005" / "launcher.log")
    assert [r["event"] for r in launcher] == ["command_start", "command_end"]


def test_step_of_a_worker_thread_reaches_the_command(run: Run) -> None:
    """run_command in a thread's own step hands that step to the child."""

    def worker(step: int) -> None:
        with run.step(step):
            run_command(
                python("import os; print(os.environ['RUNLOG_STEP'])"), component="c"
            )

    threads = [threading.Thread(target=worker, args=(s,)) for s in (3, 4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for step in (3, 4):
        records = read_records(run.logs_dir / f"step_00{step}" / "c.log")
        assert [r["event"] for r in records if r.get("stream")] == [str(step)]


def test_undecodable_output_is_kept_escaped(run: Run) -> None:
    """Bytes that are not UTF-8 are written backslash-escaped, never dropped."""
    code = "import sys; sys.stdout.buffer.write(b'caf\\xe9\\r\\n')"
    with run.step(1):
        run_command(python(code), component="bytes")
    records = read_records(run.logs_dir / "step_001" / "bytes.log")
    assert [r["event"] for r in records if r.get("stream")] == ["caf\\xe9"]


def test_levels_of_the_streams_are_configurable(run: Run) -> None:
    """stderr_level='warning' writes stderr lines at warning."""
    code = "import sys; print('w', file=sys.stderr)"
    with run.step(1):
        run_command(python(code), component="lv", stderr_level="warning")
    records = read_records(run.logs_dir / "step_001" / "lv.log")
    assert [r["level"] for r in records if r.get("stream")] == ["warning"]


def test_program_that_cannot_start_raises_and_is_logged(run: Run) -> None:
    """A missing program raises FileNotFoundError after a not_started record."""
    with pytest.raises(FileNotFoundError), run.step(1):
        run_command(["/nonexistent/prog", "x"], component="tool")
    [record] = read_records(run.logs_dir / "step_001" / "tool.log")
    assert record["event"] == "command_end"
    assert record["status"] == "not_started"
    assert record["error_type"] == "FileNotFoundError"
    assert record["level"] == "error"


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ("echo hi", {}, "'echo hi'"),
        ([], {}, r"\[\]"),
        (["true"], {"stdout_level": "loud"}, "stdout_level 'loud'"),
        (["true"], {"stderr_level": -1}, "stderr_level -1"),
    ],
)
def test_bad_arguments_are_refused(
    run: Run, args: Any, kwargs: dict[str, Any], match: str
) -> None:
    """A shell string, an empty command or a bad level raise ConfigurationError."""
    with pytest.raises(ConfigurationError, match=match):
        run_command(args, **kwargs)
    assert [r["event"] for r in read_records(run.logs_dir / "run.log")] == ["run_start"]


@pytest.mark.usefixtures("default_sigterm")
def test_sigterm_while_waiting_stops_the_command_and_interrupts_the_run(
    tmp_path: Path,
) -> None:
    """SIGTERM to the run's process stops the command and ends it interrupted."""
    configure(console_format="off")
    run = start_run("fw", "sig", tmp_path / "runs", archive=False)
    assert signal.getsignal(signal.SIGTERM) is run._term
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM))

    def interrupted_step() -> None:
        with run, run.step(1):
            timer.start()
            run_command(python("import time; time.sleep(60)"), component="slow")

    with pytest.raises(KeyboardInterrupt, match="received SIGTERM"):
        interrupted_step()
    timer.join()
    end = by_event(read_records(run.logs_dir / "step_001" / "slow.log"), "command_end")
    assert end["status"] == "interrupted"
    assert end["signal"] == "SIGTERM"
    assert end["error_type"] == "KeyboardInterrupt"
    step_end = read_records(run.logs_dir / "step_001" / "orchestrator.log")[-1]
    assert (step_end["status"], step_end["error"]) == (
        "interrupted",
        "received SIGTERM",
    )
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
