"""One record as one orjson line: key order, UTC timestamps, fallbacks, redaction."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Collection, Iterable, Mapping
from decimal import Decimal
from typing import Any, Final

import orjson

LEVEL_NUMBERS: Final = {
    "debug": 10,
    "info": 20,
    "warning": 30,
    "error": 40,
    "critical": 50,
}
ORCHESTRATOR: Final = "orchestrator"  # the component of lifecycle records
LEVEL_NAMES: Final = {number: name for name, number in LEVEL_NUMBERS.items()}
# A record's own level as the bytes orjson writes for it: a caller's own
# `level` key is renamed and a string value holds `"level"` only escaped, so a
# line holding one of these is a record of that level, found before parsing
# (see #16, #19).
LEVEL_MARKS: Final = {name: f'"level":"{name}"'.encode() for name in LEVEL_NUMBERS}
ERROR_MARKS: Final = (LEVEL_MARKS["error"], LEVEL_MARKS["critical"])
RESERVED_KEYS: Final = (
    "ts",
    "level",
    "event",
    "logger",
    "component",
    "run_id",
    "framework",
    "step",
)
_RESERVED_SET: Final = frozenset(RESERVED_KEYS)
REDACTED: Final = "***"
DEFAULT_REDACT_KEYS: Final = frozenset(
    {
        "api_key",
        "apikey",
        "authorization",
        "password",
        "passwd",
        "secret",
        "token",
        "cookie",
        "*_key",
        "*_token",
        "*_secret",
        "*_password",
    }
)
_MAX_DEPTH: Final = 64
_SCALARS: Final = frozenset({int, float, bool, type(None), bytes})
# values a record holds as they are: nothing in them to redact (see #16)
FLAT_TYPES: Final = frozenset({str, int, float, bool, type(None)})
_FLAT_TYPES: Final = FLAT_TYPES
_MAX_PLAIN_KEYS: Final = 10_000
_MIN_SECRET_LEN: Final = 6
_MAX_REMEMBERED_SECRETS: Final = 1024
_DUMP_OPTIONS: Final = orjson.OPT_SERIALIZE_NUMPY
_NEWLINE_OPTIONS: Final = _DUMP_OPTIONS | orjson.OPT_APPEND_NEWLINE
# the options of one record line, for a caller that calls orjson itself
LINE_OPTIONS: Final = _NEWLINE_OPTIONS

# (first microsecond of a second, "YYYY-MM-DDTHH:MM:SS.") as one tuple, so
# threads that cross a second boundary together never pair one second's
# prefix with another's; it starts out right, for the epoch's first second
_ts_cache: tuple[int, str] = (0, "1970-01-01T00:00:00.")
_time_ns: Final = time.time_ns


def utc_timestamp(ns: int | None = None) -> str:
    """
    RFC 3339 UTC with microseconds and ``Z``: ``2025-10-20T14:23:45.123456Z``.

    The date-time prefix is cached per second, so a record pays one
    ``time.time_ns()`` and one small format. Thread-safe.
    """
    global _ts_cache
    micros = (_time_ns() if ns is None else ns) // 1000
    cache = _ts_cache
    fraction = micros - cache[0]
    if not 0 <= fraction < 1_000_000:
        second = micros // 1_000_000
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second))
        cache = (second * 1_000_000, prefix)
        _ts_cache = cache
        fraction = micros - cache[0]
    # printf-style is a sixth cheaper than an f-string format spec (see #16)
    return "%s%06dZ" % (cache[1], fraction)  # noqa: UP031


def fallback_value(obj: Any) -> Any:
    """
    A JSON-safe stand-in for a value orjson cannot serialize; never raises.

    Tried in order: ``model_dump()`` (pydantic), dataclass fields, sets as
    sorted lists, bytes decoded with backslash escapes, ``tolist()`` (numpy),
    ``str()`` for Decimal and paths, then ``str()``, then ``repr()``.
    """
    try:
        return _convert(obj)
    except Exception:  # noqa: BLE001  # a value's own methods may raise anything; the record is still written
        return _describe(obj)


def _convert(obj: Any) -> Any:
    if isinstance(obj, (set, frozenset)):
        items = list(obj)
        try:
            return sorted(items)
        except TypeError:
            return sorted(items, key=repr)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj).decode("utf-8", "backslashreplace")
    if isinstance(obj, (Decimal, os.PathLike)):
        return str(obj)
    model_dump = getattr(obj, "model_dump", None)
    if callable(model_dump):
        return model_dump(mode="json")
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    tolist = getattr(obj, "tolist", None)
    if callable(tolist):
        return tolist()
    if isinstance(obj, BaseException):
        return f"{type(obj).__name__}: {obj}"
    return str(obj)


def exception_text(exc: BaseException) -> str:
    """``str(exc)``, or a marker when the exception's ``__str__`` raises."""
    try:
        return str(exc)
    except Exception:  # noqa: BLE001  # a user's __str__ may raise anything (#7)
        return f"<{type(exc).__name__}: str() failed>"


