"""Fingerprints: the same failure in other runs is one group, another failure is not."""

from __future__ import annotations

import traceback

import pytest

from runlog.summary._fingerprint import fingerprint, mask, user_frame


def _raise_in_user_code(message: str) -> str:
    try:
        raise ValueError(message)
    except ValueError:
        return traceback.format_exc()


def _record(message: str, **extra: object) -> dict[str, object]:
    return {
        "level": "error",
        "event": "step_failed",
        "component": "orchestrator",
        "exception": _raise_in_user_code(message),
        **extra,
    }


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("retry 3 of 10 after 1.5s", "retry <n> of <n> after <n>s"),
        (
            "job 0f8fad5b-d9cb-469f-a165-70867728950e failed",
            "job <uuid> failed",
        ),
        (
            "bad pointer 0x7ffee4b2 and digest deadbeef42",
            "bad pointer <hex> and digest <hex>",
        ),
        ("cannot open /tmp/pytest-17/run_3/x.json: gone", "cannot open <path>: gone"),
        ("expected 'gold', got \"lead\"", "expected <str>, got <str>"),
        ("C:\\Users\\me\\file.txt missing", "<path> missing"),
        ("no numbers here", "no numbers here"),
    ],
)
def test_mask_hides_what_changes_between_runs(text: str, masked: str) -> None:
    """Numbers, hex, uuids, quoted strings and paths are masked; words stay."""
    assert mask(text) == masked


def test_same_failure_with_other_ids_numbers_and_paths_is_one_fingerprint() -> None:
    """The same failure with other ids, numbers and paths has one fingerprint."""
    first = fingerprint(_record("run 12 of /tmp/a/b.json: id 3f2a9c7e81 'x'"))
    second = fingerprint(_record("run 97 of /var/tmp/zz.json: id 0a0b0c0d99 'yyy'"))
    assert first == second
    assert first.kind == "ValueError"
    assert first.frame == "test_fingerprint.py in _raise_in_user_code"


def test_other_exception_type_or_message_is_another_fingerprint() -> None:
    """Another exception type or another message is another fingerprint."""
    value_error = fingerprint(_record("bad value"))
    other_message = fingerprint(_record("other value"))
    type_error = fingerprint(
        {
            "level": "error",
            "event": "x",
            "error_type": "TypeError",
            "error": "bad value",
        }
    )
    assert len({value_error.key, other_message.key, type_error.key}) == 3


def test_error_fields_and_traceback_give_the_same_fingerprint() -> None:
    """error_type/error fields and the traceback alone give the same key."""
    # step_end carries error_type and error; log.exception only the traceback
    from_traceback = fingerprint(_record("bad value 7"))
    from_fields = fingerprint(
        _record("bad value 9", error_type="ValueError", error="bad value 9")
    )
    assert from_traceback == from_fields


def test_record_without_exception_is_known_by_level_event_and_component() -> None:
    """Without an exception: level, masked event and component."""
    one = fingerprint({"level": "error", "event": "quota 93% used", "component": "api"})
    two = fingerprint({"level": "error", "event": "quota 95% used", "component": "api"})
    other = fingerprint(
        {"level": "error", "event": "quota 95% used", "component": "db"}
    )
    assert one == two != other
    assert (one.kind, one.message, one.frame) == ("error", "quota <n>% used [api]", "")


def test_user_frame_prefers_user_code_over_library_frames() -> None:
    """The innermost user frame is chosen over stdlib frames below it."""
    text = (
        "Traceback (most recent call last):\n"
        '  File "/home/me/project/fail.py", line 14, in load\n'
        "    json.loads(text)\n"
        '  File "/usr/lib/python3.11/json/__init__.py", line 346, in loads\n'
        "    return _default_decoder.decode(s)\n"
        "json.decoder.JSONDecodeError: Expecting value: line 1 column 1 (char 0)\n"
    )
    frame = user_frame(text)
    assert frame is not None
    assert str(frame) == "fail.py:14 in load"
    assert fingerprint({"level": "error", "exception": text}).kind == (
        "JSONDecodeError"
    )


def test_qualified_and_bare_exception_names_are_one_fingerprint() -> None:
    """A traceback names `pkg.mod.Error`, step_end's error_type `Error`: one group."""
    text = (
        "Traceback (most recent call last):\n"
        '  File "/home/me/project/fail.py", line 14, in load\n'
        "    raise RateLimitedError('slow down')\n"
        "myproject.errors.RateLimitedError: slow down\n"
    )
    from_traceback = fingerprint({"level": "error", "exception": text})
    from_fields = fingerprint(
        {
            "level": "error",
            "error_type": "RateLimitedError",
            "error": "slow down",
            "traceback": text,
        }
    )
    assert from_traceback == from_fields


def test_hostile_record_values_do_not_break_fingerprinting() -> None:
    """Non-string fields and huge tracebacks give a bounded fingerprint."""
    hostile = {
        "level": 3,
        "event": ["x"],
        "exception": "\x1b[31m" * 10_000,
        "error": None,
    }
    print_ = fingerprint(hostile)
    assert len(print_.message) <= 200
    assert len(print_.key) == 12
