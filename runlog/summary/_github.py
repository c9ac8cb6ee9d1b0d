"""
GitHub Actions output: workflow-command annotations on lines of a committed
``logs_summary.txt``, and the job summary file (``$GITHUB_STEP_SUMMARY``).

Annotations are read back from the summary text itself, so they point at the
lines a reviewer sees in the pull request, also in a clone that has only the
committed summary and no logs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from .._text import clean
from ..errors import ConfigurationError, LogWriteError

STEP_SUMMARY_ENV: Final = "GITHUB_STEP_SUMMARY"
# GitHub shows at most 10 error and 10 warning annotations of one step
MAX_PER_LEVEL: Final = 10
_STORY: Final = re.compile(
    r"(?:Failed|Interrupted|Incomplete|Unknown) step \d+|Crashed: |Retried step \d+"
)
_SUBSECTION: Final = re.compile(r"(Errors|Warnings) \(\d+\):$")
_OWN_LINE: Final = ("at ", "see ", "runlog show ")
_ENTRY: Final = "    "  # an entry's message, under its location line


def escape_data(text: str) -> str:
    """
    *text* as the message of a workflow command: ``%``, CR and LF escaped.

    With its line breaks escaped a message is one line, so nothing in it
    (``::error::``, ``::add-mask::``) can start another command.
    """
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """*text* as a property value: as :func:`escape_data`, plus ``:`` and ``,``."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


@dataclass(frozen=True, slots=True)
class Annotation:
    """One ``::error``/``::warning`` on a line (1-based) of the summary."""

    level: str  # error or warning
    line: int
    title: str
    message: str

    def command(self, file: str) -> str:
        """The workflow command for this annotation on *file*."""
        return (
            f"::{self.level} file={escape_property(file)},line={self.line},"
            f"title={escape_property(self.title)}::{escape_data(self.message)}"
        )


def _block(lines: list[str], start: int, indent: str) -> str:
    """
    Line *start* and the lines after it indented by *indent*, as one text:
    lines wrapped to fit 80 columns joined again, ``at``/``see``/``runlog``
    lines kept on lines of their own.
    """
    # a committed summary is a file anyone can edit: escape it again
    out = [clean(lines[start].strip())]
    for number, line in enumerate(lines[start + 1 :]):
        if not line.startswith(indent):
            break
        text = clean(line.strip())
        if text.startswith(_OWN_LINE) or (indent == _ENTRY and number == 0):
            out.append(text)
        else:
            out[-1] += f" {text}"
    return "\n".join(out)


def find_annotations(summary: str) -> list[Annotation]:
    """
    The annotations of summary text: its first failure (or crash, or retry)
    in the header, then each listed error and warning, at most
    :data:`MAX_PER_LEVEL` of each level.
    """
    lines = summary.splitlines()
    found: list[Annotation] = []
    status = lines[0].removeprefix("Status: ") if lines else ""
    index = 1
    while index < len(lines) and lines[index]:
        line = lines[index]
        if _STORY.match(line):
            level = "warning" if line.startswith("Retried") else "error"
            text = _block(lines, index, "  ")
            after = lines[index + 1] if index + 1 < len(lines) else ""
            if line.startswith("Crashed: ") and after.startswith("Last record: "):
                text += f"\n{clean(after)}"
            title = f"runlog: run {clean(status)}"
            found.append(Annotation(level, index + 1, title, text))
        index += 1
    section = ""
    kind = ""
    for number in range(index, len(lines)):
        line = lines[number]
        if line.startswith("== "):
            section, kind = line, ""
            continue
        if not section.startswith("== Errors and warnings"):
            continue
        match = _SUBSECTION.match(line)
        if match:
            kind = "error" if match.group(1) == "Errors" else "warning"
        elif kind and line.startswith("  ") and not line.startswith("   "):
            if line.startswith(("  ... and ", "  none")):
                continue
            title = f"runlog: {kind} in the run"
            found.append(
                Annotation(kind, number + 1, title, _block(lines, number, _ENTRY))
            )
    kept: list[Annotation] = []
    for level in ("error", "warning"):
        kept += [a for a in found if a.level == level][:MAX_PER_LEVEL]
    return sorted(kept, key=lambda a: a.line)


def workflow_commands(summary: str, file: str) -> list[str]:
    """The workflow commands that annotate *file*, whose text is *summary*."""
    return [annotation.command(file) for annotation in find_annotations(summary)]


def append_step_summary(
    markdown: str, environ: Mapping[str, str] | None = None
) -> Path:
    """
    Append *markdown* to the job summary file named by ``$GITHUB_STEP_SUMMARY``.

    Raises:
        ConfigurationError: If the variable is not set (names it).
        LogWriteError: If the file cannot be written (path and OS reason).
    """
    env = os.environ if environ is None else environ
    name = env.get(STEP_SUMMARY_ENV, "")
    if not name:
        raise ConfigurationError(
            f"{STEP_SUMMARY_ENV} is not set: --github writes the job summary "
            "there (GitHub Actions sets it in every step)"
        )
    path = Path(name)
    try:
        # GitHub's own file, appended to by every step: not ours to replace
        with path.open("a", encoding="utf-8") as out:
            out.write(markdown if markdown.endswith("\n") else markdown + "\n")
    except OSError as exc:
        raise LogWriteError(exc.errno, exc.strerror, str(path)) from exc
    return path
