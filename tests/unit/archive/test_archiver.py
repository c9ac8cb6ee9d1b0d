"""Archiver, verify_archive, describe_archive, find_archive and the codecs."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import socket
import subprocess
import tarfile
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from runlog import (
    ArchiveInfo,
    ArchiveIntegrityError,
    Archiver,
    ConfigurationError,
    LogContext,
    RunlogError,
    verify_archive,
)
from runlog.archive import _codecs, describe_archive, find_archive, locate_archive
from runlog.run import archive_run

ENDED_AT = "2025-03-04T05:06:07.123456Z"
ENDED_TS = int(datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC).timestamp())

FILES = {
    "run.json": None,  # written by make_run
    "run.log": b'{"event":"run_start"}\n',
    "combined.log": b"2025 info [run] run_start\n",
    "step_001/adapter.log": b'{"event":"api_call","n":1}\n' * 50,
    "step_001/orchestrator.log": b'{"event":"step_start"}\n',
    "step_002/adapter.log": b"x" * 300_000,
    "step_002/validator.log": b"",
    "step_010/metrics.log": os.urandom(2_500_000),  # more than one 1 MiB chunk
}


def make_run(
    run_dir: Path,
    *,
    ended_at: str | None = ENDED_AT,
    order: list[str] | None = None,
    status: str = "success",
) -> Path:
    """A finished run under *run_dir*: logs/ with FILES, files created in *order*."""
    logs = run_dir / "logs"
    logs.mkdir(parents=True)
    info = {"run_id": "r1", "framework": "fw", "status": status, "ended_at": ended_at}
    contents = dict(FILES, **{"run.json": orjson.dumps(info)})
    for name in order or list(contents):
        path = logs / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(contents[name])
    return run_dir


def source_files(run_dir: Path) -> dict[str, bytes]:
    """Archive name -> bytes of every regular file under run_dir/logs."""
    logs = run_dir / "logs"
    return {
        f"logs/{p.relative_to(logs).as_posix()}": p.read_bytes()
        for p in sorted(logs.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def read_members(path: Path) -> list[tarfile.TarInfo]:
    """Every member of the archive at *path*, read with the stdlib."""
    with (
        _codecs.open_reader(path) as stream,
        tarfile.open(fileobj=stream, mode="r|") as tar,
    ):
        return list(tar)


def read_contents(path: Path) -> dict[str, bytes]:
    """Name -> data of every regular member, read in place (nothing extracted)."""
    out: dict[str, bytes] = {}
    with (
        _codecs.open_reader(path) as stream,
        tarfile.open(fileobj=stream, mode="r|") as tar,
    ):
        for member in tar:
            data = tar.extractfile(member) if member.isreg() else None
            if data is not None:
                out[member.name] = data.read()
    return out


def sha(data: bytes) -> str:
    """Hex SHA-256 of *data*."""
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A finished run at tmp_path/runs/fw/r1."""
    return make_run(tmp_path / "runs" / "fw" / "r1")


@pytest.mark.parametrize(
    ("fmt", "name"), [("gz", "run.tar.gz"), ("zst", "run.tar.zst")]
)
def test_round_trip_holds_every_file_and_a_manifest(
    run_dir: Path, fmt: str, name: str
) -> None:
    """The archive holds MANIFEST.sha256 first, then every file byte for byte."""
    info = Archiver(run_dir).create_archive(format=fmt)

    path = run_dir / name
    files = source_files(run_dir)
    assert info == ArchiveInfo(
        path, sha(path.read_bytes()), path.stat().st_size, len(files)
    )
    assert {p.name for p in run_dir.iterdir()} == {"logs", name, name + ".sha256"}
    assert (run_dir / (name + ".sha256")).read_text() == f"{info.sha256}  {name}\n"
    members = read_members(path)
    assert [m.name for m in members] == [
        "MANIFEST.sha256",
        "logs",
        "logs/combined.log",
        "logs/run.json",
        "logs/run.log",
        "logs/step_001",
        "logs/step_001/adapter.log",
        "logs/step_001/orchestrator.log",
        "logs/step_002",
        "logs/step_002/adapter.log",
        "logs/step_002/validator.log",
        "logs/step_010",
        "logs/step_010/metrics.log",
    ]
    contents = read_contents(path)
    manifest = contents.pop("MANIFEST.sha256")
    assert contents == files
    assert manifest == b"".join(
        f"{sha(data)}  {member}\n".encode() for member, data in files.items()
    )


