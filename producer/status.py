"""``moodstream status``: one screen for an operator (no torch, no worker code).

Live workers (from their heartbeats), the consumer group's backlog, results
and frames/s over the last minute, dead letters by reason. The functions are
usable on their own::

    from moodstream.producer.status import live_workers, snapshot
    snapshot(client, Keys("moodstream"))   # -> the dict `moodstream status --json` prints

Times are Redis server time (``TIME``): stream ids are minted from it, and
workers on other hosts may have clocks of their own.
"""

from __future__ import annotations

import json
import time
from collections import Counter

import click
import redis

from moodstream.shared.keys import Keys
from moodstream.shared.settings import Settings
from moodstream.shared.transport import as_str, connect, group_backlog

INT_FIELDS = ("pid", "served", "batches", "dead_lettered", "in_hand", "started_at_ms", "beat_at_ms")
PAGE = 1000  # entries per XRANGE / XREVRANGE call
COUNT_LIMIT = 100_000  # at most this many entries are read to count a window or the dead letters


def server_time_ms(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def live_workers(client: redis.Redis, keys: Keys, now_ms: int | None = None) -> list[dict]:
    """One dict per live heartbeat (worker, host, pid, status, device, model_version, served,
    batches, dead_lettered, in_hand, started_at_ms, beat_at_ms, and ``age_s`` of the last beat),
    sorted by worker name. A heartbeat expires ``heartbeat_ttl_s`` after the worker's last beat."""
    now = server_time_ms(client) if now_ms is None else now_ms
    names = sorted(set(client.scan_iter(match=keys.heartbeat_pattern, count=1000)))
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.hgetall(name)
    workers = []
    for raw in pipe.execute() if names else []:
        if not raw:  # expired between SCAN and HGETALL
            continue
        w: dict = {as_str(k): as_str(v) for k, v in raw.items()}
        for f in INT_FIELDS:
            w[f] = _int(w.get(f))
        w["age_s"] = round(max(0, now - w["beat_at_ms"]) / 1000, 1) if w["beat_at_ms"] is not None else None
        workers.append(w)
    return sorted(workers, key=lambda w: w.get("worker") or "")


def keda_lag(client: redis.Redis, keys: Keys) -> int | None:
    """The group's ``lag`` from XINFO GROUPS: the figure KEDA's redis-streams trigger
    compares with ``lagCount``. Redis reports it as nil (None here) after XDEL or a
    MAXLEN trim past the group's position, and can report it wrong around such
    deletions; ``backlog`` in :func:`snapshot` is our corrected figure
    (:func:`shared.transport.group_backlog`). None also when there is no group yet."""
    try:
        groups = client.xinfo_groups(keys.frames)
    except redis.ResponseError:  # no such stream
        return None
    for g in groups:
        if as_str(g.get("name")) == keys.group:
            lag = g.get("lag")
            return None if lag is None else int(lag)
    return None


def count_since(client: redis.Redis, stream: str, since_ms: int, limit: int = COUNT_LIMIT) -> tuple[int, bool]:
    """(entries with an id time >= since_ms, whether counting stopped at ``limit``)."""
    n, start = 0, f"{max(0, since_ms)}-0"
    while n < limit:
        want = min(PAGE, limit - n)
        page = client.xrange(stream, start, "+", count=want)
        n += len(page)
        if len(page) < want:
            return n, False
        start = "(" + as_str(page[-1][0])
    return n, bool(client.xrange(stream, start, "+", count=1))


def dead_letter_reasons(client: redis.Redis, keys: Keys, limit: int = COUNT_LIMIT) -> dict:
    """{"length", "by_reason": {reason: n}, "counted", "truncated", "note"?} over the
    dead-letter stream, newest first, at most ``limit`` entries."""
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


def redis_info(client: redis.Redis) -> dict:
    """Server version and mode; never the URL or credentials."""
    try:
        info = client.info("server")
    except redis.ResponseError:  # an ACL user without INFO
        return {"version": None, "mode": None}
    return {"version": as_str(info.get("redis_version")), "mode": as_str(info.get("redis_mode"))}


def snapshot(client: redis.Redis, keys: Keys, window_s: float = 60.0) -> dict:
    """Everything ``moodstream status`` shows, as one JSON-ready dict."""
    now = server_time_ms(client)
    backlog = group_backlog(client, keys)
    last, truncated = count_since(client, keys.results, now - int(window_s * 1000))
    return {
        "time_ms": now,
        "prefix": keys.prefix,
        "stream": keys.frames,
        "group": keys.group,
        "workers": live_workers(client, keys, now),
        "backlog": {"lag": backlog.lag, "pending": backlog.pending, "total": backlog.total, "exact": backlog.exact},
        "lag": keda_lag(client, keys),
        "results": {"length": int(client.xlen(keys.results)), "last_minute": last, "window_s": window_s,
                    "truncated": truncated},
        "frames_per_s": round(last / window_s, 2),
        "dead_letters": dead_letter_reasons(client, keys),
        "redis": redis_info(client),
    }


def render(snap: dict) -> str:
    """The snapshot as a readable screen."""
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(snap["time_ms"] / 1000))
    lines = [f"moodstream status  {when}  prefix {snap['prefix']}  redis {snap['redis']['version'] or '?'}", ""]
    workers = snap["workers"]
    lines.append(f"workers: {len(workers)} live" + ("" if workers else " (no heartbeat: nothing consumes "
                                                                       f"{snap['stream']})"))
    if workers:
        lines.append(f"  {'worker':<28} {'status':<8} {'device':<8} {'model':<36} {'served':>8} {'batches':>7} "
                     f"{'dead':>5} {'in hand':>7} {'seen':>6}")
        for w in workers:
            seen = "-" if w["age_s"] is None else f"{w['age_s']:.0f}s"
            lines.append(f"  {_cut(w.get('worker'), 28):<28} {_cut(w.get('status'), 8):<8} "
                         f"{_cut(w.get('device'), 8):<8} {_cut(w.get('model_version'), 36):<36} "
                         f"{_num(w['served']):>8} {_num(w['batches']):>7} {_num(w['dead_lettered']):>5} "
                         f"{_num(w['in_hand']):>7} {seen:>6}")
    b = snap["backlog"]
    keda = "nil (use backlog)" if snap["lag"] is None else str(snap["lag"])
    lines += ["", f"backlog: {b['total']}{'' if b['exact'] else '+'} = lag {b['lag']} undelivered + "
                  f"{b['pending']} pending   (group {snap['group']}; XINFO lag, as KEDA reads it: {keda})"]
    r = snap["results"]
    lines.append(f"results: {r['length']} in the stream, {r['last_minute']}{'+' if r['truncated'] else ''} in the "
                 f"last {r['window_s']:g} s = {snap['frames_per_s']:.2f} frames/s")
    d = snap["dead_letters"]
    reasons = ", ".join(f"{k} {v}" for k, v in d["by_reason"].items()) or "none"
    lines.append(f"dead letters: {d['length']}  ({reasons})" + (f"  [{d['note']}]" if d.get("note") else ""))
    return "\n".join(lines)


