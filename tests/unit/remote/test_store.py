"""Store over fsspec: URLs, error mapping, retries, transfers, checks, run layout."""

from __future__ import annotations

import errno
import gzip
import hashlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

fsspec = pytest.importorskip(
    "fsspec", reason="needs the remote extra: pip install 'runlog[remote]'"
)

from fsspec.implementations.memory import MemoryFileSystem  # noqa: E402

from runlog.errors import (  # noqa: E402
    ArchiveIntegrityError,
    ConfigurationError,
    StoreMismatchError,
    UploadError,
)
from runlog.remote._store import (  # noqa: E402
    CHUNK,
    MAX_BACKOFF_S,
    SEGMENT_RE,
    Store,
    TransferStats,
    backoff_delay,
    decode_segment,
    display_url,
    encode_segment,
    filesystem_errors,
    hash_file,
    is_safe_rel,
    is_transient,
    names_from_path,
    split_run_rel,
    strip_slash,
)
from tests.conftest import files_under  # noqa: E402

BASE = "memory://bkt/runs"
ROOT = "/bkt/runs"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@pytest.fixture(autouse=True)
def _empty_memory_store() -> Iterator[None]:
    """fsspec's in-memory filesystem is process-wide: empty it around each test."""
    MemoryFileSystem.store.clear()
    MemoryFileSystem.pseudo_dirs[:] = [""]
    yield
    MemoryFileSystem.store.clear()
    MemoryFileSystem.pseudo_dirs[:] = [""]


def make_store(url: str = BASE, *, retries: int = 0, backoff: float = 0.0) -> Store:
    """A Store on *url* with fresh counters."""
    return Store(
        url,
        retries=retries,
        backoff=backoff,
        storage_options=None,
        stats=TransferStats(),
    )


def memory_objects() -> dict[str, bytes]:
    """Every object of the in-memory filesystem: path -> bytes."""
    return {path: f.getvalue() for path, f in MemoryFileSystem.store.items()}


def local_url(directory: Path) -> str:
    """The ``file://`` URL of *directory*."""
    return f"file://{directory}"


class FailsThenReturns:
    """An action raising ``make_error()`` for its first *failures* calls."""

    def __init__(self, failures: int, make_error: Callable[[], BaseException]) -> None:
        self.failures = failures
        self.make_error = make_error
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.make_error()
        return "done"


def reset() -> BaseException:
    """A fresh connection reset, the usual transient store error."""
    return ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")


# --- URLs ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("s3://AKIA:secret@bkt/p", "s3://bkt/p"),
        ("s3://token@bkt/p", "s3://bkt/p"),
        ("s3://bkt/p?X-Amz-Signature=abc", "s3://bkt/p"),
        ("s3://bkt/p#frag", "s3://bkt/p"),
        ("s3://bkt/a@b/c", "s3://bkt/a@b/c"),
        ("simplecache::s3://u:pw@bkt/x", "simplecache::s3://bkt/x"),
        ("memory://bkt/runs", "memory://bkt/runs"),
    ],
)
def test_display_url_drops_user_info_query_and_fragment(url: str, shown: str) -> None:
    """Credentials, query and fragment go; an '@' inside the path stays."""
    assert display_url(url) == shown


def test_display_url_hides_a_password_containing_at() -> None:
    """A password with an '@' (as fsspec parses it) is hidden whole."""
    assert display_url("s3://user:p@ss@bkt/x") == "s3://bkt/x"


@pytest.mark.parametrize(
    ("url", "stripped"),
    [
        ("memory://bkt/runs/", "memory://bkt/runs"),
        ("memory://bkt/runs///", "memory://bkt/runs"),
        ("s3://bkt", "s3://bkt"),
        ("file:///", "file:///"),
        ("memory://", "memory://"),
        ("/", "/"),
        ("runs/", "runs"),
    ],
)
def test_strip_slash_keeps_roots_meaningful(url: str, stripped: str) -> None:
    """Trailing slashes go, except where only a root or a protocol is left."""
    assert strip_slash(url) == stripped


# --- filesystem_errors --------------------------------------------------------


def test_missing_filesystem_package_is_a_configuration_error() -> None:
    """An ImportError becomes ConfigurationError naming the URL and the extra."""
    with (
        pytest.raises(ConfigurationError) as caught,
        filesystem_errors("gcs://user:pw@bkt/runs?sig=1"),
    ):
        raise ImportError("Please install gcsfs")
    message = str(caught.value)
    assert message == (
        "url 'gcs://bkt/runs' needs a filesystem package "
        "(pip install 'runlog[remote]'): Please install gcsfs"
    )
    assert isinstance(caught.value.__cause__, ImportError)


