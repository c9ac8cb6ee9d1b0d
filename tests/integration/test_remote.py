"""Runs copied to object storage (a moto S3 server on 127.0.0.1) and read back."""

from __future__ import annotations

import errno
import gzip
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

fsspec = pytest.importorskip(
    "fsspec", reason="needs the remote extra: pip install 'runlog[remote]'"
)
pytest.importorskip(
    "s3fs", reason="needs the remote extra: pip install 'runlog[remote]'"
)
moto_server = pytest.importorskip(
    "moto.server", reason="needs moto[server]: pip install 'runlog[remote-tests]'"
)

from fsspec.implementations.memory import MemoryFileSystem  # noqa: E402

from runlog import (  # noqa: E402
    ArchiveIntegrityError,
    ConfigurationError,
    ContextError,
    LogContext,
    UploadError,
    cli,
    get_logger,
    remote,
    start_run,
    verify_archive,
)
from runlog.reading import _runs  # noqa: E402
from runlog.remote import (  # noqa: E402
    RunUploader,
    _upload,
    attach_uploader,
    fetch_run,
    find_remote_runs,
    upload_run,
)
from tests.conftest import files_under, read_records  # noqa: E402

_SUMMARY_HASH = r"(?m)^\s*SHA-256:\s+([0-9a-f]{64})\s*$"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 (loopback only), with credentials in the env."""
    import s3fs

    port = _free_port()
    server = moto_server.ThreadedMotoServer(
        ip_address="127.0.0.1", port=port, verbose=False
    )
    # the server's request log would land in the runs under test as records
    quiet = logging.getLogger("werkzeug")
    old_level, old_propagate = quiet.level, quiet.propagate
    quiet.setLevel(logging.ERROR)
    quiet.propagate = False
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret-value")
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        patch.setenv("AWS_ENDPOINT_URL", endpoint)
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE"):
            patch.delenv(name, raising=False)
        s3fs.S3FileSystem.clear_instance_cache()
        try:
            yield endpoint
        finally:
            s3fs.S3FileSystem.clear_instance_cache()
            server.stop()
            quiet.setLevel(old_level)
            quiet.propagate = old_propagate


@pytest.fixture
def bucket_url(s3_endpoint: str) -> str:
    """A fresh, empty bucket; returns its base URL ``s3://<bucket>/runs``."""
    name = f"runs-{uuid.uuid4().hex[:12]}"
    fsspec.filesystem("s3").mkdir(name)
    return f"s3://{name}/runs"


def s3_objects(url: str) -> dict[str, bytes]:
    """Every object under *url*: key relative to it -> bytes."""
    fs, root = fsspec.core.url_to_fs(url)
    fs.invalidate_cache()
    return {
        path[len(root) + 1 :]: fs.cat_file(path)
        for path in fs.find(root)
        if path.startswith(root + "/")
    }


def finished_run(tmp_path: Path, run_id: str = "r1", steps: int = 3) -> Path:
    """A run with a few steps, finished: archive, sidecar and summary written."""
    run = start_run("fw", run_id, runs_dir=tmp_path / "runs")
    log = get_logger("test", component="adapter")
    for step in range(1, steps + 1):
        with run.step(step, f"s{step}"):
            log.info("llm_request", prompt_tokens=10 * step, api_key="sk-0123456789")
            if step == 2:
                log.warning("slow", seconds=1.5)
    run.finish()
    return run.run_dir


def snapshot(directory: Path) -> dict[str, bytes]:
    return {rel: (directory / rel).read_bytes() for rel in files_under(directory)}


# --- upload of a finished run -------------------------------------------------


def test_upload_copies_archive_sidecar_run_json_and_summary(
    tmp_path: Path, bucket_url: str
) -> None:
    """upload_run stores exactly four objects, byte-identical, under fw/run_id/."""
    run_dir = finished_run(tmp_path)
    before = snapshot(run_dir)
    urls = upload_run(run_dir, bucket_url)
    assert urls == [
        f"{bucket_url}/fw/r1/run.tar.gz",
        f"{bucket_url}/fw/r1/run.tar.gz.sha256",
        f"{bucket_url}/fw/r1/logs/run.json",
        f"{bucket_url}/fw/r1/logs_summary.txt",
    ]
    stored = s3_objects(bucket_url)
    assert stored == {
        "fw/r1/run.tar.gz": before["run.tar.gz"],
        "fw/r1/run.tar.gz.sha256": before["run.tar.gz.sha256"],
        "fw/r1/logs/run.json": before["logs/run.json"],
        "fw/r1/logs_summary.txt": before["logs_summary.txt"],
    }
    assert snapshot(run_dir) == before  # nothing local changed or went away