@pytest.mark.parametrize("fmt", ["gz", "zst"])
def test_members_are_normalized(tmp_path: Path, fmt: str) -> None:
    """uid/gid 0, no owner names, fixed modes, and every mtime = run.json ended_at."""
    run_dir = make_run(tmp_path / "run")
    tool = run_dir / "logs" / "step_001" / "tool.sh"
    tool.write_bytes(b"#!/bin/sh\n")
    tool.chmod(0o700)
    (run_dir / "logs" / "run.log").chmod(0o600)
    Archiver(run_dir).create_archive(format=fmt)

    members = read_members(run_dir / f"run.tar.{fmt}")
    assert {m.mtime for m in members} == {ENDED_TS}
    assert {(m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, "", "")}
    modes = {m.name: m.mode for m in members}
    assert modes["logs"] == modes["logs/step_001"] == 0o755
    assert modes["logs/step_001/tool.sh"] == 0o755
    assert modes["logs/run.log"] == modes["MANIFEST.sha256"] == 0o644


def test_gzip_header_has_no_name_and_no_time(run_dir: Path) -> None:
    """The gzip header carries mtime 0 and no file name."""
    Archiver(run_dir).create_archive()
    head = (run_dir / "run.tar.gz").read_bytes()[:10]

    assert head[:3] == b"\x1f\x8b\x08"
    assert head[3] == 0  # no FNAME, FEXTRA or FCOMMENT
    assert head[4:8] == b"\0\0\0\0"


@pytest.mark.parametrize("fmt", ["gz", "zst"])
def test_archiving_twice_gives_identical_bytes(run_dir: Path, fmt: str) -> None:
    """The same files archived twice give byte-identical archives and hashes."""
    first = Archiver(run_dir).create_archive(format=fmt)
    first_bytes = first.path.read_bytes()
    (run_dir / "logs" / "run.log").touch()  # a newer mtime must not matter
    second = Archiver(run_dir).create_archive(format=fmt)

    assert second.path.read_bytes() == first_bytes
    assert second.sha256 == first.sha256


@pytest.mark.parametrize("fmt", ["gz", "zst"])
def test_creation_order_and_mtimes_do_not_change_the_bytes(
    tmp_path: Path, fmt: str
) -> None:
    """Two runs with the same files, made in different orders, archive identically."""
    names = list(FILES)
    one = make_run(tmp_path / "a" / "r1", order=names)
    two = make_run(tmp_path / "b" / "r1", order=names[::-1])
    os.utime(two / "logs" / "run.log", (1, 1))

    assert (
        Archiver(one).create_archive(format=fmt).path.read_bytes()
        == Archiver(two).create_archive(format=fmt).path.read_bytes()
    )


def test_zstd_bytes_do_not_depend_on_the_thread_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """zst archives are identical whether 1 or 4 compression threads run."""
    outputs = []
    for threads in (1, 4):
        monkeypatch.setattr(_codecs, "compression_threads", lambda t=threads: t)
        run_dir = make_run(tmp_path / str(threads))
        outputs.append(Archiver(run_dir).create_archive(format="zst").sha256)

    assert outputs[0] == outputs[1]


def test_source_date_epoch_sets_mtimes_without_an_end_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without ended_at, every mtime is SOURCE_DATE_EPOCH."""
    run_dir = make_run(tmp_path / "run", ended_at=None)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    Archiver(run_dir).create_archive()

    assert {m.mtime for m in read_members(run_dir / "run.tar.gz")} == {1700000000}


def test_bad_source_date_epoch_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SOURCE_DATE_EPOCH that is not a number is an error naming it."""
    run_dir = make_run(tmp_path / "run", ended_at=None)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")

    with pytest.raises(ConfigurationError, match="'yesterday'"):
        Archiver(run_dir).create_archive()
    assert sorted(p.name for p in run_dir.iterdir()) == ["logs"]


