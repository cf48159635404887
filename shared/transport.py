"""Redis plumbing both sides share: connecting, the consumer group, lag, backoff.

Needs only redis-py (no torch, no numpy).
"""

from __future__ import annotations

import bisect
import logging
import math
import random
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import redis

from moodstream.shared.errors import ConfigError
from moodstream.shared.keys import Keys

log = logging.getLogger(__name__)

# errors after which a client should wait and try again (server restarting, network gone);
# but see is_fatal: redis-py makes a refused password a ConnectionError too
TRANSIENT = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)
# errors no waiting heals: a wrong or missing password, an ACL user without the command
FATAL = (redis.exceptions.AuthenticationError, redis.exceptions.AuthorizationError, redis.exceptions.NoPermissionError,
         redis.exceptions.AuthenticationWrongNumberOfArgsError)


# a Redis Cluster's refusals (keys in another slot, on another node, the cluster down): moodstream
# needs a standalone server, as its keys go together into scripts and transactions (refuse_cluster)
CLUSTER = (redis.exceptions.ClusterCrossSlotError, redis.exceptions.AskError, redis.exceptions.ClusterDownError,
           redis.exceptions.TryAgainError)


def is_fatal(exc: BaseException) -> bool:
    return isinstance(exc, FATAL)


# query parameters whose values are secrets (IP cameras take ?user=admin&pwd=...; Redis ?password=)
SECRET_PARAM = re.compile(r"pass|pwd|token|secret|key|auth|sig|cred", re.IGNORECASE)
# key=value pairs in a URL's path, ;params or #fragment (cameras that take credentials there, XMEye's
# /user=admin&password=...): the value of a secret-looking key is masked as in the query
_SECRET_IN_PATH = re.compile(r"([/;&#?](?:[^/;&#?=]*(?:pass|pwd|token|secret|key|auth|sig|cred)[^/;&#?=]*)=)"
                             r"(?!\*\*\*(?:[&;#/]|$))[^/;&#?]*", re.IGNORECASE)


def redact(url: str | None) -> str:
    """The URL with its password (and user) replaced by ``***``, and the values of secret-looking
    query parameters (:data:`SECRET_PARAM`): safe for logs, errors and the records that name a
    source. A password holding '#', '?' or '/' (which end a URL's host part) is masked too, up
    to the last '@'."""
    if not url:
        return str(url)
    scheme, sep, rest = url.partition("://")
    at = rest.rfind("@")
    if sep and at >= 0 and (":" in rest[:at] or "/" not in rest[:at]):
        host_and_path = rest[at + 1:]
        if any(c in rest[:at] for c in "#?/"):  # parsing would cut the password short: mask by hand
            return f"{scheme}://***@{host_and_path.split('?', 1)[0].split('#', 1)[0]}"
    try:
        parts = urlsplit(url)
        if parts.password is None and parts.username is None:
            query = "&".join(f"{k}=***" if v and SECRET_PARAM.search(k) else f"{k}{eq}{v}"
                             for k, eq, v in (item.partition("=") for item in parts.query.split("&")))
            out = urlunsplit(parts._replace(query=query)) if parts.query else url
            return _SECRET_IN_PATH.sub(lambda m: m.group(1) + "***", out)
        host = parts.hostname or ""
        host = f"[{host}]" if ":" in host else host  # an IPv6 address keeps its brackets
        netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    except ValueError:  # e.g. a port that is not a number: mask whatever stands before the '@'
        return re.sub(r"//[^/]*@", "//***@", url)


def describe_fatal(exc: BaseException, url: str | None) -> str:
    return f"Redis at {redact(url)} refused us: {exc} (check the password / ACL user in the URL)"


def describe_cluster(url: str | None) -> str:
    return (f"Redis at {redact(url)} runs in cluster mode, which moodstream cannot use (its keys go together "
            "into scripts and transactions, which a cluster refuses across hash slots): use a standalone Redis "
            "(a managed service's 'cluster mode disabled'; a primary with replicas is fine)")


