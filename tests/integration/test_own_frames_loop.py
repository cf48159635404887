"""A program's own camera loop as real ones are written (README "From Python"): a camera that changes
its resolution, a capture API that fills one buffer again and again, numpy's numbers for the frame's
index and time, and threads that share one analyzer. Each case was a defect found by trying it."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from moodstream import VideoAnalyzer, VideoFrame

REPO = Path(__file__).resolve().parents[2]
CLIP = REPO / "samples" / "hamilton_clip.mp4"


@pytest.fixture(scope="module")
def frames() -> list[tuple[float, np.ndarray]]:
    cap = cv2.VideoCapture(str(CLIP))
    out = []
    for _ in range(8):
        ok, bgr = cap.read()
        assert ok
        out.append((cap.get(cv2.CAP_PROP_POS_MSEC) / 1000, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
    cap.release()
    return out


def boxes(r) -> list[tuple[int, ...]]:
    return [tuple(round(v) for v in f.box) for f in r.faces]


def test_a_camera_that_changes_its_resolution_is_detected_afresh(pipeline, frames):
    """With detect_every 2, a frame larger than the one before it went to the optical flow with the
    smaller one: OpenCV's assertion (lkpyramid.cpp, prevPyr size == nextPyr size) on that frame and,
    as the failed call left the source as it was, on every frame after it: the camera was stuck."""
    video = VideoAnalyzer(pipeline, detect_every=2)
    t0, first = frames[0]
    video.analyze([VideoFrame("cam", 0, t0, np.ascontiguousarray(first[:, :290]))])  # a smaller picture
    fresh = VideoAnalyzer(pipeline, detect_every=1)
    for i in range(1, 4):
        t, rgb = frames[i]
        (r,) = video.analyze([VideoFrame("cam", i, t, rgb)])
        if i == 1:  # the first frame of the new size is a key frame: the detector's own answer
            (ref,) = fresh.analyze([VideoFrame("ref", 0, t, rgb)])
            assert boxes(r) == boxes(ref) and r.faces
    (small,) = video.analyze([VideoFrame("cam", 4, frames[4][0], np.ascontiguousarray(frames[4][1][::2, ::2]))])
    assert small.error is None  # and smaller again


def test_a_buffer_the_camera_fills_again_is_followed_as_fresh_frames_are(pipeline, frames):
    """The analyzer held the caller's array as the previous frame: a loop that reads each frame into one
    buffer (picamera2, cv2.VideoCapture.read(image=buf)) had the flow compare the buffer with itself,
    see no motion, and give the key frame's boxes until the next key frame."""
    def run(reuse: bool) -> list[list[tuple[int, ...]]]:
        video = VideoAnalyzer(pipeline, detect_every=4)
        buf = np.empty_like(frames[0][1])
        out = []
        for i, (t, rgb) in enumerate(frames):
            if reuse:
                buf[:] = rgb
                rgb = buf
            out.append(boxes(video.analyze([VideoFrame("cam", i, t, rgb)])[0]))
        return out

    fresh = run(reuse=False)
    assert len(set(map(tuple, fresh[:4]))) > 1  # the face moves between key frames
    assert run(reuse=True) == fresh


def test_numpy_numbers_for_index_time_and_shot_give_records_that_encode(pipeline, frames):
    """np.int64 frame indexes, np.float64 / np.float32 times (np.arange(n) / fps) and an np.int32 shot
    were taken as they are and kept in the record, whose to_json then failed ('Encoding objects of type
    numpy.int64 is unsupported')."""
    import json
    from fractions import Fraction

    video = VideoAnalyzer(pipeline)
    t, rgb = frames[0]
    for k, (frame, ts, shot) in enumerate([(np.int64(3), np.float64(0.1), np.int32(0)),
                                           (np.uint16(4), np.float32(0.125), None),
                                           (5, Fraction(1, 6), np.int64(0))]):
        f = VideoFrame("cam", frame, ts, rgb, shot=shot)
        assert type(f.frame) is int and type(f.timestamp_s) is float
        assert f.shot is None or type(f.shot) is int
        (r,) = video.analyze([f])
        record = json.loads(json.dumps(r.to_json(service=False)))
        assert (record["frame"], record["timestamp_s"]) == (int(frame), pytest.approx(float(ts)))


