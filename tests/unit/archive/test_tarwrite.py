"""_tarwrite: collecting the files to archive, hashing them, writing the tar."""

from __future__ import annotations

import errno
import gzip
import hashlib
import io
import itertools
import os
import re
import shutil
import socket
import tarfile
import threading
from pathlib import Path

import pytest
import zstandard

from runlog.archive import _tarwrite
from runlog.errors import LogWriteError, RunlogError

MTIME = 1_700_000_123
LONG_NAME = "d" * 60 + "/" + "f" * 80 + ".log"  # over ustar's 100 bytes


def sha(data: bytes) -> str:
    """Hex SHA-256 of *data*."""
    return hashlib.sha256(data).hexdigest()


def never_own(name: str) -> bool:
    """An is_own that claims no name."""
    return False


def outside(tmp_path: Path) -> os.stat_result:
    """The stat of a file outside every tree the tests walk (a stand-in temp)."""
    path = tmp_path / "archive.tmp"
    path.touch()
    return os.stat(path)


def make_logs(tmp_path: Path) -> Path:
    """A small logs tree under tmp_path/run/logs: files, an empty file, a link."""
    logs = tmp_path / "run" / "logs"
    (logs / "step_001").mkdir(parents=True)
    (logs / "run.log").write_bytes(b'{"event":"run_start"}\n')
    (logs / "step_001" / "adapter.log").write_bytes(b'{"event":"x"}\n' * 5000)
    (logs / "step_001" / "empty.log").write_bytes(b"")
    (logs / "link.log").symlink_to("run.log")
    return logs


def entries_of(tmp_path: Path, logs: Path) -> list[_tarwrite.Entry]:
    """collect() and hash_files() of *logs* as the archive member 'logs'."""
    entries = _tarwrite.collect(
        [("logs", logs)], logs.parent, outside(tmp_path), never_own
    )
    _tarwrite.hash_files(entries)
    return entries


def write(
    path: Path, entries: list[_tarwrite.Entry], fmt: str = "gz"
) -> _tarwrite.HashingSink:
    """write_tar of *entries* into a new file at *path*; returns its sink."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        sink = _tarwrite.HashingSink(fd, path)
        _tarwrite.write_tar(sink, fmt, 3, entries, MTIME, None)
    finally:
        os.close(fd)
    return sink


def plain_tar(path: Path) -> bytes:
    """The decompressed tar stream of the archive at *path*, by the stdlib."""
    if path.suffix == ".gz":
        return gzip.decompress(path.read_bytes())
    with zstandard.ZstdDecompressor().stream_reader(path.read_bytes()) as reader:
        return reader.read()


def members(path: Path) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    """Every member of the archive at *path* with its data, read by stdlib tarfile."""
    out: list[tuple[tarfile.TarInfo, bytes | None]] = []
    with tarfile.open(fileobj=io.BytesIO(plain_tar(path)), mode="r:") as tar:
        for member in tar:
            data = tar.extractfile(member) if member.isreg() else None
            out.append((member, None if data is None else data.read()))
    return out


def runlog_threads(before: set[threading.Thread]) -> list[str]:
    """Names of runlog's threads alive now that were not in *before*."""
    return [
        thread.name
        for thread in threading.enumerate()
        if thread not in before and thread.name.startswith("runlog-")
    ]


# collect ------------------------------------------------------------------


def test_collect_lists_each_directory_before_its_byte_sorted_children(
    tmp_path: Path,
) -> None:
    """Entries come depth-first, each directory before its children in byte order."""
    root = tmp_path / "logs"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    for name in ["a.log", "_x.log", "Z.log", "B.log", "a/y.log", "é.log"]:
        (root / name).write_bytes(b"1")

    entries = _tarwrite.collect(
        [("logs", root)], tmp_path, outside(tmp_path), never_own
    )

    assert [entry.arcname for entry in entries] == [
        "logs",
        "logs/B.log",
        "logs/Z.log",
        "logs/_x.log",
        "logs/a",
        "logs/a/y.log",
        "logs/a.log",
        "logs/b",
        "logs/é.log",
    ]


