"""`analyze` / `up` never write over what they read (found by an audit): --summary and --report
named the file being analysed replaced it (a video became an HTML page); --annotate into the
inputs' folder replaced other inputs (a-2.jpg by a.jpg's annotated copy); and a second run of the
same command read the first run's clips while writing over them."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from moodstream.worker.analyze import analyze_cmd as analyze

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "samples"


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def invoke(*args: str):
    return CliRunner().invoke(analyze, ["--device", "cpu", "--detector", "haar", "--max-frames", "3", *args])


@pytest.mark.parametrize("flag", ["--summary", "--report"])
def test_an_output_that_is_an_input_is_refused_before_the_run(tmp_path, flag):
    shutil.copy(SAMPLES / "street.jpg", tmp_path / "street.jpg")
    shutil.copy(SAMPLES / "hamilton_clip.mp4", tmp_path / "clip.mp4")
    before = digest(tmp_path)
    for target in ("street.jpg", "clip.mp4"):
        result = invoke(str(tmp_path), flag, str(tmp_path / target))
        assert result.exit_code != 0 and "one of the inputs" in result.output, result.output
        assert "Traceback" not in result.output
    assert digest(tmp_path) == before


def test_annotating_into_the_inputs_folder_writes_over_no_input(tmp_path):
    """The inputs named one by one (the folder itself named as both is refused: a rerun analysed the
    copies, test_rerun_own_outputs.py)."""
    names = ["a.jpg", "a-2.jpg", "clip.mp4", "clip.avi"]
    shutil.copy(SAMPLES / "street.jpg", tmp_path / "a.jpg")
    shutil.copy(SAMPLES / "audience.jpg", tmp_path / "a-2.jpg")
    shutil.copy(SAMPLES / "hamilton_clip.mp4", tmp_path / "clip.mp4")
    shutil.copy(SAMPLES / "hamilton_clip.mp4", tmp_path / "clip.avi")
    before = digest(tmp_path)
    result = invoke(*(str(tmp_path / n) for n in names), "--annotate", str(tmp_path))
    assert result.exit_code == 0, result.output
    after = digest(tmp_path)
    assert {k: after[k] for k in before} == before  # every input as it was
    assert len(after) == len(before) + 4  # and one annotated file each beside them


def test_an_annotated_file_renamed_away_from_its_input_writes_over_no_other_file(tmp_path):
    """`analyze photo.jpg --annotate .` named its output photo-2.jpg to spare the input, and wrote
    over the user's own photo-2.jpg there (not an input of this run)."""
    shutil.copy(SAMPLES / "street.jpg", tmp_path / "photo.jpg")
    shutil.copy(SAMPLES / "audience.jpg", tmp_path / "photo-2.jpg")
    before = digest(tmp_path)
    result = invoke(str(tmp_path / "photo.jpg"), "--annotate", str(tmp_path))
    assert result.exit_code == 0, result.output
    after = digest(tmp_path)
    assert {k: after[k] for k in before} == before
    assert set(after) == {"photo.jpg", "photo-2.jpg", "photo-3.jpg"}