def test_a_time_no_record_can_carry_is_refused_by_name(frames):
    """1.7e18 (nanoseconds given as seconds) was taken, and its record failed the wire codec later
    ('Expected float <= 1e12 at $.timestamp_s'); 10**400 was an OverflowError from math.isfinite."""
    rgb = frames[0][1]
    for t in (1.7e18, 10**400, -1.7e18):
        with pytest.raises(ValueError, match="timestamp_s must be"):
            VideoFrame("cam", 0, t, rgb)


def test_a_failed_call_leaves_the_sources_other_threads_sent_as_they_are(pipeline, frames):
    """A call that raised put back every source as its own start had seen them: sources another thread
    began or moved on meanwhile were dropped or set back (their tracks begun again). Now a failed call
    puts back only the sources it touched."""
    video = VideoAnalyzer(pipeline, detect_every=2)
    t, rgb = frames[0]
    video.analyze([VideoFrame("mine", 0, t, rgb)])

    class Failing:
        """The pipeline, whose detector lets another thread send a frame, then fails."""

        def __getattr__(self, name):
            return getattr(pipeline, name)

        def detect(self, images):
            other = threading.Thread(target=lambda: VideoAnalyzer.analyze(
                video, [VideoFrame("theirs", 0, t, rgb)]))
            video.pipeline = pipeline
            other.start()
            other.join()
            raise RuntimeError("the detector failed")

    video.analyze([VideoFrame("mine", 1, frames[1][0], frames[1][1])])
    video.pipeline = Failing()
    with pytest.raises(RuntimeError, match="detector failed"):
        video.analyze([VideoFrame("mine", 2, frames[2][0], frames[2][1])])
    assert "theirs" in video.sources and video.sources["theirs"].count == 1
    assert video.sources["mine"].count == 2 and video.sources["mine"].last_frame == 1


def test_threads_sharing_one_analyzer_each_with_their_own_sources(pipeline, frames):
    """4 threads, each a camera plus a fresh source a request: the analyzer's snapshot of its sources
    (for putting them back on a failure) iterated the dict while another thread added to it:
    'RuntimeError: OrderedDict mutated during iteration'. Switching threads often makes it likely."""
    tiny = cv2.resize(frames[0][1], (48, 27))
    video = VideoAnalyzer(pipeline, detect_every=2, max_sources=600)
    errors: list[BaseException] = []

    def send(tid: int) -> None:
        try:
            for i in range(150):
                video.analyze([VideoFrame(f"cam-{tid}", i, i / 30, tiny)]
                              + [VideoFrame(f"req-{tid}-{i}-{j}", 0, 0.0, tiny) for j in range(3)])
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            errors.append(exc)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=send, args=(k,)) for k in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    finally:
        sys.setswitchinterval(interval)
    assert not errors, errors
    assert all(video.sources[f"cam-{k}"].count == 150 for k in range(4))


def test_a_time_that_goes_back_along_a_source_is_refused_and_the_source_goes_on(pipeline, frames):
    """Frames whose index went on but whose time went back (a wall clock stepped back by NTP) were taken:
    the per-person summary of such records gave a track seen for -0.17 s (its last time before its
    first). Now the frame is refused by name, and the source goes on from the frame before it."""
    video = VideoAnalyzer(pipeline, detect_every=2)
    for i in range(3):
        video.analyze([VideoFrame("cam", i, 1.0 + frames[i][0], frames[i][1])])
    with pytest.raises(ValueError, match=r"cam's frame 3 at 0\.1 s comes after its frame 2 at 1\.0[0-9]* s"):
        video.analyze([VideoFrame("cam", 3, 0.1, frames[3][1])])
    with pytest.raises(ValueError, match="comes after its frame 3"):  # within one call too
        video.analyze([VideoFrame("cam", 3, 1.2, frames[3][1]), VideoFrame("cam", 4, 1.15, frames[4][1])])
    assert (video.sources["cam"].count, video.sources["cam"].last_frame) == (3, 2)
    (r,) = video.analyze([VideoFrame("cam", 3, 1.0 + frames[3][0], frames[3][1])])
    assert r.faces and video.sources["cam"].count == 4
    video.analyze([VideoFrame("cam", 0, 0.0, frames[0][1])])  # a frame index that does not go on: a restart
    assert video.sources["cam"].count == 1
