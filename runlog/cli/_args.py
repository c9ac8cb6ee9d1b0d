"""What the ``runlog`` commands share: argument types, filters, help layout."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Sequence
from typing import Any, Final

from ..errors import RunlogError
from ..reading import _source

PROG: Final = "runlog"
DEFAULT_RUNS_DIR: Final = "runs"
FOLLOW_INTERVAL_S: Final = 0.25

Handler = Callable[[argparse.Namespace], int]


def steps_arg(text: str) -> frozenset[int]:
    steps: set[int] = set()
    for part in text.split(","):
        piece = part.strip().removeprefix("step_")
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", piece)
        if not match:
            raise argparse.ArgumentTypeError(
                f"step {text!r}: use a number, a range like 2-4, or a list like 1,3"
            )
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) else first
        if last < first:
            raise argparse.ArgumentTypeError(f"step range {piece!r} is backwards")
        if last - first > 100_000:
            raise argparse.ArgumentTypeError(f"step range {piece!r} is too wide")
        steps.update(range(first, last + 1))
    return frozenset(steps)


def level_arg(text: str) -> int:
    try:
        return _source.parse_level(text)
    except RunlogError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def count_arg(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"count {text!r}: use an int >= 0")
    return int(text)


class Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32)


def examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def add_command(
    commands: Any,
    name: str,
    handler: Handler,
    summary: str,
    description: str,
    example_lines: Sequence[str],
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        help=summary,
        description=description,
        epilog=examples(*example_lines),
        formatter_class=Formatter,
    )
    parser.set_defaults(handler=handler)
    return parser


def add_run_arg(
    parser: argparse.ArgumentParser,
    *,
    help_text: str,
    name: str = "run",
    metavar: str = "RUN",
) -> None:
    parser.add_argument(name, metavar=metavar, help=help_text)
    parser.add_argument(
        "--runs-dir",
        default=DEFAULT_RUNS_DIR,
        metavar="DIR",
        help="where a bare run id is looked up (default: runs)",
    )


RUN_HELP: Final = (
    "a run directory (runs/<framework>/<run_id>), its run.tar.gz / run.tar.zst, "
    "or a run id (or unique prefix) under --runs-dir"
)


def add_color(parser: argparse._ActionsContainer) -> None:
    parser.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="color the output (default: auto, on a terminal unless NO_COLOR)",
    )


def add_filters(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("filters (all must match)")
    group.add_argument(
        "--step",
        action="append",
        type=steps_arg,
        metavar="N",
        help="only step N (also 2-4 or 1,3; repeatable)",
    )
    group.add_argument(
        "--component",
        "-c",
        action="append",
        metavar="C",
        help="only component C (adapter, orchestrator, external...; repeatable)",
    )
    group.add_argument(
        "--level",
        "-l",
        type=level_arg,
        metavar="L",
        help="only level L and above: debug, info, warning, error, critical",
    )
    group.add_argument(
        "--grep",
        "-g",
        metavar="RE",
        help="only records whose line or traceback match RE",
    )
    group.add_argument(
        "--ignore-case", "-i", action="store_true", help="--grep ignores case"
    )
    group.add_argument(
        "--since",
        metavar="TS",
        help="only records at or after TS: 2025-10-20T14:23:45Z, 2025-10-20, or an "
        "age like 10m, 2h",
    )
    group.add_argument("--until", metavar="TS", help="only records at or before TS")
    out = parser.add_argument_group("output")
    out.add_argument(
        "--json", action="store_true", help="print the records as JSON lines"
    )
    out.add_argument(
        "--source",
        "-s",
        action="store_true",
        help="append where each record is: @ step_003/adapter.log:17",
    )
    add_color(out)
