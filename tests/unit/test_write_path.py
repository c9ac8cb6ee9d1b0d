"""The record path's fast cases write exactly the bytes of the general ones."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import orjson
import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from runlog import LogContext, configure, get_logger
from runlog import handler as handler_module
from runlog._records import (
    DEFAULT_REDACT_KEYS,
    RESERVED_KEYS,
    Redactor,
    build_record,
    dumps_line,
    utc_timestamp,
)
from runlog.combined import format_human, format_pairs
from runlog.handler import get_handler


def _expected(
    line: bytes, extra: dict[str, Any], event: Any, redactor: Redactor
) -> tuple[bytes, bytes]:
    """Today's JSON line and combined.log line for a record written as *line*."""
    written = orjson.loads(line)
    record = build_record(
        written["ts"],
        written["level"],
        event,
        written["logger"],
        written["component"],
        written["run_id"],
        written["framework"],
        written["step"],
        extra,
        redactor,
    )
    human = format_human(record).encode("utf-8", "backslashreplace") + b"\n"
    return dumps_line(record), human


_RULES = [DEFAULT_REDACT_KEYS, DEFAULT_REDACT_KEYS | {"unused_rule"}]


def _log_twice(logs: Path, event: Any, extra: dict[str, Any]) -> list[bytes]:
    """Log one record twice in a fresh run (keys unseen, then seen); the lines."""
    # other rules than last time: no secret values remembered from before
    _RULES.reverse()
    configure(console_format="off", redact_keys=_RULES[0])
    context = LogContext.get_instance()
    context.set_run_context("r1", "fw", logs)
    context.set_step_context(2)
    log = get_logger("m", component="adapter")
    log.info(event, **extra)
    log.info(event, **extra)
    context.clear_run_context()
    return [
        *(logs / "step_002" / "adapter.log").read_bytes().splitlines(keepends=True),
        *(logs / "combined.log").read_bytes().splitlines(keepends=True),
    ]


_VALUES = st.one_of(
    st.text(max_size=10),
    st.text(alphabet='ab=" \\\x1b\n\r\t-\u202e\udc80', max_size=6),
    st.integers(),
    st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) + 1]),
    st.floats(allow_nan=True),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.sampled_from(["a", "token"]), st.text(max_size=3), max_size=2),
)
_KEYS = st.one_of(
    st.from_regex(r"[a-z_]{1,8}", fullmatch=True),
    st.sampled_from(["token", "api_key", "level", "step", "prompt_tokens"]),
    st.text(alphabet='k=" \n\x1b', min_size=1, max_size=3),
)


@settings(max_examples=150, deadline=None)
@given(
    event=st.one_of(st.text(max_size=12), st.integers(), st.none()),
    extra=st.dictionaries(_KEYS, _VALUES, max_size=4),
)
def test_both_lines_are_todays_bytes_for_any_record(
    event: Any, extra: dict[str, Any]
) -> None:
    """A record's JSON and combined.log lines equal build_record's, fast path or not."""
    with tempfile.TemporaryDirectory() as tmp:
        lines = _log_twice(Path(tmp) / "logs", event, extra)
    assert len(lines) == 4
    reference = Redactor()  # remembers what it hides, as the handler's does
    for line, human in ((lines[0], lines[2]), (lines[1], lines[3])):
        assert (line, human) == _expected(line, extra, event, reference)


