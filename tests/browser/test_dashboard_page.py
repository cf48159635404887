"""`moodstream dashboard` in a real browser, over a real redis-server with a real worker and track stage:
the empty state, a `produce` run's source and people while it runs and after, a hostile source name
shown as text, and the page through a Redis restart."""

from __future__ import annotations

import json
import os
import shutil
import threading
import urllib.request
from pathlib import Path

import pytest
import redis
from tests.support.browserkit import screenshot, service, wait_js, wait_until

from moodstream.producer.client import Producer
from moodstream.shared.embedded import EmbeddedRedis
from moodstream.shared.keys import Keys
from moodstream.shared.settings import Settings
from moodstream.shared.wire import FIELD, decode_result

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "samples" / "hamilton_clip.mp4"
CLIP = REPO / "tests" / "fixtures" / "clip_360p.mp4"
HOSTILE = "<img src=x onerror=window.__xss=1>"

pytestmark = pytest.mark.slow

PAGE_IDS = "return [...document.querySelectorAll('[data-track-id]')].map(e => +e.dataset.trackId)"


def settings_for(url: str) -> Settings:
    return Settings.from_env(env={}, redis_url=url, prefix="t", device="cpu", batch_max=8, batch_wait_ms=10,
                             decode_threads=2, heartbeat_ttl_s=5)


def body(driver) -> str:
    return driver.find_element("tag name", "body").text


def produce(settings: Settings, paths: list[str], **kw) -> threading.Thread:
    """`moodstream produce PATHS` (its Producer.produce), in a thread."""
    t = threading.Thread(target=lambda: list(Producer(settings, retry_for_s=60).produce(paths, **kw)), daemon=True)
    t.start()
    return t


def tracked_ids(client: redis.Redis, keys: Keys, source: str) -> set[int]:
    results = [decode_result(f[FIELD]) for _, f in client.xrange(keys.tracked)]
    return {face.track_id for r in results if r.source == source for face in r.faces if face.track_id is not None}


def not_people(client: redis.Redis, keys: Keys, source: str) -> set[int]:
    """Tracks the summaries stream marks ``person: false`` (none before the track stage publishes)."""
    out = set()
    for _, f in client.xrange(keys.summaries):
        summary = json.loads(f[FIELD])
        if summary.get("source") == source:
            out |= {t["track_id"] for t in summary["tracks"] if not t["person"]}
    return out


def summaries_of(client: redis.Redis, keys: Keys, source: str) -> list:
    """For a failure's message: each summary of ``source`` as (entry id, [(track id, person)])."""
    out = []
    for eid, f in client.xrange(keys.summaries):
        summary = json.loads(f[FIELD])
        if summary.get("source") == source:
            out.append((eid.decode(), [(t["track_id"], t["person"]) for t in summary["tracks"]]))
    return out


def page_state(board, source: str) -> dict:
    """For a failure's message: what the server would send a new page about ``source``."""
    with urllib.request.urlopen(board.url + "api/state") as resp:
        state = json.loads(resp.read())
    for s in state["sources"]:
        if s["name"] == source:
            return {"people": [p["track_id"] for p in s["people"]], "runs": s["runs"],
                    "summary": s["summary"] and [(t["track_id"], t["person"]) for t in s["summary"]["tracks"]]}
    return {}


def caught_up(board, client: redis.Redis, keys: Keys, source: str) -> bool:
    """The dashboard holds every tracked id of ``source`` and its newest summary, as Redis has them."""
    state, summaries = page_state(board, source), summaries_of(client, keys, source)
    return set(state.get("people", [])) >= tracked_ids(client, keys, source) and \
        state.get("summary") == (summaries[-1][1] if summaries else None)