def test_unknown_protocol_in_the_block_is_a_configuration_error() -> None:
    """A ValueError becomes ConfigurationError naming the URL, cause kept."""
    error = ValueError("Protocol not known: nosuch")
    with pytest.raises(ConfigurationError) as caught, filesystem_errors("nosuch://b"):
        raise error
    assert str(caught.value) == "url 'nosuch://b': Protocol not known: nosuch"
    assert caught.value.__cause__ is error


def test_filesystem_errors_lets_os_errors_through() -> None:
    """An OSError is not a configuration problem: it passes unchanged."""
    error = PermissionError(errno.EACCES, "denied")
    with pytest.raises(PermissionError) as caught, filesystem_errors(BASE):
        raise error
    assert caught.value is error


def test_store_on_an_unknown_protocol_is_a_configuration_error() -> None:
    """Store('nosuch://...') fails at construction, naming the URL without secrets."""
    with pytest.raises(ConfigurationError) as caught:
        make_store("nosuch://user:pw@bkt/runs")
    message = str(caught.value)
    assert message.startswith("url 'nosuch://bkt/runs': ")
    assert "pw" not in message
    assert isinstance(caught.value.__cause__, ValueError)


# --- is_transient and backoff -------------------------------------------------


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionResetError(errno.ECONNRESET, "reset"),
        TimeoutError(),
        OSError("no errno"),
        OSError(errno.EIO, "io"),
        StoreMismatchError(errno.EIO, "stored size differs", "/bkt/x"),
        BrokenPipeError(errno.EPIPE, "pipe"),
    ],
    ids=["reset", "timeout", "no-errno", "eio", "store-mismatch", "pipe"],
)
def test_network_like_errors_are_transient(exc: BaseException) -> None:
    """Connection drops, timeouts, I/O errors and mismatches may pass on a retry."""
    assert is_transient(exc)


@pytest.mark.parametrize(
    "exc",
    [
        PermissionError(errno.EPERM, "denied"),
        OSError(errno.EACCES, "access denied"),
        FileNotFoundError(errno.ENOENT, "no bucket"),
        FileExistsError(errno.EEXIST, "exists"),
        IsADirectoryError(errno.EISDIR, "dir"),
        NotADirectoryError(errno.ENOTDIR, "not dir"),
        OSError(errno.EINVAL, "bad request"),
        OSError(errno.ENAMETOOLONG, "key too long"),
        ValueError("bug"),
        KeyboardInterrupt(),
    ],
    ids=[
        "eperm",
        "eacces",
        "enoent",
        "eexist",
        "eisdir",
        "enotdir",
        "einval",
        "enametoolong",
        "value-error",
        "keyboard-interrupt",
    ],
)
def test_refusals_and_bugs_are_not_transient(exc: BaseException) -> None:
    """A store saying no, a bad request or a non-OS error will not pass on a retry."""
    assert not is_transient(exc)


def test_botocore_connection_errors_are_transient() -> None:
    """botocore's connection and HTTP client errors are transient."""
    exceptions = pytest.importorskip("botocore.exceptions", reason="comes with s3fs")
    assert is_transient(exceptions.EndpointConnectionError(endpoint_url="http://x"))
    assert is_transient(exceptions.ReadTimeoutError(endpoint_url="http://x"))
    assert is_transient(exceptions.HTTPClientError(error="boom"))


def test_other_botocore_errors_are_not_transient() -> None:
    """Missing credentials or a bad parameter will not pass on a retry."""
    exceptions = pytest.importorskip("botocore.exceptions", reason="comes with s3fs")
    assert not is_transient(exceptions.NoCredentialsError())
    assert not is_transient(exceptions.ParamValidationError(report="bad"))


def test_backoff_is_capped_at_the_maximum() -> None:
    """A late attempt waits between half the cap and the cap, never more."""
    for _ in range(50):
        delay = backoff_delay(1.0, 20)
        assert MAX_BACKOFF_S / 2 <= delay <= MAX_BACKOFF_S


def test_backoff_of_zero_is_no_wait() -> None:
    """backoff=0 never sleeps, whatever the attempt."""
    assert [backoff_delay(0.0, attempt) for attempt in range(10)] == [0.0] * 10


def test_backoff_is_jittered() -> None:
    """Two nodes retrying at once do not wait the same time: delays vary."""
    delays = {backoff_delay(1.0, 2) for _ in range(50)}
    assert len(delays) > 1
    assert all(2.0 <= delay <= 4.0 for delay in delays)


# --- Store construction -------------------------------------------------------


