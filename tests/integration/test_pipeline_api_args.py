"""What `Pipeline`, `VideoAnalyzer` and `Settings.from_env` take, checked when they are called, with a
TypeError or ValueError that says what to pass (README "From Python"), never an error from deep inside
or a silently wrong answer. Each case was found by trying it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from moodstream import Pipeline, Settings, VideoAnalyzer
from moodstream.shared.record import Face


def test_detect_every_is_a_whole_number_from_1(pipeline):
    """nan was taken and no face was ever found (street.jpg has 5); inf and 1.5 were taken; "2" and
    None were '<' not supported between instances of 'str' and 'int'."""
    for bad in (math.nan, math.inf, 1.5, "2", None, 0, True):
        with pytest.raises((TypeError, ValueError), match="detect_every must be a whole number from 1"):
            VideoAnalyzer(pipeline, detect_every=bad)
    assert VideoAnalyzer(pipeline, detect_every=np.int64(3)).detect_every == 3


def test_an_analyzer_takes_a_pipeline(settings):
    """VideoAnalyzer(settings) was AttributeError: 'Settings' object has no attribute 'settings'."""
    for bad in (settings, None, "cpu"):
        with pytest.raises(TypeError, match=r"VideoAnalyzer takes a Pipeline \(VideoAnalyzer\(Pipeline\(settings\)\)\)"):
            VideoAnalyzer(bad)


def test_a_pipeline_takes_settings():
    """Pipeline(None) and Pipeline({...}) were AttributeError ('NoneType' object has no attribute
    'device'); Pipeline(Settings), the class, was taken."""
    for bad in (None, {"device": "cpu"}, Settings, "cpu"):
        with pytest.raises(TypeError, match=r"Pipeline takes Settings \(Pipeline\(Settings\(device="):
            Pipeline(bad)


def test_classify_says_what_faces_it_takes(pipeline, street):
    """Pipeline.classify with a list of faces per frame of another length was numpy's 'all input arrays
    must have the same shape'; None was 'NoneType' object is not iterable; a NaN box was classified."""
    face = Face(box=(100.0, 100.0, 150.0, 160.0), score=1.0)
    with pytest.raises(ValueError, match="faces_per_frame has 1 list of faces for 2 frames"):
        pipeline.classify([street, street], [[face]])
    with pytest.raises(TypeError, match="faces_per_frame must be a list"):
        pipeline.classify([street], None)
    with pytest.raises(TypeError, match=r"faces_per_frame\[0\]\[0\] must be a Face"):
        pipeline.classify([street], [[(100, 100, 150, 160)]])
    for box in ((math.nan, 1.0, 5.0, 5.0), (10.0, 10.0, 5.0, 20.0), (-100.0, -100.0, -50.0, -50.0),
                (2000.0, 10.0, 2100.0, 60.0)):
        with pytest.raises(ValueError, match=r"faces_per_frame\[0\]\[0\]\.box"):
            pipeline.classify([street], [[Face(box=box, score=1.0)]])


def test_env_values_that_are_not_strings_are_refused_by_name():
    """from_env(env={"MOODSTREAM_CALIBRATE_BOXES": False}) was AttributeError ('bool' object has no
    attribute 'strip'); 2.7 for threads was 2; [1] was int()'s TypeError."""
    for name, value in (("CALIBRATE_BOXES", False), ("THREADS", 2.7), ("BATCH_MAX", [1])):
        with pytest.raises(TypeError, match=f"MOODSTREAM_{name} is {type(value).__name__}: environment "
                                            "variables are strings"):
            Settings.from_env(env={f"MOODSTREAM_{name}": value})
