"""`runlog serve`: a real uvicorn on 127.0.0.1, asked over HTTP like a browser would."""

from __future__ import annotations

import http.client
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import pytest

from runlog.cli import main
from runlog.web import create_app
from runlog.web._server import PAGE_POLICY, bind, start_in_thread
from tests.unit.web.runs import (
    make_demo,
    make_run,
    record,
    write_records,
    write_run_json,
)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class Server:
    port: int
    runs: Path
    demo: Path

    def request(
        self, path: str, method: str = "GET", headers: dict[str, str] | None = None
    ) -> Reply:
        """One request, *path* sent exactly as given (no normalisation)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, headers=headers or {})
            resp = conn.getresponse()
            return Reply(
                resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
            )
        finally:
            conn.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The app over a runs dir holding the demo run and fw/r1, in a thread."""
    runs = tmp_path_factory.mktemp("serve") / "runs"
    demo = make_demo(runs)
    make_run(runs, others=30)
    sock = bind("127.0.0.1", 0)
    thread, stop = start_in_thread(create_app(runs, poll_interval_s=0.1), sock)
    yield Server(sock.getsockname()[1], runs, demo)
    stop()
    thread.join(10)
    assert not thread.is_alive()


def test_runs_list_has_both_runs_with_links(server: Server) -> None:
    """GET /api/runs lists the two runs, each with a relative link to its page."""
    data = server.request("/api/runs").json()

    rows = {(row["framework"], row["run_id"]): row for row in data["runs"]}
    # other tests add live runs to the same directory
    assert {("demo", server.demo.name), ("fw", "r1")} <= set(rows)
    assert rows[("fw", "r1")]["href"] == "/runs/fw/r1"
    assert rows[("fw", "r1")]["status"] == "success"
    assert rows[("fw", "r1")]["errors"] == 2
    assert all("path" not in row for row in data["runs"])


def test_pages_load_the_viewer_from_the_same_origin(server: Server) -> None:
    """/ and the run page are HTML naming /static/viewer.js, served with its type."""
    index = server.request("/")
    page = server.request("/runs/fw/r1")
    script = server.request("/static/viewer.js")

    assert index.status == page.status == script.status == 200
    assert b'data-page="runs"' in index.body
    assert b'data-api="/api/runs/fw/r1"' in page.body
    assert b'<script src="/static/viewer.js" defer></script>' in page.body
    assert script.headers["content-type"].startswith("text/javascript")
    assert server.request("/static/other.js").status == 404


def test_run_overview_has_attempts_steps_and_problems(server: Server) -> None:
    """The overview JSON has the retried attempt, per-step counts and the problems."""
    data = server.request(f"/api/runs/demo/{server.demo.name}").json()

    statuses = {(b["step"], b["attempt"]): b["status"] for b in data["attempts"]}
    assert statuses[(3, 1)] == "retried"
    assert [s["step"] for s in data["steps"]] == [1, 2, 3, 4, 5]
    assert any(p["level"] == "error" and p["exception"] for p in data["problems"])
    assert data["links"]["report"] == f"/runs/demo/{server.demo.name}/report.html"


def test_records_come_page_by_page_with_filters(server: Server) -> None:
    """offset/limit page through the records; level and q filter on the server."""
    base = "/api/runs/fw/r1/records"
    first = server.request(f"{base}?offset=0&limit=10").json()
    second = server.request(f"{base}?offset=10&limit=10").json()
    errors = server.request(f"{base}?level=error").json()
    text = server.request(f"{base}?q=BAD%20PRICE&step=2").json()
    capped = server.request(f"{base}?limit=5000").json()

    assert len(first["rows"]) == len(second["rows"]) == 10
    assert first["rows"][-1][0] <= second["rows"][0][0]
    assert (first["matched"], first["exact"], first["total"]) == (41, True, 41)
    levels = [errors["strings"][row[1]] for row in errors["rows"]]
    assert levels == ["error", "error"]
    assert [text["strings"][row[4]] for row in text["rows"]] == ["request failed"]
    assert capped["limit"] == 1000
    assert server.request(f"{base}?limit=ten").status == 400
    assert server.request(f"{base}?level=loud").status == 400


