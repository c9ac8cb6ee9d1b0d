"""Object storage through fsspec: one location with retries and checks, run layout."""

from __future__ import annotations

import errno
import functools
import gzip
import hashlib
import importlib
import os
import random
import re
import shutil
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

from .. import _paths
from ..errors import (
    ArchiveIntegrityError,
    ConfigurationError,
    StoreMismatchError,
    UploadError,
)

T = TypeVar("T")

DEFAULT_RETRIES: Final = 4
DEFAULT_BACKOFF_S: Final = 0.5
MAX_BACKOFF_S: Final = 30.0
CHUNK: Final = 1 << 20
# up to the last "@" of the authority, as fsspec reads it: a password may hold "@"
_USERINFO_RE: Final = re.compile(r"(?<=://)[^/\s]*@")
# a store saying "no" (no such bucket, access denied) will say it again
_PERMANENT_OS_ERRORS: Final = (
    PermissionError,
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
)
_PERMANENT_ERRNOS: Final = frozenset({errno.EINVAL, errno.ENAMETOOLONG, errno.EACCES})


def display_url(url: str) -> str:
    """*url* fit for messages and records: no user info, query or fragment."""
    text = _USERINFO_RE.sub("", url)
    for mark in ("?", "#"):
        text = text.split(mark, 1)[0]
    return text


def strip_slash(url: str) -> str:
    stripped = url.rstrip("/")
    # keep "file:///" and "/" meaningful
    return stripped if stripped and not stripped.endswith(":") else url


@contextmanager
def filesystem_errors(url: str) -> Iterator[None]:
    """
    Turn fsspec's errors for an unusable *url* into ConfigurationError.

    Raises:
        ConfigurationError: Naming the URL, and what to install when the
            protocol's package is missing.
    """
    try:
        yield
    except ImportError as exc:  # e.g. s3:// without s3fs installed
        raise ConfigurationError(
            f"url {display_url(url)!r} needs a filesystem package "
            f"(pip install 'runlog[remote]'): {exc}"
        ) from exc
    except ValueError as exc:  # a protocol fsspec does not know
        raise ConfigurationError(f"url {display_url(url)!r}: {exc}") from exc


@dataclass
class TransferStats:
    """Counters of one uploader: what went over the wire and how often it retried."""

    passes: int = 0
    objects: int = 0
    bytes_sent: int = 0
    bytes_verified: int = 0
    bytes_received: int = 0
    retries: int = 0
    failures: int = 0


def load_fsspec() -> Any:
    # fsspec is untyped and optional, so it is imported by name, on first use
    try:
        return importlib.import_module("fsspec")
    except ImportError as exc:
        raise ConfigurationError(
            "remote URLs need the remote extra: pip install 'runlog[remote]'"
        ) from exc


@functools.cache
def _store_errors() -> tuple[type[BaseException], ...]:
    """The exception types a store raises for a failed request."""
    errors: list[type[BaseException]] = [OSError]
    try:
        botocore = importlib.import_module("botocore.exceptions")
    except ImportError:  # botocore only comes with s3fs; other stores raise OSError
        return tuple(errors)
    errors.append(botocore.BotoCoreError)
    return tuple(errors)


@functools.cache
def _transient_boto_errors() -> tuple[type[BaseException], ...]:
    try:
        botocore = importlib.import_module("botocore.exceptions")
    except ImportError:  # without botocore every store error is an OSError
        return ()
    return (botocore.HTTPClientError, botocore.ConnectionError)


def is_transient(exc: BaseException) -> bool:
    """True if retrying the request that raised *exc* may succeed."""
    if isinstance(exc, _PERMANENT_OS_ERRORS):
        return False
    if isinstance(exc, OSError):
        return exc.errno not in _PERMANENT_ERRNOS
    return isinstance(exc, _transient_boto_errors())


