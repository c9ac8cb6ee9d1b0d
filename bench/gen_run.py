"""Generate a large, realistic run directory for the summarize and archive benchmarks.

Usage: python bench/gen_run.py OUT_RUNS_DIR [--size-mb 300] [--steps 50] [--seed 1]
Prints the run directory it made. Records follow SPEC §2; each step has the
components orchestrator, adapter, metrics and validator.
"""

from __future__ import annotations

import argparse
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

COMPONENTS = ("adapter", "metrics", "validator")
FRAMEWORK = "bench"
RUN_ID = "20250101T000000Z-bench0"


def _ts(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def generate(runs_dir: Path, size_mb: int, steps: int, seed: int) -> Path:
    """Write the run and return its directory."""
    rng = random.Random(seed)
    run_dir = runs_dir / FRAMEWORK / RUN_ID
    logs = run_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    per_file = max(1, size_mb * 1024 * 1024 // (steps * len(COMPONENTS)))
    clock = start
    for step in range(1, steps + 1):
        step_dir = logs / f"step_{step:03d}"
        step_dir.mkdir(exist_ok=True)

        def head(component: str, step: int = step) -> dict[str, object]:
            return {
                "logger": "bench",
                "component": component,
                "run_id": RUN_ID,
                "framework": FRAMEWORK,
                "step": step,
            }

        orchestrator = [
            {
                "ts": _ts(clock),
                "level": "info",
                "event": "step_start",
                **head("orchestrator"),
                "name": f"step {step}",
                "attempt": 1,
            },
        ]
        for component in COMPONENTS:
            chunks: list[bytes] = []
            written = 0
            n = 0
            while written < per_file:
                clock += timedelta(microseconds=rng.randint(50, 500))
                n += 1
                roll = rng.random()
                if component == "adapter" and roll < 0.5:
                    prompt = rng.randint(50, 2000)
                    completion = rng.randint(10, 500)
                    rec = {
                        "ts": _ts(clock),
                        "level": "info",
                        "event": "llm_request",
                        **head(component),
                        "model": "gpt-4o",
                        "prompt_tokens": prompt,
                        "completion_tokens": completion,
                        "total_tokens": prompt + completion,
                    }
                elif roll < 0.002:
                    rec = {
                        "ts": _ts(clock),
                        "level": "error",
                        "event": "request failed",
                        **head(component),
                        "status": 503,
                        "attempt": n,
                    }
                elif roll < 0.01:
                    rec = {
                        "ts": _ts(clock),
                        "level": "warning",
                        "event": "slow response",
                        **head(component),
                        "latency_ms": rng.randint(900, 5000),
                    }
                elif roll < 0.6:
                    rec = {
                        "ts": _ts(clock),
                        "level": "info",
                        "event": "api_call",
                        **head(component),
                        "endpoint": "/v1/items",
                        "latency_ms": rng.randint(5, 900),
                    }
                else:
                    rec = {
                        "ts": _ts(clock),
                        "level": "debug",
                        "event": "progress",
                        **head(component),
                        "item": n,
                        "done": n / 1000,
                    }
                line = orjson.dumps(rec, option=orjson.OPT_APPEND_NEWLINE)
                chunks.append(line)
                written += len(line)
            (step_dir / f"{component}.log").write_bytes(b"".join(chunks))
        orchestrator.append(
            {
                "ts": _ts(clock),
                "level": "info",
                "event": "step_end",
                **head("orchestrator"),
                "name": f"step {step}",
                "attempt": 1,
                "status": "success",
                "duration_s": round((clock - start).total_seconds(), 3),
            },
        )
        (step_dir / "orchestrator.log").write_bytes(
            b"".join(
                orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in orchestrator
            )
        )
    info = {
        "run_id": RUN_ID,
        "framework": FRAMEWORK,
        "status": "success",
        "started_at": _ts(start),
        "ended_at": _ts(clock),
        "duration_s": round((clock - start).total_seconds(), 6),
        "heartbeat_at": _ts(clock),
        "heartbeat_interval_s": 30.0,
        "pid": 1,
        "host": "bench",
        "metadata": {"model": "gpt-4o"},
    }
    (logs / "run.json").write_bytes(orjson.dumps(info, option=orjson.OPT_INDENT_2))
    return run_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs_dir", type=Path)
    parser.add_argument("--size-mb", type=int, default=300)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(generate(args.runs_dir, args.size_mb, args.steps, args.seed))


if __name__ == "__main__":
    main()
