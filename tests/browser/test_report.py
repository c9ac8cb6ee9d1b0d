"""``runlog report``: the demo run's one-file report, opened from file://."""

from __future__ import annotations

import base64
import os
import re
import shutil
import struct
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.browser.conftest import (
    HOSTILE_COMPONENTS,
    P_BREAKOUT,
    P_IMG,
    P_JS,
    P_SCRIPT,
    assert_no_script_ran,
    assert_probe_can_fail,
    exercise_run_page,
    filter_text,
    make_demo_run,
    make_hostile_run,
    run_records,
    runlog_cli,
    wait_ready,
)

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO / "docs" / "img" / "report.png"
_COUNT_COLOURS = """async (b64) => {
    const image = new Image();
    image.src = "data:image/png;base64," + b64;
    await image.decode();
    const canvas = document.createElement("canvas");
    canvas.width = image.naturalWidth;
    canvas.height = image.naturalHeight;
    const context = canvas.getContext("2d");
    context.drawImage(image, 0, 0);
    const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
    const colours = new Set();
    for (let i = 0; i < pixels.length; i += 4) {
        colours.add((pixels[i] << 16) | (pixels[i + 1] << 8) | pixels[i + 2]);
    }
    return [image.naturalWidth, image.naturalHeight, colours.size];
}"""


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run ``runlog demo`` makes: 5 steps, step 3 retried, one rejected answer."""
    return make_demo_run(tmp_path_factory.mktemp("report") / "runs")


@pytest.fixture(scope="module")
def demo_report(demo_run: Path) -> Path:
    """The demo run's report, written by ``runlog report RUN``."""
    printed = runlog_cli("report", str(demo_run)).strip()
    assert Path(printed).resolve() == (demo_run / "report.html").resolve()
    return demo_run / "report.html"


@pytest.fixture
def report_page(page: Page, demo_report: Path) -> Page:
    """The demo report opened from file://, fully rendered."""
    page.goto(demo_report.as_uri())
    wait_ready(page)
    return page


def _rows(page: Page) -> list[dict[str, Any]]:
    return page.locator("[data-testid=record-row]").evaluate_all(
        """(rows) => rows.map((r) => ({
            step: r.dataset.step ?? "", component: r.dataset.component,
            level: r.dataset.level, text: r.textContent}))"""
    )


def _select_step(page: Page, step: int) -> None:
    select = page.locator("select[data-testid=filter-step]")
    options = select.locator("option").evaluate_all(
        "(options) => options.map((o) => [o.value, o.textContent])"
    )
    (value,) = [
        v for v, label in options if v == str(step) or re.search(rf"\b0*{step}$", label)
    ]
    select.select_option(value=value)


def _wait_count(page: Page, shown: int, total: int) -> None:
    counter = page.locator("[data-testid=records-count]")
    counter.filter(has_text=f"{shown} of {total} records").wait_for()


def test_the_report_is_one_file_with_nothing_to_fetch(demo_report: Path) -> None:
    """The report inlines its script, style and data: no src/href to load."""
    html = demo_report.read_text(encoding="utf-8")

    assert re.search(r"<script[^>]*\bsrc\s*=", html, re.IGNORECASE) is None
    assert re.search(r"<link[^>]*\bhref\s*=", html, re.IGNORECASE) is None
    assert re.search(r"@import|url\(\s*['\"]?(https?:)?//", html) is None
    assert '<script type="application/json" id="runlog-data">' in html
    assert len(demo_report.read_bytes()) < 10 * 1024 * 1024


def test_the_report_opens_from_file_offline_and_shows_the_run(
    report_page: Page, demo_run: Path, blocked: list[str], page_errors: list[str]
) -> None:
    """From file:// the report renders the run's id, status and model, offline."""
    view = report_page.locator("[data-testid=run-view]")
    header = report_page.locator("[data-testid=run-header]").inner_text()

    assert view.get_attribute("data-run-id") == demo_run.name
    assert view.get_attribute("data-status") == "success"
    assert "success" in header.lower()
    assert "demo-llm-1" in header
    assert blocked == []
    assert page_errors == []