def test_newest_mtime_is_used_without_end_time_or_epoch(tmp_path: Path) -> None:
    """Without ended_at or SOURCE_DATE_EPOCH, mtimes are the newest file's."""
    run_dir = make_run(tmp_path / "run", ended_at=None)
    for path in (run_dir / "logs").rglob("*"):
        os.utime(path, (1000, 1000))
    os.utime(run_dir / "logs" / "step_001" / "adapter.log", (5000, 5000))
    Archiver(run_dir).create_archive()

    assert {m.mtime for m in read_members(run_dir / "run.tar.gz")} == {5000}


def test_symlink_outside_the_run_is_stored_as_a_link(
    run_dir: Path, tmp_path: Path
) -> None:
    """A symlink to a file outside the run is archived as a link, not its target."""
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"TOP-SECRET-CONTENT")
    outside_dir = tmp_path / "elsewhere"
    outside_dir.mkdir()
    (outside_dir / "big.log").write_bytes(b"NOT-IN-THE-RUN")
    (run_dir / "logs" / "outside").symlink_to(secret)
    (run_dir / "logs" / "linked_dir").symlink_to(outside_dir)
    info = Archiver(run_dir).create_archive()

    members = {m.name: m for m in read_members(info.path)}
    assert members["logs/outside"].issym()
    assert members["logs/outside"].linkname == str(secret)
    assert members["logs/linked_dir"].issym()
    assert "logs/linked_dir/big.log" not in members
    raw = gzip.decompress(info.path.read_bytes())
    assert b"TOP-SECRET-CONTENT" not in raw
    assert b"NOT-IN-THE-RUN" not in raw
    assert verify_archive(info.path).file_count == len(source_files(run_dir))


def test_fifo_is_refused_before_anything_is_written(run_dir: Path) -> None:
    """A named pipe in logs/ is refused with an error naming it; nothing is left."""
    fifo = run_dir / "logs" / "step_001" / "pipe"
    os.mkfifo(fifo)

    with pytest.raises(RunlogError, match=r"pipe'.*FIFO"):
        Archiver(run_dir).create_archive()
    assert sorted(p.name for p in run_dir.iterdir()) == ["logs"]


def test_missing_logs_is_an_error(tmp_path: Path) -> None:
    """A run without logs/ has nothing to archive: an error naming the path."""
    (tmp_path / "run").mkdir()

    with pytest.raises(RunlogError, match=r"logs' does not exist"):
        Archiver(tmp_path / "run").create_archive()
    assert list((tmp_path / "run").iterdir()) == []
    with pytest.raises(RunlogError, match=r"run directory '.*nope' does not exist"):
        Archiver(tmp_path / "nope").create_archive()
    assert not (tmp_path / "nope").exists()


def test_failure_mid_write_leaves_no_archive_and_no_temp(run_dir: Path) -> None:
    """An interrupt while data is being written leaves no archive, sidecar or temp."""

    def interrupt(done_bytes: int, done_files: int) -> None:
        if done_bytes > 1_000_000:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Archiver(run_dir).create_archive(progress=interrupt)
    assert sorted(p.name for p in run_dir.iterdir()) == ["logs"]


def test_failure_mid_write_keeps_the_previous_archive(run_dir: Path) -> None:
    """A failed re-archive leaves the previous archive and its sidecar untouched."""
    old = Archiver(run_dir).create_archive()
    old_bytes = old.path.read_bytes()

    def fail(done_bytes: int, done_files: int) -> None:
        if done_files == 3:
            raise RuntimeError("disk went away")

    with pytest.raises(RuntimeError, match="disk went away"):
        Archiver(run_dir).create_archive(progress=fail)
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "logs",
        "run.tar.gz",
        "run.tar.gz.sha256",
    ]
    assert old.path.read_bytes() == old_bytes
    assert verify_archive(old.path) == old


def test_file_cut_short_while_archiving_is_an_error(run_dir: Path) -> None:
    """A file truncated after it was hashed aborts the archive, naming the file."""
    victim = run_dir / "logs" / "step_010" / "metrics.log"

    def truncate(done_bytes: int, done_files: int) -> None:
        if done_files == 1:
            victim.write_bytes(b"short")

    with pytest.raises(RunlogError, match=r"metrics.log'.*changed while"):
        Archiver(run_dir).create_archive(progress=truncate)
    assert sorted(p.name for p in run_dir.iterdir()) == ["logs"]


