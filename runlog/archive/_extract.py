"""Unpacking a verified run archive into a directory, to rebuild what it came from."""

from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path
from typing import Final

from ..errors import ArchiveIntegrityError
from ._codecs import CORRUPT_ERRORS, open_reader
from ._tarread import _is_safe_member_name
from ._tarwrite import MANIFEST_NAME

_UNREADABLE: Final[tuple[type[Exception], ...]] = (
    tarfile.TarError,
    OSError,
    *CORRUPT_ERRORS,
)
_FILE_FLAGS: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def extract_archive(
    archive: str | os.PathLike[str], dest: str | os.PathLike[str]
) -> int:
    """
    Unpack *archive* (``run.tar.gz`` / ``run.tar.zst``) into the directory *dest*.

    Meant for an archive :func:`verify_archive` has passed, in a directory
    the caller made empty: the manifest is not written, files get mode
    0644/0755 and the archive's mtime, symlinks are made as symlinks and
    never followed, and nothing lands outside *dest* (a member with an
    unsafe name, beneath a symlink member, or of another type is refused).
    Streams the archive once.

    Returns:
        How many regular files were written.

    Raises:
        ArchiveIntegrityError: If a member is refused or the archive is damaged.
    """
    root = Path(dest)
    links: set[str] = set()
    files = 0
    try:
        with (
            open_reader(archive) as raw,
            tarfile.open(fileobj=raw, mode="r|") as tar,
        ):
            for member in tar:
                name = member.name
                if name == MANIFEST_NAME:
                    continue
                parts = name.split("/")
                parents = {"/".join(parts[:n]) for n in range(1, len(parts))}
                if not _is_safe_member_name(name) or links & parents:
                    raise ArchiveIntegrityError(
                        f"archive {str(archive)!r}: member {name!r} would land "
                        "outside the directory it is unpacked into"
                    )
                target = root.joinpath(*parts)
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                elif member.issym():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.symlink(member.linkname, target)
                    links.add(name)
                elif member.isreg():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    handle = tar.extractfile(member)
                    assert handle is not None  # a regular member has data
                    mode = 0o755 if member.mode & 0o100 else 0o644
                    fd = os.open(target, _FILE_FLAGS, mode)
                    with os.fdopen(fd, "wb") as out:
                        shutil.copyfileobj(handle, out)
                    os.utime(target, (member.mtime, member.mtime))
                    files += 1
                else:
                    raise ArchiveIntegrityError(
                        f"archive {str(archive)!r}: member {name!r} is of tar "
                        f"type {member.type!r}, not a file, directory or symlink"
                    )
    except _UNREADABLE as exc:
        raise ArchiveIntegrityError(
            f"archive {str(archive)!r} cannot be unpacked: {exc}"
        ) from exc
    return files
