"""_codecs: formats and levels, gzip and zstd readers and writers, threaded I/O."""

from __future__ import annotations

import gzip
import io
import os
import random
import re
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard

from runlog.archive import _codecs
from runlog.errors import ConfigurationError, RunlogError

BLOCK = 1 << 20  # ParallelGzipWriter's block and BackgroundWriter's chunk
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # level 6, mtime 0
NOISE = random.Random(1234).randbytes(300)
TEXT = b"".join(b'{"event":"api_call","n":%d}\n' % n for n in range(120_000))


def skippable_frame(payload: bytes) -> bytes:
    """A zstd skippable frame holding *payload*."""
    return (
        (0x184D2A5F).to_bytes(4, "little")
        + len(payload).to_bytes(4, "little")
        + payload
    )


# (frame, what it decodes to); the frames differ in header layout and blocks.
ZST_PARTS: list[tuple[bytes, bytes]] = [
    # single segment, 1-byte content size, checksum
    (
        zstandard.ZstdCompressor(write_checksum=True).compress(b"hello " * 3),
        b"hello " * 3,
    ),
    (skippable_frame(b"skip!"), b""),
    # window descriptor, no content size, a raw block
    (zstandard.ZstdCompressor(write_content_size=False).compress(NOISE), NOISE),
    # single segment, 4-byte content size
    (zstandard.ZstdCompressor().compress(b"\0" * 70_000), b"\0" * 70_000),
    # single segment, 2-byte content size, checksum
    (zstandard.ZstdCompressor(write_checksum=True).compress(b"x" * 300), b"x" * 300),
]
ZST_DATA = b"".join(frame for frame, _ in ZST_PARTS)
ZST_BOUNDARIES = {
    sum(len(frame) for frame, _ in ZST_PARTS[:n]): b"".join(
        data for _, data in ZST_PARTS[:n]
    )
    for n in range(1, len(ZST_PARTS) + 1)
}
GZ_DATA = gzip.compress(NOISE + b"a" * 3000, mtime=0)


def decompress(data: bytes, fmt: str) -> bytes:
    """Everything decompressing_reader gives for *data* in *fmt*."""
    return _codecs.decompressing_reader(io.BytesIO(data), fmt).read()


def descriptors_to(path: Path) -> int:
    """How many of this process's open descriptors refer to *path*."""
    fds = Path("/proc/self/fd")
    count = 0
    for fd in fds.iterdir():
        try:
            target = os.readlink(fd)
        except FileNotFoundError:  # the descriptor listing the directory itself
            continue
        count += target == str(path)
    return count


def new_runlog_threads(before: set[threading.Thread]) -> list[str]:
    """Names of runlog's threads alive now that were not in *before*."""
    return [
        thread.name
        for thread in threading.enumerate()
        if thread not in before and thread.name.startswith("runlog-")
    ]