def test_file_rewritten_while_archiving_fails_the_read_back(run_dir: Path) -> None:
    """A file rewritten in place (same size) after hashing fails the read-back."""
    victim = run_dir / "logs" / "step_002" / "adapter.log"

    def rewrite(done_bytes: int, done_files: int) -> None:
        if done_files == 1:
            with victim.open("r+b") as handle:
                handle.write(b"y")

    with pytest.raises(ArchiveIntegrityError, match=r"step_002/adapter.log'"):
        Archiver(run_dir).create_archive(progress=rewrite)
    assert sorted(p.name for p in run_dir.iterdir()) == ["logs"]


def test_progress_reports_bytes_and_files(run_dir: Path) -> None:
    """progress gets growing byte and file counts, ending at the totals."""
    calls: list[tuple[int, int]] = []
    Archiver(run_dir).create_archive(progress=lambda b, f: calls.append((b, f)))

    files = source_files(run_dir)
    assert calls[-1] == (sum(len(d) for d in files.values()), len(files))
    assert calls == sorted(calls)


def test_open_run_is_refused_unless_forced(tmp_path: Path) -> None:
    """A run whose run.json says running with a live pid is refused; force archives."""
    run_dir = make_run(tmp_path / "run", ended_at=None, status="running")
    info = orjson.loads((run_dir / "logs" / "run.json").read_bytes())
    info.update(
        pid=os.getpid(),
        host=socket.gethostname(),
        heartbeat_at=datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        heartbeat_interval_s=30.0,
    )
    (run_dir / "logs" / "run.json").write_bytes(orjson.dumps(info))

    with pytest.raises(RunlogError, match="still running"):
        Archiver(run_dir).create_archive()
    assert sorted(p.name for p in run_dir.iterdir()) == ["logs"]
    forced = Archiver(run_dir).create_archive(force=True)
    assert verify_archive(forced.path) == forced


def test_crashed_run_is_archived(tmp_path: Path) -> None:
    """A run.json left at running by a dead process does not block archiving."""
    run_dir = make_run(tmp_path / "run", ended_at=None, status="running")
    # above Linux's largest pid (2**22), so never a live process
    info = {"status": "running", "pid": 2**22 + 7, "host": socket.gethostname()}
    (run_dir / "logs" / "run.json").write_bytes(orjson.dumps(info))

    assert Archiver(run_dir).create_archive().file_count == len(FILES)


def test_run_this_process_logs_into_is_refused(tmp_path: Path) -> None:
    """While this process's run context writes to logs/, archiving is refused."""
    run_dir = make_run(tmp_path / "fw" / "r1")
    LogContext.get_instance().set_run_context("r1", "fw", run_dir / "logs")

    with pytest.raises(RunlogError, match="clear_run_context"):
        Archiver(run_dir).create_archive()
    LogContext.get_instance().clear_run_context()
    assert Archiver(run_dir).create_archive().path.is_file()


def test_extra_roots_are_stored_under_their_names(
    run_dir: Path, tmp_path: Path
) -> None:
    """workspace_dir goes under workspace/, metrics_file at the top by its name."""
    workspace = tmp_path / "ws"
    (workspace / "src").mkdir(parents=True)
    (workspace / "src" / "main.py").write_bytes(b"print(1)\n")
    metrics = tmp_path / "metrics.json"
    metrics.write_bytes(b'{"accuracy": 1}')
    info = Archiver(run_dir).create_archive(
        workspace_dir=workspace, metrics_file=metrics
    )

    contents = read_contents(info.path)
    assert contents["workspace/src/main.py"] == b"print(1)\n"
    assert contents["metrics.json"] == b'{"accuracy": 1}'
    assert info.file_count == len(source_files(run_dir)) + 2
    assert verify_archive(info.path) == info


