"""``moodstream dashboard``: the streams as a web page (Starlette + uvicorn, the ``dashboard`` extra).

Routes: ``/`` the page, ``/static/*`` its JS and CSS (shipped in the package,
no CDN), ``/events`` Server-Sent Events (a ``snapshot``, then ``update``
batches whose id is the last results / tracked entry ids they hold, and
``fleet`` figures; a page that reconnects with ``Last-Event-ID`` gets what
came after it, or a fresh snapshot when that is older than the server keeps),
``/api/state`` the snapshot as JSON, ``/frame?source=S`` the picture of a
source's latest frame (JPEG, 404 once the frames stream has trimmed it),
``/healthz``.

Safe by default: it binds 127.0.0.1 and then answers only requests whose
Host is a loopback name (no DNS rebinding); any other address needs
``dashboard_token``, which the page takes once as ``/?token=...`` and keeps
in an HttpOnly cookie (or an ``Authorization: Bearer`` header). It only
reads Redis. Every text from a stream is sent as JSON data that the page
inserts with ``textContent``; a Content-Security-Policy allows scripts from
the package's own files only.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
from collections.abc import Callable
from pathlib import Path

import click

from moodstream.options import setting_option, to_stderr
from moodstream.shared.errors import ConfigError
from moodstream.shared.settings import Settings

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
COOKIE = "moodstream_dashboard"
TICK_S = 0.25  # how often an open page is sent what is new
KEEPALIVE_S = 15.0
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "Cache-Control": "no-store"}
MIN_TOKEN_CHARS = 16
PIECE_CHARS = 1 << 16  # /events is written in pieces this large, each once the page took the one before
SEND_TIMEOUT_S = 30.0  # a page that takes no piece for this long is dropped (it reconnects when it reads again)
MAX_CONNECTIONS = 128  # connections at once; past them 503 (each page holds one, /events)


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(settings: Settings) -> None:
    """Another address than a loopback one needs a token; a token is not a placeholder and not short."""
    token = settings.dashboard_token
    if not is_loopback(settings.dashboard_host) and not token:
        raise ConfigError(f"the dashboard would listen on {settings.dashboard_host}, beyond this machine: "
                          "set a token (MOODSTREAM_DASHBOARD_TOKEN or --dashboard-token), or keep --host 127.0.0.1")
    if token and ("CHANGE_ME" in token or len(token) < MIN_TOKEN_CHARS):
        raise ConfigError(f"the dashboard token must be at least {MIN_TOKEN_CHARS} characters and not a placeholder "
                          "(e.g. openssl rand -hex 32)")


def sse(event: str, data: dict | str, event_id: str | None = None) -> str:
    """One event; ``data`` a dict or JSON text already (the model keeps batches as text: one line)."""
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return sse_head(event, event_id) + text + "\n\n"


def sse_head(event: str, event_id: str | None = None) -> str:
    """An event's text up to its data (the snapshot's data is written after it in pieces)."""
    return f"event: {event}\n" + (f"id: {event_id}\n" if event_id else "") + "data: "


class _DroppedPages(logging.Filter):
    """uvicorn's error line for a response left unfinished: the dashboard's own doing for a page it dropped
    (:data:`SEND_TIMEOUT_S`), said at INFO by the dashboard instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "returned without completing response" not in record.getMessage()


