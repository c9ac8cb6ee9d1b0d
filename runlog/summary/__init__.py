"""``logs_summary.txt``: counts per step (scan) and the text a reviewer reads."""

from __future__ import annotations

from ._summarizer import LogSummarizer, SummaryLimits, check_summary, summarize_run

__all__ = ["LogSummarizer", "SummaryLimits", "check_summary", "summarize_run"]
