"""run_command: a program run inside the current step, its output streamed to a log."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

from .._logger import RunlogLogger
from .._records import LEVEL_NUMBERS
from ..errors import CommandError, ConfigurationError, LogWriteError
from ..loggers import get_logger
from ._env import child_env
from ._propagate import wrap
from ._signals import block_termination_signals

# A line longer than this is logged in pieces, so one endless line cannot
# exhaust memory.
MAX_LINE_BYTES: Final = 1 << 20
TAIL_LINES: Final = 20
# How often a waiting run_command checks the child, and so how soon a signal
# handler (SIGTERM under a run) runs in the waiting thread.
_POLL_S: Final = 0.02


@dataclass(frozen=True, slots=True)
class CommandResult:
    """
    How a command run by :func:`run_command` ended.

    Attributes:
        args: The command line.
        pid: The child's process id.
        returncode: The exit status; ``-N`` when signal N killed it.
        duration_s: Wall time from start to exit (monotonic clock).
        stdout_lines: Lines read from its stdout.
        stderr_lines: Lines read from its stderr.
        timed_out: True when *timeout* expired and runlog stopped it.
        stderr_tail: Its last stderr lines (at most 20).
    """

    args: tuple[str, ...]
    pid: int
    returncode: int
    duration_s: float
    stdout_lines: int
    stderr_lines: int
    timed_out: bool = False
    stderr_tail: tuple[str, ...] = ()

    @property
    def signal(self) -> str | None:
        """The name of the signal that killed the command (``"SIGKILL"``), else None."""
        return signal_name(self.returncode)

    @property
    def ok(self) -> bool:
        """True when the command exited with status 0."""
        return self.returncode == 0

    @property
    def status(self) -> str:
        """``success``, ``failed`` (non-zero exit), ``killed`` or ``timeout``."""
        if self.timed_out:
            return "timeout"
        if self.returncode == 0:
            return "success"
        return "killed" if self.returncode < 0 else "failed"

    def check_returncode(self) -> None:
        """
        Raise if the command did not succeed.

        Raises:
            CommandError: With the return code, the command and the stderr tail.
        """
        if self.returncode != 0:
            raise CommandError(
                self.returncode, list(self.args), stderr="\n".join(self.stderr_tail)
            )


def signal_name(returncode: int) -> str | None:
    """``"SIGTERM"`` for a return code of -15; None for a normal exit."""
    if returncode >= 0:
        return None
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def _level(option: str, value: str | int) -> int:
    if type(value) is int and value >= 0:
        return value
    if isinstance(value, str) and value.lower() in LEVEL_NUMBERS:
        return LEVEL_NUMBERS[value.lower()]
    raise ConfigurationError(
        f"{option} {value!r}: use one of {list(LEVEL_NUMBERS)} or a level number"
    )


class _Reader:
    """Reads one pipe to its end, logging each line; keeps draining on errors."""

    def __init__(
        self, pipe: IO[bytes], stream: str, log: RunlogLogger, level: int, tail: int
    ) -> None:
        self.pipe = pipe
        self.stream = stream
        self.log = log
        self.level = level
        self.lines = 0
        self.tail: deque[str] = deque(maxlen=tail)
        self.failure: LogWriteError | None = None

    def run(self) -> None:
        block_termination_signals()
        with self.pipe:
            for raw in iter(lambda: self.pipe.readline(MAX_LINE_BYTES), b""):
                line = raw.removesuffix(b"\n").removesuffix(b"\r")
                text = line.decode("utf-8", "backslashreplace")
                self.lines += 1
                self.tail.append(text)
                if self.failure is not None:
                    continue  # still drain the pipe, or the child blocks on write
                try:
                    self.log.log(self.level, text, stream=self.stream)
                except LogWriteError as exc:
                    self.failure = exc


def _wait(process: subprocess.Popen[bytes], timeout: float | None) -> int:
    """
    ``process.wait(timeout)`` that keeps running bytecode while it waits.

    A blocking ``waitpid`` is not interrupted by a signal the kernel gave to
    another thread, so the SIGTERM handler would only run once the command
    ended; polling lets it run within ``_POLL_S``.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        returncode = process.poll()
        if returncode is not None:
            return returncode
        if deadline is not None and time.monotonic() >= deadline:
            raise subprocess.TimeoutExpired(process.args, timeout or 0.0)
        time.sleep(_POLL_S)


