"""start_run: claim the run directory, write run.json, log run_start."""

from __future__ import annotations

import contextvars
import os
import secrets
import socket
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import orjson

from .. import _paths
from .._config import apply_settings, check_interval, current_settings
from .._files import as_write_error
from .._records import ORCHESTRATOR, REDACTED, Redactor, dumps_line, safe_text
from .._status import parse_time, read_run_json, status_reason
from ..capture import check_mode, start_capture
from ..context import LogContext
from ..errors import ConfigurationError, ContextError
from ..loggers import lifecycle_logger
from ..process import _env
from ._run import Run, _redactor, forget, open_runs, remember

ARCHIVE_FORMATS: Final = ("gz", "zst")
_RUN_ID_TRIES: Final = 100


def new_run_id(now: datetime | None = None) -> str:
    """A sortable run id: UTC time and a random suffix, ``20251020T142345Z-3f9a1c``."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{moment:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def redact_argv(argv: Iterable[str], redactor: Redactor) -> list[str]:
    """
    *argv* with credential-looking option values replaced by ``***``.

    ``--api-key=VALUE`` and ``--api-key VALUE`` (any option whose name the
    redactor treats as a secret key) lose their value; remembered secrets are
    scrubbed from every argument.
    """
    out: list[str] = []
    hide_next = False
    for raw in argv:
        arg = safe_text(redactor.scrub_text(str(raw)))
        if hide_next:
            hide_next = False
            if not arg.startswith("-"):
                out.append(REDACTED)
                continue
        if arg.startswith("-"):
            name, equals, _ = arg.lstrip("-").partition("=")
            if name and redactor.is_secret_key(name):
                if equals:
                    arg = f"{arg.partition('=')[0]}={REDACTED}"
                else:
                    hide_next = True
        out.append(arg)
    return out


def _json_safe(value: Mapping[str, Any]) -> dict[str, Any]:
    # One pass through the record serializer gives plain JSON types (its
    # fallbacks for sets, models, bytes, cycles...), so run.json never fails.
    data = orjson.loads(dumps_line(dict(value)))
    assert isinstance(data, dict)
    return data


def _attempts_so_far(logs_dir: Path) -> dict[int, int]:
    """The highest ``attempt`` of every step's ``step_start`` already on disk."""
    counts: dict[int, int] = {}
    paths = [logs_dir / f"{ORCHESTRATOR}.log"]
    paths += sorted(logs_dir.glob(f"step_*/{ORCHESTRATOR}.log"))
    for path in paths:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise as_write_error(exc, path) from exc
        for line in data.splitlines():
            if b'"step_start"' not in line:
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue  # the torn last line of a killed run: that attempt is lost
            step, attempt = record.get("step"), record.get("attempt")
            if (
                record.get("event") == "step_start"
                and type(step) is int
                and type(attempt) is int
            ):
                counts[step] = max(counts.get(step, 0), attempt)
    return counts


def _claim_logs_dir(
    runs_dir: Path, framework: str, run_id: str | None, resume: bool
) -> tuple[str, Path, bool]:
    """Create the run's ``logs/`` (or find it on resume): run_id, run_dir, existed."""
    candidates: Iterable[str] = (
        [run_id] if run_id is not None else (new_run_id() for _ in range(_RUN_ID_TRIES))
    )
    for candidate in candidates:
        run_dir = _paths.run_dir(runs_dir, framework, candidate)
        logs = _paths.logs_dir(run_dir)
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            logs.mkdir()
        except FileExistsError:
            if run_id is None:
                continue  # a generated id taken in the same second: draw again
            if not resume:
                raise ContextError(
                    f"run {run_id!r} already exists in {str(run_dir)!r}: "
                    "use another run_id, or resume=True to continue it"
                ) from None
            if not logs.is_dir():
                raise ContextError(
                    f"run {run_id!r}: {str(logs)!r} exists and is not a directory"
                ) from None
            return candidate, run_dir, True
        except OSError as exc:
            raise as_write_error(exc, logs) from exc
        return candidate, run_dir, False
    raise ContextError(
        f"no free run id in {str(runs_dir / framework)!r} after {_RUN_ID_TRIES} tries"
    )


