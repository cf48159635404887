"""Inputs whose names are near the file system's limit (255 bytes: a 246-character download name, a
title in Chinese of 84 characters, a camera URL with a long token): the names the outputs build from
them (`people-<name>-t0.jpg`, `page-<name>.webm`, `<name>-<hash>-run1-t0.jpg`) passed 255 bytes, and
`analyze --summary` ended "4 pictures of the summary not written" (File name too long), exit 1. Each
such name now keeps the source's stem up to a bound and a short hash of the whole in its place: every
file written, distinct names for distinct sources, the same names on a rerun; an annotated copy keeps
its input's name where it fits."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from moodstream.worker.analyze import analyze_cmd
from moodstream.worker.annotate import safe_stem

REPO = Path(__file__).resolve().parents[2]
PHOTO = REPO / "samples" / "audience.jpg"
CLIP = REPO / "tests" / "fixtures" / "clip_360p.mp4"
LONG = "x" * 246  # + ".jpg": 250 bytes
CHINESE = "会议记录" * 21  # 84 characters, 252 bytes in UTF-8
NAME_MAX = 255  # bytes of a file name (ext4, xfs, btrfs, tmpfs)


def fits(folder: Path) -> None:
    for p in folder.rglob("*"):
        assert len(p.name.encode()) <= NAME_MAX, p.name


@pytest.mark.parametrize("stem", [LONG, CHINESE[:83]], ids=["ascii", "chinese"])
def test_every_output_of_a_long_named_input_is_written(tmp_path, stem):
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(PHOTO, inputs / f"{stem}.jpg")
    shutil.copy(PHOTO, inputs / f"{stem[:-1]}y.jpg")  # the same start, another name: another picture
    shutil.copy(CLIP, inputs / f"{stem}.mp4")
    out = tmp_path / "out"
    args = ["--device", "cpu", "--detector", "none", "--max-frames", "3", str(inputs), "--summary",
            str(out / "people.json"), "--report", str(out / "page.html"), "--annotate", str(out / "ann")]
    result = CliRunner().invoke(analyze_cmd, args)
    assert result.exit_code == 0, (result.output, result.exception)
    fits(out)
    summary = json.loads((out / "people.json").read_text())
    pictures = [t["thumbnail"] for t in summary["tracks"]]
    assert len(pictures) == 3 and len(set(pictures)) == 3 and all((out / p).is_file() for p in pictures)
    assert sorted(p.name for p in (out / "ann").iterdir()) == sorted([f"{stem}.jpg", f"{stem[:-1]}y.jpg",
                                                                       f"{stem}.mp4"])  # kept: they fit
    assert len(list(out.glob("page-*.webm"))) == 1 and len(list((out / "page-photos").iterdir())) == 2
    # a rerun writes the same names, over the first run's
    before = sorted(p.name for p in out.rglob("*"))
    again = CliRunner().invoke(analyze_cmd, args)
    assert again.exit_code == 0, again.output
    assert sorted(p.name for p in out.rglob("*")) == before


def test_a_long_stream_url_makes_a_stem_within_its_bound():
    url = "rtsp://cam.example/stream?token=" + "eyJhbGciOi" * 60
    stem = safe_stem(url)
    assert len(stem.encode()) <= 120 and stem.startswith("rtsp_cam.example_stream")
    assert stem == safe_stem(url) and stem != safe_stem(url + "x")


def test_tracks_pictures_of_a_long_named_source_are_written(redis_url, client, keys, tmp_path):
    from moodstream.worker.tracking.reader import tracks
    from tests.support.streamkit import add_picture_summary

    add_picture_summary(client, keys, f"/videos/{LONG}.mp4", b"\xff\xd8\xff\xd9")
    ran = CliRunner().invoke(tracks, ["--from-start", "--json", "--pictures", str(tmp_path / "p"),
                                      "--redis-url", redis_url, "--prefix", "t"])
    assert ran.exit_code == 0 and "cannot write" not in ran.stderr, ran.output
    (picture,) = (tmp_path / "p").iterdir()
    assert len(picture.name.encode()) <= NAME_MAX and json.loads(ran.stdout)["tracks"][0]["thumbnail"] == picture.name


def test_a_rerun_beside_its_inputs_reads_none_of_its_own_pictures(tmp_path):
    """The summary in the photos' folder: its pictures, named by the cut stems, are known as its own."""
    shutil.copy(PHOTO, tmp_path / f"{LONG}.jpg")
    args = ["--device", "cpu", "--detector", "none", str(tmp_path), "--summary", str(tmp_path / "people.json")]
    first = CliRunner().invoke(analyze_cmd, args)
    assert first.exit_code == 0, first.output
    assert len(list(tmp_path.glob("people-*-t0.jpg"))) == 1
    again = CliRunner().invoke(analyze_cmd, args)
    assert again.exit_code == 0, again.output
    assert [json.loads(line)["source"] for line in again.stdout.splitlines() if line.startswith("{")] == [
        str(tmp_path / f"{LONG}.jpg")]


@pytest.mark.parametrize("source", ["cam\x00two", "a\x1b[31mred\x00\n\r\u202e", "/videos/\x00.mp4"])
def test_tracks_pictures_of_a_source_with_a_nul_byte_are_written(redis_url, client, keys, tmp_path, source):
    """A source name with a NUL byte (the API and the wire take any string): `tracks --pictures` ended in
    a traceback, ValueError 'embedded null byte' from writing the picture, and no summary after it was
    printed. No file name holds a NUL; the byte is left out of the picture's name."""
    from moodstream.worker.tracking.reader import tracks
    from tests.support.streamkit import add_picture_summary

    add_picture_summary(client, keys, source, b"\xff\xd8\xff\xd9")
    add_picture_summary(client, keys, "after", b"\xff\xd8\xff\xd9")
    ran = CliRunner().invoke(tracks, ["--from-start", "--json", "--pictures", str(tmp_path / "p"),
                                      "--redis-url", redis_url, "--prefix", "t"])
    assert ran.exit_code == 0, (ran.output, ran.exception)
    printed = [json.loads(line) for line in ran.stdout.splitlines()]
    assert [s["source"] for s in printed] == [source, "after"]
    assert all((tmp_path / "p" / s["tracks"][0]["thumbnail"]).is_file() for s in printed)
    assert "\x00" not in safe_stem(source)
