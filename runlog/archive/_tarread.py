"""Reading a run archive back: its hash, its manifest, every member against it."""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

from ..errors import MismatchError, RunlogError
from . import _codecs
from ._tarwrite import MANIFEST_NAME

_BLOCK: Final = tarfile.BLOCKSIZE
_CHUNK: Final = _codecs.CHUNK
_MAX_MANIFEST: Final = 256 << 20  # a bound on what a hostile archive makes us hold
_MANIFEST_LINE: Final = re.compile(rb"(\\?)([0-9a-f]{64}) [ *](.+)")
_CORRUPT_STREAM: Final[tuple[type[Exception], ...]] = (
    OSError,
    *_codecs.CORRUPT_ERRORS,
)


@dataclass(frozen=True, slots=True)
class ReadBack:
    """What reading an archive found: its hash and size, and the first problem."""

    sha256: str
    size: int
    file_count: int
    problem: str | None
    symlinks: tuple[tuple[str, str], ...] = ()


class _HashingReader(io.RawIOBase):
    """Reads a file, hashing and counting every byte read."""

    def __init__(self, raw: BinaryIO) -> None:
        super().__init__()
        self._raw = raw
        self.digest = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]  # io's stub takes any buffer
        count = self._raw.readinto(buffer)  # type: ignore[attr-defined]  # a raw file has it
        if count:
            view = memoryview(buffer)[:count]
            self.digest.update(view)
            self.size += count
        return int(count or 0)

    def drain(self) -> None:
        buffer = bytearray(_CHUNK)
        while self.readinto(buffer):
            pass


def read_back(archive: Path, fmt: str) -> ReadBack:
    """Hash *archive* and check its members in one pass; never raises on content."""
    try:
        raw_file = open(archive, "rb", buffering=0)  # noqa: SIM115  # closed below
    except OSError as exc:
        raise RunlogError(
            f"cannot read {str(archive)!r}: {exc.strerror or exc}"
        ) from exc
    with raw_file:
        raw = _HashingReader(raw_file)
        count = 0
        problem: str | None = None
        symlinks: list[tuple[str, str]] = []
        stream = _codecs.decompressing_reader(raw, fmt)
        reader = _codecs.ForwardReader(stream)
        try:
            count = _check_members(reader, symlinks)
        except MismatchError as exc:
            problem = str(exc)
        except (tarfile.TarError, UnicodeError) as exc:
            problem = f"the tar data is corrupt: {exc}"
        except _CORRUPT_STREAM as exc:
            problem = f"the {fmt} data is corrupt or cut short: {exc}"
        finally:
            reader.close()
        try:
            raw.drain()
        except OSError as exc:
            raise RunlogError(
                f"cannot read {str(archive)!r}: {exc.strerror or exc}"
            ) from exc
    return ReadBack(raw.digest.hexdigest(), raw.size, count, problem, tuple(symlinks))


def read_manifest(tar: tarfile.TarFile) -> dict[str, str]:
    """
    The first member of *tar*, which must be MANIFEST.sha256, as name -> SHA-256.

    Raises:
        MismatchError: The first member is something else, or a line is not
            in sha256sum format, or a name is listed twice.
    """
    first = tar.next()
    if first is None:
        raise MismatchError(f"the archive is empty; expected {MANIFEST_NAME!r} first")
    if first.name != MANIFEST_NAME or not first.isreg():
        raise MismatchError(f"first member is {first.name!r}, not {MANIFEST_NAME!r}")
    if first.size > _MAX_MANIFEST:
        raise MismatchError(
            f"{MANIFEST_NAME} is implausibly large ({first.size} bytes)"
        )
    data = tar.extractfile(first)
    if data is None:  # pragma: no cover  # a regular member always has data
        raise MismatchError(f"{MANIFEST_NAME} has no data")
    return _parse_manifest(data.read())


def read_manifest_of(archive: Path) -> dict[str, str]:
    """The manifest of *archive* (name -> SHA-256), reading only its first member."""
    with (
        _codecs.open_reader(archive) as stream,
        tarfile.open(fileobj=stream, mode="r|", bufsize=_CHUNK) as tar,
    ):
        return read_manifest(tar)


def _parse_manifest(data: bytes) -> dict[str, str]:
    listed: dict[str, str] = {}
    for number, line in enumerate(data.split(b"\n")[:-1], start=1):
        match = _MANIFEST_LINE.fullmatch(line)
        if match is None:
            raise MismatchError(
                f"{MANIFEST_NAME} line {number} is not in sha256sum format: "
                f"{line[:120]!r}"
            )
        escaped, digest, raw_name = match.groups()
        if escaped:
            raw_name = _unescape(raw_name)
        name = raw_name.decode("utf-8", "surrogateescape")
        if name in listed:
            raise MismatchError(f"{MANIFEST_NAME} lists {name!r} twice")
        listed[name] = digest.decode()
    if data and not data.endswith(b"\n"):
        raise MismatchError(f"{MANIFEST_NAME} does not end with a newline")
    return listed


