"""Children and pool tasks export to a local OTLP receiver; uploads stay quiet."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import tarfile
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip(
    "opentelemetry.exporter.otlp.proto.http",
    reason="needs the otel extra: pip install 'runlog[otel]'",
)
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
)

from tests.conftest import read_records

ROOT = Path(__file__).resolve().parents[2]


class _Receiver(BaseHTTPRequestHandler):
    """Accepts OTLP/HTTP protobuf log exports on POST /v1/logs."""

    bodies: list[bytes]

    def do_POST(self) -> None:  # http.server's method name
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        if self.path == "/v1/logs":
            self.server.bodies.append(body)  # type: ignore[attr-defined]  # set below
            self.send_response(200)
        else:
            self.send_response(404)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Requests are not printed: the test reads what was received."""


@pytest.fixture
def otlp_receiver() -> Iterator[tuple[str, list[bytes]]]:
    """An OTLP/HTTP receiver on 127.0.0.1; yields its endpoint and received bodies."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    bodies: list[bytes] = []
    server.bodies = bodies  # type: ignore[attr-defined]  # read by the handler
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", bodies
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return tuple(_value(v) for v in any_value.array_value.values)
    return getattr(any_value, kind) if kind else None


def decoded(bodies: list[bytes]) -> list[dict[str, Any]]:
    """Every exported LogRecord: body, attributes and its resource's attributes."""
    records = []
    for body in bodies:
        request = ExportLogsServiceRequest()
        request.ParseFromString(body)
        for resource_logs in request.resource_logs:
            resource = {
                kv.key: _value(kv.value) for kv in resource_logs.resource.attributes
            }
            for scope_logs in resource_logs.scope_logs:
                for record in scope_logs.log_records:
                    records.append(
                        {
                            "body": _value(record.body),
                            "attrs": {
                                kv.key: _value(kv.value) for kv in record.attributes
                            },
                            "resource": resource,
                        }
                    )
    return records


CHILDREN_SCRIPT = textwrap.dedent(
    """
    import json
    import multiprocessing as mp
    import os
    import sys

    import runlog
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.resources import Resource
    from runlog.otel import enable_otel


    class Opaque:
        def __str__(self):
            return "<object Opaque>"


    def child(tag):
        log = runlog.get_logger("child", component="adapter")
        log.info("child_record", tag=tag, thing=Opaque(), prompt_tokens=12,
                 completion_tokens=5)
        try:
            raise ValueError("child boom")
        except ValueError:
            log.exception("child_failed", tag=tag)


    def task(i):
        runlog.get_logger("pool", component="worker").info("pool_task", i=i)
        return os.getpid()


    if __name__ == "__main__":
        provider = LoggerProvider(resource=Resource.create({"service.name": "bench"}))
        provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter()))
        enable_otel(provider)
        spawn = mp.get_context("spawn")
        # made before the run: its workers start at the first submit, in step 1
        pool = runlog.ContextProcessPoolExecutor(2, mp_context=spawn)
        run = runlog.start_run("fw", "r1", runs_dir=sys.argv[1], archive=False)
        codes = []
        with run.step(1):
            for context, tag in ((spawn, "spawn"), (mp.get_context("fork"), "fork")):
                process = context.Process(target=child, args=(tag,))
                process.start()
                process.join()
                codes.append(process.exitcode)
            pids = set(pool.map(task, range(0, 4)))
        with run.step(2):
            pids |= set(pool.map(task, range(4, 8)))
        pool.shutdown(wait=True)
        run.finish()
        provider.shutdown()
        report = {"codes": codes, "parent": os.getpid(), "workers": sorted(pids)}
        print(json.dumps(report))
    """
)


