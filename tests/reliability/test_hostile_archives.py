"""Hostile archives and logs for `runlog show` and `verify`: nothing written, clean."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from runlog import cli
from runlog.reading import _archive_stream
from tests.reliability._checks import add_figures, all_paths

pytestmark = pytest.mark.reliability

GOOD_RECORD = (
    b'{"ts":"2025-01-01T00:00:00.000000Z","level":"info","event":"fine",'
    b'"logger":"m","component":"adapter","run_id":"r1","framework":"fw","step":1}\n'
)

Member = tuple[tarfile.TarInfo, bytes]


def regular(name: str, data: bytes = GOOD_RECORD) -> Member:
    """A regular file member."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> Member:
    """A symlink (or hard link) member."""
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, b""


def special(name: str, kind: bytes) -> Member:
    """A FIFO, device or other special member."""
    info = tarfile.TarInfo(name)
    info.type = kind
    return info, b""


def write_archive(path: Path, members: list[Member]) -> Path:
    """*members* as a .tar.gz at *path*, with a sidecar that matches it."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw.getvalue(), mtime=0))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    Path(f"{path}.sha256").write_text(f"{digest}  {path.name}\n")
    return path


def manifest(members: list[Member]) -> Member:
    """A MANIFEST.sha256 member listing the regular *members*."""
    lines = "".join(
        f"{hashlib.sha256(data).hexdigest()}  {info.name}\n"
        for info, data in members
        if info.isreg()
    )
    return regular("MANIFEST.sha256", lines.encode())


HOSTILE: dict[str, list[Member]] = {
    "absolute path": [regular("/tmp/runlog-evil-abs/step_001/adapter.log")],
    "absolute logs path": [regular("logs//tmp/runlog-evil-abs2.log")],
    "dot-dot member": [regular("../../runlog-evil-dotdot.log")],
    "dot-dot under logs": [regular("logs/step_001/../../../runlog-evil.log")],
    "symlink to /etc/passwd": [link("logs/step_001/adapter.log", "/etc/passwd")],
    "symlink dir then file": [
        link("logs/step_001", "/tmp"),
        regular("logs/step_001/runlog-evil-through-link.log"),
    ],
    "hard link to /etc/passwd": [
        link("logs/step_001/adapter.log", "/etc/passwd", tarfile.LNKTYPE)
    ],
    "fifo named like a log": [special("logs/step_001/adapter.log", tarfile.FIFOTYPE)],
    "device named like a log": [special("logs/run.log", tarfile.CHRTYPE)],
    "duplicate members": [regular("logs/run.log"), regular("logs/run.log", b"{}\n")],
    "very long name": [regular("logs/" + "a" * 5000 + ".log")],
    "control characters in a name": [regular("logs/step_001/\x1b[2Jx.log")],
    "binary member": [regular("logs/run.log", bytes(range(256)) * 64)],
}


# Intact archives, only odd: verify may accept them; show lists nothing unsafe.
VALID = frozenset(
    {
        "binary member",
        "control characters in a name",
        "symlink to /etc/passwd",
        "very long name",
    }
)


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory inside tmp_path (cwd), so stray writes show."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return tmp_path


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """cli.main(argv) -> exit code, stdout, stderr."""
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_untouched(root: Path, before: set[Path]) -> None:
    """Nothing was created under *root* or at the names hostile members aim at."""
    assert all_paths(root) == before
    for stray in (
        "/tmp/runlog-evil-abs",
        "/tmp/runlog-evil-abs2.log",
        "/tmp/runlog-evil-through-link.log",
    ):
        assert not os.path.lexists(stray), stray
    for parent in (root, root.parent, root.parent.parent):
        assert not list(parent.glob("runlog-evil*"))


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archive_show_and_verify_fail_cleanly(
    case: str, sandbox: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    show reads such an archive in place and writes nothing; verify exits 1.

    ``show`` exits 0 (listing only the regular ``logs/`` members runlog
    itself writes) or 2; ``verify`` exits 1 naming the problem; neither
    prints a traceback or creates a file anywhere.
    """
    members = HOSTILE[case]
    archive = write_archive(
        sandbox / "runs" / "fw" / "r1" / "run.tar.gz", [manifest(members), *members]
    )
    before = all_paths(sandbox)
    code, out, err = run_cli(capsys, "show", str(archive), "--color", "never")
    assert code in (0, 2), err
    assert "Traceback" not in err and "Traceback" not in out
    assert "\x1b" not in out + err  # no terminal escapes from member names
    for text in ("/etc/passwd", "root:"):
        assert text not in out
    code, out, err = run_cli(capsys, "verify", str(archive))
    # odd but intact archives may verify (runlog stores symlinks as they are)
    assert code == 1 or case in VALID, (out, err)
    assert code in (0, 1) and "Traceback" not in err
    if code == 1:
        assert err.startswith("runlog: error: ")
    assert_untouched(sandbox, before)
    add_figures("archive.hostile", archives=1, clean_exits=2, files_written=0)


