"""Retention: which runs to delete, and deleting them so that none is left half-gone.

A run is deleted in two moves: its directory (or its ``logs/``) is first
renamed to a ``.runlog-pruning-<name>`` sibling, which is atomic, then that
sibling is deleted. A prune killed between the two leaves the sibling, which
no reader takes for a run and the next prune reports and finishes (#19).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from .. import _paths
from .._status import effective_status, read_run_json
from ..archive import verify_archive
from ..archive._archiver import verify_logs
from ..errors import RunlogError
from ..reading._runs import UNREADABLE
from ..reading._verdicts import cache_file_of
from ._runs import FleetRun, local_runs

PRUNING_PREFIX: Final = ".runlog-pruning-"
# a run without run.json that was written this recently may still be going
RECENT: Final = timedelta(minutes=10)
FAILED_STATUSES: Final = frozenset({"failed", "crashed", "interrupted", "incomplete"})


@dataclass(frozen=True)
class PruneItem:
    """
    One run the prune looked at: what it deletes there, or why it keeps it.

    *target* is the run directory, or its ``logs/`` with ``logs_only``;
    *keep* holds the files under it that git tracks, which stay.
    """

    run: FleetRun
    target: Path
    size: int = 0
    files: int = 0
    keep: frozenset[Path] = frozenset()
    reason: str | None = None  # set when the run is kept
    refused: bool = False  # kept because its archive failed verification

    @property
    def logs_only(self) -> bool:
        """True when only the run's ``logs/`` goes."""
        return self.target.name == _paths.LOGS_DIR

    @property
    def pruning_path(self) -> Path:
        """The sibling *target* is renamed to before it is deleted."""
        return self.target.parent / f"{PRUNING_PREFIX}{self.target.name}"


@dataclass
class PrunePlan:
    """What a prune deletes (``delete``) and keeps (``kept``), and old leftovers."""

    delete: list[PruneItem] = field(default_factory=list)
    kept: list[PruneItem] = field(default_factory=list)
    leftovers: list[Path] = field(default_factory=list)

    @property
    def size(self) -> int:
        """Bytes the deletions free."""
        return sum(item.size for item in self.delete)


def tracked_files(root: Path) -> frozenset[Path]:
    """
    The files under *root* that git tracks, as resolved paths.

    Empty when *root* is not in a git work tree or git is not installed.

    Raises:
        RunlogError: If git fails in a work tree it recognised.
    """
    try:
        top = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--show-toplevel"],
            capture_output=True,
            check=False,
            timeout=60,
        )
    except FileNotFoundError:
        return frozenset()  # no git on this machine: nothing can be tracked
    if top.returncode != 0:
        return frozenset()
    top_dir = Path(os.fsdecode(top.stdout.strip())).resolve()
    listing = subprocess.run(
        ["git", "-C", str(top_dir), "ls-files", "-z", "--", str(root.resolve())],
        capture_output=True,
        check=False,
        timeout=600,
    )
    if listing.returncode != 0:
        raise RunlogError(
            f"git ls-files in {str(top_dir)!r} failed: "
            f"{listing.stderr.decode('utf-8', 'replace').strip()}"
        )
    return frozenset(
        top_dir / os.fsdecode(name) for name in listing.stdout.split(b"\0") if name
    )


def find_leftovers(runs_dir: Path) -> list[Path]:
    """
    The ``.runlog-pruning-*`` directories an interrupted prune left under *runs_dir*.

    Looked for where a prune makes them: beside a run (a whole run being
    deleted) and inside a run (its ``logs/`` being deleted), three levels down.
    """
    found: list[Path] = []
    level = [runs_dir]
    for _ in range(3):
        below: list[Path] = []
        for directory in level:
            try:
                entries = list(os.scandir(directory))
            except (FileNotFoundError, NotADirectoryError, PermissionError):
                continue  # gone, or not ours to look into
            for entry in entries:
                if not entry.is_dir(follow_symlinks=False):
                    continue
                if entry.name.startswith(PRUNING_PREFIX):
                    found.append(Path(entry.path))
                elif not entry.name.startswith("."):
                    below.append(Path(entry.path))
        level = below
    return sorted(found)


def leftover_of(path: Path) -> Path:
    """The run (or ``logs/``) an interrupted prune was deleting at *path*."""
    return path.with_name(path.name[len(PRUNING_PREFIX) :])


