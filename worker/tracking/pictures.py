"""Face pictures for the service's per-person summaries: frames read back from the frames stream.

Results carry boxes, not pixels. The track stage gets a face picture for each
track by reading the frame of a chosen result back from ``<prefix>:frames``,
which keeps entries after they are served until ``stream_maxlen`` trims them
(the stage reads a result within ``reorder_wait_ms`` of its publication, so
the frame is normally still there). Why not pictures from the workers: that
would put a crop in every result (bytes on every message, for every
subscriber) to serve one picture per track.

**Which frames.** Pixels cost a read and a decode, so not every face gets one:
a track's frame is read when its pixel-free score (box size times frontality,
the two terms of :func:`worker.tracking.summary.thumbnail_score` that need no pixels)
beats the best read so far by ``GAIN``, at most ``READS_PER_TRACK`` times per
track; :class:`~moodstream.worker.tracking.summary.ThumbnailPicker` then keeps the best
of those crops, sharpness included. Faces of one frame share one read.

**Finding the entry.** A worker's result names the frames-stream entry it
answered (``frame_entry``): one XRANGE of that id, the job id checked. A result
without it (a worker of an earlier release) is looked for by its enqueue time:
the entry was added by a worker's mover (:mod:`worker.intake`) after the
producer stamped ``enqueued_at_ms`` and pushed it to the intake list (at once
while a mover waits; later, in the list's order, where the intake held a
queue), so XRANGE from that time on (2, 16, then 64 entries; then from
``SKEW_MS`` earlier, for clocks that differ), an entry decoded only when its
bytes contain the job id; a job queued behind more than that is not found so.
A frame already trimmed, or a result without a job id, gives no picture: the
track's ``thumbnail`` stays null (``moodstream tracks`` and ``up --summary``
say so), nothing else changes.
"""

from __future__ import annotations

import logging
import time

import cv2
import numpy as np
import redis

from moodstream.shared.errors import BadInputError, MessageError
from moodstream.shared.record import MAX_TIME_MS, FrameJob, FrameResult
from moodstream.shared.media import decode_pixels
from moodstream.shared.wire import FIELD, decode_frame
from moodstream.worker.tracking.summary import SourceSummary, crop_face, pose_score

log = logging.getLogger(__name__)

GAIN = 1.1  # a frame is read when the face's pixel-free score beats the best read by this factor
READS_PER_TRACK = 8
SKEW_MS = 250  # how far before its enqueue time an entry is looked for (producer and Redis clocks)
# (ms before enqueue time, entries read) tried in turn; the scans from the enqueue time on read to the stream's
# end, not to SKEW_MS after it: a job waits in the intake list until a mover moves it (seconds while the
# workers start), behind the jobs pushed before it (64: two batches of a run moved together)
SCANS = ((0, 2), (0, 16), (0, 64), (SKEW_MS, 32))


def at_size(image: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """``image`` at the result's ``size`` (W, H), where its boxes are: a photo over max_pixels is read
    smaller (a JPEG at 1/2, 1/4 or 1/8, shared.media.jpeg_reduction), and a stage whose max_pixels is not
    the worker's read it at another size than the worker did (its pictures were cropped from the wrong
    place). None: as it is (the dashboard's frame, whose boxes the page scales)."""
    if size is None or tuple(image.shape[1::-1]) == tuple(size):
        return image
    shrink = size[0] * size[1] < image.shape[0] * image.shape[1]
    return cv2.resize(image, tuple(size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


class FramePictures:
    """Reads frames back for the face pictures of a run's tracks; keeps figures of what it cost."""

    def __init__(self, client: redis.Redis, frames_key: str, max_pixels: int):
        self.client = client
        self.frames_key = frames_key
        self.max_pixels = max_pixels
        self.reads = self.found = self.entries_read = 0
        self.read_ms = 0.0

    def offer(self, summary: SourceSummary, best: dict[int, tuple[float, int]], r: FrameResult) -> None:
        """Give ``summary`` crops of ``r``'s faces whose track wants a better picture.
        ``best``: track id -> (best pixel-free score read, frames read), the run's own."""
        wanted = []
        for face in r.faces:
            if face.track_id is None:
                continue
            score = pose_score(face)
            top, n = best.get(face.track_id, (0.0, 0))
            if n < READS_PER_TRACK and (n == 0 or score > top * GAIN):
                best[face.track_id] = (max(top, score), n + 1)
                wanted.append(face)
        if not wanted:
            return
        image = self.frame(r)
        if image is None:
            return
        for face in wanted:
            crop = crop_face(image, face.box)
            if crop is not None:
                summary.offer_crop(face, crop)

    def frame(self, r: FrameResult) -> np.ndarray | None:
        """The RGB frame of ``r``'s job, or None (trimmed, not found, undecodable)."""
        if not r.job_id or (r.frame_entry is None and r.enqueued_at_ms is None):
            return None
        t0 = time.perf_counter()
        self.reads += 1
        try:
            job = (self._entry(r.job_id, r.frame_entry) if r.frame_entry is not None
                   else self._find(r.job_id, r.enqueued_at_ms))
            if job is None:
                return None
            image = decode_pixels(job.image, job.array, self.max_pixels)
            self.found += 1
            return at_size(image, r.size)
        except (MessageError, BadInputError) as exc:
            log.debug("track pictures: frame of job %r unreadable: %s", r.job_id[:80], exc)
            return None
        finally:
            self.read_ms += (time.perf_counter() - t0) * 1000

    def _entry(self, job_id: str, entry_id: str) -> FrameJob | None:
        """The job of entry ``entry_id`` if it is still there and is ``job_id``'s."""
        return self._read(job_id, entry_id, entry_id, 1)[0]

    def _find(self, job_id: str, enqueued_at_ms: int) -> FrameJob | None:
        skew_stop = f"{min(enqueued_at_ms + SKEW_MS, MAX_TIME_MS)}"  # never past a stream id's range
        forward_done = False  # no more entries from the enqueue time on: only the skew window is left
        for before_ms, count in SCANS:
            if before_ms == 0 and forward_done:
                continue
            job, read = self._read(job_id, f"{max(0, enqueued_at_ms - before_ms)}-0",
                                   "+" if before_ms == 0 else skew_stop, count)
            if job is not None:
                return job
            forward_done = forward_done or (before_ms == 0 and read < count)
        return None

    def _read(self, job_id: str, first: str, last: str, count: int) -> tuple[FrameJob | None, int]:
        """(``job_id``'s job among the entries ``first``..``last``, at most ``count`` of them, or None;
        the entries read). An entry is decoded only when its bytes contain the job id."""
        needle = job_id.encode()
        entries = self.client.xrange(self.frames_key, min=first, max=last, count=count)
        self.entries_read += len(entries)
        for _, fields in entries:
            raw = fields.get(FIELD)
            if isinstance(raw, bytes) and needle in raw:  # decode only a likely match
                job = decode_frame(raw)
                if job.job_id == job_id:
                    return job, len(entries)
        return None, len(entries)

    def figures(self) -> dict:
        return {"frames_read": self.reads, "found": self.found, "entries_read": self.entries_read,
                "read_ms": round(self.read_ms, 1),
                "ms_per_read": round(self.read_ms / self.reads, 2) if self.reads else 0.0}
