"""A real chromium for the viewer's pages: one browser a session, a context a test.

Debian's ``chromium`` driven by Playwright for Python (Playwright's own
browser download is out of reach here). A missing browser or Playwright
fails these tests with the command that installs it: they never skip (#18).
Every page may reach 127.0.0.1 and ``file://`` only; anything else is
aborted and noted, so a test can assert that a page made no such request.
"""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

import orjson
import pytest

if TYPE_CHECKING:
    import httpx
    from playwright.sync_api import Browser, Page, Playwright, Route

CHROMIUM: Final = Path(os.environ.get("RUNLOG_CHROMIUM", "/usr/bin/chromium"))
LAUNCH_ARGS: Final = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
VIEWPORT: Final = {"width": 1280, "height": 900}
READY: Final = "body[data-ready='1']"
COMPLETE: Final = "body[data-complete='1']"
SERVING: Final = re.compile(r"serving (.+) at (http://127\.0\.0\.1:(\d+)/)")
_INSTALL: Final = (
    "install it with `apt-get install chromium` (as root; `bash scripts/test` "
    "does it) and Playwright with `pip install -e '.[web-tests]'`; "
    "never `playwright install`, its download is not reachable"
)


def child_env() -> dict[str, str]:
    """This environment without any ``RUNLOG_*`` run hand-off, for child processes."""
    return {k: v for k, v in os.environ.items() if not k.startswith("RUNLOG_")}