def test_a_record_of_seen_flat_pairs_skips_build_record(
    run_logs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once its keys were seen, a flat record is built without build_record."""
    calls: list[str] = []

    def counting(*args: Any) -> dict[str, Any]:
        calls.append(args[2])
        return build_record(*args)

    monkeypatch.setattr(handler_module, "build_record", counting)
    # new rules: no secret values remembered from earlier tests in this process
    configure(console_format="off", redact_keys={"password", "*_token"})
    LogContext.get_instance().set_step_context(1)
    log = get_logger("m", component="adapter")
    log.info("first", n=1, model="gpt-4o")
    log.info("second", n=2, model="gpt-4o")
    log.info("nested", n=3, model={"a": 1})
    assert calls == ["first", "nested"]
    lines = (run_logs / "combined.log").read_text().splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == [
        "info     [adapter] step=1 first n=1 model=gpt-4o",
        "info     [adapter] step=1 second n=2 model=gpt-4o",
        'info     [adapter] step=1 nested n=3 model={"a":1}',
    ]


def test_a_secret_seen_before_sends_every_record_the_general_way(
    run_logs: Path,
) -> None:
    """After a credential was logged, its value is scrubbed from later flat records."""
    configure(console_format="off")
    LogContext.get_instance().set_step_context(1)
    log = get_logger("m", component="adapter")
    log.info("auth", note="x", token="s3cr3t-value")
    log.info("echo", note="got s3cr3t-value back")
    records = [
        orjson.loads(line)
        for line in (run_logs / "step_001" / "adapter.log").read_bytes().splitlines()
    ]
    assert [r.get("token") for r in records] == ["***", None]
    assert records[1]["note"] == "got *** back"
    combined = (run_logs / "combined.log").read_text()
    assert "s3cr3t" not in combined
    assert combined.splitlines()[1].endswith('echo note="got *** back"')


def test_exception_of_a_flat_record_is_in_its_combined_line(run_logs: Path) -> None:
    """log.exception on a fast-path record still writes exception= in combined.log."""
    # new rules: no secret values remembered from earlier tests in this process
    configure(console_format="off", redact_keys={"password", "*_token"})
    LogContext.get_instance().set_step_context(1)
    log = get_logger("m", component="adapter")
    log.info("warm", n=1)
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed", n=2)
    line = (run_logs / "step_001" / "adapter.log").read_bytes().splitlines()[1]
    record = orjson.loads(line)
    assert "ValueError: boom" in record["exception"]
    human = (run_logs / "combined.log").read_text().splitlines()[1]
    assert human == format_human(record)
    assert human.split(" ", 1)[1].startswith("error    [adapter] step=1 failed n=2 ")
    assert "exception=" in human


def test_bound_values_and_context_variables_come_before_the_call_pairs(
    run_logs: Path,
) -> None:
    """bind() and structlog context variables are written, in order, as before."""
    configure(console_format="off")
    LogContext.get_instance().set_step_context(1)
    log = get_logger("m", component="adapter")
    log.bind(user="u1").info("bound", n=1)
    log.info("moved", component="other", n=2)
    structlog.contextvars.bind_contextvars(request_id="req-9")
    try:
        log.info("ctx", n=3, stack_info=True)
    finally:
        structlog.contextvars.clear_contextvars()
    adapter = [
        orjson.loads(line)
        for line in (run_logs / "step_001" / "adapter.log").read_bytes().splitlines()
    ]
    pairs = [[(k, v) for k, v in r.items() if k not in RESERVED_KEYS] for r in adapter]
    assert pairs == [[("user", "u1"), ("n", 1)], [("n", 3), ("request_id", "req-9")]]
    (other,) = (run_logs / "step_001" / "other.log").read_bytes().splitlines()
    assert orjson.loads(other)["component"] == "other"
    assert "component_" not in orjson.loads(other)


def test_utc_timestamp_across_seconds_and_backwards() -> None:
    """The cached second prefix is right going forward, backward and before 1970."""
    base = 1_760_970_225_000_000_000  # 2025-10-20T14:23:45Z
    assert utc_timestamp(base + 999_999_999) == "2025-10-20T14:23:45.999999Z"
    assert utc_timestamp(base + 1_000_000_000) == "2025-10-20T14:23:46.000000Z"
    # a clock stepped back (NTP) gets its own second, not the cached one
    assert utc_timestamp(base - 1_000) == "2025-10-20T14:23:44.999999Z"
    assert utc_timestamp(base + 5_000) == "2025-10-20T14:23:45.000005Z"
    assert utc_timestamp(0) == "1970-01-01T00:00:00.000000Z"
    assert utc_timestamp(-1_000) == "1969-12-31T23:59:59.999999Z"
    assert utc_timestamp(-(10**12)) == "1969-12-31T23:43:20.000000Z"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (2**63 - 1, "n=9223372036854775807"),
        (-(2**63) + 1, "n=-9223372036854775807"),
        (2**63, "n=9223372036854775808"),
        (-(2**63), "n=-9223372036854775808"),
        (10**30, 'n="1000000000000000000000000000000"'),
        ("", 'n=""'),
        ("a=b", 'n="a=b"'),
        ("ünï", "n=ünï"),
        ("bell\x07", "n=bell\\x07"),
    ],
)
def test_format_pairs_edges(value: Any, text: str) -> None:
    """Ints at 64 bits and awkward strings read as format_human writes them."""
    assert format_pairs([("n", value)]) == text
    record = {"ts": "T", "level": "info", "event": "e", "component": "c"}
    assert format_human({**record, "step": None, "n": value}).endswith(f" e {text}")


def test_the_handler_and_its_files_share_one_lock(run_logs: Path) -> None:
    """A record takes one lock: the handler's, which both files use too."""
    configure(console_format="off")
    get_logger("m").info("x")
    handler = get_handler()
    assert handler.combined is not None
    assert handler.writer._lock is handler.lock
    assert handler.combined._lock is handler.lock