def write_until_error(writer: _codecs.BackgroundWriter) -> None:
    """Call writer.write(b"") until it raises, for at most 10 s."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        writer.write(b"")
        time.sleep(0.005)


def gzip_with(data: bytes, threads: int, level: int = 6) -> bytes:
    """*data* compressed by a ParallelGzipWriter with *threads* threads."""
    sink = io.BytesIO()
    writer = _codecs.ParallelGzipWriter(sink, level, threads=threads)
    writer.write(data)
    writer.close()
    return sink.getvalue()


# format_of ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("run.tar.gz", "gz"),
        ("run.tgz", "gz"),
        ("RUN.TAR.GZ", "gz"),
        ("run.tar.zst", "zst"),
        ("run.tzst", "zst"),
        ("dir.d/run.tar.Zst", "zst"),
    ],
)
def test_format_of_reads_the_suffix_in_any_case(name: str, fmt: str) -> None:
    """The format comes from the suffix (.gz, .tgz, .zst, .tzst), in any case."""
    assert _codecs.format_of(Path(name)) == fmt
    assert _codecs.format_of(name) == fmt


@pytest.mark.parametrize("name", ["run.tar.bz2", "run.tar", "run", "run.gz.tar"])
def test_format_of_refuses_other_suffixes_naming_the_path(name: str) -> None:
    """Any other suffix is a RunlogError naming the path and the allowed ones."""
    with pytest.raises(
        RunlogError, match=rf"^archive '{re.escape(name)}': .*\.tar\.gz or \.tar\.zst"
    ):
        _codecs.format_of(name)


# check_level --------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "level"), [("gz", 6), ("zst", 3)])
def test_check_level_gives_the_default_for_none(fmt: str, level: int) -> None:
    """No level means gzip 6 and zstd 3."""
    assert _codecs.check_level(fmt, None) == level


@pytest.mark.parametrize(
    ("fmt", "level"), [("gz", 1), ("gz", 9), ("zst", 1), ("zst", 22)]
)
def test_check_level_accepts_both_ends_of_the_range(fmt: str, level: int) -> None:
    """gzip takes 1-9 and zstd 1-22, both ends included."""
    assert _codecs.check_level(fmt, level) == level


@pytest.mark.parametrize(
    ("fmt", "level", "allowed"),
    [
        ("gz", 0, "1-9"),
        ("gz", 10, "1-9"),
        ("zst", 0, "1-22"),
        ("zst", 23, "1-22"),
        ("zst", -5, "1-22"),
        ("gz", True, "1-9"),
        ("gz", 6.0, "1-9"),
        ("zst", "3", "1-22"),
    ],
)
def test_check_level_refuses_a_bad_level_naming_it(
    fmt: str, level: object, allowed: str
) -> None:
    """An out-of-range or non-int level is a ConfigurationError naming it."""
    with pytest.raises(
        ConfigurationError,
        match=rf"^{fmt} level {re.escape(repr(level))}: use an int {allowed}$",
    ):
        _codecs.check_level(fmt, level)  # type: ignore[arg-type]  # refused on purpose


def test_check_level_refuses_an_unknown_format_naming_it() -> None:
    """A format other than gz or zst is a ConfigurationError naming it."""
    with pytest.raises(ConfigurationError, match=r"^archive format 'bz2': use one of"):
        _codecs.check_level("bz2", None)


# compression_threads ------------------------------------------------------


def test_compression_threads_follow_the_cpus_allowed() -> None:
    """Pinned to one CPU, compression uses one thread; otherwise up to 4."""
    allowed = os.sched_getaffinity(0)
    assert _codecs.compression_threads() == min(4, len(allowed))
    os.sched_setaffinity(0, {min(allowed)})
    try:
        assert _codecs.compression_threads() == 1
    finally:
        os.sched_setaffinity(0, allowed)


# open_reader and decompressing_reader -------------------------------------


@pytest.mark.parametrize("name", ["run.tar.gz", "run.tgz", "run.tar.zst", "run.tzst"])
def test_open_reader_decompresses_by_suffix(tmp_path: Path, name: str) -> None:
    """open_reader picks gzip or zstd from the suffix and gives the plain bytes."""
    path = tmp_path / name
    if _codecs.format_of(path) == "gz":
        path.write_bytes(gzip.compress(TEXT))
    else:
        path.write_bytes(zstandard.ZstdCompressor().compress(TEXT))

    with _codecs.open_reader(path) as stream:
        assert stream.read() == TEXT


@pytest.mark.parametrize("fmt", ["gz", "zst"])
def test_closing_open_readers_stream_closes_the_file(tmp_path: Path, fmt: str) -> None:
    """Once the stream is closed, no descriptor to the archive stays open."""
    path = tmp_path / f"run.tar.{fmt}"
    path.write_bytes(gzip.compress(b"x") if fmt == "gz" else zstandard.compress(b"x"))
    stream = _codecs.open_reader(path)
    assert descriptors_to(path) == 1

    stream.close()
    assert descriptors_to(path) == 0


def test_open_reader_of_a_missing_file_is_file_not_found(tmp_path: Path) -> None:
    """A missing archive raises FileNotFoundError naming it."""
    with pytest.raises(FileNotFoundError, match=r"nope\.tar\.zst"):
        _codecs.open_reader(tmp_path / "nope.tar.zst")


@pytest.mark.parametrize("fmt", ["gz", "zst"])
def test_decompressing_reader_close_leaves_raw_open(tmp_path: Path, fmt: str) -> None:
    """Closing the decompressed view does not close the file under it."""
    path = tmp_path / "data"
    path.write_bytes(gzip.compress(b"x") if fmt == "gz" else zstandard.compress(b"x"))
    with path.open("rb", buffering=0) as raw:
        stream = _codecs.decompressing_reader(raw, fmt)
        assert stream.read() == b"x"
        stream.close()

        assert not raw.closed
        assert raw.seek(0) == 0


@pytest.mark.parametrize("fmt", ["gz", "zst"])
def test_decompressing_reader_dropped_leaves_raw_open(tmp_path: Path, fmt: str) -> None:
    """A decompressed view read and dropped leaves the file under it open."""
    path = tmp_path / "data"
    path.write_bytes(gzip.compress(b"x") if fmt == "gz" else zstandard.compress(b"x"))
    with path.open("rb", buffering=0) as raw:
        assert _codecs.decompressing_reader(raw, fmt).read() == b"x"

        assert not raw.closed


def test_zst_of_several_frames_reads_back_whole() -> None:
    """Frames of every header layout, and a skippable frame, decode in sequence."""
    assert decompress(ZST_DATA, "zst") == b"".join(data for _, data in ZST_PARTS)


def test_zst_cut_at_a_frame_boundary_reads_the_frames_before() -> None:
    """A zst stream cut where a frame ends is whole: it gives the frames before."""
    for cut, data in ZST_BOUNDARIES.items():
        assert decompress(ZST_DATA[:cut], "zst") == data, cut


def test_zst_cut_inside_any_frame_is_corrupt() -> None:
    """A zst stream cut at any byte inside a frame raises a corrupt-stream error."""
    for cut in range(len(ZST_DATA)):
        if cut in ZST_BOUNDARIES:
            continue
        with pytest.raises(_codecs.CORRUPT_ERRORS):
            decompress(ZST_DATA[:cut], "zst")


def test_empty_zst_is_cut_short() -> None:
    """A zst stream with no frame at all is an EOFError."""
    with pytest.raises(EOFError, match="ends before the end of its last frame"):
        decompress(b"", "zst")


def test_zst_with_trailing_garbage_is_not_a_zstd_frame() -> None:
    """Bytes after the last frame that are no frame are a ZstdError naming them."""
    with pytest.raises(zstandard.ZstdError, match="not a zstd frame"):
        decompress(ZST_DATA + b"PK\x03\x04", "zst")


def test_zst_reserved_block_type_is_corrupt() -> None:
    """A block header with the reserved block type is a ZstdError."""
    frame = bytearray(ZST_PARTS[0][0])
    frame[6] |= 0b110  # the first block header follows the 6-byte frame header

    with pytest.raises(zstandard.ZstdError, match="reserved zstd block type"):
        decompress(bytes(frame), "zst")


def test_zst_frame_with_a_wrong_checksum_is_corrupt() -> None:
    """A frame whose checksum does not match its data is a ZstdError."""
    frame = bytearray(ZST_PARTS[-1][0])
    frame[-1] ^= 0x01

    with pytest.raises(zstandard.ZstdError, match="checksum"):
        decompress(bytes(frame), "zst")


def test_gz_cut_anywhere_is_corrupt() -> None:
    """A gzip stream cut at any byte after its start raises a corrupt-stream error."""
    for cut in range(1, len(GZ_DATA)):
        with pytest.raises(_codecs.CORRUPT_ERRORS):
            decompress(GZ_DATA[:cut], "gz")


@pytest.mark.parametrize(
    ("damage", "error"),
    [
        (lambda data: b"PK\x03\x04" + data[4:], gzip.BadGzipFile),
        (lambda data: data[:-8] + bytes([data[-8] ^ 1]) + data[-7:], gzip.BadGzipFile),
        (lambda data: data[:-1] + bytes([data[-1] ^ 1]), gzip.BadGzipFile),
        (lambda data: data[:10] + b"\xff" * 40 + data[50:], zlib.error),
    ],
    ids=["magic", "crc", "length", "deflate"],
)
def test_damaged_gz_is_corrupt(damage: Callable[[bytes], bytes], error: type) -> None:
    """A wrong magic, CRC, length or deflate data raises a corrupt-stream error."""
    assert issubclass(error, _codecs.CORRUPT_ERRORS)
    with pytest.raises(error):
        decompress(damage(GZ_DATA), "gz")


# compressing_writer and ParallelGzipWriter --------------------------------


@pytest.mark.parametrize("fmt", ["gz", "zst"])
def test_compressing_writer_output_reads_back(fmt: str) -> None:
    """What compressing_writer writes, decompressing_reader reads back whole."""
    sink = io.BytesIO()
    writer = _codecs.compressing_writer(sink, fmt, 3)
    writer.write(TEXT)
    writer.close()

    assert not sink.closed
    assert decompress(sink.getvalue(), fmt) == TEXT


def test_compressing_writer_zst_frames_carry_a_checksum() -> None:
    """zst output is written with a content checksum."""
    sink = io.BytesIO()
    writer = _codecs.compressing_writer(sink, "zst", 3)
    writer.write(b"x" * 1000)
    writer.close()

    assert zstandard.get_frame_parameters(sink.getvalue()).has_checksum


@pytest.mark.parametrize("level", [1, 6, 9])
def test_parallel_gzip_under_one_block_equals_gzipfile(level: int) -> None:
    """Under one block the bytes equal gzip.GzipFile's with mtime 0 and no name."""
    reference = io.BytesIO()
    with gzip.GzipFile(
        filename="", mode="wb", fileobj=reference, compresslevel=level, mtime=0
    ) as stdlib:
        stdlib.write(TEXT[:500_000])

    assert gzip_with(TEXT[:500_000], threads=2, level=level) == reference.getvalue()