def test_workspace_holding_the_run_skips_the_archive_itself(run_dir: Path) -> None:
    """A workspace that contains the run dir does not archive the archive."""
    Archiver(run_dir).create_archive()
    info = Archiver(run_dir).create_archive(workspace_dir=run_dir)

    names = {m.name for m in read_members(info.path)}
    assert "workspace/logs/run.log" in names
    assert not any(name.startswith("workspace/run.tar") for name in names)
    assert not any(name.endswith(".tmp") for name in names)


@pytest.mark.parametrize(
    "logs", [{"../up": "x"}, {"/abs": "x"}, {"MANIFEST.sha256": "x"}, {"a//b": "x"}]
)
def test_bad_archive_names_are_refused(run_dir: Path, logs: dict[str, str]) -> None:
    """Archive names must be safe relative paths; the bad one is named."""
    with pytest.raises(ConfigurationError, match=repr(next(iter(logs)))):
        Archiver(run_dir).create_archive(logs=logs)


def test_overlapping_archive_names_are_refused(run_dir: Path) -> None:
    """Two roots where one would hold the other are refused."""
    logs = run_dir / "logs"
    with pytest.raises(ConfigurationError, match="overlap"):
        Archiver(run_dir).create_archive(logs={"a": logs, "a/b": logs})
    with pytest.raises(ConfigurationError, match="twice"):
        Archiver(run_dir).create_archive(logs={"workspace": logs}, workspace_dir=logs)


@pytest.mark.parametrize(
    ("fmt", "level"), [("gz", 0), ("gz", 10), ("zst", 23), ("x", 1)]
)
def test_bad_format_or_level_is_refused(run_dir: Path, fmt: str, level: int) -> None:
    """An unknown format or an out-of-range level is a ConfigurationError."""
    with pytest.raises(ConfigurationError, match=repr(fmt if fmt == "x" else level)):
        Archiver(run_dir).create_archive(format=fmt, level=level)
    assert sorted(p.name for p in run_dir.iterdir()) == ["logs"]


def test_new_format_replaces_the_other_archive(run_dir: Path) -> None:
    """Archiving as zst after gz leaves only run.tar.zst and its sidecar."""
    Archiver(run_dir).create_archive(format="gz")
    Archiver(run_dir).create_archive(format="zst")

    assert sorted(p.name for p in run_dir.iterdir()) == [
        "logs",
        "run.tar.zst",
        "run.tar.zst.sha256",
    ]


def test_stale_temp_of_a_dead_process_is_removed(run_dir: Path) -> None:
    """A temp file left by a dead process is removed by the next archive."""
    stale = run_dir / ".run.tar.gz.4194311.0badc0de.tmp"
    stale.write_bytes(b"half an archive")
    Archiver(run_dir).create_archive()

    assert not stale.exists()


@pytest.mark.parametrize("fmt", ["gz", "zst"])
def test_verify_returns_the_archive_info(run_dir: Path, fmt: str) -> None:
    """verify_archive of an intact archive returns what create_archive returned."""
    info = Archiver(run_dir).create_archive(format=fmt)

    assert verify_archive(info.path) == info
    assert verify_archive(str(info.path), info.sha256.upper()) == info


def test_verify_without_sidecar_fails(run_dir: Path) -> None:
    """An archive whose sidecar is missing fails verification, naming the sidecar."""
    info = Archiver(run_dir).create_archive()
    (run_dir / "run.tar.gz.sha256").unlink()

    with pytest.raises(ArchiveIntegrityError, match=r"run.tar.gz.sha256' is missing"):
        verify_archive(info.path)


def test_verify_with_malformed_sidecar_fails(run_dir: Path) -> None:
    """A sidecar that is not one sha256sum line fails verification."""
    info = Archiver(run_dir).create_archive()
    (run_dir / "run.tar.gz.sha256").write_text("not a hash\n")

    with pytest.raises(ArchiveIntegrityError, match="not one sha256sum line"):
        verify_archive(info.path)


def test_verify_checks_expected_sha256(run_dir: Path) -> None:
    """A different expected_sha256 fails, showing expected and actual."""
    info = Archiver(run_dir).create_archive()

    with pytest.raises(ArchiveIntegrityError) as caught:
        verify_archive(info.path, "0" * 64)
    assert f"expected {'0' * 64!r} (expected_sha256), actual {info.sha256!r}" in str(
        caught.value
    )
    with pytest.raises(ConfigurationError, match="'abc'"):
        verify_archive(info.path, "abc")


