"""The viewer's app in this process (Starlette's TestClient) over real run dirs."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import orjson
import pytest
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    # Starlette prefers httpx2 for its TestClient; httpx (extra web-tests) works
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

from runlog.errors import RunlogError
from runlog.web import create_app
from runlog.web._server import PAGE_POLICY, _config, bind, hosts_for, start_in_thread

from .runs import make_run, record, step_records, write_records, write_run_json

BASE = "http://127.0.0.1"


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    """A runs dir holding the finished run fw/r1 (41 records)."""
    make_run(tmp_path / "runs", others=30)
    return tmp_path / "runs"


@pytest.fixture
def client(runs: Path) -> Iterator[TestClient]:
    """The app over *runs*, its lifespan run (no warm-up: tests ask first)."""
    with TestClient(create_app(runs, warm=False), base_url=BASE) as test_client:
        yield test_client


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.fixture
def bounded() -> Iterator[list[threading.Event]]:
    """Stopping flags set after 10 s, so a broken live stream fails, not hangs."""
    flags: list[threading.Event] = []
    timer = threading.Timer(10, lambda: [flag.set() for flag in flags])
    timer.start()
    yield flags
    timer.cancel()


def _live_run(runs: Path, run_id: str = "r2") -> Path:
    """A running run (fresh heartbeat, this pid) with step 1 started; its logs."""
    logs = runs / "live" / run_id / "logs"
    write_run_json(
        logs,
        run_id=run_id,
        framework="live",
        status="running",
        ended_at=None,
        heartbeat_at=_now(),
        pid=os.getpid(),
    )
    write_records(
        logs, [record(1, "step_start", component="orchestrator", step=1, run_id=run_id)]
    )
    return logs


def test_the_runs_list_links_each_run_by_its_names(client: TestClient) -> None:
    """GET /api/runs lists fw/r1 with its status, error count and relative link."""
    data = client.get("/api/runs").json()

    (row,) = data["runs"]
    assert (row["framework"], row["run_id"], row["status"]) == ("fw", "r1", "success")
    assert row["href"] == "/runs/fw/r1" and row["errors"] == 2
    assert "path" not in row


def test_pages_and_assets_are_served_as_html_js_and_css(client: TestClient) -> None:
    """/, the run page and both assets come with their types; other names 404."""
    index, page = client.get("/"), client.get("/runs/fw/r1")
    script, style = client.get("/static/viewer.js"), client.get("/static/viewer.css")

    assert b'data-page="runs"' in index.content
    assert b'data-api="/api/runs/fw/r1"' in page.content
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    assert style.headers["content-type"] == "text/css; charset=utf-8"
    assert b"charts-loading" in script.content
    assert client.get("/static/x.js").status_code == 404
    assert client.get("/runs/fw/nope").status_code == 404


def test_the_overview_has_attempts_counts_and_problems(client: TestClient) -> None:
    """The full overview: the retried attempt, per-step counts, problems, links."""
    data = client.get("/api/runs/fw/r1").json()

    statuses = {(b["step"], b["attempt"]): b["status"] for b in data["attempts"]}
    assert statuses == {(1, 1): "retried", (1, 2): "success", (2, 1): "success"}
    assert [s["llm_requests"] for s in data["steps"]] == [1, 0]
    assert data["records_total"] == 41 and data["complete"] is True
    assert [p["text"] for p in data["problems"]] == [
        "step_end: ValueError: bad",
        "slow response",
        "request failed: ValueError: bad price",
    ]
    assert data["links"]["events"] == "/api/runs/fw/r1/events"


def test_the_head_has_header_and_attempts_but_no_counts(client: TestClient) -> None:
    """?part=head: status, attempts and components from run.json and orchestrator."""
    head = client.get("/api/runs/fw/r1?part=head").json()

    assert head["complete"] is False
    assert head["run"]["status"] == "success"
    assert head["run"]["metadata"] == {"model": "test-model"}
    assert [(b["step"], b["attempt"], b["status"]) for b in head["attempts"]] == [
        (1, 1, "retried"),
        (1, 2, "success"),
        (2, 1, "success"),
    ]
    assert head["records_total"] is None and head["problems"] == []
    assert head["components"] == ["adapter", "orchestrator", "validator"]
    assert client.get("/api/runs/fw/r1?part=all").status_code == 400


def test_the_head_is_the_overview_once_it_is_computed(client: TestClient) -> None:
    """After the full overview, ?part=head returns it (complete) at once."""
    client.get("/api/runs/fw/r1")

    head = client.get("/api/runs/fw/r1?part=head").json()

    assert head["complete"] is True and head["records_total"] == 41


def test_records_page_with_an_exact_count_before_the_overview(
    client: TestClient,
) -> None:
    """A small run's first page counts every record without the overview's pass."""
    first = client.get("/api/runs/fw/r1/records?offset=0&limit=10").json()
    second = client.get("/api/runs/fw/r1/records?offset=10&limit=10").json()

    assert (first["matched"], first["exact"], first["total"]) == (41, True, 41)
    assert len(first["rows"]) == len(second["rows"]) == 10
    assert first["rows"][-1][0] <= second["rows"][0][0]
    assert first["limit"] == 10


def test_records_filter_on_the_server(client: TestClient) -> None:
    """level, step, component and q filter; limit is capped at 1000."""
    base = "/api/runs/fw/r1/records"
    client.get("/api/runs/fw/r1")  # counts come from the overview now
    errors = client.get(f"{base}?level=error").json()
    text = client.get(f"{base}?q=BAD%20PRICE&step=2&component=validator").json()
    capped = client.get(f"{base}?limit=5000").json()

    assert [errors["strings"][row[1]] for row in errors["rows"]] == ["error"] * 2
    assert (errors["matched"], errors["total"]) == (2, 41)
    assert [text["strings"][row[4]] for row in text["rows"]] == ["request failed"]
    assert capped["limit"] == 1000 and len(capped["rows"]) == 41


@pytest.mark.parametrize(
    "query", ["limit=ten", "offset=-1", "level=loud", "step=two", "limit=1e3"]
)
def test_a_bad_records_query_is_400_naming_it(client: TestClient, query: str) -> None:
    """A value that is not an int >= 0, or an unknown level, is 400 with a reason."""
    reply = client.get(f"/api/runs/fw/r1/records?{query}")

    assert reply.status_code == 400
    assert query.split("=")[1] in reply.json()["error"]


def test_a_big_run_first_page_is_a_bound_until_the_overview(tmp_path: Path) -> None:
    """Past the quick count the total is unknown, then exact once the overview is."""
    logs = tmp_path / "runs" / "fw" / "big" / "logs"
    write_run_json(logs, run_id="big")
    line = orjson.dumps(record(1, "tick", step=1, run_id="big")) + b"\n"
    (logs / "step_001").mkdir(parents=True)
    (logs / "step_001" / "adapter.log").write_bytes(line * 10_300)
    with TestClient(create_app(tmp_path / "runs", warm=False), base_url=BASE) as client:
        url = "/api/runs/fw/big/records?limit=200"
        before = client.get(url).json()
        client.get("/api/runs/fw/big")
        after = client.get(url).json()

    assert (before["matched"], before["exact"], before["total"]) == (
        10_200,
        False,
        None,
    )
    assert (after["matched"], after["exact"], after["total"]) == (10_300, True, 10_300)


def test_the_report_download_is_an_attachment(client: TestClient) -> None:
    """GET .../report.html is the run's report, named r1.report.html."""
    reply = client.get("/runs/fw/r1/report.html")

    assert reply.headers["content-disposition"] == (
        'attachment; filename="r1.report.html"'
    )
    assert b'id="runlog-data"' in reply.content and b'"run_id":"r1"' in reply.content


