"""Facts about log files kept between reads: runlog.reading._verdicts (see #16)."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from runlog.errors import RunlogError
from runlog.reading import _prefilter, _verdicts
from runlog.reading._merge import read_records
from runlog.reading._prefilter import prefilter_for
from runlog.reading._source import Filters, ReadReport, RunSource, dir_entries

REL = "step_001/adapter.log"
BLOCK = 4096  # small: a file of a few hundred lines is many segments


def record_line(n: int, level: str = "info", event: str = "api_call") -> bytes:
    """Line *n* of a file as runlog writes it."""
    return orjson.dumps(
        {
            "ts": f"2025-10-20T14:{n // 60 % 60:02d}:{n % 60:02d}.000000Z",
            "level": level,
            "event": event,
            "logger": "bench",
            "component": "adapter",
            "run_id": "r1",
            "framework": "fw",
            "step": 1,
            "n": n,
        }
    )


def plain_lines(count: int) -> list[bytes]:
    """Mostly info; a warning, an error and a needle here and there."""
    lines = []
    for n in range(1, count + 1):
        if n % 97 == 0:
            lines.append(record_line(n, "error", "request failed"))
        elif n % 41 == 0:
            lines.append(record_line(n, "warning", "slow"))
        elif n % 53 == 0:
            lines.append(record_line(n, "info", "validation_failed"))
        else:
            lines.append(record_line(n, "debug" if n % 2 else "info"))
    return lines


def make_run(root: Path, lines: list[bytes]) -> Path:
    """A run under root/runs whose one log file holds *lines*; its path."""
    path = root / "runs" / "fw" / "r1" / "logs" / REL
    path.parent.mkdir(parents=True)
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def expected(lines: list[bytes], filters: Filters) -> list[tuple[int, Any]]:
    """Every line parsed, the matches kept: (line number, record)."""
    found = []
    for number, raw in enumerate(lines, start=1):
        record = orjson.loads(raw)
        if filters.matches(record):
            found.append((number, record))
    return found


def read(path: Path, filters: Filters, block: int = BLOCK) -> list[tuple[int, Any]]:
    """What the prefiltered reader gives for the file at *path*."""
    prefilter = prefilter_for(filters)
    assert prefilter is not None
    report = ReadReport()
    entries = list(dir_entries(path, REL, filters, report, block, prefilter.scan))
    assert report.malformed == 0
    return [(entry.line, entry.record) for entry in entries]


def forget() -> None:
    """Drop what this process holds in memory: the next read loads the file."""
    _verdicts._LOADED.clear()


def cache_files(root: Path) -> list[Path]:
    """The facts files under root/runs/.runlog-cache/."""
    return sorted((root / "runs" / ".runlog-cache").glob("read-*.json"))


@pytest.fixture
def kept_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Facts of a file are kept even when it was just written."""
    monkeypatch.setattr(_verdicts, "RACY_NS", 0)
    forget()


GREP = Filters(pattern=re.compile("validation_failed"))
ERRORS = Filters(min_level=40)
WARNINGS = Filters(min_level=30)