def test_verify_checks_the_summary_recorded_hash(run_dir: Path) -> None:
    """A summary recording another hash for this archive fails verification."""
    info = Archiver(run_dir).create_archive()
    summary = run_dir / "logs_summary.txt"
    summary.write_text(f"Archive\n  File: run.tar.gz\n  SHA-256: {'a' * 64}\n")

    with pytest.raises(ArchiveIntegrityError, match=r"'a{64}' \(logs_summary.txt\)"):
        verify_archive(info.path)
    summary.write_text(f"Archive\n  File: run.tar.gz\n  SHA-256: {info.sha256}\n")
    assert verify_archive(info.path) == info


def test_summary_about_the_other_archive_is_not_applied(run_dir: Path) -> None:
    """A summary that records run.tar.zst does not vouch for run.tar.gz."""
    info = Archiver(run_dir).create_archive()
    (run_dir / "logs_summary.txt").write_text(
        f"Archive\n  File: run.tar.zst\n  SHA-256: {'b' * 64}\n"
    )

    assert verify_archive(info.path) == info


def test_verify_of_missing_or_misnamed_path_is_an_input_error(tmp_path: Path) -> None:
    """A path that does not exist, or is not .tar.gz/.tar.zst, is a RunlogError."""
    with pytest.raises(RunlogError, match="does not exist") as caught:
        verify_archive(tmp_path / "run.tar.gz")
    assert not isinstance(caught.value, ArchiveIntegrityError)
    with pytest.raises(RunlogError, match=r"\.tar\.gz or \.tar\.zst"):
        verify_archive(tmp_path / "run.zip")


def test_describe_reads_sidecar_size_and_manifest(run_dir: Path) -> None:
    """describe_archive gives the sidecar's hash, the size and the manifest count."""
    info = Archiver(run_dir).create_archive(format="zst")

    assert describe_archive(info.path) == info
    (run_dir / "run.tar.zst.sha256").write_text(f"{'c' * 64}  run.tar.zst\n")
    assert describe_archive(info.path).sha256 == "c" * 64  # not verified: cheap


def test_describe_fails_without_sidecar_or_manifest(run_dir: Path) -> None:
    """describe_archive raises when the sidecar or the manifest is missing."""
    info = Archiver(run_dir).create_archive()
    info.path.write_bytes(gzip.compress(b"not a tar file" * 100))
    with pytest.raises(ArchiveIntegrityError, match="cannot read its manifest"):
        describe_archive(info.path)
    (run_dir / "run.tar.gz.sha256").unlink()
    with pytest.raises(ArchiveIntegrityError, match="is missing"):
        describe_archive(info.path)


def test_find_and_locate_archive(run_dir: Path, tmp_path: Path) -> None:
    """find_archive prefers run.tar.gz; locate_archive takes a run or an archive."""
    assert find_archive(run_dir) is None
    with pytest.raises(RunlogError, match=r"no run\.tar\.gz or run\.tar\.zst"):
        locate_archive(run_dir)
    Archiver(run_dir).create_archive(format="zst")
    assert find_archive(run_dir) == run_dir / "run.tar.zst"
    (run_dir / "run.tar.gz").write_bytes(b"")
    assert find_archive(run_dir) == run_dir / "run.tar.gz"
    assert locate_archive(run_dir) == run_dir / "run.tar.gz"
    assert locate_archive(run_dir / "run.tar.zst") == run_dir / "run.tar.zst"
    with pytest.raises(RunlogError, match="does not exist"):
        locate_archive(tmp_path / "nope.tar.gz")


@pytest.mark.skipif(shutil.which("sha256sum") is None, reason="needs sha256sum")
@pytest.mark.parametrize("fmt", ["gz", "zst"])
def test_sidecar_passes_sha256sum_check(run_dir: Path, fmt: str) -> None:
    """`sha256sum -c run.tar.*.sha256` in the run dir reports OK."""
    Archiver(run_dir).create_archive(format=fmt)
    name = f"run.tar.{fmt}"

    done = subprocess.run(
        ["sha256sum", "-c", f"{name}.sha256"],
        cwd=run_dir,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, f"{name}: OK\n")


