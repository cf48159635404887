"""What `moodstream status` reads from Redis to count the results of its frames/s windows, per
call (one redraw of `status --watch`), with the window full.

Starts its own redis-server (shared.embedded), fills ``<prefix>:results`` with N results as a
worker writes them (worker/service.py: XADD of shared.wire.encode_result, three faces a frame,
ids spread over 55 s that end 5 s after filling starts: all in the default --window-s of 60 s
when status reads them, some in its last 5 s), then reads ``snapshot()`` as shipped and
``count_since()`` over the window and over the last 5 s, and the bytes Redis sent for each (INFO
stats total_net_output_bytes; the server has no other client). The same again as a user that
may not run scripts (``-@scripting``): what status reads where EVAL is refused. Sizes only,
no times (bytes do not depend on the machine's load)::

    .venv/bin/python docs/results/status_results_window.py --out docs/results/status_results_window.json
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import redis

from moodstream.producer import status
from moodstream.shared.embedded import EmbeddedRedis
from moodstream.shared.keys import Keys
from moodstream.shared.labels import LABELS
from moodstream.shared.record import Face, FrameResult
from moodstream.shared.wire import FIELD, encode_result

WINDOW_S = 60.0
WORKERS = [f"worker-{i}-{1000 + i}" for i in range(4)]


def result(i: int, rnd: random.Random) -> bytes:
    """A worker's result for frame ``i`` of a 1280x720 camera: three faces, each with its box,
    score, five landmarks, emotion and probabilities, and the calibrated detector box."""
    faces = []
    for _ in range(3):
        x, y, side = rnd.uniform(0, 1100), rnd.uniform(0, 560), rnd.uniform(40, 160)
        p = [rnd.random() for _ in LABELS]
        probs = {k: v / sum(p) for k, v in zip(LABELS, p)}
        faces.append(Face(box=(x, y, x + side, y + side * 1.2), score=rnd.uniform(0.9, 1.0),
                          landmarks=[(x + rnd.uniform(0, side), y + rnd.uniform(0, side)) for _ in range(5)],
                          emotion=max(probs, key=probs.get), probabilities=probs,
                          detector_box=(x - 2, y - 3, x + side + 2, y + side * 1.2 + 3)))
    now = 1733390000000 + i * 10
    return encode_result(FrameResult(
        job_id=f"{i:032x}", source=f"rtsp://camera-{i % 7}.example/stream1", frame=i, timestamp_s=i / 25,
        size=(1280, 720), faces=faces, model_version="emotion-resnet-quarter-2026-11-30-3f9c2a1b",
        timings_ms={"decode": 2.1, "detect": 31.5, "classify": 4.2, "queue_wait": 120.0},
        worker=WORKERS[i % len(WORKERS)], enqueued_at_ms=now, published_at_ms=now + 150))


def fill(client: redis.Redis, keys: Keys, n: int, seed: int = 0) -> int:
    """N results with ids spread over 55 s of server time that end 5 s from now; their mean size."""
    rnd = random.Random(seed)
    now = status.server_time_ms(client)
    start_ms, end_ms = now - 50_000, now + 5_000
    pipe = client.pipeline(transaction=False)
    total = 0
    for i in range(n):
        payload = result(i, rnd)
        total += len(payload)
        pipe.xadd(keys.results, {FIELD: payload}, id=f"{start_ms + i * (end_ms - start_ms) // n}-{i}")
        if len(pipe.command_stack) >= 1000:
            pipe.execute()
    pipe.execute()
    return total // n


def sent_bytes(admin: redis.Redis) -> int:
    return int(admin.info("stats")["total_net_output_bytes"])


def measure(admin: redis.Redis, call) -> dict:
    """The bytes Redis sent for one ``call()``, and what it returned."""
    before = sent_bytes(admin)
    out = call()
    return {"bytes": sent_bytes(admin) - before, "out": out}


def reads(admin: redis.Redis, client: redis.Redis, keys: Keys) -> dict:
    """snapshot() and count_since() over the window and the last 5 s, as ``client``."""
    now = status.server_time_ms(client)
    snap = measure(admin, lambda: status.snapshot(client, keys, WINDOW_S))
    r = snap.pop("out")["results"]
    window = measure(admin, lambda: status.count_since(client, keys.results, now - int(WINDOW_S * 1000)))
    recent = measure(admin, lambda: status.count_since(client, keys.results, now - int(status.NOW_WINDOW_S * 1000)))
    return {"snapshot": {**snap, "last_minute": r["last_minute"], "recent": r["recent"]},
            "count_window": {"bytes": window["bytes"], "counted": window["out"][0]},
            "count_recent": {"bytes": recent["bytes"], "counted": recent["out"][0]}}


def run(sizes: list[int]) -> tuple[str, list[dict]]:
    """(the server's version, one row per size), on a redis-server of our own."""
    keys, rows = Keys("bench"), []
    with EmbeddedRedis() as server:
        admin = redis.Redis.from_url(server.url)
        admin.execute_command("ACL", "SETUSER", "noscripts", "on", ">noscripts", "~*", "&*", "+@all", "-@scripting")
        as_admin = redis.Redis.from_url(server.url)
        no_scripts = redis.Redis.from_url(server.url, username="noscripts", password="noscripts")
        for n in sizes:
            admin.delete(keys.results)
            size = fill(admin, keys, n)
            row = {"entries": n, "entry_bytes": size,
                   "stream_mib": round(admin.memory_usage(keys.results, samples=0) / 2**20, 1),
                   "shipped": reads(admin, as_admin, keys), "scripts_refused": reads(admin, no_scripts, keys)}
            rows.append(row)
            print(json.dumps(row))
        version = admin.info("server")["redis_version"]
        for c in (admin, as_admin, no_scripts):
            c.close()
    return version, rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10000,100000", help="results in the window, comma-separated")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    version, rows = run([int(s) for s in args.sizes.split(",")])
    report = {"what": "bytes Redis sends per `status` snapshot and per results-window count, the window full",
              "command": f"python docs/results/status_results_window.py --sizes {args.sizes}",
              "redis": version, "at": time.strftime("%Y-%m-%d %H:%M:%S"), "window_s": WINDOW_S,
              "page": status.PAGE, "count_limit": status.COUNT_LIMIT, "rows": rows}
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    lines = [f"{'entries':>8} {'entry B':>7} {'stream MiB':>10}  {'':16} {'snapshot MB':>11} {'window MB':>9} "
             f"{'5 s MB':>7}"]
    for r in rows:
        for kind in ("shipped", "scripts_refused"):
            m = r[kind]
            lines.append(f"{r['entries']:>8} {r['entry_bytes']:>7} {r['stream_mib']:>10}  {kind:16} "
                         f"{m['snapshot']['bytes'] / 1e6:>11.3f} {m['count_window']['bytes'] / 1e6:>9.3f} "
                         f"{m['count_recent']['bytes'] / 1e6:>7.3f}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
