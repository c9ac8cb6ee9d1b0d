"""The OpenTelemetry bridge: records exported as LogRecords, redacted first."""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip(
    "opentelemetry.sdk._logs", reason="needs the otel extra: pip install 'runlog[otel]'"
)

from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs import export as sdk_export
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor

from runlog import ConfigurationError, LogContext, child_env, configure, get_logger
from runlog import otel as runlog_otel
from runlog._config import current_settings
from runlog.integrations.otel import enable_from_environment, exception_parts
from runlog.otel import disable_otel, enable_otel, is_enabled
from tests.conftest import read_records

# the SDK renamed these in 1.39; the extra allows older releases too
LogRecordExporter: Any = getattr(sdk_export, "LogRecordExporter", None) or (
    sdk_export.LogExporter
)
LogRecordExportResult: Any = getattr(sdk_export, "LogRecordExportResult", None) or (
    sdk_export.LogExportResult
)


class MemoryExporter(LogRecordExporter):
    """Keeps exported records in a list (the SDK's in-memory exporter, by name)."""

    def __init__(self) -> None:
        self.records: list[Any] = []

    def export(self, batch: Any) -> LogRecordExportResult:
        self.records.extend(item.log_record for item in batch)
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        """Nothing to release."""

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _in_memory_exporter() -> Any:
    # the SDK renamed its in-memory exporter; use whichever this version has
    exporter_class = getattr(sdk_export, "InMemoryLogRecordExporter", None)
    if exporter_class is None:  # pragma: no cover - older SDKs
        exporter_class = sdk_export.InMemoryLogExporter
    return exporter_class()


@pytest.fixture
def provider() -> Iterator[tuple[LoggerProvider, Any]]:
    exporter = _in_memory_exporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    yield provider, exporter
    disable_otel()
    provider.shutdown()


def exported(exporter: Any) -> list[Any]:
    return [item.log_record for item in exporter.get_finished_logs()]


def test_record_in_a_step_is_exported_with_run_attributes(
    run_logs: Path, provider: tuple[LoggerProvider, Any]
) -> None:
    """A record in step 3 is exported with severity, body, its pairs and runlog.*."""
    sdk_provider, exporter = provider
    enable_otel(sdk_provider)
    LogContext.get_instance().set_step_context(3)
    get_logger("my.mod", component="adapter").warning(
        "llm_request", model="m-1", total_tokens=42, ratio=0.5, ok=True
    )
    records = [r for r in exported(exporter) if r.body == "llm_request"]
    assert len(records) == 1
    record = records[0]
    assert record.severity_number == SeverityNumber.WARN
    assert record.severity_text == "WARNING"
    assert dict(record.attributes) == {
        "runlog.run_id": "r1",
        "runlog.framework": "fw",
        "runlog.step": 3,
        "runlog.component": "adapter",
        "runlog.logger": "my.mod",
        "model": "m-1",
        "total_tokens": 42,
        "gen_ai.usage.total_tokens": 42,
        "ratio": 0.5,
        "ok": True,
    }
    on_disk = read_records(run_logs / "step_003" / "adapter.log")
    assert [r["event"] for r in on_disk] == ["llm_request"]
    # the exported time is the record's own timestamp
    ts = on_disk[0]["ts"]
    micros = int(ts[20:26])
    assert record.timestamp % 1_000_000_000 == micros * 1000


def test_secrets_are_redacted_before_export(
    run_logs: Path, provider: tuple[LoggerProvider, Any]
) -> None:
    """api_key and *_token values are *** in the export and on disk; never the value."""
    sdk_provider, exporter = provider
    enable_otel(sdk_provider)
    log = get_logger(__name__, component="adapter")
    log.info("call", api_key="sk-live-0123456789", auth_token="tok-abcdef123456")
    log.info("echo", note="the key was sk-live-0123456789")
    records = exported(exporter)
    text = repr([(r.body, dict(r.attributes)) for r in records])
    assert "sk-live-0123456789" not in text
    assert "tok-abcdef123456" not in text
    call = next(r for r in records if r.body == "call")
    assert call.attributes["api_key"] == "***"
    assert call.attributes["auth_token"] == "***"
    disk = (run_logs / "run.log").read_text()
    assert "sk-live-0123456789" not in disk
    assert '"api_key":"***"' in disk


