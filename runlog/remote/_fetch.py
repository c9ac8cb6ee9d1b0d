"""Reads runs back from object storage: listing, fetching, rows for runlog ls."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from .. import _paths
from .._status import effective_status, parse_time
from ..errors import ContextError, RunlogError, UploadError
from ..reading._runs import RunRow, run_duration
from ._store import (
    DEFAULT_BACKOFF_S,
    DEFAULT_RETRIES,
    LIVE_DIR,
    SEGMENT_RE,
    Store,
    TransferStats,
    decode_segment,
    display_url,
    names_from_path,
    split_run_rel,
    strip_slash,
)


@dataclass(frozen=True)
class RemoteRun:
    """One run found in a store: where it is and what it holds.

    *prefix* is its folder relative to the URL listed ("" when the URL is
    the run's own folder); *steps* are those seen in shipped or mirrored logs.
    """

    framework: str
    run_id: str
    url: str
    prefix: str
    archive: str | None
    has_summary: bool
    live_files: int
    steps: frozenset[int]


def _open_store(
    url: str,
    retries: int,
    backoff: float,
    storage_options: Mapping[str, Any] | None,
) -> Store:
    return Store(
        url,
        retries=retries,
        backoff=backoff,
        storage_options=storage_options,
        stats=TransferStats(),
    )


def _parse_run_json(data: bytes) -> dict[str, Any] | None:
    """*data* as a run.json dict; None when it is not a JSON object."""

    try:
        info = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return info if isinstance(info, dict) else None


def find_remote_runs(
    url: str,
    *,
    retries: int = DEFAULT_RETRIES,
    backoff: float = DEFAULT_BACKOFF_S,
    storage_options: Mapping[str, Any] | None = None,
) -> list[RemoteRun]:
    """
    Every run stored under *url* (``<url>/<framework>/<run_id>/``), or *url*
    itself when it is one run's folder; one listing request.

    Raises:
        UploadError: If the store cannot be listed.
    """
    store = _open_store(url, retries, backoff, storage_options)
    return _find_runs(store)


def _find_runs(store: Store) -> list[RemoteRun]:
    listing = store.listing()
    groups: dict[tuple[str, ...], list[str]] = {}
    for rel in listing:
        parts = rel.split("/", 2)
        if split_run_rel(rel) is not None:
            groups.setdefault((), []).append(rel)
        elif (
            len(parts) == 3
            and split_run_rel(parts[2]) is not None
            and _paths.is_safe_name(parts[0])
            and _paths.is_safe_name(parts[1])
        ):
            groups.setdefault((parts[0], parts[1]), []).append(parts[2])
    runs: list[RemoteRun] = []
    for key, rels in sorted(groups.items()):
        if key:
            framework, run_id = key
            prefix = f"{framework}/{run_id}"
        else:
            framework, run_id = names_from_path(store.root)
            prefix = ""
        runs.append(_describe_remote(framework, run_id, store, prefix, rels))
    return runs


def _describe_remote(
    framework: str, run_id: str, store: Store, prefix: str, rels: list[str]
) -> RemoteRun:
    archive = next(
        (name for name in _paths.ARCHIVE_NAMES.values() if name in rels), None
    )
    steps: set[int] = set()
    live_files: set[str] = set()
    for rel in rels:
        split = split_run_rel(rel)
        if split is None or split[0] not in ("logs", "live"):
            continue
        file_rel = split[1] if split[0] == "logs" else split[1].split("/", 1)[1]
        if split[0] == "live":
            file_rel = file_rel.rpartition("/")[0]
            live_files.add(file_rel)
        step = _paths.parse_step_dir(file_rel.split("/", 1)[0])
        if step is not None and "/" in file_rel:
            steps.add(step)
    return RemoteRun(
        framework=framework,
        run_id=run_id,
        url=store.display(prefix),
        prefix=prefix,
        archive=archive,
        has_summary=_paths.SUMMARY_FILE in rels,
        live_files=len(live_files),
        steps=frozenset(steps),
    )


def read_remote_run_json(
    url: str,
    *,
    retries: int = DEFAULT_RETRIES,
    backoff: float = DEFAULT_BACKOFF_S,
    storage_options: Mapping[str, Any] | None = None,
) -> dict[str, Any] | None:
    """
    ``logs/run.json`` of the run stored at *url*; None when absent or not JSON.

    Raises:
        UploadError: If the store fails (other than the file being absent).
    """
    store = _open_store(url, retries, backoff, storage_options)
    try:
        data = store.read(f"{_paths.LOGS_DIR}/{_paths.RUN_JSON}")
    except UploadError as exc:
        if isinstance(exc.__cause__, FileNotFoundError):
            return None
        raise
    return _parse_run_json(data)


def fetch_run(
    url: str,
    dest: str | os.PathLike[str],
    *,
    retries: int = DEFAULT_RETRIES,
    backoff: float = DEFAULT_BACKOFF_S,
    storage_options: Mapping[str, Any] | None = None,
) -> Path:
    """
    Download the run stored at *url* into ``dest/<framework>/<run_id>/`` for reading.

    *url* names a run's folder (``s3://bucket/prefix/<framework>/<run_id>``)
    or its archive (``.../run.tar.gz``). A finished run comes down as its
    archive, sidecar and summary (read in place like a local archive); a run
    still going, or lost mid-run, as ``logs/`` rebuilt from the segments
    shipped so far (whole lines, in order) plus its ``run.json``. Only
    names runlog writes are fetched, so nothing lands outside the folder.

    Returns:
        The local run directory, or the local archive when *url* names one.

    Raises:
        ContextError: If nothing that makes a run is stored at *url*.
        UploadError: Naming the URL, if the store fails.
        ConfigurationError: For a bad URL, or without the extra.
    """
    base = strip_slash(url)
    archive_name: str | None = None
    tail = base.rsplit("/", 1)[-1]
    if tail in _paths.ARCHIVE_NAMES.values():
        base, archive_name = base.rsplit("/", 1)[0], tail
    store = _open_store(base, retries, backoff, storage_options)
    listing = store.listing()
    framework, run_id = names_from_path(store.root)
    run_dir = Path(dest) / framework / run_id
    kinds: dict[str, list[str]] = {}
    for rel in sorted(listing):
        split = split_run_rel(rel)
        if split is not None:
            kinds.setdefault(split[0], []).append(rel)
    archives = kinds.get("archive", [])
    if archive_name is not None and archive_name not in archives:
        raise ContextError(f"archive {display_url(url)!r}: not found in the store")
    chosen = archive_name or next(
        (n for n in _paths.ARCHIVE_NAMES.values() if n in archives), None
    )
    if chosen is not None:
        wanted = [chosen]
        sidecar = chosen + _paths.SIDECAR_SUFFIX
        if sidecar in listing:
            wanted.append(sidecar)
        if _paths.SUMMARY_FILE in listing:
            wanted.append(_paths.SUMMARY_FILE)
        for rel in wanted:
            store.download(rel, run_dir / rel)
        local_archive = run_dir / chosen
        return local_archive if archive_name is not None else run_dir
    if not kinds.get("logs") and not kinds.get("live"):
        hint = ""
        if any(
            split_run_rel(rel.split("/", 2)[-1]) is not None
            for rel in listing
            if rel.count("/") >= 2
        ):
            hint = f"; it holds runs: see `runlog ls {display_url(url)}`"
        raise ContextError(
            f"run {display_url(url)!r}: no run is stored there "
            f"(no archive, logs/ or live/ objects){hint}"
        )
    for rel in kinds.get("summary", []) + kinds.get("logs", []):
        store.download(rel, run_dir / rel)
    _rebuild_live(store, kinds.get("live", []), run_dir)
    return run_dir


def _rebuild_live(store: Store, rels: list[str], run_dir: Path) -> None:
    """Concatenate the shipped segments of each log into ``run_dir/logs/``."""
    files: dict[str, list[tuple[int, int, str]]] = {}
    for rel in rels:
        # rel: live/logs/<file rel>/<from>-<to>[.gz]
        inner = rel[len(LIVE_DIR) + 1 + len(_paths.LOGS_DIR) + 1 :]
        file_rel, _, segment = inner.rpartition("/")
        match = SEGMENT_RE.fullmatch(segment)
        assert match is not None  # _split_run_rel checked the name
        start, end = int(match.group(1)), int(match.group(2))
        if end > start:
            files.setdefault(file_rel, []).append((start, end, rel))
    for file_rel, segments in files.items():
        target = _paths.logs_dir(run_dir) / file_rel
        if target.exists():
            continue  # a complete copy under logs/ wins over the live segments
        segments.sort(key=lambda item: (item[0], -item[1]))
        chunks: list[bytes] = []
        position = 0
        for start, end, rel in segments:
            if end <= position:
                continue  # a retried pass sent these bytes twice
            data = decode_segment(rel, store.read(rel))
            # a gap (start > position) keeps what follows: lines stay whole
            chunks.append(data[max(0, position - start) :])
            position = end
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
        tmp.write_bytes(b"".join(chunks))
        os.replace(tmp, target)


def scan_remote_runs(
    url: str,
    *,
    now: datetime | None = None,
    retries: int = DEFAULT_RETRIES,
    backoff: float = DEFAULT_BACKOFF_S,
    storage_options: Mapping[str, Any] | None = None,
) -> list[RunRow]:
    """
    The ``runlog ls`` rows of every run stored under *url*, newest first.

    One listing plus one batched read of the runs' ``logs/run.json``: status
    (``crashed`` once the shipped heartbeat is stale), start and duration.
    Steps are counted from shipped logs; errors and warnings are left
    unknown (None) rather than downloading every archive.

    Raises:
        UploadError: Naming the URL, if the store fails.
    """

    store = _open_store(url, retries, backoff, storage_options)
    runs = _find_runs(store)
    infos = _read_run_jsons(store, runs)
    moment = now or datetime.now(UTC)
    rows: list[RunRow] = []
    for found, info in zip(runs, infos, strict=True):
        status = effective_status(info, now=moment) if info else "incomplete"
        started = parse_time(info.get("started_at")) if info else None
        rows.append(
            RunRow(
                framework=found.framework,
                run_id=found.run_id,
                path=Path(found.prefix or "."),
                status=status,
                started=started,
                duration_s=run_duration(info or {}, status, started, moment),
                steps=len(found.steps),
                errors=None,
                warnings=None,
                archived=found.archive is not None,
                url=found.url,
            )
        )
    oldest = datetime.min.replace(tzinfo=UTC)
    rows.sort(key=lambda row: (row.started or oldest, row.run_id), reverse=True)
    return rows


def _read_run_jsons(store: Store, runs: list[RemoteRun]) -> list[dict[str, Any] | None]:
    rel = f"{_paths.LOGS_DIR}/{_paths.RUN_JSON}"
    paths = [store.path(f"{r.prefix}/{rel}" if r.prefix else rel) for r in runs]
    if not paths:
        return []

    def action() -> dict[str, Any]:
        # one batched request set (concurrent on async stores such as s3fs)
        found: dict[str, Any] = store.fs.cat(paths, on_error="return")
        for value in found.values():
            if isinstance(value, BaseException) and not isinstance(
                value, FileNotFoundError
            ):
                raise value
        return {store.fs._strip_protocol(k): v for k, v in found.items()}

    found = store.call("read", "", action)
    infos: list[dict[str, Any] | None] = []
    for path in paths:
        data = found.get(store.fs._strip_protocol(path))
        info: dict[str, Any] | None = None
        if isinstance(data, bytes):
            store.stats.bytes_received += len(data)
            info = _parse_run_json(data)
        infos.append(info)
    return infos


@contextmanager
def fetched(
    url: str,
    *,
    retries: int = DEFAULT_RETRIES,
    backoff: float = DEFAULT_BACKOFF_S,
    storage_options: Mapping[str, Any] | None = None,
) -> Iterator[Path]:
    """
    A temporary local copy of the run or archive at *url*, removed on exit.

    Yields the archive when the run has one (read it in place), else the
    run directory rebuilt from the shipped logs. For ``runlog show``,
    ``tail`` and ``verify`` with a URL.

    Raises:
        As :func:`fetch_run`.
    """
    with tempfile.TemporaryDirectory(prefix="runlog-fetch-") as tmp:
        local = fetch_run(
            url,
            tmp,
            retries=retries,
            backoff=backoff,
            storage_options=storage_options,
        )
        archive = _paths.find_archive(local) if local.is_dir() else None
        with naming_url(local, url):
            yield archive or local


def shown_as_url(text: str, local: Path, url: str) -> str:
    """
    *text* with the local copy *local* of the run at *url* named by its URL.

    *local* is what :func:`fetch_run` returned (the run directory, or the
    archive when *url* names one): messages about a stored run name its URL,
    never a temporary download path (see #17).
    """
    base = strip_slash(url)
    if base.rsplit("/", 1)[-1] in _paths.ARCHIVE_NAMES.values():
        base = base.rsplit("/", 1)[0]
    archive_names = _paths.ARCHIVE_NAMES.values()
    run_dir = local.parent if local.name in archive_names else local
    return text.replace(str(run_dir), display_url(base))


@contextmanager
def naming_url(local: Path, url: str) -> Iterator[None]:
    """
    Re-raise a :class:`RunlogError` from the body naming *url* instead of *local*.

    The exception itself goes on (same object, same traceback); only its
    one-string message is rewritten with :func:`shown_as_url`.
    """
    try:
        yield
    except RunlogError as exc:
        if len(exc.args) == 1 and isinstance(exc.args[0], str):
            exc.args = (shown_as_url(exc.args[0], local, url),)
        raise