def _tar_reads(fmt: str) -> list[str] | None:
    """The tar command that extracts *fmt*, or None when the tools are missing."""
    if shutil.which("tar") is None:
        return None
    if fmt == "gz":
        return ["tar", "-xzf"]
    if shutil.which("zstd") is None:
        return None
    return ["tar", "-I", "zstd", "-xf"]


@pytest.mark.parametrize("fmt", ["gz", "zst"])
def test_system_tar_extracts_and_sha256sum_checks_the_manifest(
    run_dir: Path, tmp_path: Path, fmt: str
) -> None:
    """The system tar extracts the archive; `sha256sum -c MANIFEST.sha256` passes."""
    command = _tar_reads(fmt)
    if command is None:
        pytest.skip(f"needs tar (and zstd) to read .tar.{fmt}")
    (run_dir / "logs" / "link").symlink_to("run.log")
    info = Archiver(run_dir).create_archive(format=fmt)
    out = tmp_path / "extracted"
    out.mkdir()

    subprocess.run([*command, str(info.path), "-C", str(out)], check=True)
    extracted = {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in out.rglob("*")
        if p.is_file() and not p.is_symlink()
    }
    manifest = extracted.pop("MANIFEST.sha256")
    assert extracted == source_files(run_dir)
    assert os.readlink(out / "logs" / "link") == "run.log"
    if shutil.which("sha256sum"):
        done = subprocess.run(
            ["sha256sum", "--strict", "-c", "MANIFEST.sha256"],
            cwd=out,
            capture_output=True,
            check=False,
        )
        assert done.returncode == 0, done.stdout
    assert manifest.count(b"\n") == info.file_count


def test_system_tar_archive_lists_sorted_members(run_dir: Path) -> None:
    """`tar tzf` lists MANIFEST.sha256 first and the rest in sorted order."""
    if shutil.which("tar") is None:
        pytest.skip("needs tar")
    info = Archiver(run_dir).create_archive()
    listing = subprocess.run(
        ["tar", "-tzf", str(info.path)], capture_output=True, text=True, check=True
    ).stdout.splitlines()

    assert listing[0] == "MANIFEST.sha256"
    assert [name.rstrip("/") for name in listing[1:]] == [
        m.name for m in read_members(info.path)[1:]
    ]


def test_odd_file_names_round_trip_through_the_manifest(tmp_path: Path) -> None:
    """Names with a backslash, a newline or non-ASCII are escaped as sha256sum does."""
    run_dir = make_run(tmp_path / "run")
    odd = {"back\\slash.log": b"1", "new\nline.log": b"2", "ünïcode.log": b"3"}
    for name, data in odd.items():
        (run_dir / "logs" / name).write_bytes(data)
    info = Archiver(run_dir).create_archive()

    manifest = read_contents(info.path)["MANIFEST.sha256"]
    assert f"\\{sha(b'1')}  logs/back\\\\slash.log\n".encode() in manifest
    assert f"\\{sha(b'2')}  logs/new\\nline.log\n".encode() in manifest
    assert f"{sha(b'3')}  logs/ünïcode.log\n".encode() in manifest
    assert verify_archive(info.path) == info


def test_archive_run_refreshes_the_summary(run_dir: Path) -> None:
    """archive_run archives, then the summary records the new archive's hash."""
    from runlog import summary

    if not hasattr(summary, "summarize_run"):
        pytest.skip("runlog.summary.summarize_run is not available yet")
    info = archive_run(run_dir, "zst")

    text = (run_dir / "logs_summary.txt").read_text()
    assert f"SHA-256: {info.sha256}" in text
    assert verify_archive(info.path) == info


def test_open_reader_streams_both_formats(run_dir: Path) -> None:
    """open_reader gives the decompressed tar stream of either format."""
    for fmt in ("gz", "zst"):
        info = Archiver(run_dir).create_archive(format=fmt)
        with _codecs.open_reader(info.path) as stream:
            head = stream.read(512)
        assert head.startswith(b"MANIFEST.sha256\0")
    with pytest.raises(RunlogError, match=r"'x\.tar\.bz2'"):
        _codecs.open_reader("x.tar.bz2")