@pytest.mark.parametrize("retries", [-1, True, 1.0, "3", None])
def test_bad_retries_are_refused(retries: object) -> None:
    """retries must be an int >= 0 (a bool is not)."""
    with pytest.raises(ConfigurationError, match=r"^retries .*: use an int >= 0$"):
        Store(
            BASE,
            retries=retries,  # type: ignore[arg-type]  # the bad value under test
            backoff=0.0,
            storage_options=None,
            stats=TransferStats(),
        )


@pytest.mark.parametrize("backoff", [-0.1, float("nan"), True, "1", None])
def test_bad_backoff_is_refused(backoff: object) -> None:
    """backoff must be a number of seconds >= 0 (not NaN, not a bool)."""
    with pytest.raises(ConfigurationError, match=r"^backoff .*: use a number"):
        Store(
            BASE,
            retries=0,
            backoff=backoff,  # type: ignore[arg-type]  # the bad value under test
            storage_options=None,
            stats=TransferStats(),
        )


@pytest.mark.parametrize("url", ["", None, Path("/tmp/x"), b"memory://b"])
def test_url_that_is_not_a_non_empty_string_is_refused(url: object) -> None:
    """The URL must be a non-empty str; the message shows an example."""
    with pytest.raises(ConfigurationError, match="such as 's3://bucket/prefix'"):
        make_store(url)  # type: ignore[arg-type]  # the bad value under test


def test_int_backoff_is_kept_as_float_seconds() -> None:
    """An int backoff is accepted and stored as float seconds."""
    store = make_store(retries=2, backoff=1)
    assert (store.retries, store.backoff) == (2, 1.0)
    assert type(store.backoff) is float


def test_memory_store_has_its_root_and_needs_no_folders() -> None:
    """memory://bkt/runs/ is rooted at /bkt/runs; an object store makes no dirs."""
    store = make_store(BASE + "/")
    assert store.url == BASE
    assert store.root == ROOT
    assert not store.needs_dirs


def test_local_store_needs_folders(tmp_path: Path) -> None:
    """A file:// store is rooted at the local path and creates parent folders."""
    store = make_store(local_url(tmp_path / "store"))
    assert store.root == str(tmp_path / "store")
    assert store.needs_dirs


def test_path_joins_below_the_root() -> None:
    """path('') is the root, path('a/b') is root/a/b."""
    store = make_store()
    assert store.path("") == ROOT
    assert store.path("fw/r1/run.tar.gz") == f"{ROOT}/fw/r1/run.tar.gz"


def test_display_names_the_object_url() -> None:
    """display(rel) is the object's URL; display() the store's."""
    store = make_store()
    assert store.display() == BASE
    assert store.display("fw/r1") == f"{BASE}/fw/r1"


# --- call(): retries ----------------------------------------------------------


def test_call_returns_the_result_of_a_first_success() -> None:
    """An action that succeeds is run once and counts no retry."""
    store = make_store(retries=3)
    action = FailsThenReturns(0, reset)
    assert store.call("read", "x", action) == "done"
    assert action.calls == 1
    assert store.stats.retries == 0


def test_transient_failures_are_retried_until_success() -> None:
    """Two connection resets then success: three calls, two retries counted."""
    store = make_store(retries=3, backoff=0.001)
    action = FailsThenReturns(2, reset)
    assert store.call("upload to", "fw/r1/run.tar.gz", action) == "done"
    assert action.calls == 3
    assert store.stats.retries == 2


def test_last_allowed_retry_may_succeed() -> None:
    """As many failures as retries still ends in success."""
    store = make_store(retries=2, backoff=0.001)
    action = FailsThenReturns(2, TimeoutError)
    assert store.call("read", "x", action) == "done"
    assert action.calls == 3


def test_too_many_transient_failures_raise_upload_error() -> None:
    """One failure more than the retries: UploadError naming URL and attempts."""
    store = make_store(retries=2, backoff=0.001)
    action = FailsThenReturns(3, reset)
    with pytest.raises(UploadError) as caught:
        store.call("upload to", "fw/r1/run.tar.gz", action)
    assert str(caught.value) == (
        f"upload to '{BASE}/fw/r1/run.tar.gz' failed after 3 attempt(s): "
        "ConnectionResetError: [Errno 104] Connection reset by peer"
    )
    assert isinstance(caught.value.__cause__, ConnectionResetError)
    assert action.calls == 3
    assert store.stats.retries == 2


def test_permanent_error_is_not_retried() -> None:
    """Access denied: UploadError after one attempt, whatever the retries."""
    store = make_store(retries=5, backoff=0.001)
    action = FailsThenReturns(1, lambda: PermissionError(errno.EACCES, "denied"))
    with pytest.raises(UploadError, match=r"failed after 1 attempt\(s\)"):
        store.call("upload to", "x", action)
    assert action.calls == 1
    assert store.stats.retries == 0


