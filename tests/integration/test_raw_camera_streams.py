"""A security camera's recorder (DVR / NVR) exports a clip as a raw H.264 or H.265 stream, no container:
`cam1.h265`, `ch01.264`, `clip.hevc`. Named, each was "unreadable: not an image (no known image signature)";
in a folder, left out. OpenCV's FFmpeg reads them (at its 25 frames/s for a stream that says no rate), so they
are videos by those names now.

The stream is made here from HEVC that libheif's x265 encoder wrote for a HEIC of the sample photo (its
parameter sets and its one picture, as Annex B), the picture repeated: a stream of ten frames."""

from __future__ import annotations

from pathlib import Path

import pytest

import moodstream
from moodstream.producer.sources import media_files
from moodstream.shared.media import expand_paths, iter_frames
from tests.support.heif import annex_b, hevc_picture

pytest.importorskip("pillow_heif", reason="pillow-heif (its x265 encoder writes the HEVC here)")


@pytest.fixture(scope="module")
def recorder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("nvr")
    stream = annex_b(*hevc_picture((960, 540), quality=80)) * 10  # its one picture, ten times
    for name in ("cam1.h265", "ch02.hevc", "ch03.265"):
        (folder / name).write_bytes(stream)
    (folder / "index.txt").write_text("channel list\n")
    return folder


def test_a_recorders_raw_streams_are_videos(recorder):
    for name in ("cam1.h265", "ch02.hevc", "ch03.265"):
        items = list(iter_frames([str(recorder / name)]))
        assert [(i.frame, i.error) for i in items] == [(k, None) for k in range(10)], (name, items[-1].error)
        assert [i.timestamp_s for i in items] == pytest.approx([k / 25 for k in range(10)])  # FFmpeg's 25 fps
        assert all(i.image.shape == (540, 960, 3) for i in items)


def test_a_recorders_folder_lists_them(recorder, tmp_path):
    listed = sorted(Path(p).name for p in expand_paths([str(recorder)]))
    assert listed == ["cam1.h265", "ch02.hevc", "ch03.265"]
    root = str(recorder.parent.resolve())
    assert sorted(Path(p).name for p, _ in media_files(str(recorder), root)) == listed  # the expander's


def test_their_faces_are_found(recorder):
    from moodstream.shared.settings import Settings

    records = list(moodstream.analyze(recorder / "cam1.h265", Settings.from_env(env={}, device="cpu")))
    assert len(records) == 10 and all(r.error is None for r in records)
    assert min(len(r.faces) for r in records) >= 3  # the sample photo's faces, in every frame
