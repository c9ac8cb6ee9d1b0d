"""The ``runlog`` command line: demo, ls, show, tail, summarize, archive, verify."""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

import orjson

from . import _paths, _reader, remote
from ._cli_render import (
    PROBLEM_STATUSES,
    Style,
    format_size,
    is_terminal,
    ls_table,
    render_entry,
    wants_color,
)
from ._reader import Entry, Filters, ReadReport, RunSource
from ._version import __version__
from .errors import RunlogError
from .loggers import apply_settings, current_settings

PROG: Final = "runlog"
DEFAULT_RUNS_DIR: Final = "runs"
FOLLOW_INTERVAL_S: Final = 0.25
_SUMMARY_HASH: Final = re.compile(r"^\s*SHA-256:\s+([0-9a-f]{64})\s*$", re.MULTILINE)


def _note(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr)


def _report_malformed(report: ReadReport) -> None:
    if report.malformed:
        where = ", ".join(report.where)
        more = report.malformed - len(report.where)
        if more > 0:
            where += f" and {more} more"
        _note(f"note: skipped {report.malformed} malformed line(s): {where}")


# --- argument types ---------------------------------------------------------


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
        return _reader.parse_level(text)
    except RunlogError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _count_arg(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"count {text!r}: use an int >= 0")
    return int(text)


def _filters(args: argparse.Namespace) -> Filters:
    steps: frozenset[int] | None = None
    if args.step:
        steps = frozenset().union(*args.step)
    components = frozenset(args.component) if args.component else None
    pattern = None
    if args.grep is not None:
        try:
            pattern = re.compile(args.grep, re.IGNORECASE if args.ignore_case else 0)
        except re.error as exc:
            raise RunlogError(f"--grep {args.grep!r}: {exc}") from None
    return Filters(
        steps=steps,
        components=components,
        min_level=args.level or 0,
        pattern=pattern,
        since=_reader.parse_when(args.since) if args.since else None,
        until=_reader.parse_when(args.until) if args.until else None,
    )


def _resolve(args: argparse.Namespace) -> RunSource:
    source = _reader.resolve_run(args.run, Path(args.runs_dir))
    if source.archive is not None and Path(args.run).is_dir():
        _note(f"note: {source.run_dir}/logs/ is gone; reading {source.archive.name}")
    return source


def _run_dir(args: argparse.Namespace) -> Path:
    """The run directory of RUN, which must still have its logs/."""
    source = _reader.resolve_run(args.run, Path(args.runs_dir))
    if not source.logs_dir.is_dir():
        raise _reader.RunNotFoundError(
            f"run {args.run!r}: {source.logs_dir} is missing, so there is "
            "nothing to read (an archive can be shown and verified, not rewritten)"
        )
    return source.run_dir


# --- commands ---------------------------------------------------------------


def _print_entries(
    entries: Iterable[Entry],
    style: Style,
    *,
    as_json: bool = False,
    source: bool = False,
    block_lines: int | None = None,
) -> int:
    count = 0
    out = sys.stdout
    for entry in entries:
        if as_json:
            out.write(orjson.dumps(entry.record).decode("utf-8") + "\n")
        else:
            text = render_entry(entry, style, source=source, block_lines=block_lines)
            out.write(text + "\n")
        count += 1
    return count


def _explain_empty(source: RunSource, filters: Filters) -> None:
    message = "no records match"
    if source.archive is None and filters.steps is not None:
        files = _reader.list_log_files(source.logs_dir)
        present = sorted({f.step for f in files if f.step is not None})
        if not set(filters.steps) & set(present):
            shown = ", ".join(str(s) for s in present[:20]) or "none"
            message += f" (this run's steps: {shown})"
    _note(message)


def cmd_show(args: argparse.Namespace) -> int:
    """``runlog show``: the run's records in time order."""
    source = _resolve(args)
    filters = _filters(args)
    report = ReadReport()
    style = Style(wants_color(args.color, sys.stdout))
    count = _print_entries(
        _reader.read_records(source, filters, report),
        style,
        as_json=args.json,
        source=args.source,
    )
    if count == 0:
        _explain_empty(source, filters)
    _report_malformed(report)
    return 0


def cmd_tail(args: argparse.Namespace) -> int:
    """``runlog tail``: the last records; ``-f`` follows the run as it grows."""
    source = _resolve(args)
    filters = _filters(args)
    report = ReadReport()
    style = Style(wants_color(args.color, sys.stdout))
    if args.follow and source.archive is not None:
        raise RunlogError(
            f"cannot follow {source.archive.name}: an archive does not grow "
            "(drop -f, or give the run directory of a live run)"
        )
    entries, ends = _reader.last_records(source, args.lines, filters, report)
    _print_entries(entries, style, as_json=args.json, source=args.source)
    sys.stdout.flush()
    if not args.follow:
        _report_malformed(report)
        return 0
    follower = _reader.Follower(source.logs_dir, filters, start=ends, report=report)
    try:
        while True:
            new = follower.poll()
            if _print_entries(new, style, as_json=args.json, source=args.source):
                sys.stdout.flush()
            time.sleep(args.interval)
    except KeyboardInterrupt:
        # Ctrl-C is how a follow ends: not an error
        sys.stdout.flush()
        _report_malformed(report)
        return 0


