"""``runlog diff``: two runs compared step by step, with thresholds for CI (#17)."""

from __future__ import annotations

import argparse
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from .. import remote
from ..errors import RunlogError
from ..reading import _runs
from ..summary import _diff, _diff_render
from ._args import add_command, count_arg
from ._common import note


def local_run(stack: ExitStack, text: str, runs_dir: Path) -> Path:
    """RUN as a local run directory or archive; a URL is fetched for the while."""
    if remote.is_remote(text):
        return stack.enter_context(remote.fetched(text))
    source = _runs.resolve_run(text, runs_dir)
    if source.archive is not None and not source.logs_dir.is_dir():
        return source.archive
    return source.run_dir


def _limit(what: str) -> Any:
    def parse(text: str) -> _diff.Limit:
        try:
            return _diff.parse_limit(text, what)
        except RunlogError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def cmd_diff(args: argparse.Namespace) -> int:
    """``runlog diff``: RUN_B against RUN_A; exit 1 when a threshold is crossed."""
    runs_dir = Path(args.runs_dir)
    with ExitStack() as stack:
        run_a = local_run(stack, args.run_a, runs_dir)
        run_b = local_run(stack, args.run_b, runs_dir)
        diff = _diff.diff_runs(run_a, run_b)
    checking = args.check or any(
        value is not None
        for value in (
            args.max_new_errors,
            args.max_token_increase,
            args.max_duration_increase,
        )
    )
    crossings: list[_diff.Crossing] | None = None
    if checking:
        new_errors = args.max_new_errors
        if new_errors is None and args.check:
            new_errors = 0  # --check alone: no new kind of error
        crossings = _diff.check_thresholds(
            diff,
            _diff.Thresholds(
                max_new_errors=new_errors,
                max_token_increase=args.max_token_increase,
                max_duration_increase=args.max_duration_increase,
            ),
        )
    fmt = "json" if args.json else args.format
    if fmt == "json":
        sys.stdout.write(_diff_render.render_json(diff, crossings))
    elif fmt == "markdown":
        sys.stdout.write(_diff_render.render_markdown(diff, crossings))
    else:
        sys.stdout.write(_diff_render.render_text(diff, crossings))
    crossed = [c for c in crossings or [] if c.crossed]
    for crossing in crossed:
        note(
            f"check failed: {crossing.option} {crossing.limit} crossed "
            f"{crossing.over}: {crossing.actual}"
        )
    return 1 if crossed else 0


def register(commands: Any) -> None:
    """Add ``diff`` to the ``runlog`` subcommands."""
    diff = add_command(
        commands,
        "diff",
        cmd_diff,
        "compare two runs step by step: status, errors, calls, tokens, time",
        "Compares RUN_B with RUN_A (the baseline) step by step, steps matched by "
        "number:\nstatus changes, new and resolved error fingerprints (exception "
        "type, masked\nmessage, innermost user frame), attempts, API and LLM "
        "calls, tokens and\nduration, with deltas and percentages. Each RUN is a "
        "run directory, its\narchive, a run id or a stored run's URL.\n\n"
        "With --check (or any threshold), exits 1 when a threshold is crossed and\n"
        "says which and by how much; --check alone allows no new error fingerprint.",
        [
            "runlog diff runs/demo/20251020T142345Z-3f9a1c runs/demo/20251021T090000Z-"
            "77aa01",
            "runlog diff RUN_A RUN_B --format markdown >> $GITHUB_STEP_SUMMARY",
            "runlog diff RUN_A RUN_B --check --max-token-increase 10% "
            "--max-duration-increase 20%",
        ],
    )
    diff.add_argument("run_a", metavar="RUN_A", help="the baseline run")
    diff.set_defaults(pages=True)  # through a pager on a terminal (#16)
    diff.add_argument("run_b", metavar="RUN_B", help="the run compared with it")
    diff.add_argument(
        "--runs-dir",
        default="runs",
        metavar="DIR",
        help="where a bare run id is looked up (default: runs)",
    )
    out = diff.add_argument_group("output")
    out.add_argument(
        "--format",
        choices=("text", "markdown", "json"),
        default="text",
        help="text (80 columns, default), markdown (GitHub; record text escaped) "
        "or json",
    )
    out.add_argument("--json", action="store_true", help="same as --format json")
    checks = diff.add_argument_group("checks (exit 1 when crossed)")
    checks.add_argument(
        "--check",
        action="store_true",
        help="check the thresholds given (default: --max-new-errors 0)",
    )
    checks.add_argument(
        "--max-new-errors",
        type=count_arg,
        metavar="N",
        help="new error fingerprints allowed in RUN_B",
    )
    checks.add_argument(
        "--max-token-increase",
        type=_limit("--max-token-increase"),
        metavar="P",
        help="allowed increase of total tokens: 10%% of RUN_A's, or a count",
    )
    checks.add_argument(
        "--max-duration-increase",
        type=_limit("--max-duration-increase"),
        metavar="P",
        help="allowed increase of the run's duration: 20%% of RUN_A's, or 30s",
    )
