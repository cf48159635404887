"""What `moodstream status` reads from Redis to count dead letters by reason, per call (one
redraw of `status --watch`), with the dead-letter stream full.

Starts its own redis-server (shared.embedded), fills ``<prefix>:dead`` with N entries as a worker
writes them (worker/service.py: XADD of shared.wire.dead_letter_fields, the failed message's first
4 KiB kept), then times ``snapshot()`` as shipped and ``dead_letter_reasons()`` at several limits,
and the bytes Redis sent for each (INFO stats total_net_output_bytes; the server has no other
client). All in one process, on the same stream::

    .venv/bin/python docs/results/status_dead_letters.py --out docs/results/status_dead_letters.json
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time
from pathlib import Path

import redis

from moodstream.producer import status
from moodstream.shared.embedded import EmbeddedRedis
from moodstream.shared.keys import Keys
from moodstream.shared.wire import DEAD_LETTER_PAYLOAD_BYTES, REASONS, dead_letter_fields

WORKERS = [f"worker-{i}-{1000 + i}" for i in range(4)]


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def fill(client: redis.Redis, keys: Keys, n: int, seed: int = 0) -> None:
    """N dead letters of the reasons workers write, each with the failed message's first 4 KiB
    (frames are larger than that: a JPEG or PNG job), a detail line and the entry's id."""
    rnd = random.Random(seed)
    payload = rnd.randbytes(64 * 1024)  # a frame job's bytes; each entry keeps a different 4 KiB of it
    pipe = client.pipeline(transaction=False)
    for i in range(n):
        reason = REASONS[i % len(REASONS)]
        start = rnd.randrange(len(payload) - DEAD_LETTER_PAYLOAD_BYTES)
        msg = payload[start:]  # 4-64 KiB: dead_letter_fields keeps its first 4 KiB
        detail = f"{reason}: frame {i} of rtsp://camera-{i % 7}.example/stream1 could not be used ({len(msg)} bytes)"
        pipe.xadd(keys.dead, dead_letter_fields(reason, detail, f"{1733390000000 + i}-0", 1 + i % 3,
                                                WORKERS[i % len(WORKERS)], msg, job_id=f"{i:032x}"))
        if len(pipe.command_stack) >= 1000:
            pipe.execute()
    pipe.execute()


def sent_bytes(client: redis.Redis) -> int:
    return int(client.info("stats")["total_net_output_bytes"])


def measure(client: redis.Redis, call, repeats: int) -> dict:
    """Median seconds of ``call()`` over ``repeats`` and the bytes Redis sent for one call."""
    times, sent = [], []
    for _ in range(repeats):
        before = sent_bytes(client)
        t0 = time.perf_counter()
        out = call()
        times.append(time.perf_counter() - t0)
        sent.append(sent_bytes(client) - before)
    return {"seconds": round(statistics.median(times), 4), "bytes": int(statistics.median(sent)), "out": out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10000,100000", help="dead-letter stream lengths, comma-separated")
    ap.add_argument("--limits", default="100000,10000,1000", help="dead_letter_reasons limits to time")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    keys = Keys("bench")
    rows = []
    with EmbeddedRedis() as server:
        client = redis.Redis.from_url(server.url)
        for n in (int(s) for s in args.sizes.split(",")):
            client.delete(keys.dead)
            fill(client, keys, n)
            stream_mib = client.memory_usage(keys.dead, samples=0) / 2**20
            shipped = measure(client, lambda: status.snapshot(client, keys), args.repeats)
            d = shipped.pop("out")["dead_letters"]
            row = {"entries": n, "stream_mib": round(stream_mib, 1),
                   "snapshot": {**shipped, "counted": d["counted"], "note": d.get("note")}, "dead_letter_reasons": {}}
            for limit in (int(s) for s in args.limits.split(",")):
                r = measure(client, lambda: status.dead_letter_reasons(client, keys, limit=limit), args.repeats)
                r["counted"] = r.pop("out")["counted"]
                row["dead_letter_reasons"][str(limit)] = r
            rows.append(row)
            print(json.dumps(row))
        client.close()
    report = {"what": "bytes Redis sends and seconds per `status` snapshot with a full dead-letter stream",
              "command": "python docs/results/status_dead_letters.py " + " ".join(
                  f"--{k} {v}" for k, v in (("sizes", args.sizes), ("limits", args.limits),
                                            ("repeats", args.repeats))),
              "cpu": cpu_model(), "at": time.strftime("%Y-%m-%d %H:%M:%S"),
              "shipped_limit": getattr(status, "DEAD_COUNT_LIMIT", status.COUNT_LIMIT), "rows": rows}
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    lines = [f"cpu: {report['cpu']}", f"{'entries':>8} {'stream MiB':>10} {'snapshot s':>10} {'snapshot MB':>11} "
             f"{'counted':>8}  " + "  ".join(f"limit {k}: s / MB" for k in rows[0]["dead_letter_reasons"])]
    for r in rows:
        s = r["snapshot"]
        lines.append(f"{r['entries']:>8} {r['stream_mib']:>10} {s['seconds']:>10} {s['bytes'] / 1e6:>11.1f} "
                     f"{s['counted']:>8}  " + "  ".join(f"{v['seconds']} / {v['bytes'] / 1e6:.1f}"
                                                         for v in r["dead_letter_reasons"].values()))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
