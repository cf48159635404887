"""The client commands under attack (issue 23 item 1): `results --follow`, `status --watch`,
`produce` and `tracks --follow` as real processes, against a wrong password and operators
deleting their streams (DEL, FLUSHALL). Each goes through the one retry helper
(shared/retry.py): a refused password is one line and exit 1, a deleted stream is carried
on from."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time

import pytest
import redis
from tests.support.procs import REPO, measure, spawn_cli, stop, wait_until

from moodstream.shared.embedded import EmbeddedRedis
from moodstream.shared.keys import Keys
from moodstream.shared.record import FrameResult
from moodstream.shared.wire import FIELD, encode_result

pytestmark = pytest.mark.slow
KEYS = Keys("t")
CLIP = REPO / "samples" / "hamilton_clip.mp4"


class Lines:
    """A process's stdout, line by line, read in a thread (so the test never blocks on it)."""

    def __init__(self, proc: subprocess.Popen):
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.thread.start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def json(self) -> list[dict]:
        return [json.loads(line) for line in list(self.lines) if line.startswith("{")]


def _interrupt(proc: subprocess.Popen, codes: tuple[int, ...] = (130,)) -> str:
    """SIGINT (Ctrl-C), then what the process wrote to stderr; it must exit with one of ``codes`` (130: how a
    follower or a watch is stopped, as a shell reports a Ctrl-C)."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("still running 30 s after Ctrl-C: " + stop(proc)[1][-2000:])
    err = proc.stderr.read()
    assert proc.returncode in codes, err[-2000:]
    assert "Traceback" not in err, err[-2000:]
    return err


def _add_result(client: redis.Redis, job_id: str) -> None:
    r = FrameResult(job_id=job_id, source="attacked", frame=0, worker="w", faces=[], size=(64, 64))
    client.xadd(KEYS.results, {FIELD: encode_result(r)})


ATTACKS = {"del": lambda c, key: c.delete(key), "flushall": lambda c, key: c.flushall()}

WRONG_PASSWORD = {
    "results --follow": ["results", "--follow"],
    "status --watch": ["status", "--watch", "0.5"],
    "status": ["status"],
    "produce": ["produce", str(CLIP), "--max-frames", "3"],
    "tracks --follow": ["tracks", "--follow"],
}


@pytest.mark.parametrize("command", list(WRONG_PASSWORD))
def test_a_wrong_password_is_one_line_and_exit_1(command):
    """`status --watch` retried a refused password for ever, printing it as "cannot reach
    Redis" every half second; `status` called it "cannot reach Redis"."""
    server = EmbeddedRedis(extra_args=["--requirepass", "right-one"]).start()
    url = f"redis://:wrong-one@127.0.0.1:{server.port}/0"
    t0 = time.monotonic()
    proc = spawn_cli(*WRONG_PASSWORD[command], MOODSTREAM_REDIS_URL=url, MOODSTREAM_PREFIX="t")
    try:
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail(f"`moodstream {command}` still running 30 s after start with a wrong password")
        took = time.monotonic() - t0
        lines = [line for line in (out + err).splitlines() if line.strip()]
        measure(f"wrong_password {command}", exit_s=round(took, 2), returncode=proc.returncode, lines=len(lines))
        assert proc.returncode == 1, out + err
        assert len(lines) == 1, out + err
        assert "wrong-one" not in out + err and "Traceback" not in err
        assert "refused" in lines[0] and "cannot reach" not in lines[0], lines[0]
        assert took < 15, took
    finally:
        stop(proc)
        server.stop()


def _add_summary(client: redis.Redis, source: str) -> None:
    summary = {"source": source, "run": 1, "ended": "test", "frames": 1, "tracks": []}
    client.xadd(KEYS.summaries, {FIELD: json.dumps(summary)})


