"""IVF: the container libvpx's and libaom's tools (vpxenc, aomenc) write, and WebRTC recorders dump a
call's VP8 / VP9 / AV1 video in. OpenCV's FFmpeg reads it (each frame at its own time), but a `.ivf` named
was "unreadable: not an image", and in a folder left out. It is a video now, by its name and by its first
bytes (``DKIF``: stdin, a bare name).

The AV1 here is real: the sample photo as OpenCV's own AVIF writer (libavif) codes it, its temporal unit
repeated in an IVF, so this also shows the shipped OpenCV decodes AV1 (a YouTube download's, a screen
recorder's)."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import cv2
import pytest

from moodstream.shared.containers import sniff_video
from moodstream.shared.media import expand_paths, iter_frames, piped_items

STREET = Path(__file__).resolve().parents[2] / "samples" / "street.jpg"


def av1_ivf(frames: int, fps: int = 25) -> bytes:
    """An IVF of ``frames`` AV1 key frames of the sample photo (960 x 540), ``fps`` a second."""
    ok, avif = cv2.imencode(".avif", cv2.imread(str(STREET)))
    if not ok:
        pytest.skip("this OpenCV build writes no AVIF (no libavif): no AV1 to put in an IVF")
    data = avif.tobytes()
    at = data.find(b"mdat")
    unit = data[at + 4:at - 4 + struct.unpack(">I", data[at - 4:at])[0]]  # the picture's temporal unit
    head = b"DKIF" + struct.pack("<HH", 0, 32) + b"AV01" + struct.pack("<HHIII", 960, 540, fps, 1, frames) + bytes(4)
    return head + b"".join(struct.pack("<IQ", len(unit), i) + unit for i in range(frames))


@pytest.fixture(scope="module")
def call(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("webrtc") / "call-video.ivf"
    path.write_bytes(av1_ivf(10))
    return path


def test_an_ivf_of_av1_is_a_video_with_its_frames_times(call):
    items = list(iter_frames([str(call)]))
    assert [(i.frame, i.error) for i in items] == [(k, None) for k in range(10)], items[-1].error
    assert [i.timestamp_s for i in items] == pytest.approx([k * 0.04 for k in range(10)])
    assert all(i.image.shape == (540, 960, 3) for i in items)


def test_a_folder_lists_it_and_stdin_tells_it_by_its_bytes(call, tmp_path):
    assert [Path(p).name for p in expand_paths([str(call.parent)])] == ["call-video.ivf"]
    data = call.read_bytes()
    assert sniff_video(data[:16]) == ".ivf"
    assert [i.error for i in piped_items("-", io.BytesIO(data))] == [None] * 10
    (tmp_path / "dump").write_bytes(data)
    assert [i.error for i in iter_frames(list(expand_paths([str(tmp_path)])))] == [None] * 10


def test_its_faces_are_found(call):
    import moodstream
    from moodstream.shared.settings import Settings

    records = list(moodstream.analyze(call, Settings.from_env(env={}, device="cpu")))
    assert len(records) == 10 and all(r.error is None for r in records)
    assert min(len(r.faces) for r in records) >= 3  # the sample photo's faces, in every frame
