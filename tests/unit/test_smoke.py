"""A first end-to-end check that a record reaches its step file."""

from __future__ import annotations

from pathlib import Path

from runlog import LogContext, get_logger
from tests.conftest import read_records


def test_record_in_step_lands_in_step_component_file(run_logs: Path) -> None:
    """A record logged in step 3 lands in step_003/adapter.log."""
    LogContext.get_instance().set_step_context(3)
    get_logger("m", component="adapter").info("hello", n=1)
    records = read_records(run_logs / "step_003" / "adapter.log")
    assert [r["event"] for r in records] == ["hello"]
    assert records[0]["step"] == 3
