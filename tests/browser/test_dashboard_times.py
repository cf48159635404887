"""The dashboard's people say the times the summary says, through a real worker and track stage: a
photo's faces were "0.0 s–0.0 s · 1 frames" over an empty 0-1 s chart (the people table and the report
say "still image"), and untimed frames (`submit_array` without a time, 30 frames of video a second as
the tracker and the summary count them) were placed a second apart, a 1 s person shown over 19 s."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest
from tests.support.browserkit import service, wait_js, wait_until

from moodstream.producer.client import Producer
from moodstream.shared.settings import Settings

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "samples" / "hamilton_clip.mp4"
PHOTO = REPO / "samples" / "street.jpg"
ROWS = ("return [...document.querySelectorAll('section.source')].filter(s => s.querySelector('h2').innerText === "
        "arguments[0]).flatMap(s => [...s.querySelectorAll('.person .who')].map(e => e.innerText))")


def settings_for(url: str) -> Settings:
    return Settings.from_env(env={}, redis_url=url, prefix="t", device="cpu", batch_max=8, batch_wait_ms=10,
                             decode_threads=2, heartbeat_ttl_s=5)


def rows_of(browser, source: str) -> list[str]:
    return browser.execute_script(ROWS, source) or []


def test_dashboard_says_still_image_and_untimed_frames_at_the_trackers_rate(browser, redis_url, checkpoint,
                                                                          dashboard_for):
    settings: Settings = settings_for(redis_url)
    board = dashboard_for(settings)
    browser.get(board.url)
    cap = cv2.VideoCapture(str(SAMPLE))
    frames = []
    for _ in range(20):
        ok, bgr = cap.read()
        assert ok
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    with service(settings, checkpoint):
        producer = Producer(settings)
        producer.submit_image(PHOTO.read_bytes(), source=str(PHOTO), page=1)
        for i, rgb in enumerate(frames):  # no timestamp_s: frames 1/30 s apart, as the tracker counts them
            producer.submit_array(rgb, source="untimed", frame=i)
        assert wait_until(lambda: len(rows_of(browser, str(PHOTO))) >= 3, 120), rows_of(browser, str(PHOTO))
        assert wait_until(lambda: any("19 frames" in r or "20 frames" in r for r in rows_of(browser, "untimed")), 120), \
            rows_of(browser, "untimed")
        # the photo's summary is out at once (a run of its own): its rows then come from it too
        assert wait_js(browser, "return [...document.querySelectorAll('.meta')].some(e => "
                                "e.innerText.includes('summary published'))", 60)
    photo = rows_of(browser, str(PHOTO))
    assert photo and all("still image" in r and " s–" not in r and "1 frames" not in r for r in photo), photo
    charts = browser.execute_script(
        "return [...document.querySelectorAll('section.source')].filter(s => s.querySelector('h2').innerText === "
        "arguments[0]).flatMap(s => [...s.querySelectorAll('.person canvas.chart')].map(c => !c.hidden))", str(PHOTO))
    assert charts and not any(charts), charts  # no time axis drawn for a picture that has no time
    untimed = rows_of(browser, "untimed")
    assert untimed and all("0.0 s–0.6 s" in r or "0.0 s–0.7 s" in r for r in untimed if "frames" in r), untimed


def test_dashboard_gives_the_dominant_emotion_with_its_mean_not_mostly(browser, redis_url, dashboard_for):
    """A person whose top mean emotion is neutrality at 31% (hamilton_360p's #4: happiness 28%, surprise and
    anger episodes between) read "mostly neutrality"; the people table says "neutrality 31%" and the
    report "neutrality (mean 31%)". Now the dashboard says the latter, live and from the summary."""
    import json

    import redis

    from moodstream.shared.keys import Keys
    from moodstream.shared.record import Face, FrameResult, Smoothed
    from moodstream.shared.wire import FIELD, encode_result

    settings = settings_for(redis_url)
    keys = Keys(settings.prefix)
    client = redis.Redis.from_url(redis_url)
    mean = {"anger": 0.06, "contempt": 0.02, "disgust": 0.02, "fear": 0.09, "happiness": 0.24, "neutrality": 0.31,
            "sadness": 0.05, "surprise": 0.21}
    for i in range(10):
        face = Face(box=(10.0, 10.0, 50.0, 60.0), score=0.99, emotion="neutrality", probabilities=mean,
                    track_id=4, smoothed=Smoothed("neutrality", mean))
        r = FrameResult(source="clip", frame=i, timestamp_s=i / 30, size=(64, 64), faces=[face], job_id=f"clip-{i}")
        client.xadd(keys.results, {FIELD: encode_result(r)})
        client.xadd(keys.tracked, {FIELD: encode_result(r)})
    board = dashboard_for(settings)
    browser.get(board.url)
    assert wait_until(lambda: rows_of(browser, "clip"), 30)
    live = rows_of(browser, "clip")
    assert "neutrality (mean 31%)" in live[0] and "mostly" not in live[0], live
    summary = {"source": "clip", "tracks": [{"track_id": 4, "person": True, "first_timestamp_s": 0.0,
                                             "last_timestamp_s": 0.3, "frames": 10, "dominant": "neutrality",
                                             "mean_probabilities": {**mean, "neutrality": 0.3149}, "episodes": []}]}
    client.xadd(keys.summaries, {FIELD: json.dumps(summary).encode()})
    assert wait_until(lambda: any("summary published" in m for m in browser.execute_script(
        "return [...document.querySelectorAll('.meta')].map(e => e.innerText)")), 30)
    done = rows_of(browser, "clip")
    assert "neutrality (mean 31%)" in done[0] and "mostly" not in done[0], done
    client.close()
