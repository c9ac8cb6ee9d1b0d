"""Archiver, ArchiveInfo, verify_archive: the hashed, reproducible run archive."""

from __future__ import annotations


class Archiver:
    """Placeholder until the archiver lands."""


class ArchiveInfo:
    """Placeholder until the archiver lands."""


def verify_archive() -> None:
    """Placeholder until the archiver lands."""
    raise NotImplementedError
