"""Phone photos saved as PNG, WebP or TIFF are analysed upright, and a multi-page TIFF page by page,
with the real detector: the faces of a picture stored on its side with an orientation tag are the
faces of the upright picture, at the same place (PNG and WebP were analysed on their side: the
frame 360x640, MTCNN finding other faces, boxes in the stored frame). A TIFF's pages were its
first page only; they are frames now, for `analyze` and for `produce`'s jobs."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from tests.support.orientation import exif, png_with, stored, tiff_with, webp_with
from tests.support.streamkit import settings_for

from moodstream.worker.analyze import analyze_cmd


def analyze(paths, *flags: str) -> list[dict]:
    result = CliRunner().invoke(analyze_cmd, ["--device", "cpu", *flags, *map(str, paths)])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def encode(ext: str, img: np.ndarray, params: list[int] | None = None) -> bytes:
    ok, buf = cv2.imencode(ext, img, params or [])
    assert ok
    return buf.tobytes()


def same_faces(got: dict, want: dict) -> None:
    assert got["size"] == want["size"]
    assert len(got["faces"]) == len(want["faces"]) > 0
    for a, b in zip(got["faces"], want["faces"]):
        assert a["box"] == pytest.approx(b["box"], abs=0.5)
        assert a["emotion"] == b["emotion"]


def multi_tiff(path, pages: list[np.ndarray]) -> bytes:
    assert cv2.imwritemulti(str(path), pages)
    return path.read_bytes()


def test_a_phone_photo_in_any_format_has_the_faces_of_the_upright_one(tmp_path, image_path):
    """The street fixture (six faces) upright, then stored on its side as each format writes it."""
    upright = cv2.imread(str(image_path("street")))  # BGR (360, 640)
    h, w = upright.shape[:2]
    turned = stored(upright, 6)  # (640, 360): how a phone held upright stores it
    (tmp_path / "a_upright.png").write_bytes(encode(".png", upright))
    (tmp_path / "b_phone.png").write_bytes(png_with(encode(".png", turned), exif(6)))
    (tmp_path / "c_phone.webp").write_bytes(
        webp_with(encode(".webp", turned, [cv2.IMWRITE_WEBP_QUALITY, 101]), exif(6), h, w))
    (tmp_path / "d_phone.tiff").write_bytes(tiff_with(encode(".tiff", stored(upright, 8)), 0x0112, 3, 8))
    records = analyze([tmp_path])
    assert [r["source"].rsplit("/", 1)[-1] for r in records] == ["a_upright.png", "b_phone.png", "c_phone.webp",
                                                                  "d_phone.tiff"]
    assert records[0]["size"] == [w, h]
    for rec in records[1:]:
        same_faces(rec, records[0])


def test_each_page_of_a_multi_page_tiff_is_analysed(tmp_path, image_path):
    street, parade = cv2.imread(str(image_path("street"))), cv2.imread(str(image_path("parade")))
    data = multi_tiff(tmp_path / "raw.tiff", [street, stored(parade, 6)])
    scan = tmp_path / "scan.tiff"
    scan.write_bytes(tiff_with(data, 0x0112, 3, 6, page=1))
    (tmp_path / "street.png").write_bytes(encode(".png", street))
    (tmp_path / "parade.png").write_bytes(encode(".png", parade))
    pages = analyze([scan], "--summary", str(tmp_path / "out" / "people.json"))
    assert [(r["source"], r["frame"], r["timestamp_s"]) for r in pages] == [(str(scan), 0, None), (str(scan), 1, None)]
    alone = analyze([tmp_path / "street.png", tmp_path / "parade.png"])
    for page, image in zip(pages, alone):
        same_faces(page, image)
        assert [f["track_id"] for f in page["faces"]] == list(range(len(page["faces"])))  # a still image each
    # and a still image each in the summary: page 2's #0 is not page 1's #0 seen for 0.03 s ("not a person")
    tracks = json.loads((tmp_path / "out" / "people.json").read_text())["tracks"]
    assert [(t["first_frame"], t["track_id"]) for t in tracks] == \
        [(k, f["track_id"]) for k, page in enumerate(pages) for f in page["faces"]]
    assert [t["person"] for t in tracks] == [f["score"] >= 0.92 for page in pages for f in page["faces"]]


def test_produce_sends_each_page_of_a_tiff_as_a_frame(tmp_path, redis_url, client, keys):
    from moodstream.producer.client import Producer
    from moodstream.shared.media import decode_pixels
    from moodstream.shared.wire import decode_frame

    rng = np.random.default_rng(5)
    pages = [rng.integers(0, 256, (24 + 8 * k, 40, 3), dtype=np.uint8) for k in range(3)]
    data = multi_tiff(tmp_path / "raw.tiff", [pages[0], pages[1], stored(pages[2], 8)])
    scan = tmp_path / "scan.tiff"
    scan.write_bytes(tiff_with(data, 0x0112, 3, 8, page=2))
    settings = settings_for(redis_url)
    refs = list(Producer(settings).produce([str(scan)]))
    assert [(r.source, r.frame) for r in refs] == [(str(scan), k) for k in range(3)]
    messages = client.lrange(keys.intake, 0, -1)  # in order, for a worker's mover
    assert len(messages) == 3
    for message, page in zip(messages, pages):
        job = decode_frame(message)
        rgb = decode_pixels(job.image, job.array, settings.max_pixels)  # the worker's decode step
        np.testing.assert_array_equal(rgb, cv2.cvtColor(page, cv2.COLOR_BGR2RGB))


def test_a_page_over_max_message_bytes_once_encoded_is_refused_not_sent(tmp_path, redis_url, client, keys):
    """A TIFF of flat pages is small, its pages sent as frames are not (raw here: 120x120x3 bytes
    each): a message over max_message_bytes was sent all the same, for the worker to dead-letter
    unread, and produce exited 0. It is refused at the producer, named, and the run fails."""
    from moodstream.producer.client import Producer

    small = np.full((30, 30, 3), 90, np.uint8)
    flat = np.full((120, 120, 3), 90, np.uint8)
    scan = tmp_path / "scan.tiff"
    multi_tiff(scan, [small, flat])
    assert scan.stat().st_size < 20_000
    notices: list[str] = []
    producer = Producer(settings_for(redis_url, max_message_bytes=20_000), encoding="raw", notice=notices.append)
    refs = list(producer.produce([str(scan)]))
    assert [(r.source, r.frame) for r in refs] == [(str(scan), 0)]
    assert client.llen(keys.intake) == 1
    assert producer.stats.failed_inputs == [(str(scan), "too_large")]
    assert any("max_message_bytes" in n and "frame 1" in n for n in notices), notices
