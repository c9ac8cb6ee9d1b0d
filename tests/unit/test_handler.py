"""Routing of records to files, the record format, stdlib capture and the console."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import orjson
import pytest

from runlog import ConfigurationError, LogContext, configure, get_logger
from tests.conftest import files_under, read_records

TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
KEYS = ["ts", "level", "event", "logger", "component", "run_id", "framework", "step"]


def test_routing_by_step_component_and_run_level(run_logs: Path) -> None:
    """Step records go per step/component, run-level ones to logs/, the rest run.log."""
    context = LogContext.get_instance()
    adapter = get_logger("pkg.adapter", component="adapter")
    recon = get_logger("pkg.recon", component="reconciliation")
    adapter.info("before steps")
    context.set_step_context(1)
    adapter.info("in one")
    recon.info("recon in one")
    context.set_step_context(2)
    get_logger("pkg.metrics", component="metrics").info("in two")
    context.clear_step_context()
    adapter.info("after steps")
    assert files_under(run_logs) == {
        "run.log",
        "reconciliation.log",
        "combined.log",
        "step_001/adapter.log",
        "step_002/metrics.log",
    }
    assert [r["event"] for r in read_records(run_logs / "run.log")] == [
        "before steps",
        "after steps",
    ]
    assert [r["step"] for r in read_records(run_logs / "reconciliation.log")] == [1]
    assert read_records(run_logs / "step_002" / "metrics.log")[0]["event"] == "in two"
    combined = (run_logs / "combined.log").read_text().splitlines()
    assert len(combined) == 5
    assert "[reconciliation] step=1 recon in one" in combined[2]


def test_record_keys_in_order_then_caller_pairs(run_logs: Path) -> None:
    """Reserved keys come first in SPEC order, then the caller's pairs."""
    LogContext.get_instance().set_step_context(3)
    get_logger("my.mod", component="adapter", region="eu").warning(
        "api_call", prompt_tokens=123, model="gpt-4o"
    )
    line = (run_logs / "step_003" / "adapter.log").read_bytes()
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    record = orjson.loads(line)
    assert list(record) == [*KEYS, "region", "prompt_tokens", "model"]
    assert TS.fullmatch(record["ts"])
    assert record["level"] == "warning"
    assert record["logger"] == "my.mod"
    assert (record["run_id"], record["framework"], record["step"]) == ("r1", "fw", 3)


def test_reserved_key_from_caller_is_kept_renamed(run_logs: Path) -> None:
    """A caller's pair named like a reserved key is kept as '<key>_', not lost."""
    get_logger("m").info("x", level="custom", ts="mine")
    record = read_records(run_logs / "run.log")[0]
    assert record["level"] == "info"
    assert (record["level_"], record["ts_"]) == ("custom", "mine")


def test_stdlib_logger_lands_in_step_as_external(run_logs: Path) -> None:
    """A stdlib logger's warning in step 3 lands in step_003/external.log."""
    LogContext.get_instance().set_step_context(3)
    logging.getLogger("thirdparty").warning("hello %s", "x")
    records = read_records(run_logs / "step_003" / "external.log")
    assert [(r["event"], r["logger"], r["component"], r["level"]) for r in records] == [
        ("hello x", "thirdparty", "external", "warning")
    ]


def test_stdlib_info_is_captured_and_extra_kept(run_logs: Path) -> None:
    """Third-party INFO records reach the files; extra= fields become pairs."""
    LogContext.get_instance().set_step_context(1)
    logging.getLogger("httpx").info("GET %s", "/v1", extra={"status": 200})
    logging.getLogger("lib").info("own", extra={"component": "adapter"})
    (record,) = read_records(run_logs / "step_001" / "external.log")
    assert (record["event"], record["status"]) == ("GET /v1", 200)
    assert read_records(run_logs / "step_001" / "adapter.log")[0]["event"] == "own"


