"""A damaged, altered or half-written archive is always caught, with a clear message."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import random
import signal
import subprocess
import sys
import tarfile
import textwrap
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import orjson
import pytest

from runlog import (
    ArchiveInfo,
    ArchiveIntegrityError,
    Archiver,
    verify_archive,
)
from runlog.archive import _codecs, describe_archive
from tests.reliability._checks import add_figures

pytestmark = pytest.mark.reliability

FILES = {
    "run.json": orjson.dumps({"status": "success", "ended_at": "2025-01-01T00:00:00Z"}),
    "run.log": b'{"event":"run_start"}\n' * 200,
    "step_001/adapter.log": b'{"event":"api_call","latency_ms":12}\n' * 3000,
    "step_001/orchestrator.log": b'{"event":"step_start"}\n',
    "step_002/metrics.log": bytes(random.Random(3).randbytes(40_000)),
}


def make_run(run_dir: Path) -> Path:
    """A finished run with FILES under run_dir/logs."""
    for name, data in FILES.items():
        path = run_dir / "logs" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return run_dir


@pytest.fixture(params=["gz", "zst"])
def archived(request: pytest.FixtureRequest, tmp_path: Path) -> ArchiveInfo:
    """An intact archive of a small run, in each format."""
    run_dir = make_run(tmp_path / "fw" / "r1")
    return Archiver(run_dir).create_archive(format=request.param)


def write_sidecar(info_path: Path) -> str:
    """Rewrite the sidecar to match the file as it is now; return the hash."""
    digest = hashlib.sha256(info_path.read_bytes()).hexdigest()
    Path(f"{info_path}.sha256").write_text(f"{digest}  {info_path.name}\n")
    return digest


def repack(
    source: Path,
    target: Path,
    change: dict[str, bytes | None] | None = None,
    extra: list[tuple[tarfile.TarInfo, bytes]] | None = None,
) -> None:
    """Re-write *source* as a gzip tar at *target*, changing member data."""
    change = change or {}
    out = io.BytesIO()
    with (
        _codecs.open_reader(source) as stream,
        tarfile.open(fileobj=stream, mode="r|") as old,
        tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as new,
    ):
        for member in old:
            reader = old.extractfile(member) if member.isreg() else None
            data = reader.read() if reader is not None else b""
            if member.name in change:
                replacement = change[member.name]
                if replacement is None:
                    continue
                data = replacement
                member.size = len(data)
            new.addfile(member, io.BytesIO(data) if member.isreg() else None)
        for member, data in extra or []:
            new.addfile(member, io.BytesIO(data))
    target.write_bytes(gzip.compress(out.getvalue(), mtime=0))


def test_each_of_20_flipped_bytes_is_detected(archived: ArchiveInfo) -> None:
    """Flipping any one byte (20 random offsets) fails verify with a hash mismatch."""
    original = archived.path.read_bytes()
    rng = random.Random(20251020)
    for offset in rng.sample(range(len(original)), 20):
        damaged = bytearray(original)
        damaged[offset] ^= 1 << rng.randrange(8)
        archived.path.write_bytes(bytes(damaged))
        with pytest.raises(ArchiveIntegrityError) as caught:
            verify_archive(archived.path)
        message = str(caught.value)
        assert f"SHA-256 expected {archived.sha256!r} (its sidecar" in message, offset
        assert "actual '" in message
    archived.path.write_bytes(original)
    assert verify_archive(archived.path) == archived


@pytest.mark.parametrize("keep", [0, 10, 0.5, -1])
def test_truncated_archive_is_detected(archived: ArchiveInfo, keep: float) -> None:
    """An archive cut short anywhere fails verify, also against expected_sha256."""
    original = archived.path.read_bytes()
    size = int(len(original) * keep) if isinstance(keep, float) else keep
    archived.path.write_bytes(original[:size])

    with pytest.raises(ArchiveIntegrityError, match="SHA-256 expected"):
        verify_archive(archived.path)
    write_sidecar(archived.path)  # the sidecar vouches; the content cannot
    with pytest.raises(ArchiveIntegrityError, match=r"cut short|corrupt|empty"):
        verify_archive(archived.path)


def test_zst_cut_in_its_last_frame_is_detected(tmp_path: Path) -> None:
    """A .tar.zst cut anywhere in its last 64 bytes fails even with a new sidecar."""
    info = Archiver(make_run(tmp_path / "fw" / "r1")).create_archive(format="zst")
    original = info.path.read_bytes()
    for cut in range(1, 65):
        info.path.write_bytes(original[:-cut])
        write_sidecar(info.path)
        with pytest.raises(ArchiveIntegrityError, match=r"zst data is corrupt or cut"):
            verify_archive(info.path)


def test_appended_bytes_are_detected(archived: ArchiveInfo) -> None:
    """Bytes appended to an archive fail verify, even with a matching sidecar."""
    with archived.path.open("ab") as handle:
        handle.write(b"\0" * 10 + b"appended")

    with pytest.raises(ArchiveIntegrityError, match="SHA-256 expected"):
        verify_archive(archived.path)
    write_sidecar(archived.path)
    with pytest.raises(ArchiveIntegrityError, match=r"corrupt|cut short|after"):
        verify_archive(archived.path)


def test_replaced_member_is_named_with_both_hashes(tmp_path: Path) -> None:
    """A member whose data was replaced is named, with manifest and actual hashes."""
    run_dir = make_run(tmp_path / "fw" / "r1")
    info = Archiver(run_dir).create_archive()
    forged = b'{"event":"api_call","latency_ms":1}\n'
    repack(info.path, info.path, {"logs/step_001/adapter.log": forged})

    with pytest.raises(ArchiveIntegrityError) as caught:
        verify_archive(info.path)
    message = str(caught.value)
    assert "(its sidecar run.tar.gz.sha256)" in message
    assert "member 'logs/step_001/adapter.log'" in message  # the detail, too
    write_sidecar(info.path)
    with pytest.raises(ArchiveIntegrityError) as caught:
        verify_archive(info.path)
    want = hashlib.sha256(FILES["step_001/adapter.log"]).hexdigest()
    assert str(caught.value) == (
        f"{str(info.path)!r}: member 'logs/step_001/adapter.log': SHA-256 expected "
        f"{want!r} (MANIFEST.sha256), actual {hashlib.sha256(forged).hexdigest()!r}"
    )


def test_summary_hash_catches_a_rewritten_sidecar(tmp_path: Path) -> None:
    """Archive and sidecar both replaced: the summary's recorded hash catches it."""
    run_dir = make_run(tmp_path / "fw" / "r1")
    info = Archiver(run_dir).create_archive()
    (run_dir / "logs_summary.txt").write_text(
        f"Archive\n  File:    run.tar.gz\n  SHA-256: {info.sha256}\n"
    )
    repack(info.path, info.path, {"logs/run.log": b"nothing happened\n"})
    forged = write_sidecar(info.path)

    with pytest.raises(ArchiveIntegrityError) as caught:
        verify_archive(info.path)
    assert str(caught.value).startswith(
        f"{str(info.path)!r}: SHA-256 expected {info.sha256!r} (logs_summary.txt), "
        f"actual {forged!r}"
    )


