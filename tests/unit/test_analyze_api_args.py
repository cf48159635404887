"""`moodstream.analyze(...)` as a program calls it by mistake: what it is handed is checked when it is
called, before any model loads, with a TypeError or ValueError that says what to pass."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest

from moodstream import Settings, analyze

SETTINGS = Settings(device="cpu")


@pytest.mark.parametrize("paths, match", [
    # image bytes were iterated: each byte a camera index (the JPEG's first 100 opened 100 cameras)
    (b"\xff\xd8\xff\xe0" + b"\x00" * 20, "not the image's bytes"),
    (bytearray(b"photo.jpg"), "not the image's bytes"),
    # a frame's rows were taken for paths: an error record per row, named by its pixels
    (np.zeros((10, 10, 3), np.uint8), r"Pipeline.process\(\[frame\]\) or VideoAnalyzer"),
    (None, "got None"),
    (2.5, "got 2.5"),
    # an open file's lines were taken for paths: an OSError ('File name too long') out of pathlib
    (io.BytesIO(b"\xff\xd8 not a path\n"), "its path"),
    (["photo.jpg", b"clip.mp4"], r"paths\[1\] is bytes"),
    (["photo.jpg", None], r"paths\[1\] is NoneType"),
])
def test_what_is_no_path_is_refused_when_analyze_is_called(paths, match):
    with pytest.raises(TypeError, match=match):
        analyze(paths, SETTINGS)


@pytest.mark.parametrize("kwargs, match", [
    # each was taken: every=0 or -1 analysed every frame, max_frames=0 or -1 gave no record for any video,
    # fps NaN or -1 was every frame, and both every and fps kept fps alone (the command refuses both)
    ({"every": 0}, "every must be a whole number from 1"),
    ({"every": -1}, "every must be a whole number from 1"),
    ({"every": 1.5}, "every must be a whole number from 1"),
    ({"fps": 0}, "fps must be a finite number above 0"),
    ({"fps": math.nan}, "fps must be a finite number above 0"),
    ({"fps": -1.0}, "fps must be a finite number above 0"),
    ({"max_frames": 0}, "max_frames must be a whole number from 1"),
    ({"max_frames": -1}, "max_frames must be a whole number from 1"),
    ({"every": 2, "fps": 5.0}, "either every or fps"),
])
def test_sampling_arguments_out_of_range_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        analyze("clip.mp4", SETTINGS, **kwargs)


def test_settings_and_pipeline_of_another_type_are_refused():
    # an AttributeError ('dict' object has no attribute 'device') from deep in Pipeline
    with pytest.raises(TypeError, match="settings must be a moodstream Settings"):
        analyze("photo.jpg", {"device": "cpu"})
    with pytest.raises(TypeError, match="pipeline must be a moodstream Pipeline"):
        analyze("photo.jpg", pipeline="cpu")



def test_a_folder_with_no_images_or_videos_is_refused_as_the_command_refuses_it(tmp_path):
    """`analyze(folder)` of a folder with nothing to analyse (a typo'd subfolder, notes only) gave an
    empty iterator: a program's loop ran zero times and it reported "0 faces". `moodstream analyze`
    says "no images or videos in ..."; the call now says it too, before any model loads."""
    (tmp_path / "notes.txt").write_text("not a picture")
    (tmp_path / "sub").mkdir()
    with pytest.raises(ValueError, match=f"no images or videos in {tmp_path}"):
        analyze(tmp_path, SETTINGS)
    with pytest.raises(ValueError, match="no images or videos in"):
        analyze([tmp_path, tmp_path / "sub"], SETTINGS)
    assert list(analyze([], SETTINGS)) == []  # nothing asked for: nothing given