def test_regular_archive_members_are_shown_not_extracted(
    sandbox: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The one well-formed member is listed; the archive stays the only file."""
    members = [regular("logs/step_001/adapter.log"), *HOSTILE["dot-dot member"]]
    archive = write_archive(
        sandbox / "runs" / "fw" / "r1" / "run.tar.gz", [manifest(members), *members]
    )
    before = all_paths(sandbox)
    code, out, err = run_cli(capsys, "show", str(archive), "--color", "never")
    assert code == 0, err
    assert "fine" in out
    assert_untouched(sandbox, before)


UNREADABLE: dict[str, Callable[[Path], None]] = {
    "empty file": lambda p: p.write_bytes(b""),
    "not gzip": lambda p: p.write_bytes(b"PK\x03\x04 not a tar at all" * 100),
    "gzip of garbage": lambda p: p.write_bytes(gzip.compress(os.urandom(4096))),
    "cut short": lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
    "size field lies": lambda p: p.write_bytes(_lying_size()),
}


def _lying_size() -> bytes:
    """A tar whose member header claims 8 GB but holds a few bytes."""
    info = tarfile.TarInfo("logs/run.log")
    info.size = 8 << 30
    header = info.tobuf(format=tarfile.GNU_FORMAT)
    return gzip.compress(header + GOOD_RECORD + b"\0" * 1024, mtime=0)


@pytest.mark.parametrize("case", sorted(UNREADABLE))
def test_unreadable_archive_fails_with_a_message(
    case: str, sandbox: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A damaged archive: show exits 2 and verify exits 1, with a message, no trace."""
    members = [regular("logs/run.log")]
    archive = write_archive(
        sandbox / "runs" / "fw" / "r1" / "run.tar.gz", [manifest(members), *members]
    )
    UNREADABLE[case](archive)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    Path(f"{archive}.sha256").write_text(f"{digest}  {archive.name}\n")
    before = all_paths(sandbox)
    code, out, err = run_cli(capsys, "show", str(archive))
    assert code in (0, 2), err
    assert code == 2 or "fine" in out
    assert "Traceback" not in err
    code, out, err = run_cli(capsys, "verify", str(archive))
    assert code == 1, (out, err)
    assert err.startswith("runlog: error: ") and "Traceback" not in err
    assert_untouched(sandbox, before)


def _bomb(path: Path, size: int) -> Path:
    """A .tar.gz whose one log member is *size* bytes without a newline."""
    info = tarfile.TarInfo("logs/step_001/adapter.log")
    info.size = size
    chunk = b"a" * (1 << 20)
    with (
        path.open("wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0) as gz,
    ):
        gz.write(info.tobuf(format=tarfile.GNU_FORMAT))
        for _ in range(size // len(chunk)):
            gz.write(chunk)
        gz.write(b"\0" * (-size % 512 + 1024))
    return path


def test_a_huge_line_in_an_archive_is_skipped_in_linear_time(
    sandbox: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """
    A member that is one 64 MB line (a gzip bomb of 0.3 MB) is skipped, fast.

    Lines longer than the reader's limit (lowered here to 8 MB; 256 MB by
    default) are counted as malformed without being held in memory.
    """
    monkeypatch.setattr(_archive_stream, "_MAX_LINE", 8 << 20)
    archive = _bomb(sandbox / "run.tar.gz", 64 << 20)
    started = time.monotonic()
    code, _out, err = run_cli(capsys, "show", str(archive))
    elapsed = time.monotonic() - started
    assert code == 0, err
    assert "skipped 1 malformed line" in err and "Traceback" not in err
    assert elapsed < 10, f"{elapsed:.1f}s for one 64 MB line"


@pytest.mark.stress
def test_a_1_gb_line_in_an_archive_is_skipped(
    sandbox: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The long version: a 1 GB line (4 MB gzip) with the default limit."""
    archive = _bomb(sandbox / "run.tar.gz", 1 << 30)
    code, _out, err = run_cli(capsys, "show", str(archive))
    assert code == 0, err
    assert "skipped 1 malformed line" in err


ESCAPES = "\x1b[2J\x1b]0;pwned\x07\r\u202eevil\x9b"


def test_show_never_prints_control_characters_from_records(
    sandbox: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Terminal escapes, CR and bidi overrides in a record are printed escaped."""
    logs = sandbox / "runs" / "fw" / "r1" / "logs"
    (logs / "step_001").mkdir(parents=True)
    record = {
        "ts": "2025-01-01T00:00:00.000000Z",
        "level": "info" + ESCAPES,
        "event": "event" + ESCAPES,
        "logger": "m",
        "component": "adapter" + ESCAPES,
        "run_id": "r1",
        "framework": "fw",
        "step": 1,
        "key" + ESCAPES: "value" + ESCAPES,
        "traceback": "Traceback\n  line" + ESCAPES,
    }
    (logs / "step_001" / "adapter.log").write_bytes(orjson.dumps(record) + b"\n")
    for flags in ([], ["--source"], ["--level", "debug"]):
        code, out, err = run_cli(
            capsys, "show", str(logs.parent), "--color", "never", *flags
        )
        assert code == 0, err
        assert "event" in out
        for char in ("\x1b", "\x07", "\r", "\u202e", "\x9b"):
            assert char not in out + err, (char, out)
    code, out, err = run_cli(capsys, "show", str(logs.parent), "--json")
    assert orjson.loads(out.splitlines()[0])["event"] == "event" + ESCAPES