def _stop(process: subprocess.Popen[bytes], grace_s: float) -> int:
    """SIGTERM the command's process group, SIGKILL it after *grace_s*; its status."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with suppress(ProcessLookupError):  # the group has already gone
            os.killpg(process.pid, sig)
        try:
            return process.wait(grace_s if sig == signal.SIGTERM else None)
        except subprocess.TimeoutExpired:
            continue
    return process.wait()


def run_command(
    args: Sequence[str | os.PathLike[str]],
    *,
    component: str = "command",
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    check: bool = False,
    stdout_level: str | int = "info",
    stderr_level: str | int = "info",
    kill_after_s: float = 5.0,
) -> CommandResult:
    """
    Run a program in the current step, logging its output and how it ended.

    Each stdout/stderr line becomes one record of *component* in the caller's
    step (``step_NNN/<component>.log``; ``run.log`` outside a step) with the
    line as ``event`` and ``stream`` set to ``"stdout"`` or ``"stderr"``.
    ``command_start`` (``argv``, ``cwd``, ``pid``) and ``command_end``
    (``status``, ``returncode``, ``signal``, ``duration_s``, line counts,
    ``timed_out``) frame them. The child inherits the run and the caller's
    step (``RUNLOG_*``), so a child that uses runlog logs into the same files,
    with its console off (``RUNLOG_CONSOLE=off``) so its records do not come
    back here a second time as stderr lines.
    Its stdin is ``/dev/null``; it runs in its own process group, which is
    stopped (SIGTERM, then SIGKILL after *kill_after_s*) on timeout or when
    the caller is interrupted (KeyboardInterrupt, SIGTERM under a run).

    Args:
        args: The program and its arguments (a list, not a shell string).
        component: The log the output and the command records go to.
        cwd: Working directory of the child.
        env: Its environment (default: this process's); RUNLOG_* are added.
        timeout: Seconds before the command is stopped; None waits forever.
        check: Raise :class:`CommandError` if it exits non-zero or is killed.
        stdout_level: Level of stdout lines.
        stderr_level: Level of stderr lines.
        kill_after_s: Grace between SIGTERM and SIGKILL when stopping it.

    Returns:
        A :class:`CommandResult`.

    Raises:
        CommandError: With *check*, when the command did not succeed.
        ConfigurationError: For a shell string, an empty command or a bad level.
        OSError: If the program cannot be started (logged as ``command_end``
            with ``status`` ``not_started`` first).
        LogWriteError: If its output could not be logged (after it ended).
    """
    if isinstance(args, (str, bytes)) or not args:
        raise ConfigurationError(
            f"args {args!r}: use a non-empty list such as ['prog', 'arg']; "
            "for a shell line use ['sh', '-c', line]"
        )
    argv = [os.fsdecode(arg) for arg in args]
    levels = (
        _level("stdout_level", stdout_level),
        _level("stderr_level", stderr_level),
    )
    log = get_logger(Path(argv[0]).name or "command", component=component)
    workdir = os.fsdecode(cwd) if cwd is not None else os.getcwd()
    started = time.monotonic()
    try:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            # the child's console is its stderr, which becomes records here
            env=child_env(dict(env) if env is not None else None, console=False),
            start_new_session=True,
        )
    except OSError as exc:
        log.exception(
            "command_end",
            argv=argv,
            cwd=workdir,
            status="not_started",
            error_type=type(exc).__name__,
            error=str(exc),
        )
        raise
    log.info("command_start", argv=argv, cwd=workdir, pid=process.pid)
    assert process.stdout is not None
    assert process.stderr is not None
    readers = (
        _Reader(process.stdout, "stdout", log, levels[0], 0),
        _Reader(process.stderr, "stderr", log, levels[1], TAIL_LINES),
    )
    threads = [
        threading.Thread(
            target=wrap(reader.run), name=f"runlog-{reader.stream}", daemon=True
        )
        for reader in readers
    ]
    for thread in threads:
        thread.start()
    timed_out = False
    try:
        try:
            returncode = _wait(process, timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            returncode = _stop(process, kill_after_s)
    except BaseException as exc:
        # interrupted while waiting: stop the child, record it, re-raise
        returncode = _stop(process, kill_after_s)
        for thread in threads:
            thread.join()
        _log_end(log, "interrupted", returncode, started, readers, timed_out, exc)
        raise
    for thread in threads:
        thread.join()
    result = CommandResult(
        args=tuple(argv),
        pid=process.pid,
        returncode=returncode,
        duration_s=round(time.monotonic() - started, 6),
        stdout_lines=readers[0].lines,
        stderr_lines=readers[1].lines,
        timed_out=timed_out,
        stderr_tail=tuple(readers[1].tail),
    )
    _log_end(log, result.status, returncode, started, readers, timed_out, None)
    for reader in readers:
        if reader.failure is not None:
            raise reader.failure
    if check:
        result.check_returncode()
    return result


def _log_end(
    log: RunlogLogger,
    status: str,
    returncode: int,
    started: float,
    readers: tuple[_Reader, _Reader],
    timed_out: bool,
    error: BaseException | None,
) -> None:
    fields: dict[str, Any] = {
        "status": status,
        "returncode": returncode,
        "signal": signal_name(returncode),
        "duration_s": round(time.monotonic() - started, 6),
        "stdout_lines": readers[0].lines,
        "stderr_lines": readers[1].lines,
        "timed_out": timed_out,
    }
    if error is not None:
        fields["error_type"] = type(error).__name__
        fields["error"] = str(error)
    level = 20 if status == "success" else 30 if status == "interrupted" else 40
    log.log(level, "command_end", **fields)
