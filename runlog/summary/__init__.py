"""``logs_summary.txt``: counts per step (scan) and the text a reviewer reads."""

from __future__ import annotations

from ._layout import SummaryLimits, SummarySection
from ._summarizer import LogSummarizer, check_summary, summarize_run

__all__ = [
    "LogSummarizer",
    "SummaryLimits",
    "SummarySection",
    "check_summary",
    "summarize_run",
]