def _clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RUNLOG_", "OTEL_", "AWS_"))
    }
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def test_spawn_fork_and_pool_children_export_to_otlp(
    tmp_path: Path, otlp_receiver: tuple[str, list[bytes]]
) -> None:
    """Spawn and fork children and pool tasks export each record once, as in files."""
    endpoint, bodies = otlp_receiver
    script = tmp_path / "parent.py"
    script.write_text(CHILDREN_SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "runs")],
        env=_clean_env(OTEL_EXPORTER_OTLP_ENDPOINT=endpoint),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["codes"] == [0, 0]
    assert report["parent"] not in report["workers"]
    records = decoded(bodies)
    logs = tmp_path / "runs" / "fw" / "r1" / "logs"
    on_disk = read_records(logs / "step_001" / "adapter.log")
    for tag in ("spawn", "fork"):
        sent = [r for r in records if r["attrs"].get("tag") == tag]
        assert sorted(r["body"] for r in sent) == ["child_failed", "child_record"]
        first = next(r for r in sent if r["body"] == "child_record")
        written = next(
            r for r in on_disk if r["tag"] == tag and r["event"] == "child_record"
        )
        assert first["attrs"]["thing"] == written["thing"] == "<object Opaque>"
        assert first["attrs"]["runlog.step"] == 1
        assert first["attrs"]["runlog.component"] == "adapter"
        assert first["attrs"]["gen_ai.usage.input_tokens"] == 12
        assert first["attrs"]["gen_ai.usage.output_tokens"] == 5
        failed = next(r for r in sent if r["body"] == "child_failed")
        assert failed["attrs"]["exception.type"] == "ValueError"
        assert failed["attrs"]["exception.message"] == "child boom"
        assert first["resource"]["service.name"] == "bench"
    spawned = next(r for r in records if r["attrs"].get("tag") == "spawn")
    assert spawned["resource"]["process.pid"] not in (report["parent"], None)
    worker_pids = {
        r["resource"]["process.pid"] for r in records if r["body"] == "pool_task"
    }
    assert worker_pids <= set(report["workers"])
    tasks = {
        r["attrs"]["i"]: r["attrs"]["runlog.step"]
        for r in records
        if r["body"] == "pool_task"
    }
    assert tasks == {i: 1 if i < 4 else 2 for i in range(8)}
    assert len([r for r in records if r["body"] == "pool_task"]) == 8
    step2 = read_records(logs / "step_002" / "worker.log")
    assert sorted(r["i"] for r in step2) == [4, 5, 6, 7]


UPLOAD_SCRIPT = textwrap.dedent(
    """
    import logging
    import os
    import socket
    import sys

    from moto.server import ThreadedMotoServer

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    # the server's request log is not under test
    logging.getLogger("werkzeug").disabled = True
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    os.environ["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{port}"

    import fsspec
    import runlog


    class Seen(logging.Handler):
        # proves the notice was logged in this process, so the check can fail
        def emit(self, record):
            if record.getMessage().startswith("Found credentials"):
                print("credential notice seen")


    logging.getLogger().addHandler(Seen())
    logging.getLogger().setLevel(logging.INFO)

    fsspec.filesystem("s3").mkdir("runs-bucket")
    fsspec.filesystem("s3").clear_instance_cache()
    run = runlog.start_run(
        "fw", "r1", runs_dir=sys.argv[1], upload_to="s3://runs-bucket/runs"
    )
    with run.step(1):
        runlog.get_logger("t", component="adapter").info("work")
        # the application's own use of the same library still lands
        logging.getLogger("botocore.app").warning("app botocore record")
    run.finish()
    server.stop()
    """
)


def test_uploader_libraries_never_land_in_the_run_they_upload(tmp_path: Path) -> None:
    """botocore's credential notice is in no file nor the archive; the app's is kept."""
    pytest.importorskip("s3fs", reason="needs the remote extra")
    pytest.importorskip("moto.server", reason="needs moto[server]")
    script = tmp_path / "upload.py"
    script.write_text(UPLOAD_SCRIPT)
    env = _clean_env(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing-secret-value",
        AWS_DEFAULT_REGION="us-east-1",
        RUNLOG_UPLOAD_INTERVAL_S="0.05",
    )
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "runs")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    run_dir = tmp_path / "runs" / "fw" / "r1"
    texts = [p.read_bytes() for p in run_dir.rglob("*") if p.is_file()]
    with tarfile.open(run_dir / "run.tar.gz") as archive:
        for member in archive.getmembers():
            extracted = archive.extractfile(member)
            if extracted is not None:
                texts.append(extracted.read())
    for noise in (b"Found credentials", b"Found endpoint", b"botocore.credentials"):
        assert not [t for t in texts if noise in t], noise
    kept = read_records(run_dir / "logs" / "step_001" / "external.log")
    assert [(r["logger"], r["event"]) for r in kept] == [
        ("botocore.app", "app botocore record")
    ]
    # logged in this process all the same: kept out of the run only
    assert "credential notice seen" in done.stdout