def test_stdlib_exception_has_traceback(run_logs: Path) -> None:
    """logger.exception from a stdlib logger writes the traceback as one string."""
    try:
        raise KeyError("missing")
    except KeyError:
        logging.getLogger("lib").exception("failed")
    (record,) = read_records(run_logs / "run.log")
    assert record["level"] == "error"
    assert "KeyError: 'missing'" in record["exception"]
    assert record["exception"].startswith("Traceback")


def test_structlog_exception_and_exc_info(run_logs: Path) -> None:
    """log.exception and exc_info=exc add the formatted traceback under 'exception'."""
    log = get_logger("m", component="adapter")
    try:
        1 / 0  # noqa: B018  # the exception is the point
    except ZeroDivisionError as exc:
        log.exception("boom")
        log.error("again", exc_info=exc)
    records = read_records(run_logs / "run.log")
    assert [r["event"] for r in records] == ["boom", "again"]
    assert all("ZeroDivisionError" in r["exception"] for r in records)
    assert "exc_info" not in records[1]


def test_positional_args_are_formatted(run_logs: Path) -> None:
    """log.info('n=%d', 3) is formatted like stdlib logging."""
    get_logger("m").info("n=%d of %s", 3, "x")
    assert read_records(run_logs / "run.log")[0]["event"] == "n=3 of x"


def test_no_run_context_writes_console_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no run context a record goes to stderr and no file is created."""
    monkeypatch.chdir(tmp_path)
    get_logger("m", component="adapter").info("hello", n=1)
    logging.getLogger("thirdparty").warning("third")
    err = capsys.readouterr().err
    assert "[adapter] step=- hello n=1" in err
    assert list(tmp_path.iterdir()) == []


def test_console_level_and_formats(
    run_logs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Console shows INFO and up by default; json prints records; off prints nothing."""
    log = get_logger("m")
    log.debug("hidden")
    log.info("shown")
    err = capsys.readouterr().err
    assert "shown" in err and "hidden" not in err
    configure(console_format="json")
    log.info("as json", k=1)
    record = orjson.loads(capsys.readouterr().err)
    assert (record["event"], record["k"]) == ("as json", 1)
    configure(console_format="off")
    log.error("silent")
    assert capsys.readouterr().err == ""
    events = [r["event"] for r in read_records(run_logs / "run.log")]
    assert events == ["hidden", "shown", "as json", "silent"]


def test_file_level_filters_files(run_logs: Path) -> None:
    """configure(file_level="warning") keeps debug/info out of the files."""
    configure(file_level="warning", console_format="off")
    log = get_logger("m")
    log.info("dropped")
    log.warning("kept")
    assert [r["event"] for r in read_records(run_logs / "run.log")] == ["kept"]


def test_run_level_components_are_configurable(run_logs: Path) -> None:
    """A component named in run_level_components goes to logs/<component>.log."""
    configure(run_level_components={"budget"})
    LogContext.get_instance().set_step_context(4)
    get_logger("m", component="budget").info("spent")
    get_logger("m", component="reconciliation").info("now per step")
    assert files_under(run_logs) == {
        "budget.log",
        "combined.log",
        "step_004/reconciliation.log",
    }


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("console_format", "xml"),
        ("on_write_error", "ignore"),
        ("combined_max_lines", 0),
        ("console_level", "loud"),
        ("run_level_components", "reconciliation"),
        ("combined_trim_fraction", 0),
        ("max_open_files", 0),
    ],
)
def test_configure_rejects_bad_values(option: str, value: object) -> None:
    """configure raises ConfigurationError naming the bad value."""
    with pytest.raises(ConfigurationError, match=re.escape(repr(value))):
        configure(**{option: value})  # type: ignore[arg-type]  # bad on purpose


