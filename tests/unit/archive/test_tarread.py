"""_tarread: reading an archive back against its manifest, and its manifest alone."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import tarfile
from pathlib import Path

import pytest
import zstandard

from runlog.archive import _tarread, _tarwrite
from runlog.errors import MismatchError, RunlogError

BLOCK = tarfile.BLOCKSIZE
END = bytes(2 * BLOCK)
FILES = {"logs/a.log": b'{"event":"a"}\n', "logs/b.log": b"b" * 2000}


def sha(data: bytes) -> str:
    """Hex SHA-256 of *data*."""
    return hashlib.sha256(data).hexdigest()


def header(name: str, kind: bytes, size: int = 0, linkname: str = "") -> bytes:
    """One tar header (PAX when needed) for a member of tar type *kind*."""
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size
    info.linkname = linkname
    info.mode = 0o644
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def regular(name: str, data: bytes) -> bytes:
    """A regular file member: header, data, padding to a block."""
    return header(name, tarfile.REGTYPE, len(data)) + data + bytes(-len(data) % BLOCK)


def directory(name: str) -> bytes:
    """A directory member."""
    return header(name, tarfile.DIRTYPE)


def symlink(name: str, target: str) -> bytes:
    """A symlink member pointing at *target*."""
    return header(name, tarfile.SYMTYPE, linkname=target)


def manifest_of(files: dict[str, bytes]) -> bytes:
    """MANIFEST.sha256 text listing *files* in sha256sum format."""
    return b"".join(f"{sha(data)}  {name}\n".encode() for name, data in files.items())


def manifest(text: bytes) -> bytes:
    """The MANIFEST.sha256 member holding *text*."""
    return regular("MANIFEST.sha256", text)


def good_parts() -> list[bytes]:
    """The members of a correct archive of FILES, manifest first."""
    return [
        manifest(manifest_of(FILES)),
        directory("logs"),
        *(regular(name, data) for name, data in FILES.items()),
    ]


def save(path: Path, tar: bytes) -> Path:
    """Write *tar* at *path*, compressed as its suffix says."""
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(tar, mtime=0))
    else:
        path.write_bytes(zstandard.ZstdCompressor(write_checksum=True).compress(tar))
    return path


def problem_of(tmp_path: Path, *parts: bytes, fmt: str = "gz") -> str | None:
    """The problem read_back reports for the tar made of *parts*."""
    path = save(tmp_path / f"run.tar.{fmt}", b"".join(parts))
    return _tarread.read_back(path, fmt).problem


def written_archive(tmp_path: Path, fmt: str) -> Path:
    """An archive of a small logs tree written by _tarwrite."""
    logs = tmp_path / "run" / "logs"
    (logs / "step_001").mkdir(parents=True)
    (logs / "run.log").write_bytes(b'{"event":"run_start"}\n')
    (logs / "step_001" / "adapter.log").write_bytes(b'{"event":"x"}\n' * 5000)
    (logs / "step_001" / "empty.log").write_bytes(b"")
    (logs / "link.log").symlink_to("run.log")
    (tmp_path / "temp").touch()
    entries = _tarwrite.collect(
        [("logs", logs)], logs.parent, os.stat(tmp_path / "temp"), lambda _: False
    )
    _tarwrite.hash_files(entries)
    path = tmp_path / f"run.tar.{fmt}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        _tarwrite.write_tar(_tarwrite.HashingSink(fd, path), fmt, 3, entries, 0, None)
    finally:
        os.close(fd)
    return path


# read_back: whole archives ------------------------------------------------


@pytest.mark.parametrize("fmt", ["gz", "zst"])
def test_read_back_of_a_written_archive_finds_no_problem(
    tmp_path: Path, fmt: str
) -> None:
    """An archive write_tar made reads back whole: hash, size, files, its link."""
    path = written_archive(tmp_path, fmt)

    assert _tarread.read_back(path, fmt) == _tarread.ReadBack(
        sha(path.read_bytes()),
        path.stat().st_size,
        3,
        None,
        (("logs/link.log", "run.log"),),
    )


@pytest.mark.parametrize("fmt", ["gz", "zst"])
def test_read_back_accepts_a_hand_built_archive(tmp_path: Path, fmt: str) -> None:
    """The hand-built archive the tampering tests start from is itself correct."""
    path = save(tmp_path / f"run.tar.{fmt}", b"".join([*good_parts(), END]))

    back = _tarread.read_back(path, fmt)
    assert (back.problem, back.file_count) == (None, 2)


def test_read_back_accepts_a_name_that_is_not_utf8(tmp_path: Path) -> None:
    """A file whose name is not valid UTF-8 is archived and reads back clean."""
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / os.fsdecode(b"caf\xe9.log")).write_bytes(b"latin-1 name")
    entries = _tarwrite.collect(
        [("logs", logs)], tmp_path, os.stat(tmp_path), lambda _: False
    )
    _tarwrite.hash_files(entries)
    path = tmp_path / "run.tar.gz"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        _tarwrite.write_tar(_tarwrite.HashingSink(fd, path), "gz", 1, entries, 0, None)
    finally:
        os.close(fd)

    assert _tarread.read_back(path, "gz").problem is None


def test_read_back_of_a_missing_file_is_an_error_naming_it(tmp_path: Path) -> None:
    """An archive that cannot be opened is a RunlogError naming it."""
    path = tmp_path / "run.tar.gz"

    with pytest.raises(
        RunlogError, match=rf"^cannot read '{re.escape(str(path))}': No such file"
    ):
        _tarread.read_back(path, "gz")


# read_back: tampered members ----------------------------------------------


def test_read_back_reports_an_altered_member(tmp_path: Path) -> None:
    """A member whose data differs from its manifest line is named with both hashes."""
    altered = b'{"event":"A"}\n'
    parts = [manifest(manifest_of(FILES)), regular("logs/a.log", altered), END]

    assert problem_of(tmp_path, *parts) == (
        f"member 'logs/a.log': SHA-256 expected {sha(FILES['logs/a.log'])!r} "
        f"(MANIFEST.sha256), actual {sha(altered)!r}"
    )


def test_read_back_reports_a_member_not_in_the_manifest(tmp_path: Path) -> None:
    """A file member the manifest does not list is reported by name."""
    parts = [*good_parts(), regular("logs/extra.log", b"x"), END]

    assert problem_of(tmp_path, *parts) == (
        "member 'logs/extra.log' is not listed in MANIFEST.sha256"
    )


def test_read_back_reports_a_listed_file_that_is_missing(tmp_path: Path) -> None:
    """A file the manifest lists but the archive lacks is reported by name."""
    listed = dict(FILES, **{"logs/c.log": b"c"})
    parts = [manifest(manifest_of(listed)), *good_parts()[1:], END]

    assert problem_of(tmp_path, *parts) == (
        "'logs/c.log' is listed in MANIFEST.sha256 but missing from the archive"
    )


@pytest.mark.parametrize(
    ("again", "name"),
    [
        (regular("logs/a.log", FILES["logs/a.log"]), "logs/a.log"),
        (directory("logs"), "logs"),
        (manifest(manifest_of(FILES)), "MANIFEST.sha256"),
    ],
    ids=["file", "directory", "manifest"],
)
def test_read_back_reports_a_duplicate_member(
    tmp_path: Path, again: bytes, name: str
) -> None:
    """A member name that appears a second time is reported."""
    assert problem_of(tmp_path, *good_parts(), again, END) == (
        f"member {name!r} appears twice"
    )


def test_read_back_reports_a_manifest_that_is_not_first(tmp_path: Path) -> None:
    """An archive whose first member is not MANIFEST.sha256 is reported."""
    first, *rest = good_parts()

    assert problem_of(tmp_path, *rest, first, END) == (
        "first member is 'logs', not 'MANIFEST.sha256'"
    )


def test_read_back_reports_a_manifest_that_is_no_file(tmp_path: Path) -> None:
    """A first member named MANIFEST.sha256 that is a directory is refused."""
    parts = [directory("MANIFEST.sha256"), *good_parts()[1:], END]

    assert problem_of(tmp_path, *parts) == (
        "first member is 'MANIFEST.sha256', not 'MANIFEST.sha256'"
    )


def test_read_back_reports_an_archive_with_no_member(tmp_path: Path) -> None:
    """A tar stream with only its end marker has no manifest: reported."""
    assert problem_of(tmp_path, END) == (
        "the archive is empty; expected 'MANIFEST.sha256' first"
    )


@pytest.mark.parametrize(
    "name",
    [
        "../x.log",
        "/etc/passwd",
        "logs/../../x.log",
        "./logs/x.log",
        "logs//x.log",
        "logs/.",
        "logs/x.log/",
    ],
)
def test_read_back_reports_an_unsafe_member_name(tmp_path: Path, name: str) -> None:
    """A name that is absolute, climbs up or has an empty or dot part is refused."""
    listed = dict(FILES, **{name: b"evil"})
    parts = [manifest(manifest_of(listed)), *good_parts()[1:], regular(name, b"evil")]

    assert problem_of(tmp_path, *parts, END) == f"member {name!r} has an unsafe name"


def test_read_back_reports_a_member_beneath_a_symlink(tmp_path: Path) -> None:
    """A member whose path goes through a symlink member is refused."""
    listed = dict(FILES, **{"logs/out/x.log": b"x"})
    parts = [
        manifest(manifest_of(listed)),
        *good_parts()[1:],
        symlink("logs/out", "/tmp"),
        regular("logs/out/x.log", b"x"),
        END,
    ]

    assert problem_of(tmp_path, *parts) == (
        "member 'logs/out/x.log' lies beneath a symlink member"
    )


@pytest.mark.parametrize(
    ("kind", "linkname"),
    [
        (tarfile.LNKTYPE, "logs/a.log"),
        (tarfile.FIFOTYPE, ""),
        (tarfile.CHRTYPE, ""),
        (tarfile.BLKTYPE, ""),
    ],
    ids=["hardlink", "fifo", "chardev", "blockdev"],
)
def test_read_back_reports_a_member_of_another_type(
    tmp_path: Path, kind: bytes, linkname: str
) -> None:
    """A hard link, FIFO or device member does not belong: reported with its type."""
    parts = [*good_parts(), header("logs/x", kind, linkname=linkname), END]

    assert problem_of(tmp_path, *parts) == (
        f"member 'logs/x' is of tar type {kind!r}: only files, directories and "
        "symlinks belong in a run archive"
    )


def test_read_back_reports_a_listed_name_that_is_not_a_file(tmp_path: Path) -> None:
    """A manifest line for a directory member is reported."""
    listed = dict(FILES, **{"logs": b""})
    parts = [manifest(manifest_of(listed)), *good_parts()[1:], END]

    assert problem_of(tmp_path, *parts) == (
        "MANIFEST.sha256 lists 'logs', which is not a file"
    )


def test_read_back_reports_a_damaged_last_header(tmp_path: Path) -> None:
    """A last member (a symlink) whose header is damaged is reported."""
    link = bytearray(symlink("logs/link", "a.log"))
    link[157] ^= 0x01  # a byte of the link target: the checksum no longer matches

    assert problem_of(tmp_path, *good_parts(), bytes(link), END) is not None


# read_back: tampered manifest ---------------------------------------------


def test_read_back_reports_a_bad_escape_in_the_manifest(tmp_path: Path) -> None:
    """An escaped manifest name with an unknown escape is reported."""
    text = manifest_of(FILES) + f"\\{sha(b'')}  logs/a\\q.log\n".encode()
    parts = [manifest(text), *good_parts()[1:], END]

    assert problem_of(tmp_path, *parts) == (
        r"MANIFEST.sha256: bad escape in b'logs/a\\q.log'"
    )


def test_read_back_reports_a_manifest_line_not_in_sha256sum_format(
    tmp_path: Path,
) -> None:
    """A manifest line not in sha256sum format is reported with its number."""
    text = manifest_of(FILES) + b"DEADBEEF  logs/c.log\n"
    parts = [manifest(text), *good_parts()[1:], END]

    assert problem_of(tmp_path, *parts) == (
        "MANIFEST.sha256 line 3 is not in sha256sum format: b'DEADBEEF  logs/c.log'"
    )


def test_read_back_reports_a_name_listed_twice(tmp_path: Path) -> None:
    """A manifest that lists a name twice is reported."""
    text = manifest_of(FILES) + manifest_of({"logs/a.log": FILES["logs/a.log"]})
    parts = [manifest(text), *good_parts()[1:], END]

    assert problem_of(tmp_path, *parts) == ("MANIFEST.sha256 lists 'logs/a.log' twice")


def test_read_back_reports_a_manifest_without_final_newline(tmp_path: Path) -> None:
    """A manifest whose last line has no newline is reported."""
    parts = [manifest(manifest_of(FILES)[:-1]), *good_parts()[1:], END]

    assert problem_of(tmp_path, *parts) == (
        "MANIFEST.sha256 does not end with a newline"
    )


# read_back: damaged streams -----------------------------------------------


def test_read_back_reports_data_after_the_end_marker(tmp_path: Path) -> None:
    """Non-zero bytes after the end-of-archive marker are reported."""
    parts = [*good_parts(), bytes(BLOCK), b"x" * BLOCK, END]

    assert problem_of(tmp_path, *parts) == "data follows the end-of-archive marker"


def test_read_back_reports_a_tar_without_end_marker(tmp_path: Path) -> None:
    """A tar stream that stops after its last member is cut short: reported."""
    assert problem_of(tmp_path, *good_parts()) == (
        "the tar stream is cut short (no end-of-archive marker)"
    )


def test_read_back_reports_a_member_cut_short(tmp_path: Path) -> None:
    """A tar stream that ends inside a member's data names the member."""
    tar = b"".join(good_parts())
    cut = tar[: len(tar) - BLOCK - 100]  # inside logs/b.log's 2000 bytes

    assert problem_of(tmp_path, cut) == "member 'logs/b.log' is cut short"


