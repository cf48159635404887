"""``moodstream status``: one screen for an operator (no torch, no worker code).

Live workers (from their heartbeats; busy while they hold entries of the
group), the backlog (the intake list's length plus the consumer group's lag
and pending), results and frames/s now (last 5 s) and
over the last minute, dead letters by reason, and the track stage's late
results (:func:`track_stats`) when it counted any. The functions are usable on
their own::

    from moodstream.producer.status import live_workers, snapshot
    snapshot(client, Keys("moodstream"))   # -> the dict `moodstream status --json` prints

Times are Redis server time (``TIME``): stream ids are minted from it, and
workers on other hosts may have clocks of their own.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter

import click
import redis

from moodstream.options import FiniteRange, setting_option, stop_ends_command, to_stderr
from moodstream.shared.keys import Keys
from moodstream.shared.retry import RedisRetry
from moodstream.shared.settings import Settings
from moodstream.shared.stop_signals import deferred_stop
from moodstream.shared.table import plural, printable
from moodstream.shared.transport import (BacklogGauge, as_str, check_connection, connect, group_backlog, group_info,
                                         is_fatal, redact, reported_lag)

log = logging.getLogger(__name__)

INT_FIELDS = ("pid", "served", "batches", "dead_lettered", "in_hand", "started_at_ms", "beat_at_ms")
PAGE = 1000  # entries per XRANGE / XREVRANGE call, and per call of COUNT_PAGE_SCRIPT
COUNT_LIMIT = 100_000  # at most this many entries are counted in a results window
# One page of a results window counted in Redis: how many entries from ARGV[1] (at most ARGV[2]) and
# the last one's id, never the entries. XRANGE sends each whole, every face of its frame: 100,000
# results in the window were about 170 MB sent per snapshot, each redraw of `status --watch`, now
# 6 KB (docs/results/status_results_window.json). A page a call: no script holds the server long.
COUNT_PAGE_SCRIPT = """
local page = redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', ARGV[2])
if #page == 0 then return {0} end
return {#page, page[#page][1]}
"""
# dead letters counted by reason, newest first. Each carries up to 4 KiB of its message: reading
# 100,000 sent 451 MB and took 6 s a redraw of `status --watch`, 10,000 (the default MAXLEN) 45 MB;
# 1,000 send 4.5 MB (docs/results/status_dead_letters.json). The dashboard counts the same.
DEAD_COUNT_LIMIT = 1_000
NOW_WINDOW_S = 5.0  # "frames/s now" counts the results of the last this many seconds


def server_time_ms(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def holding(client: redis.Redis, keys: Keys) -> dict[str, int]:
    """Entries each consumer of the workers' group holds (delivered, not yet acked), from
    XINFO CONSUMERS: what a worker has in hand now, between heartbeats too. {} without a group."""
    try:
        consumers = client.xinfo_consumers(keys.frames, keys.group)
    except redis.ResponseError as exc:  # no stream or no group; a refused command is raised
        if is_fatal(exc):
            raise
        return {}
    return {as_str(c.get("name")) or "": int(c.get("pending") or 0) for c in consumers}


def live_workers(client: redis.Redis, keys: Keys, now_ms: int | None = None) -> list[dict]:
    """One dict per live heartbeat (worker, host, pid, status, device, model_version, served,
    batches, dead_lettered, in_hand, started_at_ms, beat_at_ms, and ``age_s`` of the last beat),
    sorted by worker name. A heartbeat expires ``heartbeat_ttl_s`` after the worker's last beat.

    The heartbeat is written between batches, so it says "idle" while a worker drains a
    backlog; ``pending`` (entries the worker holds in the group now, :func:`holding`) corrects
    it: a worker holding entries is ``busy`` (the beat's own word stays in ``beat_status``).
    ``served`` is as of the last beat (``age_s`` ago).

    The heartbeats are found in the workers' index (``Keys.heartbeats``, one ZRANGE), then read
    in one pipeline: a few commands however many other keys the database holds. Where the index
    does not exist (workers of a release that did not write it: a rolling upgrade), by SCAN MATCH
    of the heartbeat keys, which walks the whole keyspace; where it exists it is trusted, and a
    worker that does not write it is not listed."""
    now = server_time_ms(client) if now_ms is None else now_ms
    held = holding(client, keys)
    names = _heartbeat_keys(client, keys)
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.hgetall(name)
    workers = []
    for name, raw in zip(names, pipe.execute(raise_on_error=False) if names else []):
        if isinstance(raw, redis.ResponseError):  # a key of another type under the heartbeat pattern
            log.warning("status: %s is not a worker's heartbeat (%s); left out", printable(as_str(name)), raw)
            continue
        if not raw:  # expired or removed (a worker that left) since its last beat in the index, or since SCAN
            continue
        w: dict = {as_str(k): as_str(v) for k, v in raw.items()}
        if not w.get("worker"):  # a beat without its name: the key names the worker
            w["worker"] = as_str(name)[len(keys.heartbeat("")):]
        for f in INT_FIELDS:
            w[f] = _int(w.get(f))
        beat = w["beat_at_ms"]  # none or not a time (<= 0): its age is unknown, not 56 years
        w["age_s"] = round(max(0, now - beat) / 1000, 1) if beat is not None and beat > 0 else None
        w["pending"] = held.get(w.get("worker") or "", 0)
        w["beat_status"] = w.get("status")
        if w["pending"] and w.get("status") == "idle":
            w["status"] = "busy"
        workers.append(w)
    return sorted(workers, key=lambda w: w.get("worker") or "")


def _heartbeat_keys(client: redis.Redis, keys: Keys) -> list:
    """The heartbeat keys to read, sorted: from the index, or by SCAN where there is none (a
    sorted set is never empty: no members is no key). An index of another type: SCAN, one line."""
    try:
        indexed = client.zrange(keys.heartbeats, 0, -1)
    except redis.ResponseError as exc:  # WRONGTYPE; a refused command (NOPERM) is raised
        if is_fatal(exc):
            raise
        log.warning("status: %s is not the workers' index (%s); heartbeats found by SCAN", keys.heartbeats, exc)
        indexed = []
    if indexed:
        return sorted({keys.heartbeat(as_str(name)) for name in indexed})
    return sorted(set(client.scan_iter(match=keys.heartbeat_pattern, count=1000)))


def keda_lag(client: redis.Redis, keys: Keys) -> int | None:
    """The group's ``lag`` from XINFO GROUPS: the figure KEDA's redis-streams trigger
    compares with ``lagCount``. Redis reports it as nil (None here) after XDEL or a
    MAXLEN trim past the group's position, and can report it wrong around such
    deletions; ``backlog`` in :func:`snapshot` is our corrected figure
    (:func:`shared.transport.group_backlog`). None also when there is no group yet. A caller that
    measures the backlog has it in that reply (``Backlog.reported_lag``: :func:`snapshot`)."""
    return reported_lag(group_info(client, keys.frames, keys.group))


def count_since(client: redis.Redis, stream: str, since_ms: int, limit: int = COUNT_LIMIT) -> tuple[int, bool]:
    """(entries with an id time >= since_ms, whether counting stopped at ``limit``).

    Counted in Redis, a page at a time (:data:`COUNT_PAGE_SCRIPT`): only counts and ids are
    sent. Where Redis refuses the script (an ACL user without EVAL, scripting disabled), by
    XRANGE, which sends every entry whole."""
    page = _count_page
    n, start = 0, f"{max(0, since_ms)}-0"
    while True:
        want = min(PAGE, limit - n) if n < limit else 1  # past the limit: is there one more?
        try:
            got, last = page(client, stream, start, want)
        except redis.ResponseError as exc:
            if page is _xrange_page:  # the command's own error (WRONGTYPE, NOPERM): as it was
                raise
            log.debug("status: counting %s by XRANGE, the script was refused: %s", printable(stream), exc)
            page = _xrange_page
            continue
        if n >= limit:
            return n, got > 0
        n += got
        if got < want:
            return n, False
        start = "(" + last


def _count_page(client: redis.Redis, stream: str, start: str, count: int) -> tuple[int, str]:
    """(entries from ``start``, at most ``count``, the last one's id), counted in Redis."""
    reply = client.eval(COUNT_PAGE_SCRIPT, 1, stream, start, count)
    return int(reply[0]), as_str(reply[1]) if len(reply) > 1 else ""


def _xrange_page(client: redis.Redis, stream: str, start: str, count: int) -> tuple[int, str]:
    """As :func:`_count_page`, from the entries themselves."""
    page = client.xrange(stream, start, "+", count=count)
    return len(page), as_str(page[-1][0]) if page else ""


def dead_letter_reasons(client: redis.Redis, keys: Keys, limit: int = DEAD_COUNT_LIMIT) -> dict:
    """{"length", "by_reason": {reason: n}, "counted", "truncated", "note"?} over the
    dead-letter stream, newest first, at most ``limit`` entries (Redis cannot send one field
    of an entry: each costs its whole message excerpt; "note" says when not all were counted)."""
    length = int(client.xlen(keys.dead))
    reasons: Counter = Counter()
    counted, end = 0, "+"
    while counted < limit:
        want = min(PAGE, limit - counted)
        page = client.xrevrange(keys.dead, end, "-", count=want)
        for _, fields in page:
            reasons[as_str(fields.get(b"reason", fields.get("reason"))) or "?"] += 1
        counted += len(page)
        if len(page) < want:
            break
        end = "(" + as_str(page[-1][0])
    out = {"length": length, "by_reason": dict(reasons.most_common()), "counted": counted,
           "truncated": counted < length}
    if out["truncated"]:
        out["note"] = f"reasons counted over the newest {counted} of {length} dead letters"
    return out


MAX_TIME_MS = 253402300800000  # 10000-01-01: a since_ms past it is no time (time_t overflows further on)


def track_stats(client: redis.Redis, keys: Keys) -> dict | None:
    """{"late", "late_after_run_ended", "since_ms"} from ``<prefix>:track:stats``: the results every track
    stage of the deployment published untracked because they came late, and of them those whose run's
    summary was already out (in no summary; the others are in their run's ``late_frames``); None while
    there is none (or the key cannot be read: another type, a user without HGETALL there)."""
    try:
        raw = client.hgetall(keys.track_stats)
    except redis.ResponseError as exc:  # a user whose keys it is not (the dashboard's) reads all the rest
        if is_fatal(exc) and not isinstance(exc, redis.exceptions.NoPermissionError):
            raise
        log.debug("status: cannot read %s: %s", keys.track_stats, exc)
        return None
    stats = {as_str(k): _int(as_str(v)) for k, v in raw.items()}  # any writer's: none is trusted to be a count
    late = max(0, stats.get("late") or 0)
    gaps, trimmed = max(0, stats.get("trimmed_gaps") or 0), max(0, stats.get("trimmed_unread") or 0)
    if late <= 0 and gaps <= 0:
        return None
    since = stats.get("since_ms")
    return {"late": late, "late_after_run_ended": min(late, max(0, stats.get("late_after_run_ended") or 0)),
            "trimmed_gaps": gaps, "trimmed_unread": trimmed if gaps else 0,
            "since_ms": since if since is not None and 0 < since < MAX_TIME_MS else None}


def redis_info(client: redis.Redis) -> dict:
    """Server version and mode; never the URL or credentials."""
    try:
        info = client.info("server")
    except redis.ResponseError:  # an ACL user without INFO
        return {"version": None, "mode": None}
    return {"version": as_str(info.get("redis_version")), "mode": as_str(info.get("redis_mode"))}


def snapshot(client: redis.Redis, keys: Keys, window_s: float = 60.0, gauge: BacklogGauge | None = None) -> dict:
    """Everything ``moodstream status`` shows, as one JSON-ready dict. ``frames_per_s`` is
    the average over ``window_s``; ``frames_per_s_now`` over the last :data:`NOW_WINDOW_S`
    (both from the results stream's entry ids, which are Redis times). ``gauge``: the backlog
    of a caller that redraws (``--watch``), which reads no frame back between its full reads."""
    try:
        return _snapshot(client, keys, window_s, gauge)
    except redis.ResponseError as exc:  # a key of another type: which one, said (ConfigError)
        from moodstream.shared.transport import name_wrong_type

        name_wrong_type(client, exc, {keys.frames: "stream", keys.results: "stream", keys.dead: "stream",
                                      keys.intake: "list"})
        raise


def _snapshot(client: redis.Redis, keys: Keys, window_s: float, gauge: BacklogGauge | None) -> dict:
    now = server_time_ms(client)
    backlog = gauge.read() if gauge is not None else group_backlog(client, keys)
    last, truncated = count_since(client, keys.results, now - int(window_s * 1000))
    now_s = min(NOW_WINDOW_S, window_s)
    recent, recent_truncated = count_since(client, keys.results, now - int(now_s * 1000))
    return {
        "time_ms": now,
        "prefix": keys.prefix,
        "stream": keys.frames,
        "group": keys.group,
        "workers": live_workers(client, keys, now),
        "intake": backlog.intake,  # frames producers pushed to <prefix>:intake that no worker has moved yet
        "backlog": {"intake": backlog.intake, "lag": backlog.lag, "pending": backlog.pending, "total": backlog.total,
                    "exact": backlog.exact},
        "lag": backlog.reported_lag,  # keda_lag's, from the backlog's XINFO GROUPS
        "results": {"length": int(client.xlen(keys.results)), "last_minute": last, "window_s": window_s,
                    "truncated": truncated, "recent": recent, "recent_window_s": now_s,
                    "recent_truncated": recent_truncated},
        "frames_per_s": round(last / window_s, 2),
        "frames_per_s_now": round(recent / now_s, 2),
        "dead_letters": dead_letter_reasons(client, keys),
        "track": track_stats(client, keys),
        "redis": redis_info(client),
    }


def render(snap: dict) -> str:
    """The snapshot as a readable screen."""
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(snap["time_ms"] / 1000))
    # the prefix is checked (Keys); the version is the server's own words
    lines = [f"moodstream status  {when}  prefix {snap['prefix']}  redis {printable(snap['redis']['version'] or '?')}",
             ""]
    workers = snap["workers"]
    lines.append(f"workers: {len(workers)} live" + ("" if workers else " (no heartbeat: nothing consumes "
                                                                       f"{snap['stream']})"))
    if workers:
        # served / batches / dead: as of the worker's last beat ("beat"); in hand: entries it holds now
        lines.append(f"  {'worker':<28} {'status':<8} {'device':<8} {'model':<36} {'served@beat':>11} "
                     f"{'batches':>7} {'dead':>5} {'in hand':>7} {'seen':>6}")
        for w in workers:
            seen = "-" if w["age_s"] is None else f"{w['age_s']:.0f}s"
            lines.append(f"  {_cut(w.get('worker'), 28):<28} {_cut(w.get('status'), 8):<8} "
                         f"{_cut(w.get('device'), 8):<8} {_cut(w.get('model_version'), 36):<36} "
                         f"{_num(w['served']):>11} {_num(w['batches']):>7} {_num(w['dead_lettered']):>5} "
                         f"{_num(w.get('pending')):>7} {seen:>6}")
    b = snap["backlog"]
    keda = "nil (use backlog)" if snap["lag"] is None else str(snap["lag"])
    lines += ["", f"backlog: {b['total']}{'' if b['exact'] else '+'} = {b.get('intake', 0)} in the intake (not yet "
                  f"moved) + lag {b['lag']} undelivered + {b['pending']} pending   (group {snap['group']}; XINFO lag, "
                  f"as KEDA reads it: {keda})"]
    r = snap["results"]
    lines.append(f"results: {r['length']} in the stream; {snap['frames_per_s_now']:.2f} frames/s now "
                 f"({r['recent']}{'+' if r['recent_truncated'] else ''} in the last {r['recent_window_s']:g} s), "
                 f"{snap['frames_per_s']:.2f} average ({r['last_minute']}{'+' if r['truncated'] else ''} in the "
                 f"last {r['window_s']:g} s)")
    d = snap["dead_letters"]
    reasons = ", ".join(f"{_cut(k, 60)} {v}" for k, v in d["by_reason"].items()) or "none"
    lines.append(f"dead letters: {d['length']}  ({reasons})" + (f"  [{d['note']}]" if d.get("note") else ""))
    lines += track_lines(snap.get("track"))
    return "\n".join(lines)


def track_lines(track: dict | None) -> list[str]:
    """What `status` and the dashboard say of the track stage's figures (:func:`track_stats`): its results
    trimmed before it read them, and its late ones; nothing while it counted none."""
    if not track:
        return []
    lines = []
    late, after = track["late"], track["late_after_run_ended"]
    since = "" if track.get("since_ms") is None else \
        " since " + time.strftime("%Y-%m-%d %H:%M", time.localtime(track["since_ms"] / 1000))
    if track.get("trimmed_gaps"):
        gaps, n = track["trimmed_gaps"], track.get("trimmed_unread") or 0
        what = f"{plural(n, 'result')} trimmed" if n else "results may have been trimmed"
        lines.append(f"track stage: {what} from the results stream before it read them{since} "
                     f"({plural(gaps, 'gap')}): in no track or summary (the stream keeps about results_maxlen "
                     "entries: run the stage beside the workers, or raise it)")
    if late:
        where = []
        if after:
            where.append(f"{after} of them after {'its' if after == 1 else 'their'} run's summary was out (in no "
                         "summary)")
        if late > after:
            where.append("the rest in their runs' summaries (late_frames)" if after else
                         "each in its run's summary (late_frames)")
        lines.append(f"track stage: {late} late result{'' if late == 1 else 's'} published untracked{since} (over "
                     f"reorder_wait_ms): {', '.join(where)}")
    return lines


def _int(v: str | None) -> int | None:
    try:
        return int(v) if v is not None else None
    except ValueError:
        return None


def _num(v: int | None) -> str:
    return "-" if v is None else str(v)


def _cut(v: str | None, n: int) -> str:
    v = printable(v or "-")  # a heartbeat's fields are written by whoever may: no escape reaches the terminal
    return v if len(v) <= n else v[: n - 1] + "~"


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (with --watch: one per line).")
@click.option("--watch", type=FiniteRange(min=0.2), is_flag=False, flag_value=2.0, default=None,
              metavar="[SECONDS]", help="Redraw every SECONDS (default 2) until Ctrl-C.")
@click.option("--window-s", type=FiniteRange(min=1), default=60.0, show_default=True,
              help="The average frames/s is counted over results of the last this many seconds (beside it: "
                   "frames/s now, over the last 5 s).")
@setting_option("redis_url")
@setting_option("prefix")
def status(as_json, watch, window_s, redis_url, prefix):
    """One screen for operators: live workers, backlog, results and dead letters, frames/s.

    Workers come from their heartbeats (device, model version, frames served
    as of the last beat) and the consumer group (a worker holding entries is
    busy; "in hand" is what it holds now); backlog is the frames waiting in the
    intake list (pushed by producers, not yet moved to the stream by a worker)
    plus the group's undelivered lag plus pending entries, beside the XINFO
    GROUPS lag that KEDA's lagCount reads; frames/s now (last 5 s) beside the average over --window-s; dead
    letters by reason, counted over the newest 1,000 (a note says so when
    the stream holds more); the results the track stage published untracked
    because they came late, and of them those whose run's summary was out
    (in no summary), once it counted any (<prefix>:track:stats). A
    refused password is one line and exit 1 at once; a Redis that refuses
    connections is waited for up to MOODSTREAM_REDIS_WAIT_S (10 s; said at once on stderr), then one
    line and exit 1; --watch keeps waiting for a Redis that went away, and
    Ctrl-C (SIGTERM, SIGHUP) stops it, exit 130 (143, 129).
    """
    settings = Settings.from_env(redis_url=redis_url, prefix=prefix)
    keys = Keys.from_settings(settings)
    client = connect(settings.redis_url, socket_timeout_s=10.0)
    # one line for a bad URL, password, host or db; a Redis that refuses connections is waited for (10 s),
    # and said so at once
    check_connection(client, settings.redis_url, settings.redis_wait_s, notice=to_stderr)
    if watch is None:
        retry = RedisRetry("status", settings.redis_url, deadline_s=10.0)
        click.echo(_text(retry.call(lambda: snapshot(client, keys, window_s)), as_json))
        return

    def down(exc: BaseException) -> None:  # say so, keep watching (the one retry helper waits)
        text = f"cannot reach Redis at {redact(settings.redis_url)}: {' '.join(str(exc).split())}"
        if not as_json:
            click.clear()
        # the URL as typed and redis-py's words that repeat a socket's path: no escape reaches the terminal
        click.echo(json.dumps({"error": text}) if as_json else printable(text))

    retry = RedisRetry("status", settings.redis_url, cap_s=max(watch, 2.0), on_down=down)
    gauge = BacklogGauge(client, keys)  # a redraw read the stream's first and last frames whole
    with stop_ends_command():  # it was killed mid-screen by SIGTERM, and exited 0 on Ctrl-C
        while True:
            text = _text(retry.call(lambda: snapshot(client, keys, window_s, gauge)), as_json)
            with deferred_stop():  # a screen, a JSON line, is drawn whole
                if not as_json:
                    click.clear()
                click.echo(text)
            time.sleep(watch)


def _text(snap: dict, as_json: bool) -> str:
    return json.dumps(snap) if as_json else render(snap)
