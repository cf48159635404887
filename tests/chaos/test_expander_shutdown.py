"""The expander's warm shutdown while its job waits on the backlog (issue 22 item 12):
it hung for over 30 s and left the job STARTED with 21 of 60 frames sent. Now the
first SIGTERM stops it within seconds and the job goes back to its queue with
``meta["resume_at"]``; the next expander sends the rest, so every frame of the
video is sent under its own id. Real redis-server, real `moodstream expander`."""

from __future__ import annotations

import signal
import subprocess
import time

from tests.support.expanderkit import LONG_CLIP, expander, job, kill_tree, run_burst, settings
from tests.support.procs import measure, wait_until
from tests.support.streamkit import pushed
from rq.job import JobStatus

from moodstream.producer.rq_jobs import enqueue_source
from moodstream.shared.keys import Keys
from moodstream.shared.wire import FIELD, decode_frame

BACKLOGGED = {"MOODSTREAM_LAG_LIMIT": "10"}  # no worker runs: the job waits after about a dozen frames


def _frame_ids(client) -> list[int]:
    return [int(decode_frame(f[FIELD]).job_id.rsplit("-", 1)[1]) for _, f in pushed(client, Keys("t"))]


def test_first_sigterm_stops_a_backlogged_job_which_resumes_on_the_next_expander(redis_url, client, tmp_path):
    (tmp_path / "clip.mp4").write_bytes(LONG_CLIP.read_bytes())  # 60 frames
    j = enqueue_source(settings(redis_url), client, "clip.mp4")
    proc = expander(redis_url, "--media-root", str(tmp_path), **BACKLOGGED)
    try:
        wait_until(lambda: client.llen(Keys("t").intake) >= 10, 60, "the first frames")
        time.sleep(2.0)  # the producer now waits for workers that never come
        assert job(client, j.id).get_status() == JobStatus.STARTED
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        stop_s = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            kill_tree(proc)
        _, err = proc.communicate(timeout=30)
    first = _frame_ids(client)
    stopped = job(client, j.id)
    measure("expander_warm_shutdown_backlogged", stop_s=round(stop_s, 1), status=str(stopped.get_status()),
            frames_sent=len(first), resume_at=stopped.meta.get("resume_at"))
    assert stop_s < 10, f"the expander took {stop_s:.0f}s to stop: {err[-1500:]}"
    assert proc.returncode == 0, err[-1500:]
    assert stopped.get_status() == JobStatus.QUEUED  # back in its queue, to resume
    sent = len(set(first))
    assert sorted(set(first)) == list(range(sent))
    # frames 0..resume_at-1 were sent; a stop between an XADD and its count sends that frame again
    assert sent - 1 <= stopped.meta["resume_at"] <= sent
    assert "Traceback" not in err

    client.delete(Keys("t").intake)  # workers took those
    rc, err = run_burst(redis_url, "--media-root", str(tmp_path), timeout_s=90)
    assert rc == 0, err[-1500:]
    second = _frame_ids(client)
    done = job(client, j.id)
    assert done.get_status() == JobStatus.FINISHED and done.return_value()["resumed_at"] == stopped.meta["resume_at"]
    assert set(first) | set(second) == set(range(60)) and min(second) == stopped.meta["resume_at"]


def test_the_expander_leaves_its_pubsub_at_once_even_when_the_reply_outruns_the_stop(redis_url, client):
    """The defect (a fresh clone's run under load, test_expander_urls): `expander --burst` said
    "done, quitting" and then took 60 s to exit. rq's teardown sends UNSUBSCRIBE and then stops its
    pubsub thread, and redis-py (8.x) joins that thread without a timeout; when the thread has read
    the UNSUBSCRIBE reply before the stop, it waits in get_message for its full 60 s again. Here the
    main thread is held up right after UNSUBSCRIBE (as a loaded machine does), so that order is sure."""
    import threading

    from moodstream.producer.rq_jobs import ExpanderWorker, coarse_queue

    worker = ExpanderWorker([coarse_queue(settings(redis_url), client)], connection=client)
    worker.subscribe()
    wait_until(lambda: client.pubsub_numsub(worker.pubsub_channel_name)[0][1] == 1, 10, "the subscription")
    sent = worker.pubsub.unsubscribe

    def unsubscribe_then_stall(*args):
        sent(*args)
        time.sleep(0.5)  # the reply arrives and the pubsub thread reads it meanwhile

    worker.pubsub.unsubscribe = unsubscribe_then_stall
    done = threading.Event()
    threading.Thread(target=lambda: (worker.unsubscribe(), done.set()), daemon=True).start()
    assert done.wait(10), "the expander's pubsub teardown waited on its thread's 60 s read"
    assert not worker.pubsub_thread.is_alive()


