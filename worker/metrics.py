"""Prometheus metrics and health endpoints of one worker (no torch here).

:class:`WorkerMetrics` holds the figures, in its own ``CollectorRegistry`` (so
several workers can live in one process, as in the tests);
:class:`MetricsServer` serves them over HTTP in a daemon thread::

    GET /metrics   Prometheus text (moodstream_frames_total{outcome}, ...)
    GET /healthz   200 while the loop turned within liveness_timeout_s, else 503 (liveness probe)
    GET /readyz    200 once set_ready(True) and the last Redis check went through, else 503 + why (readiness)

The worker calls, from its loop: ``loop_tick()`` on every turn (also while it
backs off from a Redis error: restarting the pod would not bring Redis back),
``redis_check(ok, why)`` after Redis answered or failed, ``batch(size)`` when
a batch starts and ``batch_done()`` when it is published, ``frame_done(outcome)``
once per entry finished (``"ok"`` or the error reason; the same entries as
``Worker.served``), ``dead_lettered(reason)``, ``faces(n)``,
``stage(name, seconds)``, ``reclaimed(n)``; and once at start ``set_info(...)``
and ``set_ready(True)``.

Stage latencies are ONE histogram, ``moodstream_stage_seconds{stage}``, not
one per stage: the stages share a unit and a range (a millisecond decode to a
many-second queue wait under backlog), so one bucket list serves all, and one
family lets a dashboard plot every stage with a single
``histogram_quantile(0.99, sum by (le, stage) (rate(...[5m])))``. The stage
label takes only the five names in :data:`STAGES`, so its cardinality is fixed.

Label values never carry secrets: outcome, reason and stage must be short
lower-case tokens (anything else is counted as ``other``), and ``set_info``
refuses a value that looks like a URL or holds credentials (``://``, ``@``).
"""

from __future__ import annotations

import errno
import logging
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest

from moodstream.shared.errors import ConfigError

log = logging.getLogger(__name__)

STAGES = ("queue_wait", "decode", "detect", "classify", "end_to_end")
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
# seconds: 1 ms .. 60 s (decode is milliseconds, queue wait under a backlog is seconds)
STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
OTHER = "other"

_TOKEN = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_INFO_KEY = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://\S*")
_CREDENTIALS = re.compile(r"[^\s/:@]*:[^\s/@]+@")


def scrub(text: str) -> str:
    """``text`` with URLs and ``user:password@`` parts replaced, for bodies and logs."""
    return _CREDENTIALS.sub("<credentials>@", _URL.sub("<url>", text))


INFO_MAX_CHARS = 128


def info_refusal(value: str) -> str | None:
    """Why an info label's value is refused (None: it is not): the labels are scraped by anyone who can
    reach the metrics port, so no URL or credentials, and only short printable text."""
    if "://" in value or "@" in value:
        return "it looks like a URL or credentials"
    if not value.isprintable():
        return "it holds a control character"
    if len(value) > INFO_MAX_CHARS:
        return f"it is over {INFO_MAX_CHARS} characters"
    return None


