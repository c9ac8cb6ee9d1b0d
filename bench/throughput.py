"""Records per second: runlog vs stdlib logging, stdlib + orjson, structlog's fastest.

runlog_no_combined is runlog with ``configure(combined=False)``, to show
what combined.log costs; runlog_stdlib_propagate is runlog with
``configure(stdlib_propagate=True)`` and a NullHandler on the root logger, to
show what the stdlib bridge costs (#14). Each contender runs as a whole fresh
process (imports included), writing 200,000 records of ``info("api_call",
prompt_tokens=123, completion_tokens=45, model="gpt-4o")`` into a temp
directory, with 1 and with 4 threads. Contenders run interleaved, several
rounds; the report gives each one's median wall time and its ratio to the
plain stdlib FileHandler twice: for the whole process (interpreter start
and imports included) and for its logging alone (from starting the threads
to joining them: the write path, without the imports, which are reported
on their own at the end). Also measures the cost of a step switch in runlog.

With ``--baseline DIR`` (a checkout of another runlog version, e.g. made
with ``git worktree add /tmp/base <commit>``), that tree's runlog runs too as
``runlog_baseline``, and the import time of both is compared: the way to show
a change to the write path does not make it slower.

Usage: python bench/throughput.py [--records 200000] [--rounds 5] [--out FILE]
                                  [--baseline DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONTENDERS = (
    "stdlib",
    "stdlib_orjson",
    "structlog_fastest",
    "runlog",
    "runlog_no_combined",
    "runlog_stdlib_propagate",
)

# Each worker program gets: out_dir, records, threads. It prints its wall time.
WORKER = r"""
import sys, threading, time
out_dir, total, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
kind = sys.argv[4]
if kind == "stdlib":
    import logging
    handler = logging.FileHandler(f"{out_dir}/stdlib.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    log = logging.getLogger("bench")
    log.addHandler(handler); log.setLevel(logging.INFO); log.propagate = False
    def work(n):
        for _ in range(n):
            log.info("api_call prompt_tokens=%d completion_tokens=%d model=%s", 123, 45, "gpt-4o")
elif kind == "stdlib_orjson":
    import logging, orjson
    class OrjsonFormatter(logging.Formatter):
        def format(self, record):
            return orjson.dumps({"ts": self.formatTime(record), "level": record.levelname,
                                 "event": record.getMessage(), "logger": record.name,
                                 **record.__dict__.get("fields", {})}).decode()
    handler = logging.FileHandler(f"{out_dir}/stdlib_orjson.log")
    handler.setFormatter(OrjsonFormatter())
    log = logging.getLogger("bench")
    log.addHandler(handler); log.setLevel(logging.INFO); log.propagate = False
    def work(n):
        for _ in range(n):
            log.info("api_call", extra={"fields": {"prompt_tokens": 123, "completion_tokens": 45, "model": "gpt-4o"}})
elif kind == "structlog_fastest":
    import logging, orjson, structlog
    structlog.configure(
        cache_logger_on_first_use=True,
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        processors=[structlog.processors.add_log_level,
                    structlog.processors.TimeStamper(fmt="iso", utc=True),
                    structlog.processors.JSONRenderer(serializer=orjson.dumps)],
        logger_factory=structlog.BytesLoggerFactory(sink := open(f"{out_dir}/structlog.log", "wb")),
    )
    log = structlog.get_logger()
    def work(n):
        for _ in range(n):
            log.info("api_call", prompt_tokens=123, completion_tokens=45, model="gpt-4o")
elif kind.startswith("runlog"):
    import runlog
    options = {}
    if kind == "runlog_stdlib_propagate":
        # every record also becomes a LogRecord for an app's root handler
        import logging
        logging.getLogger().addHandler(logging.NullHandler())
        options["stdlib_propagate"] = True
    runlog.configure(console_format="off", combined=kind != "runlog_no_combined", **options)
    context = runlog.LogContext.get_instance()
    context.set_run_context("bench", "fw", f"{out_dir}/logs")
    context.set_step_context(3)
    log = runlog.get_logger("bench", component="adapter")
    def work(n):
        for _ in range(n):
            log.info("api_call", prompt_tokens=123, completion_tokens=45, model="gpt-4o")
per = total // threads
workers = [threading.Thread(target=work, args=(per,)) for _ in range(threads)]
t_loop = time.perf_counter()
for w in workers: w.start()
for w in workers: w.join()
if kind == "structlog_fastest":
    sink.close()
print(time.perf_counter() - t_loop)
"""

STEP_SWITCH = r"""
import sys, time, runlog
runlog.configure(console_format="off")
context = runlog.LogContext.get_instance()
context.set_run_context("bench", "fw", sys.argv[1] + "/switch/logs")
log = runlog.get_logger("bench", component="adapter")
n = 2000
samples = []
for i in range(n):
    t0 = time.perf_counter()
    context.set_step_context(i % 50)
    samples.append(time.perf_counter() - t0)
    log.info("tick", i=i)
samples.sort()
print(samples[len(samples) // 2], samples[int(len(samples) * 0.99)])
"""


IMPORT_COST = r"""
import sys, time
started = time.perf_counter()
from runlog import get_logger
get_logger("bench", component="adapter")
print(time.perf_counter() - started, len(sys.modules))
"""


def _env(kind: str, baseline: Path | None) -> dict[str, str] | None:
    if kind != "runlog_baseline" or baseline is None:
        return None
    return {**os.environ, "PYTHONPATH": str(baseline)}


def run_once(
    kind: str, records: int, threads: int, baseline: Path | None
) -> tuple[float, float]:
    """
    Wall time of one whole process of *kind* (interpreter start and imports
    included), and of its logging alone (threads started to threads joined).
    """
    worker_kind = "runlog" if kind == "runlog_baseline" else kind
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as out:
        started = time.perf_counter()
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                WORKER,
                out,
                str(records),
                str(threads),
                worker_kind,
            ],
            check=True,
            capture_output=True,
            text=True,
            env=_env(kind, baseline),
            cwd=os.sep,  # python -c puts the cwd first: a repo there shadows --baseline
        )
        return time.perf_counter() - started, float(done.stdout)


def import_cost(kind: str, baseline: Path | None) -> tuple[float, int]:
    """Seconds to import runlog and make a logger, and the modules then loaded."""
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_COST],
        check=True,
        capture_output=True,
        text=True,
        env=_env(kind, baseline),
        cwd=os.sep,
    )
    seconds, modules = done.stdout.split()
    return float(seconds), int(modules)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--baseline", type=Path, help="another runlog tree to compare")
    args = parser.parse_args()
    contenders = CONTENDERS + (("runlog_baseline",) if args.baseline else ())
    results: dict[str, dict[str, float]] = {}
    for threads in (1, 4):
        times: dict[str, list[float]] = {kind: [] for kind in contenders}
        loops: dict[str, list[float]] = {kind: [] for kind in contenders}
        for _ in range(args.rounds):
            for kind in contenders:  # interleaved, so drift hits everyone alike
                whole, loop = run_once(kind, args.records, threads, args.baseline)
                times[kind].append(whole)
                loops[kind].append(loop)
        base = statistics.median(times["stdlib"])
        loop_base = statistics.median(loops["stdlib"])
        print(f"\n{args.records} records, {threads} thread(s), {args.rounds} rounds")
        print(
            f"{'contender':<24} {'process s':>9} {'vs stdlib':>10} "
            f"{'logging s':>9} {'vs stdlib':>10} {'records/s':>11}"
        )
        for kind in contenders:
            median = statistics.median(times[kind])
            loop = statistics.median(loops[kind])
            results[f"{kind}/{threads}"] = {
                "median_s": median,
                "ratio": median / base,
                "logging_median_s": loop,
                "logging_ratio": loop / loop_base,
            }
            print(
                f"{kind:<24} {median:9.3f} {median / base:9.2f}x "
                f"{loop:9.3f} {loop / loop_base:9.2f}x {args.records / loop:11,.0f}"
            )
    with tempfile.TemporaryDirectory() as out:
        done = subprocess.run(
            [sys.executable, "-c", STEP_SWITCH, out],
            check=True,
            capture_output=True,
            text=True,
        )
    median_s, p99_s = (float(x) for x in done.stdout.split())
    results["step_switch"] = {"median_us": median_s * 1e6, "p99_us": p99_s * 1e6}
    print(f"\nstep switch: median {median_s * 1e6:.1f} us, p99 {p99_s * 1e6:.1f} us")
    print("\nimport runlog + get_logger: median of 15 fresh processes")
    for kind in ("runlog", "runlog_baseline") if args.baseline else ("runlog",):
        costs = [import_cost(kind, args.baseline) for _ in range(15)]
        seconds = statistics.median(c[0] for c in costs)
        modules = costs[0][1]
        results[f"import/{kind}"] = {"median_ms": seconds * 1e3, "modules": modules}
        print(f"{kind:<20} {seconds * 1e3:7.1f} ms  {modules} modules in sys.modules")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
