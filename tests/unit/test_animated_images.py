"""Animated WebP, PNG (APNG) and AVIF files are read as videos, every frame timed by its delay, as an
animated GIF is: OpenCV's still decoder gave their first frame alone, and `analyze sticker.webp`
said "1 frame, 0 errors" for a 20-frame animation (the rest lost without a word)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from moodstream.shared.formats import animation_frames
from moodstream.shared.media import iter_frames

STREET = Path(__file__).resolve().parents[2] / "samples" / "street.jpg"
DELAYS = [50] * 6 + [120] * 6  # ms
TIMES = [round(sum(DELAYS[:k]) / 1000, 4) for k in range(len(DELAYS))]


def frames() -> list[Image.Image]:
    base = Image.open(STREET).convert("RGB").resize((320, 180))
    return [base.rotate(k * 0.5) for k in range(len(DELAYS))]


@pytest.fixture(params=["webp", "png", "avif"])
def animation(request, tmp_path) -> Path:
    from PIL import features

    from moodstream.shared.media import avif_decoder

    if request.param == "avif" and not (features.check("avif") and avif_decoder()):
        pytest.skip("Pillow here writes no AVIF, or OpenCV here decodes none")
    path = tmp_path / f"sticker.{request.param}"
    images = frames()
    images[0].save(path, save_all=True, append_images=images[1:], duration=DELAYS, loop=0,
                   **({"lossless": True} if request.param == "webp" else {}))
    return path


def decoded(path: Path) -> list[np.ndarray]:
    ok, anim = cv2.imdecodeanimation(np.fromfile(path, np.uint8).reshape(1, -1))
    assert ok
    return [cv2.cvtColor(f[:, :, :3], cv2.COLOR_BGR2RGB) for f in anim.frames]


def test_each_frame_is_read_at_its_time(animation):
    items = list(iter_frames([str(animation)]))
    assert [(i.source, i.frame, i.timestamp_s, i.page, i.error) for i in items] == \
        [(str(animation), k, t, None, None) for k, t in enumerate(TIMES)]
    want = decoded(animation)
    assert all(np.array_equal(i.image, w) for i, w in zip(items, want))
    assert {i.shot for i in items} == {0}  # one picture turning a little: no cut
    assert items[0].rate == pytest.approx(len(DELAYS) / (sum(DELAYS) / 1000), rel=1e-3)


def test_every_fps_and_max_frames_sample_it_as_a_video(animation):
    assert [i.frame for i in iter_frames([str(animation)], every_n=3, max_frames=3)] == [0, 3, 6]
    # about 5 a second of its time, 0.2 s apart: 0, 0.2 (4 x 50 ms), then of the 120 ms frames from 0.3 s on
    got = [(i.frame, i.timestamp_s) for i in iter_frames([str(animation)], fps=5)]
    assert got == [(0, 0.0), (4, 0.2), (7, 0.42), (9, 0.66), (11, 0.9)], got
    assert all(type(t) is float for _, t in got)


def test_a_still_webp_or_png_is_still_a_photo(tmp_path):
    for name in ("still.webp", "still.png"):
        Image.open(STREET).save(tmp_path / name)
        [item] = iter_frames([str(tmp_path / name)])
        assert (item.page, item.timestamp_s, item.data) == (1, None, (tmp_path / name).read_bytes())
        assert animation_frames(item.data) is None


def test_an_animation_over_the_pixel_limit_is_refused_before_a_frame_is_decoded(animation):
    [item] = iter_frames([str(animation)], max_pixels=320 * 180 - 1)
    assert item.error.reason == "too_large" and "320x180" in item.error.detail, item.error


def test_the_header_says_the_frames_and_their_size(animation):
    data = animation.read_bytes()
    assert animation_frames(data) == (animation.suffix[1:], len(DELAYS), 320, 180)
    assert animation_frames(data[:40]) is None or animation_frames(data[:40])[1] < len(DELAYS)


def test_a_cut_animation_gives_its_whole_frames_then_says_it_was_cut(animation, tmp_path):
    data = animation.read_bytes()
    cut = tmp_path / f"cut{animation.suffix}"
    cut.write_bytes(data[:len(data) * 2 // 3])
    items = list(iter_frames([str(cut)]))
    assert items[-1].error is not None and items[-1].error.reason in ("truncated", "unreadable"), items[-1]
    assert all(i.error is None and i.image is not None for i in items[:-1])
    assert len(items) - 1 < len(DELAYS)


def test_analyze_counts_its_frames_for_the_progress_bar_and_the_expander_reads_them(animation):
    from moodstream.producer.sources import file_items
    from moodstream.worker.analyze import expected_frames

    assert expected_frames([str(animation)], 1, None, None) == len(DELAYS)
    assert expected_frames([str(animation)], 5, None, 2) == 2
    root = str(animation.parent.resolve())
    got = [(i.source, i.frame, i.timestamp_s) for i in file_items(str(animation), root)]
    assert got == [(str(animation), k, t) for k, t in enumerate(TIMES)]


def test_an_animation_by_url_or_stdin_is_read_as_its_file_is(animation):
    import io

    from tests.support.expanderkit import Site, body

    data = animation.read_bytes()
    site = Site({"/sticker": body(data, "image/webp")})
    try:
        url = f"http://127.0.0.1:{site.port}/sticker"
        got = [(i.source, i.frame, i.timestamp_s) for i in iter_frames([url], every_n=2)]
    finally:
        site.close()
    assert got == [(url, k, TIMES[k]) for k in range(0, len(DELAYS), 2)]
    piped = [(i.frame, i.timestamp_s) for i in iter_frames(["-"], stdin=io.BytesIO(data), max_frames=3)]
    assert piped == [(k, TIMES[k]) for k in range(3)]


def test_an_animation_of_more_frames_than_are_read_says_so(animation, monkeypatch):
    from moodstream.shared import media

    monkeypatch.setattr(media, "MAX_ANIMATION_FRAMES", 5)
    items = list(iter_frames([str(animation)]))
    assert [i.frame for i in items] == [0, 1, 2, 3, 4, 5] and all(i.error is None for i in items[:5])
    assert (items[5].error.reason, items[5].error.detail) == \
        ("too_large", f"an animation of {len(DELAYS)} frames: its first 5 were read")
    assert [i.frame for i in iter_frames([str(animation)], max_frames=3)] == [0, 1, 2]  # asked for fewer: no word


def test_an_opencv_without_an_animation_reader_reads_the_first_frame_and_says_so(animation, monkeypatch, caplog):
    """opencv-python-headless 4.9 and 4.10 (the pin admits them) have no imdecodeanimation: a traceback
    for every animated WebP was the alternative."""
    import logging

    monkeypatch.delattr(cv2, "imdecodeanimation")
    with caplog.at_level(logging.WARNING):
        [item] = iter_frames([str(animation)])
    assert item.page == 1 and item.error is None and item.data == animation.read_bytes()
    assert f"an animation of {len(DELAYS)} frames" in caplog.text and "reads only its first" in caplog.text