@pytest.mark.parametrize("fmt", ["gz", "zst"])
def test_read_back_reports_a_compressed_stream_cut_short(
    tmp_path: Path, fmt: str
) -> None:
    """An archive file cut short is reported; hash and size are the cut file's."""
    path = save(tmp_path / f"run.tar.{fmt}", b"".join([*good_parts(), END]))
    cut = path.read_bytes()[:-5]
    path.write_bytes(cut)

    back = _tarread.read_back(path, fmt)
    assert back.problem is not None
    assert back.problem.startswith(f"the {fmt} data is corrupt or cut short: ")
    assert (back.sha256, back.size, back.file_count) == (sha(cut), len(cut), 0)


@pytest.mark.parametrize("fmt", ["gz", "zst"])
def test_read_back_of_garbage_hashes_the_whole_file(tmp_path: Path, fmt: str) -> None:
    """Garbage is reported, and its hash and size cover every byte of the file."""
    garbage = b"PK\x03\x04" + bytes(range(256)) * 3000
    path = tmp_path / f"run.tar.{fmt}"
    path.write_bytes(garbage)

    back = _tarread.read_back(path, fmt)
    assert back.problem is not None
    assert back.problem.startswith(f"the {fmt} data is corrupt or cut short: ")
    assert (back.sha256, back.size, back.file_count) == (sha(garbage), len(garbage), 0)