def _member(
    name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE
) -> tuple[tarfile.TarInfo, bytes]:
    member = tarfile.TarInfo(name)
    member.type = kind
    member.size = len(data)
    return member, data


@pytest.mark.parametrize(
    ("change", "extra", "message"),
    [
        (
            {"logs/run.log": None},
            [],
            "'logs/run.log' is listed in MANIFEST.sha256 but missing",
        ),
        ({}, [_member("logs/new.log", b"x")], "member 'logs/new.log' is not listed"),
        ({}, [_member("../../evil", b"x")], "member '../../evil' has an unsafe name"),
        ({}, [_member("/etc/evil", b"x")], "member '/etc/evil' has an unsafe name"),
        ({}, [_member("logs/run.log", b"x")], "member 'logs/run.log' appears twice"),
        ({}, [_member("logs/dev", kind=tarfile.CHRTYPE)], "'logs/dev' is of tar type"),
        ({"MANIFEST.sha256": b"nonsense\n"}, [], "line 1 is not in sha256sum format"),
        ({"MANIFEST.sha256": b""}, [], "member 'logs/run.json' is not listed"),
    ],
)
def test_member_level_forgeries_are_named(
    archived: ArchiveInfo,
    change: dict[str, bytes | None],
    extra: list[tuple[tarfile.TarInfo, bytes]],
    message: str,
) -> None:
    """Missing, unlisted, unsafe, duplicate or special members are each named."""
    target = archived.path.with_name("run.tar.gz")
    repack(archived.path, target, change, extra)
    write_sidecar(target)
    before = set(archived.path.parent.parent.rglob("*"))

    with pytest.raises(ArchiveIntegrityError, match=message):
        verify_archive(target)
    assert set(archived.path.parent.parent.rglob("*")) == before  # nothing extracted