def test_error_that_is_not_a_store_error_passes_unchanged() -> None:
    """A ValueError (a bug, not the store) is raised as is, not retried or wrapped."""
    store = make_store(retries=5, backoff=0.001)
    error = ValueError("bug")
    action = FailsThenReturns(1, lambda: error)
    with pytest.raises(ValueError, match="bug") as caught:
        store.call("read", "x", action)
    assert caught.value is error
    assert action.calls == 1


def test_retries_wait_with_growing_backoff() -> None:
    """Three retries at 20 ms backoff sleep at least 10 + 20 + 40 ms in all."""
    store = make_store(retries=3, backoff=0.02)
    action = FailsThenReturns(3, reset)
    started = time.monotonic()
    assert store.call("read", "x", action) == "done"
    assert time.monotonic() - started >= 0.07


def test_error_text_loses_credentials_in_the_upload_error() -> None:
    """A store error quoting a URL with user info is reported without it."""
    store = make_store()
    action = FailsThenReturns(
        1, lambda: OSError(errno.EIO, "GET s3://key:secret@bkt/x failed")
    )
    with pytest.raises(UploadError) as caught:
        store.call("read", "x", action)
    message = str(caught.value)
    assert "secret" not in message
    assert message.endswith("OSError: [Errno 5] GET s3://bkt/x failed")


def test_botocore_transient_error_is_retried() -> None:
    """A botocore connection error is retried like a connection reset."""
    exceptions = pytest.importorskip("botocore.exceptions", reason="comes with s3fs")
    store = make_store(retries=2, backoff=0.001)
    action = FailsThenReturns(
        2, lambda: exceptions.EndpointConnectionError(endpoint_url="http://x")
    )
    assert store.call("list", "", action) == "done"
    assert store.stats.retries == 2


def test_botocore_permanent_error_is_an_upload_error_at_once() -> None:
    """Missing credentials: UploadError after one attempt."""
    exceptions = pytest.importorskip("botocore.exceptions", reason="comes with s3fs")
    store = make_store(retries=3, backoff=0.001)
    action = FailsThenReturns(1, exceptions.NoCredentialsError)
    with pytest.raises(UploadError, match="NoCredentialsError") as caught:
        store.call("list", "", action)
    assert isinstance(caught.value.__cause__, exceptions.NoCredentialsError)
    assert action.calls == 1


def test_more_than_1023_retries_still_end_in_upload_error() -> None:
    """retries=1100 with no backoff: the last failure is an UploadError."""
    store = make_store(retries=1100, backoff=0.0)
    action = FailsThenReturns(10_000, reset)
    with pytest.raises(UploadError, match=r"after 1101 attempt\(s\)"):
        store.call("read", "x", action)


# --- hash_file ----------------------------------------------------------------


def test_hash_file_gives_size_and_sha256(tmp_path: Path) -> None:
    """A file over one chunk long: its whole size and SHA-256."""
    data = bytes(range(256)) * (CHUNK // 256) + b"tail"
    (tmp_path / "f").write_bytes(data)
    assert hash_file(tmp_path / "f") == (len(data), hashlib.sha256(data).hexdigest())


def test_hash_file_of_an_empty_file(tmp_path: Path) -> None:
    """An empty file: size 0 and the SHA-256 of no bytes."""
    (tmp_path / "f").write_bytes(b"")
    assert hash_file(tmp_path / "f") == (0, EMPTY_SHA256)


def test_hash_file_of_a_missing_file_is_an_upload_error(tmp_path: Path) -> None:
    """A file that cannot be read: UploadError naming it, the OSError as cause."""
    path = tmp_path / "gone.tar.gz"
    with pytest.raises(UploadError) as caught:
        hash_file(path)
    assert str(caught.value).startswith(f"cannot read {str(path)!r} to upload it: ")
    assert isinstance(caught.value.__cause__, FileNotFoundError)


def test_hash_file_of_a_directory_is_an_upload_error(tmp_path: Path) -> None:
    """A directory where the file should be: UploadError (EISDIR)."""
    with pytest.raises(UploadError, match="IsADirectoryError"):
        hash_file(tmp_path)


# --- put_bytes / put_file / verify --------------------------------------------


def test_put_bytes_stores_the_object_and_counts_it() -> None:
    """put_bytes writes exactly the bytes at root/rel, one object counted."""
    store = make_store()
    store.put_bytes("fw/r1/logs/run.json", b'{"status": "running"}')
    assert memory_objects() == {f"{ROOT}/fw/r1/logs/run.json": b'{"status": "running"}'}
    assert (store.stats.objects, store.stats.bytes_sent) == (1, 21)
    assert store.stats.bytes_verified == 0


def test_put_bytes_replaces_an_existing_object() -> None:
    """A second put_bytes to the same key leaves only the new bytes."""
    store = make_store()
    store.put_bytes("k", b"old contents")
    store.put_bytes("k", b"new")
    assert memory_objects() == {f"{ROOT}/k": b"new"}


def test_put_bytes_to_a_local_store_creates_parent_folders(tmp_path: Path) -> None:
    """On a file:// store the parent folders of a key are made first."""
    store = make_store(local_url(tmp_path / "store"))
    store.put_bytes("fw/r1/logs/step_001/a.log", b"line\n")
    assert files_under(tmp_path) == {"store/fw/r1/logs/step_001/a.log"}
    assert (tmp_path / "store/fw/r1/logs/step_001/a.log").read_bytes() == b"line\n"


def test_put_bytes_under_a_file_is_an_upload_error(tmp_path: Path) -> None:
    """A key below an existing local file cannot be made: UploadError at once."""
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "fw").write_bytes(b"a file, not a folder")
    store = make_store(local_url(tmp_path / "store"), retries=3, backoff=0.001)
    with pytest.raises(UploadError, match=r"after 1 attempt\(s\)"):
        store.put_bytes("fw/r1", b"x")
    assert files_under(tmp_path) == {"store/fw"}
    assert store.stats.objects == 0