def _unescape(name: bytes) -> bytes:
    out = bytearray()
    pairs = {b"\\": b"\\", b"n": b"\n", b"r": b"\r"}
    index = 0
    while index < len(name):
        char = name[index : index + 1]
        if char == b"\\":
            nxt = name[index + 1 : index + 2]
            if nxt not in pairs:
                raise MismatchError(f"{MANIFEST_NAME}: bad escape in {name!r}")
            out += pairs[nxt]
            index += 2
        else:
            out += char
            index += 1
    return bytes(out)


def _check_members(
    reader: _codecs.ForwardReader, symlinks: list[tuple[str, str]]
) -> int:
    # Mode "r:" on a forward-only reader: tarfile parses the headers (PAX
    # included) and member data is hashed straight from the reader's buffers.
    with tarfile.open(fileobj=reader, mode="r:") as tar:
        return _check_tar(tar, reader, symlinks)


def _check_tar(
    tar: tarfile.TarFile,
    reader: _codecs.ForwardReader,
    symlinks: list[tuple[str, str]],
) -> int:
    listed = read_manifest(tar)
    seen: set[str] = {MANIFEST_NAME}
    links: set[str] = set()
    # Not `for member in tar`: in stream mode that yields the manifest again.
    while (member := tar.next()) is not None:
        name = member.name
        if name in seen:
            raise MismatchError(f"member {name!r} appears twice")
        seen.add(name)
        if not _is_safe_member_name(name):
            raise MismatchError(f"member {name!r} has an unsafe name")
        # extracted, a member beneath a symlink member lands where it points
        parents = ["/".join(name.split("/")[:n]) for n in range(1, name.count("/") + 1)]
        if links.intersection(parents):
            raise MismatchError(f"member {name!r} lies beneath a symlink member")
        if member.issym():
            links.add(name)
            symlinks.append((name, member.linkname))
        if member.isreg():
            want = listed.get(name)
            if want is None:
                raise MismatchError(f"member {name!r} is not listed in {MANIFEST_NAME}")
            actual = _hash_member(reader, member)
            if actual != want:
                raise MismatchError(
                    f"member {name!r}: SHA-256 expected {want!r} ({MANIFEST_NAME}), "
                    f"actual {actual!r}"
                )
        elif not (member.isdir() or member.issym()):
            raise MismatchError(
                f"member {name!r} is of tar type {member.type!r}: only files, "
                "directories and symlinks belong in a run archive"
            )
        elif name in listed:
            raise MismatchError(f"{MANIFEST_NAME} lists {name!r}, which is not a file")
    if reader.last_read.count(0) != len(reader.last_read):
        # tarfile ends silently at a header it cannot read after the first
        raise MismatchError(
            f"a damaged tar header at byte {tar.offset} (after the last member read)"
        )
    missing = sorted(listed.keys() - seen)
    if missing:
        raise MismatchError(
            f"{missing[0]!r} is listed in {MANIFEST_NAME} but missing from the archive"
        )
    _check_end(reader)
    return len(listed)


def _hash_member(reader: _codecs.ForwardReader, member: tarfile.TarInfo) -> str:
    digest = hashlib.sha256()
    reader.seek(member.offset_data)
    if reader.feed(member.size, digest.update) != member.size:
        raise MismatchError(f"member {member.name!r} is cut short")
    return digest.hexdigest()


def _check_end(reader: _codecs.ForwardReader) -> None:
    # tarfile stops silently at a truncated or damaged header; a whole archive
    # ends with two zero blocks (tarfile has read the first) and zero padding.
    rest = 0
    while chunk := reader.read(_CHUNK):
        if chunk.count(0) != len(chunk):
            raise MismatchError("data follows the end-of-archive marker")
        rest += len(chunk)
    if rest < _BLOCK:
        raise MismatchError("the tar stream is cut short (no end-of-archive marker)")


def _is_safe_member_name(name: str) -> bool:
    parts = name.split("/")
    return not name.startswith("/") and all(
        part not in ("", ".", "..") and "\0" not in part for part in parts
    )


# What reading a damaged archive's manifest raises.
UNREADABLE: Final[tuple[type[Exception], ...]] = (
    MismatchError,
    tarfile.TarError,
    UnicodeError,
    *_CORRUPT_STREAM,
)