def describe_error(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {_USERINFO_RE.sub('', text)}"


def backoff_delay(backoff: float, attempt: int) -> float:
    """Seconds to wait before retry *attempt* (0-based): doubling, capped, jittered."""
    # the exponent is capped: 2.0**1024 overflows long after the cap is reached
    ceiling: float = min(MAX_BACKOFF_S, backoff * 2.0 ** min(attempt, 64))
    # jitter spreads the retries of many nodes hitting one store at once
    return ceiling * (0.5 + random.random() / 2)


def _check_policy(retries: object, backoff: object) -> tuple[int, float]:
    if type(retries) is not int or retries < 0:
        raise ConfigurationError(f"retries {retries!r}: use an int >= 0")
    if (
        not isinstance(backoff, (int, float))
        or isinstance(backoff, bool)
        or not backoff >= 0
    ):
        raise ConfigurationError(f"backoff {backoff!r}: use a number of seconds >= 0")
    return retries, float(backoff)


class Store:
    """One location in a filesystem fsspec knows, with retries and counters."""

    def __init__(
        self,
        url: str,
        *,
        retries: int,
        backoff: float,
        storage_options: Mapping[str, Any] | None,
        stats: TransferStats,
    ) -> None:
        if not isinstance(url, str) or not url:
            raise ConfigurationError(
                f"url {url!r}: use a URL such as 's3://bucket/prefix'"
            )
        self.retries, self.backoff = _check_policy(retries, backoff)
        self.url = strip_slash(url)
        self.stats = stats
        fsspec = load_fsspec()
        with filesystem_errors(url):
            fs, root = fsspec.core.url_to_fs(self.url, **dict(storage_options or {}))
        self.fs: Any = fs
        self.root: str = root.rstrip("/") or root
        protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
        # object stores have no directories; a local or mounted target does
        self.needs_dirs = bool({"file", "local"} & set(protocols))

    def path(self, rel: str) -> str:
        """The filesystem path of *rel* below the root."""
        return f"{self.root}/{rel}" if rel else self.root

    def display(self, rel: str = "") -> str:
        """The URL of *rel*, fit for messages."""
        return display_url(f"{self.url}/{rel}" if rel else self.url)

    def call(self, what: str, rel: str, action: Callable[[], T]) -> T:
        """
        Run *action*, retrying transient store errors with exponential backoff.

        Raises:
            UploadError: Naming the URL, after the last attempt or at once for
                an error that retrying cannot fix (no bucket, access denied).
        """
        attempt = 0
        while True:
            try:
                return action()
            except _store_errors() as exc:
                if not is_transient(exc) or attempt >= self.retries:
                    raise UploadError(
                        f"{what} {self.display(rel)!r} failed after "
                        f"{attempt + 1} attempt(s): {describe_error(exc)}"
                    ) from exc
                self.stats.retries += 1
                time.sleep(backoff_delay(self.backoff, attempt))
                attempt += 1

    def put_file(self, local: Path, rel: str, expected_sha256: str | None) -> None:
        """Upload *local* as *rel*, then re-read it from the store and compare."""

        def action() -> None:
            size, digest = hash_file(local)
            if expected_sha256 is not None and digest != expected_sha256:
                raise ArchiveIntegrityError(
                    f"archive {str(local)!r}: SHA-256 {digest} does not match its "
                    f"sidecar ({expected_sha256}); not uploading it"
                )
            path = self.path(rel)
            self._make_parent(path)
            self.fs.put_file(str(local), path)
            self.stats.objects += 1
            self.stats.bytes_sent += size
            self.verify(rel, size, digest)

        self.call("upload to", rel, action)

    def put_bytes(self, rel: str, data: bytes) -> None:
        """Store *data* as *rel* (one request; no read-back)."""

        def action() -> None:
            path = self.path(rel)
            self._make_parent(path)
            self.fs.pipe_file(path, data)
            self.stats.objects += 1
            self.stats.bytes_sent += len(data)

        self.call("upload to", rel, action)

    def verify(self, rel: str, size: int, digest: str) -> None:
        """
        Raise StoreMismatchError unless the store holds *size* bytes of *digest*.
        """
        path = self.path(rel)
        self.fs.invalidate_cache(path)
        stored = self.fs.info(path).get("size")
        if stored != size:
            raise StoreMismatchError(
                errno.EIO, f"stored size is {stored!r} bytes, sent {size}", path
            )
        hasher = hashlib.sha256()
        with self.fs.open(path, "rb") as handle:
            while chunk := handle.read(CHUNK):
                hasher.update(chunk)
                self.stats.bytes_verified += len(chunk)
        if hasher.hexdigest() != digest:
            raise StoreMismatchError(
                errno.EIO,
                f"stored SHA-256 is {hasher.hexdigest()}, sent {digest}",
                path,
            )

    def _make_parent(self, path: str) -> None:
        if self.needs_dirs:
            self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)

    def listing(self, rel: str = "") -> dict[str, int]:
        """Every object below *rel*, as path relative to the root -> size."""
        path = self.path(rel)

        def action() -> dict[str, int]:
            self.fs.invalidate_cache(path)
            if not self.fs.exists(path):
                return {}
            found = self.fs.find(path, detail=True)
            prefix = self.root.rstrip("/") + "/"
            result: dict[str, int] = {}
            for name, info in found.items():
                key = name if name.startswith(prefix) else "/" + name
                if key.startswith(prefix) and info.get("type", "file") == "file":
                    result[key[len(prefix) :]] = int(info.get("size") or 0)
            return result

        return self.call("list", rel, action)

    def read(self, rel: str) -> bytes:
        """The contents of *rel*."""

        def action() -> bytes:
            data: bytes = self.fs.cat_file(self.path(rel))
            self.stats.bytes_received += len(data)
            return data

        return self.call("read", rel, action)

    def download(self, rel: str, local: Path) -> None:
        """Copy *rel* to *local*, which appears whole or not at all."""
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(f".{local.name}.{os.getpid()}.part")

        def action() -> None:
            self.fs.get_file(self.path(rel), str(tmp))
            if not tmp.is_file() or tmp.is_symlink():
                # a folder key: fsspec made a directory of it
                raise UploadError(
                    f"download of {self.display(rel)!r} failed: it is a folder, "
                    "not an object"
                )
            self.stats.bytes_received += tmp.stat().st_size
            os.replace(tmp, local)

        try:
            self.call("download of", rel, action)
        finally:
            if tmp.is_dir() and not tmp.is_symlink():
                shutil.rmtree(tmp)
            else:
                tmp.unlink(missing_ok=True)

    def remove_tree(self, rel: str) -> None:
        """Delete every object below *rel* (remote only)."""

        def action() -> None:
            path = self.path(rel)
            self.fs.invalidate_cache(path)
            if self.fs.exists(path):
                self.fs.rm(path, recursive=True)

        self.call("delete of", rel, action)


