"""URL jobs on the expander (issue 22 items 4 and 5): the allow-list holds for every
request FFmpeg makes (redirects, HLS playlist entries), a job stops at its frame
and byte caps, a finite source is read once, and a failing one ends its job with
an error after a bounded number of tries with growing waits. Real redis-server,
real `moodstream expander`, HTTP servers on 127.0.0.1 that count requests."""

from __future__ import annotations

import time

from tests.support.expanderkit import CLIP, Site, body, job, job_error, mjpeg, no_frames_mp4, redirect, run_burst, settings
from tests.support.procs import measure
from tests.support.streamkit import pushed, queued_jobs
import pytest
from rq.job import JobStatus

from moodstream.producer.rq_jobs import enqueue_source
from moodstream.shared.keys import Keys

FAST_RETRIES = {"MOODSTREAM_LIVE_MAX_RECONNECTS": "4", "MOODSTREAM_LIVE_BACKOFF_CAP_S": "1"}
PHOTO = (CLIP.parents[2] / "samples" / "street.jpg").read_bytes()


def test_a_redirect_to_another_host_is_refused(redis_url, client):
    other = Site({"/clip.mp4": body(CLIP.read_bytes())})  # not on the allow-list: reached as localhost
    allowed = Site({"/cam.mp4": redirect(f"http://localhost:{other.port}/clip.mp4")})
    try:
        j = enqueue_source(settings(redis_url), client, f"http://127.0.0.1:{allowed.port}/cam.mp4")
        t0 = time.monotonic()
        rc, err = run_burst(redis_url, "--allow-url-host", "127.0.0.1", timeout_s=60, **FAST_RETRIES)
        took = time.monotonic() - t0
    finally:
        other.close()
        allowed.close()
    frames = client.llen(Keys("t").intake)
    measure("expander_redirect_other_host", other_host_requests=other.total, frames=frames,
            allowed_requests=allowed.total, seconds=round(took, 1))
    assert other.total == 0 and frames == 0
    assert rc == 1 and "1 job failed" in err, err[-2000:]  # a burst whose job failed says so
    done = job(client, j.id)
    assert done.get_status() == JobStatus.FAILED
    assert "refused" in err and f"localhost:{other.port}" in err  # the log says what was refused


def test_hls_segments_on_another_host_are_refused(redis_url, client):
    other = Site({f"/seg{i}.ts": body(b"\x47" * 188 * 64, "video/mp2t") for i in range(5)})
    playlist = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n" + "".join(
        f"#EXTINF:2.0,\nhttp://localhost:{other.port}/seg{i}.ts\n" for i in range(5)) + "#EXT-X-ENDLIST\n"
    allowed = Site({"/live.m3u8": body(playlist.encode(), "application/vnd.apple.mpegurl")})
    try:
        j = enqueue_source(settings(redis_url), client, f"http://127.0.0.1:{allowed.port}/live.m3u8")
        rc, err = run_burst(redis_url, "--allow-url-host", "127.0.0.1", timeout_s=90, **FAST_RETRIES)
    finally:
        other.close()
        allowed.close()
    measure("expander_hls_other_host", other_host_requests=other.total, playlist_requests=allowed.total)
    assert other.total == 0
    assert rc == 1, err[-2000:]
    assert job(client, j.id).get_status() == JobStatus.FAILED
    assert f"refused GET localhost:{other.port}" in err  # refused at the proxy, not failed on the way


