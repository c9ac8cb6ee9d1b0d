"""extract_archive: a run archive unpacked whole, and nothing outside its directory."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from runlog import ArchiveIntegrityError, Archiver
from runlog.archive._extract import extract_archive
from tests.conftest import files_under


def _member(
    tar: tarfile.TarFile, name: str, data: bytes = b"x\n", **kw: object
) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data) if kw.get("type", tarfile.REGTYPE) == tarfile.REGTYPE else 0
    for key, value in kw.items():
        setattr(info, key, value)
    tar.addfile(info, io.BytesIO(data) if info.size else None)


def hostile(tmp_path: Path, *members: tuple[str, dict[str, object]]) -> Path:
    """A run.tar.gz holding *members* (name, TarInfo fields) after a manifest."""
    path = tmp_path / "run.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        _member(tar, "MANIFEST.sha256", b"")
        for name, fields in members:
            _member(tar, name, **fields)
    return path


def test_a_run_archive_unpacks_to_the_files_it_was_made_from(tmp_path: Path) -> None:
    """Every archived file comes back byte for byte; the manifest is not written."""
    run_dir = tmp_path / "runs" / "fw" / "r1"
    (run_dir / "logs" / "step_001").mkdir(parents=True)
    (run_dir / "logs" / "run.log").write_bytes(b'{"event":"run_start"}\n')
    (run_dir / "logs" / "step_001" / "adapter.log").write_bytes(b"{}\n" * 3)
    os.symlink("run.log", run_dir / "logs" / "latest.log")
    archive = Archiver(run_dir).create_archive().path
    dest = tmp_path / "out"
    dest.mkdir()

    count = extract_archive(archive, dest)

    assert count == 2
    assert files_under(dest) == {
        "logs/latest.log",
        "logs/run.log",
        "logs/step_001/adapter.log",
    }
    assert (dest / "logs/step_001/adapter.log").read_bytes() == b"{}\n" * 3
    assert (dest / "logs" / "latest.log").is_symlink()
    assert os.readlink(dest / "logs" / "latest.log") == "run.log"


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([("../evil.log", {})], "'../evil.log' would land outside"),
        ([("/etc/evil.log", {})], "'/etc/evil.log' would land outside"),
        (
            [
                ("logs", {"type": tarfile.SYMTYPE, "linkname": "/tmp"}),
                ("logs/evil.log", {}),
            ],
            "'logs/evil.log' would land outside",
        ),
        ([("logs/fifo", {"type": tarfile.FIFOTYPE})], "'logs/fifo' is of tar type"),
    ],
)
def test_a_member_that_would_escape_is_refused(
    tmp_path: Path, members: list[tuple[str, dict[str, object]]], message: str
) -> None:
    """Unsafe names, members beneath a symlink and special files raise; none lands."""
    archive = hostile(tmp_path, *members)
    dest = tmp_path / "out"
    dest.mkdir()

    with pytest.raises(ArchiveIntegrityError, match=message):
        extract_archive(archive, dest)

    assert not (tmp_path / "evil.log").exists()
    assert "evil.log" not in {p.name for p in dest.rglob("*") if p.is_file()}


def test_a_damaged_archive_is_an_integrity_error(tmp_path: Path) -> None:
    """A truncated gzip stream raises ArchiveIntegrityError naming the archive."""
    archive = hostile(tmp_path, *[(f"logs/{n}.log", {}) for n in range(50)])
    archive.write_bytes(archive.read_bytes()[:40])
    dest = tmp_path / "out"
    dest.mkdir()

    with pytest.raises(ArchiveIntegrityError, match="cannot be unpacked"):
        extract_archive(archive, dest)