def test_collect_takes_roots_in_the_order_given(tmp_path: Path) -> None:
    """Each root and its tree follow the one before, under its archive name."""
    (tmp_path / "w" / "sub").mkdir(parents=True)
    (tmp_path / "w" / "sub" / "f").write_bytes(b"")
    (tmp_path / "m.json").write_bytes(b"{}")

    entries = _tarwrite.collect(
        [("metrics.json", tmp_path / "m.json"), ("workspace", tmp_path / "w")],
        tmp_path,
        outside(tmp_path),
        never_own,
    )

    assert [(e.arcname, e.kind, e.source) for e in entries] == [
        ("metrics.json", "file", tmp_path / "m.json"),
        ("workspace", "dir", tmp_path / "w"),
        ("workspace/sub", "dir", tmp_path / "w" / "sub"),
        ("workspace/sub/f", "file", tmp_path / "w" / "sub" / "f"),
    ]


def test_collect_normalizes_modes_and_records_sizes(tmp_path: Path) -> None:
    """Files get 0o755 if owner-executable else 0o644, dirs 0o755, links 0o777."""
    root = tmp_path / "logs"
    (root / "private").mkdir(parents=True, mode=0o700)
    for name, mode in [("tool.sh", 0o700), ("secret.log", 0o600), ("wide", 0o777)]:
        (root / name).write_bytes(name.encode())
        (root / name).chmod(mode)
    (root / "link").symlink_to("tool.sh")

    entries = _tarwrite.collect(
        [("logs", root)], tmp_path, outside(tmp_path), never_own
    )

    assert {e.arcname: (e.kind, oct(e.mode), e.size) for e in entries} == {
        "logs": ("dir", "0o755", 0),
        "logs/link": ("symlink", "0o777", 0),
        "logs/private": ("dir", "0o755", 0),
        "logs/secret.log": ("file", "0o644", 10),
        "logs/tool.sh": ("file", "0o755", 7),
        "logs/wide": ("file", "0o755", 4),
    }