def test_dashboard_shows_a_produce_run_while_it_runs_and_after(browser, redis_url, checkpoint, dashboard_for):
    settings = settings_for(redis_url)
    keys = Keys(settings.prefix)
    client = redis.Redis.from_url(redis_url)
    board = dashboard_for(settings)
    browser.get(board.url)
    assert "No sources yet" in wait_js(browser, "const e = document.getElementById('empty');"
                                                "return e.hidden ? '' : e.innerText")
    assert "moodstream up" in body(browser)  # the empty state says what to run
    source = str(SAMPLE)
    with service(settings, checkpoint):
        feeder = produce(settings, [source])
        # while it runs: the source, a frame with boxes, its people, a busy or idle worker
        assert wait_js(browser, PAGE_IDS, timeout_s=120), "no person appeared while the run went on"
        assert source in body(browser)
        assert wait_js(browser, "return document.querySelectorAll('table.workers tr').length > 1", 30)
        feeder.join(120)
        assert not feeder.is_alive()
        total = client.xlen(keys.frames)
        wait_for_all = f"return [...document.querySelectorAll('.meta')].some(e => e.innerText.startsWith('{total} results'))"
        assert wait_js(browser, wait_for_all, timeout_s=180), "the page never counted every result"
        with urllib.request.urlopen(board.url + "frame?" + urllib.parse.urlencode({"source": source})) as resp:
            assert resp.headers["Content-Type"] == "image/jpeg" and resp.read(2) == b"\xff\xd8"
    # every track of the run, less those its summary (when the track stage published one) calls not people
    people = tracked_ids(client, keys, source) - not_people(client, keys, source)
    assert people
    # the dashboard has read all of it (the stage's last tracked results and its summary come at its
    # stop, together): before, the page could show only the people read so far, pass, and a page
    # opened next got a snapshot taken before the summary was read (a full run failed so, 1 in 4)
    assert wait_until(lambda: caught_up(board, client, keys, source), 30), \
        (page_state(board, source), summaries_of(client, keys, source))
    assert wait_until(lambda: set(browser.execute_script(PAGE_IDS)) == people, 30), \
        (browser.execute_script(PAGE_IDS), people, page_state(board, source), summaries_of(client, keys, source))
    if os.environ.get("MOODSTREAM_SCREENSHOTS"):  # the README's figure: with the summary's faces and episodes
        wait_js(browser, "return document.querySelector('.person img.face:not([hidden])')", timeout_s=20)
        screenshot(browser, "dashboard_page.png")
    # opened later, after the run: the recent source is listed with its people
    browser.get(board.url)
    shown = set(wait_js(browser, PAGE_IDS, timeout_s=30))
    assert shown == people, (shown, people, page_state(board, source), summaries_of(client, keys, source))
    assert source in body(browser)
    assert not client.xinfo_groups(keys.results) or all(
        g["name"].decode() == keys.track_group for g in client.xinfo_groups(keys.results))  # no group of its own
    client.close()


def test_a_hostile_source_name_is_text_and_runs_nothing(browser, redis_url, checkpoint, dashboard_for, tmp_path):
    settings = settings_for(redis_url)
    video = tmp_path / f"{HOSTILE}.mp4"
    shutil.copy(CLIP, video)
    board = dashboard_for(settings)
    with service(settings, checkpoint, name="w-hostile"):
        produce(settings, [str(video)]).join(60)
        browser.get(board.url)
        assert wait_js(browser, f"return document.body.innerText.includes({HOSTILE!r})", timeout_s=60)
    assert browser.execute_script("return document.querySelectorAll('img[src=\"x\"]').length") == 0
    assert browser.execute_script("return [...document.images].every(i => !i.src || i.src.startsWith('data:'))")
    assert browser.execute_script("return window.__xss === undefined")
    assert HOSTILE in browser.execute_script("return document.querySelector('section.source h2').textContent")


def test_the_page_recovers_after_redis_restarts(browser, checkpoint, dashboard_for):
    with EmbeddedRedis() as server:
        settings = settings_for(server.url)
        board = dashboard_for(settings)
        browser.get(board.url)
        with service(settings, checkpoint, name="w-before"):
            produce(settings, [str(CLIP)], max_frames=6).join(60)
            assert wait_js(browser, f"return document.body.innerText.includes({str(CLIP)!r})", timeout_s=60)
        server.stop()  # nothing persisted: everything in Redis is gone
        banner = wait_js(browser, "const b = document.getElementById('banner'); return b.hidden ? '' : b.innerText",
                         timeout_s=30)
        assert "Redis is unreachable" in banner
        server.start()
        again = CLIP.parent / "again" / CLIP.name  # another source name, produced after the restart
        with service(settings, checkpoint, name="w-after"):
            produce(settings, [str(CLIP)], max_frames=6, every_n=2).join(60)
            assert wait_js(browser, "const b = document.getElementById('banner'); return b.hidden", timeout_s=30)
            # the new results reach the page: 6 + 6 results of the same source name
            assert wait_js(browser, "return [...document.querySelectorAll('.meta')]"
                                    ".some(e => e.innerText.startsWith('12 results'))", timeout_s=60)
        del again


