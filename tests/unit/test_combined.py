"""combined.log: one human line per record and the line cap."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from runlog import LogContext, configure, get_logger
from runlog.combined import CombinedLog, format_human


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_human_line_format(run_logs: Path) -> None:
    """A line reads 'ts level [component] step=N event key=value', newlines escaped."""
    LogContext.get_instance().set_step_context(3)
    get_logger("m", component="adapter").info(
        "api_call", prompt_tokens=123, model="gpt-4o", note="two\nlines", ratio=0.5
    )
    (line,) = _lines(run_logs / "combined.log")
    ts, rest = line.split(" ", 1)
    assert ts.endswith("Z")
    assert rest == (
        "info     [adapter] step=3 api_call prompt_tokens=123 model=gpt-4o "
        'note="two\\nlines" ratio=0.5'
    )


def test_format_human_accepts_any_key_order() -> None:
    """format_human reads records whose keys are in any order (for readers)."""
    record = {
        "k": 1,
        "event": "multi\nline",
        "step": None,
        "level": "error",
        "component": "c",
        "ts": "T",
    }
    assert format_human(record) == 'T error    [c] step=- "multi\\nline" k=1'


def test_3000_records_give_exactly_3000_lines(run_logs: Path) -> None:
    """Below the cap nothing is trimmed: 3,000 records -> exactly 3,000 lines."""
    configure(console_format="off")
    log = get_logger("m")
    for i in range(3000):
        log.info("r", i=i)
    lines = _lines(run_logs / "combined.log")
    assert len(lines) == 3000
    assert lines[0].endswith(" r i=0") and lines[-1].endswith(" r i=2999")


def test_12000_records_stay_under_the_cap_ending_with_newest(run_logs: Path) -> None:
    """12,000 records -> between 4,500 and 5,000 lines, the newest last, in order."""
    configure(console_format="off")
    log = get_logger("m")
    for i in range(12_000):
        log.info("r", i=i)
    lines = _lines(run_logs / "combined.log")
    assert 4500 <= len(lines) <= 5000
    numbers = [int(line.rsplit("i=", 1)[1]) for line in lines]
    assert numbers == list(range(12_000 - len(lines), 12_000))
    assert len((run_logs / "run.log").read_bytes().splitlines()) == 12_000


def test_cap_is_never_exceeded_and_never_trimmed_early(tmp_path: Path) -> None:
    """The file grows to exactly the cap, then drops a batch; never above the cap."""
    combined = CombinedLog(tmp_path / "combined.log", max_lines=100, trim_fraction=0.1)
    sizes = []
    for i in range(350):
        combined.append(f"line {i}\n".encode())
        sizes.append(len(_lines(tmp_path / "combined.log")))
    assert sizes[:99] == list(range(1, 100))
    assert max(sizes) <= 100
    assert sizes[99] == 90  # the 100th line reached the cap: one batch dropped
    assert _lines(tmp_path / "combined.log")[-1] == "line 349"


def test_close_removes_the_spare(tmp_path: Path) -> None:
    """After close only combined.log is left in the directory."""
    combined = CombinedLog(tmp_path / "combined.log", max_lines=10)
    for i in range(40):
        combined.append(f"{i}\n".encode())
    combined.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["combined.log"]


def test_existing_file_counts_toward_the_cap(tmp_path: Path) -> None:
    """Lines already in combined.log (a resumed run) count toward the cap."""
    path = tmp_path / "combined.log"
    path.write_text("".join(f"old {i}\n" for i in range(95)))
    combined = CombinedLog(path, max_lines=100, trim_fraction=0.5)
    for i in range(5):
        combined.append(f"new {i}\n".encode())
    lines = _lines(path)
    assert len(lines) == 50 and lines[-1] == "new 4"


@settings(max_examples=30, deadline=None)
@given(
    cap=st.integers(min_value=1, max_value=60),
    fraction=st.floats(min_value=0.01, max_value=1.0),
    count=st.integers(min_value=0, max_value=200),
)
def test_cap_property(
    tmp_path_factory: object, cap: int, fraction: float, count: int
) -> None:
    """Any cap and batch: never above the cap, never trimmed early, newest kept."""
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "combined.log"
        combined = CombinedLog(path, max_lines=cap, trim_fraction=fraction)
        for i in range(count):
            combined.append(f"{i}\n".encode())
        lines = _lines(path) if path.exists() else []
        assert len(lines) <= cap
        if count < cap:
            assert len(lines) == count
        if count:
            assert lines[-1] == str(count - 1)
            assert [int(x) for x in lines] == list(range(count - len(lines), count))
        combined.close()


def _write_many(logs_dir: str, worker: int, count: int, start: Any) -> None:
    combined = CombinedLog(Path(logs_dir) / "combined.log", max_lines=1000)
    start.wait(30)
    for i in range(count):
        combined.append(orjson.dumps({"w": worker, "i": i}) + b"\n")
    combined.close()


def test_several_processes_share_one_capped_file(tmp_path: Path) -> None:
    """4 processes x 5,000 lines: whole lines, in order, near the cap, newest kept."""
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    workers = [
        context.Process(target=_write_many, args=(str(tmp_path), n, 5000, start))
        for n in range(4)
    ]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    lines = (tmp_path / "combined.log").read_bytes().splitlines()
    records = [orjson.loads(line) for line in lines]  # no torn line
    assert 500 <= len(records) <= 1000 + 4 * 64
    for worker in range(4):
        mine = [r["i"] for r in records if r["w"] == worker]
        assert mine == sorted(set(mine))  # in order, no duplicates
    assert max(r["i"] for r in records) == 4999


def test_a_trim_reuses_the_replaced_file_when_no_one_else_writes(
    tmp_path: Path,
) -> None:
    """With one writer, the file a trim replaces becomes the next trim's spare."""
    path = tmp_path / "combined.log"
    spare = tmp_path / ".combined.log.spare"
    combined = CombinedLog(path, max_lines=10, trim_fraction=0.5)
    for i in range(9):
        combined.append(f"{i}\n".encode())
    for trim in range(3):
        live = path.stat().st_ino
        for i in range(5):
            combined.append(f"{trim} {i}\n".encode())
        assert path.stat().st_ino != live
        assert spare.stat().st_ino == live  # kept for the next trim to rewrite
    assert len(_lines(path)) == 9
    combined.close()
    assert not spare.exists()