def _walk_files(root: Path) -> Iterator[tuple[Path, int]]:
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            path = Path(dirpath, name)
            try:
                yield path, path.lstat().st_size
            except FileNotFoundError:
                continue  # removed while we counted


def _is_recent(run: FleetRun, now: datetime) -> bool:
    newest = run.started
    logs = _paths.logs_dir(run.run_dir)
    # no logs/ (or one we may not list): nothing is being written into it
    with suppress(OSError), os.scandir(logs) as entries:
        for entry in entries:
            moment = datetime.fromtimestamp(
                entry.stat(follow_symlinks=False).st_mtime, UTC
            )
            newest = moment if newest is None else max(newest, moment)
    return newest is not None and now - newest < RECENT


def _candidates(
    runs: Sequence[FleetRun],
    keep_last: int | None,
    older_than: datetime | None,
) -> list[FleetRun]:
    if keep_last is not None:
        per_framework: dict[str, int] = {}
        chosen = []
        for run in runs:  # newest first
            seen = per_framework.get(run.framework, 0)
            per_framework[run.framework] = seen + 1
            if seen >= keep_last:
                chosen.append(run)
        return chosen
    assert older_than is not None
    return [
        run
        for run in runs
        if run.last_activity is not None and run.last_activity < older_than
    ]


def _check_archive(run: FleetRun) -> str | None:
    """Why ``logs/`` of *run* may not go, or None when its archive vouches for it."""
    if run.archive is None:
        return "no archive to keep its logs (run `runlog archive` first)"
    try:
        verify_archive(run.archive)
        verify_logs(run.archive)
    except RunlogError as exc:
        return f"its archive failed verification, logs/ kept: {exc}"
    return None


def _item(run: FleetRun, target: Path, tracked: frozenset[Path]) -> PruneItem:
    base = target.resolve()
    keep = frozenset(path for path in tracked if base in path.parents)
    size = files = 0
    for path, length in _walk_files(target):
        if keep and path.resolve() in keep:
            continue
        size += length
        files += 1
    if keep and files == 0:
        return PruneItem(run, target, keep=keep, reason="every file is tracked by git")
    return PruneItem(run, target, size=size, files=files, keep=keep)


def plan_prune(
    runs_dir: Path,
    *,
    keep_last: int | None = None,
    older_than: datetime | None = None,
    keep_failed: bool = False,
    logs_only: bool = False,
    now: datetime | None = None,
) -> PrunePlan:
    """
    What ``runlog prune`` would delete under *runs_dir*, and what it keeps.

    Exactly one of *keep_last* (the newest N runs of each framework stay) and
    *older_than* (runs whose last activity is before it go) selects. A
    selected run is still kept when it is running (its process alive on this
    host, or its heartbeat fresh), when it is failed, crashed, interrupted
    or incomplete and *keep_failed* is set, when it has no run.json and was
    written in the last ten minutes, or when git tracks every file of it.
    Files git tracks are never part of a deletion. With *logs_only* only
    ``logs/`` goes, and only where the archive verifies and holds every
    file of ``logs/``; else the run is kept and marked refused.

    Raises:
        RunlogError: If the selection is not exactly one of the two, or
            *runs_dir* cannot be listed.
    """
    if (keep_last is None) == (older_than is None):
        raise RunlogError("prune: give exactly one of keep_last and older_than")
    if keep_last is not None and keep_last < 0:
        raise RunlogError(f"keep_last {keep_last!r}: use an int >= 0")
    moment = now or datetime.now(UTC)
    runs = local_runs(runs_dir, now=moment)
    tracked = tracked_files(runs_dir)
    plan = PrunePlan(leftovers=find_leftovers(runs_dir))
    for run in _candidates(runs, keep_last, older_than):
        target = _paths.logs_dir(run.run_dir) if logs_only else run.run_dir
        if run.status == "running":
            plan.kept.append(PruneItem(run, target, reason="running"))
        elif run.status == UNREADABLE:
            plan.kept.append(PruneItem(run, target, reason=f"unreadable: {run.reason}"))
        elif keep_failed and run.status in FAILED_STATUSES:
            plan.kept.append(PruneItem(run, target, reason=f"{run.status} (kept)"))
        elif run.status == "incomplete" and _is_recent(run, moment):
            plan.kept.append(
                PruneItem(run, target, reason="no run.json and written recently")
            )
        elif logs_only and not run.has_logs:
            continue  # pruned to its archive already
        else:
            refusal = _check_archive(run) if logs_only else None
            if refusal is not None:
                plan.kept.append(PruneItem(run, target, reason=refusal, refused=True))
                continue
            item = _item(run, target, tracked)
            (plan.kept if item.reason else plan.delete).append(item)
    return plan


