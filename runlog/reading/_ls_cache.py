"""The ``runlog ls`` cache: rows and log counts, keyed on the files they came from."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any, Final

import orjson

from .. import _paths
from .._status import FINISHED_STATUSES
from ._cache_file import CACHE_DIR, RACY_NS, load_cache, save_cache

CACHE_FILE: Final = "ls.json"
_FORMAT: Final = "runlog-ls-cache"
_VERSION: Final = 3
_MAX_STATUS: Final = 64  # run_end's status, as run.log says it
_ABSENT: Final = (0, 0, 0, 0)
_ARCHIVES: Final = tuple(_paths.ARCHIVE_NAMES.values())

Key = tuple[int, ...]


def _stat_key(path: str) -> tuple[int, int, int, int]:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return _ABSENT
    return info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns


def run_key(run_dir: str, archive: str = "") -> Key:
    """
    What a cached row of *run_dir* depends on: the run directory itself
    (an archive or summary added, removed or replaced), run.json, the
    summary and combined.log (where every record also goes), each as
    inode, size, mtime and ctime; for a run read from its *archive* (no
    logs/), that archive too. ctime cannot be set back by a user, so any
    write or rename shows.

    Raises:
        OSError: If a file exists but cannot be stat'ed.
    """
    logs = f"{run_dir}/{_paths.LOGS_DIR}"
    key = (
        *_stat_key(run_dir),
        *_stat_key(f"{logs}/{_paths.RUN_JSON}"),
        *_stat_key(f"{run_dir}/{_paths.SUMMARY_FILE}"),
        *_stat_key(f"{logs}/{_paths.COMBINED_LOG}"),
    )
    return (*key, *_stat_key(f"{run_dir}/{archive}")) if archive else key


def logs_key(logs: str) -> tuple[str, int]:
    """
    A digest of every file under *logs* and its ``step_NNN/`` directories
    (name, inode, size, mtime, ctime), and the newest mtime among them:
    what a row counted from the logs depends on. A record appended anywhere
    changes it.

    Raises:
        OSError: If a directory cannot be listed or a file stat'ed.
    """
    parts: list[str] = []
    newest = 0
    with os.scandir(logs) as entries:
        found = list(entries)
    for entry in found:
        if entry.is_dir(follow_symlinks=False):
            if _paths.parse_step_dir(entry.name) is None:
                continue
            with os.scandir(entry.path) as children:
                inner = [(f"{entry.name}/{c.name}", c) for c in children]
        else:
            inner = [(entry.name, entry)]
        for rel, item in inner:
            info = item.stat(follow_symlinks=False)
            newest = max(newest, info.st_mtime_ns)
            parts.append(
                f"{rel}\0{info.st_ino}\0{info.st_size}\0{info.st_mtime_ns}"
                f"\0{info.st_ctime_ns}"
            )
    parts.sort()
    text = "\n".join(parts).encode("utf-8", "surrogateescape")
    return hashlib.blake2b(text, digest_size=16).hexdigest(), newest


def _valid_facts(values: object) -> bool:
    """Cached log facts as :meth:`LsCache.put_facts` stores them."""
    if not isinstance(values, list) or len(values) != 6:
        return False
    steps, errors, warns, first, last, status = values
    return (
        all(type(n) is int and n >= 0 for n in (steps, errors, warns))
        and all(t is None or isinstance(t, str) for t in (first, last))
        and isinstance(status, str)
        and len(status) <= _MAX_STATUS
    )


def _digest(key: Key) -> int:
    # the hash of a tuple of ints is the same in every process (only str and
    # bytes hashes are salted): the cache stays a third of its size
    return hash(key)


def _valid_values(values: object) -> bool:
    """A cached row as :meth:`LsCache.put` stores it, checked type by type."""
    if not isinstance(values, list) or len(values) != 10:
        return False
    framework, run_id, status, started, duration, steps, errors, warns = values[:8]
    archived, source = values[8:]
    # an archive-only run's counts are unknown (None)
    counts = (steps, 0 if errors is None else errors, 0 if warns is None else warns)
    return (
        isinstance(framework, str)
        and isinstance(run_id, str)
        and status in FINISHED_STATUSES
        and (started is None or isinstance(started, str))
        and (duration is None or type(duration) in (int, float))
        and all(type(n) is int and n >= 0 for n in counts)
        and type(archived) is bool
        and source in ("logs", "archive")
    )


def _section(data: dict[str, Any], name: str) -> dict[str, Any]:
    section = data.get(name)
    return section if isinstance(section, dict) else {}


class LsCache:
    """
    Rows of finished runs under one runs directory, kept in
    ``<runs_dir>/.runlog-cache/ls.json`` so that a second ``runlog ls`` of
    10,000 runs reads 4 stats a run instead of its files (see #16).

    Rows are kept only of runs whose run.json says they ended (or that
    are read from their archive): whether a running run is alive is
    decided at every listing, never read from here. A row is used only
    while :func:`run_key` of its run is unchanged. What was counted from a
    run's log files (when it has no usable summary: a crashed run, a run
    without run.json) is kept apart, under :func:`logs_key`, and only once
    its files are older than :data:`RACY_NS`. The file is
    not trusted: one over :data:`MAX_CACHE_BYTES`, not JSON, or of another
    format is ignored (and rewritten), and so is every entry that is not
    exactly of the stored shape. It is written atomically, in a directory
    holding a ``.gitignore`` of ``*`` and a ``CACHEDIR.TAG``, so git and
    backup tools leave it out. Not thread-safe: one per listing.
    """

    def __init__(self, runs_dir: Path) -> None:
        self.dir = runs_dir / CACHE_DIR
        self.path = self.dir / CACHE_FILE
        self.started_ns = time.time_ns()
        loaded = self._load()
        self._old: dict[str, Any] = _section(loaded, "runs")
        self._old_facts: dict[str, Any] = _section(loaded, "logs")
        self._new: dict[str, list[Any]] = {}
        self._new_facts: dict[str, list[Any]] = {}
        self._changed = False

    def _load(self) -> dict[str, Any]:
        return load_cache(self.path, _FORMAT, _VERSION)[0]

    def archive_of(self, rel: str) -> str:
        """
        The archive name run *rel*'s row was read from ("" if from its
        logs/ or unknown): :func:`run_key` of it then includes the archive.
        """
        entry = self._old.get(rel)
        if isinstance(entry, list) and len(entry) == 3 and entry[2] in _ARCHIVES:
            return str(entry[2])
        return ""

    def get(self, rel: str, key: Key) -> list[Any] | None:
        """The cached row values of run *rel* if stored under *key*, else None."""
        entry = self._old.get(rel)
        if (
            not isinstance(entry, list)
            or len(entry) != 3
            or entry[0] != _digest(key)
            or entry[2] not in ("", *_ARCHIVES)
            or not _valid_values(entry[1])
        ):
            return None
        values: list[Any] = entry[1]
        self._new[rel] = entry
        return values

    def put(self, rel: str, key: Key, values: list[Any], *, archive: str = "") -> None:
        """
        Keep *values* for run *rel* under *key* (taken before its files were
        read; with the *archive* they were read from, if any), unless a file
        in *key* changed too recently to be sure of.
        """
        recent = self.started_ns - RACY_NS
        # the mtime of each of the four stat keys (ctime is in the key, but a
        # file given an old mtime with touch has a new ctime and is safe)
        times = key[2::4]
        if any(moment > recent for moment in times) or not _valid_values(values):
            return
        self._new[rel] = [_digest(key), values, archive]
        self._changed = True

    def get_facts(self, rel: str, digest: str) -> list[Any] | None:
        """The log facts of run *rel* if stored under *digest*, else None."""
        entry = self._old_facts.get(rel)
        if (
            not isinstance(entry, list)
            or len(entry) != 2
            or entry[0] != digest
            or not _valid_facts(entry[1])
        ):
            return None
        values: list[Any] = entry[1]
        self._new_facts[rel] = entry
        return values

    def put_facts(self, rel: str, key: tuple[str, int], values: list[Any]) -> None:
        """
        Keep the log facts *values* of run *rel* under *key* (from
        :func:`logs_key`, taken before the files were read), unless a log
        file changed too recently to be sure of: a live run's are not kept.
        """
        if key[1] > self.started_ns - RACY_NS or not _valid_facts(values):
            return
        self._new_facts[rel] = [key[0], values]
        self._changed = True

    def save(self) -> None:
        """
        Write the entries used or added by this listing, when they changed.

        A runs directory ``ls`` may not write to (read-only, another user's)
        is listed all the same: the cache is an optimisation.
        """
        if (
            not self._changed
            and len(self._new) == len(self._old)
            and len(self._new_facts) == len(self._old_facts)
        ):
            return
        data = orjson.dumps(
            {
                "format": _FORMAT,
                "version": _VERSION,
                "runs": self._new,
                "logs": self._new_facts,
            }
        )
        save_cache(self.path, data)