def test_hls_segments_on_the_allowed_host_go_through(redis_url, client):
    """The proxy is no wall: a playlist and segments on the allowed host are fetched through it."""
    seg = b"\x47" * 188 * 64  # MPEG-TS packets without a picture: fetched, decoding nothing
    site = Site({"/seg0.ts": body(seg, "video/mp2t"), "/seg1.ts": body(seg, "video/mp2t")})
    playlist = ("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n"
                f"#EXTINF:2.0,\nseg0.ts\n#EXTINF:2.0,\nhttp://127.0.0.1:{site.port}/seg1.ts\n#EXT-X-ENDLIST\n")
    routes = {"/vod.m3u8": body(playlist.encode(), "application/vnd.apple.mpegurl")}
    site.routes.update(routes)
    try:
        enqueue_source(settings(redis_url), client, f"http://127.0.0.1:{site.port}/vod.m3u8")
        rc, err = run_burst(redis_url, "--allow-url-host", "127.0.0.1", timeout_s=90, **FAST_RETRIES)
    finally:
        site.close()
    assert rc == 1, err[-2000:]  # fetched, decoding nothing: the job fails (not refused)
    assert site.hits["/vod.m3u8"] >= 1 and site.hits["/seg0.ts"] >= 1 and site.hits["/seg1.ts"] >= 1, site.hits
    assert "refused" not in err


def test_a_job_stops_at_its_frame_and_byte_caps(redis_url, client):
    endless = Site({"/live.mjpg": mjpeg(None, gap_s=0.005)})
    try:
        url = f"http://127.0.0.1:{endless.port}/live.mjpg"
        by_frames = enqueue_source(settings(redis_url), client, url)
        rc, err = run_burst(redis_url, "--allow-url-host", "127.0.0.1", timeout_s=60,
                            MOODSTREAM_JOB_MAX_FRAMES="25", **FAST_RETRIES)
        assert rc == 0, err
        by_bytes = enqueue_source(settings(redis_url), client, url)
        rc, err = run_burst(redis_url, "--allow-url-host", "127.0.0.1", timeout_s=60,
                            MOODSTREAM_JOB_MAX_BYTES="20000", **FAST_RETRIES)
        assert rc == 0, err
    finally:
        endless.close()
    a, b = job(client, by_frames.id), job(client, by_bytes.id)
    measure("expander_job_caps", frames_at_frame_cap=a.return_value() and a.return_value()["frames"],
            frames_at_byte_cap=b.return_value() and b.return_value()["frames"])
    assert a.get_status() == JobStatus.FINISHED and a.return_value()["frames"] == 25
    assert "job_max_frames" in a.return_value()["stopped"]
    assert b.get_status() == JobStatus.FINISHED and "job_max_bytes" in b.return_value()["stopped"]
    assert 0 < b.return_value()["frames"] < 200  # ~700 bytes a frame: 20 kB is a few dozen frames


def test_a_finite_http_video_is_read_once(redis_url, client):
    site = Site({"/clip.mp4": body(CLIP.read_bytes())})
    try:
        j = enqueue_source(settings(redis_url), client, f"http://127.0.0.1:{site.port}/clip.mp4")
        t0 = time.monotonic()
        rc, err = run_burst(redis_url, "--allow-url-host", "127.0.0.1", timeout_s=30)
        took = time.monotonic() - t0
    finally:
        site.close()
    frames = pushed(client, Keys("t"))
    measure("expander_finite_http", requests=site.total, frames=len(frames), seconds=round(took, 1),
            finished=rc == 0)
    assert rc == 0, err[-2000:]
    done = job(client, j.id)
    assert done.get_status() == JobStatus.FINISHED and done.return_value()["frames"] == len(frames) == 12
    assert site.total <= 2  # FFmpeg may ask twice (moov at the end); never again and again


def test_a_redirect_to_a_video_without_frames_ends_the_job(redis_url, client):
    site = Site({"/cam": redirect("/empty.mp4"), "/empty.mp4": body(no_frames_mp4())})
    try:
        j = enqueue_source(settings(redis_url), client, f"http://127.0.0.1:{site.port}/cam")
        rc, err = run_burst(redis_url, "--allow-url-host", "127.0.0.1", timeout_s=30, **FAST_RETRIES)
    finally:
        site.close()
    measure("expander_redirect_no_frames", requests=site.total, log_bytes=len(err), finished=rc is not None)
    assert rc == 1 and site.total <= 2 * 5, (site.total, err[-2000:])
    done = job(client, j.id)
    assert done.get_status() == JobStatus.FAILED and "no decodable video frames" in job_error(done)


