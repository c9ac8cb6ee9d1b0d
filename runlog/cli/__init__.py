"""The ``runlog`` command line."""

from __future__ import annotations

from ._commands import build_parser, gitignore_block, main

__all__ = ["build_parser", "gitignore_block", "main"]
