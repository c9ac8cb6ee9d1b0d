"""``runlog archive``, ``verify`` and ``upload``: the hashed archive and its copies."""

from __future__ import annotations

import argparse
import os
import sys
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

from .. import _paths, archive, remote
from .._status import effective_status, read_run_json
from .._text import clean, format_size
from ..archive._archiver import recorded_hash, verify_logs
from ..errors import RunlogError, RunNotFoundError
from ..reading import _runs
from ..remote._fetch import shown_as_url
from ..remote._verify import find_summary
from ..run import archive_run
from ._args import add_command, add_run_arg, count_arg
from ._common import run_dir_of
from ._render import is_terminal


class _Progress:
    """Archive progress on a terminal's stderr, at most ten updates a second."""

    def __init__(self, total_bytes: int) -> None:
        self.total = total_bytes
        self.shown_at = 0.0
        self.drawn = False

    def __call__(self, done_bytes: int, done_files: int) -> None:
        now = time.monotonic()
        if now - self.shown_at < 0.1:
            return
        self.shown_at = now
        share = f" ({100 * done_bytes // self.total}%)" if self.total else ""
        sys.stderr.write(
            f"\rarchiving: {format_size(done_bytes, short=True)} of "
            f"{format_size(self.total, short=True)}"
            f"{share}, {done_files} files\x1b[K"
        )
        sys.stderr.flush()
        self.drawn = True

    def clear(self) -> None:
        if self.drawn:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


def _tree_size(directory: Path) -> int:
    total = 0
    for root, _, names in os.walk(directory):
        for name in names:
            with suppress(FileNotFoundError):  # a file removed while we count
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def _refuse_running(run_dir: Path) -> None:
    """The library's refusal of an open run, in the words of the command line."""
    info = read_run_json(_paths.logs_dir(run_dir))
    if info is not None and effective_status(info) == "running":
        raise RunlogError(
            f"run {str(run_dir)!r} is still running (pid {info.get('pid')!r} on "
            f"{info.get('host')!r}): finish it first, or archive its files as "
            "they are now with `runlog archive --force`"
        )


def _archives_before(run_dir: Path) -> dict[Path, str | None]:
    """Each archive of the run now, with the SHA-256 its sidecar records."""
    found: dict[Path, str | None] = {}
    for name in _paths.ARCHIVE_NAMES.values():
        path = run_dir / name
        if not path.is_file():
            continue
        digest = None
        with suppress(OSError, UnicodeDecodeError):  # no sidecar: hash unknown
            word = _paths.sidecar_file(path).read_text(encoding="ascii").split()[0]
            digest = word if len(word) == 64 else None
        found[path] = digest
    return found


def cmd_archive(args: argparse.Namespace) -> int:
    """
    ``runlog archive``: write the archive and sidecar, refresh the summary.

    A run keeps one archive, the one its summary records: archiving in the
    other format replaces the old archive and its sidecar, and says so,
    with the old hash (see #16).
    """

    run_dir = run_dir_of(args)
    if not args.force:
        _refuse_running(run_dir)
    before = _archives_before(run_dir)
    progress: _Progress | None = None
    if is_terminal(sys.stderr):
        progress = _Progress(_tree_size(_paths.logs_dir(run_dir)))
    try:
        info = archive_run(run_dir, args.format, progress, force=args.force)
    finally:
        if progress is not None:
            progress.clear()
    print(f"archive  {clean(str(info.path))}")
    print(f"sha256   {info.sha256}")
    print(
        f"size     {format_size(info.size_bytes, short=True)} ({info.file_count} files)"
    )
    for old, digest in before.items():
        if old == info.path and digest in (None, info.sha256):
            continue  # the same files give the same bytes
        print(
            f"replaced {clean(old.name)}: a run keeps one archive, the one its "
            "summary records"
        )
        print(f"         (its sha256 was {digest or 'not recorded'})")
    print(f"summary  {clean(str(_paths.summary_file(run_dir)))} (records this hash)")
    return 0


