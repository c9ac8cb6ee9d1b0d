"""A committed summary against its run's archive in object storage (see #17)."""

from __future__ import annotations

import difflib
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from .. import _paths
from .._status import run_names
from ..archive import verify_archive
from ..archive._archiver import read_summary_record
from ..archive._extract import extract_archive
from ..errors import ArchiveIntegrityError, RunlogError, RunNotFoundError
from ..summary import LogSummarizer
from ._fetch import naming_url
from ._store import (
    DEFAULT_BACKOFF_S,
    DEFAULT_RETRIES,
    Store,
    TransferStats,
    display_url,
    hash_file,
)
from ._upload import run_url

_MAX_SHOWN: Final = 100  # characters of a differing line quoted in a message
# `summarize --baseline` adds this block: it compares with another run, so the
# archive alone cannot regenerate it and it is left out of the comparison
_CHANGES_BLOCK: Final = re.compile(
    rb"(?m)^== Changes since [^\n]* ==\n(?:[^\n]+\n)*\n?"
)


@dataclass(frozen=True)
class StoredRunCheck:
    """
    A committed summary that matched its stored archive.

    Attributes:
        summary: The ``logs_summary.txt`` checked.
        framework: The run's framework, as the summary names it.
        run_id: The run's id, as the summary names it.
        url: The run's folder in the store (no credentials).
        archive_url: The archive checked (no credentials).
        sha256: The archive's SHA-256 (what the summary records).
        size_bytes: The archive's size.
        file_count: Files listed in the archive's manifest.
    """

    summary: Path
    framework: str
    run_id: str
    url: str
    archive_url: str
    sha256: str
    size_bytes: int
    file_count: int


def find_summary(summary_or_run: str | os.PathLike[str]) -> Path:
    """
    The ``logs_summary.txt`` named by *summary_or_run*: the file, or a run's.

    Raises:
        RunNotFoundError: If there is no such summary.
    """
    path = Path(summary_or_run)
    if path.is_dir():
        path = _paths.summary_file(path)
    if not path.is_file():
        raise RunNotFoundError(
            f"summary {str(summary_or_run)!r}: no such file (give a committed "
            f"{_paths.SUMMARY_FILE} or the run directory holding it)"
        )
    return path