@pytest.mark.parametrize("size", [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK + 5])
def test_parallel_gzip_round_trips_around_block_boundaries(size: int) -> None:
    """Data ending before, on or after a 1 MiB block boundary gunzips whole."""
    data = (TEXT * 2)[:size]

    assert gzip.decompress(gzip_with(data, threads=2)) == data


@pytest.mark.parametrize("size", [BLOCK, 3 * BLOCK + 7])
def test_parallel_gzip_bytes_do_not_depend_on_threads(size: int) -> None:
    """One thread and four threads write byte-identical gzip members."""
    data = (NOISE * 200 + TEXT * 4)[:size]

    assert gzip_with(data, threads=1) == gzip_with(data, threads=4)


def test_parallel_gzip_close_leaves_the_sink_open_and_repeats_harmlessly() -> None:
    """close() finishes the member once, leaves the sink open; again does nothing."""
    sink = io.BytesIO()
    writer = _codecs.ParallelGzipWriter(sink, 6, threads=1)
    writer.write(b"abc")
    writer.close()
    written = sink.getvalue()
    writer.close()

    assert not sink.closed
    assert sink.getvalue() == written
    assert gzip.decompress(written) == b"abc"


def test_parallel_gzip_discard_leaves_the_member_unfinished() -> None:
    """discard() stops without writing the rest: the sink holds only the header."""
    before = set(threading.enumerate())
    sink = io.BytesIO()
    writer = _codecs.ParallelGzipWriter(sink, 6, threads=2)
    writer.write(TEXT[: BLOCK + 10])
    writer.discard()

    assert writer.closed
    assert sink.getvalue() == GZIP_HEADER
    assert new_runlog_threads(before) == []


