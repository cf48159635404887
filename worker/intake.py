"""The mover: every worker moves frame jobs from the intake list to the frames stream.

Producers only RPUSH to ``<prefix>:intake`` (an ACL can grant RPUSH alone; it
cannot grant XADD without its MAXLEN / MINID / explicit-id forms, with which one
producer credential deleted every producer's queued frames or stopped every
later XADD). A thread in each worker, with its own Redis connection, empties
that list into ``<prefix>:frames``, the stream the consumer group reads::

    while not stopped:
        moved = MOVE(intake, frames)       # one Lua script: atomic
        if not moved:
            BLMOVE intake intake LEFT LEFT  # sleeps until a producer pushes (the list is unchanged)

``MOVE`` takes the messages at the head of the list, at most ``batch`` of them
and ``batch_bytes`` in all (the first always: one message is at most
``max_message_bytes``), so no call holds the server long; XADDs each with ``*``
in order, with ``MINID ~`` below what the group has read and acknowledged
(:meth:`shared.transport.Backlog.trim_id`, measured here every ``trim_every_s``:
an unread or pending frame is never trimmed), and only then removes them from
the list (LTRIM). A worker killed at any point loses or duplicates nothing;
movers of several workers racing keep the list's order (FIFO), since a script
runs alone. An XADD the stream refuses (an entry with the largest id, added by
an admin) moves nothing: the frames stay in the intake and the mover says what
to do, every ``ERROR_EVERY_S``.

A worker whose ACL user may not run it (the rules of the release before: no
EVALSHA, LINDEX, BLMOVE...) says once which rules to grant and serves the stream
without a mover (producers of that release still XADD there). Redis errors
otherwise go through the one retry helper (:mod:`shared.retry`): an unreachable
Redis is waited for, a stop ends the wait; what no retry heals is kept in
:attr:`Mover.error`, which the worker raises (it stops with one line).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time

import redis

from moodstream.shared.keys import Keys
from moodstream.shared.retry import RedisGone, RedisRetry
from moodstream.shared.settings import Settings
from moodstream.shared.transport import connect, group_backlog
from moodstream.shared.wire import FIELD

log = logging.getLogger(__name__)

# KEYS: intake list, frames stream. ARGV: most messages, most bytes (the first is always taken), MINID ('' for
# none), the stream field. Reads with LINDEX and removes with one LTRIM after the XADDs: an XADD the stream
# refuses (pcall) leaves that message and the rest in the list, nothing added twice. Returns {moved} or
# {moved, the refusal}.
MOVE_SCRIPT = """
local most, most_bytes, minid, field = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], ARGV[4]
local n, bytes, refused = 0, 0, nil
while n < most do
  local msg = redis.call('LINDEX', KEYS[1], n)
  if not msg then break end
  if n > 0 and bytes + #msg > most_bytes then break end
  local added
  if minid ~= '' then
    added = redis.pcall('XADD', KEYS[2], 'MINID', '~', minid, '*', field, msg)
  else
    added = redis.pcall('XADD', KEYS[2], '*', field, msg)
  end
  if type(added) == 'table' and added.err then refused = added.err break end
  n = n + 1
  bytes = bytes + #msg
