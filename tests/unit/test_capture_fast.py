"""The FastTee of a block-buffered stream, and the block writer it feeds (#15)."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from runlog import LogContext
from runlog.capture._fast import FastTee, flavour_of
from runlog.handler import get_handler
from tests.conftest import read_records

TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


@pytest.fixture
def stream(tmp_path: Path) -> Iterator[io.TextIOWrapper]:
    """A block-buffered text file, as Python makes sys.stdout on a file."""
    with open(tmp_path / "out.txt", "w", encoding="utf-8") as opened:
        yield opened


def test_writes_wait_in_blocks_until_taken(stream: io.TextIOWrapper) -> None:
    """What is written is kept, in order, and taken once; the file gets nothing."""
    flushes: list[str] = []

    tee = FastTee(stream, lambda: flushes.append("flush"), line=False)
    out = tee.stream
    assert type(out) is io.TextIOWrapper
    out.write("one ")
    print("two", 3, file=out)
    out.writelines(["four\n", "fü\n"])
    out.buffer.write(b"bytes\n")
    assert tee.holds()
    # bytes pass text the TextIOWrapper still holds, as in any TextIOWrapper
    assert tee.take() == "bytes\none two 3\nfour\nfü\n".encode()
    assert tee.take() == b""
    assert not tee.holds()
    assert flushes == []  # taking is not the application's flush
    out.flush()
    assert flushes == ["flush"]
    stream.flush()
    assert Path(stream.name).read_bytes() == b""


def test_attributes_are_those_of_the_wrapped_stream(stream: io.TextIOWrapper) -> None:
    """fileno, isatty, name, mode, encoding and errors are the stream's."""
    out = FastTee(stream, lambda: None, line=False).stream
    assert out.fileno() == stream.fileno()
    assert out.isatty() is False
    assert out.name == stream.name
    assert out.mode == "w"
    assert (out.encoding, out.errors) == (stream.encoding, stream.errors)
    assert out._runlog_target is stream  # type: ignore[attr-defined]
    assert out.buffer.raw is stream.buffer.raw


def test_a_line_buffered_block_tee_calls_back_at_each_line(
    stream: io.TextIOWrapper,
) -> None:
    """reconfigure(line_buffering=True) by the application: a flush per line."""
    flushes: list[bytes] = []

    tee = FastTee(stream, lambda: flushes.append(tee.take()), line=False)
    tee.stream.reconfigure(line_buffering=True)  # flushes (nothing) first
    flushes.clear()
    tee.stream.write("no end yet ")
    assert flushes == []
    print("now", file=tee.stream)
    assert flushes == [b"no end yet now\n"]


def test_forward_passes_queued_text_first_then_every_write(
    stream: io.TextIOWrapper,
) -> None:
    """After forward(), the queued text goes first, then each write at once."""
    forwarded: list[str] = []
    tee = FastTee(stream, lambda: None, line=False)
    tee.stream.write("queued ")
    tee.forward(forwarded.append)
    assert forwarded == ["queued "]
    tee.stream.write("at once\n")
    print("and", "this", file=tee.stream)
    assert "".join(forwarded) == "queued at once\nand this\n"
    tee.stream.flush()  # now the wrapped stream's flush
    tee.stream.close()
    assert not stream.closed


def test_which_streams_a_fast_tee_can_stand_in_for(tmp_path: Path) -> None:
    """A plain TextIOWrapper: "block", or "line" when line-buffered or write-through."""
    with open(tmp_path / "a", "w") as plain:
        assert flavour_of(plain) == "block"
    with open(tmp_path / "b", "w", buffering=1) as lines:
        assert flavour_of(lines) == "line"
    closed = open(tmp_path / "c", "w")  # noqa: SIM115  # closed on purpose
    closed.close()
    assert flavour_of(closed) is None
    assert flavour_of(io.StringIO()) is None
    assert flavour_of(None) is None
    raw = io.TextIOWrapper(io.BytesIO(), write_through=True)
    assert flavour_of(raw) == "line"


def test_the_line_flavour_calls_back_at_each_line_end(
    stream: io.TextIOWrapper,
) -> None:
    """A "line" FastTee keeps every piece at once and calls back per line."""
    ends: list[bytes] = []

    def on_line() -> None:
        data = tee.take()
        ends.append(data)
        tee.written.append(data)

    tee = FastTee(stream, on_line, line=True)
    tee.stream.write("piece ")
    assert tee.holds()
    assert ends == []
    print("one", 1, file=tee.stream)
    tee.stream.write("10%\r")
    assert ends == [b"piece one 1\n", b"10%\r"]
    tee.stream.write("rest")
    assert tee.take() == b"rest"
    assert tee.take_written() == b"piece one 1\n10%\r"
    assert tee.take_written() == b""
    assert not tee.holds()


def test_a_plain_block_is_recorded_as_line_by_line_recording_would(
    tmp_path: Path,
) -> None:
    """write_plain_block writes the same JSON and combined.log lines as write_output."""
    handler = get_handler()
    context = LogContext.get_instance()
    files = {}
    for way in ("block", "lines"):
        logs = tmp_path / way / "logs"
        context.set_run_context("r1", "fw", logs)
        context.set_step_context(2)
        key = (context.state.generation, 2)
        if way == "block":
            handler.write_plain_block("runlog.capture", "stdout", key, b"a b\n= c\n")
        else:
            handler.write_output(
                "runlog.capture", "stdout", key, [("a b", {}), ("= c", {})]
            )
        files[way] = (
            TS.sub("T", (logs / "step_002" / "stdout.log").read_text()),
            TS.sub("T", (logs / "combined.log").read_text()),
        )
        context.clear_run_context()
    assert files["block"] == files["lines"]
    records = read_records(tmp_path / "block" / "logs" / "step_002" / "stdout.log")
    assert [(r["event"], r["stream"], r["step"]) for r in records] == [
        ("a b", "stdout", 2),
        ("= c", "stdout", 2),
    ]


def test_a_big_block_writes_only_the_lines_combined_log_keeps(
    tmp_path: Path,
) -> None:
    """More lines than combined.log keeps: all in run.log, the newest in it."""
    handler = get_handler()
    context = LogContext.get_instance()
    logs = tmp_path / "logs"
    context.set_run_context("r1", "fw", logs)
    key = (context.state.generation, None)
    block = b"".join(b"line %d\n" % i for i in range(12000))
    handler.write_plain_block("runlog.capture", "stdout", key, block)
    events = [r["event"] for r in read_records(logs / "run.log")]
    assert events == [f"line {i}" for i in range(12000)]
    combined = (logs / "combined.log").read_text().splitlines()
    assert combined[-1].endswith("line 11999 stream=stdout")
    assert len(combined) <= 5000
    numbers = [int(line.split()[-2]) for line in combined]
    assert numbers == list(range(12000 - len(numbers), 12000))


def test_a_block_for_a_finished_generation_takes_the_careful_path(
    tmp_path: Path,
) -> None:
    """A key of an older run goes line by line, into the current run's run.log."""
    handler = get_handler()
    context = LogContext.get_instance()
    logs = tmp_path / "logs"
    context.set_run_context("r1", "fw", logs)
    stale = (context.state.generation - 1, None)
    handler.write_plain_block("runlog.capture", "stdout", stale, b"old line\n")
    records = read_records(logs / "run.log") if (logs / "run.log").exists() else []
    assert [r["event"] for r in records] == ["old line"]
