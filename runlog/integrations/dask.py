"""
Dask: wrapped tasks on any worker are recorded in their run and step (runlog[dask]).

``client.register_plugin(RunlogPlugin())`` installs, on every worker, a
taker-over of :func:`runlog.wrap` calls (see #13):

- **direct**: a worker on the run owner's host that sees the run's
  directory writes the task's records into the run's files itself, as any
  process that joins a run does (one ``O_APPEND`` write per record).
- **events**: any other worker (another host, no shared filesystem, or a
  network filesystem where appends from several hosts are not atomic)
  batches the task's records and sends them through Dask's own event
  channel (``Worker.log_event`` on topic ``"runlog"``); the client, the
  run's owner, writes them into the run's files: one writer per file.

Records keep the ``ts``, ``level``, ``component``, ``logger`` and pairs they
were logged with on the worker, plus ``pid``, ``host`` and ``dask_worker``.
"""

from __future__ import annotations

import contextvars
import os
import socket
import threading
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar

import orjson
import structlog.contextvars

from .. import _paths
from .._config import Settings, apply_settings, current_settings
from .._records import LEVEL_NUMBERS, dumps_line
from .._status import read_run_json
from ..combined import format_written
from ..context import LogContext, RunState
from ..errors import ConfigurationError, LogWriteError, RunlogError
from ..handler import get_handler
from ..process import _propagate

try:
    from distributed.diagnostics.plugin import WorkerPlugin
except ImportError as exc:  # pragma: no cover - the extra is installed in CI
    raise ConfigurationError(
        "runlog.dask needs the dask extra: pip install 'runlog[dask]'"
    ) from exc

if TYPE_CHECKING:
    from distributed import Client, Worker

__all__ = [
    "FLUSH_INTERVAL_S",
    "TOPIC",
    "ChannelStats",
    "RunlogPlugin",
    "channel_stats",
    "subscribe",
]

R = TypeVar("R")
Transport = Literal["auto", "events"]

TOPIC: Final = "runlog"
"""The Dask event topic that carries records from workers to the client."""
FLUSH_INTERVAL_S: Final = 0.1
"""At most this long between a record logged on a worker and its sending."""
# A batch is sent once it holds this many records or bytes. The scheduler
# keeps the last distributed.admin.low-level-log-length events (1000) of each
# topic: 64 KiB batches bound that to about 64 MiB (see #13).
BATCH_RECORDS: Final = 256
BATCH_BYTES: Final = 64 * 1024
_TRANSPORTS: Final = ("auto", "events")
_HOST: Final = socket.gethostname()
_MAX_CACHED: Final = 1024
_MAX_OWNED: Final = 4096

# Key-value pairs every record of a task run on a Dask worker carries.
WORKER_KEYS: Final = ("pid", "host", "dask_worker")


# -- worker side ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Route:
    """Where the records of one wrapped call in events mode belong."""

    logs_dir: str
    run_id: str
    framework: str
    step: int | None


# The route of the wrapped call running in this thread or task (events mode).
_ROUTE: Final[contextvars.ContextVar[_Route | None]] = contextvars.ContextVar(
    "runlog_dask_route", default=None
)


