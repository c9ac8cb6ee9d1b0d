"""Where a run's files live on disk: name checks and every path under a run."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Final

from .errors import ContextError

_NAME_RE: Final = re.compile(r"[A-Za-z0-9_.-]{1,128}")
_STEP_DIR_RE: Final = re.compile(r"step_(\d{3,})")

RUN_JSON: Final = "run.json"
RUN_LOG: Final = "run.log"
COMBINED_LOG: Final = "combined.log"
SUMMARY_FILE: Final = "logs_summary.txt"
LOGS_DIR: Final = "logs"
METADATA_JSON: Final = "metadata.json"
METRICS_JSON: Final = "metrics.json"
ARCHIVE_NAMES: Final = {"gz": "run.tar.gz", "zst": "run.tar.zst"}
SIDECAR_SUFFIX: Final = ".sha256"


def is_safe_name(name: object) -> bool:
    """Return True if *name* is one safe path segment (SPEC §1)."""
    return (
        type(name) is str
        and not name.startswith(".")
        and _NAME_RE.fullmatch(name) is not None
    )


def check_name(kind: str, name: object) -> str:
    """
    Return *name* if it is a safe single path segment.

    Raises:
        ContextError: Naming *kind* and the bad value.
    """
    if not is_safe_name(name):
        raise ContextError(
            f"{kind} {name!r}: use 1-128 of [A-Za-z0-9_.-], not starting with '.'"
        )
    return name  # type: ignore[return-value]  # is_safe_name proved it is a str


def check_step(step_num: object) -> int:
    """
    Return *step_num* if it is an int >= 0 (a bool is not).

    Raises:
        ContextError: Naming the bad value.
    """
    if type(step_num) is not int or step_num < 0:
        raise ContextError(f"step {step_num!r}: use an int >= 0")
    return step_num


def step_dir_name(step_num: int) -> str:
    """``step_007`` for 7, ``step_1234`` for 1234: never truncated."""
    return f"step_{step_num:03d}"


def parse_step_dir(name: str) -> int | None:
    """The step number of a ``step_NNN`` directory name, else None."""
    match = _STEP_DIR_RE.fullmatch(name)
    return int(match.group(1)) if match else None


def run_dir(runs_dir: Path, framework: str, run_id: str) -> Path:
    """``runs_dir/<framework>/<run_id>``, names checked."""
    return runs_dir / check_name("framework", framework) / check_name("run_id", run_id)


def logs_dir(run_dir: Path) -> Path:
    """The run's ``logs/`` directory."""
    return run_dir / LOGS_DIR


def component_log(logs_dir: Path, component: str, step: int | None) -> Path:
    """The file a record of *component* goes to: per step, or run level when None."""
    if step is None:
        return logs_dir / f"{component}.log"
    return logs_dir / step_dir_name(step) / f"{component}.log"


def run_json(logs_dir: Path) -> Path:
    """``logs/run.json``."""
    return logs_dir / RUN_JSON


def combined_log(logs_dir: Path) -> Path:
    """``logs/combined.log``."""
    return logs_dir / COMBINED_LOG


def summary_file(run_dir: Path) -> Path:
    """``<run_dir>/logs_summary.txt``."""
    return run_dir / SUMMARY_FILE


def archive_file(run_dir: Path, fmt: str) -> Path:
    """``run.tar.gz`` or ``run.tar.zst`` in *run_dir*."""
    try:
        return run_dir / ARCHIVE_NAMES[fmt]
    except KeyError:
        raise ContextError(
            f"archive format {fmt!r}: use one of {sorted(ARCHIVE_NAMES)}"
        ) from None


def find_archive(run_dir: str | os.PathLike[str]) -> Path | None:
    """``run.tar.gz`` in *run_dir* if it is a file, else ``run.tar.zst``, else None."""
    for name in ARCHIVE_NAMES.values():
        candidate = Path(run_dir) / name
        if candidate.is_file():
            return candidate
    return None


def sidecar_file(archive: Path) -> Path:
    """``run.tar.gz.sha256`` beside *archive*."""
    return archive.with_name(archive.name + SIDECAR_SUFFIX)


def route(
    logs_dir: Path,
    component: str,
    step: int | None,
    run_level_components: frozenset[str],
) -> Path:
    """
    The file a record of *component* in *step* goes to (SPEC §1 routing).

    Run-level components go to ``logs/<component>.log``, others to
    ``logs/step_NNN/<component>.log`` inside a step and ``logs/run.log`` outside.
    """
    if component in run_level_components:
        return component_log(logs_dir, component, None)
    if step is None:
        return logs_dir / RUN_LOG
    return component_log(logs_dir, component, step)