def test_a_file_name_that_is_not_utf8_is_one_error_record_not_a_crash(tmp_path):
    """OpenCV's Python binding segfaults on a path holding a lone surrogate (how Python spells a
    file name's bytes that are not UTF-8): `analyze` of such a video, or annotating such an image,
    killed the whole run (exit 139, nothing written)."""
    import os

    folder = tmp_path / "in"
    folder.mkdir()
    os.symlink(SAMPLES / "hamilton_clip.mp4", os.fsdecode(bytes(folder) + b"/vid\xfe.mp4"))
    shutil.copy(SAMPLES / "street.jpg", os.fsdecode(bytes(folder) + b"/bad\xff.jpg"))
    shutil.copy(SAMPLES / "street.jpg", folder / "good.jpg")
    out = tmp_path / "ann"
    import subprocess
    import sys
    ran = subprocess.run([sys.executable, "-m", "moodstream", "analyze", str(folder), "--device", "cpu", "--detector",
                          "haar", "--max-frames", "3", "--annotate", str(out), "--summary", str(tmp_path / "s.json")],
                         capture_output=True, text=True, errors="replace", timeout=300, cwd=REPO)
    assert ran.returncode == 1, (ran.returncode, ran.stderr[-2000:])  # one input failed
    assert "Traceback" not in ran.stderr and "not valid UTF-8" in ran.stdout + ran.stderr, ran.stderr[-2000:]
    records = [json.loads(line) for line in ran.stdout.splitlines() if line.startswith("{")]
    assert sum(1 for r in records if r.get("error")) == 1
    assert len(list(out.iterdir())) == 2  # bad?.jpg and good.jpg annotated


def test_one_output_never_takes_another_s_name(tmp_path):
    """`--summary same.html --report same.html` left JSON in the page; `--annotate ann --summary
    ann/clip.mp4` wrote the summary over the annotated video."""
    shutil.copy(SAMPLES / "hamilton_clip.mp4", tmp_path / "clip.mp4")
    same = invoke(str(tmp_path / "clip.mp4"), "--summary", str(tmp_path / "same.html"), "--report",
                  str(tmp_path / "same.html"))
    assert same.exit_code == 2 and "--summary" in same.output and "--report" in same.output, same.output
    ann = tmp_path / "ann"
    both = invoke(str(tmp_path / "clip.mp4"), "--annotate", str(ann), "--summary", str(ann / "clip.mp4"))
    assert both.exit_code == 0, both.output
    assert json.loads((ann / "clip.mp4").read_text())["tracks"] is not None  # the summary, where it was asked
    videos = [p for p in ann.iterdir() if p.suffix == ".mp4" and p.name != "clip.mp4"]
    assert len(videos) == 1 and videos[0].stat().st_size > 10_000  # the annotated video, under another name


def test_a_first_run_s_output_named_as_an_input_is_read_without_being_written_over(tmp_path):
    """In a folder named as an input a run's own outputs are left out (test_rerun_own_outputs.py); named
    directly they are read, and so spared."""
    shutil.copy(SAMPLES / "hamilton_clip.mp4", tmp_path / "clip.mp4")
    first = invoke(str(tmp_path), "--report", str(tmp_path / "r.html"))
    assert first.exit_code == 0, first.output
    made = digest(tmp_path)
    second = invoke(str(tmp_path), str(tmp_path / "r-clip.webm"), "--report", str(tmp_path / "r.html"))
    assert second.exit_code == 0 and "ERROR" not in second.output, second.output
    assert str(tmp_path / "r-clip.webm") in second.stdout
    after = digest(tmp_path)
    assert all(after[k] == v for k, v in made.items() if k != "r.html")  # the clip kept
    assert "r-clip-2.webm" in after  # the clip of clip.mp4, under another name


def test_up_refuses_a_summary_that_is_an_input(tmp_path):
    from moodstream.up import up

    shutil.copy(SAMPLES / "audience.jpg", tmp_path / "audience.jpg")
    before = digest(tmp_path)
    result = CliRunner().invoke(up, [str(tmp_path / "audience.jpg"), "--no-dashboard", "--device", "cpu",
                                     "--summary", str(tmp_path / "audience.jpg")])
    assert result.exit_code != 0 and "one of the inputs" in result.output, result.output
    assert digest(tmp_path) == before


@pytest.mark.parametrize("flag", ["--summary", "--report"])
@pytest.mark.parametrize("target", ["", "/dev/full", "/dev/null"])
def test_an_output_that_is_no_file_is_refused_before_the_run(flag, target):
    """--summary '' was a traceback after the whole run; --summary /dev/full wrote its pictures
    into /dev, then a traceback (no space left on device)."""
    result = invoke(str(SAMPLES / "street.jpg"), flag, target)
    assert result.exit_code != 0 and "Traceback" not in result.output, result.output
    assert "cannot write" in result.output or "Invalid value" in result.output


