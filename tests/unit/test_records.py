"""The record format: timestamps, values orjson cannot take, and redaction."""

from __future__ import annotations

import dataclasses
import decimal
import re
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import orjson
import pytest

from runlog import configure, get_logger
from runlog._records import Redactor, dumps_line, fallback_value, utc_timestamp
from tests.conftest import read_records


def test_utc_timestamp_format_and_value() -> None:
    """Timestamps are RFC 3339 UTC with microseconds and Z, at the given instant."""
    ns = 1_760_970_225_123_456_789
    assert utc_timestamp(ns) == "2025-10-20T14:23:45.123456Z"
    assert utc_timestamp(ns + 1_000_000_000) == "2025-10-20T14:23:46.123456Z"
    now = datetime.fromisoformat(utc_timestamp().replace("Z", "+00:00"))
    assert now.tzinfo is not None
    assert abs((datetime.now(UTC) - now).total_seconds()) < 5


@dataclasses.dataclass
class Point:
    x: int
    y: object


class Opaque:
    def __str__(self) -> str:
        return "opaque!"


class Hostile:
    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class FakeModel:
    """Looks like a pydantic model to the fallback."""

    def model_dump(self, mode: str = "python") -> dict[str, Any]:
        return {"name": "m", "mode": mode}


def test_values_orjson_cannot_take_fall_back(run_logs: Path) -> None:
    """Sets, bytes, Decimal, paths, dataclasses, models, objects never fail a record."""
    get_logger("m").info(
        "odd",
        a_set={3, 1, 2},
        raw=b"\xff\x00ok",
        price=decimal.Decimal("1.10"),
        path=PurePosixPath("/tmp/x"),
        point=Point(1, Opaque()),
        model=FakeModel(),
        obj=Opaque(),
        hostile=Hostile(),
        nested={"deep": {1, 2}},
        tup=(1, "a"),
    )
    record = read_records(run_logs / "run.log")[0]
    assert record["a_set"] == [1, 2, 3]
    assert record["raw"] == "\\xff\x00ok"
    assert record["price"] == "1.10"
    assert record["path"] == "/tmp/x"
    assert record["point"] == {"x": 1, "y": "opaque!"}
    assert record["model"] == {"name": "m", "mode": "json"}
    assert record["obj"] == "opaque!"
    assert record["hostile"].startswith("<unrepresentable")
    assert record["nested"] == {"deep": [1, 2]}
    assert record["tup"] == [1, "a"]


def test_numpy_values_are_numbers_and_lists(run_logs: Path) -> None:
    """numpy scalars and arrays are written as numbers and lists."""
    import numpy as np  # the tests extra installs it
    get_logger("m").info("np", f=np.float32(1.5), i=np.int64(7), a=np.arange(3))
    record = read_records(run_logs / "run.log")[0]
    assert (record["f"], record["i"], record["a"]) == (1.5, 7, [0, 1, 2])


def test_lone_surrogates_are_escaped_not_dropped(run_logs: Path) -> None:
    """A lone surrogate is written escaped; the record stays valid UTF-8."""
    get_logger("m").info("bad \ud800 text", value="x\udfffy")
    raw = (run_logs / "run.log").read_bytes()
    raw.decode("utf-8")
    record = orjson.loads(raw)
    assert record["event"] == "bad \\ud800 text"
    assert record["value"] == "x\\udfffy"


def test_cycles_deep_nesting_and_non_string_keys(run_logs: Path) -> None:
    """Cyclic, very deep and non-str-keyed values still produce a valid record."""
    cyclic: list[Any] = [1]
    cyclic.append(cyclic)
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(500):
        node["d"] = {}
        node = node["d"]
    get_logger("m").info("odd", cyclic=cyclic, deep=deep, keyed={1: "a", (2, 3): "b"})
    record = read_records(run_logs / "run.log")[0]
    assert record["cyclic"][0] == 1 and "cycle" in record["cyclic"][1]
    assert record["keyed"] == {"1": "a", "(2, 3)": "b"}
    assert "nested deeper" in orjson.dumps(record["deep"]).decode()


def test_integers_beyond_64_bits_keep_their_digits(run_logs: Path) -> None:
    """An int orjson cannot write (2**70) is kept as its decimal text."""
    get_logger("m").info("big", n=2**70, ok=2**63 - 1, neg=-(2**80))
    record = read_records(run_logs / "run.log")[0]
    assert (record["n"], record["ok"], record["neg"]) == (
        str(2**70),
        2**63 - 1,
        str(-(2**80)),
    )