@pytest.mark.parametrize(
    "path",
    [
        "/runs/..%2F..%2Fetc/passwd",
        "/api/runs/..%2F..%2F/r1",
        "/api/runs/fw/.hidden",
        "/api/runs/fw/r1%00/records",
        "/api/runs/fw/nosuchrun",
        "/api/runs/fw/nosuchrun/records",
        "/api/runs/fw/nosuchrun/events",
        "/runs/fw/nosuchrun/report.html",
        "/static/..%2F_server.py",
    ],
)
def test_traversal_and_unknown_names_are_404(client: TestClient, path: str) -> None:
    """Encoded traversal, unsafe and unknown names get 404/400, never a file."""
    reply = client.get(path)

    assert reply.status_code in (400, 404)
    assert b"root:" not in reply.content and b"import" not in reply.content


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_other_methods_are_405(client: TestClient, runs: Path, method: str) -> None:
    """Any method but GET/HEAD is 405 with Allow, and nothing changes on disk."""
    before = sorted(str(p) for p in runs.rglob("*"))

    reply = client.request(method, "/api/runs/fw/r1")

    assert reply.status_code == 405
    assert reply.headers["allow"] == "GET, HEAD"
    assert sorted(str(p) for p in runs.rglob("*")) == before


def test_responses_carry_the_locked_down_headers(client: TestClient) -> None:
    """Pages and JSON carry the CSP, nosniff, no-referrer and DENY framing."""
    for path in ("/", "/runs/fw/r1", "/api/runs", "/api/runs/fw/r1"):
        headers = client.get(path).headers
        assert headers["content-security-policy"] == PAGE_POLICY
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["x-frame-options"] == "DENY"