def refuse_cluster(client: redis.Redis, redis_url: str | None) -> None:
    """One line at start-up for a Redis in cluster mode (``INFO cluster``; managed services often
    start one): a worker died in a traceback at its first transaction, a producer pushed frames no
    worker could move. Asked as the default user only: the shipped ACL users may not read INFO, and
    each refusal would be an entry in the operator's ACL LOG. Where it is not asked, or may not
    answer, the first command the cluster refuses says it (:data:`CLUSTER`, shared.retry)."""
    if (client.connection_pool.connection_kwargs.get("username") or "default") != "default":
        return
    try:
        info = client.info("cluster")
    except redis.ResponseError:  # NOPERM and the like: not ours to require
        return
    if info.get("cluster_enabled"):
        raise ConfigError(describe_cluster(redis_url))


def connect(redis_url: str | None, socket_timeout_s: float = 30.0) -> redis.Redis:
    """A client for ``redis_url`` (redis://, rediss:// for TLS, unix://; passwords in the URL).

    Binary responses (payloads are msgpack). ``socket_timeout_s`` must exceed the
    longest blocking read, which callers keep to a few seconds.
    """
    if not redis_url or not redis_url.strip():  # (only spaces: a YAML value's stray space)
        raise ConfigError("no Redis configured: set MOODSTREAM_REDIS_URL (e.g. redis://localhost:6379/0) "
                          "or pass --redis-url; `moodstream up` starts an embedded server instead")
    try:
        return redis.Redis.from_url(redis_url, socket_connect_timeout=5, socket_timeout=socket_timeout_s,
                                    health_check_interval=30, decode_responses=False,
                                    redis_connect_func=_handshake(redis_url))
    except ValueError as exc:  # the message quotes no URL; ours is redacted (it may hold a password)
        raise ConfigError(f"bad Redis URL {redact(redis_url)}: {str(exc).replace(redis_url, '***')}") from None


def _handshake(redis_url: str) -> Callable[[redis.connection.AbstractConnection], None]:
    """redis-py's own handshake on each new connection (AUTH, HELLO, SELECT), with a database the
    server does not have said as a ConfigError: the Python API (Producer, ResultReader, Worker made
    from Settings) raised redis-py's bare "DB index is out of range" from its first command, wherever
    that was (the CLI's check_connection says it at start, through this too)."""
    def on_connect(conn) -> None:
        try:
            conn.on_connect()
        except redis.ResponseError as exc:
            if conn.db and "DB index" in str(exc):  # Redis and Valkey: "ERR DB index is out of range"
                raise ConfigError(f"Redis at {redact(redis_url)} has no database {conn.db} ({exc}): its databases "
                                  "are numbered from 0 (16 by default: its `databases` setting); fix the number "
                                  "at the end of the URL") from None
            raise
    return on_connect


def check_connection(client: redis.Redis, redis_url: str | None, wait_s: float = 10.0,
                     notice: Callable[[str], None] | None = None) -> None:
    """Fail at start-up, with one line, on what no retry heals: a wrong password, an
    unknown host, a database number the server does not have, a cluster (:func:`refuse_cluster`). A server that refuses
    connections is waited for up to ``wait_s`` (it may be starting); after that, too,
    one line. Once running, callers retry connection errors with backoff: a server
    that was reachable and went away is expected back.

    ``notice`` (interactive commands: a line on stderr) is told once, when the wait
    begins, what is waited for and why: silent, the wait looked like a hang. Without
    it each retry is only logged (INFO), as services do."""
    kw = client.connection_pool.connection_kwargs
    host = kw.get("host")
    if host and not kw.get("path"):
        try:
            socket.getaddrinfo(host, kw.get("port") or 6379)
        except socket.gaierror as exc:
            raise ConfigError(f"Redis host {host!r} is unknown ({exc.strerror}); check {redact(redis_url)}") from None
    deadline = time.monotonic() + wait_s
    backoff = Backoff(cap_s=1.0)
    told = False  # the notice is given once
    while True:
        try:
            client.ping()
            refuse_cluster(client, redis_url)
            return
        except FATAL as exc:
            raise ConfigError(describe_fatal(exc, redis_url)) from None
        except (*TRANSIENT, redis.ResponseError) as exc:
            # a ResponseError is a bad setting ("DB index is out of range" at SELECT), except BUSY:
            # a long script runs, and it ends (shared.retry.is_busy; that module builds on this one)
            if isinstance(exc, redis.ResponseError) and not str(exc).startswith("BUSY "):
                raise ConfigError(f"Redis at {redact(redis_url)} answered: {exc}") from None
            left_s = deadline - time.monotonic()
            if left_s <= 0:  # (wait_s 0: the one try)
                raise ConfigError(f"cannot reach Redis at {redact(redis_url)}: {exc}") from None
            if notice is not None and not told:
                told = True
                notice(f"waiting up to {wait_s:g} s for Redis at {redact(redis_url)} ({_why(exc)})")
            log.info("waiting for Redis at %s: %s", redact(redis_url), exc)
            # the last try at the deadline: a backoff that would end past it is cut to it (it gave up a
            # second early, and a Redis up in that second was never asked)
            time.sleep(min(backoff.next_delay_s(), left_s))


