"""The rq expander trusts no job (issue 12, item 2): only moodstream's expansion
runs, and only on what the expander's operator allows. Real redis-server, real
`moodstream expander` processes."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
from pathlib import Path

from rq import Callback, Queue
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer
from tests.support.streamkit import pushed

from moodstream.producer.rq_jobs import enqueue_source
from moodstream.shared.keys import Keys
from moodstream.shared.settings import Settings
from moodstream.shared.table import plural

REPO = Path(__file__).resolve().parents[2]
CLIP = REPO / "tests" / "fixtures" / "clip_360p.mp4"
CLI = [sys.executable, "-c", "from moodstream.cli import main; main()"]


def _expand(redis_url: str, *flags: str, failed: int = 0) -> subprocess.CompletedProcess:
    """`expander --burst`: exit 0, or 1 naming the ``failed`` jobs it ran and failed (refused ones too)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOODSTREAM_")}
    env.update(MOODSTREAM_REDIS_URL=redis_url, MOODSTREAM_PREFIX="t")
    out = subprocess.run([*CLI, "expander", "--burst", *flags], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == (1 if failed else 0), out.stderr
    assert not failed or f"{plural(failed, 'job')} failed" in out.stderr, out.stderr[-2000:]
    return out


def _settings(url: str) -> Settings:
    return Settings.from_env(env={}, redis_url=url, prefix="t")


def test_a_job_naming_another_function_is_refused(redis_url, client, tmp_path):
    target = tmp_path / "made-by-an-attacker"
    q = Queue(Keys("t").rq_queue, connection=client, serializer=JSONSerializer)
    job = q.enqueue("os.makedirs", str(target))
    hooked = q.enqueue("moodstream.producer.rq_jobs.expand_source", spec="0",
                       on_failure=Callback("os.abort"))  # refused: fails
    _expand(redis_url, "--media-root", str(tmp_path), failed=2)
    assert not target.exists()
    job = Job.fetch(job.id, connection=client, serializer=JSONSerializer)
    assert job.get_status() == JobStatus.FAILED and "refused" in (job.latest_result().exc_string or "")
    # its failure callback was not imported or run (os.abort would have killed the expander: returncode checked)
    assert Job.fetch(hooked.id, connection=client, serializer=JSONSerializer).get_status() == JobStatus.FAILED


def test_a_job_naming_webhooks_makes_no_request(redis_url, client, tmp_path):
    """rq 3's job webhooks: any Redis writer could make the expander send GET / POST requests with
    chosen headers to any URL (cloud metadata, internal admin APIs), and post its traceback there,
    even for a job it refused."""
    try:
        from rq import Webhook
    except ImportError:  # rq before 3 has no webhooks
        import pytest
        pytest.skip("this rq has no job webhooks")
    seen: list[str] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            seen.append(self.path)
            self.send_response(200)
            self.end_headers()

        do_POST = do_GET  # noqa: N815

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    (tmp_path / "a.jpg").write_bytes(b"not a picture")
    q = Queue(Keys("t").rq_queue, connection=client, serializer=JSONSerializer)
    fn = "moodstream.producer.rq_jobs.expand_source"
    try:
        q.enqueue_call(fn, kwargs={"spec": "a.jpg"}, webhooks=[Webhook(url + "/finished", "finished"),
                                                               Webhook(url + "/failed", "failed", method="POST")])
        q.enqueue_call(fn, kwargs={"spec": "../outside.mp4"}, webhooks=[Webhook(url + "/refused", "failed")])
        q.enqueue_call("os.system", args=["true"], webhooks=[Webhook(url + "/other", "failed")])
        out = _expand(redis_url, "--media-root", str(tmp_path), failed=2)  # a.jpg goes out as a frame job
    finally:
        server.shutdown()
    assert seen == [], seen
    assert "webhook" in out.stderr


def test_sources_outside_the_media_root_or_on_other_hosts_are_refused(redis_url, client, tmp_path):
    media = tmp_path / "media"
    media.mkdir()
    (media / "clip.mp4").write_bytes(CLIP.read_bytes())
    private = tmp_path / "private"
    private.mkdir()
    (private / "photo.jpg").write_bytes((REPO / "samples" / "street.jpg").read_bytes())
    (media / "escape").symlink_to(private)

    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            hits.append(self.path)
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        s = _settings(redis_url)
        refused = [enqueue_source(s, client, spec) for spec in (
            str(private), str(private / "photo.jpg"), "escape/photo.jpg", "../private", "0",
            f"http://127.0.0.1:{server.server_port}/x.mp4")]
        allowed = enqueue_source(s, client, "clip.mp4", every_n=6)
        _expand(redis_url, "--media-root", str(media), failed=6)
    finally:
        server.shutdown()
    assert hits == []  # the URL was never fetched
    for job in refused:
        job = Job.fetch(job.id, connection=client, serializer=JSONSerializer)
        assert job.get_status() == JobStatus.FAILED, job.id
    frames = pushed(client, Keys("t"))
    done = Job.fetch(allowed.id, connection=client, serializer=JSONSerializer)
    assert done.get_status() == JobStatus.FINISHED and done.return_value()["frames"] == len(frames) == 2
    assert all(b"photo" not in f[b"msg"][:2000] for _, f in frames)


def test_an_allowed_url_host_is_opened(redis_url, client):
    from tests.support.mjpeg import serve  # a real MJPEG stream on 127.0.0.1

    server = serve(0)
    try:
        s = _settings(redis_url)
        job = enqueue_source(s, client, f"http://127.0.0.1:{server.server_address[1]}/live.mjpg", max_frames=3)
        _expand(redis_url, "--allow-url-host", "127.0.0.1")
    finally:
        server.shutdown()
    job = Job.fetch(job.id, connection=client, serializer=JSONSerializer)
    assert job.get_status() == JobStatus.FINISHED and job.return_value()["frames"] == 3
    assert client.llen(Keys("t").intake) == 3


def test_a_job_naming_a_symlink_loop_or_an_empty_folder_fails_in_one_line(redis_url, client, tmp_path):
    """A job naming a link loop directly (`produce --rq loop/x.jpg`, x.jpg a link to itself): rq's traceback
    and 'RuntimeError: Symlink loop from ...' (inside a folder job it was a clean 'unreadable'); a job naming
    an empty folder finished with 0 frames, where produce, up and analyze exit 1 'no images or videos'."""
    media = tmp_path / "media"
    (media / "loop").mkdir(parents=True)
    (media / "loop" / "x.jpg").symlink_to("x.jpg")
    (media / "empty").mkdir()
    s = _settings(redis_url)
    jobs = [enqueue_source(s, client, spec) for spec in ("loop/x.jpg", "empty")]
    out = _expand(redis_url, "--media-root", str(media), failed=2)
    assert "Traceback" not in out.stderr and "RuntimeError" not in out.stderr, out.stderr[-3000:]
    assert "link" in out.stderr and "no images or videos" in out.stderr, out.stderr[-3000:]
    for job in jobs:
        assert Job.fetch(job.id, connection=client, serializer=JSONSerializer).get_status() == JobStatus.FAILED
