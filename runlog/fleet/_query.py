"""SQL over every record of every run (extra ``runlog[query]``, DuckDB).

Two views: ``records`` (one row per record, the reserved keys as typed
columns, the rest in a ``fields`` JSON column, with the run's ``run_id``,
``framework`` and ``run_status``) and ``runs`` (one row per run: run.json
and counts over its records). Live directories are read in place by
DuckDB's JSON reader; archives are streamed member by member through
runlog's archive reader into a table, never extracted to disk (#19).
"""

from __future__ import annotations

import importlib
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Final

import orjson

from .. import _paths
from .._records import RESERVED_KEYS
from .._status import format_time
from ..errors import RunlogError
from ..reading._merge import read_records
from ..reading._source import ReadReport, RunSource, list_log_files
from ._runs import FleetRun, local_runs

EXTRA_HINT: Final = "pip install 'runlog[query]'"
_BATCH: Final = 20_000
# the reserved keys come out as columns; merging this patch drops them from
# `fields` (RFC 7396: a null removes the key)
_RESERVED_PATCH: Final = orjson.dumps(dict.fromkeys(RESERVED_KEYS)).decode()
# columns besides the reserved keys: the metric conventions of SPEC §4
_TYPED: Final = (
    ("ts", "TIMESTAMPTZ", "try_cast(json_extract_string(j, '$.ts') AS TIMESTAMPTZ)"),
    ("level", "VARCHAR", "json_extract_string(j, '$.level')"),
    ("event", "VARCHAR", "json_extract_string(j, '$.event')"),
    ("logger", "VARCHAR", "json_extract_string(j, '$.logger')"),
    ("component", "VARCHAR", "json_extract_string(j, '$.component')"),
    ("step", "INTEGER", "try_cast(json_extract_string(j, '$.step') AS INTEGER)"),
    ("name", "VARCHAR", "json_extract_string(j, '$.name')"),
    ("attempt", "INTEGER", "try_cast(json_extract_string(j, '$.attempt') AS INTEGER)"),
    ("status", "VARCHAR", "json_extract_string(j, '$.status')"),
    (
        "duration_s",
        "DOUBLE",
        "try_cast(json_extract_string(j, '$.duration_s') AS DOUBLE)",
    ),
    ("model", "VARCHAR", "json_extract_string(j, '$.model')"),
    (
        "prompt_tokens",
        "BIGINT",
        "try_cast(json_extract_string(j, '$.prompt_tokens') AS BIGINT)",
    ),
    (
        "completion_tokens",
        "BIGINT",
        "try_cast(json_extract_string(j, '$.completion_tokens') AS BIGINT)",
    ),
    (
        "total_tokens",
        "BIGINT",
        "try_cast(json_extract_string(j, '$.total_tokens') AS BIGINT)",
    ),
    ("error_type", "VARCHAR", "json_extract_string(j, '$.error_type')"),
    ("error", "VARCHAR", "json_extract_string(j, '$.error')"),
    (
        "exception",
        "VARCHAR",
        "coalesce(json_extract_string(j, '$.exception'), "
        "json_extract_string(j, '$.traceback'))",
    ),
)


def load_duckdb() -> ModuleType:
    """
    The duckdb module.

    Raises:
        RunlogError: Naming the extra to install, when duckdb is missing.
    """
    try:
        return importlib.import_module("duckdb")
    except ImportError:
        raise RunlogError(
            f"runlog query needs DuckDB, from the optional extra: {EXTRA_HINT}"
        ) from None


@dataclass
class QueryResult:
    """The columns and rows of one query, and the malformed lines skipped."""

    columns: list[str]
    rows: list[tuple[Any, ...]]
    malformed: int
    archives: int