def test_bound_values_and_contextvars_reach_the_record(run_logs: Path) -> None:
    """bind() values and structlog contextvars are written with the record."""
    import structlog.contextvars

    structlog.contextvars.bind_contextvars(request_id="req-1")
    try:
        get_logger("m").bind(user="u1").info("x", n=2)
    finally:
        structlog.contextvars.clear_contextvars()
    record = read_records(run_logs / "run.log")[0]
    assert (record["user"], record["n"], record["request_id"]) == ("u1", 2, "req-1")


def test_logger_made_before_run_picks_up_run_later(tmp_path: Path) -> None:
    """A logger created at import time writes into a run set later."""
    log = get_logger("early", component="adapter")
    context = LogContext.get_instance()
    context.set_run_context("r9", "fw", tmp_path / "logs")
    context.set_step_context(2)
    log.info("late")
    assert (
        read_records(tmp_path / "logs" / "step_002" / "adapter.log")[0]["run_id"]
        == "r9"
    )


def test_files_of_a_left_step_are_closed(run_logs: Path) -> None:
    """Switching steps closes the descriptors of the step that was left."""
    from runlog.handler import get_handler

    context = LogContext.get_instance()
    log = get_logger("m", component="adapter")
    context.set_step_context(1)
    log.info("one")
    context.set_step_context(2)
    log.info("two")
    open_paths = get_handler().writer.open_paths()
    assert run_logs / "step_002" / "adapter.log" in open_paths
    assert run_logs / "step_001" / "adapter.log" not in open_paths


def test_open_descriptors_are_bounded(run_logs: Path) -> None:
    """No more than max_open_files descriptors stay open, and no record is lost."""
    from runlog.handler import get_handler

    configure(max_open_files=4, console_format="off")
    context = LogContext.get_instance()
    context.set_step_context(1)
    for i in range(20):
        get_logger("m", component=f"c{i}").info("x", i=i)
    assert len(get_handler().writer.open_paths()) <= 4
    for i in range(20):
        assert read_records(run_logs / "step_001" / f"c{i}.log")[0]["i"] == i


def test_deferred_records_wait_for_a_flush_then_land_whole(run_logs: Path) -> None:
    """write(defer=True) writes nothing until flush_deferred(), then every line."""
    from runlog.handler import get_handler

    handler = get_handler()
    configure(console_format="off")
    LogContext.get_instance().set_step_context(2)
    for n in range(3):
        handler.write(20, f"queued {n}", "t", "adapter", {"n": n}, defer=True)
    step_file = run_logs / "step_002" / "adapter.log"
    assert not step_file.exists()
    handler.flush_deferred()
    assert [r["event"] for r in read_records(step_file)] == [
        "queued 0",
        "queued 1",
        "queued 2",
    ]
    combined = (run_logs / "combined.log").read_text().splitlines()
    assert [line.split("step=2 ")[1] for line in combined] == [
        "queued 0 n=0",
        "queued 1 n=1",
        "queued 2 n=2",
    ]


def test_a_record_written_at_once_comes_after_the_deferred_ones(
    run_logs: Path,
) -> None:
    """Deferred lines are written before the next ordinary record, in order."""
    from runlog.handler import get_handler

    handler = get_handler()
    configure(console_format="off")
    LogContext.get_instance().set_step_context(1)
    handler.write(20, "first", "t", "adapter", {}, defer=True)
    handler.write(20, "second", "t", "other", {}, defer=True)
    get_logger("t", component="adapter").info("third")
    step = run_logs / "step_001"
    assert [r["event"] for r in read_records(step / "adapter.log")] == [
        "first",
        "third",
    ]
    assert [r["event"] for r in read_records(step / "other.log")] == ["second"]
    combined = (run_logs / "combined.log").read_text()
    assert combined.index("first") < combined.index("second") < combined.index("third")


