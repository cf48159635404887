"""``moodstream bench scaling``: how throughput and the consumer-group lag
respond to adding workers, measured without a cluster.

For each worker count (``--workers 1,2,3``) on one embedded redis-server, a
fresh key prefix:

1. spawn that many real ``moodstream worker`` processes (the default
   pipeline, ``--device cpu``), each with ``OMP_NUM_THREADS`` /
   ``MKL_NUM_THREADS`` / ``MOODSTREAM_THREADS`` = max(1, cores // workers),
   wait for their heartbeats and warm them up with a few frames;
2. a producer thread submits frames of a real video (looped, pre-encoded as
   JPEG) at ``--rate`` frames/s for ``--seconds``;
3. every ``--sample-s`` the group's lag is read the way KEDA's redis-streams
   trigger reads it (XINFO GROUPS ``lag``), with ``pending`` and our
   corrected backlog (:func:`shared.transport.group_backlog`), until the
   backlog is drained after the producer stops (or ``--drain-timeout-s``).

Reported per worker count: throughput (results/s over the steady window, from
the end of a short ramp to the drain; result times are their stream ids,
i.e. Redis server time), whether the offered rate saturated the workers, the
lag curve, the time to drain after the producer stopped, and per-worker
efficiency = fps / (workers * fps of one worker). The offered rate must be
above what the largest worker count can serve, or throughput measures the
producer, not the workers; ``saturated`` says which.

No torch here: the workers are other processes.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import click
import redis

import moodstream
from moodstream.options import FiniteRange, OutputFile
from moodstream.lazy import ErrorLines
from moodstream.trainer.bench import table_text, write_beside
from moodstream.producer.client import Producer
from moodstream.worker.runtime import cpu_info
from moodstream.producer.status import keda_lag, live_workers, server_time_ms
from moodstream.shared.embedded import EmbeddedRedis
from moodstream.shared.errors import DataError
from moodstream.shared.keys import Keys
from moodstream.shared.media import encode_jpeg, iter_video
from moodstream.shared.settings import Settings
from moodstream.shared.stop_signals import deferred_stop
from moodstream.shared.transport import BacklogGauge, as_str, connect

log = logging.getLogger(__name__)

DEFAULT_VIDEO = Path(moodstream.__file__).resolve().parent / "samples" / "hamilton_clip.mp4"
NOTES = [
    "On 2 cores the curve flattens early: every worker process runs the whole pipeline (decode, MTCNN, "
    "classifier) on the same two cores, so a second worker adds at most the idle share of the first one's "
    "cores (Redis waits, batch collection, single-threaded parts of the pipeline) and a third only competes "
    "for them. Per-worker efficiency falls accordingly; on a GPU node or one core set per pod the workers "
    "do not share compute and the curve is expected to stay closer to linear.",
    "Threads: by default (--threads default) each worker runs its own default, half the cores (at most 4): one "
    "thread each on two cores, so two workers fill the machine; --threads split gives each worker "
    "max(1, cores // workers) through the environment instead.",
    "lag is the XINFO GROUPS lag that KEDA's redis-streams trigger compares with lagCount; backlog = intake + "
    "lag + pending, our corrected figure (shared.transport.group_backlog). Both are sampled every --sample-s.",
    "throughput: results published per second over the steady window (from the end of the ramp until the "
    "backlog drained, or the last sample); saturated: the backlog at the producer's stop was above one batch, "
    "so throughput is the workers' capacity rather than the offered rate.",
]


def load_frames(video: Path, n: int) -> tuple[list[bytes], tuple[int, int]]:
    """Up to ``n`` frames of ``video`` as JPEG bytes (encoded once: producer-side encoding is not timed)."""
    frames, size = [], None
    for item in iter_video(str(video), max_frames=n):
        if item.error is not None:
            raise DataError(f"{video}: {item.error}")
        size = size or (item.image.shape[1], item.image.shape[0])
        frames.append(encode_jpeg(item.image))
    if not frames:
        raise DataError(f"{video}: no decodable frames")
    return frames, size


def _default_threads() -> int:
    from moodstream.shared.settings import Settings
    from moodstream.worker.pipeline import resolve_threads

    return resolve_threads(Settings.from_env(env={}), worker=True)


def spawn_workers(url: str, prefix: str, n: int, threads: int, batch_max: int, log_dir: Path) -> list[tuple]:
    """``n`` ``moodstream worker`` processes: [(Popen, log path)]."""
    env = {**os.environ, "MOODSTREAM_REDIS_URL": url, "MOODSTREAM_PREFIX": prefix, "MOODSTREAM_DEVICE": "cpu"}
    if threads is not None:  # None: the workers' own default
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), MOODSTREAM_THREADS=str(threads))
    procs = []
    for i in range(n):
        log_path = log_dir / f"{prefix}-worker{i}.log"
        cmd = [sys.executable, "-c", "from moodstream.cli import main; main()", "worker", "--device", "cpu",
               "--batch-max", str(batch_max), "--consumer", f"{prefix}-w{i}"]
        with open(log_path, "wb") as out:
            procs.append((subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT), log_path))
    return procs


def stop_workers(procs: list[tuple]) -> None:
    for p, _ in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p, _ in procs:
        try:
            p.wait(60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _check_alive(procs: list[tuple]) -> None:
    for p, log_path in procs:
        if p.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise ErrorLines(f"a worker exited with code {p.returncode}; its log ends:", *tail.split("\n"))


class RateProducer(threading.Thread):
    """Submits ``frames`` (looped) at ``rate`` per second for ``seconds``; frame i goes at t0 + i / rate."""

    def __init__(self, producer: Producer, frames: list[bytes], rate: float, seconds: float):
        super().__init__(name="bench-producer", daemon=True)
        self.producer, self.frames, self.rate, self.seconds = producer, frames, rate, seconds
        self.sent = 0
        self.behind_s = 0.0  # how late the last frame went (the producer could not keep the rate)
        self.error: BaseException | None = None
        self.stop_ms: int | None = None  # Redis server time of the last submit


    def run(self) -> None:
        try:
            t0 = time.monotonic()
            total = int(self.rate * self.seconds)
            for i in range(total):
                due = t0 + i / self.rate
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                self.behind_s = max(0.0, -wait)
                self.producer.submit_image(self.frames[i % len(self.frames)], source="scaling", frame=i)
                self.sent += 1
            self.stop_ms = server_time_ms(self.producer.client)
        except BaseException as exc:  # re-raised by the caller
            self.error = exc


def sample(client: redis.Redis, keys: Keys, gauge: BacklogGauge, t0_ms: int, results_base: int) -> dict:
    b = gauge.read()  # group_backlog's figure, without reading the stream's first and last frames each sample
    return {"t_s": round((server_time_ms(client) - t0_ms) / 1000, 2), "lag": keda_lag(client, keys),
            "pending": b.pending, "backlog": b.total, "results": int(client.xlen(keys.results)) - results_base}


def result_times_ms(client: redis.Redis, stream: str, since_ms: int) -> list[int]:
    """Publish times (stream id ms = Redis server time) of the results at or after ``since_ms``."""
    out, start = [], f"{since_ms}-0"
    while True:
        page = client.xrange(stream, start, "+", count=1000)
        out += [int(as_str(eid).partition("-")[0]) for eid, _ in page]
        if len(page) < 1000:
            return out
        start = "(" + as_str(page[-1][0])


def run_step(url: str, n_workers: int, threads: int, frames: list[bytes], rate: float, seconds: float,
             sample_s: float, drain_timeout_s: float, start_timeout_s: float, batch_max: int,
             log_dir: Path) -> dict:
    prefix = f"scaling-{n_workers}-{uuid.uuid4().hex[:6]}"
    settings = Settings.from_env(redis_url=url, prefix=prefix)
    keys = Keys.from_settings(settings)
    client = connect(url)
    producer = Producer(settings, reached=True)  # the bench's own server, started and asked (INFO) by scaling_cmd
    with ExitStack() as stack:
        with deferred_stop():  # a stop while they are spawned is taken once they are noted to stop
            procs = spawn_workers(url, prefix, n_workers, threads, batch_max, log_dir)
            stack.callback(stop_workers, procs)
        deadline = time.monotonic() + start_timeout_s
        while len(live_workers(client, keys)) < n_workers:
            _check_alive(procs)
            if time.monotonic() > deadline:
                raise click.ClickException(f"{n_workers} worker(s) did not all beat within {start_timeout_s}s")
            time.sleep(0.2)
        warm = 2 * n_workers  # first batches pay for lazy initialisation; not measured
        for i in range(warm):
            producer.submit_image(frames[i % len(frames)], source="warmup", frame=i)
        while client.xlen(keys.results) < warm:
            _check_alive(procs)
            if time.monotonic() > deadline:
                raise click.ClickException("the warm-up frames were not answered in time")
            time.sleep(0.1)
        results_base = int(client.xlen(keys.results))

        feeder = RateProducer(producer, frames, rate, seconds)
        t0_ms = server_time_ms(client)
        feeder.start()
        series = []
        gauge = BacklogGauge(client, keys)
        stop_ms = drained_ms = None
        while True:
            s = sample(client, keys, gauge, t0_ms, results_base)
            series.append(s)
            if stop_ms is None and not feeder.is_alive():
                if feeder.error is not None:
                    raise feeder.error
                stop_ms, s_stop = feeder.stop_ms, s
            if stop_ms is not None and s["backlog"] == 0 and s["results"] >= feeder.sent:
                drained_ms = server_time_ms(client)
                break
            if stop_ms is not None and (server_time_ms(client) - stop_ms) / 1000 > drain_timeout_s:
                break
            _check_alive(procs)
            time.sleep(sample_s)
        end_ms = drained_ms or server_time_ms(client)
        times = result_times_ms(client, keys.results, t0_ms)
        served = int(client.xlen(keys.results)) - results_base

    ramp_ms = int(min(5.0, seconds / 3) * 1000)
    win_a, win_b = t0_ms + ramp_ms, max(end_ms, t0_ms + ramp_ms + 1)
    in_window = sum(win_a <= t <= win_b for t in times)
    return {
        "workers": n_workers,
        "threads_per_worker": threads if threads is not None else _default_threads(),
        "worker_env": {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "MOODSTREAM_THREADS": threads}
        if threads is not None else "defaults (no thread variables set)",
        "offered_fps": rate,
        "sent": feeder.sent,
        "served": served,
        "producer_behind_s": round(feeder.behind_s, 2),
        "producer_stop_s": round((stop_ms - t0_ms) / 1000, 2),
        "steady_window_s": [round(ramp_ms / 1000, 2), round((win_b - t0_ms) / 1000, 2)],
        "throughput_fps": round(in_window / ((win_b - win_a) / 1000), 3),
        "saturated": s_stop["backlog"] > batch_max,
        "lag_at_stop": s_stop["lag"],
        "backlog_at_stop": s_stop["backlog"],
        "max_lag": max((x["lag"] for x in series if x["lag"] is not None), default=None),  # None: Redis < 7
        "max_backlog": max(x["backlog"] for x in series),
        "drained": drained_ms is not None,
        "time_to_drain_s": round((drained_ms - stop_ms) / 1000, 2) if drained_ms is not None else None,
        "series": series,
    }


def load_notes(cores: int, before: list[float], after: list[float]) -> list[str]:
    """Lines for the report about the machine's load: the figure after the run includes the
    benchmark's own workers; a high one before it means other processes shared the cores."""
    notes = [f"1-minute load average {before[0]} before the run and {after[0]} after it (the latter includes "
             "this benchmark's own worker processes)."]
    if before[0] > cores / 2:
        notes.append("Other processes were using the CPU when the run started, so these figures are noisy "
                     "(the scheduler shares the cores per process: more worker processes also win a larger "
                     "share from the others).")
    return notes


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        "# Scaling: workers vs throughput and consumer-group lag (CPU)",
        "",
        f"{m['cores']} cores ({m.get('cpu') or m['processor'] or m['machine']}), load average before {m['loadavg_before']}, "
        f"after {m['loadavg_after']}; Redis {m.get('redis')} (KEDA's lag needs 7.0 or later); "
        f"video {Path(report['video']).name} {report['frame_size'][0]}x"
        f"{report['frame_size'][1]}, offered {report['rate_fps']} frames/s for {report['seconds']} s per step, "
        f"batch_max {report['batch_max']}.",
        "",
        f"Command: `{report['command']}`",
        "",
        "| workers | threads each | offered fps | throughput fps | per-worker efficiency | saturated "
        "| KEDA lag at stop / max | backlog max | drain after stop (s) | served / sent |",
        "|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for s in report["steps"]:
        eff = "-" if s["efficiency"] is None else f"{s['efficiency']:.2f}"
        drain = f"{s['time_to_drain_s']:.1f}" if s["drained"] else "not drained"
        lines.append(f"| {s['workers']} | {s['threads_per_worker']} | {s['offered_fps']:g} | {s['throughput_fps']:.2f} "
                     f"| {eff} | {'yes' if s['saturated'] else 'no'} | {_lag(s['lag_at_stop'])} / {_lag(s['max_lag'])} "
                     f"| {s['max_backlog']} | {drain} | {s['served']} / {s['sent']} |")
    lines += ["", "Lag drain (backlog every ~2 s from the producer's start; `|` marks the producer's stop):", ""]
    for s in report["steps"]:
        lines.append(f"- {s['workers']} worker(s): {_curve(s)}")
    lines += [""] + [f"- {n}" for n in report["notes"]] + [""]
    return table_text(lines)