def test_a_foreign_host_is_400(client: TestClient) -> None:
    """A Host header naming another host (DNS rebinding) is refused."""
    assert client.get("/api/runs", headers={"Host": "evil.example"}).status_code == 400
    assert client.get("/api/runs", headers={"Host": "localhost"}).status_code == 200


def test_hosts_for_a_wildcard_bind_accept_any_name() -> None:
    """Bound to 0.0.0.0 any Host is accepted; a host name joins the local ones."""
    assert hosts_for("0.0.0.0") == ["*"]
    assert "box.lan" in hosts_for("box.lan") and "127.0.0.1" in hosts_for("box.lan")


def test_an_unreadable_run_is_a_500_json_naming_why(
    client: TestClient, runs: Path
) -> None:
    """A run.json that is a FIFO: the overview is 500 JSON naming run.json."""
    logs = runs / "fw" / "fifo" / "logs"
    logs.mkdir(parents=True)
    os.mkfifo(logs / "run.json")

    reply = client.get("/api/runs/fw/fifo")

    assert reply.status_code == 500
    assert reply.headers["content-type"] == "application/json"
    assert "run.json" in reply.json()["error"]


def test_the_event_stream_of_a_finished_run_ends(client: TestClient) -> None:
    """A finished run's stream says so and closes; a bad `from` is 400."""
    reply = client.get("/api/runs/fw/r1/events")

    assert reply.headers["content-type"].startswith("text/event-stream")
    assert reply.text == 'retry: 1000\n\nevent: end\ndata: {"status":"finished"}\n\n'
    assert client.get("/api/runs/fw/r1/events?from=[1]").status_code == 400
    assert client.get("/api/runs/fw/r1/events?from={").status_code == 400
    bad = quote('{"../x.log": 1}')
    assert client.get(f"/api/runs/fw/r1/events?from={bad}").status_code == 400


def test_a_live_run_streams_a_record_appended_while_open(
    runs: Path, bounded: list[threading.Event]
) -> None:
    """A record appended to the live run's file arrives as an event, then the end."""
    logs = _live_run(runs)
    app = create_app(runs, poll_interval_s=0.05, warm=False)
    bounded.append(app.state.runlog.stopping)
    with TestClient(app, base_url=BASE) as client:
        head = client.get("/api/runs/live/r2?part=head").json()
        assert head["run"]["status"] == "running"
        ends = quote(orjson.dumps(head["ends"]).decode())
        lines: list[str] = []
        with client.stream("GET", f"/api/runs/live/r2/events?from={ends}") as reply:
            for line in reply.iter_lines():
                lines.append(line)
                if line == "retry: 1000":
                    write_records(logs, [record(2, "fresh", step=1, run_id="r2")])
                if line == "event: records":
                    # the run ends: the stream must say so and close
                    write_records(
                        logs, [*step_records(1, 1, 3)[1:], record(4, "run_end")]
                    )
                    write_run_json(logs, run_id="r2", framework="live")
                assert len(lines) < 100

    events = [line for line in lines if line.startswith("event: ")]
    assert events[0] == "event: records" and events[-1] == "event: end"
    assert "event: overview" in events
    assert '"fresh"' in lines[lines.index("event: records") + 1]