def test_non_string_event_is_written(run_logs: Path) -> None:
    """An event that is not a string is converted, never fatal."""
    get_logger("m").info({"a": 1})  # type: ignore[arg-type]  # odd input on purpose
    get_logger("m").info(None)
    events = [r["event"] for r in read_records(run_logs / "run.log")]
    assert events == ["{'a': 1}", ""]


def test_fallback_value_never_raises() -> None:
    """fallback_value returns a value for anything, even a hostile object."""
    assert fallback_value(Hostile()).startswith("<unrepresentable")
    assert fallback_value({"b", "a"}) == ["a", "b"]
    assert fallback_value({1, "a"}) in ([1, "a"], ["a", 1])


@pytest.mark.parametrize(
    "key",
    [
        "api_key",
        "API_KEY",
        "apikey",
        "authorization",
        "password",
        "secret",
        "token",
        "openai_api_key",
        "access_token",
        "client_secret",
        "db-password",
        "x-api-key",
    ],
)
def test_credential_keys_are_redacted(run_logs: Path, key: str) -> None:
    """Values of credential-looking keys are written as ***."""
    get_logger("m").info("call", **{key: "sk-live-1234567890"})
    raw = (run_logs / "run.log").read_text() + (run_logs / "combined.log").read_text()
    assert "sk-live-1234567890" not in raw
    assert read_records(run_logs / "run.log")[0][key] == "***"


@pytest.mark.parametrize(
    "key",
    [
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "tokens_prompt",
        "max_tokens",
        "keyword",
        "token_count",
    ],
)
def test_counters_are_not_redacted(run_logs: Path, key: str) -> None:
    """Counters such as prompt_tokens are kept."""
    get_logger("m").info("call", **{key: 123})
    assert read_records(run_logs / "run.log")[0][key] == 123


def test_nested_secrets_and_later_mentions_are_scrubbed(run_logs: Path) -> None:
    """Secrets in nested dicts are redacted; the same text later in a message too."""
    log = get_logger("m")
    log.info("config", client={"headers": {"Authorization": "Bearer abcdef123456"}})
    try:
        raise ValueError("auth failed for Bearer abcdef123456")
    except ValueError:
        log.exception("call failed", detail="Bearer abcdef123456 rejected")
    text = (run_logs / "run.log").read_text() + (run_logs / "combined.log").read_text()
    assert "abcdef123456" not in text
    records = read_records(run_logs / "run.log")
    assert records[0]["client"] == {"headers": {"Authorization": "***"}}
    assert "auth failed for ***" in records[1]["exception"]


def test_environment_credentials_are_scrubbed(
    run_logs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The value of a credential-looking environment variable never reaches a file."""
    monkeypatch.setenv("MY_SERVICE_TOKEN", "tok-9876543210")
    configure()  # a new Redactor reads the environment
    get_logger("m").error("request with tok-9876543210 failed")
    assert "tok-9876543210" not in (run_logs / "run.log").read_text()


def test_redact_keys_is_configurable(run_logs: Path) -> None:
    """redact_keys replaces the rules; an empty set redacts nothing."""
    configure(redact_keys={"*_pin"})
    get_logger("m").info("x", card_pin="1234", api_key="visible-key")
    record = read_records(run_logs / "run.log")[0]
    assert (record["card_pin"], record["api_key"]) == ("***", "visible-key")
    configure(redact_keys=set())
    get_logger("m").info("y", password="shown-password")
    assert read_records(run_logs / "run.log")[1]["password"] == "shown-password"


def test_redactor_rules() -> None:
    """Exact and *suffix rules match case-insensitively, '-' as '_'."""
    redactor = Redactor({"password", "*_key"}, scan_environ=False)
    assert redactor.is_secret_key("Password")
    assert redactor.is_secret_key("aws-secret-key")
    assert not redactor.is_secret_key("keyring")


def test_dumps_line_is_one_terminated_line() -> None:
    """A record with newlines inside values is still exactly one line."""
    line = dumps_line({"event": "a\nb", "v": "c\r\nd"})
    assert line.count(b"\n") == 1 and line.endswith(b"\n")
    assert re.fullmatch(rb"\{.*\}\n", line)