def test_open_reader_reads_every_zstd_frame(tmp_path: Path) -> None:
    """A .tar.zst of several frames (and a skippable frame) reads whole."""
    import zstandard

    path = tmp_path / "run.tar.zst"
    skippable = (0x184D2A53).to_bytes(4, "little") + (3).to_bytes(4, "little") + b"abc"
    path.write_bytes(
        zstandard.ZstdCompressor(write_checksum=True).compress(b"a" * 200_000)
        + skippable
        + zstandard.ZstdCompressor(write_content_size=False).compress(b"b" * 10)
    )
    with _codecs.open_reader(path) as stream:
        assert stream.read() == b"a" * 200_000 + b"b" * 10
    path.write_bytes(b"PK\3\4 not zstd")
    with (
        pytest.raises(_codecs.CORRUPT_ERRORS, match="not a zstd frame"),
        _codecs.open_reader(path) as stream,
    ):
        stream.read()


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_parallel_gzip_is_one_valid_deterministic_stream(threads: int) -> None:
    """ParallelGzipWriter's bytes depend on data and level only, and gunzip."""
    data = os.urandom(100_000) + b"".join(
        b'{"event":"api_call","n":%d}\n' % n for n in range(120_000)
    )
    reference = io.BytesIO()
    with _codecs.ParallelGzipWriter(reference, 6, threads=1) as writer:
        writer.write(data)
    out = io.BytesIO()
    with _codecs.ParallelGzipWriter(out, 6, threads=threads) as writer:
        for start in range(0, len(data), 70_001):
            writer.write(data[start : start + 70_001])

    assert out.getvalue() == reference.getvalue()
    assert gzip.decompress(out.getvalue()) == data
    assert len(out.getvalue()) < len(gzip.compress(data, 6)) * 1.01


def test_forward_reader_only_seeks_forward() -> None:
    """ForwardReader reads exactly, seeks forward, and refuses to go back."""
    source = io.BytesIO(bytes(range(256)) * 1000)
    reader = _codecs.ForwardReader(source, size=1000, depth=2)
    try:
        assert reader.read(10) == bytes(range(10))
        assert reader.seek(300) == 300
        assert reader.read(2) == bytes((300 % 256, 301 % 256))
        buffer = bytearray(5)
        assert reader.readinto(buffer) == 5
        with pytest.raises(io.UnsupportedOperation):
            reader.seek(0)
        assert len(reader.read()) == 256_000 - 307
        assert reader.read(1) == b""
    finally:
        reader.close()


@given(names=st.lists(st.text(min_size=1).filter(lambda n: "\0" not in n), unique=True))
def test_manifest_lines_parse_back_to_the_same_names(names: list[str]) -> None:
    """Any file name written as a manifest line parses back to itself."""
    from runlog.archive import _tarread, _tarwrite

    listed = {name: sha(name.encode("utf-8", "surrogatepass")) for name in names}
    data = b"".join(
        _tarwrite._manifest_line(digest, name) for name, digest in listed.items()
    )

    assert _tarread._parse_manifest(data) == listed
    assert data.count(b"\n") == len(names)


def test_scratch_files_a_crash_left_are_not_archived(tmp_path: Path) -> None:
    """combined.log's spare and atomic_write temp files stay out of the archive."""
    import tarfile

    from runlog import Archiver

    logs = tmp_path / "run" / "logs"
    (logs / "step_001").mkdir(parents=True)
    (logs / "step_001" / "adapter.log").write_text('{"event":"x"}\n')
    (logs / ".combined.log.spare").write_text("old lines\n")
    (logs / ".combined.log.previous").write_text("old lines\n")
    (logs / ".run.json.123.456.tmp").write_text("{")
    info = Archiver(tmp_path / "run").create_archive()
    with tarfile.open(info.path) as tar:
        names = tar.getnames()
    assert "logs/step_001/adapter.log" in names
    assert not [
        n for n in names if ".spare" in n or ".previous" in n or n.endswith(".tmp")
    ]