end
if n > 0 then redis.call('LTRIM', KEYS[1], n, -1) end
if refused then return {n, refused} end
return {n}
"""

ERROR_EVERY_S = 60.0  # a refused XADD is said again this often while it lasts
RULES = "deploy/k8s/base/redis/acl/moodstream-worker.rules"


class _Refused(Exception):
    """The ACL user may not run the mover (NOPERM): not a Redis error, so the retry helper passes it."""


class Mover:
    """Moves the intake list to the frames stream in a thread (see the module docstring).

    ``client``: a connection to copy the settings of (the worker's), else ``settings.redis_url``;
    the mover always opens its own, as it blocks. ``block_s``: the longest BLMOVE (a stop waits
    for it at most); ``batch`` / ``batch_bytes``: the most one script moves."""

    def __init__(self, settings: Settings, *, name: str, client: redis.Redis | None = None, block_s: float = 0.5,
                 batch: int = 64, batch_bytes: int = 8 << 20, trim_every_s: float = 1.0):
        self.settings = settings
        self.keys = Keys.from_settings(settings)
        self.name = name
        self.client = _own_client(client) if client is not None else connect(settings.redis_url)
        self.block_s = block_s
        self.batch = batch
        self.batch_bytes = max(batch_bytes, 1)
        self.trim_every_s = trim_every_s
        self.moved = 0  # messages moved to the frames stream
        self.error: BaseException | None = None  # what stopped the mover (None: running, stopped, or refused)
        self.refused = False  # the ACL user may not move: the worker serves the stream alone
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sha: str | None = None
        self._trim: str | None = None  # MINID for the XADDs (None: trim nothing)
        self._next_trim = 0.0
        self._next_error = 0.0
        self.retry = RedisRetry(f"worker {name} mover", settings.redis_url, self._stop, cap_s=10.0)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"mover-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float | None = None) -> None:
        """Stop moving (what is left in the intake stays for other workers) and close the connection."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.block_s + 5 if timeout_s is None else timeout_s)
            if self._thread.is_alive():  # a call still waits on Redis: it ends with its socket's timeout
                log.warning("worker %s: the intake mover is still in a Redis call; leaving it", self.name)
                return
        self.client.close()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if self.retry.call(self.move_once):
                    continue
                while not self._stop.is_set() and self.retry.call(self._wait_for_push) is None:
                    pass  # an idle fleet only blocks here: no script, no backlog read
        except RedisGone:
            pass
        except _Refused as exc:
            self.refused = True
            log.warning("worker %s: this Redis user may not move frame jobs from %s to %s (%s): serving only what "
                        "reaches the stream itself (producers of the release before XADD there); grant +evalsha "
                        "+eval +lindex +ltrim +blmove +llen and the backlog reads +xinfo|groups +xinfo|stream "
                        "+xrange, as %s does, or frames that producers of this release push wait in %s",
                        self.name, self.keys.intake, self.keys.frames, exc, RULES, self.keys.intake)
        except BaseException as exc:  # the worker raises it from its loop: one line, teardown
            self.error = exc
            if not isinstance(exc, Exception):
                raise
            log.debug("worker %s: the intake mover stopped: %s", self.name, exc)

    def move_once(self) -> int:
        """One script call: the messages moved (0: the intake is empty, or the stream refused)."""
        try:
            if self.trim_every_s == 0 or time.monotonic() >= self._next_trim:
                b = group_backlog(self.client, self.keys, count_limit=0)  # for its ids, not its lag
                self._trim = b.trim_id(self.settings.stream_maxlen)
                self._next_trim = time.monotonic() + self.trim_every_s
            reply = self._script(self.keys.intake, self.keys.frames, self.batch, self.batch_bytes,
                                 self._trim or "", FIELD)
        except redis.exceptions.NoPermissionError as exc:
            raise _Refused(" ".join(str(exc).split())) from None
        moved = int(reply[0])
        self.moved += moved
        if len(reply) > 1:
            self._refused_by_stream(reply[1], moved)
        return moved

    def _script(self, *args) -> list:
        """EVALSHA, and EVAL where the server does not have the script (a restart, SCRIPT FLUSH)."""
        keys, argv = args[:2], args[2:]
        if self._sha is not None:
            try:
                return self.client.evalsha(self._sha, 2, *keys, *argv)
            except redis.exceptions.NoScriptError:
                pass
        reply = self.client.eval(MOVE_SCRIPT, 2, *keys, *argv)  # caches it: EVALSHA from now on
        self._sha = _sha1(MOVE_SCRIPT)
        return reply

    def _refused_by_stream(self, why: bytes | str, moved: int) -> None:
        why = why.decode(errors="replace") if isinstance(why, bytes) else str(why)
        now = time.monotonic()
        if now >= self._next_error:
            self._next_error = now + ERROR_EVERY_S
            hint = (f"{self.keys.frames} holds the largest possible entry id (added by hand): no XADD * gets past it; "
                    f"an admin must move the stream aside (RENAME; its frames stay readable there) for a new one "
                    "to start" if "exhausted the last possible ID" in why else "")
            log.error("worker %s: %s refused a frame job after %d moved (%s); they stay in %s%s", self.name,
                      self.keys.frames, moved, why, self.keys.intake, f". {hint}" if hint else "")
        self._stop.wait(min(5.0, self.block_s * 4))  # no spinning on a refusal; a stop ends the wait

    def _wait_for_push(self) -> bytes | None:
        """Until a producer pushes (or block_s: None): BLMOVE the head onto itself, the list unchanged."""
        try:
            return self.client.blmove(self.keys.intake, self.keys.intake, self.block_s, "LEFT", "LEFT")
        except redis.exceptions.NoPermissionError as exc:
            raise _Refused(" ".join(str(exc).split())) from None


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def _own_client(client: redis.Redis) -> redis.Redis:
    """A client with ``client``'s settings (URL, password, TLS, timeouts) and a pool of its own."""
    pool = client.connection_pool
    return redis.Redis(connection_pool=redis.ConnectionPool(connection_class=pool.connection_class,
                                                            **pool.connection_kwargs))