def test_manifest_not_first_is_detected(tmp_path: Path) -> None:
    """An archive whose first member is not MANIFEST.sha256 fails, naming it."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        member, data = _member("logs/run.log", b"x")
        tar.addfile(member, io.BytesIO(data))
    path = tmp_path / "run.tar.gz"
    path.write_bytes(gzip.compress(out.getvalue()))
    write_sidecar(path)

    with pytest.raises(ArchiveIntegrityError, match=r"first member is 'logs/run\.log'"):
        verify_archive(path)
    with pytest.raises(ArchiveIntegrityError, match="cannot read its manifest"):
        describe_archive(path)


def test_killed_mid_write_leaves_no_archive(tmp_path: Path) -> None:
    """A process killed while archiving leaves no run.tar.gz; the next run cleans up."""
    run_dir = make_run(tmp_path / "fw" / "r1")
    (run_dir / "logs" / "big.log").write_bytes(random.Random(1).randbytes(8 << 20))
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        from runlog import Archiver
        def stop(done_bytes, done_files):
            if done_bytes > 2_000_000:
                sys.stdout.write("mid-write\\n"); sys.stdout.flush()
                os.kill(os.getpid(), signal.SIGKILL)
        Archiver({str(run_dir)!r}).create_archive(progress=stop)
        """
    )
    child = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )

    assert (child.returncode, child.stdout) == (-signal.SIGKILL, "mid-write\n")
    leftovers = sorted(p.name for p in run_dir.iterdir())
    assert leftovers[-1] == "logs"
    assert all(name.startswith(".run.tar.gz.") for name in leftovers[:-1])
    info = Archiver(run_dir).create_archive()
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "logs",
        "run.tar.gz",
        "run.tar.gz.sha256",
    ]
    assert verify_archive(info.path) == info
    assert os.path.getsize(info.path) == info.size_bytes


def test_a_second_archiver_waits_for_the_first(tmp_path: Path) -> None:
    """While one archiver writes, another of the same run waits, then replaces
    the archive whole: the sidecar always matches the archive beside it."""
    run_dir = make_run(tmp_path / "fw" / "r1")
    with ThreadPoolExecutor(1) as pool:
        second: list[Future[ArchiveInfo]] = []

        def start_second(done_bytes: int, done_files: int) -> None:
            if not second:
                second.append(pool.submit(Archiver(run_dir).create_archive, level=1))
                time.sleep(0.5)  # ample for a run this small, were it not blocked
                assert not second[0].done()

        first = Archiver(run_dir).create_archive(level=9, progress=start_second)
        last = second[0].result(timeout=30)

    assert first.sha256 != last.sha256
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "logs",
        "run.tar.gz",
        "run.tar.gz.sha256",
    ]
    assert verify_archive(run_dir / "run.tar.gz") == last


