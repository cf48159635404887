"""From Python, frames a program already holds (its own camera loop, a robot's topic) get what
`analyze` gives a video: track ids and smoothed emotions along the source (README "From Python").
One frame at a time gives the same records as `analyze` on the file, batch for batch."""

from __future__ import annotations

from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[2]
CLIP = REPO / "samples" / "hamilton_clip.mp4"


def test_frames_held_by_a_program_are_tracked_as_analyze_tracks_a_video():
    from moodstream import Pipeline, Settings, VideoAnalyzer, VideoFrame, analyze

    settings = Settings(device="cpu")
    pipeline = Pipeline(settings)
    expected = [(r.frame, [(f.track_id, f.box, f.smoothed.emotion, f.emotion) for f in r.faces])
                for r in analyze(str(CLIP), pipeline=pipeline, max_frames=30)]
    video = VideoAnalyzer(pipeline)
    cap = cv2.VideoCapture(str(CLIP))
    got = []
    for i in range(30):
        ok, bgr = cap.read()
        assert ok
        t = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000
        (r,) = video.analyze([VideoFrame("camera-1", i, t, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))])
        got.append((r.frame, [(f.track_id, f.box, f.smoothed.emotion, f.emotion) for f in r.faces]))
    cap.release()
    assert got == expected
    assert {tid for _, faces in got for tid, *_ in faces} == {0}  # one face, one track along the clip


def test_a_frame_the_analyzer_cannot_use_is_refused_by_name():
    """A program's mistakes said where they are made: a list for an image was an AttributeError deep
    inside ('list' object has no attribute 'dtype'); a NaN time was taken and came back as the
    record's time."""
    import math

    import numpy as np
    import pytest

    from moodstream import VideoFrame

    rgb = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(TypeError, match="image must be a numpy array"):
        VideoFrame("cam", 0, 0.0, rgb.tolist())
    for t in (math.nan, math.inf, "0.5"):
        with pytest.raises(ValueError, match="timestamp_s"):
            VideoFrame("cam", 0, t, rgb)
    with pytest.raises(ValueError, match="frame"):
        VideoFrame("cam", -1, 0.0, rgb)
    VideoFrame("cam", 0, None, rgb)  # a frame without a time is fine