def test_collect_stores_symlinks_without_following_them(tmp_path: Path) -> None:
    """A link to a directory or to nothing is one symlink entry with its target."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "big.log").write_bytes(b"not in the run")
    root = tmp_path / "logs"
    root.mkdir()
    (root / "dir_link").symlink_to("../elsewhere")
    (root / "dangling").symlink_to("/no/such/file")

    entries = _tarwrite.collect(
        [("logs", root)], tmp_path, outside(tmp_path), never_own
    )

    assert [(e.arcname, e.kind, e.linkname) for e in entries] == [
        ("logs", "dir", ""),
        ("logs/dangling", "symlink", "/no/such/file"),
        ("logs/dir_link", "symlink", "../elsewhere"),
    ]


def test_collect_follows_a_root_that_is_a_symlink_to_a_directory(
    tmp_path: Path,
) -> None:
    """A root named through a symlink is walked as the directory it points to."""
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "a.log").write_bytes(b"a")
    (tmp_path / "link").symlink_to("real")

    entries = _tarwrite.collect(
        [("logs", tmp_path / "link")], tmp_path, outside(tmp_path), never_own
    )

    assert [(e.arcname, e.kind) for e in entries] == [
        ("logs", "dir"),
        ("logs/a.log", "file"),
    ]


def test_collect_missing_root_is_an_error_naming_it(tmp_path: Path) -> None:
    """A root that does not exist is a RunlogError naming the member and the path."""
    missing = tmp_path / "nope"
    message = f"nothing to archive as 'ws': '{missing}' does not exist"

    with pytest.raises(RunlogError, match=f"^{re.escape(message)}$"):
        _tarwrite.collect([("ws", missing)], tmp_path, outside(tmp_path), never_own)


def test_collect_refuses_a_fifo_naming_it(tmp_path: Path) -> None:
    """A named pipe in the tree is a RunlogError naming its path and kind."""
    root = tmp_path / "logs"
    root.mkdir()
    os.mkfifo(root / "pipe")

    with pytest.raises(
        RunlogError, match=r"'.*/logs/pipe': it is a FIFO \(named pipe\)"
    ):
        _tarwrite.collect([("logs", root)], tmp_path, outside(tmp_path), never_own)


def test_collect_refuses_a_socket_naming_it(tmp_path: Path) -> None:
    """A Unix socket in the tree is a RunlogError naming its path and kind."""
    root = tmp_path / "logs"
    root.mkdir()
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(root / "sock"))

        with pytest.raises(RunlogError, match=r"'.*/logs/sock': it is a socket;"):
            _tarwrite.collect([("logs", root)], tmp_path, outside(tmp_path), never_own)


def test_collect_refuses_a_device_root_naming_it(tmp_path: Path) -> None:
    """A character device named as a root is a RunlogError naming it."""
    with pytest.raises(RunlogError, match=r"'/dev/null': it is a character device"):
        _tarwrite.collect(
            [("null", Path("/dev/null"))], tmp_path, outside(tmp_path), never_own
        )


def test_collect_skips_the_archive_being_written(tmp_path: Path) -> None:
    """The file whose stat is passed as *temp* is left out, wherever it is."""
    root = tmp_path / "logs"
    root.mkdir()
    (root / "a.log").write_bytes(b"a")
    (root / "writing.tmp").write_bytes(b"")

    entries = _tarwrite.collect(
        [("logs", root)], tmp_path, os.stat(root / "writing.tmp"), never_own
    )

    assert [e.arcname for e in entries] == ["logs", "logs/a.log"]


def test_collect_skips_own_names_only_directly_in_the_run_dir(tmp_path: Path) -> None:
    """is_own hides names in the run dir itself, not the same names deeper down."""
    run_dir = tmp_path / "run"
    (run_dir / "sub").mkdir(parents=True)
    for path in ["run.tar.gz", "keep.log", "sub/run.tar.gz"]:
        (run_dir / path).write_bytes(b"x")
    asked: list[str] = []

    def is_own(name: str) -> bool:
        asked.append(name)
        return name == "run.tar.gz"

    entries = _tarwrite.collect([("ws", run_dir)], run_dir, outside(tmp_path), is_own)

    assert [e.arcname for e in entries] == [
        "ws",
        "ws/keep.log",
        "ws/sub",
        "ws/sub/run.tar.gz",
    ]
    assert sorted(asked) == ["keep.log", "run.tar.gz", "sub"]


def test_collect_skips_scratch_files_but_not_directories_so_named(
    tmp_path: Path,
) -> None:
    """Scratch files a crash leaves are skipped; a directory of that name is kept."""
    root = tmp_path / "logs"
    (root / ".x.1.2.tmp").mkdir(parents=True)
    (root / ".combined.log.spare").write_bytes(b"old")
    (root / ".combined.log.previous").write_bytes(b"old")
    (root / ".run.json.12.34.tmp").write_bytes(b"{")
    (root / "combined.log").write_bytes(b"new")

    entries = _tarwrite.collect(
        [("logs", root)], tmp_path, outside(tmp_path), never_own
    )

    assert [e.arcname for e in entries] == [
        "logs",
        "logs/.x.1.2.tmp",
        "logs/combined.log",
    ]


def test_collect_treats_a_directory_removed_mid_walk_as_empty(tmp_path: Path) -> None:
    """A directory removed after it was listed is kept, with nothing beneath it."""
    run_dir = tmp_path / "run"
    (run_dir / "gone").mkdir(parents=True)
    (run_dir / "gone" / "a.log").write_bytes(b"a")

    def remove_gone(name: str) -> bool:
        if name == "gone":
            shutil.rmtree(run_dir / "gone")
        return False

    entries = _tarwrite.collect(
        [("ws", run_dir)], run_dir, outside(tmp_path), remove_gone
    )

    assert [(e.arcname, e.kind) for e in entries] == [("ws", "dir"), ("ws/gone", "dir")]


def test_collect_directory_replaced_by_a_file_mid_walk_is_an_error(
    tmp_path: Path,
) -> None:
    """A directory that cannot be listed is a RunlogError naming it."""
    run_dir = tmp_path / "run"
    (run_dir / "sub").mkdir(parents=True)

    def replace_sub(name: str) -> bool:
        if name == "sub":
            (run_dir / "sub").rmdir()
            (run_dir / "sub").write_bytes(b"now a file")
        return False

    with pytest.raises(
        RunlogError, match=r"^cannot list '.*/run/sub': Not a directory"
    ):
        _tarwrite.collect([("ws", run_dir)], run_dir, outside(tmp_path), replace_sub)


# hash_files ---------------------------------------------------------------


def test_hash_files_sets_the_sha256_of_files_only(tmp_path: Path) -> None:
    """Every file entry gets its SHA-256; directories and links get none."""
    logs = make_logs(tmp_path)
    entries = _tarwrite.collect(
        [("logs", logs)], tmp_path, outside(tmp_path), never_own
    )

    _tarwrite.hash_files(entries)

    assert {e.arcname: e.sha256 for e in entries} == {
        "logs": "",
        "logs/link.log": "",
        "logs/run.log": sha((logs / "run.log").read_bytes()),
        "logs/step_001": "",
        "logs/step_001/adapter.log": sha((logs / "step_001/adapter.log").read_bytes()),
        "logs/step_001/empty.log": sha(b""),
    }


def test_hash_files_reads_a_grown_file_up_to_its_listed_size(tmp_path: Path) -> None:
    """A file appended to after it was listed is hashed as it was when listed."""
    (tmp_path / "a.log").write_bytes(b"line 1\n")
    entries = _tarwrite.collect(
        [("a.log", tmp_path / "a.log")], tmp_path, outside(tmp_path), never_own
    )
    with (tmp_path / "a.log").open("ab") as handle:
        handle.write(b"line 2\n")

    _tarwrite.hash_files(entries)

    assert entries[0].size == 7
    assert entries[0].sha256 == sha(b"line 1\n")


def test_hash_files_file_cut_shorter_is_an_error_naming_it(tmp_path: Path) -> None:
    """A file truncated after it was listed is a RunlogError naming it."""
    (tmp_path / "a.log").write_bytes(b"line 1\nline 2\n")
    entries = _tarwrite.collect(
        [("a.log", tmp_path / "a.log")], tmp_path, outside(tmp_path), never_own
    )
    (tmp_path / "a.log").write_bytes(b"line 1\n")

    with pytest.raises(
        RunlogError,
        match=r"'.*/a\.log' changed while it was being archived \(it got shorter\)",
    ):
        _tarwrite.hash_files(entries)


def test_hash_files_file_replaced_is_an_error_naming_it(tmp_path: Path) -> None:
    """A file replaced by another (a new inode) after listing is a RunlogError."""
    (tmp_path / "a.log").write_bytes(b"old")
    entries = _tarwrite.collect(
        [("a.log", tmp_path / "a.log")], tmp_path, outside(tmp_path), never_own
    )
    (tmp_path / "new").write_bytes(b"new")  # made while the old inode still exists
    os.replace(tmp_path / "new", tmp_path / "a.log")

    with pytest.raises(RunlogError, match=r"'.*/a\.log' changed .*\(it was replaced\)"):
        _tarwrite.hash_files(entries)


@pytest.mark.parametrize("how", ["removed", "symlink"])
def test_hash_files_file_removed_or_made_a_link_is_an_error(
    tmp_path: Path, how: str
) -> None:
    """A file removed, or replaced by a symlink, after listing is a RunlogError."""
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "a.log").write_bytes(b"a")
    (tmp_path / "target.log").write_bytes(b"a")
    entries = _tarwrite.collect(
        [("logs", logs)], tmp_path, outside(tmp_path), never_own
    )
    (logs / "a.log").unlink()
    if how == "symlink":
        (logs / "a.log").symlink_to(tmp_path / "target.log")

    with pytest.raises(
        RunlogError, match=r"'.*/logs/a\.log' changed .*\(it was removed or replaced\)"
    ):
        _tarwrite.hash_files(entries)


def test_hash_files_reads_a_root_that_is_a_symlink_to_a_file(tmp_path: Path) -> None:
    """A root named through a symlink to a file is hashed as that file."""
    (tmp_path / "metrics.json").write_bytes(b'{"loss":0.1}\n')
    (tmp_path / "latest.json").symlink_to("metrics.json")
    entries = _tarwrite.collect(
        [("latest.json", tmp_path / "latest.json")],
        tmp_path,
        outside(tmp_path),
        never_own,
    )

    _tarwrite.hash_files(entries)

    assert entries[0].sha256 == sha(b'{"loss":0.1}\n')


# HashingSink --------------------------------------------------------------


def test_hashing_sink_hashes_and_counts_what_it_writes(tmp_path: Path) -> None:
    """Every byte written reaches the file and the running hash and count."""
    path = tmp_path / "out"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        sink = _tarwrite.HashingSink(fd, path)
        assert sink.write(b"abc") == 3
        assert sink.write(memoryview(b"defg")) == 4
    finally:
        os.close(fd)

    assert path.read_bytes() == b"abcdefg"
    assert (sink.size, sink.digest.hexdigest()) == (7, sha(b"abcdefg"))


def test_hashing_sink_write_error_names_the_path(tmp_path: Path) -> None:
    """A failed write is a LogWriteError with errno and path; nothing is counted."""
    fd = os.open("/dev/full", os.O_WRONLY)
    path = tmp_path / "run.tar.gz"
    try:
        sink = _tarwrite.HashingSink(fd, path)
        with pytest.raises(
            LogWriteError, match=rf"No space left on device: '{re.escape(str(path))}'"
        ) as info:
            sink.write(b"abc")
    finally:
        os.close(fd)

    assert info.value.errno == errno.ENOSPC
    assert (sink.size, sink.digest.hexdigest()) == (0, sha(b""))


# write_tar ----------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["gz", "zst"])
def test_write_tar_puts_the_manifest_first_then_every_entry(
    tmp_path: Path, fmt: str
) -> None:
    """stdlib tarfile reads MANIFEST.sha256 first, then each entry in order."""
    entries = entries_of(tmp_path, make_logs(tmp_path))
    path = tmp_path / f"run.tar.{fmt}"
    write(path, entries, fmt)

    assert [member.name for member, _ in members(path)] == [
        "MANIFEST.sha256",
        "logs",
        "logs/link.log",
        "logs/run.log",
        "logs/step_001",
        "logs/step_001/adapter.log",
        "logs/step_001/empty.log",
    ]


def test_write_tar_manifest_lists_every_file_with_its_hash(tmp_path: Path) -> None:
    """MANIFEST.sha256 has one sha256sum line per file, none for dirs or links."""
    logs = make_logs(tmp_path)
    path = tmp_path / "run.tar.gz"
    write(path, entries_of(tmp_path, logs))

    manifest = members(path)[0][1]
    assert (
        manifest
        == (
            f"{sha((logs / 'run.log').read_bytes())}  logs/run.log\n"
            f"{sha((logs / 'step_001/adapter.log').read_bytes())}  "
            "logs/step_001/adapter.log\n"
            f"{sha(b'')}  logs/step_001/empty.log\n"
        ).encode()
    )


@pytest.mark.parametrize("fmt", ["gz", "zst"])
def test_write_tar_members_hold_the_file_data_and_link_targets(
    tmp_path: Path, fmt: str
) -> None:
    """Each file member holds the file's bytes; each link member its target."""
    logs = make_logs(tmp_path)
    path = tmp_path / f"run.tar.{fmt}"
    write(path, entries_of(tmp_path, logs), fmt)

    found = {member.name: (member, data) for member, data in members(path)}
    for name in ["run.log", "step_001/adapter.log", "step_001/empty.log"]:
        assert found[f"logs/{name}"][1] == (logs / name).read_bytes()
    assert found["logs/link.log"][0].issym()
    assert found["logs/link.log"][0].linkname == "run.log"


