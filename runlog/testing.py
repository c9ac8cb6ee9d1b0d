"""
Helpers for testing code that logs with runlog.

``capture_records()`` collects the records runlog makes, as the dicts it
writes. The pytest fixture ``runlog_run`` (a run under ``tmp_path``, always
closed) lives in :mod:`runlog.integrations.pytest_plugin`, which pytest loads
through the ``pytest11`` entry point once runlog is installed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import orjson

from ._config import apply_settings, current_settings
from ._records import dumps_line

__all__ = ["RecordCapture", "capture_records"]

_lock = threading.Lock()  # two captures ending together keep each other's sink


class RecordCapture:
    """
    An extra sink that keeps every record it gets, as written.

    Each record goes through the same serializer as the run's files, so a
    captured dict equals the parsed line: redacted, values that JSON cannot
    hold replaced by their fallbacks (a set as a sorted list, an object as
    its ``str()``), tuples as lists. Thread-safe (``list.append``).
    """

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def __call__(self, record: Mapping[str, Any]) -> None:
        """Keep one finished record."""
        self.records.append(orjson.loads(dumps_line(record)))


@contextmanager
def capture_records() -> Iterator[list[dict[str, Any]]]:
    """
    Collect the records runlog makes inside the block, as the dicts it writes.

    Like ``structlog.testing.capture_logs``, for runlog: each record is the
    dict of one line of a step file (SPEC key order: ``ts``, ``level``,
    ``event``, ``logger``, ``component``, ``run_id``, ``framework``,
    ``step``, then the caller's pairs, and ``exception`` for a traceback),
    after redaction. Records still go where they would go (files, console,
    other sinks); with no run set, ``run_id`` and ``step`` are None and
    nothing is written. Records below every destination's level are never
    made, so they are not captured either. Records of stdlib loggers that
    runlog writes during a run (component ``external``) are captured too.

    Captures nest, and ``configure()`` inside the block keeps the capture.
    Not guaranteed: a ``configure()`` or ``apply_settings()`` running in
    another thread at the moment the block starts or ends may drop or keep
    the capture's sink.

    Yields:
        The list the records are appended to, in the order they were made.

    Example::

        with capture_records() as records:
            get_logger("app", component="adapter").info("call", api_key="sk-1")
        assert records[0]["api_key"] == "***"
    """
    capture = RecordCapture()
    with _lock:
        settings = current_settings()
        apply_settings(replace(settings, extra_sinks=(*settings.extra_sinks, capture)))
    try:
        yield capture.records
    finally:
        with _lock:
            settings = current_settings()
            sinks = tuple(s for s in settings.extra_sinks if s is not capture)
            if sinks != settings.extra_sinks:
                apply_settings(replace(settings, extra_sinks=sinks))
