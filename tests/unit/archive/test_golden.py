"""Archives of a fixed run are byte-identical to the ones recorded here."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import pytest
import zstandard

from runlog import Archiver, verify_archive

# Recorded with zlib 1.2.13 and libzstd 1.5.7; a codec library that compresses
# differently changes these bytes, and that is a change users would see.
GOLDEN = {
    "gz": ("31abb2886afab6d65b68d499361396a6bf36bcdacdb0f683bb210a885e82f0b7", 669),
    "zst": ("1027e32465f7a1bc1ef49dafbb576d9b1389c38988aeb5d03354aab4f10dcb2a", 574),
}


def _fixed_run(root: Path) -> Path:
    run_dir = root / "runs" / "fw" / "r1"
    logs = run_dir / "logs"
    (logs / "step_001").mkdir(parents=True)
    (logs / "run.json").write_text(
        '{"run_id":"r1","framework":"fw","status":"success"}\n'
    )
    (logs / "run.log").write_bytes(
        b'{"ts":"2025-01-01T00:00:00.000000Z","level":"info","event":"run_start"}\n'
    )
    (logs / "step_001" / "adapter.log").write_bytes(b'{"event":"x"}\n' * 1000)
    (logs / "step_001" / "empty.log").write_bytes(b"")
    os.symlink("run.log", logs / "link.log")
    for path in logs.rglob("*"):
        os.utime(path, (1_700_000_000, 1_700_000_000), follow_symlinks=False)
    return run_dir


@pytest.mark.parametrize("fmt", ["gz", "zst"])
def test_archive_bytes_match_the_recorded_golden_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    """The same files give the same archive bytes as before: hash and size."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    previous = os.umask(0o077)  # modes are normalized whatever the umask
    try:
        info = Archiver(_fixed_run(tmp_path)).create_archive(format=fmt)
    finally:
        os.umask(previous)
    codecs = f"zlib {zlib.ZLIB_RUNTIME_VERSION}, libzstd {zstandard.ZSTD_VERSION}"
    assert (info.sha256, info.size_bytes) == GOLDEN[fmt], codecs
    assert info.file_count == 4
    assert verify_archive(info.path).sha256 == GOLDEN[fmt][0]