def test_put_file_uploads_and_reads_back(tmp_path: Path) -> None:
    """put_file stores the file's bytes and re-reads all of them to verify."""
    data = b"archive bytes " * 100_000
    (tmp_path / "run.tar.gz").write_bytes(data)
    store = make_store()
    store.put_file(tmp_path / "run.tar.gz", "fw/r1/run.tar.gz", None)
    assert memory_objects() == {f"{ROOT}/fw/r1/run.tar.gz": data}
    stats = store.stats
    assert (stats.objects, stats.bytes_sent, stats.bytes_verified) == (
        1,
        len(data),
        len(data),
    )


def test_put_file_to_a_local_store_creates_parent_folders(tmp_path: Path) -> None:
    """On a file:// store put_file makes the folders and writes the same bytes."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "run.tar.gz").write_bytes(b"abc")
    store = make_store(local_url(tmp_path / "store"))
    store.put_file(tmp_path / "src" / "run.tar.gz", "fw/r1/run.tar.gz", None)
    assert files_under(tmp_path / "store") == {"fw/r1/run.tar.gz"}
    assert (tmp_path / "store/fw/r1/run.tar.gz").read_bytes() == b"abc"


def test_put_file_with_the_expected_digest_uploads(tmp_path: Path) -> None:
    """A file whose SHA-256 matches its sidecar is uploaded."""
    (tmp_path / "f").write_bytes(b"abc")
    store = make_store()
    store.put_file(tmp_path / "f", "f", hashlib.sha256(b"abc").hexdigest())
    assert memory_objects() == {f"{ROOT}/f": b"abc"}


def test_put_file_with_another_digest_is_refused_unsent(tmp_path: Path) -> None:
    """A file not matching its sidecar: ArchiveIntegrityError, nothing stored."""
    (tmp_path / "run.tar.gz").write_bytes(b"abc")
    store = make_store(retries=3, backoff=0.001)
    with pytest.raises(ArchiveIntegrityError, match="does not match its sidecar"):
        store.put_file(tmp_path / "run.tar.gz", "run.tar.gz", EMPTY_SHA256)
    assert memory_objects() == {}
    assert store.stats == TransferStats()


def test_put_file_of_a_missing_file_is_an_upload_error(tmp_path: Path) -> None:
    """A local file that is gone: UploadError 'cannot read', nothing stored."""
    store = make_store()
    with pytest.raises(UploadError, match="cannot read"):
        store.put_file(tmp_path / "gone", "gone", None)
    assert memory_objects() == {}


def test_verify_accepts_what_was_stored() -> None:
    """verify passes for the stored size and digest and counts the bytes read."""
    store = make_store()
    store.put_bytes("k", b"abcd")
    store.verify("k", 4, hashlib.sha256(b"abcd").hexdigest())
    assert store.stats.bytes_verified == 4


def test_verify_of_another_size_is_a_mismatch() -> None:
    """A stored size other than sent: StoreMismatchError (EIO) naming both sizes."""
    store = make_store()
    store.put_bytes("k", b"abc")
    with pytest.raises(StoreMismatchError) as caught:
        store.verify("k", 4, hashlib.sha256(b"abcd").hexdigest())
    assert caught.value.errno == errno.EIO
    assert caught.value.strerror == "stored size is 3 bytes, sent 4"
    assert caught.value.filename == f"{ROOT}/k"


def test_verify_of_other_bytes_of_the_same_size_is_a_mismatch() -> None:
    """Same size, other bytes: StoreMismatchError naming both digests."""
    store = make_store()
    store.put_bytes("k", b"abce")
    sent = hashlib.sha256(b"abcd").hexdigest()
    with pytest.raises(StoreMismatchError) as caught:
        store.verify("k", 4, sent)
    assert caught.value.strerror == (
        f"stored SHA-256 is {hashlib.sha256(b'abce').hexdigest()}, sent {sent}"
    )


def test_verify_rereads_a_local_object_changed_behind_its_back(
    tmp_path: Path,
) -> None:
    """A stored file rewritten after upload is read afresh and fails verify."""
    (tmp_path / "src").write_bytes(b"abcd")
    store = make_store(local_url(tmp_path / "store"))
    store.put_file(tmp_path / "src", "k", None)
    (tmp_path / "store" / "k").write_bytes(b"abce")
    with pytest.raises(StoreMismatchError, match="stored SHA-256 is"):
        store.verify("k", 4, hashlib.sha256(b"abcd").hexdigest())


def test_verify_of_a_missing_object_raises_file_not_found() -> None:
    """verify itself does not wrap errors: a missing object is FileNotFoundError."""
    store = make_store()
    with pytest.raises(FileNotFoundError):
        store.verify("nope", 0, EMPTY_SHA256)


# --- listing / read / download / remove_tree ----------------------------------


def test_listing_gives_every_object_below_the_root_with_its_size() -> None:
    """listing() maps paths relative to the root to sizes; nothing outside it."""
    store = make_store()
    store.put_bytes("fw/r1/run.tar.gz", b"12345")
    store.put_bytes("fw/r1/logs/run.json", b"{}")
    store.put_bytes("top", b"")
    fsspec.filesystem("memory").pipe_file("/bkt/other/x", b"outside")
    assert store.listing() == {
        "fw/r1/run.tar.gz": 5,
        "fw/r1/logs/run.json": 2,
        "top": 0,
    }


def test_listing_of_a_folder_excludes_siblings_sharing_its_prefix() -> None:
    """listing('fw/r1') holds fw/r1's objects, not those of fw/r10."""
    store = make_store()
    store.put_bytes("fw/r1/a", b"a")
    store.put_bytes("fw/r10/b", b"bb")
    assert store.listing("fw/r1") == {"fw/r1/a": 1}