def create_app(settings: Settings, feed):
    """The Starlette app over a started :class:`~moodstream.producer.dashboard.feed.Feed`."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware
    from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    class EventStream(StreamingResponse):
        """/events: each text written in pieces of PIECE_CHARS, each once the page took the one before (the
        server's write buffer holds one), and a page that takes none for SEND_TIMEOUT_S is dropped: a page
        that stopped reading held the whole snapshot in the server's memory, each its own copy."""

        async def stream_response(self, send) -> None:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            async for text in self.body_iterator:
                for start in range(0, len(text), PIECE_CHARS):
                    body = text[start:start + PIECE_CHARS].encode()
                    try:
                        await asyncio.wait_for(send({"type": "http.response.body", "body": body, "more_body": True}),
                                               SEND_TIMEOUT_S)
                    except TimeoutError:  # (uvicorn closes the connection; its unread rest goes with it)
                        log.info("dashboard: dropped a page that took nothing for %.0f s", SEND_TIMEOUT_S)
                        return
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    if not any(isinstance(f, _DroppedPages) for f in logging.getLogger("uvicorn.error").filters):
        logging.getLogger("uvicorn.error").addFilter(_DroppedPages())
    model = feed.model
    token = settings.dashboard_token
    page = (STATIC / "index.html").read_bytes()

    def allowed(request) -> bool:
        if not token:
            return True
        given = request.cookies.get(COOKIE) or request.query_params.get("token") or ""
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            given = auth[7:]
        return hmac.compare_digest(given.encode(), token.encode())

    async def index(request):
        if token and request.query_params.get("token"):
            if not allowed(request):
                return PlainTextResponse("wrong token", status_code=401, headers=HEADERS)
            resp = RedirectResponse("/", status_code=303, headers=HEADERS)  # the token leaves the address bar
            resp.set_cookie(COOKIE, token, httponly=True, samesite="strict")
            return resp
        if not allowed(request):
            return PlainTextResponse("this dashboard needs its token: open /?token=...", status_code=401,
                                     headers=HEADERS)
        return Response(page, media_type="text/html; charset=utf-8", headers=HEADERS)

    async def state(request):
        return JSONResponse(model.snapshot(), headers=HEADERS)

    def frame(request):  # sync: Starlette runs it in its thread pool (one short Redis script)
        source = request.query_params.get("source", "")
        jpeg, note = feed.frame_jpeg(source)
        if jpeg is None:
            return JSONResponse({"error": note}, status_code=404, headers=HEADERS)
        return Response(jpeg, media_type="image/jpeg", headers=HEADERS)

    async def events(request):
        seq = model.seq_of(request.headers.get("last-event-id"))

        async def stream():
            nonlocal seq
            yield "retry: 2000\n\n"
            fleet_seq, idle = -1, 0.0
            while True:
                batches = model.since(seq) if seq is not None else None
                if batches is None:  # the snapshot, serialised once for all pages, read here piece by piece
                    snap_seq, snap_id, size = model.snapshot_text()
                    yield sse_head("snapshot", snap_id)
                    for start in range(0, size, PIECE_CHARS):
                        piece = model.snapshot_piece(snap_seq, start, PIECE_CHARS)
                        if piece is None:  # dropped while this page read it slowly: it reconnects for a newer one
                            return
                        yield piece
                    yield "\n\n"
                    seq = snap_seq
                    fleet_seq = -1
                else:
                    for s, bid, batch in batches:
                        yield sse("update", batch, bid)
                        seq = s
                f_seq, fleet, redis_state = model.status()
                if f_seq != fleet_seq:
                    yield sse("fleet", {"fleet": fleet, "redis": redis_state})
                    fleet_seq = f_seq
                idle = 0.0 if batches else idle + TICK_S
                if idle >= KEEPALIVE_S:
                    yield ": keep-alive\n\n"
                    idle = 0.0
                if await request.is_disconnected():
                    return
                await asyncio.sleep(TICK_S)

        return EventStream(stream(), media_type="text/event-stream", headers={**HEADERS, "X-Accel-Buffering": "no"})

    async def healthz(request):
        return PlainTextResponse("ok")

    class Guard:
        """Token check on every route but /healthz; security headers on every answer."""

        def __init__(self, app):
            self.app = app

        async def __call__(self, scope, receive, send):
            from starlette.requests import Request

            if scope["type"] == "http" and scope["path"] not in ("/", "/healthz") and not allowed(Request(scope)):
                await PlainTextResponse("token required", status_code=401, headers=HEADERS)(scope, receive, send)
                return
            await self.app(scope, receive, send)

    middleware = [Middleware(Guard)]
    if is_loopback(settings.dashboard_host):  # a rebound DNS name must not reach a loopback-only page
        own = settings.dashboard_host.strip("[]")  # 127.0.0.2 is loopback too: answered 'Invalid host header'
        hosts = {"localhost", "127.0.0.1", "[::1]", "::1", own, f"[{own}]" if ":" in own else own}
        middleware.insert(0, Middleware(TrustedHostMiddleware, allowed_hosts=sorted(hosts)))
    routes = [Route("/", index), Route("/api/state", state), Route("/frame", frame), Route("/events", events),
              Route("/healthz", healthz), Mount("/static", StaticFiles(directory=STATIC), name="static")]
    return Starlette(routes=routes, middleware=middleware)


class Dashboard:
    """The feed and the web server, in threads: ``Dashboard(settings).start()``; ``.url``; ``.stop()``."""

    def __init__(self, settings: Settings, streams: dict[str, str] | None = None,
                 notice: Callable[[str], None] | None = None):
        """``notice``: told once where Redis refuses connections and is waited for (the command's
        stderr line; see :func:`shared.transport.check_connection`)."""
        try:
            import uvicorn
        except ImportError:
            raise ConfigError("the dashboard needs the 'dashboard' extra: pip install 'moodstream[dashboard]'") from None
        from moodstream.producer.dashboard.feed import Feed
        from moodstream.shared.transport import check_connection

        check_exposure(settings)
        self.settings = settings
        self.feed = Feed(settings, streams=streams)
        check_connection(self.feed.client, settings.redis_url, settings.redis_wait_s, notice=notice)
        config = uvicorn.Config(create_app(settings, self.feed), host=settings.dashboard_host,
                                port=settings.dashboard_port, log_level="warning", access_log=False,
                                timeout_graceful_shutdown=1, limit_concurrency=MAX_CONNECTIONS)
        self.server = uvicorn.Server(config)
        self.server.install_signal_handlers = lambda: None  # the command's own handlers (or up's) stop it
        self._thread = None

    @property
    def url(self) -> str:
        host = self.settings.dashboard_host
        host = f"[{host}]" if ":" in host else host
        port = self.settings.dashboard_port
        if self.server.started and self.server.servers:
            port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://{host}:{port}/"

    def _bind(self):
        """The listening socket, bound here: a taken port is our one line of error (uvicorn binding
        it itself logged its own error line first)."""
        import errno
        import socket

        host, port = self.settings.dashboard_host, self.settings.dashboard_port
        try:
            family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError as exc:
            raise ConfigError(f"the dashboard could not listen on {host}:{port}: {exc.strerror or exc}") from None
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            why = "in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
            raise ConfigError(f"the dashboard could not listen on {host}:{port}: {why}") from None
        return sock

    def start(self, timeout_s: float = 20.0) -> Dashboard:
        import threading
        import time

        sock = self._bind()
        self.feed.start()
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, name="dashboard-http",
                                        daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.feed.stop()
                sock.close()
                raise ConfigError(f"the dashboard could not listen on {self.settings.dashboard_host}:"
                                  f"{self.settings.dashboard_port} (its server did not start)")
            time.sleep(0.05)
        return self

    def wait(self) -> None:
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(0.5)

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.feed.stop()


@click.command()
@setting_option("dashboard_port", "--port", type=click.IntRange(0, 65535))
@setting_option("dashboard_host", "--host")
@setting_option("dashboard_token")
@setting_option("redis_url")
@setting_option("prefix")
def dashboard(**flags):
    """Serve a live web page over the streams: sources, people, fleet.

    Reads the results, tracked and summaries streams with plain XREAD (no
    consumer group: it takes no work and changes nothing) and pushes what
    is new to the page with Server-Sent Events. Open the printed URL; Ctrl-C
    stops it. Needs the 'dashboard' extra.
    """
    from moodstream.shared.errors import MoodstreamError
    from moodstream.shared.stop_signals import handling

    try:
        settings = Settings.from_env(**flags)
        board = Dashboard(settings, notice=to_stderr).start()
    except MoodstreamError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"dashboard: {board.url} (prefix {settings.prefix!r}; Ctrl-C stops it)", err=True)

    def on_signal(signum, frame):
        board.server.should_exit = True

    with handling(on_signal):
        board.wait()
    board.feed.stop()
