"""``runlog summarize`` and ``gitignore``: the summary a reviewer reads in git."""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Final

from .. import _paths, summary
from .._text import clean
from ..errors import RunlogError
from ..summary import _github, _markdown
from ..summary._layout import SummarySection
from ..summary._summarizer import report_for
from ._args import DEFAULT_RUNS_DIR, add_command, add_run_arg
from ._common import note, run_dir_of

# a committed summary is at most 10 KB; a bigger file is read only this far
_MAX_SUMMARY_READ: Final = 1 << 20


def cmd_summarize(args: argparse.Namespace) -> int:
    """``runlog summarize``: (re)write logs_summary.txt, or check it is current."""
    if args.format == "markdown" or args.github:
        return _github_or_markdown(args)
    run_dir = run_dir_of(args)
    if args.check:
        diff = summary.check_summary(run_dir, sections=_baseline(args, run_dir))
        if diff is None:
            print(f"{clean(str(_paths.summary_file(run_dir)))} is up to date")
            return 0
        sys.stdout.write(diff if diff.endswith("\n") else diff + "\n")
        note(
            f"{_paths.summary_file(run_dir)} is stale: "
            f"run `runlog summarize {args.run}` and commit it"
        )
        return 1
    path = summary.summarize_run(run_dir, sections=_baseline(args, run_dir))
    print(clean(str(path)))
    return 0


def _baseline(args: argparse.Namespace, run_dir: Path) -> list[SummarySection]:
    """The "Changes since <baseline>" block of ``--baseline OTHER``, or none (#17)."""
    if args.baseline is None:
        return []
    with ExitStack() as stack:
        from ..summary._diff_render import baseline_section  # only with --baseline
        from ._cmd_diff import local_run

        other = local_run(stack, args.baseline, Path(args.runs_dir))
        return [baseline_section(run_dir, other)]


def _read_summary(path: Path) -> str | None:
    """The summary file at *path* as text, or None when there is none."""
    try:
        with path.open("rb") as handle:
            return handle.read(_MAX_SUMMARY_READ).decode("utf-8", "replace")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise RunlogError(
            f"summary {str(path)!r} cannot be read: {exc.strerror or exc}"
        ) from exc


def _github_or_markdown(args: argparse.Namespace) -> int:
    """``--format markdown`` prints, ``--github`` publishes; neither writes the .txt."""
    path = Path(args.run)
    target = _paths.summary_file(path)
    committed = None
    stale = False
    if path.is_dir() and not _paths.logs_dir(path).is_dir() and target.is_file():
        # a clone holds only the committed summary: show and annotate that
        committed = _read_summary(target) or ""
        text = committed
        markdown = _markdown.markdown_from_text(
            committed, f"{path.resolve().parent.name}/{path.resolve().name}"
        )
    else:
        run_dir = run_dir_of(args)
        target = _paths.summary_file(run_dir)
        report = report_for(run_dir, sections=_baseline(args, run_dir))
        text = report.render()
        markdown = _markdown.render_markdown(report)
        committed = _read_summary(target)
        stale = committed is not None and committed != text
        text = committed if committed is not None else text
    if not args.github:
        sys.stdout.write(markdown)
        return 0
    written = _github.append_step_summary(markdown)
    # GitHub resolves file= against the repository root: run from there
    shown = Path(os.path.relpath(target.absolute())).as_posix()
    for command in _github.workflow_commands(text, shown):
        print(command)
    if stale:
        stale_note = _github.Annotation(
            "warning",
            1,
            "runlog: stale summary",
            f"{shown} differs from what the logs give: run "
            f"`runlog summarize {args.run}` and commit it",
        )
        print(stale_note.command(shown))
    if committed is None:
        note(f"note: {target} is not written yet; the annotations point at it")
    note(f"appended the markdown summary to {written}")
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
    lines.append(f"{prefix}/**/*report.html")  # `runlog report` output (see #18)
    return "\n".join(lines) + "\n"


def register(commands: Any) -> None:
    """Add ``summarize``, ``gitignore`` to the ``runlog`` subcommands."""
    summarize = add_command(
        commands,
        "summarize",
        cmd_summarize,
        "(re)write logs_summary.txt; --check fails if it is stale",
        "Writes RUN/logs_summary.txt from the run's logs. With --check, writes "
        "nothing and\nexits 1 with a diff if the file on disk differs from what "
        "the logs give (for CI).\nWith --format markdown, prints it as markdown; "
        "with --github, appends that to\n$GITHUB_STEP_SUMMARY and annotates the "
        "lines of logs_summary.txt that show errors.",
        [
            "runlog summarize runs/demo/20251020T142345Z-3f9a1c",
            "runlog summarize RUN --check",
            "runlog summarize RUN --format markdown > summary.md",
            "runlog summarize RUN --github   # in a GitHub Actions step",
        ],
    )
    add_run_arg(summarize, help_text="a run directory with its logs/, or a run id")
    summarize.add_argument(
        "--baseline",
        metavar="OTHER",
        help="add a short 'Changes since <OTHER's run id>' section: OTHER is a "
        "run directory, its archive, a run id or a URL (see `runlog diff`)",
    )
    mode = summarize.add_mutually_exclusive_group()
    mode.add_argument(
        "--check",
        action="store_true",
        help="exit 1 (with a diff) if logs_summary.txt would change",
    )
    mode.add_argument(
        "--format",
        choices=("text", "markdown"),
        default="text",
        help="text (default): write logs_summary.txt; markdown: print a "
        "markdown summary instead, writing nothing",
    )
    mode.add_argument(
        "--github",
        action="store_true",
        help=f"append the markdown summary to ${_github.STEP_SUMMARY_ENV} and "
        "print ::error/::warning annotations on lines of logs_summary.txt",
    )

    gitignore = add_command(
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