def _clip_frames(n: int) -> list[tuple[float, "np.ndarray"]]:
    cap = cv2.VideoCapture(str(CLIP))
    frames = []
    for _ in range(n):
        ok, bgr = cap.read()
        assert ok
        frames.append((cap.get(cv2.CAP_PROP_POS_MSEC) / 1000, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
    cap.release()
    return frames


def test_one_frame_where_a_list_is_wanted_says_so(pipeline, street):
    """`pipeline.process(rgb)` (one frame, not a list of them) was numpy's ValueError ('The truth value
    of an array with more than one element is ambiguous'); a None in the list an AttributeError ('NoneType'
    object has no attribute 'dtype'); `video.analyze(frame)` "'VideoFrame' object is not iterable"."""
    import pytest

    from moodstream import VideoAnalyzer, VideoFrame

    for call in (pipeline.process, pipeline.detect):
        with pytest.raises(TypeError, match=r"a list of frames.*\[frame\]"):
            call(street)
        with pytest.raises(TypeError, match=r"frames\[1\] must be a numpy array .* got NoneType"):
            call([street, None])
    with pytest.raises(TypeError, match=r"a list of frames.*\[frame\]"):
        pipeline.classify(street, [[]])
    video = VideoAnalyzer(pipeline)
    with pytest.raises(TypeError, match=r"a list of VideoFrame.*\[frame\]"):
        video.analyze(VideoFrame("cam", 0, 0.0, street))
    with pytest.raises(TypeError, match=r"frames\[0\] must be a VideoFrame\(.*got ndarray"):
        video.analyze([street])


def test_a_frame_of_no_pixels_is_refused_not_answered_with_no_faces(pipeline):
    """A 0 x 0 (or 0 x 10) frame gave a record with no faces and size [0, 0]: an answer about no picture."""
    import numpy as np
    import pytest

    from moodstream import VideoAnalyzer, VideoFrame
    from moodstream.shared.errors import BadInputError

    for shape in ((0, 0, 3), (0, 10, 3), (10, 0, 3)):
        with pytest.raises(BadInputError, match="empty") as info:
            pipeline.process([np.zeros(shape, np.uint8)])
        assert info.value.reason == "empty"
        with pytest.raises(BadInputError, match="empty"):
            VideoAnalyzer(pipeline).analyze([VideoFrame("cam", 0, 0.0, np.zeros(shape, np.uint8))])


def test_a_refused_frame_leaves_its_source_as_it_was(pipeline):
    """A frame the pipeline refuses (gray, say) raised after its source had taken its frame index: the
    same frame sent again, converted, looked like a restart and began the source afresh (its smoothing
    and tracks lost). Now the source is as if the refused frame was never sent."""
    import pytest

    from moodstream import VideoAnalyzer, VideoFrame
    from moodstream.shared.errors import BadInputError

    frames = _clip_frames(6)
    def smoothed(r):
        return [(f.track_id, f.smoothed.probabilities) for f in r.faces]

    straight = VideoAnalyzer(pipeline, detect_every=2)
    expected = [smoothed(straight.analyze([VideoFrame("cam", i, t, rgb)])[0]) for i, (t, rgb) in enumerate(frames)]
    video = VideoAnalyzer(pipeline, detect_every=2)
    got = []
    for i, (t, rgb) in enumerate(frames):
        if i == 3:
            with pytest.raises(BadInputError, match="unsupported"):
                video.analyze([VideoFrame("cam", i, t, rgb[:, :, 0])])  # gray, by mistake
            with pytest.raises(BadInputError, match="unsupported"):  # with a good frame of another source
                video.analyze([VideoFrame("other", 0, t, rgb), VideoFrame("cam", i, t, rgb.astype(float))])
        got.append(smoothed(video.analyze([VideoFrame("cam", i, t, rgb)])[0]))
    assert got == expected
    assert "other" not in video.sources


def test_sources_held_are_bounded(pipeline):
    """Every source name ever seen was held for good (its tracker and, with detect_every > 1, its last
    frame): a program naming each request's frames apart grew without bound (2,000 sources of 320x180,
    detect_every 2: +327 MB). The least recently seen goes past max_sources (default 1024)."""
    import numpy as np

    from moodstream import VideoAnalyzer, VideoFrame
    from moodstream.worker.video import MAX_SOURCES

    assert VideoAnalyzer(pipeline).max_sources == MAX_SOURCES == 1024
    video = VideoAnalyzer(pipeline, detect_every=2, max_sources=3)
    img = np.zeros((32, 32, 3), np.uint8)
    for k in range(8):
        video.analyze([VideoFrame(f"request-{k}", 0, 0.0, img)])
        video.analyze([VideoFrame("camera", k, k / 30, img)])  # one source that goes on
    assert list(video.sources) == ["request-6", "request-7", "camera"]
    assert video.sources["camera"].count == 8  # never evicted: it was seen the most recently
    assert video.evicted == 6


def test_a_source_that_is_no_string_is_refused_by_name():
    """VideoFrame(None, ...), (5, ...) or (b"cam", ...) was taken: the record's source came back None, 5,
    or base64 'Y2Ft' in its JSON; a list was 'unhashable type' from deep in the analyzer."""
    import numpy as np
    import pytest

    from moodstream import VideoFrame

    rgb = np.zeros((8, 8, 3), np.uint8)
    for source in (None, 5, b"cam", ["cam"]):
        with pytest.raises(TypeError, match="source must be a string"):
            VideoFrame(source, 0, 0.0, rgb)


def test_threads_sharing_a_haar_pipeline_get_their_own_answers(haar_pipeline, street, image):
    """OpenCV's CascadeClassifier is no object to share: 4 threads on one haar pipeline got wrong boxes
    (17 of 32 calls) and OpenCV errors ('0 <= scaleIdx && scaleIdx < (int)scaleData->size()',
    'vector::_M_range_check'). Each thread now runs its own cascade."""
    import threading

    parade = image("parade")
    expected = {k: [f.box for f in haar_pipeline.process([img])[0].faces] for k, img in (("s", street), ("p", parade))}
    wrong, errors = [], []

    def work(k, img):
        for _ in range(6):
            try:
                got = [f.box for f in haar_pipeline.process([img])[0].faces]
                if got != expected[k]:
                    wrong.append(k)
            except Exception as exc:  # noqa: BLE001 (any error is the finding)
                errors.append(repr(exc)[:120])

    threads = [threading.Thread(target=work, args=kv) for kv in [("s", street), ("p", parade)] * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and not wrong, (errors[:2], len(wrong))


def test_a_frame_over_max_pixels_is_refused_as_a_decoded_image_is(settings):
    """An array a program passes in was never held to max_pixels, which bounds every image the
    service and analyze decode: a 64 MP frame took 9 s and 2 GB in the detector. Refused before
    anything runs, as too_large, naming the setting."""
    import numpy as np
    import pytest

    from moodstream import Pipeline, VideoAnalyzer, VideoFrame
    from moodstream.shared.errors import BadInputError

    small = Pipeline(settings.replace(max_pixels=100 * 100))
    frame = np.zeros((101, 100, 3), np.uint8)
    with pytest.raises(BadInputError, match="max_pixels") as info:
        small.process([np.zeros((10, 10, 3), np.uint8), frame])
    assert info.value.reason == "too_large"
    with pytest.raises(BadInputError, match="max_pixels"):
        VideoAnalyzer(small).analyze([VideoFrame("cam", 0, 0.0, frame)])
    assert len(small.process([np.zeros((100, 100, 3), np.uint8)])) == 1  # at the limit: served


def test_settings_that_are_not_the_pipeline_s_are_refused(pipeline, settings):
    """`analyze(paths, settings=S, pipeline=P)` ran P's models with P's settings but S's detect_every,
    max_pixels and batching: `analyze(clip, Settings(detect_every=5), pipeline=P)` detected every 5th
    frame with P's other settings, a mix neither names. Now: one or the other, or the same settings."""
    import pytest

    from moodstream import analyze

    other = settings.replace(detect_every=5)
    with pytest.raises(ValueError, match="settings differ from the pipeline's: detect_every"):
        analyze(CLIP, other, pipeline=pipeline)
    assert next(iter(analyze(CLIP, settings, pipeline=pipeline, max_frames=1))).frame == 0  # the same: taken
    assert next(iter(analyze(CLIP, pipeline=pipeline, max_frames=1))).frame == 0  # the pipeline's
