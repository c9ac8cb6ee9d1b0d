"""Records/s from 2 Dask workers: the event channel against direct file writes.

A ``LocalCluster(processes=True, host="127.0.0.1", n_workers=2,
threads_per_worker=2)`` with ``runlog.dask.RunlogPlugin`` runs ``--tasks``
wrapped tasks inside one step; together they log ``--records`` records
(each with two key-value pairs). Two transports, interleaved rounds:

- ``direct``: ``RunlogPlugin()``; the workers see the run directory and
  write the records themselves.
- ``events``: ``RunlogPlugin(transport="events")``; the workers send the
  records through Dask's event channel and this process (the client) writes
  them.

A round is timed from the first submit until every future is done (so, in
events mode, every record is written: a task's records are written before
its future completes). Reported: median seconds and records/s per
transport, and the ratio. The console is off in both.

Usage: python bench/dask_records.py [--records 100000] [--tasks 40] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import distributed  # after the checkout is on sys.path
from distributed import Client, LocalCluster

import runlog  # the checkout's runlog, not an installed one
from runlog.dask import RunlogPlugin, channel_stats


def task(n: int, count: int) -> int:
    """One task: *count* records."""
    log = runlog.get_logger("bench", component="task")
    for i in range(count):
        log.info("work", n=n, i=i)
    return count


def one_round(
    client: Client, runs: Path, transport: str, records: int, tasks: int
) -> float:
    """Seconds for *records* records from *tasks* tasks, all written."""
    client.register_plugin(
        RunlogPlugin(transport="events" if transport == "events" else "auto")
    )
    per_task = records // tasks
    before = channel_stats().written
    with runlog.start_run("bench", runs_dir=runs, archive=False) as run:
        with run.step(1):
            started = time.perf_counter()
            futures = [
                client.submit(runlog.wrap(task), n, per_task, pure=False)
                for n in range(tasks)
            ]
            distributed.wait(futures, timeout=600)
            elapsed = time.perf_counter() - started
        written = sum(1 for _ in (run.logs_dir / "step_001" / "task.log").open("rb"))
    assert written == per_task * tasks, (written, per_task * tasks)
    through_events = channel_stats().written - before
    assert (through_events > 0) == (transport == "events"), through_events
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    runlog.configure(console_format="off")
    times: dict[str, list[float]] = {"direct": [], "events": []}
    with (
        tempfile.TemporaryDirectory() as tmp,
        LocalCluster(
            processes=True,
            host="127.0.0.1",
            n_workers=2,
            threads_per_worker=2,
            dashboard_address=":0",
        ) as cluster,
        Client(cluster) as client,
    ):
        for transport in times:  # warm-up: imports on the workers
            one_round(client, Path(tmp), transport, 2_000, 4)
        for _ in range(args.rounds):
            for transport, found in times.items():
                found.append(
                    one_round(client, Path(tmp), transport, args.records, args.tasks)
                )
    result = {}
    for transport, found in times.items():
        median = statistics.median(found)
        result[transport] = {
            "median_s": round(median, 3),
            "records_per_s": round(args.records / median),
            "rounds_s": [round(t, 3) for t in found],
        }
    result["events_over_direct_time"] = round(
        result["events"]["median_s"] / result["direct"]["median_s"], 2
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