def test_a_deferred_write_that_fails_is_kept_for_its_owner(run_logs: Path) -> None:
    """A queued line that cannot be written is reported in deferred_failure."""
    from runlog.errors import LogWriteError
    from runlog.handler import get_handler

    handler = get_handler()
    configure(console_format="off")
    LogContext.get_instance().set_step_context(1)
    # a directory where the file should be
    (run_logs / "step_001" / "blocked.log").mkdir()
    handler.write(20, "lost", "t", "blocked", {}, defer=True)
    handler.write(20, "kept", "t", "adapter", {}, defer=True)
    handler.flush_deferred()
    failure = handler.deferred_failure
    handler.deferred_failure = None
    assert isinstance(failure, LogWriteError)
    assert "blocked.log" in str(failure)
    kept = read_records(run_logs / "step_001" / "adapter.log")
    assert [r["event"] for r in kept] == ["kept"]


def test_write_output_makes_the_records_write_would(run_logs: Path) -> None:
    """Captured lines through write_output equal write()'s records and lines."""
    from runlog.handler import get_handler

    handler = get_handler()
    configure(console_format="off")
    context = LogContext.get_instance()
    context.set_step_context(4)
    key = (context.state.generation, 4)
    handler.write_output("cap", "stdout", key, [("one \x1b[31m", {}), ("two", {})])
    handler.write(20, "one \x1b[31m", "cap", "stdout", {"stream": "stdout"}, key=key)
    handler.write_output("cap", "stdout", key, [("part", {"part": 1})])
    records = read_records(run_logs / "step_004" / "stdout.log")
    for record in records:
        assert TS.fullmatch(record.pop("ts"))
    assert records[0] == records[2]
    assert records[0] == {
        "level": "info",
        "event": "one \x1b[31m",
        "logger": "cap",
        "component": "stdout",
        "run_id": "r1",
        "framework": "fw",
        "step": 4,
        "stream": "stdout",
    }
    assert records[3]["part"] == 1
    combined = [
        line[27:] for line in (run_logs / "combined.log").read_text().splitlines()
    ]
    assert combined[0] == combined[2]
    assert combined[0] == " info     [stdout] step=4 one \\x1b[31m stream=stdout"


def test_console_shows_a_step_traceback_on_indented_lines(
    run_logs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A failed step_end's traceback is printed below its line, indented, escaped."""
    configure(console_format="pretty")
    with (
        pytest.raises(ValueError, match="boom"),
        LogContext.get_instance().step_scope(1, "load"),
    ):
        raise ValueError("boom \x1b[2J")
    err = capsys.readouterr().err.splitlines()
    end = next(i for i, line in enumerate(err) if " step_end " in line)
    assert "traceback=" not in err[end]
    assert "error_type=ValueError" in err[end]
    assert err[end + 1] == "    traceback:"
    assert err[end + 2] == "    Traceback (most recent call last):"
    assert err[-1] == "    ValueError: boom \\x1b[2J"
    assert all(line.startswith("    ") for line in err[end + 1 :])
    assert "\x1b" not in "".join(err)


def test_each_record_is_whole_in_both_files_when_the_call_returns(
    run_logs: Path,
) -> None:
    """When a logging call returns, its record is a whole line in both files."""
    LogContext.get_instance().set_step_context(2)
    log = get_logger("m", component="adapter")
    step_file = run_logs / "step_002" / "adapter.log"
    combined = run_logs / "combined.log"
    for i in range(40):
        log.info("tick", i=i, pad="x" * (i * 97 % 5000), note="a b\nc")
        step_bytes = step_file.read_bytes()
        combined_bytes = combined.read_bytes()
        assert step_bytes.endswith(b"\n")
        assert combined_bytes.endswith(b"\n")
        step_lines = step_bytes.splitlines()
        assert len(step_lines) == i + 1
        assert orjson.loads(step_lines[-1])["i"] == i
        combined_lines = combined_bytes.splitlines()
        assert len(combined_lines) == i + 1
        assert combined_lines[-1].endswith(b'note="a b\\nc"')
        assert f" tick i={i} ".encode() in combined_lines[-1]
