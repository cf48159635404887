"""Where the intake's move costs Redis's one thread, per message: a Lua script that only reads the
head of a list (``LINDEX``: the message copied into a Lua string), the same with the ``XADD`` the
mover does, against an ``XADD`` and an ``RPUSH`` of the same bytes from a client. Each timed as
the mean of ``--n`` calls from one client on a redis-server of its own (shared.embedded), for a
1.65 MB message (a PNG 1080p frame's size) and a 100 KB one (a JPEG photo)::

    .venv/bin/python docs/results/intake_script_cost.py --out docs/results/intake_script_cost.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import redis

from moodstream.shared.embedded import EmbeddedRedis
from moodstream.worker.runtime import cpu_info

SIZES = {"png_1080p": 1_650_000, "jpeg_photo": 100_000}


def mean_ms(fn, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return round((time.perf_counter() - t0) / n * 1000, 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    report: dict = {"cpu": cpu_info().model, "command": f"python docs/results/intake_script_cost.py --n {args.n}"}
    with EmbeddedRedis() as server:
        c = redis.Redis.from_url(server.url)
        report["redis"] = c.info("server")["redis_version"]
        lindex = c.register_script("local m = redis.call('LINDEX', KEYS[1], 0) return #m")
        lindex_xadd = c.register_script("local m = redis.call('LINDEX', KEYS[1], 0) "
                                        "redis.call('XADD', KEYS[2], 'MAXLEN', '10', '*', 'msg', m) return 1")
        for name, size in SIZES.items():
            msg = b"x" * size
            c.delete("head")
            c.rpush("head", msg)
            report[name] = {
                "bytes": size,
                "script_lindex_ms": mean_ms(lambda: lindex(keys=["head"]), args.n),
                "script_lindex_xadd_ms": mean_ms(lambda: lindex_xadd(keys=["head", "s1"]), args.n),
                "client_xadd_ms": mean_ms(lambda: c.xadd("s2", {"msg": msg}, maxlen=10), args.n),
                "client_rpush_ms": mean_ms(lambda: (c.rpush("l", msg), c.ltrim("l", 1, 0)), args.n),
            }
            print(name, json.dumps(report[name]))
        c.close()
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