# BackgroundWriter ---------------------------------------------------------


@pytest.mark.parametrize("fmt", ["gz", "zst"])
def test_background_writer_passes_every_write_in_order(fmt: str) -> None:
    """Small and large writes reach the compressor whole and in order."""
    pieces = [TEXT[:10], NOISE, TEXT[: BLOCK + 3], b"", b"tail" * 1000]
    sink = io.BytesIO()
    writer = _codecs.BackgroundWriter(_codecs.compressing_writer(sink, fmt, 3))
    for piece in pieces:
        assert writer.write(piece) == len(piece)
    writer.close()

    assert decompress(sink.getvalue(), fmt) == b"".join(pieces)


def broken_pipe_gzip() -> tuple[_codecs.ParallelGzipWriter, io.RawIOBase]:
    """A ParallelGzipWriter (one thread) whose sink is a pipe nobody reads."""
    read_end, write_end = os.pipe()
    sink = open(write_end, "wb", buffering=0)  # noqa: SIM115  # closed by the test
    target = _codecs.ParallelGzipWriter(sink, 6, threads=1)  # the header fits
    os.close(read_end)
    return target, sink


def test_background_writer_close_raises_the_sink_error() -> None:
    """A sink error met in the writing thread is raised by close()."""
    target, sink = broken_pipe_gzip()
    writer = _codecs.BackgroundWriter(target)
    try:
        writer.write(bytes(4 * BLOCK))  # the first block is written at the third

        with pytest.raises(BrokenPipeError):
            writer.close()
    finally:
        target.discard()
        sink.close()


def test_background_writer_raises_the_sink_error_from_a_later_write() -> None:
    """A sink error met in the writing thread is raised by a later write()."""
    target, sink = broken_pipe_gzip()
    writer = _codecs.BackgroundWriter(target)
    try:
        writer.write(bytes(4 * BLOCK))

        with pytest.raises(BrokenPipeError):
            write_until_error(writer)
    finally:
        writer.abort()
        sink.close()