class _Channel:
    """
    A worker's outbox: records of wrapped calls, batched per run, sent as events.

    Thread-safe. A batch is sent when it is full, when a wrapped call returns
    (before Dask reports the task done, so the client has written the
    task's records before its future completes), and every
    :data:`FLUSH_INTERVAL_S` from the worker's event loop.
    """

    def __init__(self, worker: Worker, transport: Transport) -> None:
        self.worker = worker
        self.transport = transport
        self.address = str(worker.address)
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, str], list[list[Any]]] = {}
        self._sizes: dict[tuple[str, str], int] = {}
        self._reachable: dict[tuple[str, str], bool] = {}

    def sink(self, record: Mapping[str, Any]) -> None:
        """Extra sink: keep a record of a wrapped call in events mode for sending."""
        route = _ROUTE.get()
        if route is None:
            return
        level = LEVEL_NUMBERS.get(str(record.get("level")), 20)
        if level < current_settings().file_level:
            return
        full = dict(record)
        full["run_id"] = route.run_id
        full["framework"] = route.framework
        full["step"] = route.step
        full.setdefault("pid", os.getpid())
        full.setdefault("host", _HOST)
        full.setdefault("dask_worker", self.address)
        line = dumps_line(full)
        human = format_written(full).encode("utf-8", "backslashreplace") + b"\n"
        key = (route.logs_dir, route.run_id)
        with self._lock:
            batch = self._pending.setdefault(key, [])
            batch.append([str(full.get("component")), route.step, line, human])
            size = self._sizes.get(key, 0) + len(line) + len(human)
            self._sizes[key] = size
            full_batch = len(batch) >= BATCH_RECORDS or size >= BATCH_BYTES
        if full_batch:
            self.flush()

    def flush(self) -> None:
        """Send every pending batch now (from any thread)."""
        with self._lock:
            pending, self._pending = self._pending, {}
            self._sizes.clear()
            # sent under the lock: batches of one run leave in logging order
            for (logs_dir, run_id), records in pending.items():
                self.worker.log_event(
                    TOPIC, {"logs_dir": logs_dir, "run_id": run_id, "records": records}
                )

    def reachable(self, logs_dir: str, run_id: str) -> bool:
        """
        True if this worker may write the run's files itself.

        That is: the directory is here, writable, and its run.json (when it
        has one) names this run and this host. A run on another host reached
        through a network filesystem is not: appends from several hosts to
        one file are not atomic there (see docs/DISTRIBUTED.md).
        """
        if self.transport == "events":
            return False
        key = (logs_dir, run_id)
        known = self._reachable.get(key)
        if known is not None:
            return known
        path = Path(logs_dir)
        found = path.is_dir() and os.access(path, os.W_OK)
        if found:
            try:
                info = read_run_json(path)
            except OSError:
                info = None
                found = False  # unreadable here: let the owner write
            if info is not None:
                found = info.get("run_id") == run_id and info.get("host") in (
                    None,
                    _HOST,
                )
        if len(self._reachable) >= _MAX_CACHED:
            self._reachable.clear()
        self._reachable[key] = found
        return found


class _SettingsLease:
    """
    The run's settings, current in this worker while events-mode calls run.

    Like the run lease of :mod:`runlog.process._propagate`, without the run
    context: the worker may not have the run's directory. Calls carrying
    other settings wait until those running have returned.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._key: str | None = None
        self._count = 0
        self._saved: tuple[Settings, Settings] | None = None

    def acquire(self, text: str) -> None:
        """Make the settings *text* current for one more call."""
        with self._cond:
            while self._key is not None and self._key != text:
                self._cond.wait()
            if not self._count:
                current = current_settings()
                wanted = _propagate._run_settings(text, current)
                self._saved = None
                if wanted != current:
                    apply_settings(wanted)
                    self._saved = (current, current_settings())
                self._key = text
            self._count += 1

    def release(self) -> None:
        """End one call; after the last, put back the worker's settings."""
        with self._cond:
            self._count -= 1
            if self._count:
                return
            saved, self._saved, self._key = self._saved, None, None
            try:
                if saved is not None and current_settings() is saved[1]:
                    apply_settings(saved[0])
            finally:
                self._cond.notify_all()


_CHANNEL: _Channel | None = None
_SETTINGS_LEASE: Final = _SettingsLease()


def _run_task(
    run: _propagate._RunRef, in_run: Callable[[], R], bare: Callable[[], R]
) -> R:
    """The task runner of a worker with the plugin (see :class:`RunlogPlugin`)."""
    channel = _CHANNEL
    if channel is None:
        return in_run()
    # in the copy of the context the wrapped call runs in: this call only
    structlog.contextvars.bind_contextvars(
        pid=os.getpid(), host=_HOST, dask_worker=channel.address
    )
    if channel.reachable(run.logs_dir, run.run_id):
        return in_run()
    _SETTINGS_LEASE.acquire(run.settings)
    try:
        _ROUTE.set(_Route(run.logs_dir, run.run_id, run.framework, run.step))
        try:
            return bare()
        finally:
            _ROUTE.set(None)
            channel.flush()
    finally:
        _SETTINGS_LEASE.release()


