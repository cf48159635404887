"""``analyze FOLDER --summary`` on thousands of photos: every face picture of every photo was held
in memory until the end of the run (a 128 px crop is 48 KiB; three faces and the running state
made 164 kB a photo, 3.3 GB for an event's 20,000), to be written with the JSON. A photo is a run
of its own that nothing follows: its pictures and timeline are written once it is summarised, and
only its entries stay for the JSON. The files and the JSON are the ones written at the end before."""

from __future__ import annotations

import json

from click.testing import CliRunner

import moodstream.worker.tracking.summary as summary_module
from moodstream.worker.analyze import analyze_cmd as analyze

PHOTOS = 24


def held_picture_bytes(summarizer) -> int:
    return sum(crop.nbytes for run in summarizer.runs for _, crop in run.pictures.best.values())


def test_a_folder_of_photos_holds_no_face_picture_until_the_end(tmp_path, image_path, monkeypatch):
    folder = tmp_path / "event"
    for i in range(PHOTOS):  # per-person folders, each photo named 0.jpg
        (folder / f"p{i:03d}").mkdir(parents=True)
        (folder / f"p{i:03d}" / "0.jpg").write_bytes(image_path("parade" if i % 2 else "single").read_bytes())
    held = []
    write_summary = summary_module.write_summary

    def spy(path, summarizer, *args, **kwargs):
        held.append(held_picture_bytes(summarizer))
        return write_summary(path, summarizer, *args, **kwargs)

    monkeypatch.setattr(summary_module, "write_summary", spy)
    out = tmp_path / "out" / "people.json"
    result = CliRunner().invoke(analyze, ["--device", "cpu", str(folder), "--summary", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert len(data["videos"]) == PHOTOS and sum(v["tracks"] for v in data["videos"]) >= PHOTOS
    # one base name per photo, in input order, each picture and timeline on disk
    assert [v["timeline"] for v in data["videos"]][:3] == ["people-0.png", "people-0-2.png", "people-0-3.png"]
    for t in data["tracks"]:
        assert t["thumbnail"] and (out.parent / t["thumbnail"]).stat().st_size > 0
    for v in data["videos"]:
        assert (out.parent / v["timeline"]).stat().st_size > 0
    # what the run held when it ended: no photo's pictures (was every photo's, a few kB each here)
    assert held == [0], held