def runlog_cli(*args: str, cwd: Path | None = None) -> str:
    """Run ``python -m runlog ARGS`` in a fresh process; return its stdout."""
    done = subprocess.run(
        [sys.executable, "-m", "runlog", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=child_env(),
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"runlog {' '.join(args)}: {done.stderr}"
    return done.stdout


def make_demo_run(runs_dir: Path) -> Path:
    """A real ``runlog demo`` run under *runs_dir*; returns its run directory."""
    runlog_cli("demo", "--runs-dir", str(runs_dir))
    (run_dir,) = (runs_dir / "demo").iterdir()
    return run_dir


def run_records(run_dir: Path) -> list[dict[str, Any]]:
    """Every record of the run, parsed from its JSON-lines files (not combined.log)."""
    records: list[dict[str, Any]] = []
    for path in sorted((run_dir / "logs").rglob("*.log")):
        linked = any(p.is_symlink() for p in (path, *path.parents))
        if path.name != "combined.log" and not linked:
            records.extend(
                orjson.loads(line) for line in path.read_bytes().splitlines()
            )
    return records


def wait_ready(page: Page, timeout_s: float = 15.0, *, complete: bool = True) -> None:
    """
    Wait until the page says it has rendered its data (``body[data-ready=1]``)
    and, with *complete*, its counts, charts and problems too (``data-complete``).
    """
    # a selector, not wait_for_function: the pages' CSP forbids eval
    page.locator(READY).wait_for(state="attached", timeout=timeout_s * 1000)
    if complete and page.locator("body[data-page='run']").count():
        page.locator(COMPLETE).wait_for(state="attached", timeout=timeout_s * 1000)


def filter_text(page: Page, text: str) -> None:
    """Type *text* in the records filter; return once every row shown holds it."""
    page.locator("input[data-testid=filter-text]").fill(text)
    # the table is filtered a moment after typing: a row clicked before
    # that would be replaced under the click
    page.locator("[data-testid=record-row]").filter(has_not_text=text).first.wait_for(
        state="detached"
    )


def _launch(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM), args=list(LAUNCH_ARGS), timeout=60_000
    )


# module scope, not session: while Playwright's sync API is started, an event
# loop runs in the main thread, and any later test calling asyncio.run() fails
@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    """Debian's chromium, headless, with a fresh profile under the session's tmp."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        pytest.fail(f"Playwright for Python is missing ({exc}): {_INSTALL}")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"no chromium at {str(CHROMIUM)!r}: {_INSTALL}")
    # Playwright makes the profile (--user-data-dir) in the driver's temp
    # directory: point that at a fresh one so no state survives a session
    profiles = tmp_path_factory.mktemp("chromium-profile")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("TMPDIR", str(profiles))
        playwright = sync_playwright().start()
    try:
        browser = _launch(playwright)
        try:
            yield browser
        finally:
            browser.close()
    finally:
        playwright.stop()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    """An HTTP client for a server's routes (httpx, from the web-tests extra)."""
    try:
        import httpx
    except ImportError as exc:
        pytest.fail(f"httpx is missing ({exc}): {_INSTALL}")
    with httpx.Client(timeout=30) as client:
        yield client


@pytest.fixture
def blocked() -> list[str]:
    """URLs the page tried to reach outside 127.0.0.1 and file:// (all aborted)."""
    return []


@pytest.fixture
def page_errors() -> list[str]:
    """Uncaught script errors of the page."""
    return []


def _is_local(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme in ("file", "data", "blob", "about"):
        return True
    return parts.scheme in ("http", "https", "ws", "wss") and (
        parts.hostname == "127.0.0.1"
    )


@pytest.fixture
def page(
    browser: Browser,
    blocked: list[str],
    page_errors: list[str],
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> Iterator[Page]:
    """A page in its own context at 1280x900; only local requests get through."""
    context = browser.new_context(viewport=VIEWPORT, service_workers="block")

    def gate(route: Route) -> None:
        if _is_local(route.request.url):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort("blockedbyclient")

    context.route("**/*", gate)
    opened = context.new_page()
    opened.on("pageerror", lambda error: page_errors.append(str(error)))
    try:
        yield opened
    finally:
        report = request.node.stash.get(_OUTCOME, None)
        if report is not None and report.failed:
            # kept with the test's tmp_path as the failure's artifact
            opened.screenshot(path=str(tmp_path / "failure.png"))
            request.node.user_properties.append(("screenshot", str(tmp_path)))
        context.close()


_OUTCOME = pytest.StashKey[pytest.TestReport]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Iterator[None]:
    """Keep the outcome of each test's call so ``page`` can save a screenshot."""
    report: pytest.TestReport = yield
    if report.when == "call":
        item.stash[_OUTCOME] = report
    return report


class Server:
    """A ``runlog serve`` child process and the URL it printed."""

    def __init__(self, process: subprocess.Popen[str], url: str) -> None:
        self.process = process
        self.url = url

    def at(self, path: str) -> str:
        """The absolute URL of *path* (``/runs/...``) on this server."""
        return self.url.rstrip("/") + path

    @property
    def port(self) -> int:
        """The port the server listens on."""
        return int(urlsplit(self.url).port or 0)


def _drain(stream: Any, lines: queue.Queue[str | None], keep: list[str]) -> None:
    for line in stream:
        keep.append(line)
        lines.put(line)
    lines.put(None)


@contextmanager
def serving(
    target: Path | str, *extra: str, timeout_s: float = 30.0
) -> Iterator[Server]:
    """
    Start ``runlog serve TARGET --port 0`` as a real child; stop it afterwards.

    Waits for the ``serving ... at http://127.0.0.1:PORT/`` line on stdout.
    """
    process = subprocess.Popen(
        [sys.executable, "-m", "runlog", "serve", str(target), "--port", "0", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    out: list[str] = []
    err: list[str] = []
    lines: queue.Queue[str | None] = queue.Queue()
    readers = [
        threading.Thread(target=_drain, args=(process.stdout, lines, out), daemon=True),
        threading.Thread(
            target=_drain, args=(process.stderr, queue.Queue(), err), daemon=True
        ),
    ]
    for reader in readers:
        reader.start()
    try:
        deadline = time.monotonic() + timeout_s
        url = None
        while url is None:
            left = deadline - time.monotonic()
            try:
                line = lines.get(timeout=max(left, 0.01))
            except queue.Empty:
                line = None
            if line is None:
                process.kill()
                process.wait()
                pytest.fail(
                    "runlog serve printed no 'serving ... at URL' line "
                    f"(exit {process.returncode}):\n{''.join(out)}\n{''.join(err)}"
                )
            match = SERVING.search(line)
            if match:
                url = match.group(2)
        yield Server(process, url)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for reader in readers:
            reader.join(timeout=5)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


# Payloads that would set window.__pwned if any record value reached the page
# as markup or as a link; a test asserts the global stays undefined (#18).
P_SCRIPT: Final = "<script>window.__pwned=1</script>"
P_IMG: Final = '<img src=x onerror="window.__pwned=1">'
P_JS: Final = "javascript:window.__pwned=1"
# closes the report's data <script> early, and the line separators JSON allows
# but older JavaScript did not
P_BREAKOUT: Final = "</script><script>window.__pwned=1</script>\u2028\u2029<!--"
# legal component names that are also the names of every JavaScript object's
# own properties
HOSTILE_COMPONENTS: Final = ("__proto__", "constructor", "toString")

_HOSTILE_RUN: Final = """
import sys
import time
import runlog

P_SCRIPT, P_IMG, P_JS, P_BREAKOUT = sys.argv[2:6]
COMPONENTS = sys.argv[6].split(",")
runlog.configure(console_format="off")
meta = {"model": P_SCRIPT, "note": P_IMG, "link": P_JS, P_IMG: P_BREAKOUT}
with runlog.start_run(
    "hostile", "r-hostile", sys.argv[1], metadata=meta, archive=False
) as run:
    log = runlog.get_logger(P_SCRIPT, component="adapter")
    with run.step(1, name=P_IMG):
        time.sleep(0.3)  # attempts long enough to be bars of their own
        log.info(
            P_SCRIPT,
            html=P_IMG,
            href=P_JS,
            url=P_JS,
            breakout=P_BREAKOUT,
            nested={"list": [P_SCRIPT, P_IMG], P_IMG: P_JS},
            **{P_IMG: P_JS, P_SCRIPT: P_IMG},
        )
        log.error(P_IMG, href=P_JS)
        for component in COMPONENTS:
            runlog.get_logger("hostile", component=component).warning(
                P_JS, html=P_IMG
            )
        try:
            raise ValueError(P_SCRIPT + P_IMG + P_BREAKOUT)
        except ValueError:
            log.exception(P_JS, detail=P_BREAKOUT)
    try:
        with run.step(2, name=P_SCRIPT):
            time.sleep(0.3)
            raise RuntimeError(P_IMG + P_JS)
    except RuntimeError:
        pass
    with run.step(2, name=P_JS):
        time.sleep(0.3)
        log.info("after the retry", x=P_BREAKOUT)
"""


def make_hostile_run(runs_dir: Path) -> Path:
    """
    A finished run whose records carry script and link payloads everywhere.

    In events, field names and values, the logger name, step names, metadata,
    an error message and a traceback; components named like JavaScript object
    properties. Step 2's first attempt fails and is retried.
    """
    subprocess.run(
        [
            sys.executable,
            "-c",
            _HOSTILE_RUN,
            str(runs_dir),
            P_SCRIPT,
            P_IMG,
            P_JS,
            P_BREAKOUT,
            ",".join(HOSTILE_COMPONENTS),
        ],
        check=True,
        env=child_env(),
        timeout=60,
    )
    return runs_dir / "hostile" / "r-hostile"


# Everything a user can do to a run page that could make it render a value:
# hover each bar, click each row, open each traceback, filter by each choice.
_NO_SCRIPT_RAN: Final = """() => {
    const own = [...document.scripts].filter(
        (s) => s.type !== "application/json" && s.textContent.includes("__pwned"));
    return {
        pwned: typeof window.__pwned,
        injected: own.length,
        onerror: document.querySelectorAll("[onerror]").length,
        images: document.querySelectorAll("img[src='x']").length,
        jsLinks: [...document.querySelectorAll("[href]")].filter(
            (a) => /^\\s*javascript:/i.test(a.getAttribute("href"))).length,
    };
}"""


def exercise_run_page(page: Page) -> None:
    """Hover every bar, click every row, open every traceback, try every filter."""
    for bar in page.locator("[data-testid=attempt-bar]").all():
        bar.hover()
        page.locator("[data-testid=tooltip]").wait_for(state="visible")
    for row in page.locator("[data-testid=record-row]").all():
        row.click()
        page.locator("[data-testid=record-detail]").wait_for(state="visible")
    for summary in page.locator("[data-testid=problems] details > summary").all():
        summary.click()
    for name in ("step", "component", "level"):
        select = page.locator(f"select[data-testid=filter-{name}]")
        for value in select.locator("option").evaluate_all(
            "(options) => options.map((o) => o.value)"
        ):
            select.select_option(value=value)
        select.select_option(index=0)
    page.locator("input[data-testid=filter-text]").fill(P_SCRIPT)
    page.locator("input[data-testid=filter-text]").fill("")
    page.wait_for_timeout(500)  # an <img onerror> fires after its load fails


CLEAN: Final = {
    "pwned": "undefined",
    "injected": 0,
    "onerror": 0,
    "images": 0,
    "jsLinks": 0,
}


def script_probe(page: Page) -> dict[str, Any]:
    """What of the payloads ran or became markup in *page* (``CLEAN`` if none)."""
    result: dict[str, Any] = page.evaluate(_NO_SCRIPT_RAN)
    return result


def assert_no_script_ran(page: Page) -> None:
    """No payload executed, became an element or attribute, or became a link."""
    assert script_probe(page) == CLEAN


def assert_probe_can_fail(page: Page) -> None:
    """The probe sees the image payload once it is inserted as markup."""
    page.evaluate(
        "(html) => document.body.insertAdjacentHTML('beforeend', html)", P_IMG
    )
    page.wait_for_timeout(300)
    seen = script_probe(page)
    assert seen["images"] == 1 and seen["onerror"] == 1, seen