def cmd_ls(args: argparse.Namespace) -> int:
    """``runlog ls``: one line per run, newest first."""
    runs_dir = Path(args.runs_dir)
    if remote.is_remote(args.runs_dir):
        rows = remote.scan_remote_runs(args.runs_dir)
    elif not runs_dir.is_dir():
        raise _reader.RunNotFoundError(
            f"runs directory {args.runs_dir!r}: no such directory"
        )
    else:
        rows = _reader.scan_runs(runs_dir)
    if args.json:
        print(orjson.dumps([row.as_json() for row in rows]).decode("utf-8"))
        return 0
    if not rows:
        _note(f"no runs under {args.runs_dir!r} (try `runlog demo`)")
        return 0
    style = Style(wants_color(args.color, sys.stdout))
    for line in ls_table(rows, style):
        print(line)
    problems = [row for row in rows if row.status in PROBLEM_STATUSES]
    counts: dict[str, int] = {}
    for row in problems:
        counts[row.status] = counts.get(row.status, 0) + 1
    tally = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    print()
    print(
        f"{len(rows)} run{'s' if len(rows) != 1 else ''}"
        + (f": {tally}" if tally else "")
    )
    if problems:
        where = problems[0].url or problems[0].path
        print(f"newest problem: runlog show {where} --level warning")
    return 0


def cmd_gitignore(args: argparse.Namespace) -> int:
    """``runlog gitignore``: the block that keeps logs and archives out of git."""
    print(gitignore_block(args.runs_dir), end="")
    return 0


def gitignore_block(runs_dir: str = DEFAULT_RUNS_DIR) -> str:
    """The recommended .gitignore lines: track summaries, ignore logs and archives."""
    prefix = runs_dir.strip().strip("/") or DEFAULT_RUNS_DIR
    lines = ["# runlog: track run summaries, ignore raw logs and archives"]
    lines.append(f"{prefix}/**/{_paths.LOGS_DIR}/")
    for name in _paths.ARCHIVE_NAMES.values():
        lines.append(f"{prefix}/**/*{name.removeprefix('run')}")
        lines.append(f"{prefix}/**/*{name.removeprefix('run')}{_paths.SIDECAR_SUFFIX}")
    return "\n".join(lines) + "\n"


def cmd_summarize(args: argparse.Namespace) -> int:
    """``runlog summarize``: (re)write logs_summary.txt, or check it is current."""
    from . import summary

    run_dir = _run_dir(args)
    if args.check:
        diff = summary.check_summary(run_dir)
        if diff is None:
            print(f"{_paths.summary_file(run_dir)} is up to date")
            return 0
        sys.stdout.write(diff if diff.endswith("\n") else diff + "\n")
        _note(
            f"{_paths.summary_file(run_dir)} is stale: "
            f"run `runlog summarize {args.run}` and commit it"
        )
        return 1
    path = summary.summarize_run(run_dir)
    print(path)
    return 0


class _Progress:
    """Archive progress on a terminal's stderr, at most ten updates a second."""

    def __init__(self, total_bytes: int) -> None:
        self.total = total_bytes
        self.shown_at = 0.0
        self.drawn = False

    def __call__(self, done_bytes: int, done_files: int) -> None:
        now = time.monotonic()
        if now - self.shown_at < 0.1:
            return
        self.shown_at = now
        share = f" ({100 * done_bytes // self.total}%)" if self.total else ""
        sys.stderr.write(
            f"\rarchiving: {format_size(done_bytes)} of {format_size(self.total)}"
            f"{share}, {done_files} files\x1b[K"
        )
        sys.stderr.flush()
        self.drawn = True

    def clear(self) -> None:
        if self.drawn:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


def _tree_size(directory: Path) -> int:
    total = 0
    for root, _, names in os.walk(directory):
        for name in names:
            with suppress(FileNotFoundError):  # a file removed while we count
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def cmd_archive(args: argparse.Namespace) -> int:
    """``runlog archive``: write the archive and sidecar, refresh the summary."""
    from . import archive

    run_dir = _run_dir(args)
    progress: _Progress | None = None
    if is_terminal(sys.stderr):
        progress = _Progress(_tree_size(_paths.logs_dir(run_dir)))
    try:
        info = archive.archive_run(run_dir, args.format, progress)
    finally:
        if progress is not None:
            progress.clear()
    print(f"archive  {info.path}")
    print(f"sha256   {info.sha256}")
    print(f"size     {format_size(info.size_bytes)} ({info.file_count} files)")
    print(f"summary  {_paths.summary_file(run_dir)} (records this hash)")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """``runlog verify``: the archive against its manifest, sidecar and summary."""
    from . import archive

    target = Path(args.target)
    if not target.exists() and _paths.is_safe_name(args.target):
        target = _reader.resolve_run(args.target, Path(args.runs_dir)).run_dir
    path = archive.locate_archive(target)
    info = archive.verify_archive(path)
    summary_path = _paths.summary_file(path.parent)
    print(f"OK  {path}")
    print(
        f"    sha256 {info.sha256}, {info.file_count} files, "
        f"{format_size(info.size_bytes)}"
    )
    print("    matches its manifest and its sidecar", end="")
    if _recorded_hash(summary_path) == info.sha256:
        print(f", and the hash recorded in {summary_path.name}")
    else:
        print(f"; {summary_path.name} records no hash for it")
    return 0