def test_read_back_of_gz_data_as_zst_is_reported(tmp_path: Path) -> None:
    """A gzip archive read as zst is reported as corrupt zst data."""
    path = save(tmp_path / "run.tar.gz", b"".join([*good_parts(), END]))

    problem = _tarread.read_back(path, "zst").problem
    assert problem is not None
    assert problem.startswith("the zst data is corrupt or cut short: not a zstd frame")


def test_read_back_of_compressed_non_tar_data_is_reported(tmp_path: Path) -> None:
    """A valid gzip stream that holds no tar is reported as corrupt tar data."""
    problem = problem_of(tmp_path, b"this is not a tar archive\n" * 100)

    assert problem is not None
    assert problem.startswith("the tar data is corrupt: ")


# read_manifest and read_manifest_of ---------------------------------------


@pytest.mark.parametrize("fmt", ["gz", "zst"])
def test_read_manifest_of_gives_names_and_hashes(tmp_path: Path, fmt: str) -> None:
    """read_manifest_of maps each listed name to its SHA-256."""
    path = save(tmp_path / f"run.tar.{fmt}", b"".join([*good_parts(), END]))

    assert _tarread.read_manifest_of(path) == {
        name: sha(data) for name, data in FILES.items()
    }


def test_read_manifest_of_reads_only_the_first_member(tmp_path: Path) -> None:
    """Damage after the manifest does not stop read_manifest_of."""
    parts = [manifest(manifest_of(FILES)), b"\xff" * (4 * BLOCK)]
    path = save(tmp_path / "run.tar.gz", b"".join(parts))

    assert _tarread.read_manifest_of(path) == {
        name: sha(data) for name, data in FILES.items()
    }