def test_the_timeline_shows_five_steps_and_the_retried_attempt(
    report_page: Page, demo_run: Path
) -> None:
    """One bar per attempt: steps 1-5, step 3 twice, its first attempt not a success."""
    bars = report_page.locator(
        "svg[data-testid=timeline] [data-testid=attempt-bar]"
    ).evaluate_all(
        """(bars) => bars.map((b) => [Number(b.dataset.step),
            Number(b.dataset.attempt), b.dataset.status, b.dataset.name])"""
    )
    ends = [r for r in run_records(demo_run) if r["event"] == "step_end"]

    assert len(bars) == 6
    assert sorted((s, a, n) for s, a, _, n in bars) == sorted(
        (r["step"], r["attempt"], r["name"]) for r in ends
    )
    status = {(s, a): st for s, a, st, _ in bars}
    assert status.pop((3, 1)) in ("failed", "retried")
    assert set(status.values()) == {"success"}


def test_hovering_the_failed_attempt_shows_name_duration_and_error(
    report_page: Page,
) -> None:
    """The tooltip of step 3's first attempt names the step, its duration, its error."""
    report_page.locator(
        "[data-testid=attempt-bar][data-step='3'][data-attempt='1']"
    ).hover()
    tooltip = report_page.locator("[data-testid=tooltip]")
    tooltip.wait_for(state="visible")
    text = tooltip.inner_text()

    assert "answer" in text
    assert "429 Too Many Requests" in text
    assert re.search(r"\d+(\.\d+)?\s*(ms|s)\b", text), text


def test_level_error_shows_exactly_the_runs_error_records(
    report_page: Page, demo_run: Path
) -> None:
    """Filtering level=error leaves the error records of the run's files, no other."""
    records = run_records(demo_run)
    errors = [r for r in records if r["level"] in ("error", "critical")]
    _wait_count(report_page, len(records), len(records))

    report_page.locator("select[data-testid=filter-level]").select_option("error")
    _wait_count(report_page, len(errors), len(records))
    rows = _rows(report_page)

    assert len(errors) == 2
    assert sorted((r["step"], r["component"], r["level"]) for r in rows) == sorted(
        (str(r["step"]), r["component"], r["level"]) for r in errors
    )
    for record in errors:
        assert any(record["event"] in row["text"] for row in rows), record["event"]


def test_step_component_and_text_filters_combine(
    report_page: Page, demo_run: Path
) -> None:
    """Step 3 + adapter + warning leaves the rate-limit record; text finds requests."""
    records = run_records(demo_run)
    _select_step(report_page, 3)
    report_page.locator("select[data-testid=filter-component]").select_option("adapter")
    report_page.locator("select[data-testid=filter-level]").select_option("warning")
    _wait_count(report_page, 1, len(records))

    (row,) = _rows(report_page)
    assert (row["step"], row["component"], row["level"]) == ("3", "adapter", "warning")
    assert "rate_limited" in row["text"]

    for name in ("step", "component", "level"):
        report_page.locator(f"select[data-testid=filter-{name}]").select_option(index=0)
    report_page.locator("input[data-testid=filter-text]").fill("llm_request")
    requests = [r for r in records if r["event"] == "llm_request"]
    _wait_count(report_page, len(requests), len(records))
    assert all("llm_request" in r["text"] for r in _rows(report_page))


def test_clicking_a_row_shows_every_field_of_its_record(
    report_page: Page, demo_run: Path
) -> None:
    """The detail of the rejected answer lists each key and value, traceback too."""
    (record,) = [r for r in run_records(demo_run) if r["event"] == "answer_rejected"]
    filter_text(report_page, "answer_rejected")
    report_page.locator("[data-testid=record-row]", has_text="answer_rejected").click()
    detail = report_page.locator("[data-testid=record-detail]")
    detail.wait_for(state="visible")
    text = detail.inner_text()

    for key, value in record.items():
        assert key in text, key
        assert str(value).strip().splitlines()[-1] in text, key


def test_errors_are_listed_with_collapsible_tracebacks(report_page: Page) -> None:
    """Both errors are in the problems list; a traceback shows only when opened."""
    problems = report_page.locator("[data-testid=problems] [data-testid=problem]")
    rejected = problems.filter(has_text="answer_rejected")
    last_line = "ValueError: expected 'gol', got 'glo'"

    assert problems.filter(has_text="RateLimitedError").count() >= 1
    assert rejected.count() == 1
    details = rejected.locator("details")
    assert details.get_attribute("open") is None
    assert not details.get_by_text(last_line).is_visible()
    details.locator("summary").click()
    assert details.get_by_text(last_line).is_visible()


def test_the_per_step_charts_are_drawn(report_page: Page) -> None:
    """The LLM requests, API calls and tokens charts are on the page, not empty."""
    for name in ("chart-llm", "chart-api", "chart-tokens"):
        chart = report_page.locator(f"[data-testid={name}]")
        box = chart.bounding_box()
        assert box is not None and box["width"] > 100 and box["height"] > 40, name
        assert chart.locator("rect, path, line, circle").count() > 0, name


