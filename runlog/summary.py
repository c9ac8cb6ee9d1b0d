"""LogSummarizer: the git-tracked logs_summary.txt."""

from __future__ import annotations


class LogSummarizer:
    """Placeholder until the summarizer lands."""
