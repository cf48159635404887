"""Poison messages are dead-lettered with their reason and acked; good frames around them are served."""

from __future__ import annotations

from collections import Counter

import cv2
import msgpack
import numpy as np
from tests.support.doubles import ExplodingDetectorTestDouble
from tests.support.streamkit import (all_results, dead_letters, move_intake, pending_count, report, settings_for,
                                     start_worker, stream_job, tiny_jpeg, wait_for)

from moodstream.producer.client import Producer
from moodstream.shared.record import FrameJob, Raw
from moodstream.shared.wire import FIELD, SCHEMA_VERSION, encode_frame, now_ms


def _job(job_id: str, **payload) -> bytes:
    return encode_frame(FrameJob(job_id, "poison", 0, **payload))


def _map(**changes) -> bytes:
    m = {"v": SCHEMA_VERSION, "kind": "frame", "job_id": "x", "source": "poison", "frame": 0,
         "enqueued_at_ms": now_ms(), "image": tiny_jpeg(0)}
    m.update(changes)
    return msgpack.packb({k: v for k, v in m.items() if v is not None})


def test_poison_messages_dead_lettered(redis_url, client, keys, checkpoint):
    settings = settings_for(redis_url, max_pixels=100 * 100, batch_max=4)
    good_jpeg = tiny_jpeg(1)
    big_png = cv2.imencode(".png", np.zeros((200, 200, 3), np.uint8))[1].tobytes()  # 40,000 px > 10,000
    # (payload or None for "no msg field", expected dead-letter reason, job id if the worker can know it)
    poisons = [
        (b"this is not msgpack \xc1\xc1", "not_msgpack", None),
        (b"", "not_msgpack", None),  # zero-byte message
        (_map(v=99), "schema_version", None),
        (_map(job_id=None), "missing_field", None),
        (None, "missing_field", None),  # stream entry without the msg field
        (_job("p-trunc", image=good_jpeg[: len(good_jpeg) // 2]), "truncated", "p-trunc"),
        (_job("p-corrupt", image=b"\xff\xd8" + bytes(range(256)) * 4 + b"\xff\xd9"), "unreadable", "p-corrupt"),
        (_job("p-empty", image=b""), "empty", "p-empty"),  # zero image bytes
        (_job("p-big", image=big_png), "too_large", "p-big"),
        (_job("p-bigraw", raw=Raw.of(np.zeros((120, 120, 3), np.uint8))), "too_large", "p-bigraw"),
    ]
    producer = Producer(settings)
    good = []
    for i, (payload, _, _) in enumerate(poisons):
        good.append(producer.submit_image(tiny_jpeg(100 + i), source="good", frame=i).job_id)
        client.xadd(keys.frames, {FIELD: payload} if payload is not None else {b"other": b"1"})
    good.append(producer.submit_image(tiny_jpeg(999), source="good", frame=99).job_id)

    w = start_worker(settings, checkpoint, "w-poison")
    try:
        wait_for(lambda: pending_count(client, keys) == 0
                 and client.xlen(keys.dead) >= len(poisons), 60, what="all entries served")
    finally:
        w.stop()
    dead = dead_letters(client, keys)
    results = all_results(client, keys)
    by_job = {r.job_id: r for r in results}
    assert Counter(d["reason"].decode() for d in dead) == Counter(reason for _, reason, _ in poisons)
    for d in dead:  # each dead letter keeps what is needed to look into it
        assert d["entry_id"] and d["worker"] == b"w-poison" and d["detail"]
    for _, reason, job_id in poisons:
        if job_id is not None:  # the caller learns why, in an error result
            assert by_job[job_id].error.reason == reason and by_job[job_id].faces == []
    assert all(by_job[j].ok and len(by_job[j].faces) == 1 for j in good)
    assert client.xpending(keys.frames, keys.group)["pending"] == 0
    report("poison", sent=len(poisons) + len(good), good=len(good), poison=len(poisons), results=len(results),
           dead_lettered=len(dead), good_served=sum(by_job[j].ok for j in good),
           lost=len(set(good) - set(by_job)), reasons=sorted(d["reason"].decode() for d in dead))


def test_deliveries_to_workers_that_died_elsewhere_cost_nothing(redis_url, client, keys, checkpoint):
    """Issue 12, item 7: an entry delivered 5 times to workers that died for other
    reasons is a suspect, served alone, and answered; only solo attempts that
    killed a worker count toward max_deliveries."""
    settings = settings_for(redis_url, max_deliveries=3, reclaim_idle_ms=1000)  # (its floor)
    client.xgroup_create(keys.frames, keys.group, id="0", mkstream=True)
    producer = Producer(settings)
    ref = producer.submit_image(tiny_jpeg(5), source="unlucky")
    poison = producer.submit_image(tiny_jpeg(7), source="killer")
    assert move_intake(settings) == 2  # a worker's mover put them in the stream
    ref_id, poison_id = (stream_job(client, keys, r.job_id)[0] for r in (ref, poison))
    # ghosts that died holding both entries: delivered once, then claimed three more times
    client.xreadgroup(keys.group, "ghost", {keys.frames: ">"}, count=2)
    for _ in range(3):
        client.xclaim(keys.frames, keys.group, "ghost", 0, [ref_id, poison_id])
    client.hset(keys.attempts, poison_id, 3)  # three workers died serving it alone
    ok = producer.submit_image(tiny_jpeg(6), source="fine")
    w = start_worker(settings, checkpoint, "w-deliveries")
    try:
        wait_for(lambda: client.xlen(keys.results) >= 3, 30, what="all three answered")
    finally:
        w.stop()
    by_job = {r.job_id: r for r in all_results(client, keys)}
    assert by_job[ref.job_id].ok and by_job[ok.job_id].ok
    assert by_job[poison.job_id].error.reason == "max_deliveries"
    (dead,) = dead_letters(client, keys)
    assert dead["reason"] == b"max_deliveries" and int(dead["deliveries"]) == 5
    assert client.xpending(keys.frames, keys.group)["pending"] == 0
    assert client.hlen(keys.attempts) == 0  # forgotten once answered


def test_failing_batch_is_retried_frame_by_frame(redis_url, client, keys, checkpoint):
    settings = settings_for(redis_url, batch_max=8, batch_wait_ms=200)
    producer = Producer(settings, encoding="png")
    ids = [producer.submit_array(np.full((32, 32, 3), 80 + i, np.uint8), source="mix", frame=i).job_id
           for i in range(3)]
    bad = producer.submit_array(np.zeros((32, 32, 3), np.uint8), source="mix", frame=3).job_id
    ids += [producer.submit_array(np.full((32, 32, 3), 200, np.uint8), source="mix", frame=4).job_id]
    detector = ExplodingDetectorTestDouble()
    w = start_worker(settings, checkpoint, "w-explode", detector=detector)
    try:
        wait_for(lambda: client.xlen(keys.results) >= 5, 30, what="five results")
    finally:
        w.stop()
    by_job = {r.job_id: r for r in all_results(client, keys)}
    assert by_job[bad].error.reason == "inference_failed"
    assert all(by_job[j].ok for j in ids)
    assert detector.batches[-4:] == [1, 1, 1, 1]  # after the failing batch, one frame at a time
    assert [d["reason"] for d in dead_letters(client, keys)] == [b"inference_failed"]