def test_write_tar_keeps_long_and_non_ascii_names(tmp_path: Path) -> None:
    """Names over 100 bytes, non-ASCII names and long link targets round trip."""
    logs = tmp_path / "logs"
    (logs / LONG_NAME).parent.mkdir(parents=True)
    (logs / LONG_NAME).write_bytes(b"long")
    (logs / "ünïcode.log").write_bytes(b"u")
    (logs / "far").symlink_to("../" * 40 + "target")
    path = tmp_path / "run.tar.gz"
    write(path, entries_of(tmp_path, logs))

    found = {member.name: (member, data) for member, data in members(path)}
    assert found[f"logs/{LONG_NAME}"][1] == b"long"
    assert found["logs/ünïcode.log"][1] == b"u"
    assert found["logs/far"][0].linkname == "../" * 40 + "target"


def test_write_tar_headers_are_normalized(tmp_path: Path) -> None:
    """Every member has the given mtime, uid/gid 0, no owner names, entry modes."""
    logs = make_logs(tmp_path)
    (logs / "tool.sh").write_bytes(b"#!/bin/sh\n")
    (logs / "tool.sh").chmod(0o750)
    path = tmp_path / "run.tar.gz"
    write(path, entries_of(tmp_path, logs))

    found = [member for member, _ in members(path)]
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in found} == {
        (MTIME, 0, 0, "", "")
    }
    assert {m.name: oct(m.mode) for m in found} == {
        "MANIFEST.sha256": "0o644",
        "logs": "0o755",
        "logs/link.log": "0o777",
        "logs/run.log": "0o644",
        "logs/step_001": "0o755",
        "logs/step_001/adapter.log": "0o644",
        "logs/step_001/empty.log": "0o644",
        "logs/tool.sh": "0o755",
    }


