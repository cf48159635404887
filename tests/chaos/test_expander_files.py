"""The expander reads no file outside media_root (issue 22 item 3): a job for a folder
under media_root whose files or subfolders are symlinks out of it (one hop or
several, at any depth) enqueued frames of the private files. Real redis-server,
real `moodstream expander`."""

from __future__ import annotations

from tests.support.procs import measure
from tests.support.streamkit import pushed
from tests.support.expanderkit import CLIP, REPO, job, run_burst, settings
from rq.job import JobStatus

from moodstream.producer.rq_jobs import enqueue_source
from moodstream.shared.keys import Keys
from moodstream.shared.wire import FIELD, decode_frame

STREET = (REPO / "samples" / "street.jpg").read_bytes()
AUDIENCE = (REPO / "samples" / "audience.jpg").read_bytes()


def _tree(tmp_path):
    """media/dir with two legitimate files (one through a symlinked folder that stays
    inside media) and five ways out; private/ holds what must never be read."""
    media, private = tmp_path / "media", tmp_path / "private"
    (media / "dir" / "deep" / "a" / "b").mkdir(parents=True)
    (media / "other").mkdir()
    (private / "album").mkdir(parents=True)
    secret = AUDIENCE + b"PRIVATE"  # a JPEG that decodes, marked so its bytes can be found anywhere
    for name in ("leak.jpg", "hop.jpg", "album/in_album.jpg"):
        (private / name).write_bytes(secret)
    (private / "clip.mp4").write_bytes(CLIP.read_bytes())
    (media / "dir" / "ok.jpg").write_bytes(STREET)
    (media / "other" / "ok2.jpg").write_bytes(STREET)
    (media / "dir" / "inner").symlink_to(media / "other")  # a symlinked folder inside media: allowed
    (media / "dir" / "leak.jpg").symlink_to(private / "leak.jpg")  # one hop out
    (media / "hop1.jpg").symlink_to(private / "hop.jpg")  # inside media, pointing out
    (media / "dir" / "deep" / "a" / "b" / "leak2.jpg").symlink_to(media / "hop1.jpg")  # two hops, deep
    (media / "dir" / "album").symlink_to(private / "album")  # a symlinked subfolder out
    (media / "dir" / "movie.mp4").symlink_to(private / "clip.mp4")  # a video out
    return media, secret


def test_inner_symlinks_out_of_media_root_are_not_read(redis_url, client, tmp_path):
    media, secret = _tree(tmp_path)
    j = enqueue_source(settings(redis_url), client, "dir")
    rc, err = run_burst(redis_url, "--media-root", str(media))
    assert rc == 0, err
    frames = pushed(client, Keys("t"))
    jobs = [decode_frame(f[FIELD]) for _, f in frames]
    measure("expander_symlinks_out", frames=len(frames), private_frames=sum(b"PRIVATE" in f[FIELD] for _, f in frames)
            + sum(s.source.endswith("movie.mp4") for s in jobs))
    assert all(b"PRIVATE" not in f[FIELD] for _, f in frames)  # no byte of a private file left the machine
    assert all(secret[:2000] not in f[FIELD] for _, f in frames)
    sources = sorted(m.source for m in jobs)
    assert len(frames) == 2 and all(s.endswith("ok.jpg") or s.endswith("ok2.jpg") for s in sources), sources
    done = job(client, j.id)
    assert done.get_status() == JobStatus.FINISHED
    summary = done.return_value()
    refused = sorted(src.rsplit("/", 1)[-1] for src, _ in summary["failed_inputs"])
    assert refused == ["album", "leak.jpg", "leak2.jpg", "movie.mp4"], refused
    assert "/private" not in err  # the log names what was refused, never where it points
