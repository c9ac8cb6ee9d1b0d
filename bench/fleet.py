"""Across runs: ``runlog errors`` and ``runlog query`` over many runs, vs jq and grep.

Usage: python bench/fleet.py [--runs 1000] [--size-mb 2000] [--repeat 3] [--keep]

Generates RUNS runs of SIZE_MB/RUNS megabytes each with bench/gen_run.py
(10 steps x 4 components; errors at 0.2% of records) in a temp directory,
each with its own run id and run.json, then times whole processes,
interleaved, REPEAT times:

- ``runlog errors RUNS_DIR --json``: every error and critical record,
  grouped by fingerprint.
- ``runlog query "select level, count(*) from records group by level"``
  (the count of malformed lines included: one more scan).
- jq over the same files (``find | xargs cat | jq``): errors per event and
  component, and records per level; the nearest plain-tool equivalents.
- ``grep -c '"level":"error"'`` over the same files: the floor, no parsing.

Reported per method: median, min and max wall time, MB/s, peak RSS (from
``/usr/bin/time -f %M``), and the ratio to jq. One JSON line per method
follows the table. The generated runs are deleted unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gen_run  # bench/ is on sys.path when a bench script runs
import orjson

RSS_LIMIT_MB = 300
TIME = "/usr/bin/time" if Path("/usr/bin/time").exists() else None
FILES = "find {runs} -path '*/logs/*' -name '*.log' ! -name combined.log -print0"
JQ_ERRORS = (
    'reduce (inputs | select(.level == "error" or .level == "critical")) as $r'
    ' ({}; .[($r.event|tostring) + " [" + ($r.component|tostring) + "]"] += 1)'
)
JQ_LEVELS = "reduce inputs as $r ({}; .[$r.level|tostring] += 1)"
QUERY = "select level, count(*) as n from records group by level order by level"


def generate(runs_dir: Path, runs: int, size_mb: int) -> None:
    """*runs* runs of about size_mb / runs megabytes each under *runs_dir*/bench."""
    per_run = max(1, round(size_mb / runs))
    scratch = runs_dir / ".gen"
    target = runs_dir / gen_run.FRAMEWORK
    target.mkdir(parents=True, exist_ok=True)
    for i in range(runs):
        made = gen_run.generate(scratch, per_run, steps=10, seed=i + 1)
        run_id = f"20250101T{i // 3600 % 24:02d}{i // 60 % 60:02d}{i % 60:02d}Z-{i:06x}"
        info_path = made / "logs" / "run.json"
        info = orjson.loads(info_path.read_bytes())
        info["run_id"] = run_id
        info_path.write_bytes(orjson.dumps(info))
        made.rename(target / run_id)
        if (i + 1) % 100 == 0:
            print(f"  generated {i + 1} runs", flush=True)
    shutil.rmtree(scratch, ignore_errors=True)


def run_child(argv: list[str]) -> tuple[float, int, str]:
    """Run *argv*; (wall seconds, peak RSS in KB, stdout)."""
    with tempfile.TemporaryFile() as out, tempfile.NamedTemporaryFile() as rss:
        wrapped = [TIME, "-f", "%M", "-o", rss.name, *argv] if TIME else argv
        start = time.perf_counter()
        done = subprocess.run(wrapped, stdout=out, stderr=subprocess.PIPE, check=False)
        elapsed = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(
                f"{argv} failed ({done.returncode}):\n{done.stderr.decode()[-2000:]}"
            )
        peak = int(Path(rss.name).read_text().split()[-1]) if TIME else 0
        out.seek(0)
        return elapsed, peak, out.read().decode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--size-mb", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the generated runs")
    parser.add_argument("--runs-dir", type=Path, help="use these runs, generate none")
    args = parser.parse_args()

    work: Path | None = None
    runs_dir = args.runs_dir
    if runs_dir is None:
        work = Path(tempfile.mkdtemp(prefix="runlog-bench-fleet-"))
        runs_dir = work / "runs"
        print(f"generating {args.runs} runs, {args.size_mb} MB, in {runs_dir} ...")
        started = time.perf_counter()
        generate(runs_dir, args.runs, args.size_mb)
        print(f"generated in {time.perf_counter() - started:.0f} s", flush=True)
    try:
        measure(runs_dir, args.repeat)
    finally:
        if work is not None and not args.keep:
            shutil.rmtree(work)
        elif work is not None:
            print(f"kept {runs_dir}")


def measure(runs_dir: Path, repeat: int) -> None:
    """Time every method over *runs_dir*, interleaved, and report."""
    listing = subprocess.run(
        ["sh", "-c", FILES.format(runs=shlex.quote(str(runs_dir)))],
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    files = [name for name in listing if name]
    size = sum(os.path.getsize(name) for name in files)
    runs = sum(1 for _ in runs_dir.glob("*/*/logs"))
    print(f"runs: {runs}, record files: {len(files)}, {size / 1e6:.0f} MB")
    print(f"python: {sys.version.split()[0]}, cpus: {os.cpu_count()}")
    find = FILES.format(runs=shlex.quote(str(runs_dir)))
    methods: dict[str, list[str]] = {
        "runlog errors": [
            sys.executable,
            "-m",
            "runlog",
            "errors",
            str(runs_dir),
            "--json",
        ],
        "runlog query": [sys.executable, "-m", "runlog", "query", QUERY, str(runs_dir)],
        "grep -c error": [
            "sh",
            "-c",
            f'{find} | xargs -0 cat | grep -c \'"level":"error"\'',
        ],
    }
    jq = shutil.which("jq")
    if jq is None:
        print("jq NOT FOUND on PATH: the jq comparison is skipped")
    else:
        methods["jq errors"] = [
            "sh",
            "-c",
            f"{find} | xargs -0 cat | {jq} -n -c {shlex.quote(JQ_ERRORS)}",
        ]
        methods["jq levels"] = [
            "sh",
            "-c",
            f"{find} | xargs -0 cat | {jq} -n -c {shlex.quote(JQ_LEVELS)}",
        ]
    print(f"repetitions: {repeat} (interleaved)\n", flush=True)
    seconds: dict[str, list[float]] = {label: [] for label in methods}
    rss: dict[str, list[int]] = {label: [] for label in methods}
    outputs: dict[str, str] = {}
    for rep in range(repeat):
        for label, argv in methods.items():
            elapsed, peak, output = run_child(argv)
            seconds[label].append(elapsed)
            rss[label].append(peak)
            outputs[label] = output
            print(f"  rep {rep + 1} {label:<14} {elapsed:7.2f} s", flush=True)
    report(seconds, rss, size, runs)
    check(outputs)


def report(
    seconds: dict[str, list[float]], rss: dict[str, list[int]], size: int, runs: int
) -> None:
    """The table, then one JSON line per method."""
    print()
    print(
        f"{'method':<14} {'median s':>9} {'min':>7} {'max':>7} {'MB/s':>7}"
        f" {'peak RSS MB':>12} {'/ jq':>6}"
    )
    pairs = {"runlog errors": "jq errors", "runlog query": "jq levels"}
    lines = []
    for label, times in seconds.items():
        median = statistics.median(times)
        peak_mb = max(rss[label]) / 1024
        jq_label = pairs.get(label)
        ratio = (
            median / statistics.median(seconds[jq_label])
            if jq_label in seconds
            else None
        )
        shown = f"{ratio:6.2f}" if ratio is not None else f"{'-':>6}"
        print(
            f"{label:<14} {median:9.2f} {min(times):7.2f} {max(times):7.2f}"
            f" {size / 1e6 / median:7.0f} {peak_mb:12.1f} {shown}"
        )
        lines.append(
            {
                "bench": "fleet",
                "method": label,
                "runs": runs,
                "bytes": size,
                "median_s": round(median, 3),
                "min_s": round(min(times), 3),
                "max_s": round(max(times), 3),
                "peak_rss_mb": round(peak_mb, 1),
                "time_vs_jq": round(ratio, 3) if ratio is not None else None,
            }
        )
    print()
    for label in ("runlog errors", "runlog query"):
        peak_mb = max(rss[label]) / 1024
        verdict = "met" if peak_mb < RSS_LIMIT_MB else "MISSED"
        print(f"{label} peak RSS: {peak_mb:.1f} MB (< {RSS_LIMIT_MB} MB): {verdict}")
    for line in lines:
        print(json.dumps(line))


def check(outputs: dict[str, str]) -> None:
    """Say whether runlog and the plain tools counted the same errors."""
    doc = orjson.loads(outputs["runlog errors"])
    counted = sum(group["count"] for group in doc["groups"])
    grep = int(outputs["grep -c error"].strip() or 0)
    print(f"errors: runlog counted {counted} failures, grep saw {grep} error lines")
    if "jq errors" in outputs:
        jq_total = sum(orjson.loads(outputs["jq errors"]).values())
        print(f"errors: jq saw {jq_total} error/critical records")


if __name__ == "__main__":
    main()