def test_uploaded_archive_verifies_after_fetch(tmp_path: Path, bucket_url: str) -> None:
    """The archive fetched back verifies and matches the hash the summary records."""
    import re

    run_dir = finished_run(tmp_path)
    upload_run(run_dir, bucket_url)
    fetched = fetch_run(f"{bucket_url}/fw/r1", tmp_path / "fetched")
    assert fetched == tmp_path / "fetched" / "fw" / "r1"
    assert files_under(fetched) == {
        "run.tar.gz",
        "run.tar.gz.sha256",
        "logs_summary.txt",
    }
    info = verify_archive(fetched / "run.tar.gz")
    summary = (fetched / "logs_summary.txt").read_text()
    match = re.search(_SUMMARY_HASH, summary)
    assert match is not None
    assert info.sha256 == match.group(1)
    # the fetched run reads like a local one: records come from the archive
    source = _runs.resolve_run(str(fetched))
    assert source.archive == fetched / "run.tar.gz"
    archive_url = fetch_run(f"{bucket_url}/fw/r1/run.tar.gz", tmp_path / "again")
    assert archive_url == tmp_path / "again" / "fw" / "r1" / "run.tar.gz"
    assert archive_url.read_bytes() == (run_dir / "run.tar.gz").read_bytes()


def test_upload_again_is_idempotent(tmp_path: Path, bucket_url: str) -> None:
    """A second upload of the same run leaves the same objects, byte for byte."""
    run_dir = finished_run(tmp_path)
    upload_run(run_dir, bucket_url)
    first = s3_objects(bucket_url)
    upload_run(run_dir, bucket_url)
    assert s3_objects(bucket_url) == first


def test_run_without_archive_uploads_its_logs(tmp_path: Path, bucket_url: str) -> None:
    """A run finished with archive=False has every file of logs/ copied."""
    run = start_run("fw", "plain", runs_dir=tmp_path / "runs", archive=False)
    with run.step(1):
        get_logger("t", component="adapter").info("hello")
    run.finish()
    upload_run(run.run_dir, bucket_url)
    local = snapshot(run.run_dir)
    stored = s3_objects(bucket_url)
    assert stored == {f"fw/plain/{rel}": data for rel, data in local.items()}
    assert list(stored)[-1] == "fw/plain/logs_summary.txt"


def test_missing_bucket_fails_at_once_naming_the_url(
    tmp_path: Path, s3_endpoint: str
) -> None:
    """No such bucket: UploadError on the first attempt, naming the URL; exit 1."""
    run_dir = finished_run(tmp_path)
    before = snapshot(run_dir)
    url = f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/runs"
    with pytest.raises(UploadError) as caught:
        upload_run(run_dir, url, retries=3, backoff=0.01)
    message = str(caught.value)
    assert f"{url}/fw/r1/run.tar.gz" in message
    assert "after 1 attempt(s)" in message
    assert "testing-secret-value" not in message
    assert caught.value.exit_code == 1
    assert isinstance(caught.value.__cause__, FileNotFoundError)
    assert snapshot(run_dir) == before


def test_corrupt_local_archive_is_not_uploaded(tmp_path: Path, bucket_url: str) -> None:
    """An archive that no longer matches its sidecar is refused; nothing stored."""
    run_dir = finished_run(tmp_path)
    archive = run_dir / "run.tar.gz"
    data = bytearray(archive.read_bytes())
    data[-1] ^= 0xFF
    archive.write_bytes(bytes(data))
    with pytest.raises(ArchiveIntegrityError, match="does not match its sidecar"):
        upload_run(run_dir, bucket_url)
    assert s3_objects(bucket_url) == {}


# --- periodic upload ------------------------------------------------------------