def test_a_killed_expanders_job_requeued_resumes_where_its_count_was(redis_url, client, tmp_path):
    """An expander killed mid-job (SIGKILL, the OOM killer, a lost node) leaves its job STARTED; rq
    fails it as abandoned and an operator requeues it (`rq requeue`). It was sent again from frame 0
    under the same frame job ids, which the workers served twice and the track stage dropped as
    second answers: the job resumes from the count it saved (every 50 frames), as after a SIGTERM."""
    from rq.registry import FailedJobRegistry, StartedJobRegistry

    from moodstream.producer.rq_jobs import coarse_queue

    (tmp_path / "clip.mp4").write_bytes(LONG_CLIP.read_bytes())  # 60 frames
    s = settings(redis_url)
    j = enqueue_source(s, client, "clip.mp4")
    proc = expander(redis_url, "--media-root", str(tmp_path), MOODSTREAM_LAG_LIMIT="55")
    try:
        wait_until(lambda: job(client, j.id).meta.get("sent") == 50 and client.llen(Keys("t").intake) >= 55, 60,
                   "50 frames counted, the job waiting for workers")
    finally:
        kill_tree(proc)
        proc.communicate(timeout=30)
    first = _frame_ids(client)
    queue = coarse_queue(s, client)
    StartedJobRegistry(queue=queue).cleanup(timestamp=time.time() + 10**6)  # what rq does once it expires
    assert job(client, j.id).get_status() == JobStatus.FAILED
    FailedJobRegistry(queue=queue).requeue(j.id)
    client.delete(Keys("t").intake)  # workers took those
    rc, err = run_burst(redis_url, "--media-root", str(tmp_path), timeout_s=90)
    assert rc == 0, err[-1500:]
    second = _frame_ids(client)
    done = job(client, j.id)
    measure("expander_killed_requeued", first=len(first), second=len(second))
    assert done.get_status() == JobStatus.FINISHED and done.return_value()["resumed_at"] == 50
    assert min(second) == 50 and set(first) | set(second) == set(range(60)), (min(second), len(second))


def test_a_live_job_resumed_from_its_saved_count_numbers_no_frame_twice(redis_url, client):
    """A live URL job killed between two saves (``meta["sent"]`` 50: it had sent 50 to 99 frames)
    and requeued went on numbering from 50: frame job ids up to 49 of them had carried went to new
    frames (other pictures, other frame numbers), which `moodstream results` took for second answers
    and did not print. It numbers from past any id the killed run can have used (50 + the 50
    between saves); a stopped job's exact count (``resume_at``) is taken as before."""
    from tests.support.expanderkit import Site, mjpeg

    site = Site({"/live.mjpg": mjpeg(None, gap_s=0.005)})
    try:
        j = enqueue_source(settings(redis_url), client, f"http://127.0.0.1:{site.port}/live.mjpg", max_frames=110)
        j.meta["sent"] = 50  # what a job killed after its 50th frame, before its 100th, leaves
        j.save_meta()
        rc, err = run_burst(redis_url, "--allow-url-host", "127.0.0.1", timeout_s=60)
    finally:
        site.close()
    ids = _frame_ids(client)
    assert rc == 0, err[-1500:]
    assert ids == list(range(100, 110)), ids


def test_a_live_job_that_failed_saves_its_count_for_a_requeue(redis_url, client):
    """A live URL job that fails (its stream gone for good after 60 frames) saved its count every 50
    frames only: requeued, it resumed at 50. It saves the count it failed at, as a stopped job does."""
    from tests.support.expanderkit import Site, mjpeg

    site = Site({"/live.mjpg": mjpeg(60, gap_s=0.002)})
    try:
        j = enqueue_source(settings(redis_url), client, f"http://127.0.0.1:{site.port}/live.mjpg")
        rc, err = run_burst(redis_url, "--allow-url-host", "127.0.0.1", timeout_s=60,
                            MOODSTREAM_LIVE_MAX_RECONNECTS="0")
    finally:
        site.close()
    failed = job(client, j.id)
    assert rc == 1 and failed.get_status() == JobStatus.FAILED, err[-1500:]
    assert len(_frame_ids(client)) == 60
    assert (failed.meta.get("resume_at"), failed.meta.get("sent")) == (60, 60), failed.meta


def test_a_job_whose_saved_count_is_no_count_fails_in_one_line(redis_url, client, tmp_path):
    """``meta`` is any Redis writer's: a count of "abc" or [1] failed the job with a ValueError /
    TypeError traceback in the expander's log; True was taken for 1. It fails with one line that
    says what is wrong, and sends nothing."""
    (tmp_path / "clip.mp4").write_bytes(LONG_CLIP.read_bytes())
    jobs = []
    for bad in ("abc", [1], True, -3):
        j = enqueue_source(settings(redis_url), client, "clip.mp4")
        j.meta["sent"] = bad
        j.save_meta()
        jobs.append(j)
    rc, err = run_burst(redis_url, "--media-root", str(tmp_path), timeout_s=60)
    assert rc == 1 and "4 jobs failed" in err, err[-1500:]
    assert "Traceback" not in err and client.llen(Keys("t").intake) == 0, err[-1500:]
    for j in jobs:
        assert job(client, j.id).get_status() == JobStatus.FAILED
    assert err.count("meta sent must be a count of frames") >= 4, err[-1500:]


DROPPING = {"MOODSTREAM_BACKPRESSURE": "drop", "MOODSTREAM_LAG_LIMIT": "5"}  # no worker: all but a few dropped


