"""The mover: every worker moves frame jobs from the intake list to the frames stream.

Producers only RPUSH to ``<prefix>:intake`` (an ACL can grant RPUSH alone; it
cannot grant XADD without its MAXLEN / MINID / explicit-id forms, with which one
producer credential deleted every producer's queued frames or stopped every
later XADD). A thread in each worker, with its own Redis connection, empties
that list into ``<prefix>:frames``, the stream the consumer group reads::

    while not stopped:
        moved = MOVE(intake, frames)       # one Lua script: atomic
        if not moved:
            if WAITER(intake:waiter):       # one mover of the fleet (a hash with a TTL it renews)
                BLMOVE intake intake LEFT LEFT  # sleeps until a producer pushes (the list is unchanged)
            else:
                sleep(block_s); LLEN intake    # the others look, and take over once the waiter stops

``MOVE`` takes the messages at the head of the list, at most ``batch`` of them
and ``batch_bytes`` in all (the first always: one message is at most
``max_message_bytes``), so no call holds the server long; XADDs each with ``*``
in order, with ``MINID ~`` below what the group has read and acknowledged
(:meth:`shared.transport.Backlog.trim_id`, from ids a script reads inside Redis every
``trim_every_s``: an unread or pending frame is never trimmed), and only then removes them from
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
:attr:`Mover.error`, which the worker raises (it stops with one line). An intake
key of another type (set by hand) is not one of those: the mover says so once and
tries again every few seconds, while the worker serves the stream (stopping, every
restarted worker met it again). A message over ``max_message_bytes`` goes to the
stream as a stand-in (its size and first bytes) that a worker dead-letters as
``too_large``: no worker reads it whole.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from moodstream.shared.keys import Keys
from moodstream.shared.retry import RedisGone, RedisRetry
from moodstream.shared.settings import Settings
from moodstream.shared.transport import Backlog, acked_below, as_str, connect, frames_within
from moodstream.shared.wire import DEAD_LETTER_PAYLOAD_BYTES, FIELD, HEAD, TOO_LARGE

log = logging.getLogger(__name__)

# KEYS: intake list, frames stream. ARGV: most messages, most bytes (the first is always taken), MINID ('' for
# none), the stream field, max_message_bytes, the stand-in's fields (size, head) and how much of the head it keeps.
# Reads with LINDEX and removes with one LTRIM after the XADDs: an XADD the stream refuses (pcall) leaves that
# message and the rest in the list, nothing added twice. A message over max_message_bytes (a producer credential
# RPUSHes what it likes, up to Redis's 512 MB) goes as a stand-in: its size and first bytes, which a worker
# dead-letters as too_large; whole, XREADGROUP handed batch_max of them to one worker. Returns {moved} or
# {moved, the refusal}.
MOVE_SCRIPT = """
local most, most_bytes, minid, field = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], ARGV[4]
local max_message, size_field, head_field, head_bytes = tonumber(ARGV[5]), ARGV[6], ARGV[7], tonumber(ARGV[8])
local n, bytes, refused = 0, 0, nil
while n < most do
  local msg = redis.call('LINDEX', KEYS[1], n)
  if not msg then break end
  local fields = {field, msg}
  if #msg > max_message then fields = {size_field, tostring(#msg), head_field, string.sub(msg, 1, head_bytes)} end
  local cost = #fields[2] + #(fields[4] or '')
  if n > 0 and bytes + cost > most_bytes then break end
  local added
  if minid ~= '' then
    added = redis.pcall('XADD', KEYS[2], 'MINID', '~', minid, '*', unpack(fields))
  else
    added = redis.pcall('XADD', KEYS[2], '*', unpack(fields))
  end
  if type(added) == 'table' and added.err then refused = added.err break end
  n = n + 1
  bytes = bytes + cost
end
if n > 0 then redis.call('LTRIM', KEYS[1], n, -1) end
if refused then return {n, refused} end
return {n}
"""

# KEYS: the frames stream. ARGV: the workers' group. What the trim point needs, ids only: {length, first id, last
# id, the group's last-delivered-id or false, its oldest pending id or false, the mean bytes of the first and
# last entries} ({0}: no stream). Read here, not by
# XINFO STREAM from the client, whose reply holds the first and last entries whole (two frames a read).
TRIM_SCRIPT = """
local length = redis.call('XLEN', KEYS[1])
if length == 0 then return {0} end
local oldest_entry = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1]
local newest_entry = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1]
local first, last = oldest_entry[1], newest_entry[1]
local bytes = 0  -- the two entries' size: the frames' size, for stream_max_mb
for _, e in ipairs({oldest_entry, newest_entry}) do
  for i = 1, #e[2] do bytes = bytes + #e[2][i] end
