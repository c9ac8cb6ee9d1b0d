"""Benchmark output capture: 200,000 print() lines with capture none/python/fd.

Usage: python bench/capture.py [--lines 200000] [--repeat 5]

Each measurement runs in its own process, interleaved with the others, with
stdout redirected to a file (so the baseline is a plain print to a file).
The timed part is the print loop inside one step; the run is started before
and finished after it. Reported: the median seconds per mode and the ratio
to ``capture="none"``. Target (issue #15): ``"python"`` <= 2x.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

MODES = ("none", "python", "fd")
TARGET_PYTHON = 2.0

CHILD = """
import sys, time, runlog
mode, lines, report = sys.argv[1], int(sys.argv[2]), sys.argv[3]
runlog.configure(console_format="off")
run = runlog.start_run("bench", runs_dir="runs", archive=False, capture=mode)
with run.step(1):
    start = time.perf_counter()
    for i in range(lines):
        print("line", i, "of the benchmark, some text to make it realistic")
    sys.stdout.flush()
    elapsed = time.perf_counter() - start
run.finish()
with open(report, "w") as f:
    f.write(repr(elapsed))
"""


def measure(mode: str, lines: int, work: Path) -> float:
    """Seconds the print loop took in a fresh process with capture *mode*."""
    report = work / f"{mode}.time"
    out = work / f"{mode}.out"
    with out.open("wb") as stdout:
        subprocess.run(
            [sys.executable, "-c", CHILD, mode, str(lines), str(report)],
            cwd=work,
            stdout=stdout,
            check=True,
            env={k: v for k, v in os.environ.items() if not k.startswith("RUNLOG_")},
        )
    return float(report.read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeat):
            for mode in MODES:
                times[mode].append(measure(mode, args.lines, Path(tmp)))
    base = statistics.median(times["none"])
    print(f"{args.lines} print() lines to a file, median of {args.repeat}:")
    for mode in MODES:
        median = statistics.median(times[mode])
        print(
            f"  capture={mode:<7} {median:7.3f} s  {median / base:5.2f}x"
            f"  ({args.lines / median:,.0f} lines/s)"
        )
    ratio = statistics.median(times["python"]) / base
    verdict = "meets" if ratio <= TARGET_PYTHON else "misses"
    print(f'capture="python" {verdict} the target of {TARGET_PYTHON}x ({ratio:.2f}x)')
    return 0


if __name__ == "__main__":
    sys.exit(main())