def test_start_run_upload_to_ships_logs_then_the_archive(
    tmp_path: Path, bucket_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """upload_to ships growing step logs as segments, then archive + summary."""
    monkeypatch.setenv(remote.INTERVAL_ENV, "0.1")
    run = start_run("fw", "live1", runs_dir=tmp_path / "runs", upload_to=bucket_url)
    log = get_logger("t", component="adapter")
    with run.step(1):
        for i in range(20):
            log.info("tick", i=i)
        deadline = time.monotonic() + 10
        shipped: dict[str, bytes] = {}
        while time.monotonic() < deadline:
            shipped = s3_objects(f"{bucket_url}/fw/live1/live")
            if any("step_001/adapter.log" in key for key in shipped):
                break
            time.sleep(0.05)
    segments = sorted(k for k in shipped if k.startswith("logs/step_001/adapter.log/"))
    assert segments, shipped
    text = b"".join(gzip.decompress(shipped[k]) for k in segments)
    assert text.endswith(b"\n")
    assert [json.loads(line)["i"] for line in text.splitlines()][:1] == [0]
    run.finish()
    stored = s3_objects(f"{bucket_url}/fw/live1")
    assert set(stored) == {
        "run.tar.gz",
        "run.tar.gz.sha256",
        "logs/run.json",
        "logs_summary.txt",
    }
    assert json.loads(stored["logs/run.json"])["status"] == "success"


def test_fetch_of_a_live_run_rebuilds_its_logs(tmp_path: Path, bucket_url: str) -> None:
    """Segments shipped pass by pass concatenate back to the local step log."""
    run = start_run("fw", "live2", runs_dir=tmp_path / "runs", archive=False)
    uploader = RunUploader(run.run_dir, bucket_url, backoff=0.01)
    log = get_logger("t", component="adapter")
    with run.step(1):
        for batch in range(3):
            for i in range(5):
                log.info("tick", batch=batch, i=i)
            assert uploader.ship_logs() > 0
        assert uploader.ship_logs() == 0  # nothing new: nothing sent
        fetched = fetch_run(f"{bucket_url}/fw/live2", tmp_path / "fetched")
        local = run.logs_dir / "step_001" / "adapter.log"
        assert (fetched / "logs" / "step_001" / "adapter.log").read_bytes() == (
            local.read_bytes()
        )
        info = json.loads((fetched / "logs" / "run.json").read_text())
        assert info["status"] == "running"
        assert uploader.stats.passes == 4
        assert uploader.shipped["step_001/adapter.log"] == local.stat().st_size
    run.finish()


_CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from runlog import get_logger, start_run
    from runlog.remote import attach_uploader

    runs, url, marker = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    interval = float(sys.argv[4])
    run = start_run("fw", "killed", runs_dir=runs, heartbeat_interval_s=0.5)
    uploader = attach_uploader(run, url, interval_s=interval)
    log = get_logger("child", component="adapter")
    with run.step(1, "work"):
        for i in range(200):
            log.info("tick", i=i)
        marker.write_text("200")
        i = 200
        while True:
            log.info("tick", i=i, t=time.time())
            i += 1
            time.sleep(0.002)
    """
)


def test_killed_child_loses_at_most_one_interval(
    tmp_path: Path, bucket_url: str, request: pytest.FixtureRequest
) -> None:
    """SIGKILL mid-run: the store holds every record up to the last pass, whole."""
    interval = 0.25
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    marker = tmp_path / "logged"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    child = subprocess.Popen(
        [
            sys.executable,
            str(script),
            str(tmp_path / "runs"),
            bucket_url,
            str(marker),
            str(interval),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert child.poll() is None, child.stderr.read() if child.stderr else ""
            assert time.monotonic() < deadline, "the child never logged"
            time.sleep(0.02)
        time.sleep(interval * 4)  # a few passes while it keeps logging
        killed_at = time.time()
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stderr is not None:
            child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    local_log = (
        tmp_path / "runs" / "fw" / "killed" / "logs" / "step_001" / "adapter.log"
    )
    local = read_records(local_log)
    fetched = fetch_run(f"{bucket_url}/fw/killed", tmp_path / "fetched")
    shipped = read_records(fetched / "logs" / "step_001" / "adapter.log")
    # whole lines, in order, a prefix of what the node had
    assert shipped == local[: len(shipped)]
    assert [r["i"] for r in shipped[:200]] == list(range(200))
    lost = local[len(shipped) :]
    if lost:
        window = killed_at - lost[0]["t"]
        # lost records were all logged in the last interval (plus the time one
        # pass takes on a busy 2-core machine)
        assert window < interval + 2.0, (len(lost), window)
    row = _runs.describe_run(fetched)
    assert row.status == "crashed"
    assert row.steps == 1
    segments = s3_objects(f"{bucket_url}/fw/killed/live/logs/step_001/adapter.log")
    # figures for docs/DISTRIBUTED.md: pytest -o junit_family=legacy --junitxml=F
    request.node.user_properties.extend(
        {
            "interval_s": interval,
            "records_logged": len(local),
            "records_shipped": len(shipped),
            "records_lost": len(lost),
            "lost_window_s": round(killed_at - lost[0]["t"], 3) if lost else 0,
            "segments": len(segments),
            "bytes_shipped": sum(len(v) for v in segments.values()),
            "log_bytes_shipped": sum(
                len(gzip.decompress(v)) for v in segments.values()
            ),
        }.items()
    )


# --- transient errors, retries, loud failures -----------------------------------


class FlakyFileSystem(MemoryFileSystem):
    """An in-memory store whose next writes fail, or that stores wrong bytes."""

    protocol = "flaky"
    store: ClassVar[dict[str, Any]] = {}
    pseudo_dirs: ClassVar[list[str]] = [""]
    fail_next: ClassVar[int] = 0
    corrupt: ClassVar[bool] = False
    writes: ClassVar[int] = 0

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        return super()._strip_protocol(str(path).removeprefix("flaky://"))

    def _maybe_fail(self) -> None:
        FlakyFileSystem.writes += 1
        if FlakyFileSystem.fail_next > 0:
            FlakyFileSystem.fail_next -= 1
            raise ConnectionResetError(errno.ECONNRESET, "connection reset (injected)")

    def put_file(self, lpath: Any, rpath: Any, *args: Any, **kwargs: Any) -> None:
        self._maybe_fail()
        super().put_file(lpath, rpath, *args, **kwargs)
        if FlakyFileSystem.corrupt:
            data = self.cat_file(rpath)
            super().pipe_file(rpath, data[:-1] + b"?")

    def pipe_file(self, path: Any, value: Any, *args: Any, **kwargs: Any) -> None:
        self._maybe_fail()
        super().pipe_file(path, value, *args, **kwargs)


@pytest.fixture
def flaky() -> Iterator[type[FlakyFileSystem]]:
    fsspec.register_implementation("flaky", FlakyFileSystem, clobber=True)
    FlakyFileSystem.store.clear()
    FlakyFileSystem.pseudo_dirs[:] = [""]
    FlakyFileSystem.fail_next = 0
    FlakyFileSystem.corrupt = False
    FlakyFileSystem.writes = 0
    yield FlakyFileSystem
    FlakyFileSystem.fail_next = 0
    FlakyFileSystem.corrupt = False


def test_transient_errors_are_retried(
    tmp_path: Path, flaky: type[FlakyFileSystem], request: pytest.FixtureRequest
) -> None:
    """Three connection resets in a row: retried with backoff, then it succeeds."""
    run_dir = finished_run(tmp_path)
    flaky.fail_next = 3
    uploader = RunUploader(run_dir, "flaky://bkt/runs", retries=4, backoff=0.01)
    urls = uploader.upload_final()
    assert len(urls) == 4
    assert uploader.stats.retries == 3
    stats = uploader.stats
    request.node.user_properties.extend(
        {
            "retries": stats.retries,
            "bytes_sent": stats.bytes_sent,
            "bytes_verified": stats.bytes_verified,
        }.items()
    )
    assert flaky.writes == 4 + 3
    fs = fsspec.filesystem("flaky")
    assert fs.cat_file("/bkt/runs/fw/r1/run.tar.gz") == (
        (run_dir / "run.tar.gz").read_bytes()
    )


def test_too_many_failures_raise_upload_error(
    tmp_path: Path, flaky: type[FlakyFileSystem]
) -> None:
    """More failures than retries: UploadError naming the URL and the attempts."""
    run_dir = finished_run(tmp_path)
    before = snapshot(run_dir)
    flaky.fail_next = 10
    with pytest.raises(UploadError) as caught:
        upload_run(run_dir, "flaky://user:hunter2@bkt/runs", retries=2, backoff=0.01)
    message = str(caught.value)
    assert "flaky://bkt/runs/fw/r1/run.tar.gz" in message
    assert "after 3 attempt(s)" in message
    assert "ConnectionResetError" in message
    assert "hunter2" not in message
    assert snapshot(run_dir) == before


def test_store_returning_wrong_bytes_fails_verification(
    tmp_path: Path, flaky: type[FlakyFileSystem]
) -> None:
    """A store that keeps a different archive than was sent: verification fails."""
    run_dir = finished_run(tmp_path)
    flaky.corrupt = True
    with pytest.raises(UploadError, match="stored SHA-256 is"):
        upload_run(run_dir, "flaky://bkt/runs", retries=1, backoff=0.01)


def test_failed_periodic_pass_is_logged_and_retried_next_interval(
    tmp_path: Path, flaky: type[FlakyFileSystem]
) -> None:
    """A failing pass writes upload_failed (orchestrator); the next pass catches up."""
    run = start_run("fw", "p1", runs_dir=tmp_path / "runs", archive=False)
    uploader = attach_uploader(run, "flaky://bkt/runs", interval_s=0.05, retries=0)
    log = get_logger("t", component="adapter")
    with run.step(1):
        log.info("before")
        flaky.fail_next = 1
        deadline = time.monotonic() + 10
        while uploader.stats.failures == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        while uploader.shipped.get("step_001/adapter.log", 0) == 0:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    failures = [
        r
        for r in read_records(run.logs_dir / "step_001" / "orchestrator.log")
        + read_records(run.logs_dir / "run.log")
        if r["event"] == "upload_failed"
    ]
    assert failures, "no upload_failed record"
    assert failures[0]["level"] == "error"
    assert failures[0]["component"] == "orchestrator"
    assert failures[0]["url"] == "flaky://bkt/runs/fw/p1"
    assert failures[0]["phase"] == "periodic"
    run.finish()
    fs = fsspec.filesystem("flaky")
    assert fs.cat_file("/bkt/runs/fw/p1/logs/step_001/adapter.log") == (
        (run.logs_dir / "step_001" / "adapter.log").read_bytes()
    )
    assert not fs.exists("/bkt/runs/fw/p1/live")


def test_failed_final_upload_raises_from_finish(
    tmp_path: Path,
    flaky: type[FlakyFileSystem],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The final upload failing: finish raises UploadError, logs upload_failed."""
    run = start_run("fw", "p2", runs_dir=tmp_path / "runs")
    attach_uploader(run, "flaky://b/r", interval_s=60, retries=2, backoff=0.01)
    with run.step(1):
        get_logger("t", component="adapter").info("work")
    flaky.fail_next = 1000
    with pytest.raises(UploadError, match="flaky://b/r/fw/p2/"):
        run.finish()
    assert "upload_failed" in capsys.readouterr().err
    assert (run.run_dir / "run.tar.gz").is_file()
    assert (run.run_dir / "logs_summary.txt").is_file()
    assert json.loads((run.logs_dir / "run.json").read_text())["status"] == "success"


# --- reading from the store -----------------------------------------------------


def test_find_remote_runs_lists_each_run_once(tmp_path: Path, bucket_url: str) -> None:
    """Two uploaded runs and one live-only run are listed with what they hold."""
    upload_run(finished_run(tmp_path / "a", "r1"), bucket_url)
    upload_run(finished_run(tmp_path / "b", "r2"), bucket_url)
    run = start_run("fw", "r3", runs_dir=tmp_path / "c" / "runs")
    with run.step(4):
        get_logger("t", component="adapter").info("x")
        RunUploader(run.run_dir, bucket_url).ship_logs()
    found = find_remote_runs(bucket_url)
    assert [(r.framework, r.run_id, r.archive) for r in found] == [
        ("fw", "r1", "run.tar.gz"),
        ("fw", "r2", "run.tar.gz"),
        ("fw", "r3", None),
    ]
    assert found[2].steps == frozenset({4})
    assert found[0].url == f"{bucket_url}/fw/r1"
    run.finish()


def test_fetch_of_nothing_is_a_context_error(tmp_path: Path, bucket_url: str) -> None:
    """No run stored at the URL: ContextError naming it (and ls for a runs root)."""
    with pytest.raises(ContextError, match="no run is stored there"):
        fetch_run(f"{bucket_url}/fw/none", tmp_path)
    assert list(tmp_path.iterdir()) == []
    upload_run(finished_run(tmp_path / "a"), bucket_url)
    with pytest.raises(ContextError, match=f"see `runlog ls {bucket_url}`"):
        fetch_run(bucket_url, tmp_path / "b")


def test_bad_arguments_are_configuration_errors(tmp_path: Path) -> None:
    """Bad retries, backoff, interval or protocol: ConfigurationError naming it."""
    run_dir = tmp_path / "runs" / "fw" / "r1"
    (run_dir / "logs").mkdir(parents=True)
    with pytest.raises(ConfigurationError, match="retries -1"):
        upload_run(run_dir, "memory://b", retries=-1)
    with pytest.raises(ConfigurationError, match="backoff 'x'"):
        upload_run(run_dir, "memory://b", backoff="x")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="interval_s 0"):
        remote.check_interval(0)
    with pytest.raises(ConfigurationError, match="nosuchproto"):
        upload_run(run_dir, "nosuchproto://b")
    with pytest.raises(ContextError, match="not a directory"):
        upload_run(tmp_path / "missing", "memory://b")


