"""`moodstream analyze`: records, bad inputs, video sampling, stdin, annotation, table output, batching."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import click
import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from moodstream.shared.labels import LABELS
from moodstream.worker.analyze import analyze_cmd as analyze

# the results stream's record without the service's fields (job_id, worker, enqueue / publish times)
FRAME_KEYS = {"source", "frame", "timestamp_s", "size", "faces", "model_version", "timings_ms"}
ERROR_KEYS = FRAME_KEYS | {"error"}


def run(args: list[str], stdin: bytes | None = None):
    result = CliRunner().invoke(analyze, ["--device", "cpu", *args], input=stdin)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    records = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    return result, records


def png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IEND", b""))


@pytest.fixture
def mixed_inputs(tmp_path, image_path) -> tuple[Path, dict[str, str | None]]:
    """A folder of good, odd-but-usable and bad inputs -> (folder, {file name: expected error or None})."""
    folder = tmp_path / "inputs"
    folder.mkdir()
    face = cv2.imread(str(image_path("single")))  # BGR, one face
    jpeg = cv2.imencode(".jpg", face)[1].tobytes()
    (folder / "good.jpg").write_bytes(jpeg)
    cv2.imwrite(str(folder / "deep16.png"), face.astype(np.uint16) * 257)
    cv2.imwrite(str(folder / "rgba.png"), cv2.cvtColor(face, cv2.COLOR_BGR2BGRA))
    cv2.imwrite(str(folder / "gray.png"), cv2.cvtColor(face, cv2.COLOR_BGR2GRAY))
    (folder / "zero.jpg").write_bytes(b"")
    (folder / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 50)
    (folder / "text.jpg").write_bytes(b"this is a text file with an image name\n")
    (folder / "huge.png").write_bytes(png_header_only(20_000, 20_000))
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"junk" * 100)
    expected = {"good.jpg": None, "deep16.png": None, "rgba.png": None, "gray.png": None,
                "zero.jpg": "empty", "truncated.jpg": "truncated", "corrupt.png": "unreadable",
                "text.jpg": "unreadable", "huge.png": "too_large", "broken.mp4": "unreadable"}
    return folder, expected


def check_frame_record(rec: dict) -> None:
    # a still image's record names its page (1 for a one-page image), as the service's does; a video frame its shot
    assert set(rec) == FRAME_KEYS | ({"page"} if rec["timestamp_s"] is None else {"shot"})
    assert rec.get("page", 1) == 1
    width, height = rec["size"]
    assert isinstance(rec["frame"], int) and width > 0 and height > 0
    assert isinstance(rec["model_version"], str) and set(rec["timings_ms"]) >= {"detect", "classify"}
    for face in rec["faces"]:
        assert set(face) - {"detector_box"} == {"box", "score", "landmarks", "emotion", "probabilities", "track_id",
                                               "smoothed"}
        x1, y1, x2, y2 = face["box"]
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
        assert tuple(face["probabilities"]) == LABELS and face["emotion"] in LABELS
        assert sum(face["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)


def test_images_and_video_records(tmp_path, image_path, fixtures_dir):
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(image_path("street"), folder / "street.jpg")
    shutil.copy(image_path("parade"), folder / "sub" / "parade.jpg")
    result, records = run([str(folder), str(fixtures_dir / "clip_360p.mp4"), "--every", "4"])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert [(Path(r["source"]).name, r["frame"]) for r in records] == [
        ("street.jpg", 0), ("parade.jpg", 0), ("clip_360p.mp4", 0), ("clip_360p.mp4", 4), ("clip_360p.mp4", 8)]
    for rec in records:
        check_frame_record(rec)
    street, parade, *video = records
    assert street["timestamp_s"] is None and street["size"] == [640, 360]
    assert len(street["faces"]) >= 3 and len(parade["faces"]) >= 2
    assert [r["timestamp_s"] for r in video] == pytest.approx([0.0, 4 / 29.97, 8 / 29.97], abs=1e-3)
    assert all(r["size"] == [320, 180] for r in video)
    assert "5 frames" in result.stderr and "frames/s" in result.stderr  # the summary


def test_bad_inputs_give_error_records_and_exit_1(mixed_inputs):
    folder, expected = mixed_inputs
    missing = str(folder / "missing.jpg")
    result, records = run([str(folder), missing])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    by_name = {Path(r["source"]).name: r for r in records}
    assert set(by_name) == set(expected) | {"missing.jpg"}
    assert by_name["missing.jpg"]["error"]["reason"] == "not_found"
    for name, reason in expected.items():
        rec = by_name[name]
        if reason is None:  # 16-bit, RGBA and grayscale PNGs work, converted
            check_frame_record(rec)
            assert rec["size"] == [416, 416] and len(rec["faces"]) >= 1, name
        else:
            assert set(rec) - {"page"} == ERROR_KEYS and rec["error"]["reason"] == reason, (name, rec)
            assert rec["source"].endswith(name) and rec["error"]["detail"] and rec["faces"] == []
    # records come in input order: sorted folder listing, then the missing file
    assert [r["source"] for r in records] == sorted(str(folder / n) for n in expected) + [missing]
    assert "7 errors" in result.stderr


def test_good_inputs_only_exit_0(image_path):
    result, records = run([str(image_path("single"))])
    assert result.exit_code == 0 and len(records) == 1 and "error" not in records[0]


def test_video_fps_sampling_and_max_frames(fixtures_dir):
    clip = str(fixtures_dir / "clip_360p.mp4")
    _, records = run([clip, "--fps", "10"])
    assert [r["frame"] for r in records] == [0, 3, 6, 9]
    _, records = run([clip, "--every", "2", "--max-frames", "2"])
    assert [r["frame"] for r in records] == [0, 2]
    result, _ = run([clip, "--every", "2", "--fps", "3"])
    assert result.exit_code == 2 and "either --every or --fps" in result.output


def test_stdin_image(image_path):
    result, records = run(["-"], stdin=image_path("parade").read_bytes())
    assert result.exit_code == 0
    [rec] = records
    assert rec["source"] == "-" and len(rec["faces"]) >= 2
    result, records = run(["-"], stdin=b"")
    assert result.exit_code == 1 and len(records) == 1
    assert records[0]["source"] == "-" and records[0]["frame"] == 0
    assert records[0]["error"] == {"reason": "empty", "detail": "zero bytes"}


def test_annotate_writes_images_and_video(tmp_path, image_path, fixtures_dir):
    out = tmp_path / "annotated"
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(image_path("street"), src / "street.jpg")
    cv2.imwrite(str(src / "gray.png"), cv2.imread(str(image_path("single")), cv2.IMREAD_GRAYSCALE))
    result, records = run([str(src), str(fixtures_dir / "clip_360p.mp4"), "--every", "3", "--annotate", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["clip_360p.mp4", "gray.png", "street.jpg"]
    street = cv2.imread(str(out / "street.jpg"))
    assert street is not None and street.shape == (360, 640, 3)
    assert np.abs(street.astype(int) - cv2.imread(str(src / "street.jpg")).astype(int)).max() > 100  # drawn on
    assert cv2.imread(str(out / "gray.png")).shape == (416, 416, 3)
    cap = cv2.VideoCapture(str(out / "clip_360p.mp4"))
    frames = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        assert frame.shape == (180, 320, 3)
        frames += 1
    assert frames == len([r for r in records if r["source"].endswith(".mp4")]) == 4
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(29.97 / 3, abs=0.05)


def test_table_format(tmp_path, image_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"")
    result = CliRunner().invoke(analyze, ["--device", "cpu", "--format", "table", str(image_path("parade")), str(bad)])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["SOURCE", "FRAME", "TIME_S", "SIZE", "FACES", "EMOTIONS"]
    assert "416x416" in lines[1] and "%" in lines[1]
    assert "ERROR empty" in lines[2] and "bad.jpg" in lines[2]
    assert not any(line.startswith("{") for line in lines)


def test_the_table_says_what_its_emotions_cell_means(image_path):
    # the quick start's table shows "#0 happiness 51% / neutrality 52%": the smoothed emotion, then this frame's
    # own where they differ; a newcomer is told so once, on stderr (stdout stays the table), and in --help
    result = CliRunner().invoke(analyze, ["--device", "cpu", "--format", "table", str(image_path("parade"))])
    assert result.exit_code == 0, result.output[-2000:]
    legend = [line for line in result.stderr.splitlines() if line.startswith("EMOTIONS:")]
    assert len(legend) == 1 and "#N" in legend[0] and "smoothed" in legend[0] and "0.25 s" in legend[0]
    assert "this frame's own" in legend[0] and "50%" in legend[0]
    assert not any("EMOTIONS:" in line for line in result.stdout.splitlines())
    jsonl = CliRunner().invoke(analyze, ["--device", "cpu", str(image_path("parade"))])
    assert "EMOTIONS:" not in jsonl.stderr
    assert "this frame's own" in " ".join(CliRunner().invoke(analyze, ["--help"]).output.split())


def test_the_readme_quick_start_example_is_a_row_the_table_prints():
    # the README's quick start quotes one face of the table it prints: that face, on ONNX Runtime (the backend
    # whose figures the README quotes), is frame 46 of the sample clip
    root = Path(__file__).resolve().parents[2]
    quoted = re.search(r"a face reads `(#0 [^`]+)`", (root / "README.md").read_text()).group(1)
    clip = str(root / "samples" / "hamilton_clip.mp4")
    result = CliRunner().invoke(analyze, ["--device", "cpu", "--backend", "onnx", "--format", "table",
                                          "--max-frames", "47", clip])
    assert result.exit_code == 0, result.output[-2000:]
    row = result.stdout.splitlines()[-1]
    assert row.split()[1] == "46", row
    # the same face and labels; each percentage within a point (CPUs' kernels round differently)
    pattern = re.sub(r"(\d+)%", r"(\\d+)%", re.escape(quoted))
    got, want = re.search(pattern + "$", row), re.findall(r"(\d+)%", quoted)
    assert got is not None and all(abs(int(g) - int(w)) <= 1 for g, w in zip(got.groups(), want)), (row, quoted)


def test_table_names_tracks_as_the_annotated_frames_do():
    # issue 24: the table showed raw labels without track ids while --annotate showed smoothed ones
    import msgspec

    from moodstream.shared.record import Face
    from moodstream.shared.table import face_label

    clip = str(Path(__file__).resolve().parents[1] / "fixtures" / "clip_360p.mp4")
    table = CliRunner().invoke(analyze, ["--device", "cpu", "--format", "table", "--max-frames", "8", clip])
    records = CliRunner().invoke(analyze, ["--device", "cpu", "--max-frames", "8", clip])
    assert table.exit_code == 0 and records.exit_code == 0, table.output[-2000:]
    rows = table.stdout.splitlines()[1:]
    faces = [[msgspec.convert(f, Face) for f in json.loads(line)["faces"]] for line in records.stdout.splitlines()]
    assert len(rows) == len(faces) == 8 and any(faces)
    for row, frame_faces in zip(rows, faces):
        for face in frame_faces:
            assert face.track_id is not None and face_label(face)[1] in row, row


def test_frames_are_batched_across_inputs(tmp_path, image_path, monkeypatch):
    from moodstream.worker.pipeline import Pipeline

    for i in range(5):
        shutil.copy(image_path("single"), tmp_path / f"img{i}.jpg")
    (tmp_path / "img2_bad.jpg").write_bytes(b"")  # an error between good frames keeps its place
    sizes = []
    real = Pipeline.process
    monkeypatch.setattr(Pipeline, "process", lambda self, frames: sizes.append(len(frames)) or real(self, frames))
    result, records = run([str(tmp_path), "--batch", "2"])
    assert sizes == [2, 2, 1]
    assert [Path(r["source"]).name for r in records] == ["img0.jpg", "img1.jpg", "img2.jpg", "img2_bad.jpg",
                                                         "img3.jpg", "img4.jpg"]
    sizes.clear()
    run([str(tmp_path)])
    assert sizes == [5]  # default batch (16): one call for the folder


def test_haar_and_settings_flags(image_path):
    result, records = run([str(image_path("handshake")), "--detector", "haar", "--min-face", "30"])
    assert result.exit_code == 0
    assert len(records[0]["faces"]) >= 1 and all("landmarks" not in f for f in records[0]["faces"])  # Haar has none
    assert all(f["box"][2] - f["box"][0] >= 30 for f in records[0]["faces"])
    result, records = run([str(image_path("single")), "--max-pixels", "1000"])
    assert result.exit_code == 1 and records[0]["error"]["reason"] == "too_large"


def test_missing_checkpoint_fails_cleanly(image_path, tmp_path):
    result, records = run([str(image_path("single")), "--checkpoint", str(tmp_path / "nope.pt")])
    assert result.exit_code == 1 and records == []
    assert "nope.pt not found" in result.output and "Traceback" not in result.output


def test_help_documents_every_option():
    result = CliRunner().invoke(analyze, ["--help"])
    assert result.exit_code == 0
    for option in analyze.params:
        if isinstance(option, click.Option):
            assert option.help, f"{option.name} has no help text"
    for flag in ["--every", "--fps", "--format", "--annotate", "--detector", "--device", "--batch",
                 "--max-pixels", "--min-face", "--checkpoint"]:
        assert flag in result.output


def test_installed_command_end_to_end(tmp_path, image_path):
    """The real entry point, through the lazy command table, in a fresh process."""
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    moodstream = Path(sys.executable).with_name("moodstream")
    cmd = [str(moodstream)] if moodstream.exists() else [sys.executable, "-c",
                                                         "from moodstream.cli import main; main()"]
    proc = subprocess.run([*cmd, "analyze", "--device", "cpu", str(image_path("parade")), str(empty)],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 1, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(records) == 2 and len(records[0]["faces"]) >= 2 and records[1]["error"]["reason"] == "empty"
    assert "Traceback" not in proc.stderr and "1 error in" in proc.stderr


def test_unavailable_device_fails_cleanly(image_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    result = CliRunner().invoke(analyze, ["--device", "cuda", str(image_path("single"))])
    assert result.exit_code == 1 and "no CUDA device" in result.output and result.stdout == ""


def test_a_folder_without_images_is_an_error_not_silence(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("no images here")
    result = CliRunner().invoke(analyze, ["--device", "cpu", str(tmp_path / "empty"), str(tmp_path / "notes")])
    assert result.exit_code == 1 and "no images or videos" in result.output


def test_python_api_analyze_gives_the_records_the_command_prints(image_path, tmp_path):
    """`from moodstream import analyze`: the same typed records, one per frame, errors included."""
    from moodstream import Settings, analyze as analyze_api

    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    paths = [str(image_path("parade")), str(empty)]
    records = list(analyze_api(paths, Settings(device="cpu")))
    _, printed = run(paths)
    def untimed(d: dict) -> dict:  # timings differ from run to run
        return {k: v for k, v in d.items() if k != "timings_ms"}

    assert [untimed(r.to_json(service=False)) for r in records] == [untimed(p) for p in printed]
    assert len(records[0].faces) >= 2 and records[1].error.reason == "empty"


def test_a_camera_url_with_credentials_is_never_printed():
    # issue 22 item 11: sources are named without credentials everywhere, analyze too
    import subprocess
    import sys

    url = "rtsp://user:s3cret@127.0.0.1:1/stream"
    out = subprocess.run([sys.executable, "-m", "moodstream", "analyze", url], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 1
    assert "s3cret" not in out.stdout + out.stderr, (out.stdout + out.stderr)[-2000:]
    assert "127.0.0.1:1/stream" in out.stdout


REPO = Path(__file__).resolve().parents[2]
CLIP = REPO / "samples" / "hamilton_clip.mp4"


def test_a_video_piped_to_stdin_is_analysed_as_a_video():
    # issue 23 item 6: `cat clip.mp4 | moodstream analyze -` said "not an image"
    result, records = run(["-", "--max-frames", "3"], stdin=CLIP.read_bytes())
    assert result.exit_code == 0, result.output
    assert [r["frame"] for r in records] == [0, 1, 2] and all(r["source"] == "-" for r in records)
    assert all(r["timestamp_s"] is not None and "error" not in r for r in records)
    assert sum(len(r["faces"]) for r in records) >= 3
    result, records = run(["-"], stdin=CLIP.read_bytes()[:20_000])  # truncated: one error record, no temp path
    assert result.exit_code == 1 and len(records) == 1 and records[0]["source"] == "-"
    assert records[0]["error"]["reason"] == "truncated" and "/tmp" not in json.dumps(records[0])  # no moov yet


def test_ffmpeg_and_opencv_messages_stay_off_stderr_unless_asked(tmp_path):
    # issue 23 item 6: a truncated mp4 printed FFmpeg's "[mov,mp4,...] moov atom not found" twice;
    # the error record already names the problem. -vv shows them.
    bad = tmp_path / "truncated.mp4"
    bad.write_bytes(CLIP.read_bytes()[:20_000])
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCV_")} | {"OMP_NUM_THREADS": "1"}
    quiet = subprocess.run([sys.executable, "-m", "moodstream", "analyze", "--device", "cpu", str(bad)], cwd=REPO,
                           capture_output=True, text=True, timeout=120, env=env)
    assert quiet.returncode == 1 and "cannot open video" in quiet.stdout
    assert "moov atom" not in quiet.stderr and "[mov," not in quiet.stderr, quiet.stderr
    loud = subprocess.run([sys.executable, "-m", "moodstream", "-vv", "analyze", "--device", "cpu", str(bad)],
                          cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
    assert loud.returncode == 1 and "moov atom not found" in loud.stderr, loud.stderr[-2000:]
    for out in (quiet, loud):  # stdout stays records only (OpenCV can print FFmpeg's messages there)
        assert [json.loads(line)["error"]["reason"] for line in out.stdout.splitlines()] == ["truncated"]


def test_ctrl_c_says_what_was_written_and_exits_130(tmp_path):
    # issue 23 item 6: SIGINT printed only "Aborted!"
    import signal

    summary, annotated = tmp_path / "out" / "summary.json", tmp_path / "annotated"
    proc = subprocess.Popen([sys.executable, "-m", "moodstream", "analyze", "--device", "cpu", "--batch", "1",
                             "--annotate", str(annotated), "--summary", str(summary), str(CLIP), str(CLIP),
                             str(CLIP)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        first = proc.stdout.readline()  # a frame is done: the run is in its loop
        assert json.loads(first)["frame"] == 0
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    done = 1 + len(rest.splitlines())
    assert proc.returncode == 130, err[-2000:]
    assert "Aborted!" not in err and "Traceback" not in err, err[-2000:]
    # the count is the frames done; Ctrl-C landing between a record's print and its count says one fewer
    assert "interrupted" in err and re.search(rf"after ({done}|{done - 1}) frames?,", err), err[-2000:]
    assert str(annotated) in err and str(summary) in err and summary.exists(), err[-2000:]


@pytest.mark.parametrize("threads", ["100000000000000000000", "2147483648", "1025"])
def test_threads_beyond_any_machine_are_a_usage_error(threads, image_path):
    result = CliRunner().invoke(analyze, ["--device", "cpu", "--threads", threads, str(image_path("parade"))])
    assert result.exit_code == 2 and "--threads" in result.output and "1024" in result.output
    assert "Traceback" not in result.output


def test_a_folder_or_file_named_with_digits_is_read_not_opened_as_a_camera(tmp_path, image_path, monkeypatch):
    """`analyze 2024` (a folder of photos) and `analyze 7` (an image named 7) tried cameras 2024 and 7;
    `²` (a digit to str.isdigit, not to int) was a ValueError."""
    (tmp_path / "2024").mkdir()
    shutil.copy(image_path("street"), tmp_path / "2024" / "a.jpg")
    shutil.copy(image_path("street"), tmp_path / "7")
    monkeypatch.chdir(tmp_path)
    result, records = run(["2024", "7", "--detector", "haar"])
    assert result.exit_code == 0, result.output
    assert [r["source"] for r in records] == [os.path.join("2024", "a.jpg"), "7"]
    result, records = run(["²"])
    assert result.exit_code == 1 and records[0]["error"]["reason"] == "not_found", result.output


def test_a_video_fifo_is_read_once_not_hung_on(tmp_path):
    """`analyze fifo.mp4` hung for ever: the progress bar's frame count opened the FIFO first and
    consumed what was written into it, and the real read then waited on an empty pipe."""
    import threading

    fifo = tmp_path / "fifo.mp4"
    os.mkfifo(fifo)
    clip = Path(__file__).resolve().parents[2] / "samples" / "hamilton_clip.mp4"

    def feed() -> None:
        with open(fifo, "wb") as f:
            f.write(clip.read_bytes())

    threading.Thread(target=feed, daemon=True).start()
    ran = subprocess.run([sys.executable, "-m", "moodstream", "analyze", str(fifo), "--device", "cpu", "--detector",
                          "haar", "--max-frames", "5"], capture_output=True, text=True, timeout=60)
    # an mp4 whose index is at its end cannot be read from a pipe: one error record then, never a hang
    records = [json.loads(line) for line in ran.stdout.splitlines() if line.startswith("{")]
    assert ran.returncode in (0, 1) and "Traceback" not in ran.stderr, ran.stderr[-2000:]
    assert len(records) == 5 or (len(records) == 1 and records[0]["error"]), records


def test_a_video_piped_without_end_stops_at_the_spool_limit(monkeypatch):
    """A video on stdin is copied to a temporary file before OpenCV opens it: an endless pipe
    (`ffmpeg ... -f mp4 - | analyze -`) filled the disk, then a traceback. Now the copy stops at
    MAX_PIPED_VIDEO_BYTES, or when the temporary folder's disk has under MIN_FREE_BYTES left:
    one error record, the file removed."""
    import io
    import tempfile

    from moodstream.shared import media

    endless = CLIP.read_bytes() + b"\0" * (3 << 20)
    monkeypatch.setattr(media, "MAX_PIPED_VIDEO_BYTES", 2 << 20)
    before = set(Path(tempfile.gettempdir()).glob("moodstream-stdin-*"))
    items = list(media.iter_frames(["-"], stdin=io.BytesIO(endless)))
    assert [(i.source, i.error.reason) for i in items] == [("-", "too_large")], items
    assert "pass the file" in items[0].error.detail
    assert set(Path(tempfile.gettempdir()).glob("moodstream-stdin-*")) == before
    monkeypatch.setattr(media, "MAX_PIPED_VIDEO_BYTES", 1 << 40)
    monkeypatch.setattr(media, "MIN_FREE_BYTES", 1 << 60)  # the disk is "full" from the start
    items = list(media.iter_frames(["-"], stdin=io.BytesIO(endless)))
    assert [i.error.reason for i in items] == ["too_large"] and "free" in items[0].error.detail


def test_a_piped_video_is_annotated_and_reported_at_its_own_rate(tmp_path):
    """The annotated copy and the report's clip of a video took their rate from the file, opened a
    second time by name: a video piped on stdin (or a stream URL) has none to open, so a 10 fps
    clip was written at 30 fps (it played three times too fast, its report clip out of step with
    its chart). The rate now comes with the frames, from the reader that decoded them."""
    import cv2
    from moodstream.worker.webm import open_webm

    clip = tmp_path / "ten.webm"
    writer = open_webm(clip, 10.0, (160, 120))
    for i in range(12):
        writer.write(np.full((120, 160, 3), 20 * i, np.uint8))
    writer.release()
    out, report = tmp_path / "annotated", tmp_path / "report.html"
    result, records = run(["-", "--annotate", str(out), "--report", str(report)], stdin=clip.read_bytes())
    assert result.exit_code == 0, result.output
    assert len(records) == 12
    (annotated,) = out.iterdir()
    cap = cv2.VideoCapture(str(annotated))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(10.0, abs=0.01)
    cap.release()
    (report_clip,) = tmp_path.glob("report-*.webm")
    cap = cv2.VideoCapture(str(report_clip))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(10.0, abs=0.01)
    cap.release()
    result, records = run(["-", "--every", "2", "--annotate", str(tmp_path / "every2")], stdin=clip.read_bytes())
    cap = cv2.VideoCapture(str(next((tmp_path / "every2").iterdir())))
    assert len(records) == 6 and cap.get(cv2.CAP_PROP_FPS) == pytest.approx(5.0, abs=0.01)
    cap.release()


def test_a_report_clip_that_cannot_be_written_fails_the_run(tmp_path, monkeypatch):
    """The report's clip of a video that could not be written (a full disk, a folder that went) was a log
    line: the run said "report in ..." and exit 0, and the page showed a video that does not play. Now the
    page is still written and the run ends with one line naming the clip, exit 1, as the annotated files
    do. (A folder of the clip's name no longer fails it: the clip takes the next name, below.)"""
    from moodstream.shared.errors import ConfigError
    from moodstream.worker import report as report_module

    def full(path, *args, **kwargs):
        raise ConfigError(f"cannot write {path}: No space left on device")

    monkeypatch.setattr(report_module, "open_webm", full)
    report = tmp_path / "report.html"
    result, records = run([str(CLIP), "--max-frames", "3", "--report", str(report)])
    assert len(records) == 3
    assert result.exit_code == 1, result.output
    assert "report-hamilton_clip.webm: cannot write it: No space left on device" in result.output, result.output
    assert "Traceback" not in result.output
    assert report.is_file()  # the page and its charts are still there


def test_a_folder_named_as_the_report_clip_is_left_and_the_clip_takes_the_next_name(tmp_path):
    report = tmp_path / "report.html"
    (tmp_path / "report-hamilton_clip.webm").mkdir()  # the name the clip takes: someone else's
    result, records = run([str(CLIP), "--max-frames", "3", "--report", str(report)])
    assert len(records) == 3 and result.exit_code == 0, result.output
    assert (tmp_path / "report-hamilton_clip.webm").is_dir() and (tmp_path / "report-hamilton_clip-2.webm").is_file()
    assert "report-hamilton_clip-2.webm" in report.read_text()


def test_a_summary_picture_that_cannot_be_written_fails_the_run(tmp_path, monkeypatch):
    """A face picture or timeline of the summary that could not be written (a full disk here) was dropped
    without a word: exit 0, a track without its picture. Now the summary JSON and the other files are still
    written and the run ends with one line naming the file, exit 1, with the OS's reason (not a guess: "a
    full disk, or a folder of that name" was said whatever it was)."""
    import errno

    real = Path.write_bytes

    def full(self, data):
        if self.name.startswith("people-hamilton_clip"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", full)
    summary = tmp_path / "people.json"
    result, records = run([str(CLIP), "--max-frames", "20", "--summary", str(summary)])
    assert len(records) == 20
    assert result.exit_code == 1, result.output
    assert "people-hamilton_clip-t0.jpg" in result.output and "people-hamilton_clip.png" in result.output
    assert "Traceback" not in result.output
    assert "people-hamilton_clip-t0.jpg: No space left on device" in result.output, result.output
    assert not (tmp_path / "people-hamilton_clip-t0.jpg").exists()  # no half file left
    written = json.loads(summary.read_text())
    assert written["tracks"] and written["tracks"][0]["thumbnail"] is None


def test_folders_named_as_the_summary_pictures_are_left_and_the_pictures_take_the_next_name(tmp_path):
    summary = tmp_path / "people.json"
    (tmp_path / "people-hamilton_clip-t0.jpg").mkdir()  # someone else's
    (tmp_path / "people-hamilton_clip.png").mkdir()
    result, records = run([str(CLIP), "--max-frames", "20", "--summary", str(summary)])
    assert len(records) == 20 and result.exit_code == 0, result.output
    written = json.loads(summary.read_text())
    assert written["tracks"][0]["thumbnail"] == "people-hamilton_clip-2-t0.jpg", written["tracks"][0]
    assert (tmp_path / "people-hamilton_clip-t0.jpg").is_dir() and (tmp_path / "people-hamilton_clip-2-t0.jpg").is_file()
