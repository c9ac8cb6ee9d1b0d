"""``runlog serve``: a real server process, its pages in chromium, its routes raw."""

from __future__ import annotations

import http.client
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest

from tests.browser.conftest import (
    P_IMG,
    P_SCRIPT,
    Server,
    assert_no_script_ran,
    assert_probe_can_fail,
    child_env,
    exercise_run_page,
    make_demo_run,
    make_hostile_run,
    run_records,
    serving,
    wait_ready,
)

if TYPE_CHECKING:
    import httpx
    from playwright.sync_api import Page, Request

pytestmark = pytest.mark.browser

LIVE_LATENCY_S: Final = 2.0
LEAKED: Final = "record-from-outside-the-runs-dir"
_FAILED_RUN: Final = """
import sys
import runlog

runlog.configure(console_format="off")
try:
    with runlog.start_run("pipeline", "r-failed", sys.argv[1], archive=False) as run:
        with run.step(1, name="fetch"):
            raise RuntimeError("upstream is down")
except RuntimeError:
    pass
"""
# a running run: a record every 0.3 s, a new step every 4 records, until the
# stop file appears
_LIVE_RUN: Final = """
import pathlib
import sys
import time
import runlog

runs, stop = sys.argv[1], pathlib.Path(sys.argv[2])
runlog.configure(console_format="off")
log = runlog.get_logger("live", component="worker")
deadline = time.monotonic() + 60
with runlog.start_run("live", "r-live", runs, archive=False) as run:
    tick = step = 0
    while not stop.exists() and time.monotonic() < deadline:
        step += 1
        with run.step(step, name=f"phase-{step}"):
            for _ in range(4):
                tick += 1
                log.info(f"tick_{tick:03d}", n=tick)
                time.sleep(0.3)
                if stop.exists():
                    break
"""


_MANY_RECORDS: Final = """
import sys
import runlog

runlog.configure(console_format="off", combined=False)
with runlog.start_run("many", "r-many", sys.argv[1], archive=False) as run:
    log = runlog.get_logger("many", component="worker")
    with run.step(1, name="bulk"):
        for n in range(3000):
            log.info("item", n=n)
"""


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A runs dir with the demo run (success) and a run whose step failed."""
    runs = tmp_path_factory.mktemp("serve") / "runs"
    logs = make_demo_run(runs) / "logs"
    # links out of the run: what they point at must never be served
    outside = runs.parent / "outside"
    (outside / "step_009").mkdir(parents=True)
    leak = orjson.dumps({**run_records(logs.parent)[0], "event": LEAKED}) + b"\n"
    (outside / "secret.log").write_bytes(leak)
    (outside / "step_009" / "adapter.log").write_bytes(leak)
    (logs / "step_001" / "leak.log").symlink_to(outside / "secret.log")
    (logs / "step_009").symlink_to(outside / "step_009")
    subprocess.run(
        [sys.executable, "-c", _FAILED_RUN, str(runs)],
        check=True,
        env=child_env(),
        timeout=60,
    )
    return runs


@pytest.fixture(scope="module")
def server(two_runs: Path) -> Iterator[Server]:
    """``runlog serve RUNS --port 0`` over the two runs."""
    with serving(two_runs) as running:
        yield running


def _demo_id(runs: Path) -> str:
    (run_dir,) = (runs / "demo").iterdir()
    return run_dir.name


def _files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _ts(record: dict[str, object]) -> datetime:
    return datetime.fromisoformat(str(record["ts"]))


def test_the_server_listens_on_127_0_0_1_only(server: Server) -> None:
    """It prints an http://127.0.0.1:PORT/ URL and listens on no other address."""
    listening = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, port = local.split(":")
        if state == "0A" and int(port, 16) == server.port:
            listening.add(address)

    assert server.url == f"http://127.0.0.1:{server.port}/"
    assert server.port != 0
    assert listening == {"0100007F"}


def test_the_runs_list_shows_both_runs_with_their_status(
    page: Page, server: Server, two_runs: Path, page_errors: list[str]
) -> None:
    """The list page has one row per run, with its id and status."""
    page.goto(server.url)
    wait_ready(page)
    rows = page.locator("[data-testid=run-row]").evaluate_all(
        "(rows) => rows.map((r) => [r.dataset.runId, r.dataset.status])"
    )

    assert sorted(rows) == sorted(
        [[_demo_id(two_runs), "success"], ["r-failed", "failed"]]
    )
    assert page_errors == []


def test_the_runs_filter_narrows_the_list(page: Page, server: Server) -> None:
    """Typing a run id in the filter leaves that run's row alone."""
    page.goto(server.url)
    wait_ready(page)
    page.locator("input[data-testid=runs-filter]").fill("r-failed")
    rows = page.locator("[data-testid=run-row]")
    rows.filter(has_not_text="r-failed").first.wait_for(state="hidden")

    visible = [r for r in rows.all() if r.is_visible()]
    assert [r.get_attribute("data-run-id") for r in visible] == ["r-failed"]


