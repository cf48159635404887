"""``moodstream bench encoding`` on a few frames of the sample clip: lossless
encodings give analyze's answers, and the report says what each costs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from moodstream.producer.client import encode_pixels
from moodstream.shared.settings import ENCODINGS
from moodstream.shared.errors import ConfigError
from moodstream.shared.media import decode_pixels
from moodstream.trainer.cli import bench


def test_png_is_lossless_and_raw_has_no_bytes():
    rgb = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    assert np.array_equal(decode_pixels(encode_pixels(rgb, "png"), None, 10**6), rgb)
    assert not np.array_equal(decode_pixels(encode_pixels(rgb, "jpeg"), None, 10**6), rgb)
    with pytest.raises(ConfigError, match="no byte encoding"):
        encode_pixels(rgb, "raw")


def _row_filters(png: bytes, width: int, height: int) -> set[int]:
    """The filter type of each row of an 8-bit RGB PNG (the first byte of each row of its IDAT data)."""
    import struct
    import zlib

    at, idat = 8, b""
    while at < len(png):
        n, kind = struct.unpack(">I4s", png[at:at + 8])
        idat += png[at + 8:at + 8 + n] if kind == b"IDAT" else b""
        at += 12 + n
    data, stride = zlib.decompress(idat), 1 + 3 * width
    return {data[k * stride] for k in range(height)}


def test_the_producer_s_png_filters_each_row_by_the_row_above():
    """libpng's adaptive choice of a filter per row cost 1.7x the encode and 1.6x the decode of a 1080p
    frame (bench encoding's png_vs_adaptive); the producer's png filters each row by the one above."""
    import cv2

    rgb = np.random.default_rng(1).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    if not hasattr(cv2, "IMWRITE_PNG_FILTER"):
        pytest.skip("OpenCV before 4.10 has no PNG filter setting: the adaptive filter stays")
    assert _row_filters(encode_pixels(rgb, "png"), 53, 37) == {2}  # 2: UP


def test_report_on_the_sample_clip(tmp_path):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "encoding.json"
    res = CliRunner().invoke(bench, ["encoding", "--max-frames", "6", "--out", str(out)])
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())
    assert report["default"] == "png" and report["backend"] in ("onnx", "openvino")
    (video,) = report["videos"]
    assert video["video"] == "hamilton_clip.mp4" and video["frames"] == 6 and video["frame_size"] == [640, 360]
    rows = video["encodings"]
    assert list(rows) == list(ENCODINGS)
    for lossless in ("png", "raw"):  # the service answers as analyze does
        r = rows[lossless]
        assert r["faces_ref"] >= 6 and r["same_answer_rate"] == r["box_match_rate"] == 1.0, (lossless, r)
    assert rows["raw"]["vs_raw"] == 1.0 and rows["raw"]["kib_per_frame"] == 675.0  # 640 x 360 x 3 bytes
    assert rows["jpeg"]["kib_per_frame"] < rows["png"]["kib_per_frame"] < rows["raw"]["kib_per_frame"]
    assert all(0.0 <= r["same_answer_rate"] <= 1.0 for r in rows.values())
    png = video["png_vs_adaptive"]  # the png of before against the one sent now, same frames, lossless both
    assert png["shipped"]["kib_per_frame"] == rows["png"]["kib_per_frame"]
    assert all(png[k] > 0 for k in ("encode_speedup", "decode_speedup", "size_ratio"))
    assert report["cpu"]
    md = out.with_suffix(".md").read_text()
    assert "| **png** (default) |" in md and "| jpeg |" in md
    assert "png against its adaptive filter of before" in md
    ahead = video["encode_ahead"]  # the producer's frames encoded ahead: the same bytes, the rate against one thread
    assert ahead["encoding"] == "png" and ahead["frames"] == 6 and ahead["threads"] >= 1
    assert ahead["one_thread_fps"] > 0 and ahead["ahead_fps"] > 0 and ahead["speedup"] > 0
    assert "encoded ahead on" in md