def _lag(lag: int | None) -> str:
    """KEDA's lag for the table; Redis before 7.0 has no lag field, nor after XDEL/trims."""
    return "n/a" if lag is None else str(lag)


def _curve(step: dict, every_s: float = 2.0) -> str:
    """The backlog every ``every_s`` seconds, with ``|`` where the producer stopped."""
    out, next_t, stopped = [], 0.0, False
    for x in step["series"]:
        if not stopped and x["t_s"] >= step["producer_stop_s"]:
            out.append("|")
            stopped = True
        if x["t_s"] + 1e-9 >= next_t or x is step["series"][-1]:
            out.append(str(x["backlog"]))
            next_t = x["t_s"] + every_s
    return " ".join(out)


@click.command("scaling")
@click.option("--workers", "counts", default="1,2,3", show_default=True,
              help="Comma-separated worker counts to measure, one step each.")
@click.option("--seconds", type=FiniteRange(min=1), default=20.0, show_default=True,
              help="How long the producer submits frames in each step.")
@click.option("--rate", type=FiniteRange(min=0.1), default=30.0, show_default=True,
              help="Frames per second the producer offers (keep it above what the most workers can serve).")
@click.option("--video", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=DEFAULT_VIDEO,
              show_default="samples/hamilton_clip.mp4", help="Frames come from this video, looped.")
