"""Reading a big run: runlog show/tail against grep, rg, sort, tar and zstd (issue #16).

Usage: python bench/read.py [--repeat 5] [--size-mb 300] [--work DIR] [--only CASE]

Makes the 300 MB run of ``bench/gen_run.py`` (50 steps x 4 components, about
1.45 M records) once under --work (kept for the next call), archives it as
run.tar.gz and run.tar.zst, then runs every contender of every case as a
whole process, interleaved round by round, --repeat rounds. Reported per
contender: the median wall time, its ratio to the case's baseline (the first
contender: the tool a user would reach for), and the peak RSS of the process
tree (``wait4``). One JSON line per result, then a table. Targets (#16):
no-match grep <= 2x ``grep -rh``; 227 k matches <= 4x; filters <= 2x;
full show <= 4 s; ``tail -n`` independent of the run's size; ``tail -f``
< 250 ms from a write to the screen; archives within 1.5x of
``tar -xzOf | grep`` / ``zstd -dc | grep``; RSS < 100 MB.

Every command runs once untimed before the timed rounds (page cache and
bytecode warm), and the timed processes run without PYTHONDONTWRITEBYTECODE:
with it set (as in some shells and CI images) every ``runlog`` process would
compile runlog from source again, which an installed runlog never does.

``show`` keeps what it learns of each log file in ``RUNS/.runlog-cache/``
(see docs/CLI.md), so after the warm-up the timed rounds read an unchanged
run with those facts; the contenders named "first read" remove that cache
before each of their runs, as for the first ``show`` of a run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gen_run  # the generator beside this script

RUNLOG = [sys.executable, "-m", "runlog"]


@dataclass
class Contender:
    """One command of a case: argv (or a shell line), where its stdout goes."""

    name: str
    argv: list[str] | str
    out: str = os.devnull
    fresh: Path | None = None  # a cache directory set aside during each run
    times: list[float] = field(default_factory=list)
    rss_kb: list[int] = field(default_factory=list)


@dataclass
class Case:
    """Contenders doing the same work; the first is the baseline."""

    name: str
    contenders: list[Contender]
    records: int | None = None  # for records/s


def bench_env() -> dict[str, str]:
    """The environment of every timed process: no RUNLOG_*, bytecode kept."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNLOG_")}
    # as installed: imports from cached bytecode, not recompiled every time
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(NO_COLOR="1", LC_ALL="C")
    return env


def run_once(
    contender: Contender, cwd: Path, work: Path, *, timed: bool = True
) -> None:
    """Time *contender* as a whole process; add its wall time and peak RSS."""
    argv = contender.argv
    if isinstance(argv, str):
        argv = ["sh", "-c", argv]  # a pipeline of tar, zstd and grep
    rss_file = work / "rss.txt"
    kept = None
    if contender.fresh is not None and contender.fresh.exists():
        # the cache as the other contenders find it, put back afterwards
        kept = contender.fresh.with_name(contender.fresh.name + ".kept")
        shutil.rmtree(kept, ignore_errors=True)
        contender.fresh.rename(kept)
    timer = shutil.which("time", path="/usr/bin:/bin")
    if timer:
        # GNU time's child starts small, so its peak is the command's own; a
        # child of this (bigger) process would report ours (see wait4(2))
        argv = [timer, "-f", "%M", "-o", str(rss_file), *argv]
    with open(contender.out, "wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(
            argv, cwd=cwd, stdout=out, stderr=subprocess.DEVNULL, env=bench_env()
        )
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
    if contender.fresh is not None:
        shutil.rmtree(contender.fresh, ignore_errors=True)
        if kept is not None:
            kept.rename(contender.fresh)
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code
    if code not in (0, 1):  # grep and show exit 1 for no match
        raise SystemExit(f"{contender.name}: exit {code}")
    if not timed:
        return
    contender.times.append(elapsed)
    if timer:
        contender.rss_kb.append(int(rss_file.read_text().split()[-1]))
    else:
        contender.rss_kb.append(usage.ru_maxrss)


