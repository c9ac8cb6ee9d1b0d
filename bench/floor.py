"""What CPython costs per record before a reader does anything of its own (#16).

Usage: python bench/floor.py [--work DIR] [--repeat 7]

Takes the lines of one step of the run ``bench/read.py`` makes (made here
if missing) and times, best of --repeat, the least a pure-Python reader
must do for each record it prints: cut the lines, parse each with
``orjson``, hold the record with where it came from, read the five fields
of the head, format one line, join and write. The sum is the floor under
any reader written in Python that parses what it prints, against what the
targets of #16 allow per printed record. Prints one JSON line per step and
a table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gen_run  # the generator beside this script

RECORDS = 1_450_000  # the 300 MB run of bench/read.py
# (target, records it prints, seconds allowed, seconds of work that is not
# per record: the start of the process and a scan of 300 MB), from
# bench/read.py's medians of a quiet machine (docs/PERFORMANCE.md)
TARGETS = (
    ("full show <= 4 s", RECORDS, 4.0, 0.10),
    ("--grep, 227 k matches, <= 4x grep -rh", 227_000, 4 * 0.276, 0.35),
    ("--component adapter <= 2x grep -rh", 484_000, 2 * 0.230, 0.15),
    ("run.tar.zst --grep <= 1.5x zstd -dc | grep", 227_000, 1.5 * 0.375, 0.40),
)


class Held:
    """A record and where it was read: the least a merge by time needs."""

    __slots__ = ("line", "record", "source", "ts")

    def __init__(self, ts: str, record: dict, source: str, line: int) -> None:
        self.ts = ts
        self.record = record
        self.source = source
        self.line = line


def best_of(repeat: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def head_fields(records: list[dict]) -> None:
    for record in records:
        (
            record["ts"],
            record["level"],
            record["component"],
            record["step"],
            record["event"],
        )


def one_line(held: list[Held]) -> list[str]:
    lines = []
    for item in held:
        record = item.record
        lines.append(
            f"{item.ts} {record['level']} {record['step']} "
            f"{record['component']} {record['event']}"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/runlog-bench-read"))
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    runs = args.work / "big"
    step = runs / gen_run.FRAMEWORK / gen_run.RUN_ID / "logs" / "step_007"
    if not step.is_dir():
        gen_run.generate(runs, 300, 50, 1)
    data = b"".join(path.read_bytes() for path in sorted(step.glob("*.log")))
    lines = data.split(b"\n")[:-1]
    count = len(lines)
    records = list(map(orjson.loads, lines))
    held = [Held(r["ts"], r, "step_007/adapter.log", n) for n, r in enumerate(records)]
    texts = one_line(held)
    sink = open(os.devnull, "w")  # noqa: SIM115  # kept open for every round
    steps = {
        "cut lines (bytes.split)": lambda: data.split(b"\n"),
        "parse (orjson.loads)": lambda: list(map(orjson.loads, lines)),
        "hold with its place (slots object)": lambda: [
            Held(r["ts"], r, "x", n) for n, r in enumerate(records)
        ],
        "read the head's five fields": lambda: head_fields(records),
        "format one line (f-string)": lambda: one_line(held),
        "join and write": lambda: sink.write("\n".join(texts)),
    }
    floor = 0.0
    rows = []
    for name, work in steps.items():
        per_record = best_of(args.repeat, work) / count * 1e6
        floor += per_record
        rows.append((name, per_record))
        print(json.dumps({"step": name, "us_per_record": round(per_record, 3)}))
    print(f"\n{count} records of step_007, best of {args.repeat}")
    print(f"{'step':40s} {'us/record':>10s}")
    for name, per_record in rows:
        print(f"{name:40s} {per_record:10.2f}")
    print(f"{'floor':40s} {floor:10.2f}")
    print(f"\n{'target':45s} {'allowed us/record':>18s} {'floor x records':>16s}")
    for name, printed, allowed, fixed in TARGETS:
        budget = (allowed - fixed) / printed * 1e6
        print(f"{name:45s} {budget:18.2f} {floor * printed / 1e6:15.2f}s")


if __name__ == "__main__":
    main()
