"""The hashed, reproducible run archive: write, read back, verify.

The only package that imports zstandard and tarfile.
"""

from __future__ import annotations

from .._paths import find_archive
from ._archiver import (
    SUMMARY_HASH_RE,
    ArchiveInfo,
    Archiver,
    describe_archive,
    locate_archive,
    verify_archive,
)
from ._tarwrite import MANIFEST_NAME, Progress

__all__ = [
    "MANIFEST_NAME",
    "SUMMARY_HASH_RE",
    "ArchiveInfo",
    "Archiver",
    "Progress",
    "describe_archive",
    "find_archive",
    "locate_archive",
    "verify_archive",
]
