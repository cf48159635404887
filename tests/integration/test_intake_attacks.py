"""Attacks on the intake list and its movers (worker/intake.py), against a real Redis and a real
worker: what an admin's mistake, a hostile producer or a restart does to the frames waiting there."""

from __future__ import annotations

import logging
import time

import redis
from tests.support.streamkit import all_results, dead_letters, settings_for, start_worker, tiny_jpeg, wait_for

from moodstream.producer.client import Producer
from moodstream.shared.errors import ConfigError
from moodstream.shared.keys import Keys
from moodstream.shared.wire import DEAD_LETTER_PAYLOAD_BYTES, FIELD, HEAD, TOO_LARGE, encode_frame
from moodstream.shared.record import FrameJob

KEYS = Keys("t")


def _job(i: int, source: str) -> bytes:
    return encode_frame(FrameJob(f"{source}-{i}", source, i, image=tiny_jpeg(i, size=(8, 8))))


def test_an_intake_of_another_type_leaves_the_worker_serving(redis_url, client, checkpoint, caplog):
    """The intake key turned into a string by hand while a worker runs: the worker goes on serving the
    stream (frames there, an old producer's XADD), its mover says so in one line, not once a retry, and
    moves again once the key is a list: no crash loop of every worker of the fleet."""
    settings = settings_for(redis_url)
    with caplog.at_level(logging.WARNING, logger="moodstream"):
        w = start_worker(settings, checkpoint, "w-wrongtype")
        try:
            wait_for(lambda: client.exists(KEYS.heartbeat("w-wrongtype")), 30, what="the worker")
            client.set(KEYS.intake, b"not a list")
            time.sleep(1.5)  # the mover meets it (BLMOVE every block_s, then LLEN and the script)
            client.xadd(KEYS.frames, {FIELD: _job(0, "old-producer")})  # a producer of the release before
            wait_for(lambda: client.xlen(KEYS.results) >= 1, 30, what="the stream served")
            assert w.thread.is_alive(), w.error
            client.delete(KEYS.intake)
            Producer(settings).submit_image(tiny_jpeg(1), source="after")
            wait_for(lambda: client.xlen(KEYS.results) >= 2, 30, what="the intake moved again")
        finally:
            w.stop()
    said = [r for r in caplog.records if KEYS.intake in r.getMessage() and "list" in r.getMessage()]
    assert len(said) == 1, [r.getMessage() for r in caplog.records]
    assert sorted(r.source for r in all_results(client, KEYS)) == ["after", "old-producer"]


def test_a_message_over_max_message_bytes_never_enters_the_stream(redis_url, client, checkpoint):
    """A producer credential RPUSHes what it likes: one element far over max_message_bytes (here
    over 2 MiB with a 256 KiB limit). The mover leaves it out of the frames stream (no worker reads it
    whole, XREADGROUP would take batch_max of them at once) and it is dead-lettered as too_large,
    with its size; the frames behind it are served."""
    settings = settings_for(redis_url, max_message_bytes=256 * 1024)
    client.rpush(KEYS.intake, b"\x00" * (2 << 20))
    producer = Producer(settings)
    sent = producer.submit_image(tiny_jpeg(1), source="behind").job_id
    w = start_worker(settings, checkpoint, "w-big")
    try:
        wait_for(lambda: client.xlen(KEYS.results) >= 1 and client.xlen(KEYS.dead) >= 1, 30, what="served")
    finally:
        w.stop()
    biggest = max(len(f.get(FIELD, b"")) for _, f in client.xrange(KEYS.frames))
    assert biggest <= settings.max_message_bytes, biggest
    (dead,) = dead_letters(client, KEYS)
    assert dead["reason"] == b"too_large" and int(dead["msg_bytes"]) == 2 << 20
    assert [r.job_id for r in all_results(client, KEYS)] == [sent]
    assert client.llen(KEYS.intake) == 0


def test_a_producer_says_the_intake_is_not_a_list(redis_url, client):
    client.set(KEYS.intake, b"x")
    producer = Producer(settings_for(redis_url))
    try:
        producer.submit_image(tiny_jpeg(1), source="p")
    except ConfigError as exc:
        assert f"{KEYS.intake} is not a list" in str(exc), exc
    else:
        raise AssertionError("pushed to a string")
    finally:
        producer.close()


def test_the_stand_in_for_a_message_too_large(any_client):
    """On Redis 7 and 6.2: the mover passes on the size and head of a message over max_message_bytes, in
    order with the messages around it, and the intake is left empty."""
    from tests.support.streamkit import move_intake

    kw = any_client.connection_pool.connection_kwargs
    settings = settings_for(f"redis://{kw['host']}:{kw['port']}/0", max_message_bytes=2000)
    any_client.rpush(KEYS.intake, _job(0, "s"), b"\x01" * 5000 + b"tail", _job(2, "s"))
    assert move_intake(settings) == 3
    entries = [f for _, f in any_client.xrange(KEYS.frames)]
    assert FIELD in entries[0] and FIELD in entries[2] and FIELD not in entries[1]
    assert entries[1] == {TOO_LARGE: b"5004", HEAD: b"\x01" * DEAD_LETTER_PAYLOAD_BYTES}
    assert any_client.llen(KEYS.intake) == 0