def _sql_text(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _glob_escape(path: str) -> str:
    return "".join(f"[{char}]" if char in "*?[]{}" else char for char in path)


def _run_row(run: FleetRun) -> tuple[Any, ...]:
    info = run.info
    metadata = info.get("metadata")
    return (
        str(run.run_dir),
        run.run_id,
        run.framework,
        run.status,
        format_time(run.started) if run.started else None,
        format_time(run.ended) if run.ended else None,
        info.get("duration_s")
        if isinstance(info.get("duration_s"), (int, float))
        else None,
        str(info.get("host")) if info.get("host") is not None else None,
        orjson.dumps(metadata).decode() if metadata is not None else None,
        run.archive is not None,
        run.has_logs,
        str(run.archive) if run.archive is not None else None,
    )


def _patterns(runs: Sequence[FleetRun]) -> list[str]:
    """Globs that cover every live log file of *runs* (per parent directory)."""
    top: set[str] = set()
    steps: set[str] = set()
    for run in runs:
        if not run.has_logs:
            continue
        parent = _glob_escape(str(run.run_dir.parent))
        for log_file in list_log_files(_paths.logs_dir(run.run_dir)):
            (steps if log_file.step is not None else top).add(parent)
    return sorted(f"{p}/*/logs/*.log" for p in top) + sorted(
        f"{p}/*/logs/step_*/*.log" for p in steps
    )


def _archived_lines(
    source: RunSource, report: ReadReport
) -> Iterator[tuple[str, str, int, str]]:
    for entry in read_records(source, None, report):
        yield (
            str(source.run_dir),
            entry.source,
            entry.line,
            orjson.dumps(entry.record).decode(),
        )


def _load_archives(con: Any, runs: Sequence[FleetRun], report: ReadReport) -> int:
    count = 0
    for run in runs:
        if run.has_logs or run.archive is None:
            continue
        count += 1
        batch: list[tuple[str, str, int, str]] = []
        for row in _archived_lines(run.source, report):
            batch.append(row)
            if len(batch) >= _BATCH:
                _insert(con, batch)
                batch = []
        if batch:
            _insert(con, batch)
    return count


def _insert(con: Any, batch: list[tuple[str, str, int, str]]) -> None:
    columns = [list(column) for column in zip(*batch, strict=True)]
    con.execute(
        "INSERT INTO _archived SELECT unnest($1), unnest($2), unnest($3), "
        "unnest($4)::JSON",
        columns,
    )


def _define_views(con: Any, patterns: list[str]) -> None:
    con.execute(
        "CREATE TABLE _runs (run_dir VARCHAR, run_id VARCHAR, framework VARCHAR, "
        "run_status VARCHAR, started_at TIMESTAMPTZ, ended_at TIMESTAMPTZ, "
        "duration_s DOUBLE, host VARCHAR, metadata JSON, archived BOOLEAN, "
        "live BOOLEAN, archive VARCHAR)"
    )
    con.execute(
        "CREATE TABLE _archived (run_dir VARCHAR, file VARCHAR, line BIGINT, j JSON)"
    )
    if patterns:
        files = "[" + ", ".join(_sql_text(p) for p in patterns) + "]"
        live = (
            "SELECT regexp_extract(filename, '^(.*)/logs/', 1) AS run_dir, "
            "regexp_extract(filename, '/logs/([^/]+(/[^/]+)?)$', 1) AS file, "
            "NULL::BIGINT AS line, json AS j "
            f"FROM read_json_objects({files}, format='newline_delimited', "
            "ignore_errors=true, filename=true)"
        )
    else:
        live = "SELECT * FROM _archived WHERE false"
    # combined.log is for people, not JSON lines; it is never a record
    con.execute(
        "CREATE VIEW _lines AS SELECT * FROM ("
        f"{live}) WHERE file <> 'combined.log' "
        "UNION ALL SELECT * FROM _archived"
    )
    columns = ", ".join(f"{expr} AS {name}" for name, _type, expr in _TYPED)
    con.execute(
        "CREATE VIEW records AS SELECT r.run_id, r.framework, r.run_status, "
        f"{columns}, json_merge_patch(j, {_sql_text(_RESERVED_PATCH)}) AS fields, "
        "l.file, l.run_dir "
        "FROM _lines l JOIN _runs r USING (run_dir) WHERE j IS NOT NULL"
    )
    con.execute(
        "CREATE VIEW runs AS SELECT r.run_id, r.framework, r.run_status AS status, "
        "r.started_at, r.ended_at, r.duration_s, r.host, r.metadata, r.archived, "
        "coalesce(c.steps, 0) AS steps, coalesce(c.records, 0) AS records, "
        "coalesce(c.errors, 0) AS errors, coalesce(c.warnings, 0) AS warnings, "
        "coalesce(c.llm_requests, 0) AS llm_requests, "
        "coalesce(c.api_calls, 0) AS api_calls, "
        "coalesce(c.total_tokens, 0) AS total_tokens, r.run_dir "
        "FROM _runs r LEFT JOIN (SELECT run_dir, count(DISTINCT step) AS steps, "
        "count(*) AS records, "
        "count(*) FILTER (WHERE level IN ('error', 'critical')) AS errors, "
        "count(*) FILTER (WHERE level = 'warning') AS warnings, "
        "count(*) FILTER (WHERE event = 'llm_request') AS llm_requests, "
        "count(*) FILTER (WHERE event = 'api_call') AS api_calls, "
        "sum(total_tokens) AS total_tokens "
        "FROM records GROUP BY run_dir) c USING (run_dir)"
    )


@dataclass
class Session:
    """An open DuckDB connection with the views, and what loading them read."""

    con: Any
    runs: int
    archives: int
    report: ReadReport


@contextmanager
def connect(runs_dir: Path, *, memory_limit: str = "256MB") -> Iterator[Session]:
    """
    A DuckDB connection with the ``records`` and ``runs`` views over *runs_dir*.

    Archived runs (no ``logs/`` left) are loaded into the connection's
    memory as they are streamed (spilling to a temporary directory past
    *memory_limit*); live runs are read by each query in place. Malformed
    lines of archives are counted into the session's report.

    Raises:
        RunlogError: Without the extra, or if *runs_dir* is not a directory.
    """
    duckdb = load_duckdb()
    runs = local_runs(runs_dir)
    report = ReadReport()
    with tempfile.TemporaryDirectory(prefix="runlog-query-") as spill:
        con = duckdb.connect(
            config={
                "memory_limit": memory_limit,
                "temp_directory": spill,
            }
        )
        try:
            # timestamps shown as they are written: UTC (the icu extension
            # is loaded only once the connection exists, so not in config)
            con.execute("SET TimeZone = 'UTC'")
            _define_views(con, _patterns(runs))
            if runs:
                con.executemany(
                    "INSERT INTO _runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [_run_row(run) for run in runs],
                )
            archives = _load_archives(con, runs, report)
            yield Session(con, len(runs), archives, report)
        finally:
            con.close()


def malformed_lines(con: Any) -> int:
    """How many lines of the live log files are not JSON objects (one more scan)."""
    row = con.execute("SELECT count(*) FROM _lines WHERE j IS NULL").fetchone()
    return int(row[0]) if row else 0


def run_query(runs_dir: Path, sql: str, *, count_malformed: bool = True) -> QueryResult:
    """
    Run *sql* over the ``records`` and ``runs`` views of *runs_dir*.

    With *count_malformed*, the live log files are scanned once more to
    count the lines that are not records (DuckDB skips them).

    Raises:
        RunlogError: Without the extra, for a bad *runs_dir*, or when DuckDB
            rejects *sql* (its message, which names the problem).
    """
    duckdb = load_duckdb()
    with connect(runs_dir) as session:
        try:
            cursor = session.con.execute(sql)
            columns = [d[0] for d in cursor.description or ()]
            rows = cursor.fetchall() if cursor.description else []
        except duckdb.Error as exc:
            # DuckDB's message spans lines (a caret under the culprit): the
            # lines before the quoted SQL say what is wrong
            reason = str(exc).split("\n\nLINE ")[0].replace("\n", "; ")
            raise RunlogError(f"query failed: {reason}") from None
        malformed = session.report.malformed
        if count_malformed:
            malformed += malformed_lines(session.con)
        return QueryResult(columns, rows, malformed, session.archives)
