"""Captured output (see #15): what a step prints becomes stdout/stderr records."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from runlog import start_run
from runlog.capture import MAX_LINE, active_session
from runlog.errors import ConfigurationError
from tests.conftest import read_records

pytestmark = pytest.mark.reliability

LOGS = Path("runs/fw/r1/logs")


# which tee stands in for sys.stdout: "fast" (a TextIOWrapper, see #15) or
# the class of the per-thread one
_STDOUT_KIND = """
def stdout_kind():
    import io
    out = sys.stdout
    if type(out) is io.TextIOWrapper and hasattr(out, "_runlog_target"):
        return "fast"
    return type(out).__name__
"""


def _script(body: str, mode: str, console: str = "off") -> str:
    return (
        "import os, sys, time, threading, subprocess, runlog\n"
        + _STDOUT_KIND
        + f"runlog.configure(console_format={console!r})\n"
        f"run = runlog.start_run('fw', 'r1', 'runs', archive=False, capture={mode!r})\n"
        + textwrap.dedent(body)
        + "\nrun.finish()\n"
    )


def _child(
    tmp_path: Path,
    body: str,
    mode: str = "python",
    *,
    console: str = "off",
    unbuffered: bool = False,
) -> subprocess.CompletedProcess[bytes]:
    # Python's default on a pipe is a block-buffered stdout: a FastTee
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("RUNLOG_") and k != "PYTHONUNBUFFERED"
    }
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"  # every write a system call: a StreamTee
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    proc = subprocess.run(
        [sys.executable, "-c", _script(body, mode, console)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc


def _events(tmp_path: Path, where: str) -> list[str]:
    path = tmp_path / LOGS / where
    return [r["event"] for r in read_records(path)] if path.exists() else []


def _records(tmp_path: Path, where: str) -> list[dict[str, Any]]:
    return read_records(tmp_path / LOGS / where)


@pytest.mark.parametrize("unbuffered", [False, True], ids=["block", "unbuffered"])
def test_prints_in_steps_1_to_3_land_in_each_step(
    tmp_path: Path, unbuffered: bool
) -> None:
    """A print() in step N is a record in step_00N/stdout.log, and on the terminal."""
    proc = _child(
        tmp_path,
        """
        print("before")
        for n in (1, 2, 3):
            with run.step(n):
                print(f"line of step {n}")
                print(f"error of step {n}", file=sys.stderr)
        """,
        unbuffered=unbuffered,
    )
    for n in (1, 2, 3):
        out = _records(tmp_path, f"step_00{n}/stdout.log")
        assert [r["event"] for r in out] == [f"line of step {n}"]
        assert out[0]["level"] == "info"
        assert out[0]["stream"] == "stdout"
        assert out[0]["component"] == "stdout"
        assert out[0]["step"] == n
        assert _events(tmp_path, f"step_00{n}/stderr.log") == [f"error of step {n}"]
    outside = [r for r in _records(tmp_path, "run.log") if r["component"] == "stdout"]
    assert [(r["event"], r["step"]) for r in outside] == [("before", None)]
    assert proc.stdout.decode().splitlines() == [
        "before",
        "line of step 1",
        "line of step 2",
        "line of step 3",
    ]


def test_two_threads_in_different_steps_keep_their_lines(tmp_path: Path) -> None:
    """Two threads printing 5,000 lines each at once, each in its own step."""
    _child(
        tmp_path,
        """
        barrier = threading.Barrier(2)
        def work(n):
            with run.step(n):
                barrier.wait()
                for i in range(5000):
                    print(f"step {n} line {i}")
        threads = [threading.Thread(target=work, args=(n,)) for n in (3, 4)]
        for t in threads: t.start()
        for t in threads: t.join()
        """,
    )
    for n in (3, 4):
        events = _events(tmp_path, f"step_00{n}/stdout.log")
        assert events == [f"step {n} line {i}" for i in range(5000)]


@pytest.mark.parametrize("unbuffered", [False, True], ids=["block", "unbuffered"])
def test_terminal_bytes_are_identical_with_and_without_capture(
    tmp_path: Path, unbuffered: bool
) -> None:
    """The child's raw stdout and stderr are the same bytes with capture on or off."""
    body = """
        print("plain")
        sys.stdout.write("no newline yet...")
        with run.step(1):
            sys.stdout.write(" now\\r\\n")
            print("tabs\\tand ünïcode", 42, sep="|", end="!\\n")
            print("to stderr", file=sys.stderr)
            sys.stdout.writelines(["a\\n", "b", "\\n"])
            print("\\r 10%\\r 100%")
        sys.stdout.write("last, unterminated")
        """
    outputs = []
    for mode in ("none", "python"):
        (tmp_path / mode).mkdir()
        proc = _child(tmp_path / mode, body, mode, unbuffered=unbuffered)
        outputs.append((proc.stdout, proc.stderr))
    assert outputs[0] == outputs[1]
    assert outputs[0][0].startswith(b"plain\nno newline yet... now\r\n")
    last = _records(tmp_path / "python", "run.log")[-2]
    assert (last["event"], last["partial"]) == ("last, unterminated", True)


