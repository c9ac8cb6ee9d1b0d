"""Benchmark runlog's summarizer against jq and a json.loads loop on a ~300 MB run.

Usage: python bench/summarize.py [RUN_DIR] [--size-mb 300] [--repeat 5] [--keep]

Without RUN_DIR, a run is generated with bench/gen_run.py (50 steps x 4
components) in a temp directory. Every method reads the same record files
(step logs and run-level logs; never combined.log) and runs in its own
process; the methods are interleaved, so a noisy machine slows all of them
alike. Reported: the median wall time (process start to exit, so Python
and jq start-up count), min and max, throughput, and each process's peak RSS
(``/usr/bin/time -f %M`` when present, else wait4's getrusage of that child).

- runlog: ``summarize_run(RUN_DIR)``: the whole summary (every section) read,
  rendered and written atomically.
- jq: the core aggregation only: records per level, tokens per step.
- json.loads / orjson: the same aggregation in a plain Python line loop.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import gen_run  # bench/ is on sys.path when a bench script runs
import orjson

HERE = Path(__file__).resolve().parent
TARGET_VS_JQ = 5.0
RSS_LIMIT_MB = 100

JQ_PROGRAM = (
    "reduce inputs as $r ({}; .levels[$r.level|tostring] += 1"
    " | .tokens[$r.step|tostring] += ($r.total_tokens // 0))"
)

RUNLOG_CHILD = """
import sys
from runlog.summary import summarize_run
summarize_run(sys.argv[1])
"""

# Same aggregation as JQ_PROGRAM, streaming line by line; LOADS is filled in.
LOOP_CHILD = """
import sys
from LIB import loads
levels, tokens = {}, {}
for name in sys.argv[1:]:
    with open(name, "rb") as f:
        for line in f:
            r = loads(line)
            level = str(r.get("level"))
            levels[level] = levels.get(level, 0) + 1
            step = str(r.get("step"))
            tokens[step] = tokens.get(step, 0) + (r.get("total_tokens") or 0)