def _with_sink(settings: Settings, sink: object, *, present: bool) -> Settings:
    # bound methods: a new object per access, equal for one channel
    sinks = tuple(s for s in settings.extra_sinks if s != sink)
    if present:
        sinks += (sink,)
    return replace(settings, extra_sinks=sinks)


# -- client side ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChannelStats:
    """What this process received through the event channel, in records."""

    received: int
    written: int
    late: int
    """Records of a run of this process that had finished when they arrived."""


class _Receiver:
    """
    Writes records that arrive through the event channel into the run.

    Called on the client's event loop; writes only records of the run
    current in this process (the run's owner). Records of a run this process
    owned that has finished are counted as late and not written: the archive
    is made. Records of runs of other processes (another client on the same
    cluster) are left to them.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.received = 0
        self.written = 0
        self.late = 0
        self._owned: dict[tuple[str, str], None] = {}
        self._listening = False

    def listen(self) -> None:
        """Remember every run this process sets, to tell late records from others'."""
        with self._lock:
            if self._listening:
                return
            self._listening = True
        LogContext.get_instance().add_listener(self._on_context)

    def _on_context(self, old: RunState, new: RunState) -> None:
        if new.logs_dir is not None and new.run_id is not None:
            with self._lock:
                if len(self._owned) >= _MAX_OWNED:
                    self._owned.pop(next(iter(self._owned)))
                self._owned[(str(new.logs_dir), new.run_id)] = None

    def __call__(self, event: tuple[float, Any]) -> None:
        """
        Write one batch of records (a Dask event handler).

        Raises:
            LogWriteError: If a record could not be written, after the
                others were (only under ``on_write_error="raise"``).
            ContextError: If a record names an unsafe component or step.
        """
        message = event[1]
        logs_dir = str(message["logs_dir"])
        run_id = str(message["run_id"])
        records: list[list[Any]] = message["records"]
        handler = get_handler()
        lock = handler.lock
        assert lock is not None  # Handler.createLock() made it
        failure: LogWriteError | None = None
        bad: RunlogError | None = None
        written = 0
        with lock:
            state = handler.context.state
            if state.logs_dir is None or (str(state.logs_dir), state.run_id) != (
                logs_dir,
                run_id,
            ):
                with self._lock:
                    self.received += len(records)
                    if (logs_dir, run_id) in self._owned:
                        self.late += len(records)
                return
            settings = handler.settings
            combined = handler.combined
            for component, step, line, human in records:
                try:
                    path = _paths.route(
                        state.logs_dir,
                        _paths.check_name("component", component),
                        None if step is None else _paths.check_step(step),
                        settings.run_level_components,
                    )
                except RunlogError as exc:
                    bad = bad or exc
                    continue
                try:
                    handler.writer.append(path, line)
                    written += 1
                except LogWriteError as exc:
                    failure = failure or exc
                if combined is not None:
                    try:
                        combined.append(human)
                    except LogWriteError as exc:
                        failure = failure or exc
        with self._lock:
            self.received += len(records)
            self.written += written
        if settings.extra_sinks:
            # the owner exports the workers' records on their behalf (see #13)
            for _, _, line, _ in records:
                record = orjson.loads(line)
                for sink in settings.extra_sinks:
                    sink(record)  # type: ignore[operator]  # sinks are callables
        if failure is not None:
            handler._report(failure)
        if bad is not None:
            raise bad


_RECEIVER: Final = _Receiver()
_subscribed: weakref.WeakSet[Client] = weakref.WeakSet()
_subscribe_lock: Final = threading.Lock()


