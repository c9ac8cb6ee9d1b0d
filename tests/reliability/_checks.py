"""Checks shared by the reliability tests: whole lines, trees, child processes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Final

import orjson

REPO: Final = Path(__file__).resolve().parents[2]
# Set to a file path to collect the figures of docs/RELIABILITY.md from a run.
FIGURES_ENV: Final = "RELIABILITY_FIGURES"
UTC_TS: Final = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
COMBINED_LINE: Final = re.compile(
    rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z (debug|info|warning|error|critical) "
)


def split_whole_lines(path: Path) -> tuple[list[bytes], bytes]:
    """The ``\\n``-terminated lines of *path*, and the unterminated rest (or b"")."""
    data = path.read_bytes()
    body, newline, rest = data.rpartition(b"\n")
    if not newline:
        return [], rest
    return body.split(b"\n"), rest


def json_lines(path: Path) -> tuple[list[dict[str, Any]], bytes]:
    """
    Every whole line of a record file as a dict, and the unterminated rest.

    Fails the test on a whole line that is not one JSON object (a torn or
    merged record) or whose ``ts`` is not RFC 3339 UTC with microseconds and
    ``Z``; blank lines are tolerated (a torn tail ended by a reader).
    """
    lines, rest = split_whole_lines(path)
    records = []
    for number, line in enumerate(lines, 1):
        if not line:
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise AssertionError(
                f"{path}:{number} is not a whole record: {line[:200]!r}"
            ) from None
        assert isinstance(record, dict), f"{path}:{number}: {line[:200]!r}"
        assert UTC_TS.fullmatch(record.get("ts") or ""), f"{path}:{number} ts"
        records.append(record)
    return records, rest


def record_files(logs_dir: Path) -> list[Path]:
    """Every JSON-lines file under *logs_dir* (all ``*.log`` but combined.log)."""
    return sorted(
        p for p in logs_dir.rglob("*.log") if p.is_file() and p.name != "combined.log"
    )


def all_paths(directory: Path) -> set[Path]:
    """Every path (files, dirs, links) below *directory*, not following links."""
    found = set()
    for root, dirs, files in os.walk(directory, followlinks=False):
        found.update(Path(root) / name for name in (*dirs, *files))
    return found


def run_python(code: str, *args: str, timeout: float = 120) -> str:
    """Run *code* in a fresh interpreter (cwd = the repository); return its stdout."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def add_figures(scenario: str, **counts: int) -> None:
    """Append *counts* for *scenario* as one JSON line to $RELIABILITY_FIGURES."""
    target = os.environ.get(FIGURES_ENV)
    if target:
        with open(target, "ab") as out:
            out.write(orjson.dumps({"scenario": scenario, **counts}) + b"\n")
