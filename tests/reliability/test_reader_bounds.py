"""Readers hold bounded memory and take linear time on any input (see #12)."""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runlog import cli
from runlog.errors import RunlogError
from runlog.reading import _archive_stream, _follow, _source
from runlog.reading._follow import Follower
from runlog.reading._merge import last_records, read_records
from runlog.reading._source import Filters, ReadReport, RunSource
from tests.reliability._checks import REPO, add_figures, all_paths

pytestmark = pytest.mark.reliability

MIB = 1 << 20
MEMBER = "logs/step_001/adapter.log"


def record(i: int, **extra: Any) -> bytes:
    """One record line (no newline) in the SPEC §2 shape, *i* seconds in."""
    return orjson.dumps(
        {
            "ts": f"2025-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}.{i % 10**6:06d}Z",
            "level": "info",
            "event": f"e{i}",
            "logger": "m",
            "component": "adapter",
            "run_id": "r1",
            "framework": "fw",
            "step": 1,
            **extra,
        }
    )


def records(size: int) -> bytes:
    """About *size* bytes of distinct, valid record lines."""
    lines = []
    total = 0
    i = 0
    while total < size:
        line = record(i, pad="p" * 150) + b"\n"
        lines.append(line)
        total += len(line)
        i += 1
    return b"".join(lines)


def tar_bytes(members: dict[str, bytes]) -> bytes:
    """An uncompressed tar holding *members*."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def make_run(root: Path, kind: str, data: bytes) -> Path:
    """A run under *root* whose one log file holds *data*: a dir, or an archive.

    Returns what to pass to ``runlog show``: the run dir, or the archive.
    """
    run = root / "runs" / "fw" / "r1"
    run.mkdir(parents=True)
    if kind == "dir":
        path = run / MEMBER
        path.parent.mkdir(parents=True)
        path.write_bytes(data)
        return run
    raw = tar_bytes({MEMBER: data})
    if kind == "gz":
        archive = run / "run.tar.gz"
        archive.write_bytes(gzip.compress(raw, compresslevel=6, mtime=0))
    else:
        archive = run / "run.tar.zst"
        archive.write_bytes(zstandard.ZstdCompressor(level=3).compress(raw))
    return archive


# A child forked from pytest starts with pytest's RSS as its high-water mark
# (Linux keeps it across exec), so a small launcher starts `runlog` and reads
# its peak with RUSAGE_CHILDREN: the grandchild inherits only the launcher's.
_LAUNCH = textwrap.dedent(
    """
    import resource, subprocess, sys
    done = subprocess.run(
        sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False
    )
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    sys.stderr.buffer.write(done.stderr)
    print(done.returncode, usage.ru_maxrss, usage.ru_utime + usage.ru_stime)
    """
)


def run_runlog(*argv: str) -> tuple[int, int, float, str]:
    """`python -m runlog *argv` in a fresh process: exit, peak KiB, CPU s, stderr."""
    done = subprocess.run(
        [sys.executable, "-c", _LAUNCH, sys.executable, "-m", "runlog", *argv],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
        cwd=REPO,
    )
    code, peak, cpu = done.stdout.split()
    return int(code), int(peak), float(cpu), done.stderr


BOMBS: dict[str, Callable[[int], bytes]] = {
    "blank lines": lambda size: b"\n" * size,
    "tiny lines": lambda size: b"x\n" * (size // 2),
    "tiny braces": lambda size: b"{\n" * (size // 2),
    "one bad line repeated": lambda size: b"{bad}\n" * (size // 6),
    "blank and crlf lines": lambda size: b" \t\r\n" * (size // 4),
}


@pytest.fixture(scope="module")
def normal_reads(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[int]]:
    """Per container: `show` peak KiB on one record, CPU ms on 8 MiB of records."""
    found: dict[str, list[int]] = {}
    for kind in ("dir", "gz", "zst"):
        root = tmp_path_factory.mktemp(f"normal-{kind}")
        small = make_run(root / "small", kind, record(0) + b"\n")
        code, peak, _cpu, err = run_runlog("show", str(small), "--color", "never")
        assert code == 0, err
        big = make_run(root / "big", kind, records(8 * MIB))
        code, _peak, cpu, err = run_runlog("show", str(big), "--color", "never")
        assert code == 0, err
        found[kind] = [peak, int(cpu * 1000)]
    return found


@pytest.mark.parametrize("kind", ["dir", "gz", "zst"])
@pytest.mark.parametrize("bomb", ["blank lines", "tiny lines"])
def test_a_line_count_bomb_is_read_in_constant_memory(
    bomb: str, kind: str, tmp_path: Path, normal_reads: dict[str, list[int]]
) -> None:
    """
    8 and 32 MiB of blank or 2-byte lines: `show` peaks as for one record.

    Measured in a fresh process: peak RSS does not grow with the line count
    (the 32 MiB bomb within 4 MiB of the 8 MiB one, both within 8 MiB of a
    one-record run), every line is counted as malformed, and reading the
    bomb costs less CPU than rendering 8 MiB of real records.
    """
    base_peak, records_ms = normal_reads[kind]
    peaks = []
    cpus = []
    for size in (8 * MIB, 32 * MIB):
        target = make_run(tmp_path / str(size), kind, BOMBS[bomb](size))
        code, peak, cpu, err = run_runlog("show", str(target))
        assert code == 0, err
        lines = BOMBS[bomb](size).count(b"\n")
        assert f"skipped {lines} malformed line(s)" in err
        assert "Traceback" not in err
        peaks.append(peak)
        cpus.append(cpu)
    assert peaks[1] - peaks[0] < 4 * 1024, (peaks, base_peak)
    assert max(peaks) - base_peak < 8 * 1024, (peaks, base_peak)
    assert cpus[0] * 1000 < records_ms, (cpus, records_ms)
    add_figures(
        f"reader.bomb.{kind}.{bomb.replace(' ', '_')}",
        lines_32mib=BOMBS[bomb](32 * MIB).count(b"\n"),
        peak_kib_8mib=peaks[0],
        peak_kib_32mib=peaks[1],
        base_peak_kib=base_peak,
        cpu_ms_32mib=int(cpus[1] * 1000),
    )


@pytest.mark.parametrize("command", ["show", "tail"])
@pytest.mark.parametrize("bomb", sorted(BOMBS))
def test_line_bombs_in_a_logs_dir_are_counted_in_bulk(
    bomb: str, command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    show and tail of 16 MiB of junk lines: each counted, fast, none printed.

    Blank, whitespace, `{`-only and a repeated bad line are all malformed
    lines; they are counted in bulk (well under the ~10 s a line-by-line
    reader took for 8 MiB), their first locations named.
    """
    data = BOMBS[bomb](16 * MIB)
    run = make_run(tmp_path, "dir", data + record(99_999) + b"\n")
    started = time.process_time()
    code = cli.main([command, str(run), "--color", "never"])
    elapsed = time.process_time() - started
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.count("\n") == 1 and "e99999" in out
    lines = data.count(b"\n")
    assert f"skipped {lines} malformed line(s)" in err
    if command == "show":
        assert "step_001/adapter.log:1, step_001/adapter.log:2," in err
    assert elapsed < 3, f"{elapsed:.1f} s of CPU for {lines} lines"


