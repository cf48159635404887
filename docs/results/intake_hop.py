"""What the intake list costs a frame on its way to a worker: the time from a producer's send to
a blocked XREADGROUP reading it, through the intake (RPUSH, a worker's mover as shipped,
``worker/intake.py``: Lua move + BLMOVE wake-up) against the producer's XADD straight to the
frames stream as before (the baseline), both in this one process, on the same messages, sends
alternating between the two. Also the rate of a burst: ``--burst`` messages sent back to back, the
time until the last is readable in the stream.

Starts its own redis-server (shared.embedded). Messages are frame jobs as a producer encodes them
(shared.wire.encode_frame): a JPEG photo (the bundled street.jpg), the bundled 640x360 clip's frames
as PNG (what `produce` sends by default), and where ../shared/data is there its 1080p street video's
frames as PNG. One sender, one reader, one mover::

    .venv/bin/python docs/results/intake_hop.py --out docs/results/intake_hop.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from pathlib import Path

import redis

from moodstream.producer.client import encode_pixels
from moodstream.shared.embedded import EmbeddedRedis
from moodstream.shared.keys import Keys
from moodstream.shared.media import iter_video
from moodstream.shared.record import FrameJob
from moodstream.shared.settings import Settings
from moodstream.shared.wire import FIELD, encode_frame, new_job_id
from moodstream.worker.intake import Mover
from moodstream.worker.runtime import cpu_info

REPO = Path(__file__).resolve().parents[2]
STREET_1080P = REPO.parent / "shared" / "data" / "videos" / "street_1080p.mp4"  # measured where it is there


def messages(kind: str, n: int) -> list[bytes]:
    if kind.startswith("png_"):
        video = REPO / "samples" / "hamilton_clip.mp4" if kind == "png_360p" else STREET_1080P
        frames = [item.image for item in iter_video(str(video), max_frames=n)]
        return [encode_frame(FrameJob(new_job_id(), "clip", i, image=encode_pixels(img, "png")))
                for i, img in enumerate(frames)]
    data = (REPO / "samples" / "street.jpg").read_bytes()
    return [encode_frame(FrameJob(new_job_id(), "photo", i, image=data, page=1)) for i in range(n)]


def quantiles(ms: list[float]) -> dict:
    q = statistics.quantiles(ms, n=100, method="inclusive")
    return {"p50": round(statistics.median(ms), 3), "p90": round(q[89], 3), "p99": round(q[98], 3),
            "mean": round(statistics.fmean(ms), 3)}


def one_hop(client: redis.Redis, reader: redis.Redis, keys: Keys, payload: bytes, via_intake: bool) -> float:
    """ms from the send to the reader's XREADGROUP returning it (the reader blocks before the send)."""
    got: list[float] = []

    def read():
        resp = reader.xreadgroup(keys.group, "reader", {keys.frames: ">"}, count=1, block=5000)
        got.append(time.perf_counter())
        if resp:
            reader.xack(keys.frames, keys.group, resp[0][1][0][0])

    t = threading.Thread(target=read)
    t.start()
    time.sleep(0.01)  # the reader is blocked
    t0 = time.perf_counter()
    if via_intake:
        client.rpush(keys.intake, payload)
    else:
        client.xadd(keys.frames, {FIELD: payload})
    t.join()
    return (got[0] - t0) * 1000


def burst(client: redis.Redis, keys: Keys, payloads: list[bytes], via_intake: bool) -> float:
    """ms until the last of ``payloads``, sent back to back (pipelined), is in the stream."""
    before = client.xlen(keys.frames)
    t0 = time.perf_counter()
    pipe = client.pipeline(transaction=False)
    for p in payloads:
        if via_intake:
            pipe.rpush(keys.intake, p)
        else:
            pipe.xadd(keys.frames, {FIELD: p})
    pipe.execute()
    while client.xlen(keys.frames) < before + len(payloads):
        time.sleep(0.0005)
    return (time.perf_counter() - t0) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hops", type=int, default=200, help="sends of each kind, alternating intake / direct")
    ap.add_argument("--burst", type=int, default=2000)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    report: dict = {"cpu": cpu_info().model, "command": "python docs/results/intake_hop.py " + " ".join(
        f"--{k} {v}" for k, v in (("hops", args.hops), ("burst", args.burst)))}
    with EmbeddedRedis() as server:
        settings = Settings(redis_url=server.url, prefix="hop")
        keys = Keys.from_settings(settings)
        client, reader = redis.Redis.from_url(server.url), redis.Redis.from_url(server.url)
        report["redis"] = client.info("server")["redis_version"]
        client.xgroup_create(keys.frames, keys.group, id="$", mkstream=True)
        mover = Mover(settings, name="hop", client=client)
        mover.start()
        try:
            for kind in ("jpeg_photo", "png_360p", "png_1080p"):
                if kind == "png_1080p" and not STREET_1080P.exists():
                    continue
                pool = messages(kind, 60 if kind != "png_1080p" else 20)
                sizes = [len(p) for p in pool]
                times: dict[str, list[float]] = {"direct": [], "intake": []}
                for i in range(args.hops):
                    for via in ((False, True) if i % 2 else (True, False)):
                        times["intake" if via else "direct"].append(
                            one_hop(client, reader, keys, pool[i % len(pool)], via))
                row = {"message_bytes_median": int(statistics.median(sizes)),
                       "direct_ms": quantiles(times["direct"]), "intake_ms": quantiles(times["intake"])}
                row["added_ms_p50"] = round(row["intake_ms"]["p50"] - row["direct_ms"]["p50"], 3)
                bursts = {"direct": [], "intake": []}
                payloads = [pool[i % len(pool)] for i in range(args.burst if kind == "jpeg_photo" else args.burst // 10)]
                for rep in range(3):
                    for via in ((False, True) if rep % 2 else (True, False)):
                        bursts["intake" if via else "direct"].append(burst(client, keys, payloads, via))
                    client.xtrim(keys.frames, maxlen=0)  # nothing reads them: keep the server small
                row["burst"] = {"messages": len(payloads),
                                "direct_ms_best": round(min(bursts["direct"]), 1),
                                "intake_ms_best": round(min(bursts["intake"]), 1)}
                row["burst"]["ratio"] = round(row["burst"]["intake_ms_best"] / row["burst"]["direct_ms_best"], 2)
                report[kind] = row
                print(kind, json.dumps(row))
        finally:
            mover.stop()
            client.close()
            reader.close()
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
