"""
One failure, one fingerprint: what ``diff``, ``errors`` and the summary group by.

A record with an exception is known by its exception type, its message with
the parts that change from run to run masked (numbers, hex, uuids, quoted
strings, paths), and the innermost frame of user code in its traceback. A
record without one is known by its level, event and component.
"""

from __future__ import annotations

import hashlib
import re
import sysconfig
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, Final

__all__ = ["Fingerprint", "Frame", "fingerprint", "mask", "user_frame"]

_MAX_MESSAGE: Final = 200
_TRACEBACK_TAIL: Final = 64 * 1024

_MASKS: Final = (
    (
        re.compile(
            r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}"
            r"-[0-9a-fA-F]{12}\b"
        ),
        "<uuid>",
    ),
    (re.compile(r"'[^'\n]*'|\"[^\"\n]*\""), "<str>"),
    (re.compile(r"(?:[A-Za-z]:\\|~?/)[^\s:,;'\"()\[\]]+"), "<path>"),
    (
        re.compile(r"\b0[xX][0-9a-fA-F]+\b|\b(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{8,}\b"),
        "<hex>",
    ),
    (re.compile(r"\d+(?:[.,_]\d+)*(?:[eE][-+]?\d+)?"), "<n>"),
)
_FRAME: Final = re.compile(
    r'^\s*File "(?P<path>[^"]+)", line (?P<line>\d+), in (?P<func>.+)$'
)
_PYTHON_LIB: Final = re.compile(r"[/\\]lib[/\\]python\d+(?:\.\d+)?[/\\]")
_EXCEPTION_LINE: Final = re.compile(
    r"^(?P<type>[A-Za-z_][\w.]*)(?::\s?(?P<message>.*))?$"
)


def mask(text: str) -> str:
    """*text* with numbers, hex, uuids, quoted strings and paths masked."""
    for pattern, token in _MASKS:
        text = pattern.sub(token, text)
    return text


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame of a traceback: ``path:line in func``."""

    path: str
    line: int
    func: str

    def __str__(self) -> str:
        return f"{PurePath(self.path).name}:{self.line} in {self.func}"


def _library_roots() -> tuple[str, ...]:
    roots = {
        sysconfig.get_path(name)
        for name in ("stdlib", "platstdlib", "purelib", "platlib")
    }
    roots.add(str(PurePath(__file__).parents[1]))  # runlog itself
    return tuple(sorted(root for root in roots if root))


_LIBRARY_ROOTS: Final = _library_roots()


def _is_library(path: str) -> bool:
    return (
        path.startswith("<")
        or "site-packages" in path
        or "dist-packages" in path
        or path.startswith(_LIBRARY_ROOTS)
        or _PYTHON_LIB.search(path) is not None
    )


def user_frame(traceback: str) -> Frame | None:
    """
    The innermost frame of user code in *traceback* (Python's text format).

    Frames of the standard library, installed packages and runlog are passed
    over; when every frame is one of those, the innermost frame is returned.
    """
    frames = []
    for line in traceback[-_TRACEBACK_TAIL:].splitlines():
        match = _FRAME.match(line)
        if match:
            frames.append(
                Frame(match["path"], int(match["line"]), match["func"].strip())
            )
    for frame in reversed(frames):
        if not _is_library(frame.path):
            return frame
    return frames[-1] if frames else None


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """
    What one kind of failure is known by.

    Attributes:
        kind: The exception's class name without its module (``ValueError``,
            ``JSONDecodeError``), or for a record without
            an exception its level (``error``).
        message: The masked message, or the event and component.
        frame: ``file.py in func`` of the innermost user frame, or ``""``.
        key: 12 hex digits of a hash over the three; equal failures have
            equal keys across runs and machines.
    """

    kind: str
    message: str
    frame: str
    key: str

    def __str__(self) -> str:
        where = f" ({self.frame})" if self.frame else ""
        return f"{self.kind}: {self.message}{where}" if self.message else self.kind


def _traceback_of(rec: Mapping[str, Any]) -> str:
    for key in ("exception", "traceback"):
        value = rec.get(key)
        if isinstance(value, str) and value.strip():
            return value
    return ""


def _exception_of(rec: Mapping[str, Any], traceback: str) -> tuple[str, str] | None:
    kind, error = rec.get("error_type"), rec.get("error")
    if isinstance(kind, str) and kind:
        return kind, error if isinstance(error, str) else ""
    for line in reversed(traceback[-_TRACEBACK_TAIL:].splitlines()):
        if line.strip() and not line.startswith((" ", "\t")):
            match = _EXCEPTION_LINE.match(line.strip())
            if match:
                return match["type"], match["message"] or ""
            break
    return None


def fingerprint(rec: Mapping[str, Any]) -> Fingerprint:
    """The fingerprint of one record (meant for warnings, errors and criticals)."""
    traceback = _traceback_of(rec)
    exception = _exception_of(rec, traceback)
    if exception is not None:
        # a traceback names `pkg.mod.Error`, step_end's error_type only `Error`
        kind = exception[0].rpartition(".")[2]
        message = mask(
            exception[1].strip().splitlines()[0] if exception[1].strip() else ""
        )
        frame = user_frame(traceback) if traceback else None
        where = f"{PurePath(frame.path).name} in {frame.func}" if frame else ""
    else:
        level, event, component = (
            rec.get("level"),
            rec.get("event"),
            rec.get("component"),
        )
        kind = level if isinstance(level, str) else "error"
        message = mask(event if isinstance(event, str) else repr(event))
        if isinstance(component, str):
            message = f"{message} [{component}]"
        where = ""
    message = message[:_MAX_MESSAGE]
    digest = hashlib.blake2b(
        "\0".join((kind, message, where)).encode("utf-8", "backslashreplace"),
        digest_size=6,
    ).hexdigest()
    return Fingerprint(kind=kind, message=message, frame=where, key=digest)