def test_report_download_is_the_report(server: Server) -> None:
    """GET .../report.html is an attachment holding the run's data."""
    reply = server.request("/runs/fw/r1/report.html")

    assert reply.status == 200
    assert (
        reply.headers["content-disposition"] == 'attachment; filename="r1.report.html"'
    )
    assert b'id="runlog-data"' in reply.body


@pytest.mark.parametrize(
    "path",
    [
        "/../../etc/passwd",
        "/runs/../../etc/passwd",
        "/runs/..%2F..%2Fetc/passwd",
        "/runs/%2e%2e/%2e%2e",
        "/api/runs/fw/..%2F..%2F..%2Fetc%2Fpasswd",
        "/api/runs/..%2F..%2F/r1",
        "/api/runs/fw/.hidden",
        "/static/..%2F_server.py",
        "/static/%2e%2e%2f%2e%2e%2fpyproject.toml",
        "/runs/fw/r1/..%2F..%2F..%2Fpyproject.toml",
        "/api/runs/fw/r1%00/records",
        "/api/runs/fw/nosuchrun",
    ],
)
def test_no_path_reaches_a_file_outside_the_runs(server: Server, path: str) -> None:
    """Traversal, encoded traversal and bad names get 404/400, never a file."""
    reply = server.request(path)

    assert reply.status in (400, 404)
    assert b"root:" not in reply.body and b"[project]" not in reply.body


def test_a_symlinked_run_leading_outside_is_not_served(server: Server) -> None:
    """A run directory that is a link out of the runs dir is 404."""
    outside = server.runs.parent / "outside" / "fw" / "r9"
    make_run(outside.parent.parent, "r9")
    link = server.runs / "fw" / "r9"
    link.symlink_to(outside)
    try:
        assert server.request("/api/runs/fw/r9").status == 404
    finally:
        link.unlink()


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_the_server_is_read_only(server: Server, method: str) -> None:
    """Any method but GET/HEAD is 405, on every path, and nothing changes on disk."""
    before = sorted(p.name for p in (server.runs / "fw" / "r1").rglob("*"))

    for path in ("/api/runs", "/api/runs/fw/r1", "/runs/fw/r1/report.html", "/x"):
        assert server.request(path, method).status == 405

    assert sorted(p.name for p in (server.runs / "fw" / "r1").rglob("*")) == before


def test_responses_carry_csp_and_nosniff(server: Server) -> None:
    """Pages and JSON carry the CSP, nosniff, no-referrer and DENY framing."""
    for path in ("/", "/runs/fw/r1", "/api/runs"):
        headers = server.request(path).headers
        assert headers["content-security-policy"] == PAGE_POLICY
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["x-frame-options"] == "DENY"
    assert PAGE_POLICY.startswith("default-src 'self'; script-src 'self';")


def test_a_foreign_host_name_is_refused(server: Server) -> None:
    """A request naming another host (DNS rebinding) is 400."""
    assert server.request("/api/runs", headers={"Host": "evil.example"}).status == 400
    assert server.request("/api/runs", headers={"Host": "localhost"}).status == 200


