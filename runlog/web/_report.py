"""``runlog report``: one self-contained HTML file of a run, readable offline."""

from __future__ import annotations

import base64
import hashlib
import heapq
import html
import os
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any, Final

import orjson

from .._files import atomic_write
from .._records import ORCHESTRATOR
from ..errors import ConfigurationError
from ..reading._merge import read_records
from ..reading._source import Filters, RunSource, entry_key
from ._model import (
    RunModel,
    default_report_path,
    dir_model,
    is_lifecycle,
    is_problem,
    problem_entries,
    run_info,
    run_source,
)
from ._records import RowEncoder

DEFAULT_MAX_RECORDS: Final = 50_000
# a string value of a record kept in the report is cut past this many
# characters, so one huge value cannot make the file huge (runlog show has it all)
_MAX_TEXT: Final = 4000
# what JSON inside <script> must not contain raw: `</script>`, `<!--`, and
# the separators that end a JavaScript line (see #18)
_SCRIPT_ESCAPES: Final = {
    ord("<"): "\\u003c",
    ord(">"): "\\u003e",
    ord("&"): "\\u0026",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}


def static_text(name: str) -> str:
    """The text of ``runlog/web/static/<name>`` (the viewer's script and style)."""
    return (resources.files(__package__) / "static" / name).read_text("utf-8")


def script_json(value: Any) -> str:
    """*value* as JSON that is safe inside ``<script type="application/json">``."""
    text = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode("utf-8")
    return text.translate(_SCRIPT_ESCAPES)


def csp_hash(text: str) -> str:
    """The CSP source ``'sha256-...'`` that allows exactly the inline *text*."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


def report_data(
    source: RunSource, *, max_records: int, now: datetime | None = None
) -> dict[str, Any]:
    """
    What the report embeds: the run's overview and its records as rows.

    Warnings, errors, critical and lifecycle records are always kept; other
    records up to *max_records*, the first ones in time order. Memory grows
    with the records kept, not with the run. A directory's other records are
    read only until the cap is reached (its counts come from the summary's
    scan); an archive is read once, whole.

    Raises:
        RunlogError: If the run's files cannot be read.
    """
    if source.archive is None:
        model = dir_model(source)
        framework, run_id = model.names()
        encoder = RowEncoder(run_id, framework)
        rows = _dir_rows(source, max_records, encoder)
    else:
        model = RunModel(source, run_info(source))
        framework, run_id = model.names()
        encoder = RowEncoder(run_id, framework)
        rows = _archive_rows(source, model, max_records, encoder)
    return {
        "mode": "report",
        "overview": model.overview(now),
        "records": {"strings": encoder.strings, "rows": rows},
        "omitted": model.records - len(rows),
        "max_records": max_records,
    }


def _kept_always(record: dict[str, Any]) -> bool:
    return is_problem(record) or is_lifecycle(record)


def _dir_rows(
    source: RunSource, max_records: int, encoder: RowEncoder
) -> list[list[Any]]:
    """The rows a directory's report keeps, in time order (see report_data)."""
    always = list(problem_entries(source.logs_dir))
    seen = {(entry.source, entry.line) for entry in always}
    lifecycle = Filters(components=frozenset((ORCHESTRATOR,)))
    always += [
        entry
        for entry in read_records(source, lifecycle)
        if is_lifecycle(entry.record) and (entry.source, entry.line) not in seen
    ]
    always.sort(key=entry_key)
    kept = [encoder.row(entry, max_text=_MAX_TEXT) for entry in always]
    others: list[list[Any]] = []
    if max_records:
        for entry in read_records(source):
            if not _kept_always(entry.record):
                others.append(encoder.row(entry, max_text=_MAX_TEXT))
                if len(others) >= max_records:
                    break
    return list(heapq.merge(kept, others, key=_row_ts))


def _row_ts(row: list[Any]) -> str:
    return str(row[0])


def _archive_rows(
    source: RunSource, model: RunModel, max_records: int, encoder: RowEncoder
) -> list[list[Any]]:
    """The rows an archive's report keeps, counting every record into *model*."""
    kept: list[list[Any]] = []
    others = 0
    for entry in read_records(source, report=model.report):
        model.add(entry)
        if not _kept_always(entry.record):
            if others >= max_records:
                continue
            others += 1
        kept.append(encoder.row(entry, max_text=_MAX_TEXT))
    return kept


def render_report(data: dict[str, Any]) -> str:
    """The report's HTML: *data* as JSON, the viewer's script and style inlined."""
    script = static_text("viewer.js")
    style = static_text("viewer.css")
    run = data["overview"]["run"]
    title = html.escape(f"runlog report: {run['framework']}/{run['run_id']}")
    # the page may run its own inline script and style, identified by hash,
    # and nothing else: no network, no other script (see #18)
    policy = (
        "default-src 'none'; "
        f"script-src {csp_hash(script)}; "
        f"style-src {csp_hash(style)}; "
        "img-src data:; base-uri 'none'; form-action 'none'"
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{policy}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="referrer" content="no-referrer">\n'
        f"<title>{title}</title>\n"
        f"<style>{style}</style>\n"
        "</head>\n"
        '<body data-page="report">\n'
        "<noscript>This report needs JavaScript to show the run.</noscript>\n"
        '<script type="application/json" id="runlog-data">'
        f"{script_json(data)}</script>\n"
        f"<script>{script}</script>\n"
        "</body>\n</html>\n"
    )


def write_report(
    run: str | os.PathLike[str] | RunSource,
    output: str | os.PathLike[str] | None = None,
    *,
    max_records: int = DEFAULT_MAX_RECORDS,
) -> Path:
    """
    Write one self-contained HTML file showing the run; returns its path.

    The file needs no network and no server: the viewer's script and style
    are inlined and the run's data is embedded as JSON. It opens from
    ``file://`` in current Chromium and Firefox.

    Args:
        run: A run directory, its archive (read in place), or a ``RunSource``.
        output: Where to write; default ``RUN_DIR/report.html``, or
            ``<run_id>.report.html`` next to an archive given by its path.
        max_records: Records kept besides warnings, errors and lifecycle
            records (always kept); the report says how many were left out.

    Returns:
        The path written (atomically: temp file, fsync, rename).

    Raises:
        ConfigurationError: If *max_records* is not an int >= 0.
        RunNotFoundError: If *run* is not a run directory or archive.
        LogWriteError: If the file cannot be written.
    """
    if type(max_records) is not int or max_records < 0:
        raise ConfigurationError(f"max_records {max_records!r}: use an int >= 0")
    source = run_source(run if isinstance(run, RunSource) else Path(run))
    if output is None:
        target = default_report_path(
            source, source.run_dir if isinstance(run, RunSource) else Path(run)
        )
    else:
        target = Path(output)
    text = render_report(report_data(source, max_records=max_records))
    return atomic_write(target, text.encode("utf-8"))
