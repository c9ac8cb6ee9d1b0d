"""``runlog serve``: a read-only local web app over a runs directory (Starlette)."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import AsyncIterator, Callable, MutableMapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from types import FrameType
from typing import Any, Final

import orjson

from .._status import effective_status, read_run_json
from ..errors import ConfigurationError, RunlogError
from ..reading._follow import Follower
from ..reading._merge import last_records
from ..reading._runs import RunRow
from ..reading._source import RunSource, classify
from ._locations import Lru, RunLocation, run_version
from ._model import RunModel, build_head, build_overview, run_info
from ._records import MAX_PAGE, RecordQuery, RowEncoder, parse_filters
from ._report import render_report, report_data, static_text

try:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response, StreamingResponse
    from starlette.routing import Route
    from starlette.types import ASGIApp, Receive, Scope, Send
except ImportError as exc:  # pragma: no cover - the CLI checks before importing
    raise ConfigurationError(
        "runlog serve needs the extra runlog[web]: pip install 'runlog[web]'"
    ) from exc

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8765
POLL_INTERVAL_S: Final = 0.5
DEFAULT_PAGE: Final = 200
LOCAL_HOSTS: Final = ("127.0.0.1", "localhost", "::1", "[::1]")
PAGE_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'"
)
_READ_METHODS: Final = frozenset(("GET", "HEAD"))
_CACHE_SIZE: Final = 16
_SHUTDOWN_S: Final = 2
_WARM_RUNS: Final = 4  # the newest runs' overviews computed at start
_QUICK_COUNT: Final = 10_000  # records counted past a page before the overview


def _json(value: Any, status: int = 200) -> Response:
    return Response(
        orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS),
        status_code=status,
        media_type="application/json",
    )


def _error(status: int, message: str) -> Response:
    return _json({"error": message}, status)


def _page(kind: str, api: str, title: str) -> Response:
    # the page's values are names checked by _paths (safe characters only)
    body = (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{title}</title>\n"
        '<link rel="icon" href="data:,">\n'
        '<link rel="stylesheet" href="/static/viewer.css">\n'
        '<script src="/static/viewer.js" defer></script>\n'
        "</head>\n"
        f'<body data-page="{kind}" data-api="{api}">\n'
        "<noscript>The runlog viewer needs JavaScript.</noscript>\n"
        "</body>\n</html>\n"
    )
    return Response(body, media_type="text/html; charset=utf-8")


class _Headers:
    """Read-only and locked down: 405 for any method but GET/HEAD, safe headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] not in _READ_METHODS:
            response = PlainTextResponse(
                "read-only: only GET and HEAD",
                405,
                headers={"Allow": "GET, HEAD", "X-Content-Type-Options": "nosniff"},
            )
            await response(scope, receive, send)
            return

        async def send_with_headers(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-content-type-options", b"nosniff"))
                headers.append((b"referrer-policy", b"no-referrer"))
                headers.append((b"x-frame-options", b"DENY"))
                headers.append((b"content-security-policy", PAGE_POLICY.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class _App:
    """The routes' state: where runs are, and caches of overviews and record pages."""

    def __init__(self, runs: RunLocation, poll_interval_s: float) -> None:
        self.runs = runs
        self.poll_interval_s = poll_interval_s
        self.lock = threading.Lock()
        self.overviews: Lru[tuple[Any, ...], dict[str, Any]] = Lru(_CACHE_SIZE)
        self.run_locks: dict[str, threading.Lock] = {}
        self.stopping = threading.Event()  # set when the server shuts down
        self.queries: Lru[tuple[Any, ...], RecordQuery] = Lru(_CACHE_SIZE)

    def source_of(self, request: Request) -> RunSource | None:
        params = request.path_params
        return self.runs.source(str(params["framework"]), str(params["run_id"]))

    # -- pages -----------------------------------------------------------------

    async def index(self, request: Request) -> Response:
        return _page("runs", "/api/runs", "runlog runs")

    async def run_page(self, request: Request) -> Response:
        framework = request.path_params["framework"]
        run_id = request.path_params["run_id"]
        source = await run_in_threadpool(self.source_of, request)
        if source is None:
            return _error(404, "no such run")
        return _page(
            "run", f"/api/runs/{framework}/{run_id}", f"runlog: {framework}/{run_id}"
        )

    async def asset(self, request: Request) -> Response:
        name = request.path_params["name"]
        media = {"viewer.js": "text/javascript", "viewer.css": "text/css"}.get(name)
        if media is None:
            return _error(404, "no such file")
        return Response(static_text(name), media_type=f"{media}; charset=utf-8")

    # -- JSON --------------------------------------------------------------------

    def api_runs(self, request: Request) -> Response:
        rows = []
        for row in self.runs.rows():
            data = row.as_json()
            data.pop("path", None)  # the viewer links by name; paths stay local
            names = self.runs.names(row)
            data["href"] = f"/runs/{names[0]}/{names[1]}" if names else None
            rows.append(data)
        return _json({"runs_dir": self.runs.label, "runs": rows})

    def overview(self, source: RunSource) -> dict[str, Any]:
        """The run's overview, computed once per version of its files."""
        run_key = str(source.run_dir)
        with self.lock:
            run_lock = self.run_locks.setdefault(run_key, threading.Lock())
        # one computation per run at a time: a second request (or the warm-up)
        # waits for the first and takes its result
        with run_lock:
            key = (run_key, run_version(source))
            with self.lock:
                cached = self.overviews.get(key)
            if cached is not None:
                return cached
            # where each file ends before the pass: events go on from there
            ends = {} if source.archive else last_records(source, 0)[1]
            data = build_overview(source)
            data["ends"] = ends
            data["complete"] = True
            with self.lock:
                self.overviews.get_or_make(key, lambda: data)
        return data

    def warm(self, rows: list[RunRow]) -> None:
        """Compute the overviews of the newest finished runs ahead of their pages."""
        for row in rows[:_WARM_RUNS]:
            if row.status == "running" or self.runs.url is not None:
                continue
            names = self.runs.names(row)
            source = self.runs.source(*names) if names else None
            if source is None:
                continue
            try:
                self.overview(source)
            except (RunlogError, OSError):
                # a run that cannot be read says so when its page is asked
                # for; the next runs are still warmed
                continue

    def start_warming(self, rows: list[RunRow] | None = None) -> None:
        """Run :meth:`warm` in a daemon thread (errors are left for the page)."""
        thread = threading.Thread(
            target=self._warm_quietly, args=(rows,), daemon=True, name="runlog-warm"
        )
        thread.start()

    def _warm_quietly(self, rows: list[RunRow] | None) -> None:
        try:
            self.warm(self.runs.rows() if rows is None else rows)
        except (RunlogError, OSError):
            # the runs dir itself cannot be listed: the runs page says so
            return

    def cached_overview(self, source: RunSource) -> dict[str, Any] | None:
        """The run's overview if it is computed for its current files, else None."""
        key = (str(source.run_dir), run_version(source))
        with self.lock:
            return self.overviews.get(key)

    def head(self, source: RunSource) -> dict[str, Any]:
        """The overview if computed, else its cheap part (see ``build_head``)."""
        cached = self.cached_overview(source)
        if cached is not None:
            return cached
        ends = {} if source.archive else last_records(source, 0)[1]
        data = build_head(source)
        data["ends"] = ends
        return data

    def api_run(self, request: Request) -> Response:
        source = self.source_of(request)
        if source is None:
            return _error(404, "no such run")
        part = request.query_params.get("part", "")
        if part not in ("", "head"):
            return _error(400, f"part {part[:100]!r}: use head or nothing")
        # the page draws the head first and asks for the rest after (see #18)
        if part == "head":
            data = dict(self.head(source))
        else:
            data = dict(self.overview(source))
        framework = request.path_params["framework"]
        run_id = request.path_params["run_id"]
        data["links"] = {
            "report": f"/runs/{framework}/{run_id}/report.html",
            "records": f"/api/runs/{framework}/{run_id}/records",
            "events": f"/api/runs/{framework}/{run_id}/events",
            "runs": "/",
        }
        return _json(data)

    def api_records(self, request: Request) -> Response:
        source = self.source_of(request)
        if source is None:
            return _error(404, "no such run")
        query = request.query_params
        try:
            offset = _int_param(query.get("offset"), 0)
            limit = min(_int_param(query.get("limit"), DEFAULT_PAGE), MAX_PAGE)
            filters = parse_filters(
                query.get("step"),
                query.get("component"),
                query.get("level"),
                query.get("q"),
            )
        except RunlogError as exc:
            return _error(400, str(exc))
        key = (str(source.run_dir), run_version(source), filters)
        with self.lock:
            records = self.queries.get_or_make(
                key, lambda: RecordQuery(source, filters)
            )
        # a page never waits for the overview's full pass: without it the
        # count is a bound, exact for a small run (see #18)
        overview = self.cached_overview(source)
        if overview is not None:
            total = overview["records_total"]
            run_id, framework = overview["run"]["run_id"], overview["run"]["framework"]
        else:
            total = None
            framework, run_id = RunModel(source, run_info(source)).names()
        page = records.page(
            offset,
            limit,
            RowEncoder(run_id, framework),
            total=total,
            count_budget=(
                None if total is not None or not filters.is_empty else _QUICK_COUNT
            ),
        )
        data = page.as_json()
        if total is None and filters.is_empty and page.exact:
            total = page.matched
        data["total"] = total
        data["limit"] = limit
        return _json(data)

    def report(self, request: Request) -> Response:
        source = self.source_of(request)
        if source is None:
            return _error(404, "no such run")
        data = report_data(source, max_records=50_000)
        run_id = data["overview"]["run"]["run_id"]
        return Response(
            render_report(data),
            media_type="text/html; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="{run_id}.report.html"'
            },
        )

    async def events(self, request: Request) -> Response:
        source = await run_in_threadpool(self.source_of, request)
        if source is None:
            return _error(404, "no such run")
        try:
            start = _ends_param(request.query_params.get("from"))
        except RunlogError as exc:
            return _error(400, str(exc))
        return StreamingResponse(
            self._stream(request, source, start),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store"},
        )

    async def _stream(
        self, request: Request, source: RunSource, start: dict[str, int] | None
    ) -> AsyncIterator[bytes]:
        running = source.archive is None and await run_in_threadpool(
            _is_running, source
        )
        if running and start is None:
            # fixed before the first line: a record written after the client
            # has read it is always sent
            start = (await run_in_threadpool(last_records, source, 0))[1]
        yield b"retry: 1000\n\n"
        if not running or start is None:
            yield _event("end", {"status": "finished"})
            return
        follower = Follower(source.logs_dir, start=start)
        run = (await run_in_threadpool(self.overview, source))["run"]
        while True:
            entries = await run_in_threadpool(follower.poll)
            if entries:
                encoder = RowEncoder(run["run_id"], run["framework"])
                rows = [encoder.row(entry) for entry in entries]
                yield _event("records", {"strings": encoder.strings, "rows": rows})
                if any(
                    entry.record.get("event") in ("step_start", "step_end", "run_end")
                    for entry in entries
                ):
                    yield _event("overview", {})
            if follower.behind:
                continue
            if not await run_in_threadpool(_is_running, source):
                yield _event("overview", {})
                yield _event("end", {"status": "finished"})
                return
            if self.stopping.is_set() or await request.is_disconnected():
                return
            await asyncio.sleep(self.poll_interval_s)


async def _unreadable(request: Request, exc: Exception) -> Response:
    """A run that cannot be read: its reason as JSON, not a traceback (500)."""
    return _error(500, str(exc))


def _event(name: str, data: Any) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def _is_running(source: RunSource) -> bool:
    try:
        info = read_run_json(source.logs_dir)
    except OSError:
        return False
    return info is not None and effective_status(info, now=datetime.now(UTC)) == (
        "running"
    )


def _int_param(text: str | None, default: int) -> int:
    if text is None or text == "":
        return default
    if not text.isdigit():
        raise RunlogError(f"{text!r}: use an int >= 0")
    return int(text)


def _ends_param(text: str | None) -> dict[str, int] | None:
    if not text:
        return None
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise RunlogError(f"from {text[:100]!r}: not JSON") from None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and classify(k) is not None and type(v) is int and v >= 0
        for k, v in value.items()
    ):
        raise RunlogError(f"from {text[:100]!r}: use {{log file: offset}}")
    return value


def create_app(
    runs_dir_or_url: str | os.PathLike[str],
    *,
    allowed_hosts: Sequence[str] | None = None,
    poll_interval_s: float = POLL_INTERVAL_S,
    warm: bool = True,
) -> Starlette:
    """
    The read-only web viewer of the runs under *runs_dir_or_url* (see docs/VIEWER.md).

    Args:
        runs_dir_or_url: A runs directory, or an object storage URL.
        allowed_hosts: Host header values accepted (default: the local names).
        poll_interval_s: How often a live run's files are polled for events.
        warm: Compute the newest finished runs' overviews when the app starts.

    Raises:
        RunlogError: If the runs directory does not exist.
    """
    runs = RunLocation(runs_dir_or_url)
    app = _App(runs, poll_interval_s)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        if warm:
            app.start_warming()
        try:
            yield
        finally:
            runs.close()

    read = ["GET", "HEAD"]
    routes = [
        Route("/", app.index, methods=read),
        Route("/static/{name}", app.asset, methods=read),
        Route("/api/runs", app.api_runs, methods=read),
        Route("/runs/{framework}/{run_id}", app.run_page, methods=read),
        Route("/runs/{framework}/{run_id}/report.html", app.report, methods=read),
        Route("/api/runs/{framework}/{run_id}", app.api_run, methods=read),
        Route("/api/runs/{framework}/{run_id}/records", app.api_records, methods=read),
        Route("/api/runs/{framework}/{run_id}/events", app.events, methods=read),
    ]
    hosts = list(allowed_hosts) if allowed_hosts is not None else list(LOCAL_HOSTS)
    web_app = Starlette(
        routes=routes,
        exception_handlers={RunlogError: _unreadable},
        middleware=[
            Middleware(_Headers),
            # a web page elsewhere cannot reach this server through a
            # rebound DNS name (see #18)
            Middleware(TrustedHostMiddleware, allowed_hosts=hosts),
        ],
        lifespan=lifespan,
    )
    web_app.state.runlog = app
    return web_app


def bind(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> socket.socket:
    """
    A listening TCP socket on *host*:*port* (port 0: a free one).

    Raises:
        RunlogError: If the address cannot be bound (in use, not local).
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, kind, proto, _name, address = infos[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise RunlogError(f"host {host!r}: {exc.strerror or exc}") from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise RunlogError(
            f"cannot listen on {host!r} port {port!r}: {exc.strerror or exc}"
        ) from exc
    return sock


def hosts_for(host: str) -> list[str]:
    """The Host header values the app accepts when bound to *host*."""
    if host in ("0.0.0.0", "::", ""):
        return ["*"]
    return sorted({*LOCAL_HOSTS, host})


def _config(app: Starlette) -> uvicorn.Config:
    # an open event stream of a live run must not keep Ctrl-C waiting
    return uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=_SHUTDOWN_S,
    )


class _Server(uvicorn.Server):
    """uvicorn's server, telling the app's event streams to end when it stops."""

    def __init__(self, app: Starlette) -> None:
        super().__init__(_config(app))
        self.stopping: threading.Event = app.state.runlog.stopping

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.stopping.set()
        super().handle_exit(sig, frame)

    def stop(self) -> None:
        """Ask the server to exit, as a signal would."""
        self.stopping.set()
        self.should_exit = True


def run_server(app: Starlette, sock: socket.socket) -> None:
    """Serve *app* (from :func:`create_app`) on the listening *sock* until Ctrl-C."""
    _Server(app).run(sockets=[sock])


def start_in_thread(
    app: Starlette, sock: socket.socket
) -> tuple[threading.Thread, Callable[[], None]]:
    """
    Serve *app* on *sock* from a daemon thread; returns it and a stop function.

    For tests and embedding: the stop function asks the server to exit.
    """
    server = _Server(app)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="runlog-serve"
    )
    thread.start()
    return thread, server.stop