def _shown(args: argparse.Namespace, path: Path) -> str:
    """*path* as the user knows it: a stored run's URL, not its local copy (#17)."""
    copy: tuple[Path, str] | None = getattr(args, "url_copy", None)
    text = str(path) if copy is None else shown_as_url(str(path), *copy)
    return clean(text)


def _summary_of(args: argparse.Namespace) -> Path:
    """The committed summary ``verify --store`` checks: a file, a run dir, an id."""
    target = Path(args.target)
    if target.exists() or not _paths.is_safe_name(args.target):
        return find_summary(target)
    found = sorted(Path(args.runs_dir).glob(f"*/{args.target}*/{_paths.SUMMARY_FILE}"))
    exact = [path for path in found if path.parent.name == args.target]
    if len(exact or found) == 1:
        return (exact or found)[0]
    raise RunNotFoundError(
        f"run {args.target!r}: "
        + ("ambiguous" if found else "no such file, and no summary of that run id")
        + f" under {args.runs_dir!r}"
    )


def _verify_stored(args: argparse.Namespace) -> int:
    check = remote.verify_stored(_summary_of(args), args.store, retries=args.retries)
    print(f"OK  {clean(str(check.summary))}")
    print(f"    archive {clean(check.archive_url)}")
    print(f"    sha256 {check.sha256}")
    print(
        f"    the hash the summary records; {check.file_count} files, "
        f"{format_size(check.size_bytes, short=True)}, match the manifest"
    )
    print("    the summary regenerated from it is byte-identical")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """``runlog verify``: the archive against its manifest, sidecar, summary, logs/."""
    if args.store is not None:
        return _verify_stored(args)
    target = Path(args.target)
    if not target.exists() and _paths.is_safe_name(args.target):
        target = _runs.resolve_run(args.target, Path(args.runs_dir)).run_dir
    path = archive.locate_archive(target)
    info = archive.verify_archive(path)
    compared = verify_logs(path)  # a late writer's records, see #12
    summary_path = _paths.summary_file(path.parent)
    print(f"OK  {_shown(args, path)}")
    print(
        f"    sha256 {info.sha256}, {info.file_count} files, "
        f"{format_size(info.size_bytes, short=True)}"
    )
    print("    matches its manifest and its sidecar", end="")
    if recorded_hash(path) == info.sha256:
        print(f", and the hash recorded in {summary_path.name}")
    else:
        print(f"; {summary_path.name} records no hash for it")
    if compared:
        print(f"    logs/ holds nothing else ({compared} files compared)")
    if info.symlinks:
        shown = ", ".join(
            f"{clean(name)} -> {clean(target)}" for name, target in info.symlinks[:3]
        )
        more = len(info.symlinks) - 3
        print(
            f"    holds {len(info.symlinks)} symlink(s), stored as links, not "
            f"followed: {shown}" + (f" ... and {more} more" if more > 0 else "")
        )
    return 0


def cmd_upload(args: argparse.Namespace) -> int:
    """``runlog upload``: copy a run to object storage and check it there (#8)."""
    run_dir = _runs.resolve_run(args.run, Path(args.runs_dir)).run_dir
    urls = remote.upload_run(run_dir, args.url, retries=args.retries)
    for url in urls:
        print(f"uploaded  {clean(url)}")
    print("verified  size and SHA-256 of each object, re-read from the store")
    return 0


