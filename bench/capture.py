"""Benchmark output capture: 200,000 print() lines with capture none/python/fd.

Usage: python bench/capture.py [--lines 200000] [--repeat 5]

Each measurement runs in its own process, interleaved with the others, with
stdout redirected to a file (so the baseline is a plain print to a file).
The timed part is the print loop inside one step; the run is started before
and finished after it. Every mode runs twice: with stdout block-buffered, as
Python makes a file by default, and unbuffered (``PYTHONUNBUFFERED=1``, as
many CI systems and containers set it), where every piece of a print() is a
system call. Reported: the median seconds per mode, the ratio to
``capture="none"`` under the same buffering, and one JSON line per result.
Target (issue #15): ``"python"`` <= 2x.

A third contender, ``logging``, does not print: it logs each line through a
stdlib ``logging`` logger with a ``FileHandler`` (``%(asctime)s
%(levelname)s %(name)s %(message)s``), the usual way to record a line as a
record, so capture's cost reads against both a plain print and logging the
line (see #16). Its ratio is to ``capture="none"`` like the others.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

MODES = ("none", "python", "fd", "logging")
BUFFERING = ("buffered", "unbuffered")
TARGET_PYTHON = 2.0

CHILD = """
import logging, sys, time, runlog
mode, lines, report = sys.argv[1], int(sys.argv[2]), sys.argv[3]
runlog.configure(console_format="off")
capture = "none" if mode == "logging" else mode
run = runlog.start_run("bench", runs_dir="runs", archive=False, capture=capture)
if mode == "logging":
    handler = logging.FileHandler("logging.log")
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    )
    log = logging.getLogger("bench")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False  # the line goes to its file only, not to runlog's
with run.step(1):
    start = time.perf_counter()
    if mode == "logging":
        for i in range(lines):
            log.info("line %s of the benchmark, some text to make it realistic", i)
    else:
        for i in range(lines):
            print("line", i, "of the benchmark, some text to make it realistic")
    sys.stdout.flush()
    elapsed = time.perf_counter() - start
run.finish()
with open(report, "w") as f:
    f.write(repr(elapsed))
"""


def measure(mode: str, buffering: str, lines: int, work: Path) -> float:
    """Seconds the print loop took in a fresh process with capture *mode*."""
    report = work / f"{mode}.time"
    out = work / f"{mode}.out"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("RUNLOG_") and k != "PYTHONUNBUFFERED"
    }
    if buffering == "unbuffered":
        env["PYTHONUNBUFFERED"] = "1"
    with out.open("wb") as stdout:
        subprocess.run(
            [sys.executable, "-c", CHILD, mode, str(lines), str(report)],
            cwd=work,
            stdout=stdout,
            check=True,
            env=env,
        )
    return float(report.read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    times: dict[tuple[str, str], list[float]] = {
        (mode, buffering): [] for buffering in BUFFERING for mode in MODES
    }
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeat):
            for key in times:  # interleaved, so drift hits every mode alike
                times[key].append(measure(*key, args.lines, Path(tmp)))
    verdicts = []
    for buffering in BUFFERING:
        base = statistics.median(times[("none", buffering)])
        print(
            f"{args.lines} print() lines to a file, {buffering}, median of "
            f"{args.repeat}:"
        )
        for mode in MODES:
            median = statistics.median(times[(mode, buffering)])
            print(
                f"  capture={mode:<7} {median:7.3f} s  {median / base:5.2f}x"
                f"  ({args.lines / median:,.0f} lines/s)"
            )
            result = {
                "bench": "capture",
                "mode": mode,
                "stdout": buffering,
                "lines": args.lines,
                "repeat": args.repeat,
                "median_s": round(median, 4),
                "ratio": round(median / base, 3),
            }
            print(json.dumps(result))
        ratio = statistics.median(times[("python", buffering)]) / base
        verdict = "meets" if ratio <= TARGET_PYTHON else "misses"
        verdicts.append(
            f'capture="python", {buffering}: {verdict} the target of '
            f"{TARGET_PYTHON}x ({ratio:.2f}x)"
        )
    print("\n".join(verdicts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