def test_fd_mode_records_os_write_printf_and_a_child(tmp_path: Path) -> None:
    """In "fd" mode os.write(1), libc printf and an inheriting child are recorded."""
    proc = _child(
        tmp_path,
        """
        import ctypes
        libc = ctypes.CDLL(None)
        with run.step(2):
            print("from print")
            os.write(1, b"from os.write\\n")
            libc.printf(b"from printf %d\\n", 7)
            libc.fflush(None)
            subprocess.run(["sh", "-c", "echo from a child; echo child err >&2"])
            os.write(2, b"from fd 2\\n")
        """,
        "fd",
    )
    out = _events(tmp_path, "step_002/stdout.log")
    assert sorted(out) == sorted(
        ["from print", "from os.write", "from printf 7", "from a child"]
    )
    assert sorted(_events(tmp_path, "step_002/stderr.log")) == [
        "child err",
        "from fd 2",
    ]
    assert sorted(proc.stdout.decode().splitlines()) == sorted(out)
    assert sorted(proc.stderr.decode().splitlines()) == ["child err", "from fd 2"]


@pytest.mark.parametrize("mode", ["python", "fd"])
def test_fast_output_has_no_deadlock_and_no_lost_line(
    tmp_path: Path, mode: str
) -> None:
    """10 MB printed and os.write()n as fast as possible: every line recorded."""
    _fast_output(tmp_path, mode, megabytes=10)


@pytest.mark.stress
def test_hundred_megabytes_in_fd_mode(tmp_path: Path) -> None:
    """100 MB printed as fast as possible in "fd" mode: no deadlock, no loss."""
    _fast_output(tmp_path, "fd", megabytes=100)


def _fast_output(tmp_path: Path, mode: str, megabytes: int) -> None:
    lines = megabytes * 10_000 // 2  # 100-byte lines, half print, half os.write
    proc = _child(
        tmp_path,
        f"""
        pad = "x" * 90
        with run.step(1):
            for i in range({lines}):
                print(f"{{i:08d}}", pad)
            chunk = []
            for i in range({lines}):
                chunk.append(f"w{{i:07d}} {{pad}}\\n")
                if len(chunk) == 100:
                    os.write(1, "".join(chunk).encode())
                    chunk = []
        """,
        mode,
    )
    events = _events(tmp_path, "step_001/stdout.log")
    printed = [e for e in events if not e.startswith("w")]
    written = [e for e in events if e.startswith("w")]
    assert len(printed) == lines
    assert printed[-1] == f"{lines - 1:08d} " + "x" * 90
    assert len(proc.stdout) == 2 * lines * 100
    if mode == "fd":
        assert len(written) == lines
        assert written[-1] == f"w{lines - 1:07d} " + "x" * 90