def test_a_summary_the_disk_refuses_at_the_end_is_one_line(tmp_path, monkeypatch):
    """A full disk when the summary is written: one line and exit 1, not a traceback."""
    import errno

    import moodstream.worker.tracking.summary as summary

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(summary, "write_summary", full)
    result = invoke(str(SAMPLES / "street.jpg"), "--summary", str(tmp_path / "s.json"))
    assert result.exit_code == 1 and "cannot write the summary" in result.output, result.output
    assert "No space left on device" in result.output and result.exception is None or \
        isinstance(result.exception, SystemExit)


@pytest.mark.parametrize("flag", ["--summary", "--report"])
def test_a_write_that_fails_midway_leaves_the_previous_file_whole(tmp_path, flag):
    """The summary and the page were written in place: a full disk midway left the last run's good
    file as 4096 bytes of broken JSON / HTML. Now a temporary file, then a rename. (A file-size limit
    stands in for the full disk: writes past it fail with EFBIG.)"""
    import resource
    import signal
    import subprocess
    import sys

    target = tmp_path / ("s.json" if flag == "--summary" else "r.html")
    target.write_text('{"previous": "run"}\n')

    def small_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (600, 600))

    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("MOODSTREAM_")}
    env["MOODSTREAM_RUNTIME_CACHE"] = str(tmp_path / "cache.json")
    ran = subprocess.run([sys.executable, "-m", "moodstream", "analyze", str(SAMPLES / "street.jpg"), "--device", "cpu",
                          "--detector", "haar", flag, str(target)], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=300, preexec_fn=small_files)
    assert ran.returncode == 1 and "Traceback" not in ran.stderr, ran.stderr[-2000:]
    assert target.read_text() == '{"previous": "run"}\n'
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def test_annotated_files_the_disk_refuses_make_the_run_fail(tmp_path):
    """A full disk while writing annotated files was a warning for an image and nothing at all for a
    video (its writer writes silently: the file left would not open), then exit 0 and "annotated
    files in ..."; the help promises exit 1 when an output could not be written."""
    import resource
    import signal
    import subprocess
    import sys

    def small_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("MOODSTREAM_")}
    env["MOODSTREAM_RUNTIME_CACHE"] = str(tmp_path / "cache.json")
    for source in ("street.jpg", "hamilton_clip.mp4"):
        out = tmp_path / ("ann-" + source)
        ran = subprocess.run([sys.executable, "-m", "moodstream", "analyze", str(SAMPLES / source), "--device", "cpu",
                              "--detector", "haar", "--max-frames", "20", "--annotate", str(out)], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=300, preexec_fn=small_files)
        assert ran.returncode == 1 and "Traceback" not in ran.stderr, (source, ran.stderr[-2000:])
        assert "cannot write the annotated files" in ran.stderr, (source, ran.stderr[-2000:])


@pytest.mark.parametrize("where", ["under-a-file", "read-only"])
def test_an_annotate_folder_that_cannot_be_written_is_refused_before_the_run(tmp_path, where):
    """--annotate under a file was a NotADirectoryError traceback; into a read-only folder the run
    went on, wrote nothing and still said "annotated files in" it."""
    import os

    if where == "under-a-file":
        (tmp_path / "f").write_text("x")
        target = tmp_path / "f" / "ann"
    else:
        target = tmp_path / "ro"
        target.mkdir()
        target.chmod(0o555)
        if os.access(target, os.W_OK):  # root writes anywhere: nothing to refuse here
            pytest.skip("running as root: a read-only folder is writable")
    result = invoke(str(SAMPLES / "street.jpg"), "--annotate", str(target))
    assert result.exit_code != 0 and "cannot write the annotated files" in result.output, result.output
    assert "Traceback" not in result.output