def _describe(obj: Any) -> str:
    try:
        return repr(obj)
    except Exception:  # noqa: BLE001  # __repr__ itself raised; fall back to the type
        return f"<unrepresentable {type(obj).__module__}.{type(obj).__qualname__}>"


def dumps_line(record: Mapping[str, Any]) -> bytes:
    """
    *record* as one ``\\n``-terminated JSON line; never fails on a value.

    The fast path is one ``orjson.dumps``. If that fails (lone surrogates,
    non-string keys, cycles, nesting deeper than orjson allows) the record is
    made JSON-safe first: surrogates escaped as text, keys made strings,
    cycles and over-deep values replaced by a marker.
    """
    try:
        return orjson.dumps(record, default=fallback_value, option=_NEWLINE_OPTIONS)
    except (orjson.JSONEncodeError, TypeError, RecursionError):
        return orjson.dumps(
            _make_safe(record, 0, set()),
            default=fallback_value,
            option=_NEWLINE_OPTIONS,
        )


def dumps_value(value: Any) -> str:
    """One value as compact JSON text, with the same fallbacks as records."""
    try:
        return orjson.dumps(
            value, default=fallback_value, option=_DUMP_OPTIONS
        ).decode()
    except (orjson.JSONEncodeError, TypeError, RecursionError):
        safe = _make_safe(value, 0, set())
        return orjson.dumps(safe, default=fallback_value, option=_DUMP_OPTIONS).decode()


