"""The end of a run's files: the archive, then the summary that records its hash."""

from __future__ import annotations

import os
from pathlib import Path

from ..archive import SUMMARY_HASH_RE, ArchiveInfo, Archiver, Progress
from ..errors import ArchiveIntegrityError
from ..summary import summarize_run


def finalize(
    run_dir: str | os.PathLike[str],
    archive_format: str | None,
    progress: Progress | None = None,
    *,
    level: int | None = None,
    force: bool = False,
) -> tuple[ArchiveInfo | None, Path]:
    """
    Archive ``logs/`` (unless *archive_format* is None), then write the summary.

    The summary is written also when archiving failed (then the error is
    re-raised), so it always describes the directory as it is. When an
    archive was made, checks that the summary records its hash, so the
    archive, the summary and the directory agree.

    Returns:
        The archive's ArchiveInfo (None without *archive_format*) and the
        summary's path.

    Raises:
        The errors of :meth:`Archiver.create_archive`, and
        ArchiveIntegrityError: If the summary does not record the new hash.
    """
    info = None
    try:
        if archive_format is not None:
            info = Archiver(run_dir).create_archive(
                format=archive_format, level=level, force=force, progress=progress
            )
    finally:
        summary = summarize_run(run_dir)
    if info is not None:
        recorded = SUMMARY_HASH_RE.search(summary.read_text(encoding="utf-8"))
        if recorded is None or recorded.group(1) != info.sha256:
            found = recorded.group(1) if recorded else None
            raise ArchiveIntegrityError(
                f"{str(summary)!r} records archive hash {found!r}, "
                f"not {info.sha256!r} of {str(info.path)!r}"
            )
    return info, summary


def archive_run(
    run_dir: str | os.PathLike[str],
    format: str = "gz",  # same name as create_archive's
    progress: Progress | None = None,
    *,
    level: int | None = None,
    force: bool = False,
) -> ArchiveInfo:
    """
    Archive the run's ``logs/``, then rewrite ``logs_summary.txt`` to record it.

    What ``runlog archive`` does; see :func:`finalize`.
    """
    info, _ = finalize(run_dir, format, progress, level=level, force=force)
    assert info is not None
    return info