def test_listing_of_a_missing_folder_is_empty() -> None:
    """A prefix with no objects lists as {}."""
    store = make_store()
    store.put_bytes("fw/r1/a", b"a")
    assert store.listing("fw/r2") == {}


def test_listing_of_one_object_is_that_object() -> None:
    """listing(rel) of an object key gives just that object."""
    store = make_store()
    store.put_bytes("fw/r1/a", b"abc")
    store.put_bytes("fw/r1/b", b"b")
    assert store.listing("fw/r1/a") == {"fw/r1/a": 3}


def test_listing_of_a_local_store_skips_folders(tmp_path: Path) -> None:
    """On a file:// store, folders (even empty ones) are not listed."""
    (tmp_path / "store" / "fw" / "empty").mkdir(parents=True)
    (tmp_path / "store" / "fw" / "r1").mkdir()
    (tmp_path / "store" / "fw" / "r1" / "run.json").write_bytes(b"{}")
    store = make_store(local_url(tmp_path / "store"))
    assert store.listing() == {"fw/r1/run.json": 2}


def test_read_returns_the_bytes_and_counts_them() -> None:
    """read(rel) gives the object's bytes; bytes_received grows by their size."""
    store = make_store()
    store.put_bytes("fw/r1/logs/run.json", b'{"status": "success"}')
    assert store.read("fw/r1/logs/run.json") == b'{"status": "success"}'
    assert store.stats.bytes_received == 21


def test_read_of_a_missing_object_is_an_upload_error_at_once() -> None:
    """A missing key: UploadError naming its URL after one attempt, no retry."""
    store = make_store(retries=3, backoff=0.001)
    with pytest.raises(UploadError) as caught:
        store.read("fw/r1/nope")
    assert str(caught.value).startswith(
        f"read '{BASE}/fw/r1/nope' failed after 1 attempt(s): FileNotFoundError"
    )
    assert store.stats.retries == 0


def test_download_writes_the_file_whole_with_its_folders(tmp_path: Path) -> None:
    """download makes the parent folders and leaves only the finished file."""
    store = make_store()
    store.put_bytes("fw/r1/run.tar.gz", b"x" * 1000)
    local = tmp_path / "out" / "fw" / "r1" / "run.tar.gz"
    store.download("fw/r1/run.tar.gz", local)
    assert files_under(tmp_path) == {"out/fw/r1/run.tar.gz"}
    assert local.read_bytes() == b"x" * 1000
    assert store.stats.bytes_received == 1000