def _why(exc: BaseException) -> str:
    """Why a connection failed, in a few words: the OS's reason redis-py wraps ("connection
    refused", "no such file or directory" for a unix socket), else its own message."""
    cause = exc.__cause__
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror.lower()
    return " ".join(str(exc).split()).rstrip(".") or type(exc).__name__


def ensure_group(client: redis.Redis, keys: Keys, *, stream: str | None = None, group: str | None = None,
                 start_id: str = "0") -> bool:
    """Create the consumer group (and the stream) if absent; True if created.

    By default the workers' group on the frames stream; ``stream`` / ``group``
    name another (the track stage's on the results stream). The group starts at
    ``start_id`` ("0": entries added before any consumer started are served).
    Only BUSYGROUP (it exists already) is swallowed.
    """
    stream, group = stream or keys.frames, group or keys.group
    try:
        client.xgroup_create(stream, group, id=start_id, mkstream=True)
    except redis.ResponseError as exc:
        if str(exc).startswith("BUSYGROUP"):
            return False
        if str(exc).startswith("WRONGTYPE"):
            raise ConfigError(not_a_stream(stream)) from None
        raise
    log.info("created consumer group %s on %s", group, stream)
    return True


# TYPE's answers, as a sentence names them
KIND_NAMES = {"zset": "sorted set"}


def not_a_stream(key: str, kind: str | None = None, wanted: str = "stream") -> str:
    held = f" (it holds a {KIND_NAMES.get(kind, kind)})" if kind else ""
    return (f"Redis key {key!r} is not a {KIND_NAMES.get(wanted, wanted)}{held}: another program's key, or a "
            "moodstream key changed by hand; delete or rename it, or use another prefix")


def check_streams(client: redis.Redis, *keys: str) -> None:
    """ConfigError, one line, where a key moodstream keeps a stream in holds another type."""
    check_kinds(client, dict.fromkeys(keys, "stream"))


def name_wrong_type(client: redis.Redis, exc: redis.ResponseError, kinds: dict[str, str]) -> None:
    """Where ``exc`` is a WRONGTYPE reply, the ConfigError that names the key of ``kinds`` (key -> the type
    moodstream keeps there) holding another type, and what it holds (the retry helper's words named no key:
    "a key moodstream keeps a stream in is not a stream", and `status` reads five); else nothing."""
    if "WRONGTYPE" in str(exc):
        try:
            check_kinds(client, kinds)
        except redis.RedisError:  # TYPE refused (the ACL users of deploy/k8s have none): the reply as it was
            pass


def check_kinds(client: redis.Redis, kinds: dict[str, str]) -> None:
    """ConfigError, one line, where a key holds another type than ``kinds`` says (TYPE's word for it:
    ``stream``, ``hash``, ``zset``) moodstream keeps there."""
    for key, wanted in kinds.items():
        kind = as_str(client.type(key))
        if kind not in (wanted, "none"):
            raise ConfigError(not_a_stream(key, kind, wanted))