# command, its stream, how to add an entry named NAME, the name of what it printed, Ctrl-C's exit codes
FOLLOWERS = {
    "results --follow": (["results", "--follow"], KEYS.results, _add_result, "job_id", (130,)),
    "tracks --follow": (["tracks", "--follow", "--json"], KEYS.summaries, _add_summary, "source", (130,)),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
@pytest.mark.parametrize("command", list(FOLLOWERS))
def test_a_follower_carries_on_after_its_stream_is_deleted(redis_url, client, command, attack):
    args, key, add, name, codes = FOLLOWERS[command]
    proc = spawn_cli(*args, MOODSTREAM_REDIS_URL=redis_url, MOODSTREAM_PREFIX="t")
    out = Lines(proc)
    try:
        # reading from now: an entry added before it reads is not its to print (a fixed 2 s for the
        # interpreter's start lost the first entry on a loaded machine)
        wait_until(lambda: any(c.get("cmd") in ("xread", "xreadgroup") for c in client.client_list()), 60,
                   f"`moodstream {command}` reading")
        for round_ in range(3):
            time.sleep(0.5)  # blocked in XREAD
            ATTACKS[attack](client, key)
            time.sleep(0.3)
            assert proc.poll() is None, f"died after {attack}: " + stop(proc)[1][-2000:]
            add(client, f"after-{attack}-{round_}")
            wait_until(lambda: f"after-{attack}-{round_}" in {x[name] for x in out.json()}, 20,
                       f"the entry added after {attack} {round_ + 1}")
    finally:
        err = _interrupt(proc, codes) if proc.poll() is None else stop(proc)[1]
    assert [x[name] for x in out.json()] == [f"after-{attack}-{k}" for k in range(3)], err


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_status_watch_carries_on_after_its_streams_are_deleted(redis_url, client, attack):
    proc = spawn_cli("status", "--watch", "0.3", "--json", MOODSTREAM_REDIS_URL=redis_url, MOODSTREAM_PREFIX="t")
    out = Lines(proc)
    try:
        client.xgroup_create(KEYS.frames, KEYS.group, id="0", mkstream=True)
        for k in range(3):
            client.xadd(KEYS.frames, {"x": k})
            _add_result(client, f"r{k}")
        wait_until(lambda: any(s.get("backlog", {}).get("total") == 3 for s in out.json()), 30, "a snapshot")
        for key in (KEYS.frames, KEYS.results):
            ATTACKS[attack](client, key)
            seen = len(out.lines)
            wait_until(lambda: len(out.lines) >= seen + 3, 20, f"three snapshots after {attack} of {key}")
            assert proc.poll() is None, f"died after {attack}: " + stop(proc)[1][-2000:]
    finally:
        err = _interrupt(proc) if proc.poll() is None else stop(proc)[1]
    snaps = out.json()
    assert not [s for s in snaps if "error" in s], [s for s in snaps if "error" in s][:3]
    assert snaps[-1]["backlog"]["total"] == 0 and snaps[-1]["results"]["length"] == 0, err


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_produce_carries_on_after_the_frames_stream_is_deleted(redis_url, client, attack):
    """A producer waiting for workers (lag_limit 5, no worker) while an operator empties
    what it waits on, the intake list it pushes to: it sends every frame and exits 0."""
    n = 24
    proc = spawn_cli("produce", str(CLIP), "--max-frames", str(n), "--encode", "jpeg", "--lag-limit", "5",
                     MOODSTREAM_REDIS_URL=redis_url, MOODSTREAM_PREFIX="t")
    out = Lines(proc)
    seen: set[bytes] = set()
    attacks = 0
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            if client.llen(KEYS.intake) >= 5:  # the producer is waiting: take what it sent, then delete it,
                # in one transaction: a frame it adds between the read and the delete would be lost to the count
                pipe = client.pipeline(transaction=True)
                pipe.lrange(KEYS.intake, 0, -1)
                ATTACKS[attack](pipe, KEYS.intake)
                seen |= set(pipe.execute()[0])
                attacks += 1
            time.sleep(0.1)
        seen |= set(client.lrange(KEYS.intake, 0, -1))
        proc.wait(timeout=10)
    finally:
        _, err = stop(proc)
    out.thread.join(5)
    measure(f"produce_{attack}", attacks=attacks, sent=len(out.json()))
    assert proc.returncode == 0, err[-2000:]
    assert "Traceback" not in err, err[-2000:]
    assert attacks >= 3, err[-2000:]
    assert [j["frame"] for j in out.json()] == list(range(n))
    assert len(seen) == n


def test_status_watch_says_redis_is_gone_and_resumes_when_it_is_back():
    """--watch keeps watching through a Redis restart: an {"error"} line while it is down (the
    one retry helper waits, stop-aware), snapshots again once it is back."""
    server = EmbeddedRedis().start()
    proc = spawn_cli("status", "--watch", "0.3", "--json", MOODSTREAM_REDIS_URL=server.url, MOODSTREAM_PREFIX="t")
    out = Lines(proc)
    try:
        wait_until(lambda: any("backlog" in s for s in out.json()), 30, "a first snapshot")
        server.kill()
        wait_until(lambda: "error" in out.json()[-1], 30, "an error line while Redis is down")
        assert "cannot reach Redis" in out.json()[-1]["error"]
        time.sleep(1.0)
        server.start()
        wait_until(lambda: "backlog" in out.json()[-1], 60, "snapshots again once Redis is back")
    finally:
        err = _interrupt(proc) if proc.poll() is None else stop(proc)[1]
        server.stop()
    assert "Traceback" not in err