def test_a_published_summary_stays_shown_through_later_updates(browser, redis_url, dashboard_for):
    """Update batches carry a source's summary only when a new one came (with its pictures it can be
    a megabyte, sent to every page four times a second before): the page keeps the one it has
    through later results and a new run of the same source."""
    from moodstream.shared.labels import LABELS
    from moodstream.shared.record import Face, FrameResult, Smoothed
    from moodstream.shared.wire import encode_result

    settings = settings_for(redis_url)
    keys = Keys(settings.prefix)
    client = redis.Redis.from_url(redis_url)
    probs = {k: 0.3 if k == "happiness" else 0.1 for k in LABELS}

    def frames(first: int, n: int) -> None:
        for i in range(first, first + n):
            face = Face(box=(10.0, 10.0, 50.0, 60.0), score=0.99, emotion="happiness", probabilities=probs,
                        track_id=1, smoothed=Smoothed("happiness", probs))
            r = FrameResult(source="cam", frame=i, timestamp_s=i / 30, size=(64, 64), faces=[face], job_id=f"cam-{i}")
            client.xadd(keys.results, {FIELD: encode_result(r)})
            client.xadd(keys.tracked, {FIELD: encode_result(r)})

    def meta() -> str:
        return browser.execute_script("const m = document.querySelector('.meta'); return m ? m.innerText : ''")

    board = dashboard_for(settings)
    browser.get(board.url)
    frames(0, 5)
    summary = {"source": "cam", "tracks": [{"track_id": 1, "person": True, "first_timestamp_s": 0.0,
                                            "last_timestamp_s": 0.13, "frames": 5, "dominant": "happiness",
                                            "mean_probabilities": probs, "episodes": []}]}
    client.xadd(keys.summaries, {FIELD: json.dumps(summary).encode()})
    assert wait_until(lambda: "summary published" in meta(), 30), meta()
    assert "late" not in meta()  # none: nothing said
    client.xadd(keys.summaries, {FIELD: json.dumps({**summary, "late_frames": 2, "dropped_frames": 40}).encode()})
    assert wait_until(lambda: "2 late frames not tracked (over reorder_wait_ms); 40 frames dropped by the producer "
                      "(backlog over lag_limit or stream_max_mb)" in meta(), 30), meta()
    frames(5, 5)  # updates without the summary
    assert wait_until(lambda: meta().startswith("10 results"), 30), meta()
    assert "summary published" in meta()
    frames(0, 3)  # the same source from frame 0: a new run
    assert wait_until(lambda: meta().startswith("13 results"), 30), meta()
    assert "summary published" in meta()
    browser.get(board.url)  # a page opened now gets it in its snapshot
    assert wait_until(lambda: "summary published" in meta(), 30), meta()
    client.close()


def test_frames_waiting_in_the_intake_are_in_the_backlog_figure(browser, redis_url, dashboard_for):
    """With no worker, pushed frames wait in the intake list: the backlog figure read "3 = 0 + 0"
    (its total counts the intake, its parts did not name it)."""
    settings = settings_for(redis_url)
    producer = Producer(settings)
    for i in range(3):
        producer.submit_image(SAMPLE.parent.joinpath("street.jpg").read_bytes(), source="waiting", frame=i)
    producer.close()
    board = dashboard_for(settings)
    browser.get(board.url)
    assert wait_js(browser, "return document.body.innerText.includes('backlog (intake + lag + pending)')", 30), \
        body(browser)
    assert "3 = 3 + 0 + 0" in body(browser), body(browser)


def test_the_track_stage_s_counts_are_on_the_page(browser, redis_url, dashboard_for):
    """What `moodstream status` says of the track stage (results trimmed before it read them: frames in no
    track; late results) was nowhere on the page."""
    settings = settings_for(redis_url)
    client = redis.Redis.from_url(redis_url)
    client.hset(Keys("t").track_stats, mapping={"late": 2, "late_after_run_ended": 0, "trimmed_gaps": 1,
                                                "trimmed_unread": 5})
    board = dashboard_for(settings)
    browser.get(board.url)
    assert wait_js(browser, "return document.body.innerText.includes('5 results trimmed')", 30), body(browser)
    lines = browser.execute_script("return [...document.querySelectorAll('p.track-line')].map(e => e.innerText)")
    assert len(lines) == 2 and lines[0].startswith("track stage: 5 results trimmed from the results stream"), lines
    assert lines[1].startswith("track stage: 2 late results published untracked"), lines
    screenshot(browser, "dashboard_track_lines.png")