def test_values_otel_cannot_carry_become_json_text(
    run_logs: Path, provider: tuple[LoggerProvider, Any]
) -> None:
    """Dicts, mixed lists and ints past int64 go as text; a set as its array."""
    sdk_provider, exporter = provider
    enable_otel(sdk_provider)
    get_logger(__name__).info(
        "shapes",
        nested={"a": [1, 2]},
        ints=[1, 2, 3],
        mixed=[1, "two"],
        empty=[],
        huge=2**63,
        nothing=None,
        blob={1, 2},
    )
    record = exported(exporter)[-1]
    attrs = dict(record.attributes)
    assert attrs["nested"] == '{"a":[1,2]}'
    assert tuple(attrs["ints"]) == (1, 2, 3)
    assert attrs["mixed"] == '[1,"two"]'
    assert attrs["empty"] == "[]"
    assert attrs["huge"] == str(2**63)
    assert tuple(attrs["blob"]) == (1, 2)  # the file holds [1,2]
    assert "nothing" not in attrs
    assert read_records(run_logs / "run.log")[-1]["nothing"] is None


def _fail() -> None:
    raise ValueError("boom")


def test_exception_goes_as_stacktrace(
    run_logs: Path, provider: tuple[LoggerProvider, Any]
) -> None:
    """log.exception() exports exception.stacktrace with the traceback."""
    sdk_provider, exporter = provider
    enable_otel(sdk_provider)
    try:
        _fail()
    except ValueError:
        get_logger(__name__).exception("failed")
    record = exported(exporter)[-1]
    assert record.severity_number == SeverityNumber.ERROR
    assert "ValueError: boom" in record.attributes["exception.stacktrace"]
    assert "ValueError: boom" in read_records(run_logs / "run.log")[-1]["exception"]


def test_records_outside_a_run_are_exported_without_run_attributes(
    tmp_path: Path, provider: tuple[LoggerProvider, Any]
) -> None:
    """With no run context a record is exported (no runlog.run_id) and no file made."""
    sdk_provider, exporter = provider
    configure(console_format="off")
    enable_otel(sdk_provider)
    get_logger("svc", component="api").error("no_run", code=7)
    record = exported(exporter)[-1]
    assert record.body == "no_run"
    assert dict(record.attributes) == {
        "runlog.component": "api",
        "runlog.logger": "svc",
        "code": 7,
    }
    assert list(tmp_path.iterdir()) == []


def test_third_party_records_are_exported_as_external(
    run_logs: Path, provider: tuple[LoggerProvider, Any]
) -> None:
    """A stdlib logger's record is exported under component external."""
    sdk_provider, exporter = provider
    enable_otel(sdk_provider)
    logging.getLogger("httpx").info("GET %s", "/v1/models")
    record = exported(exporter)[-1]
    assert record.body == "GET /v1/models"
    assert record.attributes["runlog.component"] == "external"
    assert read_records(run_logs / "run.log")[-1]["event"] == "GET /v1/models"


def test_level_filter_and_disable(
    run_logs: Path, provider: tuple[LoggerProvider, Any]
) -> None:
    """level= drops lower records from the export only; disable_otel stops it."""
    sdk_provider, exporter = provider
    enable_otel(sdk_provider, level="warning")
    log = get_logger(__name__)
    log.info("quiet")
    log.warning("loud")
    assert [r.body for r in exported(exporter)] == ["loud"]
    assert is_enabled()
    disable_otel()
    disable_otel()
    assert not is_enabled()
    log.error("after")
    assert [r.body for r in exported(exporter)] == ["loud"]
    events = [r["event"] for r in read_records(run_logs / "run.log")]
    assert events == ["quiet", "loud", "after"]


