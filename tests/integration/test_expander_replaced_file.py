"""An expander job stopped part-way resumes by a count: the next run skips the frames its earlier runs
read and sends the rest under the same job's ids. A file replaced between the stop and the resume
(another clip saved under the same name) had its frames sent after the first file's, as one source
under one job: frames 0-4 of one video and 5-11 of another, nothing saying so. Now the job records what
it read (each file's size and mtime) with its count, and a resume that finds another file fails the
job in one line: resubmitted, it is a new job with new frame ids, each answer about one file.
The expander's own job class, in this process (rq's SimpleWorker), stopped by its own signal."""

from __future__ import annotations

import os
from pathlib import Path

from rq.job import JobStatus
from tests.support.expanderkit import burst_here, job_error, settings
from tests.support.streamkit import queued_jobs

from moodstream.producer import rq_jobs
from moodstream.producer.client import Producer
from moodstream.shared.keys import Keys

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
LONG = Path(__file__).resolve().parents[2] / "samples" / "hamilton_clip.mp4"  # 60 frames
SHORT = FIXTURES / "clip_360p.mp4"  # 12 frames, another picture size
STOP_AT = 5


def _run(s, client, monkeypatch, on_frame=None) -> None:
    """One burst of the expander's job class in this process; ``on_frame(i)`` before the i-th submit."""
    real, calls = Producer.submit_item, [0]

    def submit(self, item, job_id=None):
        calls[0] += 1
        if on_frame is not None:
            on_frame(calls[0] - 1)  # (the count first: a stop raised here is this call's)
        return real(self, item, job_id)

    monkeypatch.setattr(Producer, "submit_item", submit)
    burst_here(s, client, monkeypatch)


def _stop_and_swap(path: Path, new: bytes | None):
    """Before the STOP_AT-th frame: ``path`` replaced by ``new`` (None: left as it is), then the stop signal
    the expander sends its work horse on SIGTERM (the job goes back to the front of the queue)."""
    def on_frame(i):
        if i == STOP_AT:
            if new is not None:
                tmp = path.with_name(".incoming")
                tmp.write_bytes(new)
                os.replace(tmp, path)  # as a copy tool saves a file: a new one renamed over the old
            os.kill(os.getpid(), rq_jobs.STOP_SIGNAL)
    return on_frame


def test_a_file_replaced_between_stop_and_resume_fails_the_job(redis_url, client, tmp_path, monkeypatch):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(LONG.read_bytes())
    s = settings(redis_url, media_root=str(tmp_path))
    job = rq_jobs.enqueue_source(s, client, "clip.mp4")
    _run(s, client, monkeypatch, _stop_and_swap(clip, SHORT.read_bytes()))  # stopped, requeued, resumed
    job.refresh()
    sent = queued_jobs(client, Keys("t"))
    assert [f.frame for f in sent] == list(range(STOP_AT)), "the new file's frames went after the old one's"
    assert job.get_status() == JobStatus.FAILED
    why = job_error(job).strip().splitlines()[-1]
    assert "clip.mp4" in why and "changed" in why and "new job" in why, why


def test_a_file_replaced_in_a_folder_fails_the_job(redis_url, client, tmp_path, monkeypatch):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.mp4").write_bytes(SHORT.read_bytes())  # 12 frames, then b's
    (folder / "b.mp4").write_bytes(LONG.read_bytes())
    s = settings(redis_url, media_root=str(tmp_path))
    job = rq_jobs.enqueue_source(s, client, "in")
    _run(s, client, monkeypatch, _stop_and_swap(folder / "a.mp4", LONG.read_bytes()))
    job.refresh()
    assert len(queued_jobs(client, Keys("t"))) == STOP_AT
    assert job.get_status() == JobStatus.FAILED
    assert "a.mp4" in job_error(job).strip().splitlines()[-1]


def test_an_unchanged_file_resumes_where_it_stopped(redis_url, client, tmp_path, monkeypatch):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(SHORT.read_bytes())
    s = settings(redis_url, media_root=str(tmp_path))
    job = rq_jobs.enqueue_source(s, client, "clip.mp4")
    _run(s, client, monkeypatch, _stop_and_swap(clip, None))
    job.refresh()
    assert job.get_status() == JobStatus.FINISHED, job_error(job)
    assert job.return_value()["resumed_at"] == STOP_AT
    assert [f.frame for f in queued_jobs(client, Keys("t"))] == list(range(12))


def test_a_resumed_folder_whose_files_are_as_they_were_finishes(redis_url, client, tmp_path, monkeypatch):
    """The stop falls in the second file (12 + 3): both files' records match, the rest goes."""
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.mp4", "b.mp4"):
        (folder / name).write_bytes(SHORT.read_bytes())
    s = settings(redis_url, media_root=str(tmp_path))
    job = rq_jobs.enqueue_source(s, client, "in")

    def on_frame(i):
        if i == 15:
            os.kill(os.getpid(), rq_jobs.STOP_SIGNAL)

    _run(s, client, monkeypatch, on_frame)
    job.refresh()
    assert job.get_status() == JobStatus.FINISHED, job_error(job)
    assert job.return_value()["resumed_at"] == 15
    sent = [(Path(f.source).name, f.frame) for f in queued_jobs(client, Keys("t"))]
    assert sent == [("a.mp4", i) for i in range(12)] + [("b.mp4", i) for i in range(12)]


def test_a_job_failed_for_a_replaced_file_fails_again_when_requeued(redis_url, client, tmp_path, monkeypatch):
    """The failed run saves its count, not the new file's record: `rq requeue` does not resume it either."""
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(LONG.read_bytes())
    s = settings(redis_url, media_root=str(tmp_path))
    job = rq_jobs.enqueue_source(s, client, "clip.mp4")
    _run(s, client, monkeypatch, _stop_and_swap(clip, SHORT.read_bytes()))
    job.refresh()
    first = job_error(job).strip().splitlines()[-1]
    job.requeue()
    _run(s, client, monkeypatch)
    job.refresh()
    assert job.get_status() == JobStatus.FAILED
    assert job_error(job).strip().splitlines()[-1] == first
    assert len(queued_jobs(client, Keys("t"))) == STOP_AT
    print(first)
