"""producer.sources: a file swapped for a symlink out of media_root after its folder
was listed is refused when opened; source names carry no credentials."""

from __future__ import annotations

import os

import pytest

from moodstream.producer.sources import file_items, media_files, open_inside
from moodstream.shared.media import source_name
from moodstream.shared.errors import BadInputError


def test_a_symlink_swapped_in_after_listing_is_refused_at_open(tmp_path):
    media, outside = tmp_path / "media", tmp_path / "outside.jpg"
    media.mkdir()
    outside.write_bytes(b"\xff\xd8PRIVATE\xff\xd9")
    (media / "a.jpg").write_bytes(b"\xff\xd8fine\xff\xd9")
    root = os.path.realpath(media)
    listed = [p for p, err in media_files(str(media), root)]
    assert listed == [str(media / "a.jpg")]
    (media / "a.jpg").unlink()
    (media / "a.jpg").symlink_to(outside)  # the swap, between listing and opening
    with pytest.raises(BadInputError, match="outside the expander's media_root"):
        with open_inside(listed[0], root):
            pass
    items = list(file_items(str(media), root))
    assert len(items) == 1 and items[0].data is None and items[0].error.reason == "unsupported"


def test_a_fifo_inside_media_root_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "pipe.jpg")
    items = list(file_items(str(tmp_path), os.path.realpath(tmp_path)))
    assert [i.error.detail for i in items] == [f"{tmp_path}/pipe.jpg is not a regular file"]


@pytest.mark.parametrize("spec, name", [
    ("rtsp://user:pass@cam.local:554/live", "rtsp://***@cam.local:554/live"),
    ("http://user:p%40ss@10.0.0.2/s.mjpg?token=abc", "http://***@10.0.0.2/s.mjpg"),
    ("rtsp://cam.local/live", "rtsp://cam.local/live"),
    # found by an audit: credentials in the query, or a password that breaks the URL's parsing,
    # were stored in results and printed in clear; IPv6 hosts lost their brackets
    ("http://cam/video.mjpg?user=admin&pwd=TOPSECRET", "http://cam/video.mjpg?user=admin&pwd=***"),
    ("http://cam/v?Password=x&channel=1&api_key=k&token=t", "http://cam/v?Password=***&channel=1&api_key=***&token=***"),
    ("rtsp://admin:pa#ss@cam/live", "rtsp://***@cam/live"),
    ("rtsp://admin:pa?ss@cam/live", "rtsp://***@cam/live"),
    ("rtsp://admin:pa/ss@cam/live", "rtsp://***@cam/live"),
    ("rtsp://u:p@[::1]:554/x", "rtsp://***@[::1]:554/x"),
    ("videos/clip.mp4", "videos/clip.mp4"),
    ("0", "0"),
    # found by an audit: cameras that take credentials in the path (XMEye and others), in ;params
    # or after '#' were named in clear in records and log lines
    ("rtsp://cam/user=admin&password=hunter2&channel=1&stream=0.sdp",
     "rtsp://cam/user=admin&password=***&channel=1&stream=0.sdp"),
    ("http://cam/x;password=hunter2", "http://cam/x;password=***"),
    ("http://cam/v.mjpg#pwd=hunter2", "http://cam/v.mjpg#pwd=***"),
])
def test_source_names_carry_no_credentials(spec, name):
    assert source_name(spec) == name


def test_a_video_that_fails_is_named_by_its_path_not_its_descriptor(tmp_path):
    """The expander opens each file by descriptor (/proc/self/fd/N); its errors named that, not the file."""
    bad = tmp_path / "broken clip.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    [item] = list(file_items(str(tmp_path), os.path.realpath(tmp_path)))
    assert item.error is not None and item.source == str(bad)
    assert "/proc/self/fd" not in str(item.error) and "broken clip.mp4" in str(item.error)