def test_enable_twice_replaces_and_configure_keeps_it(
    run_logs: Path, provider: tuple[LoggerProvider, Any]
) -> None:
    """A second enable_otel replaces the first; configure() keeps the bridge."""
    sdk_provider, exporter = provider
    other = _in_memory_exporter()
    other_provider = LoggerProvider()
    other_provider.add_log_record_processor(SimpleLogRecordProcessor(other))
    enable_otel(other_provider)
    enable_otel(sdk_provider)
    configure(console_level="error")
    get_logger(__name__).info("once")
    assert [r.body for r in exported(exporter)] == ["once"]
    assert exported(other) == []
    sinks = current_settings().extra_sinks
    assert sum(isinstance(s, runlog_otel.OtelSink) for s in sinks) == 1
    other_provider.shutdown()
    assert read_records(run_logs / "run.log")[-1]["event"] == "once"


def test_records_logged_during_export_do_not_loop(run_logs: Path) -> None:
    """An exporter that logs while exporting: its record is written, not re-exported."""

    class ChattyExporter(MemoryExporter):
        def export(self, batch: Any) -> LogRecordExportResult:
            logging.getLogger("exporter").warning("exporting %d", len(batch))
            return super().export(batch)

    exporter = ChattyExporter()
    sdk_provider = LoggerProvider()
    sdk_provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    try:
        enable_otel(sdk_provider)
        get_logger(__name__).info("first")
    finally:
        disable_otel()
        sdk_provider.shutdown()
    assert [r.body for r in exporter.records] == ["first"]
    events = [r["event"] for r in read_records(run_logs / "run.log")]
    assert events == ["first", "exporting 1"]


def test_bad_level_and_missing_extra_are_configuration_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bad level, or no opentelemetry installed, raise ConfigurationError."""
    with pytest.raises(ConfigurationError, match="'loudest'"):
        enable_otel(level="loudest")
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(ConfigurationError, match=r"runlog\[otel\]"):
        enable_otel()
    assert not is_enabled()


class Opaque:
    """A value orjson cannot write: the file holds its str()."""

    def __str__(self) -> str:
        return "<object Opaque>"


def test_object_value_arrives_as_the_string_in_the_file(
    run_logs: Path, provider: tuple[LoggerProvider, Any]
) -> None:
    """A value written as "<object Opaque>" is exported as that string, unquoted."""
    sdk_provider, exporter = provider
    enable_otel(sdk_provider)
    get_logger(__name__).info("obj", thing=Opaque(), raw=b"ab\xff", items=[Opaque()])
    attrs = dict(exported(exporter)[-1].attributes)
    on_disk = read_records(run_logs / "run.log")[-1]
    assert on_disk["thing"] == "<object Opaque>"
    assert attrs["thing"] == on_disk["thing"]
    assert attrs["raw"] == on_disk["raw"] == "ab\\xff"
    assert attrs["items"] == '["<object Opaque>"]'


class NotFoundError(LookupError):
    """A user's exception class, named with its module in tracebacks."""


def _chained() -> None:
    try:
        _fail()
    except ValueError as exc:
        raise NotFoundError("key 'x': gone\nsecond line") from exc


def test_exception_carries_type_and_message(
    run_logs: Path, provider: tuple[LoggerProvider, Any]
) -> None:
    """exception.type and exception.message name the last exception of a chain."""
    sdk_provider, exporter = provider
    enable_otel(sdk_provider)
    try:
        _chained()
    except NotFoundError:
        get_logger(__name__).exception("failed")
    attrs = dict(exported(exporter)[-1].attributes)
    assert attrs["exception.type"] == f"{__name__}.NotFoundError"
    assert attrs["exception.message"] == "key 'x': gone\nsecond line"
    assert (
        attrs["exception.stacktrace"]
        == read_records(run_logs / "run.log")[-1]["exception"]
    )


