"""Retention in object storage: the rules of a local prune, over a store's objects.

Objects cannot be renamed atomically, so a run is deleted under a marker:
``<run>/.runlog-pruning`` is written first, listing every object that is
to go; then those objects are deleted, the marker last. A prune killed
mid-way leaves the marker, which the next prune reports and finishes (#19).
There is no git in a store: nothing there is protected as tracked.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

import orjson

from .. import _paths
from ..archive import verify_archive
from ..errors import RunlogError, UploadError
from ..remote import scan_remote_runs
from ..remote._fetch import _open_store
from ..remote._store import DEFAULT_BACKOFF_S, DEFAULT_RETRIES, Store, split_run_rel
from ._prune import FAILED_STATUSES, _candidates
from ._runs import FleetRun, newest_first

MARKER: Final = ".runlog-pruning"


@dataclass(frozen=True)
class RemoteItem:
    """One stored run the prune looked at: the objects it deletes, or why not."""

    run: FleetRun
    prefix: str
    objects: tuple[str, ...] = ()
    size: int = 0
    reason: str | None = None
    refused: bool = False
    logs_only: bool = False


@dataclass
class RemotePlan:
    """What a prune of a store deletes and keeps, and the markers left before."""

    store: Store
    delete: list[RemoteItem] = field(default_factory=list)
    kept: list[RemoteItem] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        """Bytes the deletions free."""
        return sum(item.size for item in self.delete)


def _join(prefix: str, rel: str) -> str:
    return f"{prefix}/{rel}" if prefix else rel


def _verify_stored_archive(store: Store, prefix: str, archive: str) -> str | None:
    with tempfile.TemporaryDirectory(prefix="runlog-prune-") as tmp:
        local = Path(tmp) / archive
        try:
            store.download(_join(prefix, archive), local)
            sidecar = archive + _paths.SIDECAR_SUFFIX
            store.download(_join(prefix, sidecar), Path(tmp) / sidecar)
            verify_archive(local)
        except RunlogError as exc:
            return f"its archive failed verification, logs kept: {exc}"
    return None


def plan_remote_prune(
    url: str,
    *,
    keep_last: int | None = None,
    older_than: datetime | None = None,
    keep_failed: bool = False,
    logs_only: bool = False,
    now: datetime | None = None,
) -> RemotePlan:
    """
    What ``runlog prune URL`` would delete, by the rules of a local prune.

    A run is kept when it is running (fresh heartbeat), or failed and
    *keep_failed* is set. With *logs_only*, a run's shipped logs (``live/``
    and ``logs/`` but ``logs/run.json``, which listings read) go only when
    its archive, downloaded to a temporary directory, verifies.

    Raises:
        RunlogError: If the selection is not exactly one of the two.
        UploadError: If the store cannot be listed or read.
    """
    if (keep_last is None) == (older_than is None):
        raise RunlogError("prune: give exactly one of keep_last and older_than")
    moment = now or datetime.now(UTC)
    store = _open_store(url, DEFAULT_RETRIES, DEFAULT_BACKOFF_S, None)
    listing = store.listing()
    plan = RemotePlan(store)
    plan.leftovers = sorted(
        rel.rpartition("/")[0] for rel in listing if rel.rpartition("/")[2] == MARKER
    )
    runs: list[FleetRun] = []
    for row in scan_remote_runs(url, now=moment):
        prefix = "" if str(row.path) == "." else row.path.as_posix()
        ended = None
        if row.started is not None and row.duration_s is not None:
            ended = row.started + timedelta(seconds=row.duration_s)
        runs.append(
            FleetRun(
                framework=row.framework,
                run_id=row.run_id,
                run_dir=Path(prefix or "."),
                label=row.url or url,
                status=row.status,
                started=row.started,
                ended=ended if row.status != "running" else None,
                archive=None,
                has_logs=False,
                url=row.url,
            )
        )
    for run in _candidates(newest_first(runs), keep_last, older_than):
        prefix = "" if str(run.run_dir) == "." else run.run_dir.as_posix()
        if prefix in plan.leftovers:
            continue  # finished as a leftover
        item = _remote_item(store, listing, run, prefix, keep_failed, logs_only)
        (plan.kept if item.reason else plan.delete).append(item)
    return plan


def _remote_item(
    store: Store,
    listing: dict[str, int],
    run: FleetRun,
    prefix: str,
    keep_failed: bool,
    logs_only: bool,
) -> RemoteItem:
    if run.status == "running":
        return RemoteItem(run, prefix, reason="running")
    if keep_failed and run.status in FAILED_STATUSES:
        return RemoteItem(run, prefix, reason=f"{run.status} (kept)")
    inside = {
        rel[len(prefix) + 1 :] if prefix else rel: size
        for rel, size in listing.items()
        if not prefix or rel.startswith(prefix + "/")
    }
    kinds = {rel: split_run_rel(rel) for rel in inside}
    owned = [rel for rel, kind in kinds.items() if kind is not None]
    if logs_only:
        archive = next((n for n in _paths.ARCHIVE_NAMES.values() if n in inside), None)
        run_json = f"{_paths.LOGS_DIR}/{_paths.RUN_JSON}"
        owned = [
            rel
            for rel in owned
            if (kind := kinds[rel]) is not None
            and kind[0] in ("logs", "live")
            and rel != run_json
        ]
        if not owned:
            return RemoteItem(run, prefix, reason="no logs left to delete")
        if archive is None:
            return RemoteItem(
                run, prefix, reason="no archive to keep its logs", logs_only=True
            )
        refusal = _verify_stored_archive(store, prefix, archive)
        if refusal is not None:
            return RemoteItem(run, prefix, reason=refusal, refused=True)
    objects = tuple(sorted(_join(prefix, rel) for rel in owned))
    return RemoteItem(
        run,
        prefix,
        objects=objects,
        size=sum(listing[rel] for rel in objects),
        logs_only=logs_only,
    )


def _delete(store: Store, rel: str) -> None:
    def action() -> None:
        path = store.path(rel)
        try:
            store.fs.rm_file(path)
        except FileNotFoundError:
            return  # gone already: what a prune wants

    store.call("delete of", rel, action)


def _finish(store: Store, prefix: str) -> None:
    marker = _join(prefix, MARKER)
    data = store.read(marker)
    try:
        listed = orjson.loads(data)["objects"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise UploadError(
            f"{store.display(marker)!r} is not a prune marker runlog wrote"
        ) from exc
    for rel in listed:
        # only objects of this run, whatever the marker says
        if isinstance(rel, str) and (not prefix or rel.startswith(prefix + "/")):
            _delete(store, rel)
    _delete(store, marker)


def run_remote_prune(
    plan: RemotePlan, on_pruned: Callable[[RemoteItem], object] | None = None
) -> None:
    """
    Carry *plan* out: finish the leftovers, then each run under its marker.

    Raises:
        UploadError: Naming the object, at the first request that fails; the
            run's marker stays, and the next prune finishes it.
    """
    store = plan.store
    for prefix in plan.leftovers:
        _finish(store, prefix)
    for item in plan.delete:
        marker = _join(item.prefix, MARKER)
        store.put_bytes(marker, orjson.dumps({"objects": list(item.objects)}))
        _finish(store, item.prefix)
        if on_pruned is not None:
            on_pruned(item)