def subscribe(client: Client) -> None:
    """
    Have *client*'s process write the records workers send for its runs.

    :class:`RunlogPlugin` does this for every client of the process when it
    is made and when it is registered; call it for a client made later.
    Idempotent and thread-safe.
    """
    _RECEIVER.listen()
    with _subscribe_lock:
        if client in _subscribed:
            return
        client.subscribe_topic(TOPIC, _RECEIVER)  # type: ignore[no-untyped-call]  # distributed leaves it unannotated
        _subscribed.add(client)


def _subscribe_all() -> None:
    from distributed import client as client_module

    for client in list(client_module._global_clients.values()):
        if client.status not in ("closing", "closed"):
            subscribe(client)


def channel_stats() -> ChannelStats:
    """Counts of records received through the event channel by this process."""
    receiver = _RECEIVER
    with receiver._lock:
        return ChannelStats(receiver.received, receiver.written, receiver.late)


# -- the plugin ----------------------------------------------------------------


class RunlogPlugin(WorkerPlugin):
    """
    Records of ``runlog.wrap`` tasks land in their run and step, on any worker.

    ``client.register_plugin(RunlogPlugin())`` once per client process (again
    is harmless: the plugin is named ``"runlog"``, the new one replaces the
    old). Tasks submitted as ``client.submit(runlog.wrap(fn), ...)`` inside
    ``run.step(n)`` are recorded in that run and step. A worker that can
    write the run's directory on the owner's host writes directly; others
    send their records through Dask's event channel to the client, which
    writes them (see the module docstring).

    Guaranteed in events mode: every record of a task whose future the
    client saw complete before ``finish()`` is in the run (records are sent
    before Dask reports the task done, on the same ordered streams).
    Not guaranteed: records of a task still running when the run finishes
    (counted as late in :func:`channel_stats`); records a worker had not yet
    sent when it died (at most :data:`FLUSH_INTERVAL_S`, or one batch, per
    task); records sent while the client was disconnected; records of
    threads a task starts without ``runlog.wrap``; stdlib (third-party)
    records on a worker in events mode. A task Dask runs again after a worker
    died logs again.
    """

    name = "runlog"
    idempotent = False

    def __init__(self, transport: Transport = "auto") -> None:
        """
        Args:
            transport: ``"auto"`` (direct writes where the run's directory is
                reachable on the owner's host, events elsewhere) or
                ``"events"`` (always the event channel: for workers on a
                network filesystem shared by several hosts).

        Raises:
            ConfigurationError: For another *transport*.
        """
        if transport not in _TRANSPORTS:
            raise ConfigurationError(
                f"transport {transport!r}: use one of {list(_TRANSPORTS)}"
            )
        self.transport: Transport = transport
        _subscribe_all()

    def __getstate__(self) -> dict[str, Any]:
        # pickled by register_plugin, in the client's process: clients made
        # after this plugin subscribe now, before any task can be submitted
        _subscribe_all()
        return {"transport": self.transport}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.transport = state["transport"]

    def setup(self, worker: Worker) -> None:
        """On the worker: take over wrapped calls; send pending records periodically."""
        global _CHANNEL
        from tornado.ioloop import PeriodicCallback

        channel = _Channel(worker, self.transport)
        old = _CHANNEL
        _CHANNEL = channel
        settings = current_settings()
        if old is not None:
            settings = _with_sink(settings, old.sink, present=False)
        apply_settings(_with_sink(settings, channel.sink, present=True))
        _propagate.set_task_runner(_run_task)
        callback = PeriodicCallback(channel.flush, FLUSH_INTERVAL_S * 1000)
        worker.periodic_callbacks["runlog-flush"] = callback
        callback.start()

    def teardown(self, worker: Worker) -> None:
        """On the worker: send what is pending, then stop taking over calls."""
        global _CHANNEL
        callback = worker.periodic_callbacks.pop("runlog-flush", None)
        if callback is not None:
            callback.stop()
        channel = _CHANNEL
        if channel is None or channel.worker is not worker:
            return
        channel.flush()
        _CHANNEL = None
        _propagate.set_task_runner(None)
        apply_settings(_with_sink(current_settings(), channel.sink, present=False))