def hash_file(path: Path) -> tuple[int, str]:
    """
    The size and SHA-256 of a local file.

    Raises:
        UploadError: If the file cannot be read.
    """
    hasher = hashlib.sha256()
    size = 0
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(CHUNK):
                hasher.update(chunk)
                size += len(chunk)
    except OSError as exc:
        raise UploadError(
            f"cannot read {str(path)!r} to upload it: {describe_error(exc)}"
        ) from exc
    return size, hasher.hexdigest()


# --- how a run is laid out in a store ------------------------------------------

LIVE_DIR: Final = "live"
"""Remote folder of a run holding the log segments shipped while it runs."""
SEGMENT_RE: Final = re.compile(r"(\d{15})-(\d{15})(\.gz)?")
"""Name of one shipped segment: its first and end byte offsets in the log."""
_SEGMENT_LEVEL: Final = 6  # JSON lines shrink about tenfold; ~5 ms per 200 KB


def encode_segment(start: int, data: bytes) -> tuple[str, bytes]:
    """The object name and gzip bytes of *data*, found at *start* in its log."""
    end = start + len(data)
    packed = gzip.compress(data, compresslevel=_SEGMENT_LEVEL, mtime=0)
    return f"{start:015d}-{end:015d}.gz", packed


def decode_segment(name: str, data: bytes) -> bytes:
    """
    The log bytes a segment object holds (gzip, or plain without ``.gz``).

    Raises:
        UploadError: If a ``.gz`` segment does not decompress.
    """
    if not name.endswith(".gz"):
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise UploadError(
            f"segment {name!r} is damaged: {describe_error(exc)}"
        ) from exc


def is_safe_rel(rel: str) -> bool:
    return all(_paths.is_safe_name(part) for part in rel.split("/"))


def split_run_rel(rel: str) -> tuple[str, str] | None:
    """(kind, rest) for a key inside one run's folder, else None."""
    if rel == _paths.SUMMARY_FILE:
        return "summary", rel
    if rel in _paths.ARCHIVE_NAMES.values():
        return "archive", rel
    if rel.endswith(_paths.SIDECAR_SUFFIX) and (
        rel[: -len(_paths.SIDECAR_SUFFIX)] in _paths.ARCHIVE_NAMES.values()
    ):
        return "sidecar", rel
    head, _, rest = rel.partition("/")
    if head == _paths.LOGS_DIR and rest and is_safe_rel(rest):
        return "logs", rest
    if head == LIVE_DIR and rest.startswith(f"{_paths.LOGS_DIR}/"):
        file_rel, _, segment = rest[len(_paths.LOGS_DIR) + 1 :].rpartition("/")
        if file_rel and is_safe_rel(file_rel) and SEGMENT_RE.fullmatch(segment):
            return "live", rest
    return None


def names_from_path(root: str) -> tuple[str, str]:
    parts = [part for part in root.split("/") if part]
    run_id = parts[-1] if parts and _paths.is_safe_name(parts[-1]) else "run"
    framework = (
        parts[-2] if len(parts) > 1 and _paths.is_safe_name(parts[-2]) else "remote"
    )
    return framework, run_id