def test_download_replaces_an_existing_local_file(tmp_path: Path) -> None:
    """An older local copy is replaced by the stored bytes."""
    store = make_store()
    store.put_bytes("k", b"new")
    (tmp_path / "k").write_bytes(b"old and longer")
    store.download("k", tmp_path / "k")
    assert files_under(tmp_path) == {"k"}
    assert (tmp_path / "k").read_bytes() == b"new"


def test_failed_download_keeps_the_local_file_and_no_part(tmp_path: Path) -> None:
    """A missing key: UploadError, the old local file intact, no .part left."""
    store = make_store()
    (tmp_path / "k").write_bytes(b"old")
    with pytest.raises(UploadError, match="download of"):
        store.download("k", tmp_path / "k")
    assert files_under(tmp_path) == {"k"}
    assert (tmp_path / "k").read_bytes() == b"old"


def test_failed_download_creates_no_file(tmp_path: Path) -> None:
    """A missing key leaves nothing where the file would have gone."""
    store = make_store()
    with pytest.raises(UploadError):
        store.download("k", tmp_path / "out" / "k")
    assert files_under(tmp_path) == set()


def test_download_of_a_folder_key_is_an_upload_error(tmp_path: Path) -> None:
    """Downloading a folder, not an object, fails and leaves nothing at local."""
    store = make_store()
    store.put_bytes("fw/r1/logs/run.log", b"line\n")
    local = tmp_path / "out"
    with pytest.raises(UploadError):
        store.download("fw/r1", local)
    assert not local.exists()


def test_download_of_a_folder_key_over_a_file_leaves_no_part(tmp_path: Path) -> None:
    """A folder key over an existing file: UploadError, file kept, no .part left."""
    store = make_store()
    store.put_bytes("fw/r1/logs/run.log", b"line\n")
    (tmp_path / "k").write_bytes(b"old")
    with pytest.raises(UploadError):
        store.download("fw/r1", tmp_path / "k")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k"]


def test_remove_tree_deletes_one_folder_only() -> None:
    """remove_tree('fw/r1/live') deletes its objects, siblings and look-alikes stay."""
    store = make_store()
    store.put_bytes("fw/r1/live/logs/a.log/000000000000000-000000000000005.gz", b"1")
    store.put_bytes("fw/r1/live/logs/b.log/000000000000000-000000000000005.gz", b"2")
    store.put_bytes("fw/r1/run.tar.gz", b"3")
    store.put_bytes("fw/r1/live2/x", b"4")
    store.remove_tree("fw/r1/live")
    assert store.listing() == {"fw/r1/run.tar.gz": 1, "fw/r1/live2/x": 1}


def test_remove_tree_of_a_missing_folder_changes_nothing() -> None:
    """Removing a folder that does not exist is not an error."""
    store = make_store()
    store.put_bytes("fw/r1/a", b"a")
    store.remove_tree("fw/r2")
    assert memory_objects() == {f"{ROOT}/fw/r1/a": b"a"}


def test_remove_tree_on_a_local_store_deletes_the_folder(tmp_path: Path) -> None:
    """On a file:// store the folder goes from disk; the rest stays."""
    store = make_store(local_url(tmp_path / "store"))
    store.put_bytes("fw/r1/live/logs/a.log/seg", b"1")
    store.put_bytes("fw/r1/run.json", b"{}")
    store.remove_tree("fw/r1/live")
    assert files_under(tmp_path / "store") == {"fw/r1/run.json"}
    assert not (tmp_path / "store" / "fw" / "r1" / "live").exists()


# --- segments -----------------------------------------------------------------


def test_encode_segment_names_its_byte_range() -> None:
    """Bytes found at offset 10, 5 long: named 10-15, padded to 15 digits, .gz."""
    name, _ = encode_segment(10, b"hello")
    assert name == "000000000000010-000000000000015.gz"
    match = SEGMENT_RE.fullmatch(name)
    assert match is not None
    assert match.groups() == ("000000000000010", "000000000000015", ".gz")


def test_encode_segment_is_gzip_of_the_data() -> None:
    """The object is gzip that decompresses to the data."""
    data = b'{"i":1}\n' * 500
    _, packed = encode_segment(0, data)
    assert gzip.decompress(packed) == data
    assert len(packed) < len(data)


def test_encode_segment_is_reproducible() -> None:
    """The same data gives the same bytes: no timestamp in the gzip header."""
    _, first = encode_segment(0, b"line\n")
    _, second = encode_segment(0, b"line\n")
    assert first == second
    assert first[4:8] == b"\x00\x00\x00\x00"  # gzip MTIME field