def test_a_video_whose_frame_rate_is_no_rate_is_read_and_annotated_at_30(tmp_path):
    """An AVI claiming 0.001 frames/s: frame 1 came 1000 s after frame 0, the annotated video was not
    written (one warning) while the run said it was, and --report blamed the OpenCV build."""
    import struct

    import cv2
    import numpy as np

    base = tmp_path / "base.avi"
    writer = cv2.VideoWriter(str(base), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 48))
    for i in range(4):
        writer.write(np.full((48, 64, 3), 40 * i, np.uint8))
    writer.release()
    data = bytearray(base.read_bytes())
    at = data.find(b"strh") + 8 + 20
    struct.pack_into("<II", data, at, 1000, 1)  # scale 1000, rate 1: 0.001 frames/s
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "slow.avi").write_bytes(bytes(data))
    result = invoke(str(tmp_path / "in" / "slow.avi"), "--annotate", str(tmp_path / "ann"))
    assert result.exit_code == 0, result.output
    times = [json.loads(line)["timestamp_s"] for line in result.stdout.splitlines() if line.startswith("{")]
    assert times == pytest.approx([0.0, 1 / 30, 2 / 30], abs=1e-4), times  # --max-frames 3; rounded to 4 places
    [clip] = list((tmp_path / "ann").iterdir())
    cap = cv2.VideoCapture(str(clip))
    assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == 3


def test_up_stay_open_without_the_dashboard_is_a_usage_error():
    """--stay-open --no-dashboard was silently ignored."""
    from moodstream.up import up

    result = CliRunner().invoke(up, [str(SAMPLES / "street.jpg"), "--stay-open", "--no-dashboard"])
    assert result.exit_code == 2 and "--stay-open" in result.output, result.output


def test_a_full_stdout_is_one_line_and_the_files_are_still_written(tmp_path):
    """`analyze clip > /dev/full` ended in an OSError traceback (ENOSPC from click.echo)."""
    import subprocess
    import sys

    with open("/dev/full", "w") as full:
        ran = subprocess.run([sys.executable, "-m", "moodstream", "analyze", str(SAMPLES / "street.jpg"), "--device",
                              "cpu", "--detector", "haar", "--summary", str(tmp_path / "s.json")], cwd=REPO,
                             stdout=full, stderr=subprocess.PIPE, text=True, timeout=300)
    assert ran.returncode == 1 and "Traceback" not in ran.stderr, ran.stderr[-2000:]
    assert "standard output" in ran.stderr and (tmp_path / "s.json").exists(), ran.stderr[-2000:]


