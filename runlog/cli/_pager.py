"""The pager long output goes through on a terminal, as git does (see #16)."""

from __future__ import annotations

import io
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Final

from .._text import clean

DEFAULT_PAGER: Final = "less -FRX"
NO_PAGER_FLAG: Final = "--no-pager"


def pager_command(environ: Mapping[str, str]) -> str | None:
    """
    The pager to use: ``RUNLOG_PAGER``, else ``PAGER``, else ``less -FRX``.

    None (no pager) when the one that is set is empty or ``cat``, as in git.
    """
    value = environ.get("RUNLOG_PAGER")
    if value is None:
        value = environ.get("PAGER")
    if value is None:
        value = DEFAULT_PAGER
    value = value.strip()
    return None if value in ("", "cat") else value


def strip_no_pager(argv: list[str]) -> tuple[list[str], bool]:
    """
    *argv* without ``--no-pager``, and whether it was there.

    ``--no-pager`` is global: it may come before or after the command, but
    not after a ``--`` (from there on, words are operands).
    """
    out: list[str] = []
    found = False
    for index, word in enumerate(argv):
        if word == "--":
            out.extend(argv[index:])
            break
        if word == NO_PAGER_FLAG:
            found = True
        else:
            out.append(word)
    return out, found


class _PagedStdout(io.TextIOWrapper):
    """stdout into the pager: still "a terminal", so colors stay on (less -R)."""

    def isatty(self) -> bool:
        return True


def _stdout_is_terminal() -> bool:
    try:
        return sys.stdout.isatty() and os.isatty(sys.stdout.fileno())
    except (AttributeError, ValueError):  # replaced or closed: no terminal
        return False


@contextmanager
def paged(enabled: bool) -> Iterator[None]:
    """
    Send what is printed inside to the pager when *enabled* and stdout is a
    terminal; otherwise do nothing.

    Both ``sys.stdout`` and file descriptor 1 point at the pager's input
    while inside, so child processes page too. ``LESS=FRX`` is set when
    ``LESS`` is not (``-F``: output shorter than the screen is printed and
    less exits at once). When the pager is quit before the output ends,
    the rest is dropped and ``BrokenPipeError`` propagates, as without a
    pager. Waits for the pager to exit.

    A pager that cannot be started (not installed, bad quoting in PAGER)
    is named in a warning on stderr and the output printed without it.
    """
    command = pager_command(os.environ) if enabled else None
    if command is None or not _stdout_is_terminal():
        yield
        return
    env = dict(os.environ)
    env.setdefault("LESS", "FRX")
    env.setdefault("LV", "-c")
    sys.stdout.flush()
    # shell=False with the command split as a shell would, so PAGER='less -S'
    # works and nothing in it is run by a shell
    try:
        pager = subprocess.Popen(shlex.split(command), stdin=subprocess.PIPE, env=env)
    except (OSError, ValueError) as exc:  # not found, not runnable, bad quoting
        # as git does: say so, and print without a pager
        reason = exc.strerror if isinstance(exc, OSError) else str(exc)
        sys.stderr.write(
            clean(
                f"runlog: warning: cannot run the pager {command!r} ({reason}); "
                "printing without it (set RUNLOG_PAGER to choose another)"
            )
            + "\n"
        )
        yield
        return
    assert pager.stdin is not None  # stdin=PIPE
    saved_fd = os.dup(1)
    saved_stdout = sys.stdout
    os.dup2(pager.stdin.fileno(), 1)
    pager.stdin.close()
    fd = os.dup(1)
    stream = _PagedStdout(
        io.BufferedWriter(io.FileIO(fd, "w", closefd=True)),
        encoding=saved_stdout.encoding,
        errors=saved_stdout.errors,
    )
    sys.stdout = stream
    try:
        yield
    finally:
        sys.stdout = saved_stdout
        try:
            # also what was written to a stdout object kept from before
            saved_stdout.flush()
            stream.flush()
        except BrokenPipeError:
            # the pager was quit early: what it did not take is dropped
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, fd)
            os.close(devnull)
        stream.close()
        os.dup2(saved_fd, 1)
        os.close(saved_fd)
        pager.wait()