def _said(jobs) -> int:
    """The drops the frame jobs say (``dropped_before``): what the track stage counts in the run's summary."""
    return sum(j.dropped_before for j in jobs)


def test_a_job_stopped_while_dropping_says_its_tail_drops_and_the_resumed_run_counts_them_once(redis_url, client):
    """Under --backpressure drop, a job's frames dropped after the last one it sent are said by its last
    dropped frame, held and sent at the source's end. A job stopped (SIGTERM) skipped that end: the
    frames it dropped at its tail were said nowhere (not by a frame job, so not in the run's summary;
    not in the job's meta; not by the run that resumed it: 6 sent, 0 said, resume_at 54). Now the stop
    sends the held frame as the end does, the job's meta counts the drops, and the resumed run's summary
    counts the job's drops once, its own tail said by its own end. The stop's log line says the frames
    read as read, of them those sent and those dropped (it said all 54 were sent)."""
    from tests.support.expanderkit import Site, mjpeg

    from moodstream.shared.transport import ensure_group

    keys = Keys("t")
    ensure_group(client, keys)  # a fleet that exists and reads nothing meanwhile
    site = Site({"/live.mjpg": mjpeg(None, gap_s=0.01)})
    try:
        j = enqueue_source(settings(redis_url), client, f"http://127.0.0.1:{site.port}/live.mjpg", max_frames=200)
        proc = expander(redis_url, "--allow-url-host", "127.0.0.1", **DROPPING)
        try:
            wait_until(lambda: job(client, j.id).meta.get("sent", 0) >= 50, 60, "50 frames read, most dropped")
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                kill_tree(proc)
            _, err = proc.communicate(timeout=30)
        stopped = job(client, j.id)
        first = [decode_frame(m) for m in client.lrange(keys.intake, 0, -1)]
        resume_at = stopped.meta["resume_at"]
        measure("expander_stopped_while_dropping", sent=len(first), said=_said(first), resume_at=resume_at,
                meta_dropped=stopped.meta.get("dropped"))
        assert proc.returncode == 0 and stopped.get_status() == JobStatus.QUEUED, err[-1500:]
        assert len(first) < 20 < resume_at  # it did drop most of what it read
        assert len(first) + _said(first) == resume_at, "frames the stopped run read are neither sent nor said dropped"
        assert stopped.meta.get("dropped") == _said(first) == resume_at - len(first)
        # its stop line said "54 frames ... sent" of the 6 sent: it counts what was read, sent or dropped
        assert (f"expander stopping: {resume_at} frames of http://127.0.0.1:{site.port}/live.mjpg read "
                f"({len(first)} sent, {resume_at - len(first)} dropped), requeued to resume") in err, err[-1500:]

        client.delete(keys.intake)  # workers took those
        rc, err = run_burst(redis_url, "--allow-url-host", "127.0.0.1", timeout_s=90, **DROPPING)
    finally:
        site.close()
    assert rc == 0, err[-1500:]
    second = [decode_frame(m) for m in client.lrange(keys.intake, 0, -1)]
    done = job(client, j.id)
    summary = done.return_value()
    measure("expander_resumed_after_dropping", sent=len(second), said=_said(second), summary=summary)
    assert done.get_status() == JobStatus.FINISHED and summary["resumed_at"] == resume_at
    assert len(second) + _said(second) == 200 - resume_at  # its own drops said by its own frames, once
    # the job's summary: every frame of the 200 sent or dropped, over both runs, each counted once
    assert (summary["frames"], summary["dropped"]) == (len(first) + len(second), _said(first) + _said(second))


def test_a_job_that_failed_while_dropping_says_its_tail_drops(redis_url, client):
    """A live URL job that fails (its stream gone for good after 60 frames) while dropping: its end was
    skipped as a stopped job's was, and the 54 frames it dropped after its 6th were said nowhere."""
    from tests.support.expanderkit import Site, mjpeg

    from moodstream.shared.transport import ensure_group

    keys = Keys("t")
    ensure_group(client, keys)
    site = Site({"/live.mjpg": mjpeg(60, gap_s=0.002)})
    try:
        j = enqueue_source(settings(redis_url), client, f"http://127.0.0.1:{site.port}/live.mjpg")
        rc, err = run_burst(redis_url, "--allow-url-host", "127.0.0.1", timeout_s=60,
                            MOODSTREAM_LIVE_MAX_RECONNECTS="0", **DROPPING)
    finally:
        site.close()
    failed = job(client, j.id)
    jobs = [decode_frame(m) for m in client.lrange(keys.intake, 0, -1)]
    measure("expander_failed_while_dropping", sent=len(jobs), said=_said(jobs), meta=failed.meta)
    assert rc == 1 and failed.get_status() == JobStatus.FAILED, err[-1500:]
    assert len(jobs) < 20 and failed.meta.get("resume_at") == 60
    assert len(jobs) + _said(jobs) == 60 and jobs[-1].frame == 59  # its last frame says the drops before it
    assert failed.meta.get("dropped") == _said(jobs)
