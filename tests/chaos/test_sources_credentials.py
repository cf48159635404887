"""No credential of a camera URL leaves the producer or the expander (issue 22 item 11):
`rtsp://user:pass@host/...` appeared in the frames' and results' ``source``, in
`results` output, the expander's log, the rq job and produce's stderr. Real
redis-server, a real worker process, real `produce`, `results` and `expander`."""

from __future__ import annotations

import zlib

from tests.support.expanderkit import PREFIX, Site, job, job_error, mjpeg, run_burst, settings
from tests.support.procs import spawn_cli, spawn_double, stop, wait_until
from rq.job import JobStatus

from moodstream.producer.rq_jobs import enqueue_source
from moodstream.shared.keys import Keys
from moodstream.shared.wire import FIELD, decode_frame, decode_result

SECRET = "s3cretPass"


def _cli(redis_url: str, *args: str, timeout_s: float = 60) -> tuple[int, str, str]:
    proc = spawn_cli(*args, MOODSTREAM_REDIS_URL=redis_url, MOODSTREAM_PREFIX=PREFIX,
                     MOODSTREAM_LIVE_MAX_RECONNECTS="2", MOODSTREAM_LIVE_BACKOFF_CAP_S="0.5")
    out, err = proc.communicate(timeout=timeout_s)
    return proc.returncode, out, err


def test_a_camera_password_reaches_no_stream_output_or_log(redis_url, client):
    keys = Keys(PREFIX)
    camera = Site({"/live.mjpg": mjpeg(None)})
    worker = spawn_double(redis_url, "w-cred")
    try:
        url = f"http://viewer:{SECRET}@127.0.0.1:{camera.port}/live.mjpg"
        rc, out, err = _cli(redis_url, "produce", "--max-frames", "3", url)
        assert rc == 0, err
        wait_until(lambda: client.xlen(keys.results) >= 3, 60, "3 results")
        rc_r, results_out, results_err = _cli(redis_url, "results", "--from-start", "--count", "3",
                                              "--timeout-s", "30")
        dead = spawn_cli("produce", f"rtsp://admin:{SECRET}@127.0.0.1:1/cam", MOODSTREAM_REDIS_URL=redis_url,
                         MOODSTREAM_PREFIX=PREFIX, MOODSTREAM_LIVE_MAX_RECONNECTS="1",
                         MOODSTREAM_LIVE_BACKOFF_CAP_S="0.2")
        _, dead_err = dead.communicate(timeout=60)
    finally:
        camera.close()
        worker_out, worker_err = stop(worker)
    frames = [decode_frame(f[FIELD]) for _, f in client.xrange(keys.frames)]
    results = [decode_result(f[FIELD]) for _, f in client.xrange(keys.results)]
    assert rc_r == 0, results_err
    assert len(frames) == 3 and {f.source for f in frames} == {f"http://***@127.0.0.1:{camera.port}/live.mjpg"}
    assert len(results) >= 3 and {r.source for r in results} == {frames[0].source}
    leaks = {name: SECRET in text for name, text in [
        ("produce stdout", out), ("produce stderr", err), ("results output", results_out),
        ("results stderr", results_err), ("worker log", worker_err), ("failing produce stderr", dead_err)]}
    assert not any(leaks.values()), leaks
    assert "rtsp://***@127.0.0.1:1/cam" in dead_err  # still says which camera failed


def _job_hash_text(client, job_id: str) -> bytes:
    """Every field of the rq job hash, its compressed data unpacked."""
    raw = client.hgetall(f"rq:job:{job_id}")
    parts = []
    for v in raw.values():
        try:
            parts.append(zlib.decompress(v))
        except zlib.error:
            parts.append(v)
    return b"\n".join(parts)


def test_the_expander_keeps_camera_passwords_out_of_jobs_and_logs(redis_url, client):
    rc, out, err = _cli(redis_url, "produce", "--rq", f"rtsp://admin:{SECRET}@127.0.0.1:1/cam")
    assert rc == 0, err
    job_id = __import__("json").loads(out)["job_id"]
    direct = enqueue_source(settings(redis_url), client, f"http://admin:{SECRET}@127.0.0.1:1/cam.mjpg")
    rc, exp_err = run_burst(redis_url, "--allow-url-host", "127.0.0.1", timeout_s=90,
                            MOODSTREAM_LIVE_MAX_RECONNECTS="2", MOODSTREAM_LIVE_BACKOFF_CAP_S="0.5")
    assert rc == 1 and "2 jobs failed" in exp_err, exp_err[-2000:]  # each named, its password masked (below)
    for jid in (job_id, direct.id):
        j = job(client, jid)
        assert j.get_status() == JobStatus.FAILED, jid
        assert "***@127.0.0.1:1/cam" in job_error(j)  # the error still names the camera
        assert SECRET not in (j.description or "") and SECRET not in job_error(j)
        assert SECRET.encode() not in _job_hash_text(client, jid), "the stored job keeps the password"
    assert SECRET not in out and SECRET not in exp_err