def test_a_run_opens_from_the_list_and_pages_its_records_from_the_server(
    page: Page, server: Server, two_runs: Path, page_errors: list[str]
) -> None:
    """Clicking the demo row opens its page: 6 bars, records fetched from /api."""
    run_id = _demo_id(two_runs)
    asked: list[str] = []

    def note(request: Request) -> None:
        asked.append(request.url)

    page.on("request", note)
    page.goto(server.url)
    wait_ready(page)
    page.locator(f"[data-testid=run-row][data-run-id='{run_id}']").locator(
        f"a[href$='/runs/demo/{run_id}']"
    ).first.click()
    page.wait_for_url(f"**/runs/demo/{run_id}")
    wait_ready(page)
    view = page.locator("[data-testid=run-view]")
    records = run_records(two_runs / "demo" / run_id)
    errors = [r for r in records if r["level"] in ("error", "critical")]

    assert view.get_attribute("data-run-id") == run_id
    assert view.get_attribute("data-status") == "success"
    assert page.locator("[data-testid=attempt-bar]").count() == 6
    assert any(f"/api/runs/demo/{run_id}/records" in url for url in asked)
    page.locator("select[data-testid=filter-level]").select_option("error")
    page.locator("[data-testid=records-count]").filter(
        has_text=f"{len(errors)} of {len(records)} records"
    ).wait_for()
    levels = page.locator("[data-testid=record-row]").evaluate_all(
        "(rows) => rows.map((r) => [r.dataset.step, r.dataset.level])"
    )
    assert sorted(levels) == sorted([str(r["step"]), r["level"]] for r in errors)
    assert page_errors == []


def test_the_run_page_offers_its_report_for_download(
    server: Server, two_runs: Path, http: httpx.Client
) -> None:
    """GET /runs/FW/ID/report.html returns the run's one-file report."""
    run_id = _demo_id(two_runs)
    response = http.get(server.at(f"/runs/demo/{run_id}/report.html"))

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert 'id="runlog-data"' in response.text
    assert run_id in response.text


def test_the_api_lists_both_runs(
    server: Server, two_runs: Path, http: httpx.Client
) -> None:
    """GET /api/runs is JSON naming both runs."""
    response = http.get(server.at("/api/runs"))

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body = response.text
    assert _demo_id(two_runs) in body and "r-failed" in body
    orjson.loads(body)


