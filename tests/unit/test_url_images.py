"""What an http(s) URL serves decides how it is read, as stdin's bytes do: a still image is a photo
(:func:`shared.media.image_items`: page 1, no time; a multi-page TIFF's pages), within the byte cap
and the pixel limit, however the URL ends and through redirects; a video, an animated GIF, a live
MJPEG stream or an error status goes to FFmpeg as before. FFmpeg read a photo as a one-frame video
(time 0.0, shot 0). Real HTTP servers on 127.0.0.1 (tests/support/expanderkit.py)."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from tests.support.expanderkit import CLIP, Site, body, mjpeg, redirect

from moodstream.shared.media import iter_frames, url_image_items

STREET = Path(__file__).resolve().parents[2] / "samples" / "street.jpg"
PHOTO = STREET.read_bytes()


def gif(frames: int) -> bytes:
    base = Image.open(STREET).convert("RGB").resize((160, 90))
    images = [base.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if i % 2 else base for i in range(frames)]
    out = io.BytesIO()
    images[0].save(out, "GIF", save_all=frames > 1, append_images=images[1:], duration=100, loop=0)
    return out.getvalue()


def tiff(pages: int) -> bytes:
    ok, data = cv2.imencodemulti(".tif", [np.full((40, 60, 3), 40 * k, np.uint8) for k in range(pages)])
    assert ok
    return data.tobytes()


def cut(data: bytes, at: int):
    """An answer that announces ``data`` whole and closes after its first ``at`` bytes."""
    def send(h):
        h.send_response(200)
        h.send_header("Content-Type", "image/jpeg")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data[:at])
    return send


def frames(url: str, **kw) -> list[tuple]:
    return [(i.source, i.frame, i.page, i.timestamp_s, i.error and i.error.reason)
            for i in iter_frames([url], **kw)]


def test_a_photo_by_url_is_its_bytes_on_page_1_without_a_time():
    site = Site({"/photo": body(PHOTO, "image/jpeg"), "/a.png": body(cv2.imencode(".png", np.zeros((8, 8, 3)))[1]
                                                                         .tobytes(), "application/octet-stream"),
                 "/still": body(gif(1), "image/gif"), "/scan": body(tiff(3), "image/tiff")})
    try:
        base = f"http://127.0.0.1:{site.port}"
        [item] = iter_frames([f"{base}/photo?id=3"])
        assert (item.source, item.frame, item.page, item.timestamp_s, item.shot, item.data) == \
            (f"{base}/photo?id=3", 0, 1, None, None, PHOTO)
        assert frames(f"{base}/a.png") == [(f"{base}/a.png", 0, 1, None, None)]  # told by its bytes
        assert frames(f"{base}/still") == [(f"{base}/still", 0, 1, None, None)]  # a GIF of one frame
        assert frames(f"{base}/scan") == [(f"{base}/scan", k, k + 1, None, None) for k in range(3)]  # its pages
    finally:
        site.close()
    assert site.hits == {"/photo": 1, "/a.png": 1, "/still": 1, "/scan": 1}  # each read once, FFmpeg not asked


def test_a_photo_behind_redirects_is_a_photo_named_by_its_url():
    site = Site({"/r1": redirect("/r2"), "/r2": redirect("/photo"), "/photo": body(PHOTO, "image/jpeg")})
    try:
        url = f"http://127.0.0.1:{site.port}/r1"
        assert frames(url) == [(url, 0, 1, None, None)]
    finally:
        site.close()


def test_a_photo_by_url_is_held_to_the_byte_cap_and_a_cut_download_is_said():
    site = Site({"/photo": body(PHOTO, "image/jpeg"), "/cut": cut(PHOTO, 70_000)})
    try:
        base = f"http://127.0.0.1:{site.port}"
        [item] = iter_frames([f"{base}/photo"], max_image_bytes=len(PHOTO) - 1)
        assert (item.page, item.error.reason) == (1, "too_large") and "over the limit" in item.error.detail
        [item] = iter_frames([f"{base}/cut"])
        assert (item.page, item.error.reason) == (1, "truncated"), item.error
        assert "not downloaded whole" in item.error.detail
    finally:
        site.close()


def test_videos_animated_gifs_and_live_streams_by_url_stay_videos():
    clip = CLIP.read_bytes()
    site = Site({"/clip.mp4": body(clip), "/movie": body(clip, "application/octet-stream"),
                 "/anim": body(gif(3), "image/gif"), "/cam": mjpeg(None)})
    try:
        base = f"http://127.0.0.1:{site.port}"
        assert url_image_items(f"{base}/clip.mp4") is None and site.total == 0  # its name says: not asked
        for path, n in (("/clip.mp4", 12), ("/movie", 12), ("/anim", 3), ("/cam", 3)):  # /cam: an endless MJPEG
            got = frames(f"{base}{path}", max_frames=n)
            assert len(got) == n and all(page is None and t is not None for _, _, page, t, _ in got), (path, got)
    finally:
        site.close()


def test_an_error_status_is_said_as_ffmpeg_s_open_says_it():
    site = Site({})
    try:
        [item] = iter_frames([f"http://127.0.0.1:{site.port}/missing"])  # no name tells a photo from a video
    finally:
        site.close()
    assert item.error.reason == "unreadable" and "HTTP 404" in item.error.detail, item.error


def test_a_photo_s_url_answered_with_an_error_is_a_photo_that_failed_not_a_video():
    """A URL named as a photo that answers 404 was said as a video: "cannot open video .../missing.jpg
    (HTTP 404 File not found)", after FFmpeg's open and one more GET to tell why."""
    def busy(h):
        h.send_response(503)
        h.send_header("Content-Length", "0")
        h.end_headers()

    site = Site({"/busy.PNG": busy})
    try:
        base = f"http://127.0.0.1:{site.port}"
        got = {path: list(iter_frames([f"{base}{path}"])) for path in ("/missing.jpg", "/busy.PNG")}
    finally:
        site.close()
    [missing], [busy_item] = got["/missing.jpg"], got["/busy.PNG"]
    assert (missing.source, missing.frame, missing.page, missing.timestamp_s) == (f"{base}/missing.jpg", 0, 1, None)
    assert missing.error.reason == "not_found", missing.error
    assert missing.error.detail == f"cannot open photo {base}/missing.jpg (HTTP 404 Not Found)"
    assert busy_item.error.reason == "unreadable" and busy_item.error.detail == \
        f"cannot open photo {base}/busy.PNG (HTTP 503 Service Unavailable)"
    assert site.hits == {"/missing.jpg": 1, "/busy.PNG": 1}  # asked once each: FFmpeg never opened them


def test_a_stop_ends_the_question_at_once_on_a_server_that_never_answers():
    import socket

    with socket.socket() as silent:  # accepts, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        stop = threading.Event()
        threading.Timer(0.3, stop.set).start()
        t0 = time.monotonic()
        got = url_image_items(f"http://127.0.0.1:{silent.getsockname()[1]}/photo", stopping=stop.is_set)
        took = time.monotonic() - t0
    assert list(got) == [] and took < 2, took  # not the 10 s a read may wait
