"""The run page in chromium: header facts, short attempts, times, first paint."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest

from runlog.web import create_app
from runlog.web._server import bind, start_in_thread
from tests.browser.conftest import (
    COMPLETE,
    make_demo_run,
    run_records,
    runlog_cli,
    wait_ready,
)
from tests.unit.web.runs import (
    make_run,
    record,
    step_records,
    write_records,
    write_run_json,
)

if TYPE_CHECKING:
    from playwright.sync_api import Page, Route

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run ``runlog demo`` makes, with its report written."""
    run_dir = make_demo_run(tmp_path_factory.mktemp("layout") / "runs")
    runlog_cli("report", str(run_dir))
    return run_dir


def test_each_header_value_sits_under_its_label(page: Page, demo_run: Path) -> None:
    """Every fact is one grid item: its value is right under its own label."""
    page.goto((demo_run / "report.html").as_uri())
    wait_ready(page)
    facts = page.locator("[data-testid=run-header] dl.facts > div")

    assert facts.count() >= 9
    for fact in facts.all():
        label = fact.locator("dt").bounding_box()
        value = fact.locator("dd").bounding_box()
        assert label is not None and value is not None
        assert abs(label["x"] - value["x"]) < 1
        assert label["y"] + label["height"] <= value["y"] + 1
    duration = facts.filter(has=page.locator("dt", has_text="Duration"))
    assert re.fullmatch(r"\d+ ms|[\d.]+ s", duration.locator("dd").inner_text())


def test_the_time_column_shows_milliseconds(page: Page, demo_run: Path) -> None:
    """Each row's time is the record's time of day to the millisecond."""
    page.goto((demo_run / "report.html").as_uri())
    wait_ready(page)
    shown = page.locator("[data-testid=record-row] td.ts").all_inner_texts()

    expected = sorted(str(r["ts"])[11:23] for r in run_records(demo_run))
    assert sorted(shown) == expected
    assert all(re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3}", text) for text in shown)


def test_short_attempts_of_one_step_are_each_hoverable(
    page: Page, tmp_path: Path
) -> None:
    """Two 1 ms attempts in a 1000 s run: bars side by side, each with its tooltip."""
    logs = tmp_path / "runs" / "fw" / "short" / "logs"
    write_run_json(logs, run_id="short", ended_at=None, duration_s=1000.0)
    write_records(
        logs,
        [
            record(0, "run_start", component="orchestrator", run_id="short"),
            *step_records(1, 10.000, 10.001, status="failed"),
            *step_records(1, 10.002, 10.003, attempt=2),
            *step_records(2, 11, 1000),
        ],
    )
    runlog_cli("report", str(logs.parent))
    page.goto((logs.parent / "report.html").as_uri())
    wait_ready(page)
    bars = page.locator("[data-testid=attempt-bar][data-step='1']")
    tooltip = page.locator("[data-testid=tooltip]")

    boxes = [bar.bounding_box() for bar in bars.all()]
    seen = []
    for attempt in ("1", "2"):
        page.locator(
            f"[data-testid=attempt-bar][data-step='1'][data-attempt='{attempt}']"
        ).hover(timeout=5000)
        tooltip.filter(has_text=f"attempt {attempt}").wait_for(state="visible")
        seen.append(tooltip.inner_text())

    assert len(boxes) == 2 and boxes[0] is not None and boxes[1] is not None
    assert boxes[0]["x"] + boxes[0]["width"] <= boxes[1]["x"]
    assert "retried" in seen[0] and "success" in seen[1]


def test_serve_draws_header_timeline_and_records_before_the_counts(
    page: Page, tmp_path: Path
) -> None:
    """Held back, the full overview leaves a placeholder; the rest is drawn (#18)."""
    make_run(tmp_path / "runs")
    held: list[Route] = []

    def full_overview(url: str) -> bool:
        parts = urlsplit(url)
        return parts.path == "/api/runs/fw/r1" and not parts.query

    def hold(route: Route) -> None:
        held.append(route)

    # in this process, without the warm-up that would compute the overview
    sock = bind("127.0.0.1", 0)
    thread, stop = start_in_thread(create_app(tmp_path / "runs", warm=False), sock)
    try:
        page.route(full_overview, hold)
        page.goto(f"http://127.0.0.1:{sock.getsockname()[1]}/runs/fw/r1")
        wait_ready(page, complete=False)
        loading = page.locator("[data-testid=charts-loading]").is_visible()
        bars = page.locator("[data-testid=attempt-bar]").count()
        rows = page.locator("[data-testid=record-row]").count()
        complete_early = page.locator(COMPLETE).count()
        status = page.locator("[data-testid=run-view]").get_attribute("data-status")
        assert len(held) == 1
        held[0].continue_()
        wait_ready(page)
        charts = page.locator("[data-testid=chart-llm] rect").count()
        problems = page.locator("[data-testid=problem]").count()
        still_loading = page.locator("[data-testid=charts-loading]").count()
    finally:
        stop()
        thread.join(10)

    assert loading and (bars, rows, complete_early, status) == (3, 17, 0, "success")
    assert charts > 0 and problems == 3 and still_loading == 0