def find_group(groups: list[dict], group: str) -> dict | None:
    """The entry of XINFO GROUPS's answer that describes ``group`` (None: no such group).
    The one place that scans that answer (backlog, KEDA's lag, status)."""
    return next((g for g in groups if as_str(g.get("name")) == group), None)


def reported_lag(group: dict | None) -> int | None:
    """A group's ``lag`` as XINFO GROUPS reports it (``group``: its entry, :func:`find_group`): None
    where there is no group, or Redis says nil (6.2 has none; 7.0 after an XDEL or a trim past the
    group's position)."""
    lag = None if group is None else group.get("lag")
    return None if lag is None else int(lag)


def group_info(client: redis.Redis, stream: str, group: str) -> dict | None:
    """XINFO GROUPS of ``stream``, for ``group`` only: its ``lag``, ``pending``,
    ``last-delivered-id``...; None when the stream or the group does not exist."""
    try:
        groups = client.xinfo_groups(stream)
    except redis.ResponseError as exc:  # no such key; a refused command is raised
        if is_fatal(exc):
            raise
        return None
    return find_group(groups, group)


@dataclass
class Backlog:
    lag: int  # entries not yet delivered to the group
    pending: int  # delivered, not yet acked
    exact: bool  # False where lag was capped at the counting limit (then it is a lower bound)
    length: int = 0  # entries in the stream (XLEN)
    # every entry with a smaller id has been delivered to the group and acknowledged: what
    # trimming may remove (None: no group, so nothing has been read)
    acked_below: str | None = None
    # oldest and newest entry ids (None: empty stream, or a light read of BacklogGauge: only XINFO
    # STREAM says them, and its reply holds both entries whole)
    first_id: str | None = None
    last_id: str | None = None
    intake: int = 0  # messages producers pushed that no mover has moved to the stream yet (LLEN)
    # the group's lag as XINFO GROUPS says it, what KEDA's redis-streams trigger compares with lagCount
    # (:func:`reported_lag`): None where Redis says nil, or there is no group; ``lag`` above is ours
    reported_lag: int | None = None

    @property
    def total(self) -> int:
        """Every frame waiting: in the intake list, unread in the stream, or in a worker's hands."""
        return self.intake + self.lag + self.pending

    def trim_id(self, keep: int) -> str | None:
        """The MINID for XADD that trims the stream to about its newest ``keep``
        entries, but never past :attr:`acked_below`: an unread or pending entry is
        never trimmed, whatever ``keep``. None (trim nothing) while at most ``keep``.

        Ids are times: the cut between the oldest and newest ids is placed by the
        share of entries beyond ``keep``, so about ``keep`` entries stay (the
        dashboard looks frames up there); only acknowledged ones ever go."""
        if self.acked_below is None or self.length <= keep or not self.first_id or not self.last_id:
            return None
        (first_ms, _), (last_ms, _) = parse_id(self.first_id), parse_id(self.last_id)
        cut = (first_ms + (last_ms - first_ms) * (self.length - keep) // self.length, 0)
        if cut <= parse_id(self.first_id):  # all in one millisecond: keep only the unacknowledged
            cut = parse_id(self.acked_below)
        return format_id(min(cut, parse_id(self.acked_below)))


MB = 1 << 20  # stream_max_mb's unit


def frames_within(count: int, budget_mb: int, frame_bytes: float | None) -> int:
    """Frames that fit in both ``count`` and ``budget_mb`` MB at ``frame_bytes`` a frame (at least
    one); ``count`` where the frames' size is not known yet. In whole numbers: a budget of any size
    (a float overflowed at 309 digits)."""
    if not frame_bytes or frame_bytes <= 0:
        return count
    return max(1, min(count, budget_mb * MB // math.ceil(frame_bytes)))


def parse_id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def format_id(parts: tuple[int, int]) -> str:
    return f"{parts[0]}-{parts[1]}"


def count_after(client: redis.Redis, stream: str, after_id: str, limit: int, page: int = 100,
                ids: list[tuple[int, int]] | None = None) -> int:
    """How many entries of ``stream`` have ids after ``after_id`` (at most ``limit + 1``),
    read page by page from the client. No script: each XRANGE is one short command, so
    counting never holds the server (a Lua count held it 0.7 ms per 200 KB frame, 1.4 s
    for 2,000 of them); the price is that the entries cross the network. ``ids``: the ids
    counted are added there (:class:`BacklogGauge` counts only what is new the next time)."""
    n, start = 0, "(" + after_id
    while n <= limit:
        want = min(page, limit + 1 - n)
        entries = client.xrange(stream, start, "+", count=want)
        n += len(entries)
        if ids is not None:
            ids.extend(parse_id(as_str(e[0])) for e in entries)
        if len(entries) < want:
            break
        start = "(" + as_str(entries[-1][0])
    return n


def _trusted_lag(info: dict, group: dict, length: int, last_delivered: str) -> int | None:
    """Redis's own lag where it is exact, else None (then the entries are counted).

    Exact: an empty stream (0), or one whose oldest entry comes after the group's
    position (all of it is unread: ``length``). Otherwise Redis's lag where
    :func:`_lag_exact` trusts it; movers never XDEL and trim only acknowledged
    entries, so this is the usual path. Redis 6.2 has no lag."""
    if length == 0:
        return 0
    first = as_str(info.get("recorded-first-entry-id")) or _entry_id(info.get("first-entry"))
    if first and parse_id(first) > parse_id(last_delivered):
        return length
    return int(group["lag"]) if _lag_exact(info, group, length) else None


def _lag_exact(info: dict, group: dict, length: int) -> bool:
    """Redis's ``lag`` (7.0+) is trusted only while nothing was ever deleted from the stream (XDEL
    leaves it nil or wrong for good, redis/redis#13337) and it fits in the stream (a trim past the
    group's position leaves it too high, #13957)."""
    lag = group.get("lag")
    return lag is not None and as_str(info.get("max-deleted-entry-id")) == "0-0" and int(lag) <= length


def probe_usable(*answers: object) -> bool:
    """The XINFO answers of a trim probe (a pipeline's, ``raise_on_error=False``, before a reader's read):
    True where all came (judge by them, :func:`trimmed_past`), False where the stream or group is not there
    yet (nothing to judge). A user refused XINFO (NoPermissionError: the caller probes no more) and any
    other fatal error are raised."""
    refused = next((a for a in answers if isinstance(a, redis.exceptions.NoPermissionError)), None)
    if refused is not None:
        raise refused
    for answer in answers:
        if isinstance(answer, Exception):
            if is_fatal(answer):
                raise answer
            return False
    return True


def trimmed_past(info: dict, position: str, ordinal: int | None = None) -> tuple[str, int | None] | None:
    """Whether entries after ``position`` (the id a reader read last, or was told to read after) were
    trimmed from the stream its XINFO STREAM ``info`` describes: ``(through, count)``, else None.
    The oldest entry held, ``through``, comes after ``position``: the stream was trimmed past it, and
    entries between them may have been removed. ``count``: how many were, where Redis 7 can tell
    (``ordinal``, the number of entries ever added up to ``position``, is known, and nothing was ever
    XDELed): entries added, less those held, less ``ordinal``; 0 is no gap. None: it cannot tell."""
    first = as_str(info.get("recorded-first-entry-id")) or _entry_id(info.get("first-entry"))
    if not first or parse_id(first) <= parse_id(position) or int(info.get("length") or 0) == 0:
        return None
    added, deleted = info.get("entries-added"), as_str(info.get("max-deleted-entry-id"))
    if ordinal is None or added is None or deleted != "0-0":
        return first, None
    count = int(added) - int(info["length"]) - ordinal
    return (first, count) if count > 0 else None


def ordinal_at(info: dict, entry_id: str) -> int | None:
    """The number of entries ever added to the stream up to ``entry_id``, where ``info`` (XINFO STREAM,
    Redis 7) says it: ``entry_id`` is its newest entry. None elsewhere (6.2: no ``entries-added``)."""
    added = info.get("entries-added")
    return int(added) if added is not None and as_str(info.get("last-generated-id")) == entry_id else None


def _entry_id(entry: object) -> str | None:
    return as_str(entry[0]) if entry else None


def acked_below(last_delivered: str, oldest_pending: str | None) -> str:
    """The id below which every entry was delivered to the group and acknowledged: past its
    ``last-delivered-id``, or its oldest pending entry where one is pending."""
    ms, seq = parse_id(last_delivered)
    return format_id(min((ms, seq + 1), parse_id(oldest_pending)) if oldest_pending else (ms, seq + 1))


def _backlog_answers(client: redis.Redis, keys: Keys, light: bool) -> tuple[int, object, object, object]:
    """One round trip, no script: LLEN of the intake, XINFO GROUPS, XINFO STREAM (``light``: XLEN)
    of the frames stream, and XPENDING's summary. A missing list is 0 and a missing stream or group
    an answer (the exception object); anything else (WRONGTYPE, NOPERM) is raised, but for a refused
    XLEN, returned (:class:`BacklogGauge` falls back to XINFO STREAM)."""
    pipe = client.pipeline(transaction=False)
    pipe.llen(keys.intake)
    pipe.xinfo_groups(keys.frames)
    if light:
        pipe.xlen(keys.frames)
    else:
        pipe.xinfo_stream(keys.frames)
    pipe.xpending(keys.frames, keys.group)
    intake, groups, info, pend = pipe.execute(raise_on_error=False)
    if isinstance(intake, Exception):
        raise intake
    for answer in (groups, info, pend):
        if light and answer is info and isinstance(answer, redis.exceptions.NoPermissionError):
            continue
        if isinstance(answer, Exception) and not (isinstance(answer, redis.ResponseError) and not is_fatal(answer)
                                                  and not str(answer).startswith("WRONGTYPE")):
            raise answer
    return int(intake), groups, info, pend


def _position(group: dict, pend: object) -> tuple[int, str, str | None]:
    """The group's pending count, ``last-delivered-id`` and oldest pending id."""
    pending = int(group.get("pending") or 0)
    delivered = as_str(group.get("last-delivered-id")) or "0-0"
    oldest = as_str(pend["min"]) if pending and not isinstance(pend, Exception) and pend.get("min") else None
    return pending, delivered, oldest


def _full_read(client: redis.Redis, keys: Keys, count_limit: int,
               count: _Counted | None = None) -> tuple[Backlog, bool | None]:
    """:func:`group_backlog`'s answer, and whether Redis's lag was exact there (:func:`_lag_exact`;
    None: no stream or no group, so no lag to judge). ``count``: where the entries after the
    group's position were counted from the client, what the count saw (:class:`BacklogGauge`)."""
    intake, groups, info, pend = _backlog_answers(client, keys, light=False)
    if isinstance(groups, Exception) or isinstance(info, Exception):  # no such key
        return Backlog(0, 0, True, intake=intake), None
    length = int(info["length"])
    first, last = _entry_id(info.get("first-entry")), _entry_id(info.get("last-entry"))
    g = find_group(groups, keys.group)
    if g is None:
        return Backlog(length, 0, True, length, None, first, last, intake), None
    pending, delivered, oldest = _position(g, pend)
    lag, exact = _trusted_lag(info, g, length, delivered), True
    if lag is None:
        ids = None if count is None else count.ids  # kept only by a gauge (group_backlog parses none)
        n = count_after(client, keys.frames, delivered, count_limit, ids=ids)
        lag, exact = min(n, count_limit + 1), n <= count_limit
        if count is not None:
            count.position = parse_id(delivered)
            count.looked_to = count.ids[-1] if count.ids else count.position
    backlog = Backlog(lag, pending, exact, length, acked_below(delivered, oldest), first, last, intake,
                      reported_lag(g))
    return backlog, _lag_exact(info, g, length)


def group_backlog(client: redis.Redis, keys: Keys, count_limit: int = 2_000) -> Backlog:
    """How many frames wait: the intake list's length (LLEN), and how far the consumer
    group is behind the frames stream (entries after the group's ``last-delivered-id``
    plus pending), and what trimming may remove.

    One round trip (LLEN, XINFO GROUPS, XINFO STREAM, XPENDING) and no script: Redis's
    lag where :func:`_trusted_lag` finds it exact; otherwise (Redis 6.2, or after
    an XDEL) the entries after the group's position are counted from the client,
    at most ``count_limit + 1`` (then ``exact`` is False: a lower bound).
    No stream: all zero but the intake. No group yet: the stream length counts as lag.
    XINFO STREAM's reply holds the stream's first and last entries whole (two frames):
    a caller that measures often holds a :class:`BacklogGauge`.
    """
    return _full_read(client, keys, count_limit)[0]


FULL_READ_S = 5.0  # BacklogGauge: a full read at most this long after the one before
COUNT_AGAIN_S = 30.0  # BacklogGauge, where it counts from the client: a whole count again this often


class BacklogGauge:
    """:func:`group_backlog` for a caller that measures often (a producer every few jobs and each
    poll while it waits, `status --watch`, the dashboard), without reading frames back: the full
    read's XINFO STREAM answers the stream's first and last entries whole (two frames, 3 MB each at
    1080p PNG), and a dropping producer that measured each frame of a 30 fps camera pulled about
    180 MB/s from the Redis it found overloaded.

    The full read is made at the first :meth:`read` and then at most every ``full_every_s``
    (``clock``'s seconds); between, a light one: LLEN, XINFO GROUPS (Redis's lag), XLEN, XPENDING
    (a few hundred bytes). Its lag is taken where the last full read found Redis's lag exact (nothing
    ever XDELed, the lag within the stream) and it still fits in the stream (a trim past the
    group leaves it too high); an XDEL since is found by the next full read, at most
    ``full_every_s`` later (on Redis 7.0 one of an unread entry leaves the lag nil: the full read
    follows at once; later releases may estimate it instead, so that period bounds it).

    Where Redis's lag is not to be trusted (Redis 6.2 has none; a stream with an XDEL in its past)
    the full read counts the entries after the group's position from the client, which moves them
    over the wire (526 MB a read for 500 unread frames of 1 MB). The gauge keeps the ids it counted,
    and until ``count_again_s`` after that count a read is a light one that counts only the entries
    after the last id it has (those new since), keeping its ids after the group's position: the same
    answer while nobody deletes unread entries by hand (XDEL, XTRIM past the group), which the next
    whole count finds (or sooner: a count over the stream's length, a group moved back). A user that
    may not XLEN (the rules of before: said once) makes every read a full one. The answers are the
    full read's, but for the entry ids a light read has not (``first_id``, ``last_id``: None)."""

    def __init__(self, client: redis.Redis, keys: Keys, full_every_s: float = FULL_READ_S,
                 clock: Callable[[], float] = time.monotonic, count_again_s: float = COUNT_AGAIN_S):
        self.client = client
        self.keys = keys
        self.full_every_s = full_every_s
        self.count_again_s = count_again_s
        self.clock = clock
        self._full_at: float | None = None  # the last full read (clock), None before the first
        self._exact: bool | None = None  # that read's judgement of Redis's lag (None: no group to judge)
        self._xlen_refused = False
        self._count: _Counted | None = None  # what the last count from the client saw, while it holds

    def read(self, count_limit: int = 2_000) -> Backlog:
        now = self.clock()
        if self._full_at is not None and not self._xlen_refused:
            backlog = None
            if self._exact is not False and now - self._full_at < self.full_every_s:
                backlog = self._light()
            elif self._exact is False and self._count is not None and now - self._full_at < self.count_again_s:
                backlog = self._light_count(count_limit)
            if backlog is not None:
                return backlog
        count = _Counted()
        backlog, self._exact = _full_read(self.client, self.keys, count_limit, count)
        self._full_at = now
        self._count = count if count.position is not None else None
        return backlog

    def _light_answers(self) -> tuple[int, object, int, object] | None:
        """LLEN, XINFO GROUPS, XLEN, XPENDING (a missing stream: XINFO GROUPS's error); None where the
        user may not XLEN (said once: every read is then a full one)."""
        intake, groups, length, pend = _backlog_answers(self.client, self.keys, light=True)
        if isinstance(length, redis.exceptions.NoPermissionError):
            self._xlen_refused = True
            log.warning("backlog: this Redis user may not XLEN %s (%s): measuring with XINFO STREAM, whose reply "
                        "holds the stream's first and last frames whole; grant +xlen as "
                        "deploy/k8s/base/redis/acl/moodstream-producer.rules does", self.keys.frames,
                        " ".join(str(length).split()))
            return None
        return intake, groups, int(length), pend

    def _light(self) -> Backlog | None:
        """The backlog without XINFO STREAM, by Redis's lag; None where it needs the full read."""
        answers = self._light_answers()
        if answers is None:
            return None
        intake, groups, length, pend = answers
        if isinstance(groups, Exception):  # no such key
            return Backlog(0, 0, True, intake=intake)
        g = find_group(groups, self.keys.group)
        if g is None:
            return Backlog(length, 0, True, length, intake=intake)
        pending, delivered, oldest = _position(g, pend)
        lag = 0 if length == 0 else g.get("lag")
        if lag is None or int(lag) > length or (length and self._exact is not True):
            return None
        return Backlog(int(lag), pending, True, length, acked_below(delivered, oldest), intake=intake,
                       reported_lag=reported_lag(g))

    def _light_count(self, count_limit: int) -> Backlog | None:
        """The backlog without XINFO STREAM where it is counted: the ids kept after the group's
        position, and a count of the entries after the last one looked at; None where it needs the
        whole count again (the group moved back, the count over the stream's length)."""
        answers = self._light_answers()
        if answers is None or isinstance(answers[1], Exception):  # XLEN refused, or no stream now
            return None
        intake, groups, length, pend = answers
        g = find_group(groups, self.keys.group)
        if g is None:
            return None
        pending, delivered, oldest = _position(g, pend)
        count = self._count
        position = parse_id(delivered)
        if count is None or position < count.position:
            return None
        kept = count.ids[bisect.bisect_right(count.ids, position):]
        start = max(position, count.looked_to)
        new: list[tuple[int, int]] = []
        want = count_limit + 1 - len(kept)
        if want > 0:
            count_after(self.client, self.keys.frames, format_id(start), want - 1, ids=new)
        n = len(kept) + len(new)
        if n > length:  # entries kept were deleted (by hand): count it all again
            return None
        count.ids, count.position = kept + new, position
        if want > 0:  # with nothing new, looked to the end: the next count starts after `start`
            count.looked_to = new[-1] if new else start
        return Backlog(min(n, count_limit + 1), pending, n <= count_limit, length, acked_below(delivered, oldest),
                       intake=intake, reported_lag=reported_lag(g))


@dataclass
class _Counted:
    """What a count from the client saw (:class:`BacklogGauge`): the ids after the group's position
    (sorted), the last id it looked at (``looked_to``: entries after it are not counted yet) and the
    group's position then (None: nothing was counted)."""

    ids: list[tuple[int, int]] = field(default_factory=list)
    looked_to: tuple[int, int] = (0, 0)
    position: tuple[int, int] | None = None


def as_str(v: object) -> str | None:
    """A reply field as str (clients here do not decode responses); bytes that are not UTF-8
    (anyone with write access may put them in a heartbeat or dead letter) as U+FFFD, not a
    UnicodeDecodeError (it crashed `status` and showed the dashboard's Redis as down)."""
    return v.decode(errors="replace") if isinstance(v, bytes) else (None if v is None else str(v))


class Backoff:
    """Capped exponential backoff with jitter: 0.1 s, 0.2 s, 0.4 s ... at most ``cap_s``."""

    def __init__(self, base_s: float = 0.1, cap_s: float = 5.0):
        self.base_s = base_s
        self.cap_s = cap_s
        self.attempt = 0

    def next_delay_s(self) -> float:
        delay = min(self.cap_s, self.base_s * 2 ** self.attempt)
        self.attempt += 1
        return delay * random.uniform(0.8, 1.0)

    def sleep(self) -> float:
        delay = self.next_delay_s()
        time.sleep(delay)
        return delay

    def reset(self) -> None:
        self.attempt = 0
