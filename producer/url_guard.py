"""The expander's own HTTP proxy: every request FFmpeg makes for a job's URL is checked.

FFmpeg follows HTTP redirects and fetches HLS segments and nested playlists by
itself, so checking the URL a job names is not enough (a 302 to
``localhost:6379`` or a playlist naming segments on another host went
straight there). While :class:`UrlGuard` is entered, FFmpeg in this process
opens http(s) URLs through a proxy on 127.0.0.1 (its ``http_proxy`` option,
which FFmpeg passes on to redirects and to HLS segments and playlists), and
only the http, https and tcp-level protocols they need (``protocol_whitelist``:
no ``file:`` or other schemes from inside a playlist). The proxy:

* forwards a plain-http request only to a host on the allow-list, and passes
  redirects back to FFmpeg unfollowed, so the next hop comes back here and is
  checked again; https goes through ``CONNECT`` to allowed hosts only;
* refuses everything else with 403, never connecting, and records it;
* counts the bytes it relays against the job's cap (:class:`ByteCount`) and
  cuts the connection when the cap is passed.

rtsp URLs do not go through it (FFmpeg's RTSP client takes no proxy): see the
limits in deploy/README.md.
"""

from __future__ import annotations

import http.client
import http.server
import logging
import os
import select
import socket
import threading
from collections.abc import Callable
from urllib.parse import urlsplit

from moodstream.producer.sources import ByteCount

log = logging.getLogger(__name__)

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection", "te",
              "trailer", "transfer-encoding", "upgrade"}
FFMPEG_OPTIONS = "OPENCV_FFMPEG_CAPTURE_OPTIONS"  # OpenCV reads it at every open
PROTOCOLS = "http,https,tcp,tls,httpproxy,crypto"
CHUNK = 64 * 1024


class UrlGuard:
    """``with UrlGuard(hosts, count):`` FFmpeg's http(s) in this process goes through the checks above.

    ``on_stop`` is called (from a proxy thread) when a request is refused or the
    byte cap is passed: neither heals by asking again, so the source should stop."""

    def __init__(self, hosts: set[str], count: ByteCount, timeout_s: float = 10.0,
                 on_stop: Callable[[], None] = lambda: None):
        self.hosts = {h.lower() for h in hosts}
        self.count = count
        self.timeout_s = timeout_s
        self.on_stop = on_stop
        self.refused: list[str] = []  # "host:port" of every refused request, in order
        self._saved: dict[str, str | None] = {}
        guard = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # one request per connection: the body ends when we close

            def do_GET(self):  # noqa: N802
                guard._forward(self)

            do_HEAD = do_GET  # noqa: N815

            def do_CONNECT(self):  # noqa: N802
                guard._tunnel(self)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> UrlGuard:
        threading.Thread(target=self.server.serve_forever, name="url-guard", daemon=True).start()
        for name in (FFMPEG_OPTIONS, "no_proxy", "NO_PROXY"):
            self._saved[name] = os.environ.get(name)
        os.environ.pop("no_proxy", None)  # FFmpeg would bypass the proxy for hosts listed there
        os.environ.pop("NO_PROXY", None)
        os.environ[FFMPEG_OPTIONS] = f"http_proxy;{self.proxy_url}|protocol_whitelist;{PROTOCOLS}"
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    def allowed(self, host: str | None) -> bool:
        return (host or "").lower() in self.hosts

    def _refuse(self, h: http.server.BaseHTTPRequestHandler, where: str, why: str) -> None:
        self.refused.append(where)
        log.warning("url guard: refused %s %s (%s)", h.command, where, why)
        h.send_error(403, "refused by the expander's allowed_url_hosts")
        self.on_stop()

    def _forward(self, h: http.server.BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        where = f"{parts.hostname}:{parts.port or 80}"
        if parts.scheme != "http" or not self.allowed(parts.hostname):
            self._refuse(h, where, "host not on the allow-list" if parts.scheme == "http" else "not http")
            return
        if self.count.exceeded:
            self._refuse(h, where, f"over job_max_bytes ({self.count.limit})")
            return
        headers = {k: v for k, v in h.headers.items() if k.lower() not in HOP_BY_HOP}
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=self.timeout_s)
        try:
            conn.request(h.command, path, headers=headers)
            resp = conn.getresponse()
            h.send_response_only(resp.status, resp.reason)
            for k, v in resp.getheaders():
                if k.lower() not in HOP_BY_HOP and not (k.lower() == "content-length" and resp.chunked):
                    h.send_header(k, v)
            h.send_header("Connection", "close")
            h.end_headers()
            while h.command != "HEAD":
                data = resp.read1(CHUNK)
                if not data:
                    break
                if not self.count.add(len(data)):
                    log.warning("url guard: %s passed job_max_bytes (%d); cut", where, self.count.limit)
                    self.on_stop()
                    break
                h.wfile.write(data)
        except (OSError, http.client.HTTPException) as exc:
            log.info("url guard: %s: %s", where, exc)
        finally:
            conn.close()

    def _tunnel(self, h: http.server.BaseHTTPRequestHandler) -> None:
        host, _, port = h.path.rpartition(":")
        if not self.allowed(host) or not port.isdigit() or self.count.exceeded:
            self._refuse(h, h.path, "host not on the allow-list" if not self.count.exceeded else "over job_max_bytes")
            return
        try:
            upstream = socket.create_connection((host, int(port)), timeout=self.timeout_s)
        except OSError as exc:
            h.send_error(502, str(exc))
            return
        h.send_response(200, "Connection established")
        h.end_headers()
        ends = [h.connection, upstream]
        try:
            while not self.count.exceeded:
                ready, _, _ = select.select(ends, [], [], self.timeout_s)
                if not ready:
                    break
                for s in ready:
                    data = s.recv(CHUNK)
                    if not data:
                        return
                    if not self.count.add(len(data)):
                        self.on_stop()
                    (upstream if s is h.connection else h.connection).sendall(data)
        except OSError:
            pass
        finally:
            upstream.close()