class WorkerMetrics:
    """The figures of one worker, in their own registry (``.registry``)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self._frames = Counter("moodstream_frames", "Entries the worker finished (a result or a dead letter), "
                               "by outcome: ok, or the error reason.", ["outcome"], registry=r)
        self._dead = Counter("moodstream_dead_letters", "Entries written to the dead-letter stream, by reason.",
                             ["reason"], registry=r)
        self._faces = Counter("moodstream_faces", "Faces found in the frames served.", registry=r)
        self._batch = Histogram("moodstream_batch_size", "Frames per batch served.", buckets=BATCH_BUCKETS,
                                registry=r)
        self._stage = Histogram("moodstream_stage_seconds", "Latency per stage: queue_wait (enqueued to batch "
                                "start), decode, detect, classify (per batch), end_to_end (enqueued to published).",
                                ["stage"], buckets=STAGE_BUCKETS, registry=r)
        self._reclaimed = Counter("moodstream_reclaimed", "Entries reclaimed (XAUTOCLAIM) from workers that died "
                                  "or hang.", registry=r)
        self._in_progress = Gauge("moodstream_batch_in_progress", "Frames in the batch being served (0 between "
                                  "batches).", registry=r)
        self._info = Info("moodstream_worker", "This worker: device, backend, model version, name.", registry=r)
        self._last_loop = Gauge("moodstream_last_loop_timestamp_seconds", "Unix time of the worker loop's last "
                                "turn.", registry=r)
        self._ready = Gauge("moodstream_ready", "1 while the worker is ready (model loaded, Redis answering).",
                            registry=r)
        self._frames.labels("ok")  # exported as 0 before the first frame
        for s in STAGES:
            self._stage.labels(s)
        self._lock = threading.Lock()
        self._unknown_stages: set[str] = set()
        self._loop_at = time.monotonic()  # liveness counts from creation until the first tick
        self._model_ready, self._ready_why = False, "starting"
        self._redis_ok, self._redis_why = True, ""
        # running totals for interval_figures() (prometheus counters are not meant to be read back)
        self._totals = {"frames": 0, "batches": 0, "batch_frames": 0, "dead": 0, "wait_s": 0.0, "waits": 0}
        self._last_totals, self._last_figures_at = dict(self._totals), time.monotonic()

    # --- what the worker calls -----------------------------------------------------

    def frame_done(self, outcome: str) -> None:
        """One entry finished: ``"ok"``, or the error reason it was answered / dead-lettered with."""
        self._frames.labels(_token(outcome, "outcome")).inc()
        with self._lock:
            self._totals["frames"] += 1

    def dead_lettered(self, reason: str, n: int = 1) -> None:
        self._dead.labels(_token(reason, "reason")).inc(n)
        with self._lock:
            self._totals["dead"] += n

    def faces(self, n: int) -> None:
        self._faces.inc(n)

    def batch(self, size: int) -> None:
        """A batch of ``size`` frames starts (histogram + the in-progress gauge)."""
        self._batch.observe(size)
        self._in_progress.set(size)
        with self._lock:
            self._totals["batches"] += 1
            self._totals["batch_frames"] += size

    def batch_done(self) -> None:
        self._in_progress.set(0)

    def stage(self, name: str, seconds: float) -> None:
        """One observation of a stage in :data:`STAGES`; another name is not recorded (warned once):
        a new timing key in the pipeline must not crash the worker nor add label values."""
        if name not in STAGES:
            if name not in self._unknown_stages:
                self._unknown_stages.add(name)
                log.warning("worker metrics: stage %r is not one of %s; not recorded", scrub(str(name))[:40],
                            ", ".join(STAGES))
            return
        self._stage.labels(name).observe(max(0.0, seconds))
        if name == "queue_wait":
            with self._lock:
                self._totals["wait_s"] += max(0.0, seconds)
                self._totals["waits"] += 1

    def reclaimed(self, n: int) -> None:
        self._reclaimed.inc(n)

    def set_info(self, **labels: str) -> None:
        """E.g. ``set_info(device="cuda:0", backend="torch", model_version=..., worker=name)``.

        Refuses (ValueError) a value that holds a URL or credentials, or is not
        printable text of at most 128 characters: info labels are scraped by
        anyone who can reach the port.
        """
        clean = {}
        for key, value in labels.items():
            value = str(value)
            if not _INFO_KEY.match(key):
                raise ValueError(f"info label name {key!r} must be a short lower-case token")
            if why := info_refusal(value):
                raise ValueError(f"info label {key!r} refused: {why}")
            clean[key] = value
        self._info.info(clean)

    def loop_tick(self) -> None:
        self._loop_at = time.monotonic()
        self._last_loop.set(time.time())

    def set_ready(self, ready: bool, why: str = "") -> None:
        """Model loaded and the worker set up (True), or not, with the reason for /readyz."""
        self._model_ready, self._ready_why = ready, why
        self._ready.set(1 if self.ready()[0] else 0)

    def redis_check(self, ok: bool, why: str = "") -> None:
        """The outcome of the worker's last Redis round trip (``why``: the error)."""
        self._redis_ok, self._redis_why = ok, why
        self._ready.set(1 if self.ready()[0] else 0)

    # --- what the probes and the stats line read -----------------------------------

    def live(self, timeout_s: float) -> tuple[bool, str]:
        age = time.monotonic() - self._loop_at
        if age <= timeout_s:
            return True, f"loop turned {age:.1f}s ago"
        return False, f"loop has not turned for {age:.1f}s (limit {timeout_s:g}s)"

    def ready(self) -> tuple[bool, str]:
        if not self._model_ready:
            return False, scrub(self._ready_why or "not ready")
        if not self._redis_ok:
            return False, "redis unreachable: " + scrub(self._redis_why or "last call failed")
        return True, "ready"

    def interval_figures(self) -> dict:
        """Figures since the previous call (or creation): for the worker's periodic stats line."""
        now = time.monotonic()
        with self._lock:
            cur, prev = dict(self._totals), self._last_totals
            self._last_totals = cur
        span = max(1e-9, now - self._last_figures_at)
        self._last_figures_at = now
        d = {k: cur[k] - prev[k] for k in cur}
        return {"seconds": round(span, 1), "frames": d["frames"], "frames_per_s": round(d["frames"] / span, 2),
                "batches": d["batches"],
                "mean_batch": round(d["batch_frames"] / d["batches"], 1) if d["batches"] else 0.0,
                "queue_wait_ms_mean": round(1000 * d["wait_s"] / d["waits"], 1) if d["waits"] else 0.0,
                "dead_lettered": d["dead"]}


