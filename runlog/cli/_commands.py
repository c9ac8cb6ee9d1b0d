"""The ``runlog`` command line: demo, ls, show, tail, summarize, archive, verify."""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import replace
from pathlib import Path

import orjson

from .. import _paths, archive, remote, summary
from .._config import apply_settings, current_settings
from .._text import clean, format_size
from ..archive._archiver import recorded_hash, verify_logs
from ..errors import RunlogError, RunNotFoundError
from ..reading import _follow, _runs, _source
from ..reading._merge import last_records, read_records
from ..reading._source import Entry, Filters, ReadReport, RunSource
from ..run import archive_run
from . import _demo, _parser
from ._parser import DEFAULT_RUNS_DIR, PROG, Handler
from ._parser import FOLLOW_INTERVAL_S as FOLLOW_INTERVAL_S  # still importable
from ._render import (
    PROBLEM_STATUSES,
    Style,
    is_terminal,
    ls_json,
    ls_table,
    render_entry,
    wants_color,
)


def _note(message: str) -> None:
    print(f"{PROG}: {clean(message)}", file=sys.stderr)


def _report_malformed(report: ReadReport) -> None:
    if report.malformed:
        where = ", ".join(report.where)
        more = report.malformed - len(report.where)
        if more > 0:
            where += f" and {more} more"
        _note(f"note: skipped {report.malformed} malformed line(s): {where}")


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
        since=_source.parse_when(args.since) if args.since else None,
        until=_source.parse_when(args.until) if args.until else None,
    )


def _resolve(args: argparse.Namespace) -> RunSource:
    source = _runs.resolve_run(args.run, Path(args.runs_dir))
    if source.archive is not None and Path(args.run).is_dir():
        _note(f"note: {source.run_dir}/logs/ is gone; reading {source.archive.name}")
    return source


def _run_dir(args: argparse.Namespace) -> Path:
    """The run directory of RUN, which must still have its logs/."""
    source = _runs.resolve_run(args.run, Path(args.runs_dir))
    if not source.logs_dir.is_dir():
        raise RunNotFoundError(
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
        files = _source.list_log_files(source.logs_dir)
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
        read_records(source, filters, report),
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
    entries, ends = last_records(source, args.lines, filters, report)
    _print_entries(entries, style, as_json=args.json, source=args.source)
    sys.stdout.flush()
    if not args.follow:
        _report_malformed(report)
        return 0
    follower = _follow.Follower(source.logs_dir, filters, start=ends, report=report)
    try:
        while True:
            new = follower.poll()
            if _print_entries(new, style, as_json=args.json, source=args.source):
                sys.stdout.flush()
            if not follower.behind:  # a flood is caught up without pauses
                time.sleep(args.interval)
    except KeyboardInterrupt:
        # Ctrl-C is how a follow ends: not an error
        sys.stdout.flush()
        _report_malformed(report)
        return 0


def cmd_ls(args: argparse.Namespace) -> int:
    """
    ``runlog ls``: one line per run, newest first.

    A run that cannot be read is a row (UNREADABLE, with the reason), not an
    error: the exit code is 0 whenever the directory itself could be listed,
    even when every run in it is unreadable (see #12).
    """
    runs_dir = Path(args.runs_dir)
    if remote.is_remote(args.runs_dir):
        rows = remote.scan_remote_runs(args.runs_dir)
    elif not runs_dir.is_dir():
        raise RunNotFoundError(f"runs directory {args.runs_dir!r}: no such directory")
    else:
        rows = _runs.scan_runs(runs_dir)
    if args.json:
        print(ls_json(rows))
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
    # `show` cannot read an unreadable run: its row already says why
    readable = [row for row in problems if row.status != _runs.UNREADABLE]
    if readable:
        where = clean(str(readable[0].url or readable[0].path))
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

    run_dir = _run_dir(args)
    if args.check:
        diff = summary.check_summary(run_dir)
        if diff is None:
            print(f"{clean(str(_paths.summary_file(run_dir)))} is up to date")
            return 0
        sys.stdout.write(diff if diff.endswith("\n") else diff + "\n")
        _note(
            f"{_paths.summary_file(run_dir)} is stale: "
            f"run `runlog summarize {args.run}` and commit it"
        )
        return 1
    path = summary.summarize_run(run_dir)
    print(clean(str(path)))
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
            f"\rarchiving: {format_size(done_bytes, short=True)} of "
            f"{format_size(self.total, short=True)}"
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

    run_dir = _run_dir(args)
    progress: _Progress | None = None
    if is_terminal(sys.stderr):
        progress = _Progress(_tree_size(_paths.logs_dir(run_dir)))
    try:
        info = archive_run(run_dir, args.format, progress)
    finally:
        if progress is not None:
            progress.clear()
    print(f"archive  {clean(str(info.path))}")
    print(f"sha256   {info.sha256}")
    print(
        f"size     {format_size(info.size_bytes, short=True)} ({info.file_count} files)"
    )
    print(f"summary  {clean(str(_paths.summary_file(run_dir)))} (records this hash)")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """``runlog verify``: the archive against its manifest, sidecar, summary, logs/."""
    target = Path(args.target)
    if not target.exists() and _paths.is_safe_name(args.target):
        target = _runs.resolve_run(args.target, Path(args.runs_dir)).run_dir
    path = archive.locate_archive(target)
    info = archive.verify_archive(path)
    compared = verify_logs(path)  # a late writer's records, see #12
    summary_path = _paths.summary_file(path.parent)
    print(f"OK  {clean(str(path))}")
    print(
        f"    sha256 {info.sha256}, {info.file_count} files, "
        f"{format_size(info.size_bytes, short=True)}"
    )
    print("    matches its manifest and its sidecar", end="")
    if recorded_hash(path) == info.sha256:
        print(f", and the hash recorded in {summary_path.name}")
    else:
        print(f"; {summary_path.name} records no hash for it")
    if compared:
        print(f"    logs/ holds nothing else ({compared} files compared)")
    if info.symlinks:
        shown = ", ".join(
            f"{clean(name)} -> {clean(target)}" for name, target in info.symlinks[:3]
        )
        more = len(info.symlinks) - 3
        print(
            f"    holds {len(info.symlinks)} symlink(s), stored as links, not "
            f"followed: {shown}" + (f" ... and {more} more" if more > 0 else "")
        )
    return 0


def cmd_upload(args: argparse.Namespace) -> int:
    """``runlog upload``: copy a run to object storage and check it there (#8)."""
    run_dir = _runs.resolve_run(args.run, Path(args.runs_dir)).run_dir
    urls = remote.upload_run(run_dir, args.url, retries=args.retries)
    for url in urls:
        print(f"uploaded  {clean(url)}")
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


def cmd_demo(args: argparse.Namespace) -> int:
    """``runlog demo``: run the built-in orchestrator and show what it left."""

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
    _print_entries(read_records(source, Filters(min_level=20)), style, block_lines=2)
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


def build_parser() -> argparse.ArgumentParser:
    """The ``runlog`` argument parser with every subcommand."""
    return _parser.build_parser(
        {
            "demo": cmd_demo,
            "ls": cmd_ls,
            "show": cmd_show,
            "tail": cmd_tail,
            "summarize": cmd_summarize,
            "archive": cmd_archive,
            "verify": cmd_verify,
            "upload": cmd_upload,
            "gitignore": cmd_gitignore,
        }
    )


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
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        with _local_copy(args):
            return handler(args)
    except RunlogError as exc:
        print(f"{PROG}: error: {clean(str(exc))}", file=sys.stderr)
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