def make_runs(work: Path, size_mb: int) -> tuple[Path, Path, Path, Path]:
    """The big run, its two archives (apart, a run has one), and a small run."""
    big = work / "big"
    run_dir = big / gen_run.FRAMEWORK / gen_run.RUN_ID
    gz = work / "gz" / "run.tar.gz"
    zst = work / "zst" / "run.tar.zst"
    if not (run_dir / "logs" / "run.json").is_file():
        print(f"generating {size_mb} MB under {big}", file=sys.stderr)
        gen_run.generate(big, size_mb, 50, 1)
    for archive, fmt in ((gz, "gz"), (zst, "zst")):
        if not archive.is_file():
            print(f"archiving {archive.name}", file=sys.stderr)
            subprocess.run(
                [*RUNLOG, "archive", str(run_dir), "--format", fmt],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            archive.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(run_dir / archive.name, archive)
            for extra in run_dir.glob("run.tar.*"):
                extra.unlink()
    small = work / "small"
    small_dir = small / gen_run.FRAMEWORK / gen_run.RUN_ID
    if not (small_dir / "logs" / "run.json").is_file():
        gen_run.generate(small, max(1, size_mb // 100), 50, 1)
    return run_dir, gz, zst, small_dir


def cases(run_dir: Path, gz: Path, zst: Path, small: Path, work: Path) -> list[Case]:
    """Every case of #16, with the command a user would run instead first."""
    logs = "logs/"
    out = str(work / "out.txt")
    show = [*RUNLOG, "show", "."]
    rg = shutil.which("rg")
    found: list[Case] = []

    def case(name: str, *contenders: Contender, records: int | None = None) -> None:
        found.append(Case(name, list(contenders), records))

    nomatch = [Contender("grep -rh", ["grep", "-rh", "validation_failed", logs])]
    if rg:
        nomatch.append(
            Contender("rg", [rg, "-N", "--no-filename", "validation_failed"])
        )
    nomatch.append(
        Contender("runlog show --grep", [*show, "--grep", "validation_failed"])
    )
    cache = run_dir.parents[1] / ".runlog-cache"
    nomatch.append(
        Contender(
            "... first read",
            [*show, "--grep", "validation_failed"],
            fresh=cache,
        )
    )
    case("grep no match", *nomatch)
    case(
        "grep 227k matches",
        Contender("grep -rh", ["grep", "-rh", "gpt-4o", logs], out),
        Contender("runlog show --grep", [*show, "--grep", "gpt-4o"], out),
    )
    case(
        "--level error",
        Contender(
            "grep -rh level",
            ["grep", "-rh", "-e", '"level":"error"', "-e", '"level":"critical"', logs],
            out,
        ),
        Contender("runlog show --level", [*show, "--level", "error"], out),
        Contender("... first read", [*show, "--level", "error"], out, fresh=cache),
    )
    case(
        "--component adapter",
        Contender(
            "grep -rh component", ["grep", "-rh", '"component":"adapter"', logs], out
        ),
        Contender("runlog show -c", [*show, "--component", "adapter"], out),
    )
    case(
        "--step 7",
        Contender("grep -rh step", ["grep", "-rh", '"step":7,', logs], out),
        Contender("runlog show --step", [*show, "--step", "7"], out),
    )
    case(
        "full show",
        Contender("sort -m", "sort -m logs/step_*/*.log"),
        Contender("runlog show", show),
        records=sum(
            path.read_bytes().count(b"\n") for path in run_dir.glob("logs/*/*.log")
        ),
    )
    case(
        "tail -n 20",
        Contender("tail big", [*RUNLOG, "tail", ".", "-n", "20"]),
        Contender("tail small", [*RUNLOG, "tail", str(small), "-n", "20"]),
    )
    case(
        "gz --grep 227k",
        Contender("tar -xzOf | grep", f"tar -xzOf {gz} | grep gpt-4o", out),
        Contender(
            "runlog show gz --grep", [*RUNLOG, "show", str(gz), "--grep", "gpt-4o"], out
        ),
    )
    case(
        "zst --grep 227k",
        Contender("zstd -dc | grep", f"zstd -dc {zst} | grep -a gpt-4o", out),
        Contender(
            "runlog show zst --grep",
            [*RUNLOG, "show", str(zst), "--grep", "gpt-4o"],
            out,
        ),
    )
    case(
        "gz show",
        Contender("tar -xzOf", f"tar -xzOf {gz}"),
        Contender("runlog show gz", [*RUNLOG, "show", str(gz)]),
    )
    case(
        "zst show",
        Contender("zstd -dc", f"zstd -dc {zst}"),
        Contender("runlog show zst", [*RUNLOG, "show", str(zst)]),
    )
    case(
        "startup",
        Contender("python -c pass", [sys.executable, "-c", "pass"]),
        Contender("runlog --version", [*RUNLOG, "--version"]),
    )
    return found


def follow_latency(work: Path, writes: int) -> list[float]:
    """Seconds from appending a record to a live run to `tail -f` printing it."""
    run_dir = work / "live" / "fw" / "live"
    shutil.rmtree(run_dir, ignore_errors=True)
    step = run_dir / "logs" / "step_001"
    step.mkdir(parents=True)
    target = step / "adapter.log"
    target.write_bytes(b"")
    proc = subprocess.Popen(
        [*RUNLOG, "tail", str(run_dir), "-f"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=bench_env(),
    )
    seen: dict[str, float] = {}
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            for word in line.split():
                if word.startswith(b"mark-"):
                    seen[word.decode()] = time.perf_counter()
                    ready.set()

    threading.Thread(target=read, daemon=True).start()
    time.sleep(1.5)  # started and polling
    latencies = []
    try:
        for n in range(writes):
            ready.clear()
            mark = f"mark-{n}"
            ts = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
            line = json.dumps(
                {
                    "ts": ts,
                    "level": "info",
                    "event": mark,
                    "component": "adapter",
                    "step": 1,
                },
                separators=(",", ":"),
            )
            with target.open("a") as handle:
                start = time.perf_counter()
                handle.write(line + "\n")
            if not ready.wait(5):
                raise SystemExit(f"tail -f did not print {mark} within 5 s")
            latencies.append(seen[mark] - start)
            time.sleep(0.137)  # not in step with the poll
    finally:
        proc.terminate()
        proc.wait()
    return latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--size-mb", type=int, default=300)
    parser.add_argument("--work", type=Path, default=Path("/tmp/runlog-bench-read"))
    parser.add_argument("--only", action="append", help="run only these cases")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    run_dir, gz, zst, small = make_runs(args.work, args.size_mb)
    todo = cases(run_dir, gz, zst, small, args.work)
    if args.only:
        todo = [case for case in todo if case.name in args.only]
    print("warming up: every command once, untimed", file=sys.stderr)
    for case in todo:
        for contender in case.contenders:
            run_once(contender, run_dir, args.work, timed=False)
    for round_no in range(args.repeat):
        print(f"round {round_no + 1}/{args.repeat}", file=sys.stderr)
        for case in todo:
            for contender in case.contenders:
                run_once(contender, run_dir, args.work)
    rows = []
    for case in todo:
        base = statistics.median(case.contenders[0].times)
        for contender in case.contenders:
            median = statistics.median(contender.times)
            result = {
                "bench": "read",
                "case": case.name,
                "contender": contender.name,
                "median_s": round(median, 4),
                "ratio": round(median / base, 2),
                "peak_rss_mb": round(max(contender.rss_kb) / 1024, 1),
                "repeat": args.repeat,
            }
            if case.records and contender.name.startswith("runlog"):
                result["records_per_s"] = round(case.records / median)
            print(json.dumps(result))
            rows.append(result)
    if not args.only or "tail -f" in args.only:
        latencies = follow_latency(args.work, max(10, 4 * args.repeat))
        result = {
            "bench": "read",
            "case": "tail -f latency",
            "contender": "runlog tail -f",
            "median_s": round(statistics.median(latencies), 4),
            "max_s": round(max(latencies), 4),
            "writes": len(latencies),
        }
        print(json.dumps(result))
        rows.append({**result, "ratio": None, "peak_rss_mb": None})
    print(
        f"\n{'case':<22} {'contender':<24} {'median s':>9} {'ratio':>7} {'RSS MB':>7}"
    )
    for row in rows:
        ratio = "" if row["ratio"] is None else f"{row['ratio']:.2f}x"
        rss = "" if row["peak_rss_mb"] is None else f"{row['peak_rss_mb']:.0f}"
        print(
            f"{row['case']:<22} {row['contender']:<24} {row['median_s']:9.3f} "
            f"{ratio:>7} {rss:>7}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