@pytest.mark.slow
def test_a_live_source_that_keeps_failing_backs_off_and_ends_the_job(redis_url, client):
    site = Site({"/live.mjpg": mjpeg(0)})  # opens, then closes before any frame: again and again
    try:
        j = enqueue_source(settings(redis_url), client, f"http://127.0.0.1:{site.port}/live.mjpg")
        rc, err = run_burst(redis_url, "--allow-url-host", "127.0.0.1", timeout_s=60,
                            MOODSTREAM_LIVE_MAX_RECONNECTS="4", MOODSTREAM_LIVE_BACKOFF_CAP_S="4")
    finally:
        site.close()
    gaps = [round(b - a, 2) for a, b in zip(site.times, site.times[1:], strict=False)]
    measure("expander_live_failing", requests=site.total, gaps_s=gaps)
    assert rc == 1, err[-2000:]
    assert site.total <= 6  # the first try, the one request that asks why it failed, and 4 reconnects
    assert sum(gaps) >= (0.5 + 1 + 2 + 4) / 2  # waits of 50-100% of 0.5, 1, 2, 4 s
    done = job(client, j.id)
    assert done.get_status() == JobStatus.FAILED and "gave up after 5 failed attempts" in job_error(done)


def test_a_photo_s_url_is_sent_as_a_photo(redis_url, client):
    """One job with the photo's bytes, page 1 and no time, as a photo under media_root goes (the track
    stage summarises it as a still image): FFmpeg read it as a video, its one frame timed 0.0 (a URL
    without an image extension: a live source, read again after each end, 11 frames, then failed)."""
    site = Site({"/photo": body(PHOTO, "image/jpeg")})
    try:
        j = enqueue_source(settings(redis_url), client, f"http://127.0.0.1:{site.port}/photo?id=3")
        rc, err = run_burst(redis_url, "--allow-url-host", "127.0.0.1", timeout_s=60, **FAST_RETRIES)
    finally:
        site.close()
    assert rc == 0, err[-2000:]
    jobs = queued_jobs(client, Keys("t"))
    assert [(f.source, f.frame, f.page, f.timestamp_s, f.shot) for f in jobs] == \
        [(f"http://127.0.0.1:{site.port}/photo?id=3", 0, 1, None, None)]
    assert jobs[0].image == PHOTO and site.total == 1  # read once, through the proxy
    done = job(client, j.id)
    assert done.get_status() == JobStatus.FINISHED and done.return_value()["frames"] == 1


def test_a_photo_s_url_goes_through_the_allow_list_and_the_byte_cap(redis_url, client):
    """The GET that tells a photo goes through the expander's proxy: a redirect to another host is
    refused unconnected, and the bytes it relays count against job_max_bytes."""
    other = Site({"/p.jpg": body(PHOTO, "image/jpeg")})  # not on the allow-list: reached as localhost
    allowed = Site({"/photo": redirect(f"http://localhost:{other.port}/p.jpg"), "/big": body(PHOTO, "image/jpeg")})
    try:
        refused = enqueue_source(settings(redis_url), client, f"http://127.0.0.1:{allowed.port}/photo")
        rc, err = run_burst(redis_url, "--allow-url-host", "127.0.0.1", timeout_s=60, **FAST_RETRIES)
        assert rc == 1 and f"refused GET localhost:{other.port}" in err, err[-2000:]
        capped = enqueue_source(settings(redis_url), client, f"http://127.0.0.1:{allowed.port}/big")
        rc, err = run_burst(redis_url, "--allow-url-host", "127.0.0.1", timeout_s=60,
                            MOODSTREAM_JOB_MAX_BYTES="20000", **FAST_RETRIES)
        assert rc == 0, err[-2000:]
    finally:
        other.close()
        allowed.close()
    assert other.total == 0 and client.llen(Keys("t").intake) == 0
    assert job(client, refused.id).get_status() == JobStatus.FAILED
    done = job(client, capped.id)
    assert done.return_value()["frames"] == 0 and "job_max_bytes" in done.return_value()["stopped"]