def test_a_new_run_s_people_are_not_matched_to_the_run_before_s_summary(browser, redis_url, dashboard_for):
    """A source's second run (the same file sent again): the page matched its live tracks to the summary
    it showed by track id alone, the run before's: its #0, a person of 40 frames, was hidden because the
    first run's #0 was 'not a person: seen in one frame', and that #0 was listed under other tracks,
    until the new run's summary came (up to source_idle_s, 5 minutes)."""
    from moodstream.shared.labels import LABELS
    from moodstream.shared.record import Face, FrameResult, Smoothed
    from moodstream.shared.wire import encode_result

    settings = settings_for(redis_url)
    keys = Keys(settings.prefix)
    client = redis.Redis.from_url(redis_url)
    probs = {k: 0.3 if k == "happiness" else 0.1 for k in LABELS}

    def frames(run: int, n: int) -> None:
        for i in range(n):
            face = Face(box=(10.0, 10.0, 50.0, 60.0), score=0.99, emotion="happiness", probabilities=probs,
                        track_id=0, smoothed=Smoothed("happiness", probs))
            r = FrameResult(source="swap.mp4", frame=i, timestamp_s=i / 30, size=(64, 64), faces=[face],
                            job_id=f"swap-{run}-{i}", run=run)
            client.xadd(keys.results, {FIELD: encode_result(r)})
            client.xadd(keys.tracked, {FIELD: encode_result(r)})

    board = dashboard_for(settings)
    browser.get(board.url)
    frames(1, 1)
    summary = {"source": "swap.mp4", "run": 1, "tracks": [
        {"track_id": 0, "person": False, "not_person_why": "seen in one frame only", "first_timestamp_s": 0.0,
         "last_timestamp_s": 0.0, "frames": 1, "dominant": "happiness", "mean_probabilities": probs, "episodes": []}]}
    client.xadd(keys.summaries, {FIELD: json.dumps(summary).encode()})
    others = "return [...document.querySelectorAll('[data-other-track-id]')].filter(e => e.offsetParent).length"
    assert wait_until(lambda: browser.execute_script(others) == 1, 30)  # run 1: #0 is no person
    frames(2, 40)
    assert wait_until(lambda: browser.execute_script(PAGE_IDS) == [0], 30), (browser.execute_script(PAGE_IDS), body(browser))
    assert browser.execute_script(others) == 0, body(browser)
    client.close()


def test_a_frame_whose_picture_was_trimmed_is_drawn_on_an_empty_frame(browser, redis_url, dashboard_for):
    """A newer result of a source whose frame the stream no longer holds: the note said 'frame no longer
    in the frames stream (trimmed)', and the new boxes were drawn over the frame before's picture (a box
    on a pillar where the face had been). README: the boxes are drawn on an empty frame."""
    import numpy as np

    from moodstream.shared.labels import LABELS
    from moodstream.shared.media import encode_jpeg
    from moodstream.shared.record import Face, FrameResult, Smoothed
    from moodstream.shared.wire import encode_result
    from tests.support.streamkit import move_intake, stream_job

    settings = settings_for(redis_url)
    keys = Keys(settings.prefix)
    client = redis.Redis.from_url(redis_url)
    probs = {k: 0.3 if k == "happiness" else 0.1 for k in LABELS}
    producer = Producer(settings)

    def add(frame: int, job_id: str, enq: int) -> None:
        face = Face(box=(4.0, 4.0, 20.0, 20.0), score=0.99, emotion="happiness", probabilities=probs, track_id=0,
                    smoothed=Smoothed("happiness", probs))
        r = FrameResult(source="cam", frame=frame, timestamp_s=frame / 30, size=(64, 48), faces=[face],
                        job_id=job_id, enqueued_at_ms=enq)
        client.xadd(keys.results, {FIELD: encode_result(r)})
        client.xadd(keys.tracked, {FIELD: encode_result(r)})

    white = np.full((48, 64, 3), 255, np.uint8)
    ref = producer.submit_image(encode_jpeg(white), source="cam", frame=0)
    move_intake(settings)
    add(0, ref.job_id, stream_job(client, keys, ref.job_id)[1].enqueued_at_ms)
    board = dashboard_for(settings)
    browser.get(board.url)
    # the canvas's far corner (no box there): white while the picture is shown
    corner = ("const c = document.querySelector('canvas'); if (!c) return null;"
              "return [...c.getContext('2d').getImageData(c.width - 3, c.height - 3, 1, 1).data.slice(0, 3)]")
    assert wait_until(lambda: (browser.execute_script(corner) or [0])[0] > 200, 30), browser.execute_script(corner)
    later = producer.submit_image(encode_jpeg(white), source="other", frame=0)
    move_intake(settings)
    enq = stream_job(client, keys, later.job_id)[1].enqueued_at_ms
    client.xtrim(keys.frames, maxlen=0)
    add(1, "gone", enq)
    assert wait_until(lambda: "trimmed" in body(browser), 30), body(browser)
    assert wait_until(lambda: browser.execute_script(corner)[0] < 100, 10), browser.execute_script(corner)
    client.close()