def remove_leftover(path: Path) -> None:
    """
    Finish deleting a ``.runlog-pruning-*`` directory an interrupted prune left.

    Raises:
        RunlogError: If *path* is not such a directory, or cannot be deleted.
    """
    if not path.name.startswith(PRUNING_PREFIX):
        raise RunlogError(f"{str(path)!r} is not a directory a prune left behind")
    _rmtree(path)


def _rmtree(path: Path) -> None:
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise RunlogError(
            f"cannot delete {str(path)!r}: {exc.strerror or exc} "
            f"({exc.filename!r}); run `runlog prune` again to finish"
        ) from exc


def _still_running(item: PruneItem) -> bool:
    # a run may have been resumed since the plan was made: look again
    try:
        info = read_run_json(_paths.logs_dir(item.run.run_dir))
    except OSError:
        return False
    return info is not None and effective_status(info) == "running"


def _move_untracked(source: Path, dest: Path, keep: frozenset[Path]) -> None:
    """Move every entry of *source* not tracked (or holding tracked files) to *dest*."""
    dest.mkdir(exist_ok=True)
    keep_dirs = {parent for path in keep for parent in path.parents}
    for entry in sorted(os.scandir(source), key=lambda e: e.name):
        path = Path(entry.path)
        resolved = path.resolve()
        if resolved in keep:
            continue
        if resolved in keep_dirs and entry.is_dir(follow_symlinks=False):
            _move_untracked(path, dest / entry.name, keep)
            continue
        os.rename(path, dest / entry.name)


def prune_item(
    item: PruneItem, moved_aside: Callable[[Path], object] | None = None
) -> None:
    """
    Delete what *item* stands for: rename to the pruning sibling, then delete.

    Files git tracks stay where they are; the untracked rest of the run is
    moved into the sibling first. A run that started running again since
    the plan was made is not touched. *moved_aside* is called with the
    sibling once the move is done, before it is deleted.

    Raises:
        RunlogError: If the run is running now, or a rename or delete fails
            (the message says what is left and that a new prune finishes it).
    """
    if item.reason is not None:
        raise RunlogError(f"{str(item.target)!r} is kept: {item.reason}")
    if _still_running(item):
        raise RunlogError(f"run {str(item.run.run_dir)!r} is running again: kept")
    pruning = item.pruning_path
    if pruning.exists():
        _rmtree(pruning)  # an earlier prune of this very run was cut short
    try:
        if item.keep:
            _move_untracked(item.target, pruning, item.keep)
        else:
            os.rename(item.target, pruning)
    except FileNotFoundError:
        return  # deleted by someone else meanwhile
    except OSError as exc:
        raise RunlogError(
            f"cannot move {str(item.target)!r} aside to delete it: "
            f"{exc.strerror or exc}; run `runlog prune` again to finish"
        ) from exc
    if moved_aside is not None:
        moved_aside(pruning)
    _rmtree(pruning)
    # what show learnt about the run's files is of no use any more
    cache = cache_file_of(item.run.run_dir / _paths.LOGS_DIR)
    if cache is not None:
        cache.unlink(missing_ok=True)


def run_prune(
    plan: PrunePlan,
    on_pruned: Callable[[PruneItem], object] | None = None,
    moved_aside: Callable[[Path], object] | None = None,
) -> None:
    """
    Carry *plan* out: finish the leftovers, then prune each run in turn.

    *on_pruned* is called after each run is gone (the CLI logs a line);
    *moved_aside* as in :func:`prune_item`.

    Raises:
        RunlogError: At the first run that cannot be pruned; the runs before
            it are pruned, it and the runs after it are whole (or, for the
            one that failed, moved aside, which the message says).
    """
    for path in plan.leftovers:
        remove_leftover(path)
    for item in plan.delete:
        prune_item(item, moved_aside)
        if on_pruned is not None:
            on_pruned(item)