@pytest.mark.usefixtures("kept_at_once")
@pytest.mark.parametrize("filters", [GREP, ERRORS, WARNINGS], ids=["grep", "e", "w"])
def test_second_read_uses_the_kept_facts_and_gives_the_same_records(
    tmp_path: Path, filters: Filters, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read again from its kept facts, an unchanged file gives the same records."""
    lines = plain_lines(600)
    path = make_run(tmp_path, lines)
    first = read(path, filters)
    assert first == expected(lines, filters)
    (kept,) = cache_files(tmp_path)
    stored = orjson.loads(kept.read_bytes())["files"][REL]
    info = os.stat(path)
    assert stored[0] == [
        info.st_dev,
        info.st_ino,
        info.st_size,
        info.st_mtime_ns,
        info.st_ctime_ns,
    ]
    assert len(stored[1]) > 10  # many segments, each with its facts
    assert all(facts[_verdicts.PLAIN] == 1 for facts in stored[1])
    forget()

    def not_again(*args: object) -> bool:
        raise AssertionError("a kept fact was worked out again")

    monkeypatch.setattr(_prefilter, "is_plain", not_again)
    monkeypatch.setattr(_prefilter, "_level_facts", not_again)
    monkeypatch.setattr(_prefilter, "_loud_lines", not_again)
    assert read(path, filters) == first


@pytest.mark.usefixtures("kept_at_once")
def test_level_facts_bound_each_segment_and_list_its_loud_lines(
    tmp_path: Path,
) -> None:
    """Kept: the highest level a segment names, and where its errors are."""
    lines = plain_lines(600)
    path = make_run(tmp_path, lines)
    read(path, WARNINGS)
    (kept,) = cache_files(tmp_path)
    segments = orjson.loads(kept.read_bytes())["files"][REL][1]
    tops = {facts[_verdicts.TOP] for facts in segments}
    assert tops == {20, 30, 99}
    data = path.read_bytes()
    start = 0
    loud = []
    for facts in segments:
        if facts[_verdicts.TOP] == 99:
            for offset, size, _index in facts[_verdicts.LOUD]:
                loud.append(data[start + offset : start + offset + size])
        start = facts[_verdicts.END]
    assert loud == [line for line in lines if b'"level":"error"' in line]


@pytest.mark.usefixtures("kept_at_once")
def test_a_line_appended_after_the_facts_were_kept_is_read(tmp_path: Path) -> None:
    """Appending changes the file's size: its new lines are searched."""
    lines = plain_lines(300)
    path = make_run(tmp_path, lines)
    read(path, GREP)
    forget()
    extra = record_line(301, "error", "validation_failed")
    with path.open("ab") as handle:
        handle.write(extra + b"\n")
    assert read(path, GREP) == expected([*lines, extra], GREP)
    assert read(path, ERRORS) == expected([*lines, extra], ERRORS)


def test_a_file_rewritten_in_place_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same size, same inode, new bytes: its ctime moved, the old facts are not used."""
    monkeypatch.setattr(_verdicts, "RACY_NS", 20_000_000)
    forget()
    lines = plain_lines(300)
    path = make_run(tmp_path, lines)
    time.sleep(0.05)  # older than RACY_NS: its facts are kept
    read(path, GREP)
    (kept,) = cache_files(tmp_path)
    assert REL in orjson.loads(kept.read_bytes())["files"]
    forget()
    changed = [line.replace(b"api_call", b"gpt-4o!!") for line in lines]
    with path.open("r+b") as handle:
        handle.write(b"".join(line + b"\n" for line in changed))
    grep = Filters(pattern=re.compile("gpt-4o"))
    assert read(path, grep) == expected(changed, grep)
    assert len(read(path, grep)) > 200


def test_a_file_just_written_is_not_kept(tmp_path: Path) -> None:
    """A file changed within RACY_NS may change again unseen: nothing is kept."""
    forget()
    path = make_run(tmp_path, plain_lines(300))
    read(path, GREP)
    assert cache_files(tmp_path) == []


@pytest.mark.usefixtures("kept_at_once")
@pytest.mark.parametrize(
    "damage",
    [
        b"not json",
        b"[]",
        b'{"format": "other", "version": 2, "files": {}}',
        b'{"format": "runlog-read-cache", "version": 2, "files": []}',
        "shape",
    ],
)
def test_a_damaged_cache_is_ignored_and_rewritten(
    tmp_path: Path, damage: bytes | str
) -> None:
    """A cache file that is not what runlog writes changes nothing, and is replaced."""
    lines = plain_lines(300)
    path = make_run(tmp_path, lines)
    read(path, GREP)
    forget()
    (kept,) = cache_files(tmp_path)
    if damage == "shape":
        data = orjson.loads(kept.read_bytes())
        segments = data["files"][REL][1]
        segments[0][_verdicts.END] = path.stat().st_size + 1  # past the end
        kept.write_bytes(orjson.dumps(data))
    else:
        assert isinstance(damage, bytes)
        kept.write_bytes(damage)
    assert read(path, GREP) == expected(lines, GREP)
    forget()
    assert orjson.loads(kept.read_bytes())["format"] == "runlog-read-cache"


@pytest.mark.parametrize(
    "facts",
    [
        [[10, 2, 1, 20]],  # a field short
        [[10, 2, 1, 20, -1], [10, 1, 1, 20, -1]],  # ends not rising
        [[10, 0, 1, 20, -1]],  # no line
        [[10, 2, 2, 20, -1]],  # plain is 0, 1 or unknown
        [[10, 2, 1, 42, -1]],  # no such bound
        [[10, 2, 1, 99, [[0, 20, 0]]]],  # a loud line past the segment
        [[10, 2, 1, 99, [[4, 2, 1], [0, 2, 0]]]],  # loud lines out of order
        [[10, 2, 1, 99, [[0, 2, 5]]]],  # a line index past its lines
        [[10.0, 2, 1, 20, -1]],  # not ints
        [],
        "x",
    ],
)
def test_facts_not_of_the_stored_shape_are_not_used(facts: object) -> None:
    """Every stored fact is checked before use: one wrong, the file is read afresh."""
    assert _verdicts._valid(facts, 100) is None


def test_facts_of_the_stored_shape_are_used() -> None:
    """The shape put() stores passes the check."""
    facts = [[10, 2, 1, 99, [[0, 3, 0], [5, 2, 1]]], [30, 4, 0, -1, -1]]
    assert _verdicts._valid(facts, 30) == facts


@pytest.mark.usefixtures("kept_at_once")
def test_a_runs_directory_that_cannot_hold_the_cache_is_read_all_the_same(
    tmp_path: Path,
) -> None:
    """When .runlog-cache cannot be made, the read is the same and nothing breaks."""
    lines = plain_lines(300)
    path = make_run(tmp_path, lines)
    blocker = tmp_path / "runs" / ".runlog-cache"
    blocker.write_bytes(b"a file, not a directory")
    assert read(path, GREP) == expected(lines, GREP)
    assert blocker.read_bytes() == b"a file, not a directory"


@pytest.mark.usefixtures("kept_at_once")
def test_a_file_outside_a_run_leaves_no_cache(tmp_path: Path) -> None:
    """Only a run's logs/ has a runs directory to keep facts in: nothing is written."""
    lines = plain_lines(300)
    path = tmp_path / "a" / "b" / "c" / "adapter.log"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    assert read(path, ERRORS) == expected(lines, ERRORS)
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted(
        ["a", "b", "c", "adapter.log"]
    )


@pytest.mark.usefixtures("kept_at_once")
def test_a_line_longer_than_the_block_is_read_and_nothing_kept(tmp_path: Path) -> None:
    """A line over the block ends the segments; the rest is read as before."""
    lines = plain_lines(200)
    lines.insert(120, record_line(120, "error", "x" * (3 * BLOCK)))
    path = make_run(tmp_path, lines)
    for filters in (GREP, ERRORS):
        assert read(path, filters) == expected(lines, filters)
    assert cache_files(tmp_path) == []


@pytest.mark.usefixtures("kept_at_once")
def test_an_unfinished_last_line_is_read_as_before(tmp_path: Path) -> None:
    """A last line without its newline counts once it is whole JSON."""
    lines = plain_lines(300)
    path = make_run(tmp_path, lines)
    last = record_line(301, "error", "validation_failed")
    with path.open("ab") as handle:
        handle.write(last)  # no newline yet
    for _ in range(2):
        assert read(path, GREP) == expected([*lines, last], GREP)
        forget()


@pytest.mark.usefixtures("kept_at_once")
def test_show_of_a_run_keeps_the_facts_beside_the_runs(tmp_path: Path) -> None:
    """read_records of a run dir keeps its facts in RUNS/.runlog-cache/, git-ignored."""
    lines = plain_lines(300)
    path = make_run(tmp_path, lines)
    run_dir = path.parents[2]
    report = ReadReport()
    got = list(read_records(RunSource(run_dir), ERRORS, report))
    assert [(e.line, e.record) for e in got] == expected(lines, ERRORS)
    cache = tmp_path / "runs" / ".runlog-cache"
    assert (cache / ".gitignore").read_bytes().endswith(b"\n*\n")
    assert (cache / "CACHEDIR.TAG").read_bytes().startswith(b"Signature: ")
    assert len(cache_files(tmp_path)) == 1


def _loaded_modules(args: list[str]) -> list[str]:
    code = (
        "import sys\n"
        "from runlog.cli import main\n"
        f"main({args!r})\n"
        "print(' '.join(sorted(sys.modules)), file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.stderr.split("\n")[-2].split()


def test_show_of_a_run_directory_loads_no_archive_or_follow_code(
    tmp_path: Path,
) -> None:
    """`runlog show DIR` imports no tarfile, codec, archive reader or follower (#16)."""
    path = make_run(tmp_path, plain_lines(10))
    loaded = _loaded_modules(["show", str(path.parents[2]), "--grep", "x"])
    assert "runlog.reading._source" in loaded
    heavy = (
        "tarfile",
        "zstandard",
        "runlog.archive",
        "runlog.reading._archive_stream",
        "runlog.reading._follow",
        "difflib",
    )
    assert [name for name in heavy if name in loaded] == []


def test_version_loads_no_command() -> None:
    """`runlog --version` imports no command group (#16)."""
    loaded = _loaded_modules(["--version"])
    assert "runlog.cli._app" in loaded
    assert [name for name in loaded if name.startswith("runlog.cli._cmd_")] == []


def test_a_directory_where_the_file_was_is_an_error_naming_it(tmp_path: Path) -> None:
    """A log path that is a directory fails as it did before, with its name."""
    path = make_run(tmp_path, plain_lines(3))
    path.unlink()
    path.mkdir()
    with pytest.raises(RunlogError, match=r"cannot read .*adapter\.log"):
        read(path, GREP)


def test_a_file_removed_before_it_is_read_gives_nothing(tmp_path: Path) -> None:
    """A file gone when its turn comes ends there, as before."""
    path = make_run(tmp_path, plain_lines(3))
    path.unlink()
    assert read(path, GREP) == []


@pytest.mark.usefixtures("kept_at_once")
def test_facts_cut_for_bigger_blocks_are_not_used_with_smaller_ones(
    tmp_path: Path,
) -> None:
    """Segments bigger than the block are not read whole: the file is cut afresh."""
    lines = plain_lines(600)
    path = make_run(tmp_path, lines)
    assert read(path, ERRORS, block=16384) == expected(lines, ERRORS)
    forget()
    assert read(path, ERRORS, block=1024) == expected(lines, ERRORS)
    forget()
    (kept,) = cache_files(tmp_path)
    segments = orjson.loads(kept.read_bytes())["files"][REL][1]
    assert (
        max(
            b[_verdicts.END] - a[_verdicts.END] for a, b in itertools.pairwise(segments)
        )
        <= 1024
    )


@pytest.mark.usefixtures("kept_at_once")
def test_facts_learnt_soon_after_a_write_are_written_at_exit(tmp_path: Path) -> None:
    """Within a second of the last write, new facts wait for the end of the process."""
    lines = plain_lines(600)
    path = make_run(tmp_path, lines)
    read(path, GREP)  # plainness kept and written
    read(path, ERRORS)  # levels learnt: written at exit
    (kept,) = cache_files(tmp_path)
    segments = orjson.loads(kept.read_bytes())["files"][REL][1]
    assert {facts[_verdicts.TOP] for facts in segments} == {_verdicts.UNKNOWN}
    _verdicts._save_unsaved()
    segments = orjson.loads(kept.read_bytes())["files"][REL][1]
    assert _verdicts.UNKNOWN not in {facts[_verdicts.TOP] for facts in segments}


@pytest.mark.usefixtures("kept_at_once")
@pytest.mark.parametrize("where", [0, 1, 250, 599], ids=lambda n: f"line{n + 1}")
def test_segments_searched_in_groups_give_each_match_in_its_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: int
) -> None:
    """A group of segments without the needle is skipped; one with it is not."""
    monkeypatch.setattr(_verdicts, "_GROUP_BYTES", 3 * BLOCK)
    lines = [record_line(n) for n in range(1, 601)]
    lines[where] = record_line(where + 1, "info", "gpt-4o")
    path = make_run(tmp_path, lines)
    grep = Filters(pattern=re.compile("gpt-4o"))
    read(path, grep)  # the facts, kept
    forget()
    reads: list[int] = []
    real = _verdicts._read_at

    def counted(*args: Any) -> int:
        got: int = real(*args)
        reads.append(got)
        return got

    monkeypatch.setattr(_verdicts, "_read_at", counted)
    got = read(path, grep)
    assert got == expected(lines, grep)
    assert [number for number, _ in got] == [where + 1]
    segments = len(orjson.loads(cache_files(tmp_path)[0].read_bytes())["files"][REL][1])
    assert len(reads) < segments  # most were searched a group at a time
