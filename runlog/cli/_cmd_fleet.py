"""``runlog errors``, ``query`` and ``prune``: work over many runs at once."""

from __future__ import annotations

import argparse
import csv
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import orjson

from .. import remote
from .._status import format_time
from .._text import clean, fit, format_size, width_of
from ..errors import RunlogError
from ..fleet import _errors, _prune, _prune_remote, _query
from ..fleet._runs import FleetRun, local_runs, remote_runs
from ..reading import _runs, _source
from ..reading._source import ReadReport
from ._args import DEFAULT_RUNS_DIR, add_command, count_arg
from ._common import note, report_malformed

WIDTH: Final = 80
_MAX_CELL: Final = 60
_INDENT: Final = "    "


def _runs_of(where: str, framework: str | None) -> list[FleetRun]:
    if remote.is_remote(where):
        return remote_runs(where, framework=framework)
    return local_runs(Path(where), framework=framework)


def _short_ts(ts: str) -> str:
    return ts[:19].replace("T", " ") if ts else "-"


def _baseline_keys(text: str, runs_dir: str) -> set[str]:
    report = ReadReport()
    if remote.is_remote(text):
        with remote.fetched(text) as local:
            source = _runs.resolve_run(str(local))
            return _errors.error_keys(source, report)
    where = None if remote.is_remote(runs_dir) else Path(runs_dir)
    return _errors.error_keys(_runs.resolve_run(text, where), report)


def errors_table(report: _errors.ErrorsReport) -> list[str]:
    """One block per fingerprint, every line but the command within 80 columns."""
    lines: list[str] = []
    for group in report.groups:
        mark = "NEW " if group.is_new else ""
        lines.append(fit(clean(f"{mark}{group.fingerprint}"), WIDTH))
        runs = len(group.runs)
        lines.append(
            f"{_INDENT}{group.count} time{'s' if group.count != 1 else ''} in "
            f"{runs} run{'s' if runs != 1 else ''}, first "
            f"{_short_ts(group.first_seen)}, last {_short_ts(group.last_seen)}"
        )
        newest = group.newest
        if newest is not None:
            example = clean(newest.message)
            lines.append(fit(f"{_INDENT}e.g. {example}", WIDTH))
            # the command is never cut: it must paste whole
            lines.append(f"{_INDENT}{clean(_errors.show_command(newest))}")
        lines.append("")
    return lines


def cmd_errors(args: argparse.Namespace) -> int:
    """``runlog errors``: every failure of many runs, grouped by fingerprint."""
    since = _source.parse_when(args.since) if args.since else None
    baseline = _baseline_keys(args.baseline, args.runs_dir) if args.baseline else None
    runs = _runs_of(args.runs_dir, args.framework)
    report = _errors.collect_errors(runs, since=since, baseline=baseline)
    for run, reason in report.unreadable:
        note(f"warning: skipped {run}: {reason}")
    if args.json:
        sys.stdout.write(_errors.dump_json(report).decode("utf-8") + "\n")
        report_malformed(report.malformed)
        return 0
    for line in errors_table(report):
        print(line)
    failures = sum(group.count for group in report.groups)
    new = sum(1 for group in report.groups if group.is_new)
    summary = (
        f"{failures} failure{'s' if failures != 1 else ''}, "
        f"{len(report.groups)} fingerprint{'s' if len(report.groups) != 1 else ''}"
        f" in {report.runs_read} of {len(runs)} run{'s' if len(runs) != 1 else ''}"
    )
    if baseline is not None:
        summary += f"; {new} new since {args.baseline}"
    print(clean(summary))
    report_malformed(report.malformed)
    return 0


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, (dict, list)):
        return orjson.dumps(value).decode("utf-8")
    return str(value)


