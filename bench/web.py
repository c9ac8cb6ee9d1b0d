"""Benchmark the run viewer on a big run: first paint, server memory, report size.

Usage: python bench/web.py [RUN_DIR] [--size-mb 300] [--repeat 5]
                           [--chromium /usr/bin/chromium]

Without RUN_DIR, a run is generated with bench/gen_run.py (50 steps x 4
components) in a temp directory. Then:

- ``runlog report RUN_DIR -o report.html`` runs once as a whole process:
  its wall time and the size of the file it writes (target < 10 MB).
- ``runlog serve RUNS --port 0`` runs as a whole process; its resident memory
  is read from /proc/PID/status every 50 ms for as long as it serves (peak
  sampled VmRSS, and the kernel's VmHWM), target < 150 MB.
- Headless chromium (Debian's, driven by Playwright, as in the browser
  tests) opens, interleaved round by round, the server's run page and the
  report from file://, each in a fresh browser context (no cache shared).
  First paint is navigation start to the first animation frame after the
  page sets ``document.body.dataset.ready = "1"`` (header, timeline and the
  first records drawn); target < 2 s each. Complete is the same up to
  ``document.body.dataset.complete = "1"`` (counts, charts and problems
  drawn too). The first round of the run page is also reported alone: it
  is the one where the server reads the run for the first time.

Prints one JSON line per result, then a table. Medians of --repeat rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
    from playwright.sync_api import sync_playwright
except ImportError:
    raise SystemExit("needs Playwright: pip install -e '.[web-tests]'") from None

HERE = Path(__file__).resolve().parent
TARGET_PAINT_S = 2.0
TARGET_RSS_MB = 150
TARGET_REPORT_MB = 10
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SERVING = re.compile(r"serving (.+) at (http://127\.0\.0\.1:\d+/)")
# Runs before any script of the page: notes when body[data-ready] and
# body[data-complete] turn "1" (a MutationObserver fires right after the
# change) and the next frame after each.
TIMING_SCRIPT = """
(() => {
  const seen = () => {
    const body = document.body;
    if (!body) return;
    if (window.__readyAt === undefined && body.dataset.ready === "1") {
      window.__readyAt = performance.now();
      requestAnimationFrame(() => {
        window.__paintAt = performance.now();
        document.documentElement.dataset.benchPainted = "1";
      });
    }
    if (window.__completeAt === undefined && body.dataset.complete === "1") {
      window.__completeAt = performance.now();
      requestAnimationFrame(() => {
        window.__completePaintAt = performance.now();
        document.documentElement.dataset.benchComplete = "1";
      });
    }
  };
  new MutationObserver(seen).observe(document, {
    subtree: true, childList: true, attributes: true,
    attributeFilter: ["data-ready", "data-complete"],
  });
})();
"""


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("RUNLOG_")}


def _rss_kb(pid: int) -> tuple[int, int]:
    """VmRSS and VmHWM of *pid* in KiB (0, 0 once it is gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return 0, 0
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    return (
        int(fields.get("VmRSS", "0 kB").split()[0]),
        int(fields.get("VmHWM", "0 kB").split()[0]),
    )


@dataclass
class Server:
    """A ``runlog serve`` child, its URL, and its memory sampled while it runs."""

    process: subprocess.Popen[str]
    url: str
    rss_kb: list[int] = field(default_factory=list)
    hwm_kb: int = 0
    stopping: threading.Event = field(default_factory=threading.Event)

    def sample(self) -> None:
        """Read the server's memory every 50 ms until it is stopped."""
        while not self.stopping.wait(0.05):
            rss, hwm = _rss_kb(self.process.pid)
            if rss:
                self.rss_kb.append(rss)
                self.hwm_kb = max(self.hwm_kb, hwm)


def start_server(runs: Path, log: Path) -> Server:
    """``runlog serve RUNS --port 0``, its stderr to *log*; returns with its URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "runlog", "serve", str(runs), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=log.open("wb"),
        text=True,
        env=_env(),
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + 60
    while True:
        try:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
        except queue.Empty:
            line = None
        if line is None:
            process.kill()
            raise SystemExit(
                f"runlog serve printed no 'serving ... at URL' line:\n{log.read_text()}"
            )
        match = SERVING.search(line)
        if match:
            server = Server(process, match.group(2))
            threading.Thread(target=server.sample, daemon=True).start()
            return server


def stop_server(server: Server) -> None:
    """Stop sampling, then the server."""
    server.stopping.set()
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


def first_paint(browser: Any, url: str) -> dict[str, float]:
    """Open *url* in a fresh context; seconds from navigation start to ready/paint."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        page.add_init_script(TIMING_SCRIPT)
        page.goto(url, wait_until="commit", timeout=120_000)
        try:
            # a selector, not wait_for_function: the pages' CSP forbids eval
            page.locator("html[data-bench-painted='1']").wait_for(
                state="attached", timeout=120_000
            )
            page.locator("html[data-bench-complete='1']").wait_for(
                state="attached", timeout=120_000
            )
        except PlaywrightTimeoutError:
            state = page.evaluate("document.body && document.body.dataset.ready")
            raise SystemExit(
                f"{url}: not ready after 120 s (ready={state!r})"
            ) from None
        ready, paint, complete = page.evaluate(
            "[window.__readyAt, window.__paintAt, window.__completePaintAt]"
        )
        return {
            "ready_s": ready / 1000,
            "paint_s": paint / 1000,
            "complete_s": complete / 1000,
        }
    finally:
        context.close()


def emit(result: dict[str, Any]) -> None:
    """One JSON line of a result on stdout."""
    print(json.dumps({"bench": "web", **result}), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", nargs="?", type=Path)
    parser.add_argument("--size-mb", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.run_dir is None:
            started = time.perf_counter()
            out = subprocess.run(
                [
                    sys.executable,
                    str(HERE / "gen_run.py"),
                    str(work / "runs"),
                    "--size-mb",
                    str(args.size_mb),
                ],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            run_dir = Path(out.strip())
            print(
                f"generated {run_dir} ({args.size_mb} MB) in "
                f"{time.perf_counter() - started:.1f} s",
                file=sys.stderr,
            )
        else:
            run_dir = args.run_dir.resolve()
        runs = run_dir.parent.parent
        size_mb = sum(p.stat().st_size for p in run_dir.rglob("*.log")) / 2**20

        report = work / "report.html"
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "runlog", "report", str(run_dir), "-o", str(report)],
            check=True,
            capture_output=True,
            env=_env(),
        )
        report_s = time.perf_counter() - started
        report_mb = report.stat().st_size / 2**20
        emit({"result": "report_write_s", "value": report_s, "run_mb": size_mb})
        emit(
            {
                "result": "report_size_mb",
                "value": report_mb,
                "target": TARGET_REPORT_MB,
                "run_mb": size_mb,
            }
        )

        server_log = work / "serve.log"
        server = start_server(runs, server_log)
        page_url = server.url + f"runs/{run_dir.parent.name}/{run_dir.name}"
        samples: dict[str, list[dict[str, float]]] = {"serve": [], "report": []}
        profile = work / "profile"
        profile.mkdir()
        try:
            os.environ["TMPDIR"] = str(profile)  # the browser's fresh profile
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=args.chromium, args=CHROMIUM_ARGS
                )
                for _ in range(args.repeat):  # interleaved: drift hits both alike
                    samples["serve"].append(first_paint(browser, page_url))
                    samples["report"].append(first_paint(browser, report.as_uri()))
                browser.close()
        except SystemExit:
            print(server_log.read_text()[-4000:], file=sys.stderr)
            raise
        finally:
            stop_server(server)
            shutil.rmtree(profile, ignore_errors=True)

    rows: list[tuple[str, str, str, str]] = []

    def paint_row(label: str, seconds: float) -> None:
        verdict = "meets" if seconds < TARGET_PAINT_S else "misses"
        rows.append((label, f"{seconds:.2f} s", f"< {TARGET_PAINT_S:g} s", verdict))

    for name in ("serve", "report"):
        paints = [s["paint_s"] for s in samples[name]]
        readies = [s["ready_s"] for s in samples[name]]
        completes = [s["complete_s"] for s in samples[name]]
        # the server's first open of the run reads all of it: shown alone
        later = 1 if name == "serve" and len(paints) > 1 else 0
        warm, warm_complete = paints[later:], completes[later:]
        emit(
            {
                "result": f"{name}_first_paint_s",
                "median": statistics.median(warm),
                "first": paints[0],
                "ready_median": statistics.median(readies),
                "samples": paints,
                "target": TARGET_PAINT_S,
                "run_mb": size_mb,
            }
        )
        emit(
            {
                "result": f"{name}_complete_s",
                "median": statistics.median(warm_complete),
                "first": completes[0],
                "samples": completes,
                "run_mb": size_mb,
            }
        )
        if name == "serve":
            paint_row("serve run page: first paint, 1st open", paints[0])
            rows.append(
                ("serve run page: complete, 1st open", f"{completes[0]:.2f} s", "", "")
            )
            paint_row("serve run page: first paint, again", statistics.median(warm))
            rows.append(
                (
                    "serve run page: complete, again",
                    f"{statistics.median(warm_complete):.2f} s",
                    "",
                    "",
                )
            )
        else:
            paint_row("report (file://): first paint", statistics.median(warm))
    peak_mb = max(server.rss_kb, default=0) / 1024
    emit(
        {
            "result": "serve_rss_mb",
            "peak_sampled": peak_mb,
            "median_sampled": statistics.median(server.rss_kb or [0]) / 1024,
            "vm_hwm": server.hwm_kb / 1024,
            "target": TARGET_RSS_MB,
            "run_mb": size_mb,
        }
    )
    rows.append(
        (
            "serve: resident memory",
            f"{peak_mb:.0f} MB peak (VmHWM {server.hwm_kb / 1024:.0f} MB)",
            f"< {TARGET_RSS_MB} MB",
            "meets" if server.hwm_kb / 1024 < TARGET_RSS_MB else "misses",
        )
    )
    rows.append(
        (
            "report: file size",
            f"{report_mb:.2f} MB",
            f"< {TARGET_REPORT_MB} MB",
            "meets" if report_mb < TARGET_REPORT_MB else "misses",
        )
    )
    rows.append(("report: written by runlog report", f"{report_s:.1f} s", "", ""))
    print(f"\n{size_mb:.0f} MB run, medians of {args.repeat} rounds")
    print(f"{'measure':<40} {'value':<32} {'target':<9} verdict")
    for measure, value, target, verdict in rows:
        print(f"{measure:<40} {value:<32} {target:<9} {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