def format_figures(f: dict) -> str:
    """One line from :meth:`WorkerMetrics.interval_figures`."""
    return (f"{f['frames_per_s']:.2f} frames/s over {f['seconds']:.0f}s: {f['frames']} frames in {f['batches']} "
            f"batches (mean {f['mean_batch']:.1f}), queue wait mean {f['queue_wait_ms_mean']:.0f} ms, "
            f"{f['dead_lettered']} dead-lettered")


def _token(value: str, what: str) -> str:
    if isinstance(value, str) and _TOKEN.match(value):
        return value
    log.warning("worker metrics: %s label %r is not a short lower-case token; counted as %r",
                what, scrub(str(value))[:40], OTHER)
    return OTHER


# --- HTTP -------------------------------------------------------------------------------


# Probes and scrapes are a few short requests: more connections at once than this are
# closed unanswered, and one that sends nothing is closed after the idle timeout, so idle
# or slow clients cannot hold a thread each (400 idle connections held 400 threads for ever).
# Clients that keep reconnecting can still take the slots: in Kubernetes the worker's
# NetworkPolicy (deploy/k8s/base/worker.yaml) lets only Prometheus's namespace in.
MAX_CONNECTIONS = 16
IDLE_TIMEOUT_S = 5.0


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 64  # the listen backlog: a burst of probes waits there instead of SYN retries
    metrics: WorkerMetrics
    liveness_timeout_s: float
    slots: threading.BoundedSemaphore

    def process_request(self, request, client_address) -> None:
        if not self.slots.acquire(blocking=False):
            log.debug("metrics http: %d connections already open; closing one from %s", MAX_CONNECTIONS,
                      client_address[0])
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