def cmd_upload(args: argparse.Namespace) -> int:
    """``runlog upload``: copy a run to object storage and check it there (#8)."""
    run_dir = _reader.resolve_run(args.run, Path(args.runs_dir)).run_dir
    urls = remote.upload_run(run_dir, args.url, retries=args.retries)
    for url in urls:
        print(f"uploaded  {url}")
    print("verified  size and SHA-256 of each object, re-read from the store")
    return 0


@contextmanager
def _local_copy(args: argparse.Namespace) -> Iterator[None]:
    """show/tail/verify given a URL read a temporary local copy of it (#8)."""
    name = "target" if args.handler is cmd_verify else "run"
    value = getattr(args, name, None)
    if args.handler not in (cmd_show, cmd_tail, cmd_verify) or not (
        remote.is_remote(value)
    ):
        yield
        return
    if getattr(args, "follow", False):
        raise RunlogError(
            f"cannot follow {remote.display_url(value)!r}: a stored run is a "
            "snapshot (drop -f)"
        )
    with remote.fetched(value) as local:
        setattr(args, name, str(local))
        yield


def _recorded_hash(summary_path: Path) -> str | None:
    try:
        text = summary_path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None
    match = _SUMMARY_HASH.search(text)
    return match.group(1) if match else None


def cmd_demo(args: argparse.Namespace) -> int:
    """``runlog demo``: run the built-in orchestrator and show what it left."""
    from . import _demo

    runs_dir = Path(args.runs_dir)
    previous = current_settings()
    # the records are printed below, readably, once the run is complete
    apply_settings(replace(previous, console_format="off"))
    try:
        result = _demo.run_demo(runs_dir, archive_format=args.format)
    finally:
        apply_settings(previous)
    style = Style(wants_color(args.color, sys.stdout))
    source = RunSource(result.run_dir)
    print(style("1", "The demo run's records (info and up; tracebacks cut short):"))
    _print_entries(
        _reader.read_records(source, Filters(min_level=20)), style, block_lines=2
    )
    print()
    print(style("1", "The top of its summary:"))
    for line in _summary_head(result.summary):
        print(f"  {line}")
    run = _demo.short_path(result.run_dir)
    print()
    print(style("1", f"run      {run}  ({result.status})"))
    print(f"logs     {run}/logs/  (step_001/ .. step_{result.steps:03d}/)")
    print(f"summary  {_demo.short_path(result.summary)}")
    if result.archive is not None:
        print(f"archive  {_demo.short_path(result.archive)}")
    print()
    print(style("1", "try next:"))
    for line in _demo.next_commands(result):
        print(f"  {line}")
    return 0


def _summary_head(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ["(no summary was written)"]
    head = text.split("\n\n", 1)[0]
    return head.splitlines()[:5]


# --- parser -----------------------------------------------------------------

_Handler = Callable[[argparse.Namespace], int]


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32)


def _examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def _add_command(
    commands: Any,
    name: str,
    handler: _Handler,
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


def _add_run_arg(parser: argparse.ArgumentParser, *, help_text: str) -> None:
    parser.add_argument("run", metavar="RUN", help=help_text)
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


def build_parser() -> argparse.ArgumentParser:
    """The ``runlog`` argument parser with every subcommand."""
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
        cmd_demo,
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
        cmd_ls,
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
        cmd_show,
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
        cmd_tail,
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
        cmd_summarize,
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
        cmd_archive,
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
        cmd_verify,
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
    verify.add_argument(
        "target",
        metavar="RUN_OR_ARCHIVE",
        help="a run directory, its run.tar.gz / run.tar.zst, or a run id",
    )
    verify.add_argument(
        "--runs-dir",
        default=DEFAULT_RUNS_DIR,
        metavar="DIR",
        help="where a bare run id is looked up (default: runs)",
    )

    upload = _add_command(
        commands,
        "upload",
        cmd_upload,
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
        cmd_gitignore,
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


def main(argv: list[str] | None = None) -> int:
    """
    Run the ``runlog`` command line with *argv* (default: ``sys.argv[1:]``).

    Returns:
        0 on success, 1 when a check failed, 2 on a usage or input error
        (with one ``runlog: error: ...`` line on stderr and no traceback).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits for --help, --version and misuse
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    handler: _Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        with _local_copy(args):
            return handler(args)
    except RunlogError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        # the reader went away (`runlog show RUN | head`): stop quietly, and
        # point stdout at /dev/null so the interpreter's final flush is silent
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 0
    except KeyboardInterrupt:
        return 130
