"""Settings: what configure() sets, validated when made, and the one current copy."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from . import _paths
from ._records import DEFAULT_REDACT_KEYS, LEVEL_NUMBERS
from .errors import ConfigurationError

CONSOLE_FORMATS: Final = ("pretty", "json", "off")
ON_WRITE_ERROR: Final = ("raise", "warn")
# what start_run(capture=...) records of a step's output; travels to children
# with the other settings (see #15)
CAPTURE_MODES: Final = ("none", "python", "fd")
DEFAULT_RUN_LEVEL_COMPONENTS: Final = frozenset({"reconciliation"})
# "off" in a child whose stderr the parent already turns into records
CONSOLE_ENV: Final = "RUNLOG_CONSOLE"

SettingsListener = Callable[["Settings"], None]


def parse_level(option: str, value: object) -> int:
    """
    A level name (``"info"``) or number (``20``) as a stdlib level number.

    Raises:
        ConfigurationError: Naming *option* and the bad value.
    """
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.lower() in LEVEL_NUMBERS:
        return LEVEL_NUMBERS[value.lower()]
    raise ConfigurationError(
        f"{option} {value!r}: use one of {list(LEVEL_NUMBERS)} or a level number"
    )


def check_interval(option: str, value: object) -> float:
    """
    *value* as a finite number of seconds > 0.

    Raises:
        ConfigurationError: Naming *option* and the bad value.
    """
    if (
        not isinstance(value, (int, float))
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigurationError(f"{option} {value!r}: use a finite number > 0")
    return float(value)


def _check_int(option: str, value: object) -> None:
    if type(value) is not int or value < 1:
        raise ConfigurationError(f"{option} {value!r}: use an int >= 1")


def _check_choice(option: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigurationError(f"{option} {value!r}: use one of {list(allowed)}")


@dataclass(frozen=True, slots=True)
class Settings:
    """
    Everything configure() sets; replaced whole, never mutated.

    Raises:
        ConfigurationError: On construction, naming the first bad value.
    """

    console_level: int = 20
    console_format: str = "pretty"
    file_level: int = 10
    combined: bool = True
    combined_max_lines: int = 5000
    combined_trim_fraction: float = 0.1
    run_level_components: frozenset[str] = DEFAULT_RUN_LEVEL_COMPONENTS
    redact_keys: frozenset[str] = DEFAULT_REDACT_KEYS
    on_write_error: str = "raise"
    external_level: int = 20
    max_open_files: int = 64
    heartbeat_interval_s: float = 30.0
    stdlib_propagate: bool = False
    capture: str = "python"
    extra_sinks: tuple[object, ...] = field(default=())

    def __post_init__(self) -> None:
        for option in ("console_level", "file_level", "external_level"):
            parse_level(option, getattr(self, option))
        _check_choice("console_format", self.console_format, CONSOLE_FORMATS)
        _check_choice("on_write_error", self.on_write_error, ON_WRITE_ERROR)
        _check_choice("capture", self.capture, CAPTURE_MODES)
        if type(self.combined) is not bool:
            raise ConfigurationError(f"combined {self.combined!r}: use True or False")
        if type(self.stdlib_propagate) is not bool:
            raise ConfigurationError(
                f"stdlib_propagate {self.stdlib_propagate!r}: use True or False"
            )
        _check_int("combined_max_lines", self.combined_max_lines)
        _check_int("max_open_files", self.max_open_files)
        fraction = self.combined_trim_fraction
        if not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
            raise ConfigurationError(
                f"combined_trim_fraction {fraction!r}: use 0 < f <= 1"
            )
        check_interval("heartbeat_interval_s", self.heartbeat_interval_s)
        if not isinstance(self.run_level_components, frozenset):
            raise ConfigurationError(
                f"run_level_components {self.run_level_components!r}: "
                "use a set of names"
            )
        for component in self.run_level_components:
            _paths.check_name("component", component)
        if not isinstance(self.redact_keys, frozenset) or not all(
            isinstance(key, str) for key in self.redact_keys
        ):
            raise ConfigurationError(
                f"redact_keys {self.redact_keys!r}: use a set of key names"
            )
        for sink in self.extra_sinks:
            if not callable(sink):
                raise ConfigurationError(f"extra sink {sink!r}: use a callable")

    @property
    def min_level(self) -> int:
        """The lowest level any destination takes; lower levels are dropped at once."""
        if self.console_format == "off":
            return self.file_level
        return min(self.file_level, self.console_level)


_current = Settings()
_listeners: list[SettingsListener] = []
_lock = threading.RLock()  # joining a run at first use may apply settings


def current_settings() -> Settings:
    """The settings in force now."""
    return _current


def apply_settings(settings: Settings) -> None:
    """Make *settings* current, then tell every listener (the handler, loggers)."""
    global _current
    with _lock:
        _current = settings
        for listener in _listeners:
            listener(_current)  # re-read: a listener may have applied newer ones


def add_settings_listener(listener: SettingsListener) -> None:
    """Call *listener(settings)* each time new settings are applied."""
    with _lock:
        _listeners.append(listener)


def settings_to_env(settings: Settings) -> str:
    """
    *settings* as one compact environment value, for processes that join the run.

    Every field travels except ``extra_sinks`` (callables of this process), so
    a field added to :class:`Settings` travels too. Only fields that differ
    from the defaults are written. No field holds a secret value: redaction
    keys are key names, and a child finds the values to hide in its own
    environment (see #13).

    Returns:
        JSON text such as ``{"console_format":"off","redact_keys":["bearer"]}``.
    """
    import dataclasses

    import orjson

    defaults = Settings()
    values: dict[str, object] = {}
    for spec in dataclasses.fields(Settings):
        if spec.name == "extra_sinks":
            continue
        value = getattr(settings, spec.name)
        if value == getattr(defaults, spec.name):
            continue
        if isinstance(value, (frozenset, set)):
            value = sorted(value)
        elif isinstance(value, tuple):
            value = list(value)
        values[spec.name] = value
    return orjson.dumps(values).decode("utf-8")


def settings_from_env(
    text: str, *, source: str, extra_sinks: tuple[object, ...] = ()
) -> Settings:
    """
    The settings that :func:`settings_to_env` wrote as *text*; defaults elsewhere.

    A name this version does not know (written by a newer runlog) is ignored.

    Args:
        text: The value made by :func:`settings_to_env`.
        source: Where *text* came from, for messages (``"RUNLOG_SETTINGS"``).
        extra_sinks: This process's sinks; they never travel.

    Raises:
        ConfigurationError: If *text* is not such a value or holds a bad
            setting, naming it.
    """
    import dataclasses

    import orjson

    try:
        values = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ConfigurationError(
            f"{source} {text!r}: not a settings value ({exc})"
        ) from exc
    if not isinstance(values, dict):
        raise ConfigurationError(f"{source} {text!r}: not a settings value")
    defaults = {
        spec.name: spec.default
        for spec in dataclasses.fields(Settings)
        if spec.name != "extra_sinks"
    }
    known: dict[str, object] = {}
    for name, value in values.items():
        if name not in defaults:
            continue  # a newer runlog's setting: this version has no use for it
        default = defaults[name]
        if isinstance(default, frozenset) and isinstance(value, list):
            value = frozenset(value)
        elif isinstance(default, tuple) and isinstance(value, list):
            value = tuple(value)
        known[name] = value
    try:
        # the values' types are Settings' own checks to make, naming the value
        return Settings(**known, extra_sinks=extra_sinks)  # type: ignore[arg-type]
    except ValueError as exc:  # ConfigurationError, or ContextError for a name
        raise ConfigurationError(f"{source}: {exc}") from exc
