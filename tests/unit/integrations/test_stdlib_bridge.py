"""The stdlib bridge in this process: caplog sees redacted records with fields."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from runlog import configure, get_logger
from runlog._config import current_settings
from runlog.integrations.stdlib import StdlibSink


def test_caplog_gets_the_record_with_its_fields_redacted(
    run_logs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With stdlib_propagate, a runlog record reaches caplog once, redacted."""
    configure(console_format="off", stdlib_propagate=True)
    with caplog.at_level(logging.INFO):
        get_logger("app.pay", component="billing").warning(
            "payment_failed", order_id=7, api_key="sk-secret-value-1"
        )
    [record] = [r for r in caplog.records if r.name == "app.pay"]
    assert record.getMessage() == "payment_failed"
    assert record.levelno == logging.WARNING
    assert (record.component, record.order_id, record.api_key) == (
        "billing",
        7,
        "***",
    )
    assert "sk-secret-value-1" not in (run_logs / "run.log").read_text()


def test_an_exception_reaches_caplog_as_its_traceback_text(
    run_logs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """log.exception() hands the traceback text to stdlib handlers."""
    configure(console_format="off", stdlib_propagate=True)
    try:
        raise ValueError("bad value 42")
    except ValueError:
        with caplog.at_level(logging.ERROR):
            get_logger("app.x").exception("failed")
    [record] = [r for r in caplog.records if r.name == "app.x"]
    assert "ValueError: bad value 42" in (record.exc_text or "")


def test_the_bridge_is_a_sink_only_while_the_setting_is_on(run_logs: Path) -> None:
    """Turning stdlib_propagate on adds one StdlibSink; off removes it."""
    configure(stdlib_propagate=True)
    sinks = [s for s in current_settings().extra_sinks if isinstance(s, StdlibSink)]
    assert len(sinks) == 1
    configure(stdlib_propagate=False)
    assert not any(isinstance(s, StdlibSink) for s in current_settings().extra_sinks)
