"""The header of a ``logs_summary.txt``, read back for ``runlog ls``."""

from __future__ import annotations

import errno
import os
import re
import stat
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

from .._status import parse_time
from ..errors import RunlogError

# the header is the first dozen lines; a summary is at most 10 KB (SPEC 4),
# so reading more than this never helps and bounds what a hostile file costs
HEAD_BYTES: Final = 16 * 1024
# a count with more digits than this is not one runlog wrote
_MAX_DIGITS: Final = 15
_STATUS: Final = re.compile(r"Status: ([A-Z]{1,20})\b")
# the words a summary's status line uses (docs/SUMMARY.md); a cut one is not
STATUS_WORDS: Final = frozenset(
    {"success", "failed", "interrupted", "incomplete", "crashed", "running", "unknown"}
)
_STEPS: Final = re.compile(rf"Steps: +(\d{{1,{_MAX_DIGITS}}})\b")
_COUNTS: Final = re.compile(
    rf"Errors: (\d{{1,{_MAX_DIGITS}}}) \| warnings: (\d{{1,{_MAX_DIGITS}}})\b"
)
_FIELD: Final = re.compile(r"(Run ID|Framework|Started|Duration): +(\S.{0,200})")
_DURATION_PART: Final = re.compile(r"(\d{1,9}(?:\.\d{1,6})?)(ms|s|m|h|d)")
_UNIT_S: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


@dataclass(frozen=True, slots=True)
class SummaryHead:
    """What the header of a ``logs_summary.txt`` says about its run."""

    status: str  # lower case: success, failed, crashed, incomplete, ...
    run_id: str | None
    framework: str | None
    started: datetime | None  # to the second, as the summary prints it
    duration_s: float | None  # to the unit the summary prints
    steps: int | None
    errors: int | None
    warnings: int | None


def parse_duration(text: str) -> float | None:
    """
    Seconds from a duration as ``format_duration`` prints it, else None.

    ``181ms``, ``2.5s``, ``2m 34s``, ``1h 02m 05s``, ``1d 01h``.
    """
    parts = text.split()
    if not parts or len(parts) > 4:
        return None
    total = 0.0
    for part in parts:
        match = _DURATION_PART.fullmatch(part)
        if match is None:
            return None
        total += float(match.group(1)) * _UNIT_S[match.group(2)]
    return total


def parse_summary_head(text: str) -> SummaryHead | None:
    """
    The header fields of summary *text*; None without a ``Status:`` line
    naming one of :data:`STATUS_WORDS`.

    Only the lines before the first ``== Section ==`` are read: the totals
    further down repeat some of the same words.
    """
    fields: dict[str, str] = {}
    status: str | None = None
    steps: int | None = None
    counts: tuple[int, int] | None = None
    for line in text.splitlines():
        if line.startswith("== "):
            break
        if status is None and (match := _STATUS.match(line)):
            word = match.group(1).lower()
            status = word if word in STATUS_WORDS else None
        elif steps is None and (match := _STEPS.match(line)):
            steps = int(match.group(1))
        elif counts is None and (match := _COUNTS.match(line)):
            counts = int(match.group(1)), int(match.group(2))
        elif match := _FIELD.match(line):
            fields.setdefault(match.group(1), match.group(2).strip())
    if status is None:
        return None
    duration = fields.get("Duration")
    return SummaryHead(
        status=status,
        run_id=fields.get("Run ID"),
        framework=fields.get("Framework"),
        started=parse_time(fields.get("Started")),
        duration_s=parse_duration(duration) if duration else None,
        steps=steps,
        errors=counts[0] if counts else None,
        warnings=counts[1] if counts else None,
    )


def read_summary_head(path: Path) -> SummaryHead:
    """
    The header of the summary at *path*, read without trusting the file.

    Only a regular file is read (a FIFO would block for ever), and only its
    first :data:`HEAD_BYTES`; bytes that are not UTF-8 are replaced.

    Raises:
        RunlogError: If the file cannot be read, is not a regular file, or
            has no ``Status:`` line in its header (names the path).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise RunlogError(
            f"summary {str(path)!r} cannot be read: {exc.strerror or exc}"
        ) from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise RunlogError(f"summary {str(path)!r} is not a regular file")
        try:
            raw = os.read(fd, HEAD_BYTES)
        except OSError as exc:
            reason = exc.strerror or errno.errorcode.get(exc.errno or 0, str(exc))
            raise RunlogError(
                f"summary {str(path)!r} cannot be read: {reason}"
            ) from exc
    finally:
        os.close(fd)
    head = parse_summary_head(raw.decode("utf-8", "replace"))
    if head is None:
        raise RunlogError(
            f"summary {str(path)!r} has no 'Status:' line with a status: "
            "not a runlog summary, or cut short"
        )
    return head