# --- the command line -----------------------------------------------------------


def test_cli_upload_then_ls_show_verify_from_s3(
    tmp_path: Path, bucket_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """runlog upload RUN URL; then ls, show and verify read the run from s3."""
    run_dir = finished_run(tmp_path)
    assert cli.main(["upload", str(run_dir), bucket_url]) == 0
    out = capsys.readouterr().out
    assert f"uploaded  {bucket_url}/fw/r1/run.tar.gz\n" in out
    assert f"uploaded  {bucket_url}/fw/r1/logs_summary.txt\n" in out
    assert set(s3_objects(bucket_url)) == {
        "fw/r1/run.tar.gz",
        "fw/r1/run.tar.gz.sha256",
        "fw/r1/logs/run.json",
        "fw/r1/logs_summary.txt",
    }

    assert cli.main(["ls", bucket_url, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["run_id"], r["status"], r["archived"]) for r in rows] == [
        ("r1", "success", True)
    ]
    assert rows[0]["path"] == f"{bucket_url}/fw/r1"

    assert cli.main(["show", f"{bucket_url}/fw/r1", "--json", "--step", "2"]) == 0
    shown = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    local = [
        r
        for name in ("adapter.log", "orchestrator.log")
        for r in read_records(run_dir / "logs" / "step_002" / name)
    ]
    assert sorted(r["ts"] for r in shown) == sorted(r["ts"] for r in local)
    assert {r["event"] for r in shown} >= {"llm_request", "slow"}
    assert all(r["api_key"] == "***" for r in shown if r["event"] == "llm_request")

    assert cli.main(["verify", f"{bucket_url}/fw/r1"]) == 0
    out = capsys.readouterr().out
    assert "matches its manifest and its sidecar" in out
    assert out.startswith(f"OK  {bucket_url}/fw/r1/run.tar.gz\n")  # see #17

    summary = run_dir / "logs_summary.txt"
    assert cli.main(["verify", str(summary), "--store", bucket_url]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"OK  {summary}\n    archive {bucket_url}/fw/r1/run.tar.gz\n")
    assert "the summary regenerated from it is byte-identical" in out


def test_cli_verify_fails_on_a_damaged_stored_archive(
    tmp_path: Path, bucket_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An archive damaged in the store: runlog verify URL exits 1."""
    run_dir = finished_run(tmp_path)
    upload_run(run_dir, bucket_url)
    fs, root = fsspec.core.url_to_fs(f"{bucket_url}/fw/r1/run.tar.gz")
    data = bytearray(fs.cat_file(root))
    data[len(data) // 2] ^= 0xFF
    fs.pipe_file(root, bytes(data))
    assert cli.main(["verify", f"{bucket_url}/fw/r1"]) == 1
    err = capsys.readouterr().err
    last = err.splitlines()[-1]
    assert last.startswith(f"runlog: error: '{bucket_url}/fw/r1/run.tar.gz': ")
    assert "runlog-fetch-" not in err  # the URL, never the temporary copy (#17)
    assert list(Path(tempfile.gettempdir()).glob("runlog-fetch-*")) == []


def test_cli_show_and_ls_of_a_run_still_shipping(
    tmp_path: Path, bucket_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run with only live segments: ls says running, show prints its records."""
    run = start_run("fw", "going", runs_dir=tmp_path / "runs")
    try:
        with run.step(1):
            get_logger("t", component="adapter").info("midway", n=1)
            RunUploader(run.run_dir, bucket_url).ship_logs()
            assert cli.main(["ls", bucket_url]) == 0
            table = capsys.readouterr().out
            assert "going" in table
            assert "running" in table
            assert cli.main(["show", f"{bucket_url}/fw/going", "-c", "adapter"]) == 0
            assert "midway" in capsys.readouterr().out
            assert cli.main(["tail", f"{bucket_url}/fw/going", "-f"]) == 2
            assert "cannot follow" in capsys.readouterr().err
    finally:
        run.finish()


def test_cli_upload_failure_exits_1_naming_the_url(
    tmp_path: Path, s3_endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """runlog upload to a missing bucket: exit 1, one error line with the URL."""
    run_dir = finished_run(tmp_path)
    before = snapshot(run_dir)
    url = "s3://missing-bucket-for-cli/runs"
    capsys.readouterr()
    assert cli.main(["upload", str(run_dir), url, "--retries", "0"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"runlog: error: upload to '{url}/fw/r1/run.tar.gz'")
    assert "Traceback" not in err
    assert snapshot(run_dir) == before


# --- edge cases, on the in-memory store ------------------------------------------


@pytest.fixture
def memory_url() -> Iterator[str]:
    """A fresh folder of fsspec's in-memory store."""
    name = f"mem-{uuid.uuid4().hex[:8]}"
    yield f"memory://{name}/runs"
    fs = fsspec.filesystem("memory")
    if fs.exists(f"/{name}"):
        fs.rm(f"/{name}", recursive=True)


def test_partial_line_waits_for_its_newline(tmp_path: Path, memory_url: str) -> None:
    """A line still being written is not shipped until it is whole."""
    logs = tmp_path / "runs" / "fw" / "r1" / "logs"
    (logs / "step_001").mkdir(parents=True)
    log = logs / "step_001" / "adapter.log"
    log.write_bytes(b'{"i":0}\n{"i":')
    uploader = RunUploader(logs.parent, memory_url)
    assert uploader.ship_logs() == 8
    with open(log, "ab") as handle:
        handle.write(b"1}\n")
    assert uploader.ship_logs() == 8
    fetched = fetch_run(f"{memory_url}/fw/r1", tmp_path / "out")
    assert (fetched / "logs" / "step_001" / "adapter.log").read_bytes() == (
        log.read_bytes()
    )
    assert files_under(fetched) == {"logs/step_001/adapter.log"}


def test_line_longer_than_a_segment_is_split_and_rejoined(
    tmp_path: Path, memory_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A line longer than one segment goes in pieces and comes back whole."""
    monkeypatch.setattr(_upload, "_MAX_SEGMENT", 16)
    logs = tmp_path / "runs" / "fw" / "r1" / "logs"
    logs.mkdir(parents=True)
    data = b'{"blob":"' + b"x" * 50 + b'"}\n{"i":1}\n'
    (logs / "run.log").write_bytes(data)
    uploader = RunUploader(logs.parent, memory_url)
    assert uploader.ship_logs() == len(data)
    fs = fsspec.filesystem("memory")
    segments = fs.find(memory_url.removeprefix("memory:/") + "/fw/r1/live")
    assert len(segments) == 5
    fetched = fetch_run(f"{memory_url}/fw/r1", tmp_path / "out")
    assert (fetched / "logs" / "run.log").read_bytes() == data


def test_recreated_log_is_shipped_again_from_its_start(
    tmp_path: Path, memory_url: str
) -> None:
    """A log replaced by a new file: stale segments go, the new file is shipped."""
    logs = tmp_path / "runs" / "fw" / "re" / "logs"
    LogContext.get_instance().set_run_context("re", "fw", logs)
    path = logs / "step_001" / "adapter.log"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"".join(b'{"old":%d}\n' % i for i in range(5)))
    uploader = RunUploader(logs.parent, memory_url)
    uploader.ship_logs()
    path.unlink()
    # a new file under the same name, longer than what was shipped before
    path.write_bytes(b"".join(b'{"new":%d}\n' % i for i in range(9)))
    uploader.ship_logs()
    fetched = fetch_run(f"{memory_url}/fw/re", tmp_path / "out")
    rebuilt = fetched / "logs" / "step_001" / "adapter.log"
    assert rebuilt.read_bytes() == path.read_bytes()
    warnings = [
        r for r in read_records(logs / "run.log") if r["event"] == "upload_log_replaced"
    ]
    assert len(warnings) == 1
    assert warnings[0]["file"] == "step_001/adapter.log"
    assert warnings[0]["component"] == "orchestrator"


def test_overlapping_and_missing_segments_rebuild_whole_lines(
    tmp_path: Path, memory_url: str
) -> None:
    """A pass sent twice (overlap) and a lost segment (gap) still give whole lines."""
    fs = fsspec.filesystem("memory")
    base = memory_url.removeprefix("memory:/") + "/fw/r1/live/logs/run.log"
    lines = [b'{"i":%d}\n' % i for i in range(4)]  # 8 bytes each
    fs.pipe_file(f"{base}/000000000000000-000000000000008", lines[0])
    fs.pipe_file(f"{base}/000000000000000-000000000000016", lines[0] + lines[1])
    fs.pipe_file(f"{base}/000000000000024-000000000000032", lines[3])
    fetched = fetch_run(f"{memory_url}/fw/r1", tmp_path / "out")
    rebuilt = read_records(fetched / "logs" / "run.log")
    assert [r["i"] for r in rebuilt] == [0, 1, 3]


def test_sidecar_missing_or_garbled_refuses_the_upload(
    tmp_path: Path, memory_url: str
) -> None:
    """No sidecar, or one without a hash: ArchiveIntegrityError, nothing stored."""
    run_dir = finished_run(tmp_path)
    sidecar = run_dir / "run.tar.gz.sha256"
    sidecar.write_text("not a hash\n")
    with pytest.raises(ArchiveIntegrityError, match="holds no SHA-256"):
        upload_run(run_dir, memory_url)
    sidecar.unlink()
    with pytest.raises(ArchiveIntegrityError, match="cannot be read"):
        upload_run(run_dir, memory_url)
    assert not fsspec.filesystem("memory").exists(memory_url.removeprefix("memory:/"))


def test_empty_run_has_nothing_to_upload(tmp_path: Path, memory_url: str) -> None:
    """A run directory with an empty logs/: ContextError, nothing stored."""
    run_dir = tmp_path / "runs" / "fw" / "r1"
    (run_dir / "logs").mkdir(parents=True)
    with pytest.raises(ContextError, match="nothing to upload"):
        upload_run(run_dir, memory_url)


def test_uploader_thread_lifecycle(tmp_path: Path, memory_url: str) -> None:
    """start twice is refused; stop is idempotent; repr shows no credentials."""
    run_dir = tmp_path / "runs" / "fw" / "r1"
    (run_dir / "logs").mkdir(parents=True)
    uploader = RunUploader(run_dir, memory_url.replace("://", "://u:pw@", 1))
    assert "pw" not in repr(uploader)
    uploader.start(30)
    assert uploader.is_running
    with pytest.raises(ConfigurationError, match="already running"):
        uploader.start(30)
    uploader.stop()
    uploader.stop()
    assert not uploader.is_running


def test_interval_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """RUNLOG_UPLOAD_INTERVAL_S sets the default; a bad value names itself."""
    monkeypatch.delenv(remote.INTERVAL_ENV, raising=False)
    assert remote.default_interval() == remote.DEFAULT_INTERVAL_S
    monkeypatch.setenv(remote.INTERVAL_ENV, "2.5")
    assert remote.default_interval() == 2.5
    monkeypatch.setenv(remote.INTERVAL_ENV, "soon")
    with pytest.raises(ConfigurationError, match="'soon'"):
        remote.default_interval()
    for bad in (True, float("inf"), -1, "5"):
        with pytest.raises(ConfigurationError, match="interval_s"):
            remote.check_interval(bad)


def test_urls_errors_and_backoff_helpers() -> None:
    """URL display hides credentials; only transient errors retry; backoff doubles."""
    import botocore.exceptions

    assert remote.display_url("s3://AKIA:secret@bkt/p?X-Amz-Signature=abc#x") == (
        "s3://bkt/p"
    )
    assert remote.is_remote("s3://b/p")
    assert remote.is_remote("gs://b")
    assert not remote.is_remote("runs/fw/r1")
    assert not remote.is_remote(Path("s3://b"))
    assert remote.is_transient(ConnectionResetError(errno.ECONNRESET, "reset"))
    assert remote.is_transient(TimeoutError())
    assert remote.is_transient(
        botocore.exceptions.EndpointConnectionError(endpoint_url="http://x")
    )
    assert not remote.is_transient(PermissionError("denied"))
    assert not remote.is_transient(FileNotFoundError("no bucket"))
    assert not remote.is_transient(OSError(errno.EINVAL, "bad request"))
    assert not remote.is_transient(botocore.exceptions.NoCredentialsError())
    assert not remote.is_transient(ValueError("bug"))
    from runlog.remote._store import backoff_delay

    for attempt in range(8):
        delay = backoff_delay(0.5, attempt)
        ceiling = min(remote.MAX_BACKOFF_S, 0.5 * 2**attempt)
        assert ceiling / 2 <= delay <= ceiling


def test_reading_helpers(tmp_path: Path, memory_url: str) -> None:
    """run.json read from a store (or None); a missing archive URL is an error."""
    fs = fsspec.filesystem("memory")
    base = memory_url.removeprefix("memory:/")
    fs.pipe_file(f"{base}/fw/r1/logs/run.json", b'{"status": "running"}')
    fs.pipe_file(f"{base}/fw/r2/logs/run.json", b"[1, 2")
    assert remote.read_remote_run_json(f"{memory_url}/fw/r1") == {"status": "running"}
    assert remote.read_remote_run_json(f"{memory_url}/fw/r2") is None
    assert remote.read_remote_run_json(f"{memory_url}/fw/r3") is None
    with pytest.raises(ContextError, match="not found in the store"):
        fetch_run(f"{memory_url}/fw/r1/run.tar.gz", tmp_path)
    rows = remote.scan_remote_runs(memory_url)
    assert [(r.run_id, r.status, r.url) for r in rows] == [
        ("r2", "incomplete", f"{memory_url}/fw/r2"),
        ("r1", "running", f"{memory_url}/fw/r1"),
    ]
    assert remote.scan_remote_runs(f"{memory_url}/nothing-here") == []


def test_missing_extra_is_a_configuration_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without fsspec installed: ConfigurationError naming runlog[remote]."""
    run_dir = tmp_path / "runs" / "fw" / "r1"
    (run_dir / "logs").mkdir(parents=True)
    monkeypatch.setitem(sys.modules, "fsspec", None)
    with pytest.raises(ConfigurationError, match=r"runlog\[remote\]"):
        upload_run(run_dir, "s3://b/p")


def test_start_run_with_a_missing_bucket_fails_at_start(
    tmp_path: Path, s3_endpoint: str
) -> None:
    """upload_to a bucket that does not exist: start_run raises, the run is failed."""
    url = f"s3://missing-{uuid.uuid4().hex[:8]}/runs"
    with pytest.raises(UploadError, match=url):
        start_run("fw", "early", runs_dir=tmp_path / "runs", upload_to=url)
    info = json.loads((tmp_path / "runs/fw/early/logs/run.json").read_text())
    assert info["status"] == "failed"
    assert info["reason"] == "the uploader could not be attached"


def test_start_run_with_an_unusable_url_makes_no_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unknown protocol, or no fsspec: ConfigurationError before any mkdir."""
    runs = tmp_path / "runs"
    with pytest.raises(ConfigurationError, match="nosuchproto"):
        start_run("fw", "u1", runs_dir=runs, upload_to="nosuchproto://b/p")
    monkeypatch.setitem(sys.modules, "fsspec", None)
    with pytest.raises(ConfigurationError, match=r"runlog\[remote\]"):
        start_run("fw", "u2", runs_dir=runs, upload_to="s3://b/p")
    assert not runs.exists()
