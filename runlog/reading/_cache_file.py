"""The cache files of ``ls`` and ``show``: read untrusted, written whole."""

from __future__ import annotations

import os
import stat
from contextlib import suppress
from pathlib import Path
from typing import Any, Final

import orjson

from .._files import atomic_write

__all__ = ["CACHE_DIR", "MAX_CACHE_BYTES", "RACY_NS", "load_cache", "save_cache"]

CACHE_DIR: Final = ".runlog-cache"
# a bigger file is not one runlog wrote, and is not written either
MAX_CACHE_BYTES: Final = 64 << 20
# a file changed less than this before it was read may change again within
# the same tick of a coarse file clock, unseen by its stat: not cached
RACY_NS: Final = 2_000_000_000
_GITIGNORE: Final = b"# made by runlog; safe to delete\n*\n"
_TAG: Final = (
    b"Signature: 8a477f597d28d172789f06886806bc55\n"
    b"# made by runlog: a cache, safe to delete\n"
)


def load_cache(
    path: Path, fmt: str, version: int
) -> tuple[dict[str, Any], os.stat_result | None]:
    """
    The object in the cache file at *path*, if it is what runlog writes as
    *fmt* *version* (else ``{}``: a damaged cache is rebuilt, never
    trusted), and the file's stat (None when it could not be opened).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return {}, None  # none yet, or one we may not read: start afresh
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_CACHE_BYTES:
            return {}, info
        with os.fdopen(fd, "rb", closefd=False) as handle:
            raw = handle.read(MAX_CACHE_BYTES + 1)
    finally:
        os.close(fd)
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}, info
    if (
        not isinstance(data, dict)
        or data.get("format") != fmt
        or data.get("version") != version
    ):
        return {}, info
    return data, info


def save_cache(path: Path, data: bytes) -> bool:
    """
    Write *data* to *path* atomically, beside a ``.gitignore`` of ``*`` and
    a ``CACHEDIR.TAG`` so git and backup tools leave it out. False when it
    is too big or the directory may not be written (read-only, another
    user's): the cache is an optimisation, the reading goes on (see #16).
    """
    if len(data) > MAX_CACHE_BYTES:
        return False
    with suppress(OSError):
        path.parent.mkdir(exist_ok=True)
        for name, content in ((".gitignore", _GITIGNORE), ("CACHEDIR.TAG", _TAG)):
            if not os.path.lexists(path.parent / name):
                atomic_write(path.parent / name, content)
        atomic_write(path, data)
        return True
    return False