def register(commands: Any) -> None:
    """Add ``archive``, ``verify``, ``upload`` to the ``runlog`` subcommands."""
    archive = add_command(
        commands,
        "archive",
        cmd_archive,
        "write run.tar.gz (or .zst) and its sidecar; refresh the summary",
        "Archives RUN/logs/ into RUN/run.tar.gz (or run.tar.zst) with a "
        "MANIFEST.sha256\nand a `sha256sum -c` sidecar, prints the hash, and "
        "rewrites logs_summary.txt so it\nrecords it. The same files always give "
        "the same bytes.",
        [
            "runlog archive runs/demo/20251020T142345Z-3f9a1c",
            "runlog archive RUN --format zst",
            "runlog archive RUN --force        # a run still running, as it is now",
        ],
    )
    add_run_arg(archive, help_text="a run directory with its logs/, or a run id")
    archive.add_argument(
        "--format",
        choices=("gz", "zst"),
        default="gz",
        help="default: gz; an archive in the other format is replaced (and named)",
    )
    archive.add_argument(
        "--force",
        action="store_true",
        help="archive a run that is still running, its files as they are now",
    )

    verify = add_command(
        commands,
        "verify",
        cmd_verify,
        "check an archive against its manifest, sidecar and summary "
        "(--store: a committed summary against its stored archive)",
        "Re-reads the archive and exits 0 if every member matches MANIFEST.sha256,"
        "\nthe archive matches its .sha256 sidecar, and logs_summary.txt (when it "
        "records\na hash) names the same hash; else exits 1 naming the first "
        "mismatch.\n\n"
        "With --store URL (CI on a fresh clone, where only summaries are in git):"
        "\nfinds the archive the committed summary records in URL/<framework>/"
        "<run_id>/,\nchecks its SHA-256 and manifest, regenerates the summary "
        "from it and exits 1\nunless that is byte-identical to the committed one.",
        [
            "runlog verify runs/demo/20251020T142345Z-3f9a1c",
            "runlog verify runs/demo/20251020T142345Z-3f9a1c/run.tar.gz",
            "runlog verify runs/demo/20251020T142345Z-3f9a1c/logs_summary.txt "
            "--store s3://team-runs/prod",
        ],
    )
    add_run_arg(
        verify,
        help_text="a run directory, its run.tar.gz / run.tar.zst, or a run id; "
        "with --store, a committed logs_summary.txt or the run directory "
        "holding it",
        name="target",
        metavar="SUMMARY_OR_RUN",
    )
    verify.set_defaults(url_arg="target")  # an s3://... RUN is read from a local copy
    verify.add_argument(
        "--store",
        metavar="URL",
        help="check the summary against the run's archive in this store "
        "(where `runlog upload` put it: URL/<framework>/<run_id>/): its SHA-256, "
        "and the summary regenerated from it",
    )
    verify.add_argument(
        "--retries",
        type=count_arg,
        default=remote.DEFAULT_RETRIES,
        metavar="N",
        help=f"with --store: retries per request on transient errors (default: "
        f"{remote.DEFAULT_RETRIES})",
    )

    upload = add_command(
        commands,
        "upload",
        cmd_upload,
        "copy a run to object storage (s3://...) and verify it there",
        "Copies RUN's archive, its sidecar, logs/run.json and logs_summary.txt "
        "(a run\nwithout an archive: every file of logs/) to "
        "URL/<framework>/<run_id>/, re-reads\neach object to check its size "
        "and SHA-256, and retries transient errors.\nNeeds `pip install "
        "'runlog[remote]'`; credentials come from the environment.\n"
        "show, tail, verify and ls accept such URLs too.",
        [
            "runlog upload runs/demo/20251020T142345Z-3f9a1c s3://team-runs/prod",
            "runlog ls s3://team-runs/prod",
            "runlog show s3://team-runs/prod/demo/20251020T142345Z-3f9a1c",
            "runlog verify s3://team-runs/prod/demo/20251020T142345Z-3f9a1c",
        ],
    )
    add_run_arg(upload, help_text="a run directory, or a run id")
    upload.add_argument("url", metavar="URL", help="base URL: s3://bucket/prefix")
    upload.add_argument(
        "--retries",
        type=count_arg,
        default=remote.DEFAULT_RETRIES,
        metavar="N",
        help=f"retries per request on transient errors (default: "
        f"{remote.DEFAULT_RETRIES})",
    )
