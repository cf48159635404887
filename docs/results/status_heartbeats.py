"""What `moodstream status` and the dashboard's fleet panel ask of Redis to find the live workers,
per call of ``live_workers()`` (one redraw; the dashboard's every 2 s), on a Redis shared with
other applications.

Starts its own redis-server (shared.embedded, DEBUG allowed), beats the heartbeats of 4 workers as
a worker does (worker/service.py ``Worker.heartbeat``, on a stand-in pipeline: only its
model_version is written), adds N unrelated keys (DEBUG POPULATE: ``other:app:<i>``), then calls
``live_workers()`` as shipped and counts what Redis processed for it: commands by name (INFO
commandstats) and bytes sent (INFO stats total_net_output_bytes), less what the two INFO calls
around it cost (measured with nothing between them; the server has no other client). Where the
workers' index exists, the same again without it (``without_index``: a fleet whose workers do not
write it yet, read by SCAN as before). Sizes and counts only, no times::

    .venv/bin/python docs/results/status_heartbeats.py --out docs/results/status_heartbeats.json
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import redis

from moodstream.producer import status
from moodstream.shared.embedded import EmbeddedRedis
from moodstream.shared.keys import Keys
from moodstream.shared.settings import Settings
from moodstream.worker.service import Worker

WORKERS = [f"worker-{i}-{1000 + i}" for i in range(4)]


def counters(client: redis.Redis) -> tuple[Counter, int]:
    """(calls by command, bytes sent so far), in one INFO call."""
    info = client.info("all")
    calls = Counter({k[len("cmdstat_"):]: int(v["calls"]) for k, v in info.items() if k.startswith("cmdstat_")})
    return calls, int(info["total_net_output_bytes"])


def measure(client: redis.Redis, call) -> dict:
    """Commands Redis processed and bytes it sent for one ``call()``, less the INFO around it."""
    calls0, sent0 = counters(client)
    calls1, sent1 = counters(client)
    overhead_calls, overhead_sent = calls1 - calls0, sent1 - sent0  # one INFO, its reply
    out = call()
    calls2, sent2 = counters(client)
    commands = (calls2 - calls1) - overhead_calls
    return {"commands": sum(commands.values()), "by_command": dict(sorted(commands.items())),
            "bytes": (sent2 - sent1) - overhead_sent, "workers": [w["worker"] for w in out]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="0,100000,1000000", help="unrelated keys in the database, comma-separated")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    keys = Keys("bench")
    index = getattr(keys, "heartbeats", None)  # the workers' index (absent before it existed)
    rows = []
    with EmbeddedRedis(extra_args=["--enable-debug-command", "yes"]) as server:
        client = redis.Redis.from_url(server.url)
        settings = Settings.from_env(env={}, redis_url=server.url, prefix="bench", heartbeat_ttl_s=3600)
        workers = [Worker(settings, SimpleNamespace(model_version="emotion-bench"), name=n, client=client,
                          handle_signals=False) for n in WORKERS]
        beat = measure(client, lambda: workers[0].heartbeat() or [])  # the first worker's first beat
        for w in workers[1:]:
            w.heartbeat()
        version = client.info("server")["redis_version"]
        for n in (int(s) for s in args.sizes.split(",")):
            client.execute_command("DEBUG", "POPULATE", n, "other:app")  # adds only the keys not there yet
            row = {"unrelated_keys": n, "dbsize": client.dbsize(), "shipped": measure(
                client, lambda: status.live_workers(client, keys))}
            if index is not None and client.exists(index):
                saved = client.dump(index)
                client.delete(index)
                row["without_index"] = measure(client, lambda: status.live_workers(client, keys))
                client.restore(index, 0, saved)
            rows.append(row)
            print(json.dumps(row))
        client.close()
    report = {"what": "commands Redis processes and bytes it sends for one live_workers() call (status, the "
                      "dashboard's fleet every 2 s), 4 live workers among N unrelated keys",
              "command": f"python docs/results/status_heartbeats.py --sizes {args.sizes}",
              "redis": version, "at": time.strftime("%Y-%m-%d %H:%M:%S"),
              "heartbeat": {"commands": beat["commands"], "by_command": beat["by_command"]}, "rows": rows}
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    lines = [f"one heartbeat: {beat['commands']} commands {beat['by_command']}",
             f"{'unrelated keys':>14} {'commands':>9} {'SCAN':>6} {'bytes':>8}   "
             "without the index: commands, SCAN, bytes"]
    for r in rows:
        s, o = r["shipped"], r.get("without_index")
        lines.append(f"{r['unrelated_keys']:>14} {s['commands']:>9} {s['by_command'].get('scan', 0):>6} {s['bytes']:>8}"
                     + (f"   {o['commands']}, {o['by_command'].get('scan', 0)}, {o['bytes']}" if o else ""))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