def test_read_manifest_of_refuses_a_manifest_that_is_not_first(tmp_path: Path) -> None:
    """read_manifest_of raises MismatchError when another member comes first."""
    first, *rest = good_parts()
    path = save(tmp_path / "run.tar.zst", b"".join([*rest, first, END]))

    with pytest.raises(MismatchError, match=r"^first member is 'logs', not"):
        _tarread.read_manifest_of(path)


def test_read_manifest_of_refuses_an_implausibly_large_manifest(
    tmp_path: Path,
) -> None:
    """A manifest header claiming 300 MiB is refused before its data is read."""
    claim = header("MANIFEST.sha256", tarfile.REGTYPE, size=300 << 20)
    path = save(tmp_path / "run.tar.gz", claim + END)

    with pytest.raises(
        MismatchError,
        match=r"^MANIFEST.sha256 is implausibly large \(314572800 bytes\)$",
    ):
        _tarread.read_manifest_of(path)


def test_read_manifest_reads_escaped_and_binary_mode_lines() -> None:
    """Escaped names are unescaped and '<hash> *<name>' lines read like text ones."""
    text = (
        f"\\{sha(b'1')}  logs/back\\\\slash\\nnew\\rline.log\n"
        f"{sha(b'2')} *logs/binary mode.log\n"
    ).encode()
    tar = io.BytesIO(manifest(text) + END)

    with tarfile.open(fileobj=tar, mode="r:") as opened:
        assert _tarread.read_manifest(opened) == {
            "logs/back\\slash\nnew\rline.log": sha(b"1"),
            "logs/binary mode.log": sha(b"2"),
        }


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("run.tar.gz", b"PK\x03\x04 not gzip"),
        ("run.tar.zst", b"PK\x03\x04 not zstd"),
        ("run.tar.gz", b""),
        ("run.tar.zst", b""),
        ("run.tar.gz", gzip.compress(b"not a tar archive\n" * 100)),
        ("run.tar.zst", zstandard.compress(b"\xff" * 1024)),
        ("run.tar.gz", gzip.compress(manifest(manifest_of(FILES)))[:30]),
        ("run.tar.zst", zstandard.compress(manifest(manifest_of(FILES)))[:30]),
        ("run.tar.gz", None),
    ],
    ids=[
        "not-gzip",
        "not-zstd",
        "empty-gz",
        "empty-zst",
        "gz-not-tar",
        "zst-not-tar",
        "gz-cut",
        "zst-cut",
        "missing",
    ],
)
def test_read_manifest_of_garbage_raises_an_unreadable_error(
    tmp_path: Path, name: str, content: bytes | None
) -> None:
    """Whatever is wrong with the file, the error is one of UNREADABLE."""
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)

    with pytest.raises(_tarread.UNREADABLE):
        _tarread.read_manifest_of(path)
