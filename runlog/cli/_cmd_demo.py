"""``runlog demo``: run the built-in orchestrator and show what it left."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from .._config import apply_settings, current_settings
from ..reading._merge import read_records
from ..reading._source import Filters, RunSource
from ._args import DEFAULT_RUNS_DIR, add_color, add_command
from ._common import print_entries
from ._render import Style, wants_color


def cmd_demo(args: argparse.Namespace) -> int:
    """``runlog demo``: run the built-in orchestrator and show what it left."""
    from . import _demo  # it loads structlog and more: not on every `runlog` start

    runs_dir = Path(args.runs_dir)
    previous = current_settings()
    # the records are printed below, readably, once the run is complete
    apply_settings(replace(previous, console_format="off"))
    try:
        result = _demo.run_demo(runs_dir, archive_format=args.format)
    finally:
        apply_settings(previous)
    style = Style(wants_color(args.color, sys.stdout))
    source = RunSource(result.run_dir)
    print(style("1", "The demo run's records (info and up; tracebacks cut short):"))
    print_entries(read_records(source, Filters(min_level=20)), style, block_lines=2)
    print()
    print(style("1", "The top of its summary:"))
    for line in _summary_head(result.summary):
        print(f"  {line}")
    run = _demo.short_path(result.run_dir)
    print()
    print(style("1", f"run      {run}  ({result.status})"))
    print(f"logs     {run}/logs/  (step_001/ .. step_{result.steps:03d}/)")
    print(f"summary  {_demo.short_path(result.summary)}")
    if result.archive is not None:
        print(f"archive  {_demo.short_path(result.archive)}")
    print()
    print(style("1", "try next:"))
    for line in _demo.next_commands(result):
        print(f"  {line}")
    return 0


def _summary_head(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ["(no summary was written)"]
    head = text.split("\n\n", 1)[0]
    return head.splitlines()[:5]


def register(commands: Any) -> None:
    """Add ``demo`` to the ``runlog`` subcommands."""
    demo = add_command(
        commands,
        "demo",
        cmd_demo,
        "run a small built-in orchestrator and show the run it leaves",
        "Runs a built-in orchestrator (5 steps; components orchestrator, adapter, "
        "metrics, validator;\nan LLM-like adapter with token counts, a retried "
        "step, a human-in-the-loop event,\na third-party logger, a warning and a "
        "handled error), then prints its records,\nwhere its logs, summary and "
        "archive are, and what to try next.",
        [
            "runlog demo",
            "runlog demo --runs-dir /tmp/runs",
            "runlog demo --format zst",
        ],
    )
    demo.add_argument(
        "--runs-dir",
        default=DEFAULT_RUNS_DIR,
        metavar="DIR",
        help="where to create demo/<run_id>/ (default: runs)",
    )
    demo.add_argument(
        "--format", choices=("gz", "zst"), default="gz", help="archive format"
    )
    add_color(demo)