class _Deadline:
    """The request's reader, every read given only the time left until ``deadline``
    (TimeoutError past it: http.server then closes the connection)."""

    def __init__(self, raw, sock: socket.socket, deadline: float):
        self._raw, self._sock, self._deadline = raw, sock, deadline

    def _left(self) -> None:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request took longer than the timeout in all")
        self._sock.settimeout(left)

    def readline(self, size: int = -1) -> bytes:
        # read by read, each given the time left: a line read whole gave each socket read the time
        # left when the line began, and a byte every 2 s inside one header line held the slot for ever
        out = bytearray()
        limit = size if size is not None and size >= 0 else 1 << 30
        while len(out) < limit:
            self._left()
            byte = self._raw.read(1)  # from the buffer; a socket read when it is empty
            if not byte:
                break
            out += byte
            if byte == b"\n":
                break
        return bytes(out)

    def read(self, size: int = -1) -> bytes:
        self._left()
        return self._raw.read(size)

    def close(self) -> None:
        self._raw.close()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = IDLE_TIMEOUT_S  # socket timeout: a client that sends nothing is dropped (the class default)
    ALLOWED = "GET, HEAD"

    def setup(self) -> None:
        super().setup()
        # the timeout bounds each read; the deadline bounds the whole request: a client dripping a
        # header line every few seconds held its slot for minutes, and 16 of them every liveness probe
        self.rfile = _Deadline(self.rfile, self.connection, time.monotonic() + self.timeout)

    def do_HEAD(self) -> None:  # noqa: N802: uptime checkers ask HEAD (it was 501)
        self._head_only = True
        self.do_GET()

    def _not_allowed(self) -> None:
        self.send_response(405)
        self.send_header("Allow", self.ALLOWED)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed  # noqa: N815 (405, not 501)

    def do_GET(self) -> None:  # noqa: N802 (the http.server API)
        path = urlsplit(self.path).path
        m = self.server.metrics
        if path == "/metrics":
            self._reply(200, generate_latest(m.registry), CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            ok, why = m.live(self.server.liveness_timeout_s)
            self._reply(200 if ok else 503, why.encode() + b"\n")
        elif path == "/readyz":
            ok, why = m.ready()
            self._reply(200 if ok else 503, why.encode() + b"\n")
        else:
            self._reply(404, b"not found: /metrics, /healthz, /readyz\n")

    def _reply(self, code: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not getattr(self, "_head_only", False):
            self.wfile.write(body)

    def log_message(self, fmt: str, *args) -> None:  # scrapes every few seconds: debug, not stderr
        log.debug("metrics http %s: " + fmt, self.client_address[0], *args)


def listen_refusal(host: str, port: int, exc: OSError) -> str:
    """Why the metrics server cannot listen on ``host:port``, naming what to change: every failure said
    "set MOODSTREAM_METRICS_PORT to a free port", also for an address that is none (``[::1]``, with its
    brackets; a typo; one of another machine), and named only the variable where a flag was given."""
    why = exc.strerror or str(exc)
    where = f"metrics server: cannot listen on {host}:{port} ({why})"
    if exc.errno == errno.EADDRINUSE:
        return (f"{where}: port {port} is in use (another worker or program on this host); give each worker "
                "its own --metrics-port / MOODSTREAM_METRICS_PORT (0: a free one)")
    if exc.errno == errno.EACCES and 0 < port < 1024:
        return f"{where}: ports below 1024 need privileges; use a higher --metrics-port / MOODSTREAM_METRICS_PORT"
    if isinstance(exc, socket.gaierror) or exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
        hint = " (an IPv6 address goes without brackets: ::1, :: for all)" if host.startswith("[") else ""
        return (f"{where}: {host!r} is no address of this machine{hint}; set --metrics-host / "
                "MOODSTREAM_METRICS_HOST to one of its IP addresses (127.0.0.1; 0.0.0.0 or :: for all)")
    return f"{where}; check --metrics-host / MOODSTREAM_METRICS_HOST and --metrics-port / MOODSTREAM_METRICS_PORT"


class MetricsServer:
    """Serves ``metrics`` on ``host:port`` (port 0: a free one, see ``.port``) until ``close()``."""

    def __init__(self, metrics: WorkerMetrics, host: str = "127.0.0.1", port: int = 0,
                 liveness_timeout_s: float = 60.0, idle_timeout_s: float = IDLE_TIMEOUT_S):
        handler = type("_TimedHandler", (_Handler,), {"timeout": idle_timeout_s})
        server_cls = _Server
        if ":" in host:  # an IPv6 address such as "::"
            server_cls = type("_Server6", (_Server,), {"address_family": socket.AF_INET6})
        try:
            self._server = server_cls((host, port), handler)
        except OSError as exc:
            raise ConfigError(listen_refusal(host, port, exc)) from None
        self._server.metrics = metrics
        self._server.liveness_timeout_s = liveness_timeout_s
        self._server.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self.host = host
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name=f"metrics-{self.port}", daemon=True)
        self._thread.start()
        log.info("metrics: serving /metrics, /healthz, /readyz on %s:%d", host, self.port)

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