@click.option("--batch-max", type=click.IntRange(min=1), default=16, show_default=True,
              help="The workers' batch_max (the shipped default is 16).")
@click.option("--sample-s", type=FiniteRange(min=0.05), default=0.5, show_default=True,
              help="How often the lag is sampled.")
@click.option("--drain-timeout-s", type=FiniteRange(min=1), default=90.0, show_default=True,
              help="Stop waiting for the backlog to drain this long after the producer stopped.")
@click.option("--start-timeout-s", type=FiniteRange(min=1), default=240.0, show_default=True,
              help="Time allowed for the workers to load their models and answer the warm-up frames.")
@click.option("--threads", "thread_rule", type=click.Choice(["default", "split"]), default="default",
              show_default=True, help="default: each worker's own default (what users get); split: "
                                      "max(1, cores // workers) threads each, set through the environment.")
@click.option("--out", type=OutputFile(table_beside=True),
              default=Path("runs/scaling.json"), show_default=True,
              help="JSON report; the markdown table goes beside it (.md).")
def scaling_cmd(counts, seconds, rate, video, batch_max, sample_s, drain_timeout_s, start_timeout_s, thread_rule,
                out):
    """Frames/s and consumer-group lag for 1, 2, 3 worker processes against a
    producer at a fixed rate, on an embedded Redis (lag read as KEDA reads it)."""
    try:
        worker_counts = [int(c) for c in counts.split(",") if c.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {counts!r}", param_hint="--workers")
    if not worker_counts or min(worker_counts) < 1:
        raise click.BadParameter("worker counts must be >= 1", param_hint="--workers")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    frames, size = load_frames(video, 120)
    load_before = [round(x, 2) for x in os.getloadavg()]
    steps = []
    with EmbeddedRedis() as server, tempfile.TemporaryDirectory(prefix="moodstream-scaling-") as log_dir:
        redis_version = as_str(connect(server.url).info("server").get("redis_version"))
        for n in worker_counts:
            threads = max(1, cores // n) if thread_rule == "split" else None
            click.echo(f"scaling: {n} worker(s), {threads or _default_threads()} thread(s) each, {rate:g} frames/s "
                       f"for {seconds:g} s", err=True)
            steps.append(run_step(server.url, n, threads, frames, rate, seconds, sample_s, drain_timeout_s,
                                  start_timeout_s, batch_max, Path(log_dir)))
    one = next((s["throughput_fps"] for s in steps if s["workers"] == 1), None)
    for s in steps:
        s["efficiency"] = round(s["throughput_fps"] / (s["workers"] * one), 3) if one else None
    report = {
        "command": "moodstream bench " + shlex.join(sys.argv[sys.argv.index("scaling"):])
        if "scaling" in sys.argv else "moodstream bench scaling",
        "machine": {"cores": cores, "machine": platform.machine(), "processor": platform.processor(),
                    "cpu": cpu_info().model,  # platform.processor() is "" on Linux: the CPU went unnamed
                    "python": platform.python_version(), "redis": redis_version, "loadavg_before": load_before,
                    "loadavg_after": [round(x, 2) for x in os.getloadavg()]},
        "video": str(video), "frame_size": list(size), "rate_fps": rate, "seconds": seconds,
        "sample_s": sample_s, "batch_max": batch_max, "device": "cpu",
        "threads_rule": "OMP_NUM_THREADS = MKL_NUM_THREADS = MOODSTREAM_THREADS = max(1, cores // workers)"
        if thread_rule == "split" else "each worker's default (threads=0: half the cores, at most 4)",
        "steps": steps,
    }
    m = report["machine"]
    report["notes"] = NOTES + load_notes(cores, m["loadavg_before"], m["loadavg_after"])
    write_beside(out, json.dumps(report, indent=1) + "\n", markdown(report))
