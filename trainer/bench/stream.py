"""Service benchmark, measured from the client side: frames/s and end-to-end latency
of real workers through Redis. Writes JSON and prints a table.

    moodstream bench stream --video ../shared/data/videos/hamilton_360p.mp4 --frames 50 --device cpu

It measures the worker the default settings run (``auto``: on CPU the runtime
this CPU runs best, by measurement); on CPU where torch is installed, an ONNX
Runtime worker and a torch one after it on the same frames (``--backend``
picks), with their peak resident memory.

Without ``--redis-url`` / MOODSTREAM_REDIS_URL it starts an embedded
redis-server. Unless ``--no-spawn``, it starts one ``moodstream worker``
process (and waits for its heartbeat, so model loading is not timed);
with ``--no-spawn`` it measures whatever workers already serve the prefix.

Three phases, on the same frames (pre-encoded as the producer sends them,
``encoding``: png by default, so the worker decodes what it would; the
producer's encoding is not timed):

1. warm-up: a few frames, not measured;
2. throughput: all frames enqueued at once, frames/s = N / (last result read
   - first enqueue); the latency of this phase includes queueing (backlog);
3. latency: one frame in flight at a time; end-to-end latency = result
   published - job enqueued (both wall clocks on this machine when the
   worker runs here) and the round trip the client saw.

No torch here: the worker is another process.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import click
import numpy as np

from moodstream.options import DEVICE, FiniteRange, OutputFile, to_stderr
from moodstream.trainer.bench import table_text, write_beside
from moodstream.shared.errors import MoodstreamError
from moodstream.shared.devices import installed, resolve_device
from moodstream.shared.settings import BACKENDS, DETECTORS, Settings
from moodstream.shared.stop_signals import deferred_stop


def _pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 1) if values else float("nan")


def _summary(values: list[float]) -> dict:
    return {"p50": _pct(values, 50), "p90": _pct(values, 90), "p99": _pct(values, 99),
            "mean": round(float(np.mean(values)), 1) if values else float("nan"), "n": len(values)}


@click.command("stream")
@click.option("--video", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Frames come from this video (their native size is what is measured).")
@click.option("--frames", "n_frames", type=click.IntRange(min=1), default=50, show_default=True,
              help="Frames in the throughput phase (all enqueued at once).")
@click.option("--latency-frames", type=click.IntRange(min=0), help="Closed-loop frames (default: --frames).")
@click.option("--warmup", type=click.IntRange(min=0), default=4, show_default=True,
              help="Frames served first and not measured.")
@click.option("--redis-url", help="Default: $MOODSTREAM_REDIS_URL, else an embedded redis-server.")
@click.option("--no-spawn", is_flag=True, help="Measure the workers already serving --prefix.")
@click.option("--prefix", help="Key prefix (default: a fresh bench-* prefix when spawning).")
@click.option("--device", default="auto", show_default=True, type=DEVICE,
              help="Worker device: auto, cpu, cuda or cuda:N.")
@click.option("--detector", type=click.Choice(DETECTORS), default="mtcnn", show_default=True,
              help="Face detector of the spawned worker.")
@click.option("--batch-max", type=click.IntRange(min=1), default=16, show_default=True,
              help="Frames per batch at most (spawned worker).")
@click.option("--batch-wait-ms", type=click.IntRange(min=0), default=20, show_default=True,
              help="Batch wait of the spawned worker.")
@click.option("--backend", "backends", multiple=True, type=click.Choice(BACKENDS),
              help="Spawned worker's backend; repeat to run several side by side [default: on CPU auto (what the "
                   "default settings run), then onnx and torch where torch is installed; auto alone elsewhere].")
@click.option("--timeout-s", type=FiniteRange(min=0, min_open=True), default=600, show_default=True, help="Per phase.")
@click.option("--out", type=OutputFile(table_beside=True), default=Path("runs/stream_bench.json"),
              show_default=True, help="Where the JSON goes.")
def stream_cmd(video, n_frames, latency_frames, warmup, redis_url, no_spawn, prefix, device, detector, batch_max,
               batch_wait_ms, backends, timeout_s, out):
    """Frames/s and latency p50/p99 of moodstream workers through Redis."""
    from moodstream.producer.client import encode_pixels
    from moodstream.shared.media import iter_video

    latency_frames = n_frames if latency_frames is None else latency_frames
    need = max(n_frames, latency_frames, warmup)
    encoding = Settings.from_env().encoding  # as the producer sends them (png by default): what the worker decodes
    if encoding == "raw":
        raise click.ClickException("bench stream sends encoded frames: set MOODSTREAM_ENCODING to png, jpeg or webp")
    frames = [encode_pixels(item.image, encoding) for item in iter_video(video, max_frames=need)
              if item.image is not None]
    if not frames:
        raise click.ClickException(f"no frames decoded from {video}")
    first = next(iter_video(video, max_frames=1)).image
    height, width = first.shape[:2]

    if no_spawn:
        backends = ("existing",)
    elif not backends:
        # the worker the default settings run first (auto: by measurement on this CPU), then the runtimes beside it
        # (a [cpu] install, no torch: the worker it ships alone)
        backends = ("auto", "onnx", "torch") if resolve_device(device) == "cpu" and installed("torch") else ("auto",)
    runs = {}
    for backend in backends:
        settings = Settings.from_env(redis_url=redis_url, prefix=prefix or (None if no_spawn else
                                                                            f"bench-{uuid.uuid4().hex[:8]}"))
        runs[backend] = _measure(settings, frames, n_frames, latency_frames, warmup, no_spawn, device, detector,
                                 batch_max, batch_wait_ms, backend, timeout_s)
    report = {"video": str(video), "frame_size": [width, height], "device": device, "detector": detector,
              "batch_max": batch_max, "batch_wait_ms": batch_wait_ms, "encoding": f"{encoding} (pre-encoded, not timed)",
              "workers": "existing" if no_spawn else "1 spawned per backend, default threads", "runs": runs}
    if "torch" in runs and "onnx" in runs:
        report["onnx_vs_torch_frames_per_s"] = round(runs["onnx"]["throughput"]["frames_per_s"]
                                                     / runs["torch"]["throughput"]["frames_per_s"], 2)
    report["command"] = "moodstream " + shlex.join(sys.argv[1:])
    write_beside(out, json.dumps(report, indent=2) + "\n", markdown(report))


def _measure(settings: Settings, frames: list[bytes], n_frames: int, latency_frames: int, warmup: int,
             no_spawn: bool, device: str, detector: str, batch_max: int, batch_wait_ms: int, backend: str,
             timeout_s: float) -> dict:
    """Warm-up, throughput and closed-loop phases against one worker (spawned with ``backend``)."""
    from moodstream.producer.client import Producer
    from moodstream.producer.results import ResultReader
    from moodstream.shared.embedded import EmbeddedRedis

    with ExitStack() as stack:
        if settings.redis_url is None:
            settings = settings.replace(redis_url=stack.enter_context(EmbeddedRedis()).url)
        else:  # one line, not a ConnectionError traceback, where the given server is not there
            from moodstream.shared.transport import check_connection, connect

            try:
                check_connection(connect(settings.redis_url), settings.redis_url, settings.redis_wait_s,
                                 notice=to_stderr)
            except MoodstreamError as exc:
                raise click.ClickException(str(exc)) from None
        worker = None
        if not no_spawn:
            with deferred_stop():  # a stop between the spawn and the note left the worker running: taken after
                worker = _spawn_worker(settings, device, detector, batch_max, batch_wait_ms, backend)
                stack.callback(_stop_worker, worker)
        producer = Producer(settings, notice=to_stderr, reached=True)  # started or checked above
        reader = ResultReader(settings)
        _wait_for_worker(producer.client, settings, worker, timeout_s)

        def run(batch: list[bytes], label: str, closed_loop: bool) -> dict:
            e2e, rtt, parts = [], [], {"queue_wait": [], "decode": [], "detect": [], "classify": []}
            start = reader.last_id()
            t0 = time.perf_counter()
            if closed_loop:
                for i, data in enumerate(batch):
                    t_sub = time.perf_counter()
                    ref = producer.submit_image(data, source=label, frame=i)
                    (r,) = _read(reader, start, {ref.job_id}, timeout_s)
                    start = r.id  # the results-stream id: the next read starts after it
                    rtt.append((time.perf_counter() - t_sub) * 1000)
                    _collect(r, e2e, parts)
            else:
                ids = {producer.submit_image(data, source=label, frame=i).job_id for i, data in enumerate(batch)}
                for r in _read(reader, start, ids, timeout_s):
                    _collect(r, e2e, parts)
            wall = time.perf_counter() - t0
            return {"frames": len(batch), "wall_s": round(wall, 3), "frames_per_s": round(len(batch) / wall, 2),
                    "latency_ms": _summary(e2e), "round_trip_ms": _summary(rtt) if rtt else None,
                    "stage_ms_mean": {k: round(float(np.mean(v)), 1) for k, v in parts.items() if v}}

        if warmup:
            run(frames[:warmup], "warmup", closed_loop=False)
        throughput = run(frames[:n_frames], "throughput", closed_loop=False)
        latency = run(frames[:latency_frames], "latency", closed_loop=True) if latency_frames else None
        rss = _peak_rss_mib(worker.pid) if worker is not None else None
    return {"throughput": throughput, "closed_loop": latency, "worker_peak_rss_mib": rss}


def _peak_rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def _spawn_worker(settings: Settings, device, detector, batch_max, batch_wait_ms, backend) -> subprocess.Popen:
    env = {**os.environ, "MOODSTREAM_REDIS_URL": settings.redis_url, "MOODSTREAM_PREFIX": settings.prefix}
    cmd = [sys.executable, "-c", "from moodstream.cli import main; main()", "worker", "--device", device,
           "--detector", detector, "--batch-max", str(batch_max), "--batch-wait-ms", str(batch_wait_ms),
           "--consumer", "bench-worker", "--backend", backend]
    return subprocess.Popen(cmd, env=env)


def _stop_worker(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


def _wait_for_worker(client, settings: Settings, proc, timeout_s: float) -> None:
    from moodstream.producer.status import live_workers
    from moodstream.shared.keys import Keys

    # the workers' index (a few commands), not a SCAN of the whole keyspace of a running deployment
    keys, deadline = Keys.from_settings(settings), time.monotonic() + timeout_s
    while not live_workers(client, keys):
        if proc is not None and proc.poll() is not None:
            raise click.ClickException(f"the worker exited with code {proc.returncode}")
        if time.monotonic() > deadline:
            raise click.ClickException("no worker heartbeat: is a worker serving this prefix?")
        time.sleep(0.2)


def _read(reader, start: str, ids: set[str], timeout_s: float) -> list:
    got = list(reader.read(start=start, count=len(ids), timeout_s=timeout_s, job_ids=ids))
    if len(got) < len(ids):
        raise click.ClickException(f"only {len(got)} of {len(ids)} results within {timeout_s}s")
    return got


def _collect(r, e2e: list[float], parts: dict) -> None:
    if r.error is not None:
        raise click.ClickException(f"job {r.job_id} failed: {r.error.reason}: {r.error.detail}")
    e2e.append(float(r.published_at_ms - r.enqueued_at_ms))
    for k, v in r.timings_ms.items():
        parts.setdefault(k, []).append(v)


def markdown(rep: dict) -> str:
    """The report as a markdown table (written beside the JSON)."""
    w, h = rep["frame_size"]
    lines = ["# Through Redis: frames in the stream to results in the stream", "",
             f"Command: `{rep['command']}`", "",
             f"{Path(rep['video']).name} {w}x{h}, device {rep['device']}, detector {rep['detector']}, "
             f"batch_max {rep['batch_max']}, batch_wait_ms {rep['batch_wait_ms']}; frames {rep['encoding']}; "
             f"{rep['workers']}.", "",
             "| backend | phase | frames | frames/s | e2e ms p50 / p99 | round trip ms p50 / p99 | worker peak RSS MiB "
             "| stage means (ms) |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for backend, run in rep["runs"].items():
        for name in ("throughput", "closed_loop"):
            p = run[name]
            if p is None:
                continue
            rtt = f"{p['round_trip_ms']['p50']:.1f} / {p['round_trip_ms']['p99']:.1f}" if p["round_trip_ms"] else "-"
            rss = "-" if run["worker_peak_rss_mib"] is None else f"{run['worker_peak_rss_mib']:.0f}"
            stages = ", ".join(f"{k} {v}" for k, v in p["stage_ms_mean"].items())
            lines.append(f"| {backend} | {name} | {p['frames']} | {p['frames_per_s']:.2f} "
                         f"| {p['latency_ms']['p50']:.1f} / {p['latency_ms']['p99']:.1f} | {rtt} | {rss} | {stages} |")
    if "onnx_vs_torch_frames_per_s" in rep:
        lines += ["", f"ONNX worker / torch worker, frames/s (throughput phase): "
                      f"**{rep['onnx_vs_torch_frames_per_s']:.2f}x**"]
    lines += ["", "- throughput: all frames enqueued at once; closed loop: one frame at a time, each submitted "
                  "after the previous result arrived (round trip = submit to result read).",
              "- e2e: enqueued_at_ms (the producer stamps it) to published_at_ms (the worker) of each result; "
              "one machine here, so one clock."]
    return table_text(lines) + "\n"