def safe_text(text: str) -> str:
    """*text* with lone surrogates written as ``\\udXXX`` escapes."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _int_text(value: int) -> str:
    try:
        return str(value)
    except ValueError:
        # more digits than sys.get_int_max_str_digits() allows: hex has no
        # such limit and still keeps the whole value (see #7)
        return hex(value)


def _make_safe(value: Any, depth: int, seen: set[int]) -> Any:
    kind = type(value)
    if kind is str:
        return safe_text(value)
    if kind is int:
        # orjson writes 64-bit integers only; larger ones keep every digit as text
        return value if -(2**63) <= value < 2**64 else _int_text(value)
    if value is None or kind is float or kind is bool:
        return value
    if depth >= _MAX_DEPTH:
        return f"<nested deeper than {_MAX_DEPTH}: {kind.__qualname__}>"
    if isinstance(value, (dict, list, tuple, set, frozenset)):
        marker = id(value)
        if marker in seen:
            return f"<cycle: {kind.__qualname__}>"
        seen.add(marker)
        try:
            if isinstance(value, dict):
                return {
                    safe_text(k if type(k) is str else _key_text(k)): _make_safe(
                        v, depth + 1, seen
                    )
                    for k, v in value.items()
                }
            items = (
                fallback_value(value) if isinstance(value, (set, frozenset)) else value
            )
            return [_make_safe(v, depth + 1, seen) for v in items]
        finally:
            seen.discard(marker)
    return _make_safe(fallback_value(value), depth + 1, seen)


def _key_text(key: Any) -> str:
    converted = fallback_value(key)
    return converted if type(converted) is str else dumps_value(converted)


class Redactor:
    """
    Replaces the values of credential-looking keys with ``"***"``.

    A rule is an exact key (``"password"``) or a suffix (``"*_token"``);
    matching ignores case and treats ``-`` as ``_``. Values it hides, and the
    values of credential-looking environment variables, are remembered so the
    same text is also scrubbed from exception tracebacks and other strings.
    Thread-safe for use by the logging path (decisions are cached in a dict).
    """

    def __init__(
        self, rules: Collection[str] = DEFAULT_REDACT_KEYS, *, scan_environ: bool = True
    ) -> None:
        exact: set[str] = set()
        suffixes: list[str] = []
        for rule in rules:
            normal = rule.lower().replace("-", "_")
            if normal.startswith("*"):
                suffixes.append(normal[1:])
            else:
                exact.add(normal)
        self._exact = frozenset(exact)
        self._suffixes = tuple(suffixes)
        self.decisions: dict[str, bool] = {}
        # keys neither reserved nor credentials: a record holding only these,
        # with flat values, is copied as it is
        self.plain_keys: set[str] = set()
        self.secrets: set[str] = set()
        if scan_environ and (self._exact or self._suffixes):
            for name, value in os.environ.items():
                if self.is_secret_key(name):
                    self.remember(value)

    def is_secret_key(self, key: str) -> bool:
        """True if values under *key* are credentials."""
        decision = self.decisions.get(key)
        if decision is None:
            normal = key.lower().replace("-", "_") if type(key) is str else ""
            decision = normal in self._exact or normal.endswith(self._suffixes)
            if len(self.decisions) < 10_000:
                self.decisions[key] = decision
        return decision

    def remember(self, value: Any) -> None:
        """Scrub *value* (when it is a long enough string) from later text too."""
        if (
            type(value) is str
            and len(value) >= _MIN_SECRET_LEN
            and value != REDACTED
            and len(self.secrets) < _MAX_REMEMBERED_SECRETS
        ):
            self.secrets.add(value)

    def scrub_text(self, text: str) -> str:
        """*text* with every remembered secret replaced by ``***``."""
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def redact_value(self, value: Any) -> Any:
        """A copy of a nested dict/list value with secret keys redacted."""
        return self._redact(value, 0, set())

    def _redact(self, value: Any, depth: int, seen: set[int]) -> Any:
        kind = type(value)
        if kind is str:
            return self.scrub_text(value) if self.secrets else value
        original = value
        if kind is not dict and kind is not list and kind is not tuple:
            value = _as_container(value)
            if value is original:
                return value
            kind = type(value)
        if depth >= _MAX_DEPTH:
            return f"<nested deeper than {_MAX_DEPTH}: {kind.__qualname__}>"
        if id(original) in seen:
            return f"<cycle: {kind.__qualname__}>"
        seen.add(id(original))
        try:
            if kind is dict:
                out = {}
                for k, v in value.items():
                    if type(k) is str and self.is_secret_key(k):
                        self.remember(v)
                        out[k] = REDACTED
                    else:
                        out[k] = self._redact(v, depth + 1, seen)
                return out
            return [self._redact(v, depth + 1, seen) for v in value]
        finally:
            seen.discard(id(original))


def _as_container(value: Any) -> Any:
    """
    A plain dict or list for a value that holds keys or items, else *value*.

    Dict subclasses, list/tuple subclasses, dataclasses and models (through
    the same fallbacks a record uses) are looked into, so the credentials
    they hold are redacted like a dict's.
    """
    try:
        if isinstance(value, Mapping):
            return dict(value)
        if isinstance(value, (list, tuple)):
            return list(value)
        if not (
            (dataclasses.is_dataclass(value) and not isinstance(value, type))
            or callable(getattr(value, "model_dump", None))
        ):
            return value
    except Exception:  # noqa: BLE001  # a hostile value's own methods raised: its text
        return _describe(value)
    converted = fallback_value(value)
    return converted if type(converted) in (dict, list, str) else value


def build_record(
    ts: str,
    level: str,
    event: Any,
    logger: str,
    component: str,
    run_id: str | None,
    framework: str | None,
    step: int | None,
    extra: Mapping[str, Any],
    redactor: Redactor,
) -> dict[str, Any]:
    """
    The record dict in SPEC §2 key order, then the caller's pairs, redacted.

    A caller's key that collides with a reserved key is kept as ``<key>_``.
    """
    if type(event) is not str:
        event = fallback_value(event) if event is not None else ""
        if type(event) is not str:
            event = dumps_value(event)
    secrets = redactor.secrets
    if secrets:
        event = redactor.scrub_text(event)
    record: dict[str, Any] = {
        "ts": ts,
        "level": level,
        "event": event,
        "logger": logger,
        "component": component,
        "run_id": run_id,
        "framework": framework,
        "step": step,
    }
    plain = redactor.plain_keys
    if (
        not secrets
        and plain.issuperset(extra)
        and _FLAT_TYPES.issuperset(map(type, extra.values()))
    ):
        # the common case, checked in C (see #16): every key seen before and
        # neither reserved nor a credential, every value a flat one
        record.update(extra)
        return record
    decisions = redactor.decisions
    for key, value in extra.items():
        if key in record:
            key = f"{key}_"
        secret = decisions.get(key)
        if secret is None:
            secret = redactor.is_secret_key(key)
        if secret:
            redactor.remember(value)
            value = REDACTED
        else:
            if (
                type(key) is str
                and key not in _RESERVED_SET
                and len(plain) < _MAX_PLAIN_KEYS
            ):
                plain.add(key)
            kind = type(value)
            if kind is str:
                if secrets:
                    value = redactor.scrub_text(value)
            elif kind is dict or kind is list or kind is tuple:
                value = redactor.redact_value(value)
            elif kind not in _SCALARS:
                # a dict subclass, dataclass or model holds keys too (see #7)
                value = redactor.redact_value(value)
        record[key] = value
    return record


def iter_pairs(record: Mapping[str, Any]) -> Iterable[tuple[str, Any]]:
    """The caller's own pairs of *record* (everything after ``step``)."""
    return ((k, v) for k, v in record.items() if k not in RESERVED_KEYS)