def query_table(columns: list[str], rows: list[tuple[Any, ...]]) -> list[str]:
    """*rows* as an aligned table under a header; cells escaped and cut to fit."""
    cells = [[fit(clean(_cell(v)), _MAX_CELL) for v in row] for row in rows]
    header = [fit(clean(name), _MAX_CELL) for name in columns]
    widths = [width_of(name) for name in header]
    for row in cells:
        widths = [max(w, width_of(c)) for w, c in zip(widths, row, strict=True)]
    numeric = [
        all(isinstance(row[i], (int, float)) or row[i] is None for row in rows)
        for i in range(len(columns))
    ]

    def line(values: list[str]) -> str:
        parts = [
            " " * (w - width_of(v)) + v if right else v + " " * (w - width_of(v))
            for v, w, right in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    return [line(header), line(["-" * w for w in widths]), *map(line, cells)]


def cmd_query(args: argparse.Namespace) -> int:
    """``runlog query``: SQL over the ``records`` and ``runs`` views."""
    if remote.is_remote(args.runs_dir):
        raise RunlogError(
            f"query {remote.display_url(args.runs_dir)!r}: runlog query reads a "
            "local runs directory; fetch the runs first"
        )
    result = _query.run_query(Path(args.runs_dir), args.sql)
    if args.json:
        rows = [dict(zip(result.columns, row, strict=True)) for row in result.rows]
        text = orjson.dumps(rows, default=str, option=orjson.OPT_NON_STR_KEYS)
        sys.stdout.write(clean(text.decode("utf-8"), json=True) + "\n")
    elif args.csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(result.columns)
        for row in result.rows:
            writer.writerow([clean(_cell(v)) for v in row])
    else:
        for text_line in query_table(result.columns, result.rows):
            print(text_line)
        print(f"({len(result.rows)} row{'s' if len(result.rows) != 1 else ''})")
    if result.malformed:
        note(
            f"note: skipped {result.malformed} malformed line(s) "
            "(not JSON records; see `runlog show RUN` for where)"
        )
    return 0


def _describe_item(item: _prune.PruneItem) -> str:
    what = f"logs/ of {item.run.run_dir}" if item.logs_only else str(item.run.run_dir)
    started = item.run.started.strftime("%Y-%m-%d %H:%M") if item.run.started else "-"
    kept = f", {len(item.keep)} tracked file(s) stay" if item.keep else ""
    return clean(
        f"{what}  {format_size(item.size, short=True)}  {item.run.status}  "
        f"{started}{kept}"
    )


def cmd_prune(args: argparse.Namespace) -> int:
    """``runlog prune``: delete old runs (a dry run unless ``--yes``)."""
    older = None
    if args.older_than is not None:
        older = _source.parse_when(args.older_than)
    if remote.is_remote(args.runs_dir):
        return _prune_store(args, older)
    plan = _prune.plan_prune(
        Path(args.runs_dir),
        keep_last=args.keep_last,
        older_than=older,
        keep_failed=args.keep_failed,
        logs_only=args.logs_only,
    )
    for path in plan.leftovers:
        note(
            f"warning: {path} is left from an interrupted prune of "
            f"{_prune.leftover_of(path)}: "
            + ("deleting it now" if args.yes else "`runlog prune --yes` deletes it")
        )
    for item in plan.kept:
        print(clean(f"keep    {item.run.run_dir}  ({item.reason})"))
    refused = [item for item in plan.kept if item.refused]
    if not args.yes:
        for item in plan.delete:
            print(f"delete  {_describe_item(item)}")
        print(
            f"dry run: would free {format_size(plan.size, short=True)} in "
            f"{len(plan.delete)} run{'s' if len(plan.delete) != 1 else ''}; "
            "nothing was deleted (add --yes to delete)"
        )
        return 1 if refused else 0

    def log(item: _prune.PruneItem) -> None:
        note(f"deleted {_describe_item(item)}")

    def pause(_path: Path) -> None:
        time.sleep(args.pause)

    _prune.run_prune(plan, log, pause if args.pause else None)
    print(
        f"freed {format_size(plan.size, short=True)} in {len(plan.delete)} "
        f"run{'s' if len(plan.delete) != 1 else ''}"
    )
    return 1 if refused else 0


def _prune_store(args: argparse.Namespace, older: datetime | None) -> int:
    """``runlog prune URL``: the same rules over a store's objects."""
    plan = _prune_remote.plan_remote_prune(
        args.runs_dir,
        keep_last=args.keep_last,
        older_than=older,
        keep_failed=args.keep_failed,
        logs_only=args.logs_only,
    )
    for prefix in plan.leftovers:
        note(
            f"warning: {plan.store.display(prefix)} is left from an interrupted "
            "prune: "
            + ("deleting it now" if args.yes else "`runlog prune --yes` deletes it")
        )
    for kept in plan.kept:
        print(clean(f"keep    {kept.run.label}  ({kept.reason})"))

    def describe(item: _prune_remote.RemoteItem) -> str:
        what = f"logs of {item.run.label}" if item.logs_only else item.run.label
        return clean(
            f"{what}  {format_size(item.size, short=True)}  {item.run.status}  "
            f"{len(item.objects)} object(s)"
        )

    refused = any(item.refused for item in plan.kept)
    if not args.yes:
        for item in plan.delete:
            print(f"delete  {describe(item)}")
        print(
            f"dry run: would free {format_size(plan.size, short=True)} in "
            f"{len(plan.delete)} run{'s' if len(plan.delete) != 1 else ''}; "
            "nothing was deleted (add --yes to delete)"
        )
        return 1 if refused else 0
    _prune_remote.run_remote_prune(plan, lambda item: note(f"deleted {describe(item)}"))
    print(
        f"freed {format_size(plan.size, short=True)} in {len(plan.delete)} "
        f"run{'s' if len(plan.delete) != 1 else ''}"
    )
    return 1 if refused else 0


def _add_runs_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "runs_dir",
        nargs="?",
        default=DEFAULT_RUNS_DIR,
        metavar="RUNS_DIR|URL",
        help="directory of runs, or a store URL such as s3://bucket/runs "
        "(default: runs)",
    )