@pytest.mark.parametrize("sig,code", [("SIGTERM", 143), ("SIGINT", 130)])
def test_a_stopped_run_writes_what_it_did_and_says_so(tmp_path, sig, code):
    """SIGTERM (`timeout`, `docker stop`) killed analyze outright: no summary, a 0-byte page, an
    annotated video that would not open. Now it stops as Ctrl-C does, and the summary says it is
    partial ("interrupted": true)."""
    import signal
    import subprocess
    import sys

    summary = tmp_path / "s.json"
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("MOODSTREAM_")}
    proc = subprocess.Popen([sys.executable, "-m", "moodstream", "analyze", str(SAMPLES / "hamilton_clip.mp4"),
                             "--device", "cpu", "--summary", str(summary), "--annotate", str(tmp_path / "ann")],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert all(proc.stdout.readline() for _ in range(3)), "no records"
        proc.send_signal(getattr(signal, sig))
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code and "Traceback" not in err and "Aborted" not in err, err[-2000:]
    written = json.loads(summary.read_text())
    assert written["interrupted"] is True and written["videos"][0]["frames"] < 60
    # why it is not the whole run, in the words `up`'s summary uses (its Redis gone: the reason there)
    stopped = "SIGTERM" if code == 143 else "Ctrl-C"
    assert written["incomplete"].startswith(f"interrupted ({stopped}) after "), written["incomplete"]
    import cv2
    video = next((tmp_path / "ann").iterdir())
    cap = cv2.VideoCapture(str(video))
    assert cap.isOpened() and cap.read()[0]
    cap.release()


@pytest.mark.parametrize("args", [["--annotate="], ["--summary=newdir/"], ["--report=pages/"]])
def test_an_output_name_that_names_nothing_is_a_usage_error(tmp_path, monkeypatch, args):
    """`--annotate=` wrote the annotated files into the current folder; `--summary=newdir/` wrote a
    file called newdir (and newdir-street-t0.jpg beside it)."""
    monkeypatch.chdir(tmp_path)
    result = invoke(str(SAMPLES / "street.jpg"), *args)
    assert result.exit_code == 2, result.output
    assert list(tmp_path.iterdir()) == []


def test_annotated_copies_of_a_folder_keep_its_sub_folders(tmp_path):
    """A dataset of per-person folders (`event/p1/0.jpg`, `event/p2/0.jpg`, ...): the copies were
    all written flat, `0.jpg`, `0-2.jpg`, ... `0-k.jpg`, with nothing to say which came from which.
    Now each keeps its place under the folder named (a file named directly goes at the top)."""
    event = tmp_path / "event"
    for person, sample in (("p1", "street.jpg"), ("p2", "audience.jpg"), ("p2/day2", "street.jpg")):
        (event / person).mkdir(parents=True)
        shutil.copy(SAMPLES / sample, event / person / "0.jpg")
    shutil.copy(SAMPLES / "hamilton_clip.mp4", event / "p1" / "clip.mp4")
    shutil.copy(SAMPLES / "street.jpg", tmp_path / "0.jpg")
    ann = tmp_path / "ann"
    result = invoke(str(event), str(tmp_path / "0.jpg"), "--annotate", str(ann))
    assert result.exit_code == 0, result.output
    written = sorted(str(p.relative_to(ann)) for p in ann.rglob("*") if p.is_file())
    assert written == ["0.jpg", "p1/0.jpg", "p1/clip.mp4", "p2/0.jpg", "p2/day2/0.jpg"], written


def test_a_report_clip_size_without_a_report_is_a_usage_error():
    """`--report-clip-px 480` without `--report` was ignored without a word (a forgotten --report)."""
    result = invoke(str(SAMPLES / "street.jpg"), "--report-clip-px", "480")
    assert result.exit_code == 2 and "--report" in result.output, result.output


def test_a_rerun_does_not_analyse_its_own_annotated_copies(tmp_path):
    """`analyze photos --annotate photos/ann`, run twice: the second run found the first run's copies
    inside the folder it was given, analysed them as photos (boxes drawn on boxes) and wrote them to
    photos/ann/ann/..., one level deeper each run. The --annotate folder is moodstream's own: left out
    of a folder it lies in (named directly, it is read)."""
    photos = tmp_path / "photos"
    (photos / "p1").mkdir(parents=True)
    shutil.copy(SAMPLES / "street.jpg", photos / "p1" / "0.jpg")
    ann = photos / "ann"
    for _ in range(2):
        result = invoke(str(photos), "--annotate", str(ann))
        assert result.exit_code == 0, result.output
        sources = [json.loads(line)["source"] for line in result.stdout.splitlines() if line.startswith("{")]
        assert sources == [str(photos / "p1" / "0.jpg")], sources
    assert sorted(str(p.relative_to(ann)) for p in ann.rglob("*") if p.is_file()) == ["p1/0.jpg"]
    named = invoke(str(ann), "--annotate", str(tmp_path / "again"))  # asked for by name: read
    assert named.exit_code == 0 and str(ann / "p1" / "0.jpg") in named.stdout, named.output
