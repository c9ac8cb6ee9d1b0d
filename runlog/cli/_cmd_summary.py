"""``runlog summarize`` and ``gitignore``: the summary a reviewer reads in git."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .. import _paths, summary
from .._text import clean
from ._args import DEFAULT_RUNS_DIR, add_command, add_run_arg
from ._common import note, run_dir_of


def cmd_summarize(args: argparse.Namespace) -> int:
    """``runlog summarize``: (re)write logs_summary.txt, or check it is current."""

    run_dir = run_dir_of(args)
    if args.check:
        diff = summary.check_summary(run_dir)
        if diff is None:
            print(f"{clean(str(_paths.summary_file(run_dir)))} is up to date")
            return 0
        sys.stdout.write(diff if diff.endswith("\n") else diff + "\n")
        note(
            f"{_paths.summary_file(run_dir)} is stale: "
            f"run `runlog summarize {args.run}` and commit it"
        )
        return 1
    path = summary.summarize_run(run_dir)
    print(clean(str(path)))
    return 0


def cmd_gitignore(args: argparse.Namespace) -> int:
    """``runlog gitignore``: the block that keeps logs and archives out of git."""
    print(gitignore_block(args.runs_dir), end="")
    return 0


def gitignore_block(runs_dir: str = DEFAULT_RUNS_DIR) -> str:
    """The recommended .gitignore lines: track summaries, ignore logs and archives."""
    prefix = runs_dir.strip().strip("/") or DEFAULT_RUNS_DIR
    lines = ["# runlog: track run summaries, ignore raw logs and archives"]
    lines.append(f"{prefix}/**/{_paths.LOGS_DIR}/")
    for name in _paths.ARCHIVE_NAMES.values():
        lines.append(f"{prefix}/**/*{name.removeprefix('run')}")
        lines.append(f"{prefix}/**/*{name.removeprefix('run')}{_paths.SIDECAR_SUFFIX}")
    return "\n".join(lines) + "\n"


def register(commands: Any) -> None:
    """Add ``summarize``, ``gitignore`` to the ``runlog`` subcommands."""
    summarize = add_command(
        commands,
        "summarize",
        cmd_summarize,
        "(re)write logs_summary.txt; --check fails if it is stale",
        "Writes RUN/logs_summary.txt from the run's logs. With --check, writes "
        "nothing and\nexits 1 with a diff if the file on disk differs from what "
        "the logs give (for CI).",
        [
            "runlog summarize runs/demo/20251020T142345Z-3f9a1c",
            "runlog summarize RUN --check",
        ],
    )
    add_run_arg(summarize, help_text="a run directory with its logs/, or a run id")
    summarize.add_argument(
        "--check",
        action="store_true",
        help="exit 1 (with a diff) if logs_summary.txt would change",
    )

    gitignore = add_command(
        commands,
        "gitignore",
        cmd_gitignore,
        "print the .gitignore block: track summaries, ignore logs and archives",
        "Prints the lines to add to .gitignore so logs_summary.txt is tracked "
        "while logs/\nand archives stay out of git.",
        ["runlog gitignore >> .gitignore", "runlog gitignore --runs-dir experiments"],
    )
    gitignore.add_argument(
        "--runs-dir",
        default=DEFAULT_RUNS_DIR,
        metavar="DIR",
        help="the runs directory, relative to the repository (default: runs)",
    )