def test_concurrent_archivers_leave_one_verified_archive(tmp_path: Path) -> None:
    """5 archivers at once (processes, threads), each at its own level: one
    archive is left, with its own sidecar, and it verifies."""
    run_dir = make_run(tmp_path / "fw" / "r1")
    (run_dir / "logs" / "big.log").write_bytes(
        b"".join(b'{"event":"api_call","n":%d}\n' % n for n in range(200_000))
    )

    def archive(level: int) -> str:
        return Archiver(run_dir).create_archive(level=level).sha256

    children = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                f"from runlog import Archiver; "
                f"Archiver({str(run_dir)!r}).create_archive(level={level})",
            ]
        )
        for level in (1, 4, 9)
    ]
    with ThreadPoolExecutor(2) as pool:
        hashes = set(pool.map(archive, (2, 6)))

    assert [child.wait() for child in children] == [0, 0, 0]
    assert len(hashes) == 2
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "logs",
        "run.tar.gz",
        "run.tar.gz.sha256",
    ]
    verify_archive(run_dir / "run.tar.gz")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda tar: tar + b"junk" + bytes(10_000), "data follows the end-of-archive"),
        (lambda tar: tar[: -(-len(tar.rstrip(b"\0")) // 512) * 512], "cut short"),
        (lambda tar: tar.replace(b"  logs/run.json\n", b" logs/run.json\n"), "line"),
    ],
)
def test_damaged_tar_inside_a_sound_gzip_is_named(
    tmp_path: Path, change: Callable[[bytes], bytes], message: str
) -> None:
    """Trailing data, a missing end marker or a bad manifest line inside
    well-formed gzip fail verify even with a matching sidecar."""
    info = Archiver(make_run(tmp_path / "fw" / "r1")).create_archive()
    tar = gzip.decompress(info.path.read_bytes())
    info.path.write_bytes(gzip.compress(change(tar), mtime=0))
    write_sidecar(info.path)

    with pytest.raises(ArchiveIntegrityError, match=message):
        verify_archive(info.path)


def _contents(path: Path) -> list[tuple[str, bytes, bytes]]:
    """Every member's name, type and data, read in place."""
    found = []
    with (
        _codecs.open_reader(path) as stream,
        tarfile.open(fileobj=stream, mode="r|") as tar,
    ):
        for member in tar:
            handle = tar.extractfile(member) if member.isreg() else None
            found.append((member.name, member.type, handle.read() if handle else b""))
    return found


def _flips_with_a_forged_sidecar(archived: ArchiveInfo, flips: int) -> dict[str, int]:
    original = archived.path.read_bytes()
    contents = _contents(archived.path)
    rng = random.Random(f"forged-{archived.path.name}")
    found = {"flips": 0, "detected": 0, "harmless": 0}
    for offset in rng.sample(range(len(original)), min(flips, len(original))):
        damaged = bytearray(original)
        damaged[offset] ^= 1 << rng.randrange(8)
        archived.path.write_bytes(bytes(damaged))
        write_sidecar(archived.path)  # the forger re-signs the archive
        found["flips"] += 1
        try:
            verify_archive(archived.path)
        except ArchiveIntegrityError:
            found["detected"] += 1
            continue
        # accepted: then no member (name, type or data) may have changed
        # (e.g. a flip in the gzip header's OS byte or in tar padding)
        assert _contents(archived.path) == contents, f"undetected at {offset}"
        found["harmless"] += 1
    archived.path.write_bytes(original)
    write_sidecar(archived.path)
    return found


def test_flips_with_a_forged_sidecar_never_change_a_log_unnoticed(
    archived: ArchiveInfo,
) -> None:
    """
    60 random bit flips, each with the sidecar rewritten to match: verify
    fails, or the flip changed no member's name, type or data.
    """
    found = _flips_with_a_forged_sidecar(archived, 60)
    assert found["detected"] >= found["flips"] * 0.8
    add_figures("archive.tamper", **found)


@pytest.mark.stress
def test_flips_with_a_forged_sidecar_never_change_a_log_unnoticed_long(
    archived: ArchiveInfo,
) -> None:
    """The long version: 1,000 bit flips per format."""
    found = _flips_with_a_forged_sidecar(archived, 1000)
    assert found["detected"] >= found["flips"] * 0.8
    add_figures("archive.tamper", **found)
