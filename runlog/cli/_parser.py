"""The ``runlog`` argparse wiring: commands, their options, help and examples."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from .. import remote
from .._version import __version__
from ..errors import RunlogError
from ..reading import _source

PROG: Final = "runlog"
DEFAULT_RUNS_DIR: Final = "runs"
FOLLOW_INTERVAL_S: Final = 0.25

Handler = Callable[[argparse.Namespace], int]


def _steps_arg(text: str) -> frozenset[int]:
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


def _level_arg(text: str) -> int:
    try:
        return _source.parse_level(text)
    except RunlogError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _count_arg(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"count {text!r}: use an int >= 0")
    return int(text)


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32)


def _examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def _add_command(
    commands: Any,
    name: str,
    handler: Handler,
    summary: str,
    description: str,
    examples: Sequence[str],
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        help=summary,
        description=description,
        epilog=_examples(*examples),
        formatter_class=_Formatter,
    )
    parser.set_defaults(handler=handler)
    return parser


def _add_run_arg(
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


_RUN_HELP: Final = (
    "a run directory (runs/<framework>/<run_id>), its run.tar.gz / run.tar.zst, "
    "or a run id (or unique prefix) under --runs-dir"
)


def _add_color(parser: argparse._ActionsContainer) -> None:
    parser.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="color the output (default: auto, on a terminal unless NO_COLOR)",
    )


def _add_filters(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("filters (all must match)")
    group.add_argument(
        "--step",
        action="append",
        type=_steps_arg,
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
        type=_level_arg,
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
    _add_color(out)


def build_parser(handlers: Mapping[str, Handler]) -> argparse.ArgumentParser:
    """
    The ``runlog`` argument parser with every subcommand.

    Args:
        handlers: The function behind each command name; the parsed
            arguments carry it as ``handler``.
    """
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Read, summarize and archive runlog runs: one directory of logs per "
            "run,\nsplit per step and per component."
        ),
        epilog=_examples(
            "runlog demo                                  # make a sample run",
            "runlog ls                                    # which runs failed?",
            "runlog show RUN --step 3 --level warning     # what went wrong in step 3",
            "runlog tail RUN -f                           # watch a live run",
            "runlog verify RUN                            # is the archive intact?",
            "",
            "RUN is runs/<framework>/<run_id>, its run.tar.gz, or just the run id.",
            "`runlog COMMAND --help` shows each command's options and examples.",
        ),
        formatter_class=_Formatter,
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    demo = _add_command(
        commands,
        "demo",
        handlers["demo"],
        "run a small built-in orchestrator and show the run it leaves",
        "Runs a built-in orchestrator (5 steps; components orchestrator, adapter, "
        "metrics, validator;\nan LLM-like adapter with token counts, a retried "
        "step, a human-in-the-loop event,\na third-party logger, a warning and a "
        "handled error), then prints its records,\nwhere its logs, summary and "
        "archive are, and what to try next.",
        [
            "runlog demo",
            "runlog demo --runs-dir /tmp/runs",
            "runlog demo --format zst",
        ],
    )
    demo.add_argument(
        "--runs-dir",
        default=DEFAULT_RUNS_DIR,
        metavar="DIR",
        help="where to create demo/<run_id>/ (default: runs)",
    )
    demo.add_argument(
        "--format", choices=("gz", "zst"), default="gz", help="archive format"
    )
    _add_color(demo)

    ls = _add_command(
        commands,
        "ls",
        handlers["ls"],
        "list runs, newest first; failed and crashed runs stand out",
        "Lists every run under RUNS_DIR (runs/<framework>/<run_id>/), newest first:"
        "\nframework, run id, status, start, duration, steps, errors, warnings.\n"
        "A run whose process died while it said `running` shows as CRASHED;\n"
        "problem statuses are in capitals (and red on a terminal).",
        [
            "runlog ls",
            "runlog ls sample_runs",
            "runlog ls --json | jq '.[] | select(.status != \"success\")'",
        ],
    )
    ls.add_argument(
        "runs_dir",
        nargs="?",
        default=DEFAULT_RUNS_DIR,
        metavar="RUNS_DIR",
        help="directory of runs (default: runs)",
    )
    ls.add_argument("--json", action="store_true", help="print a JSON list")
    _add_color(ls)

    show = _add_command(
        commands,
        "show",
        handlers["show"],
        "print a run's records in time order, with filters",
        "Prints the records of a run, every step and component file merged in "
        "time order,\none line each: time (UTC), level, step, component, event, "
        "key=value.\nTracebacks are shown indented below their record. RUN may be "
        "an archive: it is read\nin place, never extracted. Works on a run that "
        "is still being written.",
        [
            "runlog show runs/demo/20251020T142345Z-3f9a1c --step 3 --level warning",
            "runlog show 20251020T1423 --component adapter --grep 'llm_request'",
            "runlog show runs/demo/20251020T142345Z-3f9a1c/run.tar.gz --level error",
            "runlog show RUN --since 2025-10-20T14:20Z --until 2025-10-20T14:30Z",
            'runlog show RUN --json | jq -r \'select(.event=="llm_request") '
            "| .total_tokens'",
        ],
    )
    _add_run_arg(show, help_text=_RUN_HELP)
    _add_filters(show)

    tail = _add_command(
        commands,
        "tail",
        handlers["tail"],
        "print a run's last records; -f follows it as it grows",
        "Prints the last N records across all of the run's files. With -f, keeps "
        "printing\nnew records as they are written, including the files of steps "
        "that start later,\nuntil Ctrl-C.",
        [
            "runlog tail runs/demo/20251020T142345Z-3f9a1c",
            "runlog tail RUN -f",
            "runlog tail RUN -f --level warning",
            "runlog tail RUN -n 50 --component adapter",
        ],
    )
    _add_run_arg(tail, help_text=_RUN_HELP)
    tail.add_argument(
        "-n",
        "--lines",
        type=_count_arg,
        default=20,
        metavar="N",
        help="how many records (default: 20)",
    )
    tail.add_argument(
        "-f", "--follow", action="store_true", help="keep printing new records"
    )
    tail.add_argument(
        "--interval",
        type=float,
        default=FOLLOW_INTERVAL_S,
        metavar="S",
        help=argparse.SUPPRESS,
    )
    _add_filters(tail)

    summarize = _add_command(
        commands,
        "summarize",
        handlers["summarize"],
        "(re)write logs_summary.txt; --check fails if it is stale",
        "Writes RUN/logs_summary.txt from the run's logs. With --check, writes "
        "nothing and\nexits 1 with a diff if the file on disk differs from what "
        "the logs give (for CI).",
        [
            "runlog summarize runs/demo/20251020T142345Z-3f9a1c",
            "runlog summarize RUN --check",
        ],
    )
    _add_run_arg(summarize, help_text="a run directory with its logs/, or a run id")
    summarize.add_argument(
        "--check",
        action="store_true",
        help="exit 1 (with a diff) if logs_summary.txt would change",
    )

    archive = _add_command(
        commands,
        "archive",
        handlers["archive"],
        "write run.tar.gz (or .zst) and its sidecar; refresh the summary",
        "Archives RUN/logs/ into RUN/run.tar.gz (or run.tar.zst) with a "
        "MANIFEST.sha256\nand a `sha256sum -c` sidecar, prints the hash, and "
        "rewrites logs_summary.txt so it\nrecords it. The same files always give "
        "the same bytes.",
        [
            "runlog archive runs/demo/20251020T142345Z-3f9a1c",
            "runlog archive RUN --format zst",
        ],
    )
    _add_run_arg(archive, help_text="a run directory with its logs/, or a run id")
    archive.add_argument(
        "--format", choices=("gz", "zst"), default="gz", help="default: gz"
    )

    verify = _add_command(
        commands,
        "verify",
        handlers["verify"],
        "check an archive against its manifest, sidecar and summary",
        "Re-reads the archive and exits 0 if every member matches MANIFEST.sha256,"
        "\nthe archive matches its .sha256 sidecar, and logs_summary.txt (when it "
        "records\na hash) names the same hash; else exits 1 naming the first "
        "mismatch.",
        [
            "runlog verify runs/demo/20251020T142345Z-3f9a1c",
            "runlog verify runs/demo/20251020T142345Z-3f9a1c/run.tar.gz",
        ],
    )
    _add_run_arg(
        verify,
        help_text="a run directory, its run.tar.gz / run.tar.zst, or a run id",
        name="target",
        metavar="RUN_OR_ARCHIVE",
    )

    upload = _add_command(
        commands,
        "upload",
        handlers["upload"],
        "copy a run to object storage (s3://...) and verify it there",
        "Copies RUN's archive, its sidecar, logs/run.json and logs_summary.txt "
        "(a run\nwithout an archive: every file of logs/) to "
        "URL/<framework>/<run_id>/, re-reads\neach object to check its size "
        "and SHA-256, and retries transient errors.\nNeeds `pip install "
        "'runlog[remote]'`; credentials come from the environment.\n"
        "show, tail, verify and ls accept such URLs too.",
        [
            "runlog upload runs/demo/20251020T142345Z-3f9a1c s3://team-runs/prod",
            "runlog ls s3://team-runs/prod",
            "runlog show s3://team-runs/prod/demo/20251020T142345Z-3f9a1c",
            "runlog verify s3://team-runs/prod/demo/20251020T142345Z-3f9a1c",
        ],
    )
    _add_run_arg(upload, help_text="a run directory, or a run id")
    upload.add_argument("url", metavar="URL", help="base URL: s3://bucket/prefix")
    upload.add_argument(
        "--retries",
        type=_count_arg,
        default=remote.DEFAULT_RETRIES,
        metavar="N",
        help=f"retries per request on transient errors (default: "
        f"{remote.DEFAULT_RETRIES})",
    )

    gitignore = _add_command(
        commands,
        "gitignore",
        handlers["gitignore"],
        "print the .gitignore block: track summaries, ignore logs and archives",
        "Prints the lines to add to .gitignore so logs_summary.txt is tracked "
        "while logs/\nand archives stay out of git.",
        ["runlog gitignore >> .gitignore", "runlog gitignore --runs-dir experiments"],
    )
    gitignore.add_argument(
        "--runs-dir",
        default=DEFAULT_RUNS_DIR,
        metavar="DIR",
        help="the runs directory, relative to the repository (default: runs)",
    )
    return parser
