"""The ``runlog`` command line."""

from __future__ import annotations

from ._app import build_parser, main
from ._args import DEFAULT_RUNS_DIR

__all__ = ["build_parser", "gitignore_block", "main"]


def gitignore_block(runs_dir: str = DEFAULT_RUNS_DIR) -> str:
    """The recommended .gitignore lines: track summaries, ignore logs and archives."""
    from ._cmd_summary import gitignore_block as block  # not on every start

    return block(runs_dir)