def register(commands: Any) -> None:
    """Add ``errors``, ``query`` and ``prune`` to the ``runlog`` subcommands."""
    errors = add_command(
        commands,
        "errors",
        cmd_errors,
        "every error of many runs, grouped by fingerprint",
        "Groups every error and critical record of the runs under RUNS_DIR by "
        "the\nfingerprint of its failure (exception type, message with ids, "
        "numbers and paths\nmasked, innermost user frame; else level, event and "
        "component), the same as\n`runlog diff`. One block per fingerprint: "
        "count, runs affected, first and last\nseen, an example, and the "
        "`runlog show` command that opens the newest one.\nA failure re-reported "
        "by step_end or run_end is counted once.",
        [
            "runlog errors",
            "runlog errors --since 24h",
            "runlog errors --baseline runs/demo/20251020T142345Z-3f9a1c",
            "runlog errors s3://bucket/runs --framework langgraph --json",
        ],
    )
    _add_runs_dir(errors)
    errors.set_defaults(pages=True)  # through a pager on a terminal (#16)
    errors.add_argument(
        "--since",
        metavar="AGE",
        help="only records at or after AGE: 2h, 1d, or a time like 2025-10-20",
    )
    errors.add_argument("--framework", metavar="F", help="only runs of framework F")
    errors.add_argument(
        "--baseline",
        metavar="RUN",
        help="mark fingerprints not seen in RUN as NEW (and list them first)",
    )
    errors.add_argument("--json", action="store_true", help="print one JSON document")

    query = add_command(
        commands,
        "query",
        cmd_query,
        "SQL over every record of every run (extra runlog[query])",
        "Runs SQL (DuckDB) over two views of the runs under RUNS_DIR:\n"
        "  records  one row per record: run_id, framework, run_status, ts "
        "(TIMESTAMPTZ),\n           level, event, logger, component, step, name, "
        "attempt, status,\n           duration_s, model, prompt_tokens, "
        "completion_tokens, total_tokens,\n           error_type, error, "
        "exception, fields (JSON: every other key), file\n"
        "  runs     one row per run: run.json (status, started_at, ended_at, "
        "duration_s,\n           host, metadata) and counts (steps, records, "
        "errors, warnings,\n           llm_requests, api_calls, total_tokens)\n"
        "Live runs are read in place; archived runs are streamed, never "
        "extracted.\nMalformed lines are skipped and counted on stderr. "
        "Ready queries: docs/QUERY.md.",
        [
            'runlog query "select level, count(*) from records group by all"',
            "runlog query \"select * from runs where status <> 'success'\" --csv",
            'runlog query "select model, ts::date as day, sum(total_tokens) '
            "from records where event = 'llm_request' group by all\" --json",
        ],
    )
    query.add_argument("sql", metavar="SQL", help="the query (DuckDB SQL)")
    query.add_argument(
        "runs_dir",
        nargs="?",
        default=DEFAULT_RUNS_DIR,
        metavar="RUNS_DIR",
        help="directory of runs (default: runs)",
    )
    shape = query.add_mutually_exclusive_group()
    shape.add_argument("--csv", action="store_true", help="print CSV")
    shape.add_argument("--json", action="store_true", help="print a JSON list")

    prune = add_command(
        commands,
        "prune",
        cmd_prune,
        "delete old runs; a dry run unless --yes",
        "Selects runs to delete: all but the newest N of each framework "
        "(--keep-last N),\nor those whose last activity is older than AGE "
        "(--older-than AGE). Without\n--yes it only prints what it would delete "
        "and how many bytes that frees.\nNever touches a running run (live "
        "process or fresh heartbeat) and never deletes\na file git tracks "
        "(logs_summary.txt stays). With --logs-only, deletes logs/\nonly where "
        "the archive verifies and holds every file of it. Each run is\nrenamed "
        "to a .runlog-pruning-* sibling, then deleted: an interrupted prune\n"
        "leaves that sibling, which the next prune reports and finishes.\n"
        "A store URL is pruned by the same rules (no git there), each run under "
        "a\n.runlog-pruning marker object written first and deleted last.",
        [
            "runlog prune --keep-last 50",
            "runlog prune --older-than 30d --keep-failed --yes",
            "runlog prune --older-than 7d --logs-only --yes",
            "runlog prune s3://bucket/runs --older-than 90d --yes",
        ],
    )
    _add_runs_dir(prune)
    which = prune.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--keep-last",
        type=count_arg,
        metavar="N",
        help="keep the newest N runs of each framework",
    )
    which.add_argument(
        "--older-than",
        metavar="AGE",
        help="runs last active before AGE: 30d, 12h, or a date like 2025-10-01",
    )
    prune.add_argument(
        "--keep-failed",
        action="store_true",
        help="keep failed, crashed, interrupted and incomplete runs",
    )
    prune.add_argument(
        "--logs-only",
        action="store_true",
        help="delete only logs/, where a verified archive holds them",
    )
    prune.add_argument("--yes", action="store_true", help="really delete")
    # a pause between moving a run aside and deleting it, so a test can
    # interrupt a prune exactly there (see #19)
    prune.add_argument("--pause", type=float, default=0.0, help=argparse.SUPPRESS)
