"""`moodstream dashboard`'s server over a real redis-server, without a browser: SSE resumes from
Last-Event-ID, only reads (no group, no key written), the token and Host guards, frame pictures
while the frames stream holds them and after it trimmed them, and bounded state under a flood."""

from __future__ import annotations

import base64
import json
import os
import time
import tracemalloc
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import pytest
import redis

from tests.support.streamkit import move_intake, stream_job

from moodstream.producer.client import Producer
from moodstream.producer.dashboard import model as dm
from moodstream.shared.errors import ConfigError
from moodstream.shared.labels import LABELS
from moodstream.shared.media import encode_jpeg
from moodstream.shared.record import Face, FrameResult, Smoothed
from moodstream.shared.settings import Settings
from moodstream.shared.wire import FIELD, encode_result

pytest.importorskip("starlette", reason="needs the dashboard extra (starlette, uvicorn)")
from moodstream.producer.dashboard.server import Dashboard, check_exposure  # noqa: E402


def settings_for(url: str, **kw) -> Settings:
    return Settings.from_env(env={}, redis_url=url, prefix="t", dashboard_port=0, **kw)


def result(source: str, frame: int, track_id: int = 0, job_id: str | None = None, enq: int | None = None):
    probs = {k: 0.3 if k == "happiness" else 0.1 for k in LABELS}
    face = Face(box=(10.0, 10.0, 50.0, 60.0), score=0.99, emotion="happiness", probabilities=probs,
                track_id=track_id, smoothed=Smoothed("happiness", probs))
    return FrameResult(source=source, frame=frame, timestamp_s=frame / 30, size=(64, 64), faces=[face],
                       job_id=job_id or f"{source}-{frame}", enqueued_at_ms=enq)


def add(client, keys, r: FrameResult) -> None:
    client.xadd(keys.results, {FIELD: encode_result(r)})
    client.xadd(keys.tracked, {FIELD: encode_result(r)})


def events(url: str, last_event_id: str | None = None, n: int = 2, timeout_s: float = 10.0) -> list[dict]:
    """The first ``n`` events of /events: [{"event", "id", "data"}]."""
    req = urllib.request.Request(url + "events", headers={"Last-Event-ID": last_event_id} if last_event_id else {})
    out, cur = [], {}
    with urllib.request.urlopen(req, timeout=timeout_s) as resp:
        for raw in resp:
            line = raw.decode().rstrip("\n")
            if not line:
                if "event" in cur:
                    out.append(cur)
                    if len(out) == n:
                        return out
                cur = {}
                continue
            key, _, value = line.partition(": ")
            cur[key] = json.loads(value) if key == "data" else value
    return out