@pytest.mark.parametrize("fmt", ["gz", "zst"])
def test_write_tar_stream_ends_with_zero_blocks_in_whole_records(
    tmp_path: Path, fmt: str
) -> None:
    """The tar stream is whole 10 KiB records ending with two zero blocks."""
    path = tmp_path / f"run.tar.{fmt}"
    write(path, entries_of(tmp_path, make_logs(tmp_path)), fmt)

    data = plain_tar(path)
    assert len(data) % tarfile.RECORDSIZE == 0
    assert data[-2 * tarfile.BLOCKSIZE :] == bytes(2 * tarfile.BLOCKSIZE)


def test_write_tar_sink_counts_and_hashes_the_archive(tmp_path: Path) -> None:
    """The sink's size and SHA-256 are those of the archive file written."""
    path = tmp_path / "run.tar.zst"
    sink = write(path, entries_of(tmp_path, make_logs(tmp_path)), "zst")

    assert sink.size == path.stat().st_size
    assert sink.digest.hexdigest() == sha(path.read_bytes())


def test_write_tar_without_entries_holds_an_empty_manifest(tmp_path: Path) -> None:
    """With no entries the archive holds only an empty MANIFEST.sha256."""
    path = tmp_path / "run.tar.gz"
    write(path, [])

    assert [(m.name, m.size, data) for m, data in members(path)] == [
        ("MANIFEST.sha256", 0, b"")
    ]