def test_carriage_return_progress_collapses_to_one_record(tmp_path: Path) -> None:
    """A tqdm-style bar refreshed 200 times with \\r is one record, its final state."""
    proc = _child(
        tmp_path,
        """
        with run.step(1):
            for i in range(201):
                sys.stdout.write(f"\\rprogress {i / 2:5.1f}%|" + "#" * (i // 20))
                sys.stdout.flush()
            sys.stdout.write("\\n")
            print("pip\\rDone")
        """,
    )
    assert _events(tmp_path, "step_001/stdout.log") == [
        "progress 100.0%|##########",
        "Done",
    ]
    assert proc.stdout.count(b"\r") == 202


def test_three_mib_line_is_split_into_numbered_parts(tmp_path: Path) -> None:
    """A 3 MiB line is recorded whole, as parts 1-3 of at most 1 MiB."""
    _child(
        tmp_path,
        """
        with run.step(1):
            print("".join(chr(97 + i % 26) for i in range(3 * 2**20 + 5)))
            print("after")
        """,
    )
    records = _records(tmp_path, "step_001/stdout.log")
    parts = records[:-1]
    assert [r["part"] for r in parts] == [1, 2, 3, 4]
    assert parts[-1]["parts"] == 4
    assert all(len(r["event"]) <= MAX_LINE for r in parts)
    whole = "".join(r["event"] for r in parts)
    assert whole == "".join(chr(97 + i % 26) for i in range(3 * 2**20 + 5))
    assert records[-1]["event"] == "after"
    assert "part" not in records[-1]


