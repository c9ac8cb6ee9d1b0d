"""Where the server's runs are: a runs directory or a store URL, run by run."""

from __future__ import annotations

import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, TypeVar

from .. import _paths, remote
from ..errors import RunlogError
from ..reading._runs import (
    RunRow,
    looks_like_run,
    resolve_run,
    scan_runs,
)
from ..reading._source import RunSource, list_log_files

_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V")


class Lru(OrderedDict[_K, _V]):
    """A small least-recently-used map (callers hold the app's lock)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def get_or_make(self, key: _K, make: Callable[[], _V]) -> _V:
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = self[key] = make()
        while len(self) > self.size:
            self.popitem(last=False)
        return value


class RunLocation:
    """The runs the app shows: a local runs directory or an object store URL."""

    def __init__(self, location: str | os.PathLike[str]) -> None:
        text = os.fspath(location)
        self.url = text if remote.is_remote(text) else None
        self.root = Path(text)
        self.label = remote.display_url(text) if self.url else text
        self._fetched: dict[tuple[str, str], RunSource] = {}
        self._lock = threading.Lock()
        self._cache_dir: tempfile.TemporaryDirectory[str] | None = None
        if self.url is None and not self.root.is_dir():
            raise RunlogError(f"runs directory {text!r}: no such directory")

    def close(self) -> None:
        if self._cache_dir is not None:
            self._cache_dir.cleanup()

    def rows(self) -> list[RunRow]:
        if self.url is not None:
            return remote.scan_remote_runs(self.url)
        return scan_runs(self.root)

    def source(self, framework: str, run_id: str) -> RunSource | None:
        """The run *framework*/*run_id*, or None; names are checked first."""
        if not (_paths.is_safe_name(framework) and _paths.is_safe_name(run_id)):
            return None
        if self.url is not None:
            return self._remote_source(framework, run_id)
        root = self.root.resolve()
        for run_dir in (root / framework / run_id, root / run_id):
            if run_dir == root / run_id and root.name != framework:
                continue  # a framework's own directory given as RUNS_DIR
            if not run_dir.is_dir() or not looks_like_run(run_dir):
                continue
            # a symlinked run may not lead outside the runs directory
            if not run_dir.resolve().is_relative_to(root):
                return None
            return resolve_run(str(run_dir))
        return None

    def _remote_source(self, framework: str, run_id: str) -> RunSource | None:
        with self._lock:
            found = self._fetched.get((framework, run_id))
            if found is not None:
                return found
            row = next(
                (
                    r
                    for r in self.rows()
                    if (r.framework, r.run_id) == (framework, run_id)
                ),
                None,
            )
            if row is None or row.url is None:
                return None
            if self._cache_dir is None:
                self._cache_dir = tempfile.TemporaryDirectory(prefix="runlog-serve-")
            local = remote.fetch_run(row.url, self._cache_dir.name)
            source = resolve_run(str(local))
            self._fetched[(framework, run_id)] = source
            return source

    def names(self, row: RunRow) -> tuple[str, str] | None:
        """The (framework, run_id) of *row* in the app's URLs, or None if unsafe."""
        # a local run is named by its directories, which run.json may not repeat
        found = (row.framework, row.run_id) if self.url else row.path.parts[-2:]
        if len(found) == 2 and all(_paths.is_safe_name(name) for name in found):
            return found[0], found[1]
        return None


def run_version(source: RunSource) -> tuple[Any, ...]:
    """What changes when the run's files change (sizes and times), cheaply."""
    if source.archive is not None:
        info = source.archive.stat()
        return ("archive", info.st_size, info.st_mtime_ns)
    logs = source.logs_dir
    parts: list[Any] = []
    for log_file in list_log_files(logs):
        try:
            info = (logs / log_file.rel).stat()
        except FileNotFoundError:
            continue
        parts.append((log_file.rel, info.st_size, info.st_mtime_ns))
    try:
        parts.append(_paths.run_json(logs).stat().st_mtime_ns)
    except FileNotFoundError:
        parts.append(None)
    return tuple(parts)
