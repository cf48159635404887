"""Measurements of the dashboard (not a test; the README quotes its output).

    python tests/browser/measure.py fleet  [--video V] [--rounds 3]      # worker frames/s without / with an open page
    python tests/browser/measure.py memory [--minutes 10] [--rate 300]  # the server's RSS under a sustained feed
        [--sources 10] [--faces 3] [--summary-every-s 0]                # ... of this many sources and faces,
                                                                        # each source's summary (64 tracks, pictures)

Both start their own redis-server, the dashboard as ``moodstream dashboard`` in a child process,
and (unless --no-browser) a headless chromium page on it. One JSON object per line on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import redis

from moodstream.shared.embedded import EmbeddedRedis, free_port
from moodstream.shared.keys import Keys
from moodstream.shared.labels import LABELS
from moodstream.shared.record import Face, FrameJob, FrameResult, Smoothed
from moodstream.shared.wire import FIELD, encode_frame, encode_result, new_job_id, now_ms

REPO = Path(__file__).resolve().parents[2]
MOODSTREAM = [sys.executable, "-m", "moodstream"]


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """A process's resident memory now (``VmHWM``: its peak so far), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def summary_of(source: str, tracks: int = 64, picture_chars: int = 12_000) -> bytes:
    """A summaries-stream entry as the track stage writes one: ``tracks`` people with a face
    picture each (128 px JPEGs are 6-12 KB of base64), random bytes so no two are alike."""
    import base64
    probs = {k: 1 / len(LABELS) for k in LABELS}
    return json.dumps({"source": source, "tracks": [
        {"track_id": t, "person": True, "first_timestamp_s": 0.0, "last_timestamp_s": 20.0, "frames": 600,
         "dominant": "happiness", "mean_probabilities": probs,
         "episodes": [{"emotion": "happiness", "start_s": 1.0, "end_s": 3.0, "peak": 0.9, "peak_s": 2.0}]}
        for t in range(tracks)], "thumbnails": {str(t): base64.b64encode(os.urandom(picture_chars * 3 // 4)).decode()
                                                for t in range(tracks)}}).encode()


class Board:
    """``moodstream dashboard`` in a child process, and a headless chromium page on it."""

    def __init__(self, url: str, browser: bool):
        self.port = free_port()
        env = {**os.environ, "MOODSTREAM_REDIS_URL": url, "MOODSTREAM_PREFIX": "m"}
        self.proc = subprocess.Popen([*MOODSTREAM, "dashboard", "--port", str(self.port)], env=env,
                                     stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{self.port}/"
        deadline = time.monotonic() + 30
        import urllib.request
        while True:
            try:
                urllib.request.urlopen(self.url + "healthz", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        self.driver = None
        if browser:
            from selenium import webdriver
            from selenium.webdriver.chrome.service import Service

            options = webdriver.ChromeOptions()
            options.binary_location = "/usr/bin/chromium"
            for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
                options.add_argument(arg)
            self.driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
            self.driver.get(self.url)

    def page(self) -> dict:
        if self.driver is None:
            return {}
        return self.driver.execute_script(
            "return {js_heap_mib: performance.memory ? performance.memory.usedJSHeapSize / 1048576 : null,"
            " dom_nodes: document.getElementsByTagName('*').length,"
            " people: document.querySelectorAll('[data-track-id]').length,"
            " sources: document.querySelectorAll('section.source').length}")

    def close(self) -> None:
        if self.driver is not None:
            self.driver.quit()
        self.proc.terminate()
        self.proc.wait(10)


def fleet(args) -> None:
    """Frames/s of one `moodstream worker` over the same burst of frames, alternating no dashboard /
    dashboard with a page open, ``rounds`` times each."""
    from moodstream.producer.client import encode_pixels
    from moodstream.shared.media import iter_frames

    frames = [encode_pixels(item.image, "png") for item in iter_frames([args.video], 1, None, args.frames)
              if item.image is not None]
    with EmbeddedRedis() as server:
        client = redis.Redis.from_url(server.url)
        keys = Keys("m")
        env = {**os.environ, "MOODSTREAM_REDIS_URL": server.url, "MOODSTREAM_PREFIX": "m"}
        worker = subprocess.Popen([*MOODSTREAM, "worker", "--device", "cpu"], env=env, stderr=subprocess.DEVNULL)
        try:
            for r in range(args.rounds):
                for with_board in (False, True):
                    board = Board(server.url, browser=not args.no_browser) if with_board else None
                    try:
                        time.sleep(2 if board else 0)
                        start = client.xlen(keys.results)
                        board_cpu0 = cpu_s(board.proc.pid) if board else 0.0
                        for i, data in enumerate(frames):
                            job = FrameJob(new_job_id(), f"{args.video}#{r}-{with_board}", i, timestamp_s=i / 30,
                                           image=data, enqueued_at_ms=now_ms())
                            client.xadd(keys.frames, {FIELD: encode_frame(job)})
                        deadline = time.monotonic() + 1800
                        while client.xlen(keys.results) < start + len(frames) and time.monotonic() < deadline:
                            time.sleep(0.5)
                        got = client.xrange(keys.results, count=start + len(frames))[start:]
                        t0 = int(got[0][0].split(b"-")[0])
                        t1 = int(got[-1][0].split(b"-")[0])
                        print(json.dumps({"round": r, "dashboard": with_board, "browser": bool(board and board.driver),
                                          "frames": len(got), "frames_per_s": round((len(got) - 1) / (t1 - t0) * 1000, 2),
                                          "dashboard_rss_mib": round(rss_mib(board.proc.pid), 1) if board else None,
                                          "dashboard_cpu_s": round(cpu_s(board.proc.pid) - board_cpu0, 2) if board else None,
                                          "seconds": round((t1 - t0) / 1000, 1),
                                          **(board.page() if board else {})}), flush=True)
                    finally:
                        if board:
                            board.close()
        finally:
            worker.terminate()
            worker.wait(30)


def memory(args) -> None:
    """``rate`` results/s over ``sources`` sources (results and tracked streams) for ``minutes``,
    ``faces`` faces a frame, and every ``summary_every_s`` (0: never) a new summary of each source;
    the dashboard's RSS and its peak (and the page's JS heap) every ``every_s``."""
    probs = {k: 1 / len(LABELS) for k in LABELS}
    with EmbeddedRedis() as server:
        client = redis.Redis.from_url(server.url)
        keys = Keys("m")
        board = Board(server.url, browser=not args.no_browser)
        try:
            start = time.monotonic()
            sent, frame, tick, next_report, next_summary = 0, 0, 0.1, 0.0, 0.0
            per_tick = max(1, round(args.rate * tick))
            while (elapsed := time.monotonic() - start) < args.minutes * 60:
                pipe = client.pipeline(transaction=False)
                for k in range(per_tick):
                    s = (sent + k) % args.sources
                    f = frame + (sent + k) // args.sources
                    faces = [Face(box=(10.0 + 40 * j, 20.0, 40.0 + 40 * j, 60.0), score=0.99, emotion="happiness",
                                  probabilities=probs, track_id=(f // 600) * 3 + j,  # a new person every 20 s
                                  smoothed=Smoothed("happiness", probs)) for j in range(args.faces)]
                    r = FrameResult(source=f"source-{s:02d}", frame=f, timestamp_s=f / 30, size=(640, 360),
                                    faces=faces, job_id=new_job_id(), enqueued_at_ms=now_ms())
                    payload = encode_result(r)
                    pipe.xadd(keys.results, {FIELD: payload}, maxlen=100_000, approximate=True)
                    pipe.xadd(keys.tracked, {FIELD: payload}, maxlen=100_000, approximate=True)
                if args.summary_every_s and elapsed >= next_summary:
                    for s in range(args.sources):
                        pipe.xadd(keys.summaries, {FIELD: summary_of(f"source-{s:02d}")}, maxlen=1000, approximate=True)
                    next_summary += args.summary_every_s
                pipe.execute()
                sent += per_tick
                if elapsed >= next_report:
                    print(json.dumps({"elapsed_s": round(elapsed), "results_sent": sent,
                                      "rate_per_s": round(sent / max(elapsed, 1e-3), 1),
                                      "dashboard_rss_mib": round(rss_mib(board.proc.pid), 1),
                                      "dashboard_peak_mib": round(rss_mib(board.proc.pid, "VmHWM"), 1), **board.page()}),
                          flush=True)
                    next_report += args.every_s
                time.sleep(max(0.0, start + (sent / per_tick) * tick - time.monotonic()))
            print(json.dumps({"elapsed_s": round(time.monotonic() - start), "results_sent": sent, "final": True,
                              "dashboard_rss_mib": round(rss_mib(board.proc.pid), 1),
                              "dashboard_peak_mib": round(rss_mib(board.proc.pid, "VmHWM"), 1), **board.page()}),
                  flush=True)
        finally:
            board.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    f = sub.add_parser("fleet")
    f.add_argument("--video", default=str(REPO.parent / "shared" / "data" / "videos" / "hamilton_360p.mp4"))
    f.add_argument("--frames", type=int, default=150)
    f.add_argument("--rounds", type=int, default=3)
    f.add_argument("--no-browser", action="store_true")
    m = sub.add_parser("memory")
    m.add_argument("--minutes", type=float, default=10)
    m.add_argument("--rate", type=float, default=300)
    m.add_argument("--sources", type=int, default=10)
    m.add_argument("--faces", type=int, default=3)
    m.add_argument("--summary-every-s", type=float, default=0)
    m.add_argument("--every-s", type=float, default=30)
    m.add_argument("--no-browser", action="store_true")
    args = ap.parse_args()
    {"fleet": fleet, "memory": memory}[args.what](args)


if __name__ == "__main__":
    main()
