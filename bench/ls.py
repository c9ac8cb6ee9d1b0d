"""``runlog ls`` of many runs against ``ls -l``: wall time and peak RSS.

Usage: python bench/ls.py [--runs 10000] [--repeat 5] [--out FILE] [--keep DIR]

Makes N runs under a temp directory from the run of ``runlog demo`` kept in
sample_runs/ (its logs/ with 5 steps and 17 files, its archive, run.json and
summary, each rewritten with the run's own id, start time and status: 1 in 7
failed, 1 in 100 crashed, i.e. still ``running`` in run.json with a dead pid
and a stale heartbeat). As after ``Run.finish``, each summary was written
after the run's logs, here a minute ago. Then runs, each as a whole process,
interleaved, ``--repeat`` rounds after a first one:

- ``runlog ls RUNS`` (table to a file), ``runlog ls RUNS --json``;
- ``ls -l RUNS/demo`` (one line per run directory), the baseline.

The first round is reported apart as ``first_s``: runlog has no cache yet
(``RUNS/.runlog-cache/``), so it reads each run's run.json and summary
header and writes the cache; later rounds are warm (four stats a finished
run; for a crashed one, a stat of each log file). Reported:
medians, the ratio to ``ls -l``, ms per 1,000 runs, and the peak RSS of each
process (``wait4``). Target (issue #16): ``runlog ls`` of 10,000 runs < 1 s
warm.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

TARGET_S = 1.0
REPO = Path(__file__).resolve().parents[1]


def env() -> dict[str, str]:
    """The environment of every measured process: no RUNLOG_*, no colors."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RUNLOG_")}
    clean["NO_COLOR"] = "1"
    clean["PYTHONPATH"] = str(REPO)
    # as installed: imports from cached bytecode, not recompiled every time
    clean.pop("PYTHONDONTWRITEBYTECODE", None)
    return clean


def find_template() -> Path:
    """The committed run of ``runlog demo`` in sample_runs/ (logs, archive, summary)."""
    (run,) = (p.parent.parent for p in REPO.glob("sample_runs/*/*/logs/run.json"))
    return run


def make_runs(template: Path, runs: Path, count: int) -> None:
    """*count* runs under *runs*/demo/, copies of *template* with their own ids."""
    info = orjson.loads((template / "logs" / "run.json").read_bytes())
    summary = (template / "logs_summary.txt").read_text()
    old_id = info["run_id"]
    old_start = summary.split("Started:", 1)[1].split()[0]
    base = datetime(2025, 1, 1, tzinfo=UTC)
    for index in range(count):
        started = base + timedelta(seconds=37 * index, microseconds=index)
        run_id = started.strftime("%Y%m%dT%H%M%SZ") + f"-{index:06x}"
        run = runs / "demo" / run_id
        shutil.copytree(template / "logs", run / "logs")
        for name in ("run.tar.gz", "run.tar.gz.sha256", "metrics.json"):
            shutil.copy(template / name, run / name)
        status = "failed" if index % 7 == 3 else "success"
        fields = {
            "run_id": run_id,
            "started_at": started.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "status": status,
        }
        if index % 100 == 42:  # crashed: its process is gone, no run_end
            fields.update(status="running", ended_at=None, pid=2**22 + 7)
        (run / "logs" / "run.json").write_bytes(
            orjson.dumps({**info, **fields}, option=orjson.OPT_INDENT_2)
        )
        text = summary.replace(old_id, run_id).replace(
            old_start, started.strftime("%Y-%m-%dT%H:%M:%SZ")
        )
        if status == "failed":
            text = text.replace("Status: SUCCESS", "Status: FAILED", 1)
        (run / "logs_summary.txt").write_text(text)
        # as if the run had ended a minute ago, its summary written last
        ended = time.time_ns() - 60_000_000_000
        for path in (run / "logs" / "run.json", run / "logs" / "combined.log"):
            os.utime(path, ns=(ended, ended))
        for path in (run / "logs_summary.txt", run):
            os.utime(path, ns=(ended + 10**9, ended + 10**9))


Sample = tuple[float, float, int]  # wall s, CPU s, peak RSS KiB


def measure(command: list[str], out: Path) -> Sample:
    """Wall seconds, CPU seconds and peak RSS (KiB) of *command*, stdout to *out*."""
    with out.open("wb") as stdout:
        start = time.perf_counter()
        child = subprocess.Popen(command, stdout=stdout, env=env(), cwd=out.parent)
        _, status, usage = os.wait4(child.pid, 0)
        elapsed = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"{command} exited {child.returncode}")
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, help="append the JSON lines here")
    parser.add_argument(
        "--keep",
        type=Path,
        metavar="DIR",
        help="make the runs in DIR and keep them; reuse them when already there "
        "(their ls cache is removed first, so the first round is cold)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        runs = work / "runs"
        if not (runs / "demo").is_dir():
            made = time.perf_counter()
            make_runs(find_template(), runs, args.runs)
            print(f"made {args.runs} runs in {time.perf_counter() - made:.1f} s")
        shutil.rmtree(runs / ".runlog-cache", ignore_errors=True)
        contenders = {
            "runlog_ls": [sys.executable, "-m", "runlog", "ls", str(runs)],
            "runlog_ls_json": [
                sys.executable,
                "-m",
                "runlog",
                "ls",
                str(runs),
                "--json",
            ],
            "ls_l": ["ls", "-l", str(runs / "demo")],
        }
        first: dict[str, Sample] = {}
        warm: dict[str, list[Sample]] = {name: [] for name in contenders}
        for round_no in range(args.repeat + 1):
            for name, command in contenders.items():
                sample = measure(command, work / f"{name}.out")
                if round_no == 0:
                    first[name] = sample
                else:
                    warm[name].append(sample)
        listed = json.loads((work / "runlog_ls_json.out").read_text())
        assert len(listed) == args.runs, len(listed)
        report(args, first, warm)  # before the slow clean-up of the runs
    return 0


def report(
    args: argparse.Namespace, first: dict[str, Sample], warm: dict[str, list[Sample]]
) -> None:
    """Print (and with --out append) one JSON line per contender, then the verdict."""
    base = statistics.median(sample[0] for sample in warm["ls_l"])
    print(f"{args.runs} runs, median of {args.repeat} warm rounds (first apart):")
    results = []
    for name, samples in warm.items():
        median = statistics.median(sample[0] for sample in samples)
        result = {
            "bench": "ls",
            "contender": name,
            "runs": args.runs,
            "first_s": round(first[name][0], 4),
            "median_s": round(median, 4),
            # CPU time is less at the mercy of a shared machine than wall time
            "median_cpu_s": round(statistics.median(s[1] for s in samples), 4),
            "ratio_to_ls_l": round(median / base, 2),
            "ms_per_1000_runs": round(1000 * median / args.runs * 1000, 1),
            "peak_rss_mib": round(max(sample[2] for sample in samples) / 1024, 1),
        }
        results.append(result)
        print(json.dumps(result))
    median = statistics.median(sample[0] for sample in warm["runlog_ls"])
    verdict = "meets" if median < TARGET_S else "misses"
    print(f"runlog ls {verdict} the target of < {TARGET_S} s warm ({median:.3f} s)")
    if args.out:
        with args.out.open("a") as handle:
            for result in results:
                handle.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    sys.exit(main())