@pytest.mark.stress
@pytest.mark.parametrize("kind", ["dir", "gz", "zst"])
def test_a_gigabyte_of_blank_lines_is_read_in_constant_memory(
    kind: str, tmp_path: Path, normal_reads: dict[str, list[int]]
) -> None:
    """The long version: 1 GiB of newlines (about 1 MiB as .tar.gz)."""
    target = make_run(tmp_path, kind, b"\n" * (1 << 30))
    code, peak, cpu, err = run_runlog("show", str(target))
    assert code == 0, err
    assert f"skipped {1 << 30} malformed line(s)" in err
    assert peak - normal_reads[kind][0] < 8 * 1024
    add_figures(f"reader.bomb.{kind}.gib", peak_kib=peak, cpu_ms=int(cpu * 1000))


def _timed(argv: list[str]) -> float:
    """CPU seconds of cli.main(argv), its output thrown away (best of two)."""
    best = float("inf")
    for _ in range(2):
        with (
            open(os.devnull, "w") as sink,
            contextlib.redirect_stdout(sink),
            contextlib.redirect_stderr(sink),
        ):
            started = time.process_time()
            assert cli.main(argv) == 0
            best = min(best, time.process_time() - started)
    return best


def _long_line_ratio(
    tmp_path: Path, kind: str, command: str, sizes: tuple[int, int]
) -> list[float]:
    """CPU seconds of *command* on runs whose middle record carries one long value."""
    times = []
    for size in sizes:
        data = record(1) + b"\n" + record(2, blob="v" * size) + b"\n" + record(3)
        target = make_run(tmp_path / str(size), kind, data + b"\n")
        argv = [command, str(target), "--color", "never"]
        times.append(_timed([*argv, "-n", "3"] if command == "tail" else argv))
    return times