def start_run(
    framework: str,
    run_id: str | None = None,
    runs_dir: str | os.PathLike[str] = "runs",
    metadata: Mapping[str, Any] | None = None,
    *,
    archive: bool = True,
    archive_format: str = "gz",
    resume: bool = False,
    heartbeat_interval_s: float | None = None,
    upload_to: str | None = None,
    capture: str = "python",
) -> Run:
    """
    Start a run: ``runs_dir/<framework>/<run_id>/logs/``, run.json, ``run_start``.

    Creates the directories, writes ``logs/run.json`` (status ``running``),
    sets the run context (so every logger, thread and child process writes
    into the run), logs ``run_start`` and starts the heartbeat thread. When
    called in the main thread of a program that has no SIGTERM handler,
    SIGTERM raises KeyboardInterrupt until the run is finished, so steps and
    the run end ``interrupted``. A run left open at interpreter exit is
    finished by an atexit hook as ``failed`` with reason ``not finished``.

    Args:
        framework: Safe name of the framework (one path segment).
        run_id: Safe name of the run; None generates a sortable unique id
            (``20251020T142345Z-3f9a1c``) that never collides with an
            existing run directory.
        runs_dir: The directory holding ``<framework>/<run_id>/``.
        metadata: JSON-able facts about the run (``model``, ``dataset``...),
            written to run.json with credential-looking keys redacted.
        archive: Whether :meth:`Run.finish` archives ``logs/``.
        archive_format: ``"gz"`` (``run.tar.gz``) or ``"zst"`` (``run.tar.zst``).
        resume: Continue an existing run directory that is not running any
            more (crashed, failed, interrupted): records append to its files,
            step attempts continue counting, ``started_at`` is kept and
            ``resumes`` counts up. Without it an existing run is refused.
        heartbeat_interval_s: Seconds between heartbeats; None uses
            ``configure(heartbeat_interval_s=...)`` (default 30).
        upload_to: A URL (``s3://bucket/prefix``) the run is copied to by
            ``runlog.remote.attach_uploader``; needs the ``remote`` extra
            (``pip install 'runlog[remote]'``).
        capture: What the run records of the output printed while it is
            open, as records of component ``stdout``/``stderr``: ``"none"``;
            ``"python"`` (the default) tees ``sys.stdout``/``sys.stderr``,
            each line in the step of the thread or task that printed it;
            ``"fd"`` also captures descriptors 1 and 2 (C extensions,
            ``os.write``, inheriting subprocesses), attributed to the step
            last entered in the process. Children that join the run capture
            the same way.

    Returns:
        The open :class:`Run`.

    Raises:
        ContextError: For a bad framework or run_id, an existing run without
            *resume*, a run still running, or another run still open here.
        ConfigurationError: For a bad archive_format, heartbeat interval,
            metadata, upload_to or capture, when the ``remote`` extra is
            missing, or for ``capture="fd"`` where descriptor 1 or 2 does not
            exist.
        LogWriteError: If the directories or run.json cannot be written.
    """
    _paths.check_name("framework", framework)
    if run_id is not None:
        _paths.check_name("run_id", run_id)
    if archive_format not in ARCHIVE_FORMATS:
        raise ConfigurationError(
            f"archive_format {archive_format!r}: use one of {list(ARCHIVE_FORMATS)}"
        )
    interval = check_interval(
        "heartbeat_interval_s",
        current_settings().heartbeat_interval_s
        if heartbeat_interval_s is None
        else heartbeat_interval_s,
    )
    if metadata is not None and not isinstance(metadata, Mapping):
        raise ConfigurationError(f"metadata {metadata!r}: use a mapping (a dict)")
    attach_uploader = _uploader(upload_to)
    check_mode(capture)
    if capture == "fd":
        _check_descriptors()
    context = LogContext.get_instance()
    for other in open_runs():
        if context.logs_dir == other.logs_dir:
            raise ContextError(
                f"run {other.run_id!r} is still open: finish it before "
                "starting another run in this process"
            )
    base = Path(runs_dir).absolute()
    redactor = _redactor()
    clean_metadata = redactor.redact_value(_json_safe(metadata or {}))
    chosen_id, run_dir, existed = _claim_logs_dir(base, framework, run_id, resume)
    logs = _paths.logs_dir(run_dir)
    started_at = datetime.now(UTC)
    resumes, previous_duration = 0, 0.0
    previous_status: str | None = None
    if existed:
        old = read_run_json(logs) or {}
        previous_status = status_reason(old)[0] if old else None
        if previous_status == "running":
            raise ContextError(
                f"run {chosen_id!r} is still running (pid {old.get('pid')!r} "
                f"on {old.get('host')!r}); it can be resumed once it has ended"
            )
        started_at = parse_time(old.get("started_at")) or started_at
        old_resumes, old_duration = old.get("resumes"), old.get("duration_s")
        resumes = (old_resumes if type(old_resumes) is int else 0) + 1
        if isinstance(old_duration, (int, float)) and not isinstance(
            old_duration, bool
        ):
            previous_duration = float(old_duration)
    run = Run(
        run_id=chosen_id,
        framework=framework,
        run_dir=run_dir,
        metadata=clean_metadata,
        archive=bool(archive),
        archive_format=archive_format,
        heartbeat_interval_s=interval,
        upload_to=upload_to,
        argv=redact_argv(sys.argv, redactor),
        started_at=started_at,
        resumes=resumes,
        previous_duration_s=previous_duration,
    )
    context.set_run_context(chosen_id, framework, logs)
    # this process owns the run now, even if it adopted another from its parent
    os.environ[_env.OWNER_PID] = str(os.getpid())
    if existed:
        context.seed_attempts(_attempts_so_far(logs))
    fields: dict[str, Any] = {
        "pid": run.pid,
        "host": socket.gethostname(),
        "metadata": clean_metadata,
    }
    if existed:
        fields["resumes"] = resumes
        fields["previous_status"] = previous_status
    remember(run)
    try:
        with run._json_lock:
            run._write_json()
        contextvars.Context().run(lifecycle_logger().info, "run_start", **fields)
    except BaseException:
        # nothing to finish: leave the directory as it is and free the context
        forget(run)
        context.clear_run_context()
        raise
    run._start_heartbeat()
    run._term.install()
    try:
        if current_settings().capture != capture:
            # children that join the run capture the same way (see #15)
            apply_settings(replace(current_settings(), capture=capture))
        run._capture = start_capture(capture)
    except BaseException as exc:
        run.finish("failed", reason="output capture could not start", error=exc)
        raise
    if attach_uploader is not None and upload_to is not None:
        try:
            attach_uploader(run, upload_to)
        except BaseException as exc:
            run.finish("failed", reason="the uploader could not be attached", error=exc)
            raise
    return run


def _check_descriptors() -> None:
    for fd in (1, 2):
        try:
            os.fstat(fd)
        except OSError as exc:
            raise ConfigurationError(
                f"capture 'fd': file descriptor {fd} does not exist here "
                f"({exc.strerror}); use capture='python'"
            ) from exc


def _uploader(upload_to: object) -> Callable[[Run, str], object] | None:
    if upload_to is None:
        return None
    if not isinstance(upload_to, str) or not upload_to:
        raise ConfigurationError(f"upload_to {upload_to!r}: use a URL string")
    from .. import remote  # the remote extra's code, only for runs that upload

    remote.check_url(upload_to)  # fsspec and the URL's package, before any mkdir
    return remote.attach_uploader
