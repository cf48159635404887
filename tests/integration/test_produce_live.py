"""`produce` on a live source (issue 15 part 6): frames come through producer.live
(reconnecting, rate-capped), and with backpressure=drop the backlog is kept by not
sending frames while it is over lag_limit, each counted (issue 22 item 8: live
sources follow the producer's setting; under wait they wait,
tests/chaos/test_backpressure_drop.py). A real MJPEG server and Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support.mjpeg import ctrl_c_in_a_stall, jpeg, part, picture, serve, url

from moodstream.producer.client import Producer
from moodstream.shared.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def test_live_stream_is_produced_with_drop(redis_url, client, keys):
    server = serve(0)
    url = f"http://127.0.0.1:{server.server_address[1]}/stream.mjpg"
    try:
        settings = Settings.from_env({}, redis_url=redis_url, prefix=keys.prefix, lag_limit=4,
                                     backpressure="drop")  # wait would block for ever: no worker here
        producer = Producer(settings, notice=lambda m: None)
        refs = list(producer.produce([url], max_frames=10))
    finally:
        server.shutdown()
    assert all(r.source == url and not r.dropped for r in refs)
    assert producer.stats.dropped > 0 and producer.stats.waited_s == 0
    assert len(refs) + producer.stats.dropped == 10  # every frame read was sent or counted as dropped
    # nothing sent was deleted; the bound, and the source's last frame, which says the drops before it
    assert client.llen(keys.intake) == len(refs) <= 4 + producer.check_every + 1
    assert refs[-1].frame == 9


def test_produce_warns_when_no_worker_serves_the_stream(redis_url):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOODSTREAM_")}
    env.update(MOODSTREAM_REDIS_URL=redis_url, MOODSTREAM_PREFIX="nowork")
    out = subprocess.run([sys.executable, "-c", "from moodstream.cli import main; main()", "produce",
                          "samples/street.jpg"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "no live worker serves nowork:frames" in out.stderr


def test_ctrl_c_while_a_live_url_never_answers_exits_at_once(redis_url):
    """Opening a URL blocks in FFmpeg up to its 10 s open timeout, and Ctrl-C waited it out."""
    import signal
    import socket
    import threading
    import time

    with socket.socket() as silent:  # accepts, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        held = []
        threading.Thread(target=lambda: [held.append(silent.accept()) for _ in range(8)], daemon=True).start()
        env = {k: v for k, v in os.environ.items() if not k.startswith("MOODSTREAM_")}
        proc = subprocess.Popen([sys.executable, "-m", "moodstream", "produce",
                                 f"http://127.0.0.1:{silent.getsockname()[1]}/cam.mjpg", "--redis-url", redis_url],
                                cwd=REPO, env=env, stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        try:
            deadline = time.monotonic() + 30
            while not held and time.monotonic() < deadline:  # FFmpeg is opening it
                time.sleep(0.05)
            assert held, "produce never connected"
            time.sleep(0.5)
            sent = time.monotonic()
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=30)
            took = time.monotonic() - sent
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 130 and "Traceback" not in err, err[-2000:]
    assert took < 3, f"exited {took:.1f} s after Ctrl-C"


def _produce(redis_url: str, *args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOODSTREAM_")}
    return subprocess.Popen([sys.executable, "-m", "moodstream", "produce", *args, "--redis-url", redis_url], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


class _Lines:
    """A stream of a process, line by line, read in a thread."""

    def __init__(self, stream):
        import threading

        self.lines: list[str] = []
        threading.Thread(target=lambda: [self.lines.append(line.rstrip("\n")) for line in stream], daemon=True).start()

    def wait_for(self, what, timeout_s: float = 30) -> None:
        import time

        deadline = time.monotonic() + timeout_s
        while not what(self.lines) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert what(self.lines), self.lines[-20:]


def test_ctrl_c_while_a_live_stream_stalls_exits_at_once(redis_url, client, keys):
    """Ctrl-C while a camera's stream stalled (a read blocked in FFmpeg, up to its 10 s read timeout):
    `produce` went on for the rest of the read, then died of a segfault (exit -11, about 9 s after
    Ctrl-C): the capture was released under the read still running. Now: exit 130 at once, every frame
    read sent and printed, no traceback."""
    code, took, lines, err = ctrl_c_in_a_stall(["produce", "--redis-url", redis_url, "--prefix", keys.prefix])
    assert code == 130 and "Traceback" not in err, (code, err[-2000:])
    assert took < 2, f"exited {took:.1f} s after Ctrl-C"
    assert [json.loads(line)["frame"] for line in lines] == list(range(10))
    assert client.llen(keys.intake) == 10 and "produced 10 jobs" in err


def test_ctrl_c_while_produce_waits_for_workers(redis_url, client, keys):
    """Ctrl-C lands where the main thread is: waiting for workers (`--backpressure wait`, none running)
    or pushing a frame, most of the time with 720p frames. It was click's 'Aborted!' and exit 1, the count
    unsaid, the frame in hand and the one held for its shot unsent. Now the first Ctrl-C sends what was
    read, unwaited, says the count and exits 130."""
    import signal
    import time

    server = serve(0, lambda connection: [x for _ in range(500) for x in (part(jpeg(picture(48, 64))), 0.02)])
    proc = _produce(redis_url, url(server), "--prefix", keys.prefix, "--backpressure", "wait", "--lag-limit", "3")
    try:
        out, err = _Lines(proc.stdout), _Lines(proc.stderr)
        err.wait_for(lambda lines: any("waiting for workers" in line for line in lines))
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        time.sleep(0.2)  # the last lines read
    finally:
        if proc.poll() is None:
            proc.kill()
        server.shutdown()
    text = "\n".join(err.lines)
    assert proc.returncode == 130 and "Aborted" not in text and "Traceback" not in text, (proc.returncode, text)
    frames = [json.loads(line)["frame"] for line in out.lines]
    assert frames == list(range(len(frames))) and len(frames) >= 5  # 4 sent, the one in hand, the held one
    assert client.llen(keys.intake) == len(frames) and f"produced {len(frames)} jobs" in text


def test_every_nth_frame_of_a_url_is_what_analyze_keeps(redis_url, client, keys):
    """`produce URL --every 3` (and an expander's URL job with every_n 3) sent every frame, of a
    file on a web server as of a camera's stream: `--every` reached files only, where `analyze
    URL --every 3` keeps frames 0, 3, 6, 9 of either."""
    from tests.support.expanderkit import CLIP, Site, body

    from moodstream.shared.media import iter_video

    site = Site({"/clip.mp4": body(CLIP.read_bytes())})
    server = serve(0)
    clip, stream = f"http://127.0.0.1:{site.port}/clip.mp4", url(server)
    try:
        want = [f.frame for f in iter_video(clip, every_n=3)]
        settings = Settings.from_env({}, redis_url=redis_url, prefix=keys.prefix)
        sent = [r.frame for r in Producer(settings, notice=lambda m: None).produce([clip], every_n=3)]
        live = [r.frame for r in Producer(settings, notice=lambda m: None).produce([stream], every_n=3,
                                                                                   max_frames=4)]
    finally:
        site.close()
        server.shutdown()
    assert want == [0, 3, 6, 9]
    assert sent == want and live == want, (sent, live)
