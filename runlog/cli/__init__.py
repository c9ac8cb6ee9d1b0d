"""The ``runlog`` command line."""

from __future__ import annotations

from ._app import build_parser, main
from ._cmd_summary import gitignore_block

__all__ = ["build_parser", "gitignore_block", "main"]
