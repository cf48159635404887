"""An animated GIF (a reaction clip) was read as a still image: its first frame only, one record.
It is a video now: every frame, at the times its delays give; a GIF of one frame stays an image."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from PIL import Image

from moodstream.shared.media import animated_gif, is_video

STREET = Path(__file__).resolve().parents[2] / "samples" / "street.jpg"


def gif(path: Path, frames: int, delays_ms=(100, 200, 100)) -> Path:
    base = Image.open(STREET).convert("RGB").resize((480, 270))
    images = [base.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if i % 2 else base for i in range(frames)]
    images[0].save(path, save_all=frames > 1, append_images=images[1:], duration=list(delays_ms[:frames]) if frames > 1 else delays_ms[0], loop=0)
    return path


def test_an_animated_gif_is_a_video_and_a_still_one_an_image(tmp_path):
    assert animated_gif(str(gif(tmp_path / "clip.gif", 3))) and is_video(str(tmp_path / "clip.gif"))
    assert not animated_gif(str(gif(tmp_path / "still.gif", 1))) and not is_video(str(tmp_path / "still.gif"))
    (tmp_path / "fake.gif").write_bytes(b"GIF89a" + b"\x00" * 5)  # cut short: not a video (the image path says why)
    assert not is_video(str(tmp_path / "fake.gif")) and not is_video(str(tmp_path / "missing.gif"))


def test_analyze_reads_every_frame_at_its_time(tmp_path):
    from moodstream.worker.analyze import analyze_cmd as analyze

    clip, still = gif(tmp_path / "clip.gif", 3), gif(tmp_path / "still.gif", 1)
    ran = CliRunner().invoke(analyze, ["--device", "cpu", str(clip), str(still)])
    assert ran.exit_code == 0, ran.output
    records = [json.loads(line) for line in ran.stdout.splitlines()]
    assert [(Path(r["source"]).name, r["frame"], r["timestamp_s"]) for r in records] == \
        [("clip.gif", 0, 0.0), ("clip.gif", 1, 0.1), ("clip.gif", 2, 0.3), ("still.gif", 0, None)]
    assert all(r["faces"] for r in records)


def test_a_slide_show_gif_keeps_its_seconds(tmp_path):
    """A frame every 3 s (a rate under 1 frame/s, which the nominal rate does not take): the frames'
    own times, 0, 3, 6 s, where they came out at index / 30 (0, 0.033, 0.067)."""
    from moodstream.shared.media import iter_video

    clip = gif(tmp_path / "slides.gif", 3, delays_ms=(3000, 3000, 3000))
    assert [it.timestamp_s for it in iter_video(str(clip))] == [0.0, 3.0, 6.0]


def test_an_animated_gif_on_stdin_is_a_video(tmp_path):
    """`analyze - < clip.gif` read the first frame only (stdin's first bytes named no video)."""
    import io

    from moodstream.shared.media import iter_frames

    clip = gif(tmp_path / "clip.gif", 3)
    assert [(i.source, i.frame, i.timestamp_s) for i in iter_frames(["-"], stdin=io.BytesIO(clip.read_bytes()))] \
        == [("-", 0, 0.0), ("-", 1, 0.1), ("-", 2, 0.3)]
    still = gif(tmp_path / "still.gif", 1)
    [item] = iter_frames(["-"], stdin=io.BytesIO(still.read_bytes()))
    assert item.data == still.read_bytes()  # an image, read whole


def test_a_gif_cut_short_says_so(tmp_path):
    """A GIF cut short after its second frame (a download that stopped) gave the frames OpenCV could
    decode and ended quietly, exit 0: a GIF announces no length to compare with. Its blocks do: a
    whole GIF ends with its trailer. Now: the frames it had, then a ``truncated`` error."""
    from moodstream.shared.media import iter_frames, iter_video

    clip = gif(tmp_path / "clip.gif", 3, delays_ms=(100, 100, 100))
    data = clip.read_bytes()
    whole = [it for it in iter_video(str(clip))]
    assert len(whole) == 3 and all(it.error is None for it in whole)
    cut = tmp_path / "cut.gif"
    cut.write_bytes(data[: len(data) * 5 // 6])  # inside its third frame
    items = list(iter_video(str(cut)))
    assert items and items[-1].error is not None and items[-1].error.reason == "truncated", items[-1]
    assert all(it.error is None for it in items[:-1]) and len(items) >= 2
    import io

    piped = list(iter_frames(["-"], stdin=io.BytesIO(cut.read_bytes())))  # on stdin too
    assert piped[-1].error is not None and piped[-1].error.reason == "truncated"
    assert "/tmp" not in piped[-1].error.detail


def test_a_gif_without_its_trailer_byte_is_whole(tmp_path):
    """Some encoders leave out the last byte (the trailer): every image is there, browsers show it
    whole, and it was called truncated (exit 1). The data ending between blocks is whole; a cut
    inside a block is not."""
    from moodstream.shared.media import iter_video

    clip = gif(tmp_path / "clip.gif", 3)
    data = clip.read_bytes()
    assert data[-1:] == b"\x3b"
    bare = tmp_path / "bare.gif"
    bare.write_bytes(data[:-1])
    items = list(iter_video(str(bare)))
    assert len(items) == 3 and all(it.error is None for it in items), items[-1]