def test_a_live_stream_without_from_starts_at_the_end(
    runs: Path, bounded: list[threading.Event]
) -> None:
    """Without `from`, only records written after the stream opened are sent."""
    logs = _live_run(runs, "r3")
    app = create_app(runs, poll_interval_s=0.05, warm=False)
    bounded.append(app.state.runlog.stopping)
    with TestClient(app, base_url=BASE) as client:
        data: list[str] = []
        with client.stream("GET", "/api/runs/live/r3/events") as reply:
            for line in reply.iter_lines():
                if line == "retry: 1000":
                    write_records(logs, [record(2, "late", step=1, run_id="r3")])
                if line.startswith("data: "):
                    data.append(line)
                    write_run_json(logs, run_id="r3", framework="live")

    assert '"late"' in data[0] and "step_start" not in data[0]
    assert data[-1] == 'data: {"status":"finished"}'


def test_warm_up_computes_the_newest_overviews(runs: Path) -> None:
    """With warm=True the newest finished run's overview is cached soon after start."""
    _live_run(runs)  # a running run is left for its page
    app = create_app(runs)
    with TestClient(app, base_url=BASE) as client:
        state = app.state.runlog
        deadline = time.monotonic() + 5
        while not len(state.overviews) and time.monotonic() < deadline:
            time.sleep(0.02)
        head = client.get("/api/runs/fw/r1?part=head").json()

    assert [key[0] for key in state.overviews] == [str((runs / "fw" / "r1").resolve())]
    assert head["complete"] is True


def test_warm_up_of_an_unreadable_run_is_left_for_its_page(runs: Path) -> None:
    """A run whose files cannot be read does not stop the warm-up or the app."""
    logs = runs / "fw" / "r0" / "logs"
    shutil.copytree(runs / "fw" / "r1" / "logs", logs)
    (logs / "run.json").unlink()
    os.mkfifo(logs / "run.json")
    app = create_app(runs, warm=False)
    state = app.state.runlog

    state._warm_quietly(None)

    assert [key[0] for key in state.overviews] == [str((runs / "fw" / "r1").resolve())]


def test_the_server_thread_serves_and_stops(runs: Path) -> None:
    """start_in_thread serves over a real socket and its stop ends the thread."""
    sock = bind("127.0.0.1", 0)
    thread, stop = start_in_thread(create_app(runs, warm=False), sock)
    port = sock.getsockname()[1]
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(b"GET /api/runs HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            reply = conn.recv(4096)
    finally:
        stop()
        thread.join(10)

    assert reply.startswith(b"HTTP/1.1 200")
    assert not thread.is_alive()


def test_shutdown_waits_for_requests_at_most_two_seconds(runs: Path) -> None:
    """uvicorn is told to give up on open requests 2 s after Ctrl-C/SIGTERM."""
    config = _config(create_app(runs, warm=False))

    assert config.timeout_graceful_shutdown == 2


def test_binding_a_busy_port_or_bad_host_names_it() -> None:
    """A port in use or a host that does not resolve is a RunlogError naming it."""
    busy = bind("127.0.0.1", 0)
    port = busy.getsockname()[1]
    try:
        with pytest.raises(RunlogError, match=f"port {port}"):
            bind("127.0.0.1", port)
    finally:
        busy.close()
    with pytest.raises(RunlogError, match=r"no-such-host\.invalid"):
        bind("no-such-host.invalid", 0)


def test_a_stream_open_when_the_server_stops_ends(runs: Path) -> None:
    """Setting the app's stopping flag ends a live run's open stream."""
    _live_run(runs, "r4")
    app = create_app(runs, poll_interval_s=0.05, warm=False)
    stopper = threading.Timer(0.3, app.state.runlog.stopping.set)
    with TestClient(app, base_url=BASE) as client:
        stopper.start()
        reply = client.get("/api/runs/live/r4/events")
    stopper.join()

    assert reply.text == "retry: 1000\n\n"