@pytest.mark.parametrize(
    "path",
    [
        "/../../etc/passwd",
        "/..%2F..%2Fetc%2Fpasswd",
        "/runs/..%2F..%2Fetc/passwd",
        "/runs/demo/..%2f..",
        "/runs/demo/..%2f..%2f..%2f..%2fetc%2fpasswd",
        "/runs/%2e%2e/%2e%2e",
        "/runs/demo/.hidden",
        "/api/runs/..%2F..%2F..%2Fetc/passwd",
        "/api/runs/demo/..%2F..%2F..%2F..%2Fetc%2Fpasswd/records",
        "/api/runs/demo/%2e%2e/events",
        "/runs/demo/..%2f..%2f..%2fetc/report.html",
        "/static/..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "/static/../../../../../etc/passwd",
    ],
)
def test_a_path_outside_the_runs_dir_gets_404_or_400(server: Server, path: str) -> None:
    """A traversal in any route is refused, and no file outside the runs dir is read."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request("GET", path)  # sent as written, not normalized
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()

    assert response.status in (400, 404), (path, response.status)
    assert b"root:" not in body


def test_the_server_changes_nothing_on_disk(
    server: Server, two_runs: Path, http: httpx.Client
) -> None:
    """POST, PUT, PATCH and DELETE get 405 and leave every file as it was."""
    run_id = _demo_id(two_runs)
    before = _files(two_runs)
    paths = [
        "/",
        "/api/runs",
        f"/runs/demo/{run_id}",
        f"/api/runs/demo/{run_id}",
        f"/api/runs/demo/{run_id}/records",
        f"/runs/demo/{run_id}/report.html",
    ]
    codes = {
        (method, path): http.request(method, server.at(path)).status_code
        for method in ("POST", "PUT", "PATCH", "DELETE")
        for path in paths
    }
    head = http.head(server.at(f"/runs/demo/{run_id}")).status_code

    assert set(codes.values()) == {405}, codes
    assert head == 200
    assert _files(two_runs) == before


def test_a_live_run_gets_its_new_records_and_steps_within_2_s(
    page: Page, tmp_path: Path, page_errors: list[str]
) -> None:
    """A child logging every 0.3 s: next record and step within 2 s, then its end."""
    runs = tmp_path / "runs"
    stop = tmp_path / "stop"
    run_dir = runs / "live" / "r-live"
    child = subprocess.Popen(
        [sys.executable, "-c", _LIVE_RUN, str(runs), str(stop)], env=child_env()
    )
    try:
        deadline = time.monotonic() + 30
        while not (run_dir / "logs" / "step_001" / "worker.log").exists():
            assert time.monotonic() < deadline, "the live run never started"
            assert child.poll() is None, "the live run exited early"
            time.sleep(0.05)
        with serving(runs) as server:
            page.goto(server.at("/runs/live/r-live"))
            wait_ready(page)
            assert page.locator("[data-testid=run-view]").get_attribute(
                "data-status"
            ) == ("running")

            ticks = [r for r in run_records(run_dir) if r["event"].startswith("tick_")]
            steps = {r["step"] for r in run_records(run_dir)} - {None}
            next_tick = f"tick_{len(ticks) + 1:03d}"
            next_step = max(steps) + 1
            page.locator("[data-testid=record-row]", has_text=next_tick).wait_for(
                timeout=10_000
            )
            tick_seen = datetime.now(UTC)
            page.locator(
                f"[data-testid=attempt-bar][data-step='{next_step}']"
            ).wait_for(timeout=10_000)
            step_seen = datetime.now(UTC)
            stop.touch()
            page.locator("[data-testid=run-view][data-status='success']").wait_for(
                state="attached", timeout=15_000
            )

        records = run_records(run_dir)
        (tick,) = [r for r in records if r["event"] == next_tick]
        (start,) = [
            r for r in records if r["event"] == "step_start" and r["step"] == next_step
        ]
        assert (tick_seen - _ts(tick)).total_seconds() < LIVE_LATENCY_S
        assert (step_seen - _ts(start)).total_seconds() < LIVE_LATENCY_S
        assert page_errors == []
    finally:
        stop.touch()
        child.wait(timeout=30)


def test_a_hostile_run_on_the_server_runs_no_script(
    page: Page, tmp_path: Path, blocked: list[str], page_errors: list[str]
) -> None:
    """Served page by page, the payload records still render as text only."""
    runs = tmp_path / "runs"
    make_hostile_run(runs)
    with serving(runs) as server:
        page.goto(server.url)
        wait_ready(page)
        assert_no_script_ran(page)
        page.goto(server.at("/runs/hostile/r-hostile"))
        wait_ready(page)
        table = page.locator("[data-testid=records]").inner_text()
        assert P_SCRIPT in table and P_IMG in table
        exercise_run_page(page)
        assert_no_script_ran(page)
        assert_probe_can_fail(page)

    assert blocked == []
    assert page_errors == []


def test_the_events_of_a_finished_run_end(
    server: Server, two_runs: Path, http: httpx.Client
) -> None:
    """The event stream of a finished run answers as text/event-stream and closes."""
    url = server.at(f"/api/runs/demo/{_demo_id(two_runs)}/events")
    with http.stream("GET", url, timeout=15) as response:
        body = b"".join(response.iter_bytes())

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert len(body) < 1_000_000


def test_a_big_run_reaches_the_browser_page_by_page(
    page: Page, tmp_path: Path, page_errors: list[str]
) -> None:
    """Of a 3,004-record run the page holds a page of rows, asks <= 1000 at a time."""
    runs = tmp_path / "runs"
    subprocess.run(
        [sys.executable, "-c", _MANY_RECORDS, str(runs)],
        check=True,
        env=child_env(),
        timeout=60,
    )
    total = len(run_records(runs / "many" / "r-many"))
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))
    with serving(runs) as server:
        page.goto(server.at("/runs/many/r-many"))
        wait_ready(page)
        rows = page.locator("[data-testid=record-row]")
        first = rows.count()
        counter = page.locator("[data-testid=records-count]").inner_text()
        rows.last.scroll_into_view_if_needed()
        rows.nth(first).wait_for(state="attached")
        more = rows.count()

    limits = [
        int(parse_qs(urlsplit(url).query)["limit"][0])
        for url in asked
        if "/records" in urlsplit(url).path
    ]
    assert 0 < first < more < total
    assert re.search(rf"of {total:,} records", counter), counter
    assert limits and max(limits) <= 1000
    assert page_errors == []


def test_files_linked_from_outside_the_run_are_never_served(
    page: Page, server: Server, two_runs: Path, http: httpx.Client
) -> None:
    """A log file or step dir that is a link out of the run shows in no route."""
    run_id = _demo_id(two_runs)
    bodies = [
        http.get(server.at(path)).text
        for path in (
            f"/api/runs/demo/{run_id}",
            f"/api/runs/demo/{run_id}/records?limit=1000",
            f"/api/runs/demo/{run_id}/records?limit=1000&step=9",
            f"/runs/demo/{run_id}/report.html",
        )
    ]
    page.goto(server.at(f"/runs/demo/{run_id}"))
    wait_ready(page)

    assert all(LEAKED not in body for body in bodies)
    assert LEAKED not in page.locator("body").inner_text()
    assert page.locator("[data-testid=attempt-bar][data-step='9']").count() == 0