def test_empty_segment_names_an_empty_range() -> None:
    """No data at offset 7: range 7-7, and it decodes to no bytes."""
    name, packed = encode_segment(7, b"")
    assert name == "000000000000007-000000000000007.gz"
    assert decode_segment(name, packed) == b""


def test_decode_segment_round_trips_encode_segment() -> None:
    """decode_segment(encode_segment(...)) gives the original bytes."""
    data = bytes(range(256)) * 64
    name, packed = encode_segment(123, data)
    assert decode_segment(name, packed) == data


def test_decode_segment_without_gz_is_the_bytes_as_stored() -> None:
    """A segment named without .gz is plain: returned unchanged."""
    _, packed = encode_segment(0, b"abc")
    assert decode_segment("000000000000000-000000000000003", packed) == packed


@pytest.mark.parametrize(
    "data",
    [b"not gzip at all", gzip.compress(b"x" * 1000, mtime=0)[:-8], b"\x1f\x8b"],
    ids=["garbage", "truncated", "header-only"],
)
def test_damaged_gz_segment_is_an_upload_error(data: bytes) -> None:
    """A .gz segment that does not decompress: UploadError naming the segment."""
    name = "000000000000000-000000000001000.gz"
    with pytest.raises(UploadError, match=f"^segment '{name}' is damaged: "):
        decode_segment(name, data)


# --- run layout ---------------------------------------------------------------


@pytest.mark.parametrize(
    "rel", ["a", "a/b", "step_001/adapter.log", "a.b/c-d/e_f", "x" * 128]
)
def test_safe_relative_paths(rel: str) -> None:
    """Slash-separated safe names are a safe relative path."""
    assert is_safe_rel(rel)


@pytest.mark.parametrize(
    "rel",
    ["", "/a", "a/", "a//b", "../a", "a/../b", "a/.hidden", ".", "a b", "x" * 129],
)
def test_unsafe_relative_paths(rel: str) -> None:
    """Empty parts, dot-names, traversal, spaces and overlong names are unsafe."""
    assert not is_safe_rel(rel)


@pytest.mark.parametrize(
    ("rel", "expected"),
    [
        ("logs_summary.txt", ("summary", "logs_summary.txt")),
        ("run.tar.gz", ("archive", "run.tar.gz")),
        ("run.tar.zst", ("archive", "run.tar.zst")),
        ("run.tar.gz.sha256", ("sidecar", "run.tar.gz.sha256")),
        ("run.tar.zst.sha256", ("sidecar", "run.tar.zst.sha256")),
        ("logs/run.json", ("logs", "run.json")),
        ("logs/step_001/adapter.log", ("logs", "step_001/adapter.log")),
        (
            "live/logs/step_001/adapter.log/000000000000000-000000000000042.gz",
            ("live", "logs/step_001/adapter.log/000000000000000-000000000000042.gz"),
        ),
        (
            "live/logs/run.log/000000000000042-000000000000084",
            ("live", "logs/run.log/000000000000042-000000000000084"),
        ),
    ],
)
def test_split_run_rel_sorts_the_keys_of_a_run(
    rel: str, expected: tuple[str, str]
) -> None:
    """Summary, archives, sidecars, logs and live segments are told apart."""
    assert split_run_rel(rel) == expected


@pytest.mark.parametrize(
    "rel",
    [
        "",
        "logs",
        "logs/",
        "logs/../run.json",
        "logs/step_001/.hidden",
        "run.tar.bz2",
        "run.tar.bz2.sha256",
        "other.txt",
        "sub/run.tar.gz",
        "live/logs/run.log",
        "live/logs/000000000000000-000000000000001.gz",
        "live/logs/run.log/0-1.gz",
        "live/logs/run.log/000000000000000-000000000000001.zst",
        "live/logs/../x/000000000000000-000000000000001.gz",
        "live/other/run.log/000000000000000-000000000000001.gz",
    ],
)
def test_split_run_rel_rejects_foreign_and_unsafe_keys(rel: str) -> None:
    """Keys outside the run layout, traversal and bad segment names are None."""
    assert split_run_rel(rel) is None


@pytest.mark.parametrize(
    ("root", "names"),
    [
        ("/bkt/runs/fw/r1", ("fw", "r1")),
        ("bkt/runs/fw/r1/", ("fw", "r1")),
        ("r1", ("remote", "r1")),
        ("", ("remote", "run")),
        ("/", ("remote", "run")),
        ("/bkt/fw/.hidden", ("fw", "run")),
        ("/bkt/bad name/r1", ("remote", "r1")),
    ],
)
def test_names_from_path_takes_the_last_two_safe_parts(
    root: str, names: tuple[str, str]
) -> None:
    """framework and run id are the last two parts; unsafe or absent ones default."""
    assert names_from_path(root) == names