out = {"levels": levels, "tokens": tokens}
sys.stdout.write(__import__("json").dumps(out, sort_keys=True))
"""


@dataclass
class Series:
    """Wall times and peak RSS of one method."""

    label: str
    seconds: list[float] = field(default_factory=list)
    rss_kb: list[int] = field(default_factory=list)
    output: str = ""

    @property
    def median(self) -> float:
        """Median wall time in seconds."""
        return statistics.median(self.seconds)


TIME = shutil.which("time") or (
    "/usr/bin/time" if Path("/usr/bin/time").exists() else None
)


def run_child(argv: list[str]) -> tuple[float, int, str]:
    """
    Run *argv*; return (wall seconds, peak RSS in KB of that child, stdout).

    The RSS comes from /usr/bin/time when present: a child forked straight
    from this Python process starts with this process's RSS as its high-water
    mark, which would hide a small child such as jq. Without /usr/bin/time it
    is wait4's ru_maxrss (getrusage of that one child), a floor of this
    process's own RSS.
    """
    with tempfile.TemporaryFile() as out, tempfile.NamedTemporaryFile() as rss:
        wrapped = [TIME, "-f", "%M", "-o", rss.name, *argv] if TIME else argv
        start = time.perf_counter()
        child = subprocess.Popen(wrapped, stdout=out, stderr=subprocess.PIPE)
        _pid, status, usage = os.wait4(child.pid, 0)
        elapsed = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        assert child.stderr is not None
        errors = child.stderr.read().decode(errors="replace")
        child.stderr.close()
        if child.returncode != 0:
            raise SystemExit(f"{argv[0]} failed ({child.returncode}):\n{errors}")
        peak = int(Path(rss.name).read_text().split()[-1]) if TIME else usage.ru_maxrss
        out.seek(0)
        return elapsed, peak, out.read().decode()


def record_files(run_dir: Path) -> list[str]:
    """Every JSON-lines file of the run, as the summarizer reads them."""
    logs = run_dir / "logs"
    files = sorted(str(p) for p in logs.glob("*.log") if p.name != "combined.log")
    files += sorted(str(p) for p in logs.glob("step_*/*.log"))
    return files


def generate(work: Path, size_mb: int) -> Path:
    print(f"generating a {size_mb} MB run in {work} ...", flush=True)
    return gen_run.generate(work, size_mb, steps=50, seed=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", nargs="?", type=Path)
    parser.add_argument("--size-mb", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the generated run")
    args = parser.parse_args()

    work: Path | None = None
    run_dir = args.run_dir
    if run_dir is None:
        work = Path(tempfile.mkdtemp(prefix="runlog-bench-summary-"))
        run_dir = generate(work, args.size_mb)
    files = record_files(run_dir)
    size = sum(os.path.getsize(f) for f in files)
    print(f"run: {run_dir}")
    print(f"record files: {len(files)}, {size / 1e6:.0f} MB")

    methods: dict[str, list[str]] = {
        "runlog summarize_run": [sys.executable, "-c", RUNLOG_CHILD, str(run_dir)],
        "orjson line loop": [
            sys.executable,
            "-c",
            LOOP_CHILD.replace("LIB", "orjson"),
            *files,
        ],
        "json.loads line loop": [
            sys.executable,
            "-c",
            LOOP_CHILD.replace("LIB", "json"),
            *files,
        ],
    }
    jq = shutil.which("jq")
    if jq is None:
        print("jq NOT FOUND on PATH: the jq comparison is skipped (install jq)")
    else:
        version = subprocess.run([jq, "--version"], capture_output=True, text=True)
        print(f"jq: {jq} ({version.stdout.strip()})")
        methods["jq reduce"] = [jq, "-n", "-c", "--sort-keys", JQ_PROGRAM, *files]
    print(f"python: {sys.version.split()[0]}, cpus: {os.cpu_count()}")
    how = f"{TIME} -f %M" if TIME else "wait4 ru_maxrss (floor: this process's RSS)"
    print(f"peak RSS from: {how}")
    print(f"repetitions: {args.repeat} (interleaved)\n", flush=True)

    series = {label: Series(label) for label in methods}
    try:
        for rep in range(args.repeat):
            for label, argv in methods.items():
                seconds, rss, output = run_child(argv)
                series[label].seconds.append(seconds)
                series[label].rss_kb.append(rss)
                series[label].output = output
                print(f"  rep {rep + 1} {label:<22} {seconds:7.2f} s", flush=True)
        report(series, size)
        compare_outputs(series, run_dir)
    finally:
        if work is not None and not args.keep:
            shutil.rmtree(work)
        elif work is not None:
            print(f"kept {run_dir}")


def report(series: dict[str, Series], size: int) -> None:
    runlog = series["runlog summarize_run"]
    print()
    print(
        f"{'method':<22} {'median s':>9} {'min':>7} {'max':>7} {'MB/s':>7}"
        f" {'peak RSS MB':>12} {'/ runlog time':>14}"
    )
    for s in series.values():
        print(
            f"{s.label:<22} {s.median:9.2f} {min(s.seconds):7.2f} {max(s.seconds):7.2f}"
            f" {size / 1e6 / s.median:7.0f} {max(s.rss_kb) / 1024:12.1f}"
            f" {s.median / runlog.median:14.2f}"
        )
    print()
    rss_mb = max(runlog.rss_kb) / 1024
    verdict = "met" if rss_mb < RSS_LIMIT_MB else "MISSED"
    print(f"runlog peak RSS: {rss_mb:.1f} MB (target < {RSS_LIMIT_MB} MB): {verdict}")
    jq = series.get("jq reduce")
    if jq is None:
        print("runlog vs jq: not measured (jq missing)")
    else:
        ratio = jq.median / runlog.median
        verdict = "met" if ratio >= TARGET_VS_JQ else "MISSED"
        print(
            f"jq time / runlog time: {ratio:.1f}x (target >= {TARGET_VS_JQ:.0f}x): "
            f"{verdict}"
        )
    loads = series["json.loads line loop"]
    print(f"json.loads loop time / runlog time: {loads.median / runlog.median:.1f}x")


def compare_outputs(series: dict[str, Series], run_dir: Path) -> None:
    """Check every method saw the same records and tokens as the summary."""
    summary = (run_dir / "logs_summary.txt").read_text()
    total = next(
        line.rsplit(" ", 1)[1]
        for line in summary.splitlines()
        if line.startswith("Tokens:")
    )
    for s in series.values():
        if s.label.startswith("runlog"):
            continue
        data = orjson.loads(s.output)
        seen = sum(data["tokens"].values())
        agree = "agrees" if str(seen) == total else f"DISAGREES ({total})"
        print(
            f"{s.label}: {sum(data['levels'].values())} records, {seen} tokens, "
            f"{agree} with the summary's total"
        )


if __name__ == "__main__":
    main()