def test_background_writer_abort_leaves_the_stream_unfinished() -> None:
    """After abort() the queued data is dropped and the gzip member never ends."""
    sink = io.BytesIO()
    target = _codecs.ParallelGzipWriter(sink, 6, threads=1)
    writer = _codecs.BackgroundWriter(target)
    writer.write(b"x" * 1000)
    writer.abort()

    assert target.closed
    assert sink.getvalue() == GZIP_HEADER
    with pytest.raises(EOFError):
        gzip.decompress(sink.getvalue())


def test_background_writer_abort_stops_every_thread() -> None:
    """abort() returns with the writing thread and the gzip threads stopped."""
    before = set(threading.enumerate())
    writer = _codecs.BackgroundWriter(
        _codecs.ParallelGzipWriter(io.BytesIO(), 6, threads=2)
    )
    writer.write(TEXT[: 2 * BLOCK])
    assert new_runlog_threads(before) != []

    writer.abort()
    assert new_runlog_threads(before) == []


# ForwardReader ------------------------------------------------------------


def test_forward_reader_feed_hands_over_views_in_pieces() -> None:
    """feed() passes the next bytes as memoryviews no larger than a chunk."""
    data = bytes(range(256)) * 20
    pieces: list[memoryview] = []
    reader = _codecs.ForwardReader(io.BytesIO(data), size=1000, depth=2)
    try:
        assert reader.read(10) == data[:10]
        assert reader.feed(2500, pieces.append) == 2500

        assert all(type(piece) is memoryview for piece in pieces)
        assert max(len(piece) for piece in pieces) <= 1000
        assert b"".join(pieces) == data[10:2510]
        assert reader.tell() == 2510
    finally:
        reader.close()


def test_forward_reader_feed_stops_at_the_end() -> None:
    """feed() past the end passes what is left and returns its length, then 0."""
    reader = _codecs.ForwardReader(io.BytesIO(b"abcdef"), size=4)
    seen = bytearray()
    try:
        assert reader.feed(100, seen.extend) == 6
        assert reader.feed(100, seen.extend) == 0
        assert bytes(seen) == b"abcdef"
        assert reader.tell() == 6
    finally:
        reader.close()


def test_forward_reader_seeks_forward_from_the_current_position() -> None:
    """seek(n, SEEK_CUR) skips n bytes ahead of the current position."""
    reader = _codecs.ForwardReader(io.BytesIO(bytes(range(100))), size=7)
    try:
        reader.read(10)
        assert reader.seek(15, io.SEEK_CUR) == 25
        assert reader.read(3) == bytes((25, 26, 27))
    finally:
        reader.close()


@pytest.mark.parametrize(
    ("offset", "whence"), [(10, io.SEEK_END), (-1, io.SEEK_CUR), (4, io.SEEK_SET)]
)
def test_forward_reader_refuses_to_seek_back_or_from_the_end(
    offset: int, whence: int
) -> None:
    """A seek backwards or from the end is io.UnsupportedOperation."""
    reader = _codecs.ForwardReader(io.BytesIO(bytes(100)), size=7)
    try:
        reader.read(5)
        with pytest.raises(io.UnsupportedOperation, match="only seeks forward"):
            reader.seek(offset, whence)
        assert reader.tell() == 5
    finally:
        reader.close()


def test_forward_reader_seek_past_the_end_stops_at_the_end() -> None:
    """A seek beyond the data stops at its end; reads then give nothing."""
    reader = _codecs.ForwardReader(io.BytesIO(bytes(50)), size=7)
    try:
        assert reader.seek(80) == 50
        assert reader.read() == b""
        assert reader.readinto(bytearray(4)) == 0
    finally:
        reader.close()


def test_forward_reader_raises_the_source_error_after_its_data() -> None:
    """Data read before a source error comes first; the error then reaches read()."""
    compressed = gzip.compress(TEXT, mtime=0)
    source = gzip.GzipFile(fileobj=io.BytesIO(compressed[: len(compressed) // 2]))
    reader = _codecs.ForwardReader(source, size=1000, depth=2)
    try:
        assert reader.read(5000) == TEXT[:5000]

        with pytest.raises(EOFError):
            reader.read()
    finally:
        reader.close()


def test_forward_reader_close_stops_its_thread_and_keeps_the_source() -> None:
    """close() stops the read-ahead thread, even when blocked; the source stays open."""
    before = set(threading.enumerate())
    source = io.BytesIO(bytes(10_000))
    reader = _codecs.ForwardReader(source, size=10, depth=1)
    reader.read(1)  # the thread now waits on a full queue

    reader.close()
    assert new_runlog_threads(before) == []
    assert not source.closed
    assert reader.closed