def test_invalid_utf8_is_kept_escaped(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 (fd) and lone surrogates (python) are kept, escaped."""
    proc = _child(
        tmp_path,
        """
        with run.step(1):
            os.write(1, b"bad \\xff\\xfe bytes\\n")
            print("lone \\udcff surrogate", file=sys.stderr)
        """,
        "fd",
    )
    assert _events(tmp_path, "step_001/stdout.log") == ["bad \\xff\\xfe bytes"]
    assert _events(tmp_path, "step_001/stderr.log") == ["lone \\udcff surrogate"]
    assert b"bad \xff\xfe bytes\n" in proc.stdout


@pytest.mark.parametrize("mode", ["python", "fd"])
def test_lines_printed_before_sigkill_are_on_disk(tmp_path: Path, mode: str) -> None:
    """SIGKILL 200 ms after printing: every line printed is already in the step file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNLOG_")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    script = _script(
        """
        with run.step(1):
            for i in range(500):
                print(f"line {i}")
            os.write(1, b"raw line\\n")
            open("ready", "w").close()
            time.sleep(60)
        """,
        mode,
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not (tmp_path / "ready").exists():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(0.2)
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    events = _events(tmp_path, "step_001/stdout.log")
    assert events[:500] == [f"line {i}" for i in range(500)]
    assert events[500:] == (["raw line"] if mode == "fd" else [])


def test_partial_line_is_recorded_after_one_second(tmp_path: Path) -> None:
    """A prompt left unterminated for 1 s is recorded with partial: true."""
    _child(
        tmp_path,
        """
        with run.step(1):
            sys.stdout.write("Continue? ")
            sys.stdout.flush()
            time.sleep(1.6)
            on_disk = open("runs/fw/r1/logs/step_001/stdout.log").read()
            assert "Continue? " in on_disk, on_disk
            print("yes")
        """,
    )
    records = _records(tmp_path, "step_001/stdout.log")
    assert [(r["event"], r.get("partial")) for r in records] == [
        ("Continue? ", True),
        ("yes", None),
    ]


def test_runlog_console_echo_is_not_captured_back(tmp_path: Path) -> None:
    """runlog's own console lines on stderr are not recorded as stderr lines."""
    proc = _child(
        tmp_path,
        """
        import logging
        log = runlog.get_logger("app", component="adapter")
        logging.basicConfig()
        with run.step(1):
            log.info("api_call", prompt_tokens=3)
            log.warning("careful")
            logging.getLogger("lib").warning("from stdlib")
        """,
        console="pretty",
    )
    assert b"api_call" in proc.stderr
    assert b"from stdlib" in proc.stderr
    assert not (tmp_path / LOGS / "step_001" / "stderr.log").exists()
    assert _events(tmp_path, "step_001/adapter.log") == ["api_call", "careful"]


def test_capsys_still_sees_what_a_step_prints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Under capsys a run records the print and capsys still reads it."""
    before = sys.stdout
    run = start_run("fw", "r1", tmp_path / "runs", archive=False)
    with run.step(1):
        print("seen by both")  # noqa: T201  # print() is what is tested
    run.finish()
    assert sys.stdout is before
    assert "seen by both\n" in capsys.readouterr().out
    logs = tmp_path / "runs/fw/r1/logs"
    assert [r["event"] for r in read_records(logs / "step_001/stdout.log")] == [
        "seen by both"
    ]


@pytest.mark.parametrize("mode", ["python", "fd"])
def test_capfd_still_sees_what_a_step_writes(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], mode: str
) -> None:
    """Under capfd a run records print() and os.write(1) and capfd reads both."""
    run = start_run("fw", "r1", tmp_path / "runs", archive=False, capture=mode)
    with run.step(1):
        print("printed")  # noqa: T201  # print() is what is tested
        os.write(1, b"written\n")
    run.finish()
    assert active_session() is None
    out = capfd.readouterr().out
    assert "printed\n" in out
    assert "written\n" in out
    events = [
        r["event"]
        for r in read_records(tmp_path / "runs/fw/r1/logs/step_001/stdout.log")
    ]
    assert sorted(events) == (["printed", "written"] if mode == "fd" else ["printed"])


def test_stream_without_fileno_is_teed_and_given_back(tmp_path: Path) -> None:
    """A stdout without fileno (as in Jupyter) still gets its text, and gets it back."""
    proc = _child(
        tmp_path,
        """
        class Kernel:
            encoding = "utf-8"
            def __init__(self): self.parts = []
            def write(self, s): self.parts.append(s); return len(s)
            def flush(self): pass
            def isatty(self): return False
        kernel = Kernel()
        run.finish()
        sys.stdout = kernel
        run2 = runlog.start_run("fw", "r2", "runs", archive=False)
        with run2.step(1):
            print("cell output")
            assert sys.stdout.encoding == "utf-8" and not sys.stdout.isatty()
            assert not hasattr(sys.stdout, "fileno")
        run2.finish()
        assert sys.stdout is kernel, sys.stdout
        sys.stdout = sys.__stdout__
        print("kernel got", repr("".join(kernel.parts)))
        """,
    )
    assert proc.stdout.decode() == "kernel got 'cell output\\n'\n"
    records = read_records(tmp_path / "runs/fw/r2/logs/step_001/stdout.log")
    assert [r["event"] for r in records] == ["cell output"]


def test_stdout_none_is_recorded_and_given_back(tmp_path: Path) -> None:
    """With sys.stdout = None a print is still recorded; None is put back after."""
    proc = _child(
        tmp_path,
        """
        run.finish()
        sys.stdout = None
        run2 = runlog.start_run("fw", "r2", "runs", archive=False)
        with run2.step(1):
            print("nowhere to go")
        run2.finish()
        assert sys.stdout is None
        sys.stdout = sys.__stdout__
        print("done")
        """,
    )
    assert proc.stdout == b"done\n"
    records = read_records(tmp_path / "runs/fw/r2/logs/step_001/stdout.log")
    assert [r["event"] for r in records] == ["nowhere to go"]


def test_stdout_replaced_by_the_app_is_left_alone(tmp_path: Path) -> None:
    """An app that replaces sys.stdout during the run keeps its object after finish."""
    _child(
        tmp_path,
        """
        import io
        mine = io.StringIO()
        with run.step(1):
            sys.stdout = mine
        run.finish()
        assert sys.stdout is mine
        sys.stdout = sys.__stdout__
        """,
    )


def test_descriptors_restored_after_an_exception_in_a_step(tmp_path: Path) -> None:
    """A step raising in "fd" mode: fds 1/2 and sys.stdout/err are back after."""
    proc = _child(
        tmp_path,
        """
        def where(fd): return os.readlink(f"/proc/self/fd/{fd}")
        run.finish()
        def state():
            fds = len(os.listdir("/proc/self/fd"))
            return (where(1), where(2), sys.stdout, sys.stderr, fds)
        before = state()
        try:
            with runlog.start_run("fw", "r2", "runs", archive=False, capture="fd") as r:
                with r.step(1):
                    print("about to fail")
                    raise ValueError("boom")
        except ValueError:
            pass
        after = state()
        assert after == before, (before, after)
        os.write(1, b"after the run\\n")
        """,
    )
    assert proc.stdout.endswith(b"about to fail\nafter the run\n")
    records = read_records(tmp_path / "runs/fw/r2/logs/step_001/stdout.log")
    assert [r["event"] for r in records] == ["about to fail"]


def test_sigterm_in_fd_mode_gives_the_descriptors_back(tmp_path: Path) -> None:
    """SIGTERM during a step in "fd" mode: the run ends interrupted, fds are back."""
    proc = _child(
        tmp_path,
        """
        fd1 = os.readlink("/proc/self/fd/1")
        run.finish()
        try:
            with runlog.start_run("fw", "r2", "runs", archive=False, capture="fd") as r:
                with r.step(1):
                    os.write(1, b"before the signal\\n")
                    os.kill(os.getpid(), 15)
                    time.sleep(5)
        except KeyboardInterrupt:
            pass
        assert os.readlink("/proc/self/fd/1") == fd1
        os.write(1, b"after\\n")
        """,
    )
    assert proc.stdout == b"before the signal\nafter\n"
    logs = tmp_path / "runs/fw/r2/logs"
    assert '"interrupted"' in (logs / "run.json").read_text()
    records = read_records(logs / "step_001/stdout.log")
    assert [r["event"] for r in records] == ["before the signal"]


def test_fd_mode_is_refused_without_descriptors(tmp_path: Path) -> None:
    """Where fd 1 does not exist, capture="fd" raises ConfigurationError naming it."""
    script = textwrap.dedent(
        """
        import os, sys, runlog
        os.close(1)
        try:
            runlog.start_run("fw", "r1", "runs", archive=False, capture="fd")
        except runlog.errors.ConfigurationError as exc:
            sys.stderr.write(f"refused: {exc}\\n")
        run = runlog.start_run("fw", "r2", "runs", archive=False, capture="python")
        run.finish()
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNLOG_")}
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert b"refused: capture 'fd': file descriptor 1 does not exist" in proc.stderr
    assert not (tmp_path / "runs/fw/r1").exists()
    assert (tmp_path / "runs/fw/r2/logs_summary.txt").exists()


def test_a_bad_capture_mode_is_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    """capture="all" raises ConfigurationError quoting it; no run directory."""
    with pytest.raises(ConfigurationError, match="capture 'all'"):
        start_run("fw", "r1", tmp_path / "runs", capture="all")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("unbuffered", [False, True], ids=["block", "unbuffered"])
@pytest.mark.parametrize("mode", ["python", "fd"])
def test_a_child_that_joins_the_run_captures_too(
    tmp_path: Path, mode: str, unbuffered: bool
) -> None:
    """A Python child joining the run records its prints in the step, once."""
    _child(
        tmp_path,
        """
        code = "import runlog; runlog.get_logger('c').info('x'); print('child says hi')"
        with run.step(5):
            subprocess.run([sys.executable, "-c", code], check=True)
        """,
        mode,
        unbuffered=unbuffered,
    )
    assert _events(tmp_path, "step_005/stdout.log") == ["child says hi"]


def test_capture_none_records_nothing(tmp_path: Path) -> None:
    """capture="none": prints reach the terminal, no stdout/stderr file exists."""
    proc = _child(tmp_path, 'with run.step(1):\n    print("only here")', "none")
    assert proc.stdout == b"only here\n"
    assert not (tmp_path / LOGS / "step_001" / "stdout.log").exists()


def test_summary_counts_output_lines_per_step_never_as_warnings(
    tmp_path: Path,
) -> None:
    """The step block says how many stdout/stderr lines; warnings stay 0."""
    _child(
        tmp_path,
        """
        with run.step(1):
            for i in range(3):
                print(i)
            print("oops", file=sys.stderr)
        with run.step(2):
            pass
        """,
    )
    summary = (tmp_path / "runs/fw/r1/logs_summary.txt").read_text()
    step1 = summary.split("Step 001")[1].split("Step 002")[0]
    step2 = summary.split("Step 002")[1].split("\n\n")[0]
    assert "  output: 3 stdout lines | 1 stderr line\n" in step1
    assert "warnings: 0 | errors: 0" in step1
    assert "output:" not in step2


def _interactive_child(
    tmp_path: Path, body: str, answer: bytes
) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNLOG_")}
    env.pop("PYTHONBREAKPOINT", None)  # breakpoint() must start pdb
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    proc = subprocess.run(
        [sys.executable, "-c", _script(body, "python")],
        cwd=tmp_path,
        env=env,
        input=answer,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc


def test_input_inside_a_step_prompts_reads_and_is_recorded(tmp_path: Path) -> None:
    """input() in a step: the prompt is shown, the answer read, the line recorded."""
    proc = _interactive_child(
        tmp_path,
        """
        with run.step(1):
            name = input("Your name? ")
            print(f"hello {name}")
        """,
        b"Ada\n",
    )
    assert proc.stdout == b"Your name? hello Ada\n"
    # the prompt and what followed it are one line on the terminal, and so
    # one record
    assert _events(tmp_path, "step_001/stdout.log") == ["Your name? hello Ada"]
    assert '"success"' in (tmp_path / LOGS / "run.json").read_text()


def test_pdb_session_inside_a_step_works_and_the_run_finishes(tmp_path: Path) -> None:
    """breakpoint() in a step: pdb reads its commands, prints on stdout, run ends."""
    proc = _interactive_child(
        tmp_path,
        """
        with run.step(1):
            value = 41
            breakpoint()
            print("after the debugger", value + 1)
        """,
        b"p 1+1\np value\nc\n",
    )
    out = proc.stdout.decode()
    assert "(Pdb) 2\n" in out
    assert "(Pdb) 41\n" in out
    # the last prompt is answered "c": the print continues its line
    assert out.endswith("(Pdb) after the debugger 42\n")
    events = _events(tmp_path, "step_001/stdout.log")
    assert "(Pdb) 2" in events
    assert "(Pdb) 41" in events
    assert events[-1] == "(Pdb) after the debugger 42"
    assert '"success"' in (tmp_path / LOGS / "run.json").read_text()


def test_ipython_kernel_cell_output_reaches_iopub_and_the_run(tmp_path: Path) -> None:
    """In a real IPython kernel a cell's print reaches iopub and the step's file."""
    from jupyter_client.manager import start_new_kernel  # the tests extra

    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNLOG_")}
    kernel, client = start_new_kernel(kernel_name="python3", cwd=str(tmp_path), env=env)
    try:
        msg_id = client.execute(
            textwrap.dedent(
                """
                import runlog
                runlog.configure(console_format="off")
                run = runlog.start_run("fw", "r1", "runs", archive=False)
                with run.step(1):
                    print("cell output")
                run.finish()
                """
            )
        )
        streams: list[tuple[str, str]] = []
        errors: list[Any] = []
        while True:
            msg = client.get_iopub_msg(timeout=60)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind = msg["msg_type"]
            if kind == "stream":
                streams.append((msg["content"]["name"], msg["content"]["text"]))
            elif kind == "error":
                errors.append(msg["content"])
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                break
    finally:
        client.stop_channels()
        kernel.shutdown_kernel(now=True)
    assert errors == []
    assert "".join(t for name, t in streams if name == "stdout") == "cell output\n"
    assert _events(tmp_path, "step_001/stdout.log") == ["cell output"]


def test_a_tee_the_app_kept_writes_on_after_an_fd_run(tmp_path: Path) -> None:
    """A tee kept by the app past an "fd" run's finish still reaches stdout."""
    proc = _child(
        tmp_path,
        """
        kept = sys.stdout
        with run.step(1):
            print("in the run")
        run.finish()
        kept.write("after finish\\n")
        kept.flush()
        """,
        "fd",
    )
    assert proc.stdout == b"in the run\nafter finish\n"
    assert _events(tmp_path, "step_001/stdout.log") == ["in the run"]


# A block-buffered stdout (a file or a pipe, as here) in a single-threaded
# process is captured by a FastTee: no Python code runs per print (see #15).


def _mode_of_stdout(proc: subprocess.CompletedProcess[bytes]) -> list[str]:
    return [
        line.split("=", 1)[1]
        for line in proc.stderr.decode().splitlines()
        if line.startswith("stdout=")
    ]


def test_block_buffered_stdout_is_captured_by_a_fast_tee(tmp_path: Path) -> None:
    """On a pipe, stdout is a FastTee; lines land in their steps, bytes unchanged."""
    body = """
        print(f"stdout={stdout_kind()}", file=sys.stderr)
        print("before")
        for n in (1, 2, 3):
            with run.step(n):
                for i in range(2000):
                    print("step", n, "line", i)
                sys.stdout.write("unterminated in %d" % n)
        print("after")
        """
    outputs = []
    for mode in ("none", "python"):
        (tmp_path / mode).mkdir()
        proc = _child(tmp_path / mode, body, mode)
        outputs.append(proc.stdout)
    assert _mode_of_stdout(proc) == ["fast"]
    assert outputs[0] == outputs[1]
    where = tmp_path / "python"
    for n in (1, 2, 3):
        records = _records(where, f"step_00{n}/stdout.log")
        assert [r["event"] for r in records] == [
            *(f"step {n} line {i}" for i in range(2000)),
            f"unterminated in {n}",
        ]
        assert records[-1]["partial"] is True
        assert {r["step"] for r in records} == {n}
    outside = [
        r["event"] for r in _records(where, "run.log") if r["component"] == "stdout"
    ]
    assert outside == ["before", "after"]


def test_a_record_keeps_its_place_among_the_lines_printed_around_it(
    tmp_path: Path,
) -> None:
    """print, log, print: combined.log and the timestamps keep that order."""
    _child(
        tmp_path,
        """
        log = runlog.get_logger("app", component="agent")
        with run.step(1):
            for i in range(3):
                print(f"printed {i}")
                log.info(f"logged {i}")
        """,
    )
    combined = (tmp_path / LOGS / "combined.log").read_text()
    order = re.findall(r"(?:printed|logged) \d", combined)
    assert order == [
        "printed 0", "logged 0", "printed 1", "logged 1", "printed 2", "logged 2"
    ]  # fmt: skip
    printed = _records(tmp_path, "step_001/stdout.log")
    logged = _records(tmp_path, "step_001/agent.log")
    for i in range(3):
        assert printed[i]["ts"] <= logged[i]["ts"]
        if i + 1 < 3:
            assert logged[i]["ts"] <= printed[i + 1]["ts"]


def test_a_thread_started_mid_run_gets_its_own_lines(tmp_path: Path) -> None:
    """A thread starting ends the fast path: both threads' lines keep their steps."""
    proc = _child(
        tmp_path,
        """
        print(f"stdout={stdout_kind()}", file=sys.stderr)
        kept = sys.stdout
        ready = threading.Barrier(2)
        def work():
            with run.step(2):
                ready.wait()
                for i in range(3000):
                    print(f"worker {i}")
        with run.step(1):
            print("main first")
            sys.stdout.write("main half ")
            worker = threading.Thread(target=work)
            worker.start()
            ready.wait()
            print(f"stdout={stdout_kind()}", file=sys.stderr)
            for i in range(3000):
                print(f"main {i}")
            print("through the kept tee", file=kept)
            worker.join()
        """,
    )
    assert _mode_of_stdout(proc) == ["fast", "StreamTee"]
    main = _events(tmp_path, "step_001/stdout.log")
    assert main == [
        "main first",
        "main half ",
        *(f"main {i}" for i in range(3000)),
        "through the kept tee",
    ]
    assert _events(tmp_path, "step_002/stdout.log") == [
        f"worker {i}" for i in range(3000)
    ]
    expected = "main first\nmain half " + "".join(
        f"main {i}\nworker {i}\n" for i in range(3000)
    )
    # only the length: CPython 3.11 itself garbles the bytes of two threads
    # printing at once to a block-buffered stream now and then
    assert len(proc.stdout) == len(expected + "through the kept tee\n")


def test_asyncio_tasks_in_their_own_steps_keep_their_lines(tmp_path: Path) -> None:
    """Tasks entering steps inside an event loop: each line in its task's step."""
    proc = _child(
        tmp_path,
        """
        import asyncio
        async def task(n):
            with run.step(n):
                for i in range(200):
                    print(f"task {n} line {i}")
                    await asyncio.sleep(0)
        async def main():
            await asyncio.gather(task(1), task(2))
        asyncio.run(main())
        print(f"stdout={stdout_kind()}", file=sys.stderr)
        """,
    )
    assert _mode_of_stdout(proc) == ["StreamTee"]
    for n in (1, 2):
        assert _events(tmp_path, f"step_00{n}/stdout.log") == [
            f"task {n} line {i}" for i in range(200)
        ]


def test_reconfigure_to_line_buffering_keeps_the_fast_tee(tmp_path: Path) -> None:
    """sys.stdout.reconfigure(line_buffering=True): same bytes, same records."""
    proc = _child(
        tmp_path,
        """
        with run.step(1):
            print("buffered")
            sys.stdout.reconfigure(line_buffering=True)
            print("line-buffered")
            sys.stderr.write(f"stdout={stdout_kind()}\\n")
        """,
    )
    assert _mode_of_stdout(proc) == ["fast"]
    assert proc.stdout == b"buffered\nline-buffered\n"
    assert _events(tmp_path, "step_001/stdout.log") == ["buffered", "line-buffered"]


def test_a_fork_records_the_parents_text_once(tmp_path: Path) -> None:
    """Text held by the FastTee at a fork is recorded by the parent only."""
    body = """
        with run.step(1):
            print("before the fork")
            pid = os.fork()
            if pid == 0:
                print("in the child")
                sys.stdout.flush()
                os._exit(0)
            os.waitpid(pid, 0)
            print("after the fork")
        """
    outputs = []
    for mode in ("none", "python"):
        (tmp_path / mode).mkdir()
        outputs.append(_child(tmp_path / mode, body, mode).stdout)
    assert outputs[0] == outputs[1]
    assert _events(tmp_path / "python", "step_001/stdout.log") == [
        "before the fork",
        "in the child",
        "after the fork",
    ]


def test_binary_writes_keep_their_place_among_text(tmp_path: Path) -> None:
    """sys.stdout.buffer.write between prints: same bytes, and recorded."""
    body = """
        with run.step(1):
            print("text one")
            sys.stdout.buffer.write(b"bytes\\n")
            print("text two")
        """
    outputs = []
    for mode in ("none", "python"):
        (tmp_path / mode).mkdir()
        outputs.append(_child(tmp_path / mode, body, mode).stdout)
    # the text waits in the stream's buffer, the bytes do not: as without runlog
    assert outputs[0] == outputs[1] == b"bytes\ntext one\ntext two\n"
    # the FastTee's buffer keeps bytes too: they are recorded in their place
    assert _events(tmp_path / "python", "step_001/stdout.log") == [
        "bytes",
        "text one",
        "text two",
    ]


def test_set_step_context_moves_the_lines_that_follow(tmp_path: Path) -> None:
    """With the process-wide set_step_context(), each line lands in its step."""
    _child(
        tmp_path,
        """
        context = runlog.LogContext.get_instance()
        for n in (4, 5):
            context.set_step_context(n)
            print(f"in step {n}")
        context.clear_step_context()
        print("outside")
        """,
    )
    assert _events(tmp_path, "step_004/stdout.log") == ["in step 4"]
    assert _events(tmp_path, "step_005/stdout.log") == ["in step 5"]
    outside = [r["event"] for r in _records(tmp_path, "run.log")]
    assert "outside" in outside