def _int(v: str | None) -> int | None:
    try:
        return int(v) if v is not None else None
    except ValueError:
        return None


def _num(v: int | None) -> str:
    return "-" if v is None else str(v)


def _cut(v: str | None, n: int) -> str:
    v = v or "-"
    return v if len(v) <= n else v[: n - 1] + "~"


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (with --watch: one per line).")
@click.option("--watch", type=click.FloatRange(min=0.2), is_flag=False, flag_value=2.0, default=None,
              metavar="[SECONDS]", help="Redraw every SECONDS (default 2) until Ctrl-C.")
@click.option("--window-s", type=click.FloatRange(min=1), default=60.0, show_default=True,
              help="Frames/s is counted over results of the last this many seconds.")
@click.option("--redis-url", help="Default: $MOODSTREAM_REDIS_URL.")
@click.option("--prefix", help="Key prefix (default: $MOODSTREAM_PREFIX or 'moodstream').")
def status(as_json, watch, window_s, redis_url, prefix):
    """One screen for operators: live workers, backlog, results and dead letters, frames/s.

    Workers come from their heartbeats (device, model version, frames served,
    last seen); backlog is the consumer group's undelivered lag plus pending
    entries, beside the XINFO GROUPS lag that KEDA's lagCount reads. Exits 1
    with one line when Redis cannot be reached.
    """
    settings = Settings.from_env(redis_url=redis_url, prefix=prefix)
    keys = Keys.from_settings(settings)
    client = connect(settings.redis_url, socket_timeout_s=10.0)
    if watch is None:
        click.echo(_one(client, keys, window_s, as_json))
        return
    try:
        while True:
            try:
                text = _one(client, keys, window_s, as_json)
            except click.ClickException as exc:  # Redis went away: say so, keep watching
                text = json.dumps({"error": exc.message}) if as_json else exc.message
            if not as_json:
                click.clear()
            click.echo(text)
            time.sleep(watch)
    except KeyboardInterrupt:
        pass


def _one(client: redis.Redis, keys: Keys, window_s: float, as_json: bool) -> str:
    try:
        snap = snapshot(client, keys, window_s)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise click.ClickException(f"cannot reach Redis ({exc})") from None
    except redis.RedisError as exc:  # e.g. NOPERM for an ACL user without XINFO / SCAN
        raise click.ClickException(f"Redis refused a status command ({exc})") from None
    return json.dumps(snap) if as_json else render(snap)