end
local delivered, oldest = false, false
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local f = {}
  for i = 1, #g, 2 do f[g[i]] = g[i + 1] end
  if f['name'] == ARGV[1] then
    delivered = f['last-delivered-id']
    if tonumber(f['pending']) > 0 then oldest = redis.call('XPENDING', KEYS[1], ARGV[1])[2] end
  end
end
return {length, first, last, delivered, oldest, math.floor(bytes / 2)}
"""

# KEYS: the waiter hash. ARGV: this mover's name, the hash's TTL in seconds. 1: this mover is the fleet's waiter
# (it was, or there was none): it may block in BLMOVE; 0: another is.
WAITER_SCRIPT = """
local who = redis.call('HMGET', KEYS[1], 'mover')[1]
if who and who ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'mover', ARGV[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
"""

ERROR_EVERY_S = 60.0  # a refused XADD is said again this often while it lasts
RULES = "deploy/k8s/base/redis/acl/moodstream-worker.rules"


class _Refused(Exception):
    """The ACL user may not run the mover (NOPERM): not a Redis error, so the retry helper passes it."""


class _NotAList(Exception):
    """The intake key holds another type (set by hand): the mover waits for it to be a list again,
    while the worker serves the stream; as a WRONGTYPE, the retry helper stopped the worker, and a
    restarted one again (every worker of the fleet, in a loop)."""


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
        self._waiter_ttl_s = max(2, math.ceil(4 * block_s))  # the waiter renews it every block_s or so
        self.moved = 0  # messages moved to the frames stream
        self.error: BaseException | None = None  # what stopped the mover (None: running, stopped, or refused)
        self.refused = False  # the ACL user may not move: the worker serves the stream alone
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sha: dict[str, str] = {}  # script -> its SHA1, once the server has it
        self._trim: str | None = None  # MINID for the XADDs (None: trim nothing)
        self._next_trim = 0.0
        self._next_error = 0.0
        self._not_a_list: str | None = None  # the type the intake key held when last tried (None: a list, or none)
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
                try:
                    if self.retry.call(self.move_once):
                        self._a_list_again()
                        continue
                    self._a_list_again()
                    while not self._stop.is_set() and self.retry.call(self._wait_for_push) is None:
                        pass  # an idle fleet only blocks here: no script, no backlog read
                except _NotAList as exc:
                    self._not_a_list_yet(str(exc))
        except RedisGone:
            pass
        except _Refused as exc:
            self.refused = True
            log.warning("worker %s: this Redis user may not move frame jobs from %s to %s (%s): serving only what "
                        "reaches the stream itself (producers of the release before XADD there); grant +evalsha "
                        "+eval +lindex +ltrim +blmove +llen, the trim point's reads +xlen +xrange +xrevrange "
                        "+xinfo|groups and the waiter's +hmget +hset +expire +del, as %s does, or frames that producers of this release push wait in %s",
                        self.name, self.keys.intake, self.keys.frames, exc, RULES, self.keys.intake)
        except BaseException as exc:  # the worker raises it from its loop: one line, teardown
            self.error = exc
            if not isinstance(exc, Exception):
                raise
            log.debug("worker %s: the intake mover stopped: %s", self.name, exc)
        finally:
            self._leave_waiting()

    def _leave_waiting(self) -> None:
        """The waiter's hash removed where it is this mover's: another mover waits at once, not after its
        TTL (a race with one that takes it meanwhile only makes that one renew it)."""
        try:
            if self.client.hmget(self.keys.intake_waiter, "mover")[0] == self.name.encode():
                self.client.delete(self.keys.intake_waiter)
        except redis.RedisError:  # it expires by itself
            pass

    def _not_a_list_yet(self, kind: str) -> None:
        """Said once while it lasts (each worker): the frames producers push are refused meanwhile,
        and the producers say so; what is in the stream is served."""
        if self._not_a_list is None:
            log.error("worker %s: %s is not a list (it holds a %s: set by hand?): no frame job is moved from it and "
                      "producers cannot push; serving what is in %s. Delete or rename that key: this worker moves "
                      "again once it is a list", self.name, self.keys.intake, kind, self.keys.frames)
        self._not_a_list = kind
        self._stop.wait(min(5.0, self.block_s * 4))

    def _a_list_again(self) -> None:
        if self._not_a_list is not None:
            self._not_a_list = None
            log.info("worker %s: %s is a list again: moving frame jobs from it", self.name, self.keys.intake)

    @contextmanager
    def _refusals(self) -> Iterator[None]:
        """What no retry heals, as the mover's own: NOPERM is :class:`_Refused` (the rules of the
        release before), a WRONGTYPE that the intake key caused :class:`_NotAList` (the frames
        key's goes on: the worker's own reads stop it with one line)."""
        try:
            yield
        except redis.exceptions.NoPermissionError as exc:
            raise _Refused(" ".join(str(exc).split())) from None
        except redis.ResponseError as exc:
            if "WRONGTYPE" in str(exc):  # Redis 6.2 wraps a script's: "ERR Error running script ... WRONGTYPE ..."
                kind = as_str(self.client.type(self.keys.intake))
                if kind not in ("list", "none"):
                    raise _NotAList(kind) from None
            raise

    def move_once(self) -> int:
        """One script call: the messages moved (0: the intake is empty, or the stream refused)."""
        with self._refusals():
            if self.trim_every_s == 0 or time.monotonic() >= self._next_trim:
                self._trim = self._trim_point()
                self._next_trim = time.monotonic() + self.trim_every_s
            reply = self._script(MOVE_SCRIPT, (self.keys.intake, self.keys.frames), self.batch, self.batch_bytes,
                                 self._trim or "", FIELD, self.settings.max_message_bytes, TOO_LARGE, HEAD,
                                 DEAD_LETTER_PAYLOAD_BYTES)
        moved = int(reply[0])
        self.moved += moved
        if len(reply) > 1:
            self._refused_by_stream(reply[1], moved)
        return moved

    def _trim_point(self) -> str | None:
        """The MINID for the moves' XADDs (:meth:`~shared.transport.Backlog.trim_id`), from ids read in Redis."""
        reply = self._script(TRIM_SCRIPT, (self.keys.frames,), self.keys.group)
        if int(reply[0]) == 0:
            return None
        length, first, last, delivered, oldest = int(reply[0]), *(as_str(v) if v else None for v in reply[1:5])
        below = acked_below(delivered, oldest) if delivered is not None else None  # no group: nothing read
        # stream_maxlen entries, or fewer where they would hold over stream_max_mb (a long 1080p video kept
        # 10,000 PNG frames of 1.6 MB); the frames' size: the oldest and newest entries' (before a worker of
        # this release: none)
        frame_bytes = int(reply[5]) if len(reply) > 5 else None
        keep = frames_within(self.settings.stream_maxlen, self.settings.stream_max_mb, frame_bytes)
        return Backlog(0, 0, True, length, below, first, last).trim_id(keep)

    def _script(self, script: str, keys: tuple[str, ...], *args):
        """EVALSHA, and EVAL where the server does not have the script (a restart, SCRIPT FLUSH); not
        redis-py's Script, which loads it with SCRIPT LOAD, a command the worker's ACL does not grant."""
        if script in self._sha:
            try:
                return self.client.evalsha(self._sha[script], len(keys), *keys, *args)
            except redis.exceptions.NoScriptError:
                pass
        reply = self.client.eval(script, len(keys), *keys, *args)  # caches it: EVALSHA from now on
        self._sha[script] = _sha1(script)
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

    def _wait_for_push(self) -> bytes | int | None:
        """Until a producer pushes (or block_s: None). One mover of the fleet, the waiter (a hash
        with a TTL, renewed here), BLMOVEs the head onto itself, the list unchanged, and is woken
        by the push; the others look at the list's length every block_s (at most that late, while
        the waiter that stopped or died has its hash expire). BLMOVE's reply is the message: each
        mover blocked there read every push whole, and woke the others again with its own move
        (4 movers: 8 copies of it left Redis)."""
        with self._refusals():
            if self._script(WAITER_SCRIPT, (self.keys.intake_waiter,), self.name, self._waiter_ttl_s):
                return self.client.blmove(self.keys.intake, self.keys.intake, self.block_s, "LEFT", "LEFT")
            self._stop.wait(self.block_s)
            return self.client.llen(self.keys.intake) or None


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def _own_client(client: redis.Redis) -> redis.Redis:
    """A client with ``client``'s settings (URL, password, TLS, timeouts) and a pool of its own."""
    pool = client.connection_pool
    return redis.Redis(connection_pool=redis.ConnectionPool(connection_class=pool.connection_class,
                                                            **pool.connection_kwargs))
