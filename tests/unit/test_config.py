"""Settings validate themselves; a bad configure() value fails in configure()."""

from __future__ import annotations

import math
from typing import Any

import pytest

from runlog import ConfigurationError, ContextError, configure
from runlog._config import Settings, apply_settings, current_settings
from runlog.handler import get_handler


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("console_level", "loud", "'loud'"),
        ("console_format", "xml", "'xml'"),
        ("file_level", -1, "-1"),
        ("combined", "yes", "'yes'"),
        ("combined_max_lines", 0, "0"),
        ("combined_trim_fraction", 1.5, "1.5"),
        ("on_write_error", "ignore", "'ignore'"),
        ("max_open_files", 2.0, "2.0"),
        ("heartbeat_interval_s", math.inf, "inf"),
        ("heartbeat_interval_s", math.nan, "nan"),
        ("heartbeat_interval_s", True, "True"),
        ("redact_keys", frozenset({1}), "frozenset({1})"),
        ("extra_sinks", ("not callable",), "'not callable'"),
    ],
)
def test_a_bad_setting_is_refused_when_made(field: str, value: Any, named: str) -> None:
    """Settings(...) with a bad value raises ConfigurationError naming it."""
    with pytest.raises(ConfigurationError, match=f"{field}|extra sink") as caught:
        Settings(**{field: value})
    assert named in str(caught.value)


def test_a_bad_component_name_in_settings_is_a_context_error() -> None:
    """A run-level component that is not a safe name is refused like any name."""
    with pytest.raises(ContextError, match="'a/b'"):
        Settings(run_level_components=frozenset({"a/b"}))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"heartbeat_interval_s": math.inf},
        {"combined_trim_fraction": 0},
        {"console_level": "chatty"},
        {"run_level_components": "reconciliation"},
        {"max_open_files": True},
    ],
)
def test_configure_fails_inside_configure_and_changes_nothing(
    kwargs: dict[str, Any],
) -> None:
    """A bad configure() argument raises there; the settings in force stay."""
    configure(console_format="json")
    before = current_settings()
    with pytest.raises(ConfigurationError, match=repr(next(iter(kwargs.values())))):
        configure(**kwargs)
    assert current_settings() is before
    assert get_handler().settings is before


def test_applied_settings_reach_the_handler_and_its_threshold() -> None:
    """apply_settings() makes the settings current for the handler at once."""
    settings = Settings(console_level=40, file_level=30)
    apply_settings(settings)
    assert current_settings() is settings
    assert get_handler().settings is settings
    assert get_handler().min_level == 30