def verify_stored(
    summary_or_run: str | os.PathLike[str],
    url: str,
    *,
    retries: int = DEFAULT_RETRIES,
    backoff: float = DEFAULT_BACKOFF_S,
    storage_options: Mapping[str, Any] | None = None,
) -> StoredRunCheck:
    """
    Check a committed summary against its run's archive in object storage.

    The summary names its run (``Framework:``, ``Run ID:``; else the
    directory names ``<framework>/<run_id>/``) and records its archive's
    SHA-256. The archive is looked up at ``<url>/<framework>/<run_id>/``,
    where :func:`upload_run` puts it, downloaded to a temporary directory,
    and checked: its SHA-256 against the summary, then its sidecar and
    every member against its manifest (:func:`verify_archive`). Then it is
    unpacked and the summary regenerated from it, which must be
    byte-identical to the committed one (a "Changes since <baseline>" block
    that ``summarize --baseline`` added is left out: it compares with another
    run, which the archive cannot tell). Works from a fresh git clone,
    where only the summary is tracked. Messages name the URL, never the
    temporary copy, which is removed on return.

    Args:
        summary_or_run: A ``logs_summary.txt``, or a run directory holding one.
        url: The base URL runs were uploaded to (``s3://bucket/prefix``).
        retries: Retries of each request after a transient error.
        backoff: Seconds before the first retry, doubled each time.
        storage_options: Passed to the fsspec filesystem.

    Returns:
        What was checked.

    Raises:
        ArchiveIntegrityError: The archive is missing from the store, its
            SHA-256 is not the one recorded, it fails its own checks, or the
            regenerated summary differs (naming the first differing line).
        RunNotFoundError: No summary at *summary_or_run*.
        RunlogError: The summary records no archive hash, or names no run.
        UploadError: The store failed (naming the URL).
        ConfigurationError: For a bad URL, or without the remote extra.
    """
    summary = find_summary(summary_or_run)
    try:
        committed = summary.read_bytes()
    except OSError as exc:
        raise RunNotFoundError(
            f"summary {str(summary)!r} cannot be read: {exc.strerror or exc}"
        ) from exc
    record = read_summary_record(committed.decode("utf-8", "replace"))
    if record.sha256 is None:
        raise RunlogError(
            f"summary {str(summary)!r} records no archive hash (no 'SHA-256:' "
            "line): archive the run (`runlog archive RUN`) and commit the "
            "summary it refreshes"
        )
    framework = record.framework or summary.absolute().parent.parent.name
    run_id = record.run_id or summary.absolute().parent.name
    folder = run_url(url, framework, run_id)
    store = Store(
        folder,
        retries=retries,
        backoff=backoff,
        storage_options=storage_options,
        stats=TransferStats(),
    )
    listing = store.listing()
    wanted = (
        [record.archive_name]
        if record.archive_name
        else list(_paths.ARCHIVE_NAMES.values())
    )
    chosen = next((name for name in wanted if name in listing), None)
    if chosen is None:
        raise ArchiveIntegrityError(
            f"summary {str(summary)!r}: its archive is missing from the store: "
            f"no {' or '.join(wanted)} under {store.display()!r} (upload the run "
            f"with `runlog upload RUN {display_url(url)}`)"
        )
    archive_url = store.display(chosen)
    with tempfile.TemporaryDirectory(prefix="runlog-verify-") as tmp:
        run_dir = Path(tmp) / framework / run_id
        with naming_url(run_dir, folder):
            local = run_dir / chosen
            store.download(chosen, local)
            sidecar = chosen + _paths.SIDECAR_SUFFIX
            if sidecar in listing:
                store.download(sidecar, run_dir / sidecar)
            _, digest = hash_file(local)
            if digest != record.sha256:
                raise ArchiveIntegrityError(
                    f"{archive_url!r}: SHA-256 {digest}, but summary "
                    f"{str(summary)!r} records {record.sha256}: the stored "
                    "archive is not the one this summary was made from"
                )
            info = verify_archive(local)
            extract_archive(local, run_dir)
            names = run_names(run_dir)
            fresh = LogSummarizer(names[1], names[0], run_dir).generate_summary()
        regenerated = fresh.encode("utf-8", "backslashreplace")
        if regenerated != _without_changes(committed):
            raise ArchiveIntegrityError(
                _summary_mismatch(
                    summary, _without_changes(committed), regenerated, archive_url
                )
            )
    return StoredRunCheck(
        summary=summary,
        framework=framework,
        run_id=run_id,
        url=store.display(),
        archive_url=archive_url,
        sha256=info.sha256,
        size_bytes=info.size_bytes,
        file_count=info.file_count,
    )


def _without_changes(summary: bytes) -> bytes:
    """*summary* without its "Changes since <baseline>" block, if it has one."""
    return _CHANGES_BLOCK.sub(b"", summary, count=1)


def _summary_mismatch(
    summary: Path, committed: bytes, regenerated: bytes, archive_url: str
) -> str:
    old = committed.decode("utf-8", "replace").splitlines()
    new = regenerated.decode("utf-8", "replace").splitlines()
    changed = sum(
        1
        for line in difflib.unified_diff(old, new, n=0, lineterm="")
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    )
    first = next(
        (n for n, (a, b) in enumerate(zip(old, new, strict=False)) if a != b),
        min(len(old), len(new)),
    )
    was = old[first][:_MAX_SHOWN] if first < len(old) else "(end of file)"
    now = new[first][:_MAX_SHOWN] if first < len(new) else "(end of file)"
    return (
        f"summary {str(summary)!r} differs from the one regenerated from "
        f"{archive_url!r} ({changed} line(s) differ); first at line {first + 1}: "
        f"committed {was!r}, regenerated {now!r}"
    )