def test_a_run_that_cannot_be_read_is_a_500_naming_why(server: Server) -> None:
    """A run.json that is a FIFO gives 500 with the reason, and the list goes on."""
    run_dir = server.runs / "fw" / "fifo"
    (run_dir / "logs").mkdir(parents=True)
    os.mkfifo(run_dir / "logs" / "run.json")
    try:
        reply = server.request("/api/runs/fw/fifo")
        listed = server.request("/api/runs").json()
    finally:
        shutil.rmtree(run_dir)

    assert reply.status == 500
    assert "run.json" in reply.json()["error"]
    statuses = {row["run_id"]: row["status"] for row in listed["runs"]}
    assert statuses["fifo"] == "unreadable"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_events_deliver_a_new_record_of_a_live_run_within_2s(server: Server) -> None:
    """The SSE stream sends a record appended to a running run within 2 s, then ends."""
    logs = server.runs / "live" / "r2" / "logs"
    write_run_json(
        logs,
        run_id="r2",
        framework="live",
        status="running",
        ended_at=None,
        heartbeat_at=_now(),
        pid=os.getpid(),
    )
    write_records(logs, [record(1, "step_start", component="orchestrator", step=1)])
    overview = server.request("/api/runs/live/r2").json()
    ends = quote(orjson.dumps(overview["ends"]).decode())
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.request("GET", f"/api/runs/live/r2/events?from={ends}")
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.getheader("content-type", "").startswith("text/event-stream")
    assert resp.readline() == b"retry: 1000\n"

    written = time.monotonic()
    write_records(logs, [record(2, "fresh_record", step=1, run_id="r2")])
    event = data = b""
    while event != b"event: records\n":
        event = resp.readline()
    data = resp.readline()
    took = time.monotonic() - written
    write_run_json(logs, run_id="r2", framework="live", status="success")
    rest = resp.read()
    conn.close()

    assert took < 2.0
    assert b"fresh_record" in data and b"step_start" not in data
    assert rest.endswith(b'event: end\ndata: {"status":"finished"}\n\n')


def test_events_of_a_finished_run_end_at_once(server: Server) -> None:
    """A finished run's stream says so and closes; a bad `from` is 400."""
    reply = server.request("/api/runs/fw/r1/events")

    assert reply.body.endswith(b'event: end\ndata: {"status":"finished"}\n\n')
    assert server.request("/api/runs/fw/r1/events?from=[1]").status == 400
    bad = quote('{"../x.log": 1}')
    assert server.request(f"/api/runs/fw/r1/events?from={bad}").status == 400


def test_serve_prints_its_address_and_serves(tmp_path: Path) -> None:
    """`runlog serve DIR --port 0` prints `serving DIR at http://127.0.0.1:PORT/`."""
    runs = tmp_path / "runs"
    make_run(runs)
    with subprocess.Popen(
        [sys.executable, "-m", "runlog", "serve", str(runs), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            prefix = f"serving {runs} at http://127.0.0.1:"
            assert line.startswith(prefix) and line.endswith("/\n")
            port = int(line[len(prefix) : -2])
            reply = Server(port, runs, runs).request("/api/runs")
            assert [row["run_id"] for row in reply.json()["runs"]] == ["r1"]
        finally:
            proc.terminate()
            proc.wait(10)


def test_serve_without_the_web_extra_names_it(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Without starlette/uvicorn importable, serve exits 2 naming runlog[web]."""
    monkeypatch.setitem(sys.modules, "uvicorn", None)

    assert main(["serve", str(tmp_path)]) == 2

    assert "pip install 'runlog[web]'" in capsys.readouterr().err


def test_serve_of_a_missing_dir_or_a_busy_port_is_an_error(
    tmp_path: Path, server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    """A runs dir that is not there, or a port in use, exits 2 with one line."""
    assert main(["serve", str(tmp_path / "none"), "--port", "0"]) == 2
    port = str(server.port)
    assert main(["serve", str(server.runs), "--port", port]) == 2

    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("runlog: error: runs directory")
    assert err[1].startswith(f"runlog: error: cannot listen on '127.0.0.1' port {port}")


def test_stopping_the_server_ends_an_open_event_stream(tmp_path: Path) -> None:
    """Stopping (as Ctrl-C does) closes a live run's stream at once, not after it."""
    logs = tmp_path / "runs" / "live" / "r3" / "logs"
    write_run_json(
        logs, run_id="r3", status="running", heartbeat_at=_now(), pid=os.getpid()
    )
    write_records(logs, [record(1, "step_start", component="orchestrator", step=1)])
    sock = bind("127.0.0.1", 0)
    thread, stop = start_in_thread(create_app(tmp_path / "runs", warm=False), sock)
    conn = http.client.HTTPConnection("127.0.0.1", sock.getsockname()[1], timeout=10)
    conn.request("GET", "/api/runs/live/r3/events")
    resp = conn.getresponse()
    assert resp.readline() == b"retry: 1000\n"

    stopped = time.monotonic()
    stop()
    resp.read()
    thread.join(10)
    conn.close()

    assert time.monotonic() - stopped < 2.0
    assert not thread.is_alive()