def get(url: str, headers: dict | None = None):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def wait_state(url: str, predicate, timeout_s: float = 15.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        state = json.loads(get(url + "api/state")[2])
        if predicate(state) or time.monotonic() > deadline:
            return state
        time.sleep(0.1)


@pytest.fixture
def board(redis_url):
    started = []

    def start(**kw):
        b = Dashboard(settings_for(redis_url, **kw)).start()
        started.append(b)
        return b

    yield start
    for b in started:
        b.stop()


def test_a_page_that_reconnects_gets_only_what_came_after_its_last_event_id(board, client, keys):
    for i in range(5):
        add(client, keys, result("a", i))
    b = board()
    state = wait_state(b.url, lambda s: s["sources"] and s["sources"][0]["results"] == 5)
    first = events(b.url, n=2)
    assert first[0]["event"] == "snapshot" and first[0]["id"] == state["id"]
    assert "results=" in first[0]["id"] and "tracked=" in first[0]["id"]  # the entry ids it holds
    for i in range(3):
        add(client, keys, result("b", i))
    last_id = client.xrevrange(keys.tracked, count=1)[0][0].decode()
    # both streams read to their ends (the tracked stream can trail the results one by a read)
    wait_state(b.url, lambda s: any(x["name"] == "b" and x["results"] == 3 for x in s["sources"])
               and f"tracked={last_id};" in s["id"])
    resumed = [e for e in events(b.url, last_event_id=first[0]["id"], n=2) if e["event"] == "update"]
    assert resumed, "a known Last-Event-ID resumes with updates, not a snapshot"
    assert {s["name"] for s in resumed[0]["data"]["sources"]} == {"b"}
    assert f"tracked={last_id};" in resumed[-1]["id"]
    assert events(b.url, last_event_id="results=1-0;tracked=1-0", n=1)[0]["event"] == "snapshot"  # unknown: all


def test_it_only_reads(board, client, keys):
    for i in range(3):
        add(client, keys, result("a", i))
    before = sorted(client.keys("*"))
    b = board()
    wait_state(b.url, lambda s: s["fleet"] is not None and s["sources"])
    get(b.url + "frame?source=a")
    assert sorted(client.keys("*")) == before
    assert client.xinfo_groups(keys.results) == []  # plain XREAD: no consumer group


def test_off_loopback_needs_a_token_and_the_page_asks_for_it(board, redis_url):
    with pytest.raises(ConfigError, match="token"):
        check_exposure(settings_for(redis_url, dashboard_host="0.0.0.0"))
    check_exposure(settings_for(redis_url, dashboard_host="0.0.0.0", dashboard_token="s3cret-s3cret-s3cret"))
    for weak in ("short", "CHANGE_ME-dashboard-token"):  # the k8s component's placeholder is refused
        with pytest.raises(ConfigError, match="placeholder"):
            check_exposure(settings_for(redis_url, dashboard_host="0.0.0.0", dashboard_token=weak))
    b = board(dashboard_token="s3cret-s3cret-s3cret")
    assert get(b.url)[0] == 401
    assert get(b.url + "api/state")[0] == 401
    assert get(b.url + "events")[0] == 401
    assert get(b.url + "?token=wrong")[0] == 401
    opener = urllib.request.build_opener(type("NoRedirect", (urllib.request.HTTPRedirectHandler,),
                                              {"redirect_request": lambda *a, **k: None}))
    with pytest.raises(urllib.error.HTTPError) as seen:
        opener.open(b.url + "?token=s3cret-s3cret-s3cret", timeout=10)
    assert seen.value.code == 303 and "HttpOnly" in seen.value.headers["set-cookie"]
    assert get(b.url + "api/state", {"Authorization": "Bearer s3cret-s3cret-s3cret"})[0] == 200
    assert get(b.url + "api/state", {"Cookie": "moodstream_dashboard=s3cret-s3cret-s3cret"})[0] == 200
    assert "s3cret-s3cret-s3cret" not in repr(settings_for(redis_url, dashboard_token="s3cret-s3cret-s3cret"))
    # a loopback server answers loopback names only (a rebound DNS name gets 400)
    assert get(b.url + "healthz", {"Host": "evil.example"})[0] == 400


def test_the_frame_picture_while_the_stream_holds_it_and_after_trimming(board, client, keys, redis_url):
    producer = Producer(settings_for(redis_url))
    rgb = np.zeros((48, 64, 3), np.uint8)
    rgb[:, :32] = 255
    ref = producer.submit_image(encode_jpeg(rgb), source="cam", frame=0)
    move_intake(producer.settings)  # a worker's mover puts it in the stream
    enq = stream_job(client, keys, ref.job_id)[1].enqueued_at_ms  # as the worker's result carries it
    add(client, keys, result("cam", 0, job_id=ref.job_id, enq=enq))
    b = board()
    wait_state(b.url, lambda s: s["sources"])
    status, headers, body = get(b.url + "frame?" + urllib.parse.urlencode({"source": "cam"}))
    assert status == 200 and headers["Content-Type"] == "image/jpeg" and body[:2] == b"\xff\xd8"
    client.xtrim(keys.frames, maxlen=0)  # MAXLEN trimmed it (as stream_maxlen does on a long run)
    ref = producer.submit_image(encode_jpeg(rgb), source="other", frame=0)
    move_intake(producer.settings)
    enq = stream_job(client, keys, ref.job_id)[1].enqueued_at_ms
    client.xtrim(keys.frames, maxlen=0)
    add(client, keys, result("cam", 1, job_id="gone", enq=enq))
    wait_state(b.url, lambda s: s["sources"][0]["latest"]["job"] == "gone")
    status, _, body = get(b.url + "frame?source=cam")
    assert status == 404 and "trimmed" in json.loads(body)["error"]
    assert get(b.url + "frame?source=nobody")[0] == 404


def test_the_frame_picture_of_a_job_that_waited_in_the_intake_behind_others(board, client, keys, redis_url):
    # a job pushed behind 100 others reaches the stream after them all: its entry id lies more than the
    # 64 entries past its enqueue time that a lookup by job id reads; the result names the entry itself
    producer = Producer(settings_for(redis_url))
    rgb = np.zeros((48, 64, 3), np.uint8)
    for i in range(100):
        producer.submit_image(encode_jpeg(rgb), source="busy", frame=i)
    ref = producer.submit_image(encode_jpeg(rgb), source="cam", frame=0)
    move_intake(producer.settings)
    entry, job = stream_job(client, keys, ref.job_id)
    r = result("cam", 0, job_id=ref.job_id, enq=job.enqueued_at_ms)
    r.frame_entry = entry  # as the worker that answered it names it
    add(client, keys, r)
    b = board()
    wait_state(b.url, lambda s: s["sources"])
    status, _, body = get(b.url + "frame?source=cam")
    assert status == 200 and body[:2] == b"\xff\xd8", body[:200]


def test_state_stays_bounded_under_many_sources_and_long_runs():
    model = dm.Model()
    for s in range(3 * dm.MAX_SOURCES):
        for i in range(600):
            model.fold("tracked", f"{s * 1000 + i + 1}-0", result(f"src-{s}", i, track_id=i % (2 * dm.MAX_PEOPLE)))
            if i % 50 == 0:
                model.commit()
    model.commit()
    assert len(model.sources) == dm.MAX_SOURCES
    assert {s.name for s in model.sources.values()} == {f"src-{s}" for s in range(2 * dm.MAX_SOURCES,
                                                                                 3 * dm.MAX_SOURCES)}
    for src in model.sources.values():
        assert len(src.people) <= dm.MAX_PEOPLE
        assert all(len(p.points) <= dm.MAX_POINTS for p in src.people.values())
    assert len(model.ring) <= dm.RING and model.ring_bytes <= dm.RING_BYTES
    # catching up on a long stream in one batch: a timeline is sent whole, never more than it keeps
    model.fold("tracked", "999999999-0", result("src-late", 0))
    for i in range(1, 5 * dm.MAX_POINTS):
        model.fold("tracked", f"{1_000_000_000 + i}-0", result("src-late", i))
    model.commit()
    late = next(s for s in json.loads(model.ring[-1][2])["sources"] if s["name"] == "src-late")["people"][0]
    assert late["replace"] and len(late["points"]) <= dm.MAX_POINTS
    snap = json.dumps(model.snapshot())
    assert len(snap) < 2_000_000


def test_summaries_are_read_a_few_at_a_time(client, keys, redis_url):
    """A summaries entry carries its face pictures (megabytes for many people): one XREAD of 500 of
    them held them all at once (a 200-source feed peaked at 440 MiB against the 256Mi limit)."""
    from moodstream.producer.dashboard.feed import SUMMARY_READ_COUNT, Feed

    n = 24
    for i in range(n):
        pictures = {str(t): base64.b64encode(os.urandom(48_000)).decode() for t in range(16)}  # 1 MiB
        client.xadd(keys.summaries, {FIELD: json.dumps({"source": f"src-{i}", "tracks": [
            {"track_id": t, "person": True} for t in range(16)], "thumbnails": pictures}).encode()})
    feed = Feed(settings_for(redis_url), block_ms=100)
    try:
        tracemalloc.start()
        assert feed.read() == SUMMARY_READ_COUNT
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < (3 * SUMMARY_READ_COUNT) << 20, f"{peak / 2**20:.1f} MiB"
        start = time.monotonic()  # the rest without waiting on the (idle) results streams
        while feed.read():
            pass
        assert time.monotonic() - start < 5
        assert feed.last[keys.summaries] == client.xrevrange(keys.summaries, count=1)[0][0].decode()
        newest = feed.model.snapshot()["sources"][0]
        assert newest["name"] == f"src-{n - 1}" and len(newest["summary"]["tracks"]) == 16
    finally:
        feed.stop()


def test_it_runs_as_the_read_only_acl_user_of_deploy_k8s(client, keys, redis_url):
    """The rules of deploy/k8s/base/redis/acl/moodstream-dashboard.rules, with the test's prefix:
    everything the page shows, and no command refused."""
    from pathlib import Path

    rules = (Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "base" / "redis" / "acl"
             / "moodstream-dashboard.rules").read_text()
    tokens = " ".join(x for x in rules.splitlines() if not x.lstrip().startswith("#")).replace("moodstream:", "t:")
    client.execute_command("ACL", "SETUSER", "dash-test", "reset", "on", ">pw-dash", *tokens.split())
    client.execute_command("ACL", "LOG", "RESET")
    try:
        producer = Producer(settings_for(redis_url))
        ref = producer.submit_image(encode_jpeg(np.zeros((32, 32, 3), np.uint8)), source="cam", frame=0)
        move_intake(producer.settings)
        enq = stream_job(client, keys, ref.job_id)[1].enqueued_at_ms
        add(client, keys, result("cam", 0, job_id=ref.job_id, enq=enq))
        client.xadd(keys.dead, {"reason": "not_msgpack", "detail": "x", "worker": "w"})
        url = redis_url.replace("redis://", "redis://dash-test:pw-dash@")
        b = Dashboard(settings_for(url)).start()
        try:
            state = wait_state(b.url, lambda s: s["fleet"] is not None and s["sources"])
            assert state["redis"]["ok"] is True and state["fleet"]["dead"]["length"] == 1
            assert get(b.url + "frame?source=cam")[0] == 200
        finally:
            b.stop()
        assert client.execute_command("ACL", "LOG") == []  # nothing refused
        with pytest.raises(redis.exceptions.NoPermissionError):
            redis.Redis.from_url(url).xadd(keys.results, {"x": "y"})
    finally:
        client.execute_command("ACL", "DELUSER", "dash-test")


def test_the_fleet_figures_say_the_track_stage_s_lines_as_status_does(board, client, keys):
    """`moodstream status` said what the track stage counted (late results, results trimmed before it read
    them: frames in no track); the page, the fleet's figures as status takes them, said nothing of it."""
    from moodstream.producer.status import track_lines, track_stats

    b = board()
    state = wait_state(b.url, lambda s: s["fleet"] is not None)
    assert state["fleet"]["track_lines"] == []  # quiet while the stage counted none
    client.hset(keys.track_stats, mapping={"late": 3, "late_after_run_ended": 1, "trimmed_gaps": 1,
                                           "trimmed_unread": 5})
    state = wait_state(b.url, lambda s: s["fleet"]["track_lines"], timeout_s=30)
    assert state["fleet"]["track_lines"] == track_lines(track_stats(client, keys))
    assert any("5 results trimmed" in line for line in state["fleet"]["track_lines"])
    assert any("3 late results" in line for line in state["fleet"]["track_lines"])