def test_past_max_records_the_report_says_what_it_left_out(
    page: Page, demo_run: Path, tmp_path: Path
) -> None:
    """With --max-records 5 a note says records were left out; problems all stay."""
    out = tmp_path / "capped.html"
    printed = runlog_cli("report", str(demo_run), "-o", str(out), "--max-records", "5")
    records = run_records(demo_run)
    problems = [r for r in records if r["level"] in ("warning", "error", "critical")]
    page.goto(out.as_uri())
    wait_ready(page)
    note = page.locator("[data-testid=records-cap-note]")

    assert Path(printed.strip()).resolve() == out.resolve()
    assert note.is_visible()
    assert re.search(r"\d+ records? not included", note.inner_text())
    page.locator("select[data-testid=filter-level]").select_option("warning")
    page.locator(
        "[data-testid=record-row][data-level=info], "
        "[data-testid=record-row][data-level=debug]"
    ).first.wait_for(state="detached")
    rows = _rows(page)
    assert sorted(r["level"] for r in rows) == sorted(r["level"] for r in problems)


def test_a_hostile_run_renders_as_text_and_runs_no_script(
    page: Page,
    tmp_path: Path,
    blocked: list[str],
    page_errors: list[str],
) -> None:
    """Script, image and javascript: payloads in any field show as text, run nothing."""
    from runlog.web import write_report

    run_dir = make_hostile_run(tmp_path / "runs")
    report = write_report(run_dir, tmp_path / "hostile.html")
    page.goto(report.as_uri())
    wait_ready(page)
    assert_no_script_ran(page)
    table = page.locator("[data-testid=records]").inner_text()
    header = page.locator("[data-testid=run-header]").inner_text()
    components = page.locator("select[data-testid=filter-component] option")

    assert P_SCRIPT in table
    assert P_JS in table
    assert P_SCRIPT in header
    assert set(HOSTILE_COMPONENTS) <= set(components.all_inner_texts())
    assert len(_rows(page)) == len(run_records(run_dir))

    exercise_run_page(page)
    page.locator("[data-testid=attempt-bar][data-step='1']").hover()
    assert P_IMG in page.locator("[data-testid=tooltip]").inner_text()
    filter_text(page, "breakout")
    page.locator("[data-testid=record-row]").first.click()
    detail = page.locator("[data-testid=record-detail]").inner_text()
    assert P_BREAKOUT.split("\u2028")[0] in detail
    assert_no_script_ran(page)
    assert blocked == []
    assert page_errors == []

    assert_probe_can_fail(page)


def test_the_demo_report_screenshot_is_a_real_picture(
    report_page: Page, tmp_path: Path
) -> None:
    """A 1280x900 PNG of the report with many colours; copied to docs/img on demand."""
    shot = tmp_path / "report.png"
    report_page.screenshot(path=str(shot))
    data = shot.read_bytes()
    width, height, colours = report_page.evaluate(
        _COUNT_COLOURS, base64.b64encode(data).decode()
    )

    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (1280, 900)
    assert (width, height) == (1280, 900)
    assert colours > 50
    assert len(data) > 20_000
    if os.environ.get("RUNLOG_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT)


def test_every_record_of_the_demo_is_in_the_table(
    report_page: Page, demo_run: Path
) -> None:
    """Under the cap the table holds each record of the run once, by step and level."""
    records = run_records(demo_run)
    rows = _rows(report_page)

    assert Counter((r["step"], r["component"], r["level"]) for r in rows) == Counter(
        ("" if r["step"] is None else str(r["step"]), r["component"], r["level"])
        for r in records
    )


def test_the_report_of_an_archive_is_written_next_to_it(
    page: Page, demo_run: Path, tmp_path: Path
) -> None:
    """``runlog report run.tar.gz`` writes RUN_ID.report.html beside it, same run."""
    archive = tmp_path / "run.tar.gz"
    shutil.copyfile(demo_run / "run.tar.gz", archive)
    printed = runlog_cli("report", str(archive)).strip()
    written = tmp_path / f"{demo_run.name}.report.html"
    page.goto(written.as_uri())
    wait_ready(page)

    assert Path(printed).resolve() == written.resolve()
    assert page.locator("[data-testid=run-view]").get_attribute("data-run-id") == (
        demo_run.name
    )
    assert page.locator("[data-testid=attempt-bar]").count() == 6