def test_a_file_another_writer_holds_is_not_reused(tmp_path: Path) -> None:
    """Another writer's shared lock keeps the old file from reuse; no line lost."""
    path = tmp_path / "combined.log"
    mine = CombinedLog(path, max_lines=10, trim_fraction=0.5)
    other = CombinedLog(path, max_lines=10, trim_fraction=0.5)
    other.append(b"other 0\n")
    for i in range(9):
        mine.append(f"mine {i}\n".encode())
    assert not (tmp_path / ".combined.log.spare").exists()
    other.append(b"other 1\n")  # written after the trim, to the replaced file
    other.close()  # notices the trim and carries its line over
    lines = _lines(path)
    assert lines[-1] == "other 1" and "mine 8" in lines
    mine.close()


def test_lines_appended_in_batches_count_and_trim_like_single_ones(
    tmp_path: Path,
) -> None:
    """append(data, count) of several lines at once keeps the cap and the newest."""
    combined = CombinedLog(tmp_path / "combined.log", max_lines=100, trim_fraction=0.1)
    written = 0
    for size in [7, 30, 1, 63, 50, 99, 2] * 3:
        batch = "".join(f"line {written + i}\n" for i in range(size))
        combined.append(batch.encode(), size)
        written += size
        lines = _lines(tmp_path / "combined.log")
        assert len(lines) <= 100
        assert lines[-1] == f"line {written - 1}"
        # whole lines, newest last, none missing between the first kept and the last
        first = int(lines[0].split()[1])
        assert lines == [f"line {n}" for n in range(first, written)]
    combined.close()


def test_written_and_human_lines_agree_for_awkward_values() -> None:
    """format_written equals format_human for escapes, huge ints and odd keys."""
    from runlog.combined import format_written

    record: dict[str, Any] = {
        "ts": "T",
        "level": "info",
        "event": "bell\x07 and\nbreak",
        "logger": "l",
        "component": "c",
        "run_id": "r",
        "framework": "f",
        "step": 2,
        "plain": "gpt-4o",
        "unicode": "ünïcode",
        "ctl": "a\x1bb",
        "spaced": "two words",
        "huge": 10**80,
        "flag": True,
        "key\nbreak": 1,
        "bidi\u202e": "x",
        "nested": {"a": [1, "\x1b"]},
    }
    assert format_written(record) == format_human(record)
    assert "\x1b" not in format_written(record)
    assert "\n" not in format_written(record)


_FLAT_VALUES = st.one_of(
    st.text(max_size=12),
    st.text(alphabet='ab=" \\,:{}[]\x1b\n-', max_size=6),
    st.integers(),
    st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1]),
    st.floats(allow_nan=True),
    st.booleans(),
    st.none(),
    st.lists(st.one_of(st.integers(), st.text(max_size=4)), max_size=3),
)


@settings(max_examples=300, deadline=None)
@given(
    ts=st.one_of(st.just("2025-10-20T14:23:45.123456Z"), st.text(max_size=8)),
    level=st.sampled_from(["debug", "info", "warning", "error", "critical"]),
    event=st.text(max_size=16),
    component=st.from_regex(r"[A-Za-z0-9_.-]{1,8}", fullmatch=True),
    step=st.one_of(st.none(), st.integers(min_value=0, max_value=10**5)),
    pairs=st.dictionaries(
        st.one_of(
            st.from_regex(r"[a-z_]{1,8}", fullmatch=True),
            st.text(alphabet='k=" \\,:\n\x1b%()', min_size=1, max_size=4),
        ),
        _FLAT_VALUES,
        max_size=5,
    ),
)
def test_written_line_is_the_human_line_for_any_record(
    ts: str,
    level: str,
    event: str,
    component: str,
    step: int | None,
    pairs: dict[str, Any],
) -> None:
    """format_written gives format_human's exact line for any record runlog builds."""
    from runlog._records import RESERVED_KEYS
    from runlog.combined import format_written

    record: dict[str, Any] = {
        "ts": ts,
        "level": level,
        "event": event,
        "logger": "m",
        "component": component,
        "run_id": "r",
        "framework": "f",
        "step": step,
    }
    record.update((k, v) for k, v in pairs.items() if k not in RESERVED_KEYS)
    line = format_written(record)
    assert line == format_human(record)
    assert "\n" not in line
    assert "\r" not in line


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=40_000), max_size=12),
    wanted=st.integers(min_value=0, max_value=14),
)
def test_trim_cut_is_just_past_the_wanted_lines(
    tmp_path_factory: Any, sizes: list[int], wanted: int
) -> None:
    """A trim cuts just past the first N newlines, across 64 KiB reads too."""
    import os

    from runlog.combined import _offset_after_lines

    data = b"".join(b"x" * size + b"\n" for size in sizes)
    path = tmp_path_factory.mktemp("cut") / "combined.log"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        offset = _offset_after_lines(fd, wanted)
    finally:
        os.close(fd)
    expected = sum(size + 1 for size in sizes[:wanted])
    assert offset == expected