def test_exception_parts_of_groups_bare_types_and_other_text() -> None:
    """A group gives the group's type; a bare type an empty message; prose nothing."""
    try:
        raise ExceptionGroup("eg", [ValueError("inner")])
    except ExceptionGroup as exc:
        group = "".join(traceback.format_exception(exc))
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt as exc:
        bare = "".join(traceback.format_exception(exc))
    assert exception_parts(group) == (
        "ExceptionGroup",
        "eg (1 sub-exception)",
    )
    assert exception_parts(bare) == ("KeyboardInterrupt", "")
    assert exception_parts("it broke, see above") == ("", "")
    assert exception_parts("") == ("", "")


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        (
            {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
            {"input": 12, "output": 5, "total": 17},
        ),
        (
            {"tokens_prompt": 3, "tokens_completion": 4},
            {"input": 3, "output": 4, "total": None},
        ),
        (
            {"usage": {"input_tokens": 7, "output_tokens": 8}},
            {"input": 7, "output": 8, "total": None},
        ),
        (
            {"prompt_tokens": True, "completion_tokens": "5"},
            {"input": None, "output": None, "total": None},
        ),
    ],
)
def test_token_counters_map_to_gen_ai_usage(
    pairs: dict[str, Any], expected: dict[str, int | None]
) -> None:
    """Token counters are sent as gen_ai.usage.* too; bools and text are not."""
    attrs = runlog_otel.attributes({"event": "llm_call", **pairs})
    got = {
        short: attrs.get(f"gen_ai.usage.{short}_tokens")
        for short in ("input", "output", "total")
    }
    assert got == expected
    for key, value in pairs.items():
        if not isinstance(value, dict):
            assert attrs[key] == value


def test_own_gen_ai_value_wins_over_a_counter() -> None:
    """A record's own gen_ai.usage.input_tokens is kept, not replaced."""
    attrs = runlog_otel.attributes(
        {"prompt_tokens": 12, "gen_ai.usage.input_tokens": 99}
    )
    assert attrs["gen_ai.usage.input_tokens"] == 99
    assert attrs["prompt_tokens"] == 12


def test_enable_sets_the_child_flag_and_disable_removes_it(
    provider: tuple[LoggerProvider, Any],
) -> None:
    """enable_otel puts level and service name in RUNLOG_OTEL; disable removes it."""
    sdk_provider, _ = provider
    enable_otel(sdk_provider, level="warning")
    assert json.loads(os.environ["RUNLOG_OTEL"]) == {"level": 30}
    assert child_env()["RUNLOG_OTEL"] == os.environ["RUNLOG_OTEL"]
    disable_otel()
    assert "RUNLOG_OTEL" not in os.environ
    enable_otel(sdk_provider, children=False)
    assert "RUNLOG_OTEL" not in os.environ


def test_enable_from_environment_builds_an_otlp_provider(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A child with RUNLOG_OTEL exports via OTLP with pid, host and service name."""
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http")
    monkeypatch.setenv("RUNLOG_OTEL", '{"level":20,"service.name":"bench"}')
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://127.0.0.1:9/v1/logs")
    sink = enable_from_environment()
    try:
        assert sink is not None
        assert sink.level == 20
        resource = dict(sink.provider.resource.attributes)
        assert resource["service.name"] == "bench"
        assert resource["process.pid"] == os.getpid()
        assert enable_from_environment() is None  # enabled already
    finally:
        disable_otel()
        if sink is not None:
            sink.provider.shutdown()


@pytest.mark.parametrize(
    ("name", "value", "match"),
    [
        ("RUNLOG_OTEL", "not json", "'not json'"),
        ("RUNLOG_OTEL", '{"level":"loudest"}', "'loudest'"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json", "'http/json'"),
    ],
)
def test_bad_child_settings_are_configuration_errors(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, match: str
) -> None:
    """A bad RUNLOG_OTEL or an unsupported protocol names the value; nothing enabled."""
    monkeypatch.setenv("RUNLOG_OTEL", '{"level":10}')
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", raising=False)
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=match):
        enable_from_environment()
    assert not is_enabled()