@pytest.mark.parametrize("kind", ["dir", "gz", "zst"])
@pytest.mark.parametrize("command", ["show", "tail"])
def test_a_long_line_is_read_in_linear_time(
    command: str, kind: str, tmp_path: Path
) -> None:
    """
    A 24 MB value takes about 4x the time of a 6 MB one, not 16x.

    `tail` used to copy the pending line once per 64 KiB block read
    backwards (a 50 MB value: 16 s); both commands now join a line once.
    Both sizes stay under glibc's largest mmap threshold (32 MiB): a bigger
    string is mapped afresh at each copy, and its page faults alone made a
    40 MB value up to 7.4x a 10 MB one.
    """
    small, large = _long_line_ratio(tmp_path, kind, command, (6 * MIB, 24 * MIB))
    assert large / small < 7, f"6 MB: {small:.2f} s, 24 MB: {large:.2f} s"
    add_figures(
        f"reader.long_line.{command}.{kind}",
        ms_6mb=int(small * 1000),
        ms_24mb=int(large * 1000),
    )


@pytest.mark.stress
@pytest.mark.parametrize("kind", ["dir", "gz", "zst"])
@pytest.mark.parametrize("command", ["show", "tail"])
def test_a_50_mb_line_is_read_in_linear_time(
    command: str, kind: str, tmp_path: Path
) -> None:
    """The long version: a 50 MiB value against a 12.5 MiB one (the limit is 64)."""
    sizes = (25 * MIB // 2, 50 * MIB)
    small, large = _long_line_ratio(tmp_path, kind, command, sizes)
    assert large / small < 7, f"{small:.2f} s, {large:.2f} s"


def test_a_line_over_the_limit_in_a_logs_dir_is_skipped_not_held(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 65 MiB line in a plain log file is one malformed line; the next is read."""
    big = b'{"ts":"x","event":"' + b"a" * (65 * MIB) + b'"}\n'
    run = make_run(tmp_path, "dir", big + record(7) + b"\n")
    for command in ("show", "tail"):
        code = cli.main([command, str(run), "--color", "never"])
        out, err = capsys.readouterr()
        assert code == 0, err
        assert "e7" in out and "aaaa" not in out
        assert "skipped 1 malformed line(s): step_001/adapter.log:1" in err


def _no_newline_file(path: Path, size: int) -> None:
    """A sparse file of *size* NUL bytes: no newline at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.truncate(size)


def test_a_file_without_newlines_is_read_in_constant_memory(
    tmp_path: Path, normal_reads: dict[str, list[int]]
) -> None:
    """256 MiB of NULs and no newline (a sparse file): show and tail, bounded."""
    run = tmp_path / "runs" / "fw" / "r1"
    _no_newline_file(run / MEMBER, 256 * MIB)
    for command in ("show", "tail"):
        code, peak, _cpu, err = run_runlog(command, str(run))
        assert code == 0, err
        assert "Traceback" not in err
        assert peak - normal_reads["dir"][0] < 8 * 1024, peak


# --- every reader cuts lines the same way -----------------------------------

LINE_KINDS = [
    b"",
    b"   ",
    b"\r",
    b"x",
    b"{",
    b"}",
    b"{x}",
    b"{}",
    b" {} ",
    b"\t{}\r",
    b"[1]",
    b"123",
    b'{"a":1}',
    b'{"broken',
    b"#5",
    b"!3",
    b"*2",
    b"\0" * 5,
    b"{" + b"y" * 300 + b"}",
]


@st.composite
def log_lines(draw: st.DrawFn) -> list[bytes]:
    """Lines mixing records, junk of every kind and runs of identical lines."""
    lines: list[bytes] = []
    for i in range(draw(st.integers(0, 120))):
        choice = draw(st.integers(0, 3))
        if choice == 0:
            pad = draw(st.sampled_from([0, 10, 3000, 70_000]))
            lines.append(record(i, pad="z" * pad))
        elif choice == 1:
            lines.append(draw(st.sampled_from(LINE_KINDS)))
        else:
            line = draw(st.sampled_from([*LINE_KINDS, record(i)]))
            lines.extend([line] * draw(st.integers(2, 300)))
    return lines


def reference(lines: list[bytes]) -> tuple[list[tuple[int, dict[str, Any]]], int]:
    """The records (with line numbers) and malformed count, one line at a time."""
    found = []
    bad = 0
    for number, line in enumerate(lines, 1):
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError:
            value = None
        if isinstance(value, dict):
            found.append((number, value))
        else:
            bad += 1
    return found, bad


def numbered(entries: list[_source.Entry]) -> list[tuple[int, dict[str, Any]]]:
    """(line, record) of each entry."""
    return [(entry.line, entry.record) for entry in entries]


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(lines=log_lines(), block=st.sampled_from([7, 100, 4096, 65_536]))
def test_every_reader_finds_the_same_records_and_malformed_lines(
    lines: list[bytes], block: int, tmp_path: Path
) -> None:
    """dir, tail, archive (filtered or not), follower: as a line-by-line read."""
    expected, bad = reference(lines)
    data = b"".join(line + b"\n" for line in lines)
    work = Path(tempfile.mkdtemp(dir=tmp_path))
    run = make_run(work / "dir", "dir", data)
    path = run / MEMBER

    report = ReadReport()
    found = list(_source.dir_entries(path, "a", Filters(), report, block))
    assert (numbered(found), report.malformed) == (expected, bad)

    report = ReadReport()
    found, end = _source.file_tail(path, "a", 10**9, Filters(), report)
    assert (numbered(found), report.malformed, end) == (expected, bad, len(data))
    found, _ = _source.file_tail(path, "a", 3, Filters(), None)
    assert numbered(found) == expected[-3:]

    archive = make_run(work / "gz", "gz", data)
    by_time = sorted(expected, key=lambda item: str(item[1].get("ts", "")))
    for filters in (Filters(), Filters(min_level=10)):
        report = ReadReport()
        found = list(read_records(RunSource(archive.parent, archive), filters, report))
        assert report.malformed == bad
        wanted = [item for item in by_time if filters.matches(item[1])]
        assert sorted(numbered(found), key=repr) == sorted(wanted, key=repr)

    path.write_bytes(b"")
    report = ReadReport()
    follower = Follower(run / "logs", start={"step_001/adapter.log": 0}, report=report)
    seen = []
    step = max(block * 3 + 1, len(data) // 40)
    for start in range(0, len(data), step):
        with open(path, "ab") as handle:
            handle.write(data[start : start + step])
        seen.extend(follower.poll())
    seen.extend(follower.poll())
    while follower.behind:
        seen.extend(follower.poll())
    assert (numbered(seen), report.malformed) == (expected, bad)


def test_reverse_scan_drops_lines_over_the_limit_as_it_reads(tmp_path: Path) -> None:
    """Read backwards with a 1000-byte limit, long lines come out as malformed."""
    lines = [record(1), b"z" * 500, record(2), b"{" + b"q" * 200_000 + b"}", b"", b""]
    data = b"".join(line + b"\n" for line in lines)
    path = tmp_path / "a.log"
    path.write_bytes(data)
    with open(path, "rb") as handle:
        items = list(_source.reverse_scan(handle, len(data), max_line=1000))
    by_line: dict[int, bytes | None] = {}
    for back, count, raw in items:
        for line in range(len(lines) - back - count + 1, len(lines) - back + 1):
            by_line[line] = raw
    assert by_line == {1: record(1), 2: None, 3: record(2), 4: None, 5: None, 6: None}
    assert [back for back, _count, _raw in items] == sorted(
        back for back, _count, _raw in items
    )


# --- blank lines, repeated lines --------------------------------------------


def test_blank_lines_are_counted_as_malformed_everywhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Blank, whitespace-only and repeated bad lines: 5 malformed, each reader."""
    data = record(1) + b"\n\n \t\n" + b"{bad}\n" * 3 + record(2) + b"\n"
    run = make_run(tmp_path / "d", "dir", data)
    archive = make_run(tmp_path / "a", "gz", data)
    for target in (run, archive):
        for command in ("show", "tail"):
            code = cli.main([command, str(target), "--color", "never"])
            out, err = capsys.readouterr()
            assert code == 0, err
            assert out.count("\n") == 2
            assert "skipped 5 malformed line(s): " in err
            where = err.split("line(s): ", 1)[1].strip().split(", ")
            assert sorted(where) == [f"step_001/adapter.log:{n}" for n in range(2, 7)]


def test_repeated_records_keep_their_own_line_numbers(tmp_path: Path) -> None:
    """1000 identical record lines are 1000 records numbered 2-1001, in each reader."""
    data = record(0) + b"\n" + (record(5) + b"\n") * 1000 + record(9) + b"\n"
    run = make_run(tmp_path / "d", "dir", data)
    archive = make_run(tmp_path / "a", "zst", data)
    for source in (RunSource(run), RunSource(archive.parent, archive)):
        found = list(read_records(source))
        assert [entry.line for entry in found] == list(range(1, 1003))
        last, _ = last_records(source, 3)
        assert [entry.line for entry in last] == [1000, 1001, 1002]


# --- archives: spool, headers, damage ---------------------------------------


def _open_paths() -> list[str]:
    """What this process's descriptors point to."""
    paths = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):  # listdir's own descriptor
            paths.append(os.readlink(f"/proc/self/fd/{fd}"))
    return paths


def test_a_large_spool_moves_to_an_unnamed_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past its memory budget the spool goes to disk unnamed; the records stay."""
    data = records(2 * MIB)
    archive = make_run(tmp_path / "a", "gz", data)
    source = RunSource(archive.parent, archive)
    in_memory = [(e.line, e.record) for e in read_records(source)]
    spill_dir = tmp_path / "spill"
    spill_dir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spill_dir))
    monkeypatch.setattr(_archive_stream, "_SPOOL_MEMORY", 1024)
    stream = read_records(source)
    first = next(stream)
    assert os.listdir(spill_dir) == []  # spooled, but no name on disk
    assert any(path.startswith(str(spill_dir)) for path in _open_paths())
    spilled = [(first.line, first.record)] + [(e.line, e.record) for e in stream]
    assert spilled == in_memory
    assert len(in_memory) == data.count(b"\n")
    assert os.listdir(spill_dir) == []


def test_a_spool_holds_its_blocks_compressed() -> None:
    """
    What the spool keeps in memory is the compressed size of its blocks,
    which its budget counts: not the buffer the compressor wrote them into
    (python-zstandard returns a result that keeps its whole bound, which
    made a 300 MB archive's read peak at 381 MB).
    """
    block = records(256 * 1024)
    store = _archive_stream._Blocks()
    tracemalloc.start()
    try:
        kept = [store.put(block) for _ in range(100)]
        held, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    packed = sum(len(item) for item in kept if isinstance(item, bytes))
    assert packed < 100 * len(block) // 4  # they compress
    assert held < 2 * packed + 256 * 1024, (held, packed)
    assert store.get(kept[-1]) == block
    store.close()


def test_an_abandoned_archive_read_closes_its_spool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`show | head`: a read stopped early closes its temporary file at once."""
    archive = make_run(tmp_path, "gz", records(MIB))
    monkeypatch.setattr(_archive_stream, "_SPOOL_MEMORY", 1024)
    before = set(os.listdir("/proc/self/fd"))
    stream = read_records(RunSource(archive.parent, archive))
    assert next(stream).line == 1
    opened = set(os.listdir("/proc/self/fd")) - before
    assert len(opened) == 1  # the spool; the archive itself is closed by now
    close = getattr(stream, "close", None)
    assert close is not None
    close()
    assert not set(os.listdir("/proc/self/fd")) - before


def _header_bomb(path: Path, kind: str, size: int) -> Path:
    """A .tar.gz whose first header is a pax or GNU long-name header of *size* bytes."""
    info = tarfile.TarInfo(MEMBER)
    info.size = len(record(1)) + 1
    if kind == "pax":
        info.pax_headers = {"comment": "c" * size}
        header = info.tobuf(format=tarfile.PAX_FORMAT)
    else:
        info.name = "logs/" + "n" * size + ".log"
        header = info.tobuf(format=tarfile.GNU_FORMAT)
    body = (record(1) + b"\n").ljust(512, b"\0")
    path.write_bytes(gzip.compress(header + body + b"\0" * 1024, mtime=0))
    return path


@pytest.mark.parametrize("kind", ["pax", "gnu"])
def test_an_archive_header_bomb_is_refused_before_it_is_held(
    kind: str, tmp_path: Path
) -> None:
    """A 64 MiB pax or long-name header (64 KiB packed): exit 2, one line, bounded."""
    archive = _header_bomb(tmp_path / "run.tar.gz", kind, 64 * MIB)
    assert archive.stat().st_size < 256 * 1024
    code, peak, _cpu, err = run_runlog("show", str(archive))
    assert code == 2, err
    assert err.startswith(f"runlog: error: archive {str(archive)!r} cannot be read")
    assert "extended header" in err and err.count("\n") == 1
    assert peak < 64 * 1024, peak


def test_a_long_name_under_the_header_limit_is_still_read(tmp_path: Path) -> None:
    """A log member with a 4 KiB pax header is read as before."""
    archive = _header_bomb(tmp_path / "run.tar.gz", "pax", 4096)
    found = list(read_records(RunSource(tmp_path, archive)))
    assert [entry.record["event"] for entry in found] == ["e1"]


DAMAGED_ZST: dict[str, Callable[[bytes], bytes]] = {
    "cut short": lambda data: data[: len(data) // 2],
    "garbage after the magic": lambda data: data[:4] + os.urandom(400),
    "not zstd": lambda _data: b"PK\x03\x04" * 100,
    "empty": lambda _data: b"",
}


@pytest.mark.parametrize("case", sorted(DAMAGED_ZST))
@pytest.mark.parametrize("command", ["show", "tail"])
def test_a_damaged_zst_archive_fails_with_one_line(
    case: str, command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """show and tail of a damaged .tar.zst: exit 2, `runlog: error: ...`, no trace."""
    archive = make_run(tmp_path, "zst", records(256 * 1024))
    archive.write_bytes(DAMAGED_ZST[case](archive.read_bytes()))
    before = all_paths(tmp_path)
    code = cli.main([command, str(archive)])
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert err.startswith("runlog: error: ") and err.count("\n") == 1
    assert str(archive) in err
    assert all_paths(tmp_path) == before


# --- a damaged directory ----------------------------------------------------


def test_a_log_file_replaced_by_a_directory_is_an_input_error(tmp_path: Path) -> None:
    """A file that became a directory while read: RunlogError naming it, no trace."""
    run = make_run(tmp_path, "dir", records(4096))
    path = run / MEMBER
    stream = read_records(RunSource(run))
    path.unlink()
    path.mkdir()
    with pytest.raises(RunlogError, match=repr(str(path))):
        list(stream)


# --- the follower -----------------------------------------------------------


def test_a_follower_catches_up_in_bounded_polls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A burst over one poll's budget comes over several polls, whole, in order."""
    monkeypatch.setattr(_follow, "_POLL_ENTRIES", 500)
    run = make_run(tmp_path, "dir", b"")
    follower = Follower(run / "logs", start={"step_001/adapter.log": 0})
    burst = records(MIB)
    with open(run / MEMBER, "ab") as handle:
        handle.write(burst)
    sizes = []
    seen = []
    while True:
        batch = follower.poll()
        sizes.append(len(batch))
        seen.extend((entry.line, entry.record["event"]) for entry in batch)
        if not follower.behind:
            break
        assert batch
    lines = burst.count(b"\n")
    assert seen == [(i + 1, f"e{i}") for i in range(lines)]
    assert len(sizes) >= lines // 1000
    assert max(sizes) < 500 + 64 * 1024 // 150  # the budget, plus one block


def test_a_follower_does_not_starve_a_quiet_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While one file floods, a record in another still shows up within two polls."""
    monkeypatch.setattr(_follow, "_POLL_ENTRIES", 100)
    run = make_run(tmp_path, "dir", b"")
    logs = run / "logs"
    quiet = logs / "run.log"
    quiet.write_bytes(b"")
    follower = Follower(logs, start={"run.log": 0, "step_001/adapter.log": 0})
    with open(run / MEMBER, "ab") as handle:
        handle.write(records(4 * MIB))
    follower.poll()
    quiet.write_bytes(record(99_999, component="orchestrator") + b"\n")
    events = [e.record["event"] for _ in range(2) for e in follower.poll()]
    assert "e99999" in events


# --- ls ---------------------------------------------------------------------


def test_count_marks_counts_across_blocks_without_holding_lines(tmp_path: Path) -> None:
    """Marks across a 1 MiB block boundary and in a 3 MiB line are all counted."""
    mark = b'"level":"error"'
    head = b"a" * (MIB - 5)  # the first mark straddles the first block boundary
    data = head + mark + b"x" * (3 * MIB) + mark + mark + b"\n" + b'"level":"warning"'
    path = tmp_path / "a.log"
    path.write_bytes(data)
    warn = b'"level":"warning"'
    assert _source.count_marks(path, [mark, warn]) == [3, 1]
    assert _source.count_marks(tmp_path / "gone.log", [mark]) == [0]