def test_write_tar_archives_a_grown_file_at_its_listed_size(tmp_path: Path) -> None:
    """A file appended to after hashing is archived as it was when listed."""
    logs = make_logs(tmp_path)
    before = (logs / "run.log").read_bytes()
    entries = entries_of(tmp_path, logs)
    with (logs / "run.log").open("ab") as handle:
        handle.write(b'{"event":"late"}\n')
    path = tmp_path / "run.tar.gz"
    write(path, entries)

    found = {member.name: data for member, data in members(path)}
    assert found["logs/run.log"] == before
    assert f"{sha(before)}  logs/run.log\n".encode() in found["MANIFEST.sha256"]


@pytest.mark.parametrize("fmt", ["gz", "zst"])
def test_write_tar_file_cut_shorter_is_an_error_naming_it(
    tmp_path: Path, fmt: str
) -> None:
    """A file that shrinks between hashing and writing is a RunlogError naming it."""
    logs = make_logs(tmp_path)
    entries = entries_of(tmp_path, logs)
    (logs / "step_001" / "adapter.log").write_bytes(b"short\n")

    with pytest.raises(
        RunlogError, match=r"'.*/step_001/adapter\.log' changed .*\(it got shorter\)"
    ):
        write(tmp_path / f"run.tar.{fmt}", entries, fmt)


def test_write_tar_failure_stops_its_threads(tmp_path: Path) -> None:
    """After a failed write_tar no writing or compressing thread is left running."""
    logs = make_logs(tmp_path)
    entries = entries_of(tmp_path, logs)
    (logs / "step_001" / "adapter.log").unlink()
    before = set(threading.enumerate())

    with pytest.raises(RunlogError, match=r"adapter\.log"):
        write(tmp_path / "run.tar.gz", entries)
    assert runlog_threads(before) == []


def test_write_tar_progress_ends_at_the_totals(tmp_path: Path) -> None:
    """progress() counts grow to every file byte and every file, the empty one too."""
    logs = make_logs(tmp_path)
    entries = entries_of(tmp_path, logs)
    calls: list[tuple[int, int]] = []
    path = tmp_path / "run.tar.gz"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        sink = _tarwrite.HashingSink(fd, path)
        _tarwrite.write_tar(sink, "gz", 1, entries, MTIME, lambda *c: calls.append(c))
    finally:
        os.close(fd)

    total = sum(e.size for e in entries if e.kind == "file")
    assert all(a[0] <= b[0] and a[1] <= b[1] for a, b in itertools.pairwise(calls))
    assert calls[-1] == (total, 3)