def test_the_fleet_goes_on_after_the_frames_stream_and_the_intake_are_deleted(redis_url, client, checkpoint):
    """DEL of the frames stream, then FLUSHALL, while a worker and its mover run: the next frames
    pushed are moved and served, each once."""
    settings = settings_for(redis_url)
    producer = Producer(settings)
    w = start_worker(settings, checkpoint, "w-del")
    sent = []
    try:
        for round_, wipe in enumerate((lambda: client.delete(KEYS.frames), client.flushall)):
            sent += [producer.submit_image(tiny_jpeg(i), source=f"r{round_}", frame=i).job_id for i in range(3)]
            wait_for(lambda: len({r.job_id for r in all_results(client, KEYS)} & set(sent)) == len(sent), 30,
                     what=f"round {round_} served")
            wipe()
            sent = []
            time.sleep(1.0)
        sent = [producer.submit_image(tiny_jpeg(i), source="last", frame=i).job_id for i in range(3)]
        wait_for(lambda: len(all_results(client, KEYS)) >= 3, 30, what="the frames after FLUSHALL")
        assert w.thread.is_alive(), w.error
    finally:
        w.stop()
        producer.close()
    assert sorted(r.job_id for r in all_results(client, KEYS)) == sorted(sent)


def test_a_push_to_an_idle_fleet_is_sent_to_one_mover_not_each(any_client):
    """Idle movers wait on the intake with BLMOVE, whose reply is the head message: with each of 4
    movers blocked there, one 4 MiB push left Redis 10 times (40 MiB: every mover read it whole, woken
    again by each other's BLMOVE), 32 MiB frames on a fleet of 20, gigabytes a frame. One mover of the
    fleet waits there; the others look at the list's length."""
    from moodstream.worker.intake import Mover

    kw = any_client.connection_pool.connection_kwargs
    settings = settings_for(f"redis://{kw['host']}:{kw['port']}/0")
    # the trim point read at start only: XINFO STREAM answers the first and last entries whole too
    movers = [Mover(settings, name=f"m{i}", trim_every_s=3600) for i in range(4)]
    for m in movers:
        m.start()
    try:
        time.sleep(1.5)  # all idle
        before = int(any_client.info("stats")["total_net_output_bytes"])
        t0 = time.monotonic()
        any_client.rpush(KEYS.intake, b"x" * (4 << 20))
        wait_for(lambda: any_client.xlen(KEYS.frames) == 1, 10, poll_s=0.01, what="the push moved")
        took = time.monotonic() - t0
        time.sleep(1.0)
        sent = int(any_client.info("stats")["total_net_output_bytes"]) - before
    finally:
        for m in movers:
            m.stop()
    assert sent < 2 * (4 << 20), f"{sent / 2 ** 20:.1f} MiB left Redis for one 4 MiB push"
    assert took < 0.4, f"{took:.2f} s: not woken by the push"
    assert sum(m.moved for m in movers) == 1


def test_the_mover_s_trim_point_costs_ids_not_frames(any_client):
    """The mover read its trim point (every second while it moves) with XINFO STREAM, whose reply
    holds the stream's first and last entries whole: two frames out of Redis a read (3.3 MB for 1080p
    PNG frames, a second, per moving worker). Now ids only, read inside Redis."""
    from moodstream.worker.intake import Mover

    kw = any_client.connection_pool.connection_kwargs
    settings = settings_for(f"redis://{kw['host']}:{kw['port']}/0", stream_maxlen=2)
    big = encode_frame(FrameJob("big", "s", 0, image=b"\xff\xd8" + b"x" * (1 << 20)))
    any_client.xgroup_create(KEYS.frames, KEYS.group, id="0", mkstream=True)
    for _ in range(4):  # read and acknowledged: what trimming may remove
        any_client.xadd(KEYS.frames, {FIELD: big})
    for eid, _ in any_client.xreadgroup(KEYS.group, "w", {KEYS.frames: ">"})[0][1]:
        any_client.xack(KEYS.frames, KEYS.group, eid)
    any_client.rpush(KEYS.intake, *[big] * 6)
    mover = Mover(settings, name="m", batch=1, trim_every_s=0)  # a trim read before each move
    try:
        before = int(any_client.info("stats")["total_net_output_bytes"])
        assert sum(mover.move_once() for _ in range(6)) == 6
        sent = int(any_client.info("stats")["total_net_output_bytes"]) - before
    finally:
        mover.stop()
    assert sent < (1 << 20), f"{sent / 2 ** 20:.1f} MiB left Redis for 6 moves"
    assert any_client.xlen(KEYS.frames) < 10  # and it trims: the acknowledged ones went
