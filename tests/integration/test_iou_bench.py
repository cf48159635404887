"""``moodstream bench iou`` on a few real WIDER FACE images (skips without ../shared/data).

Checks the wiring against real data (ground truth lands on the faces, the JSON
contract, figures, the detections cache), never the benchmark's numbers.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from moodstream.trainer.bench.iou import THRESHOLDS, evaluate, is_single_face, run_detector, tkey
from moodstream.trainer.bench.wider import load_wider
from moodstream.trainer.cli import bench

BIG_FRONTAL = ("1_Handshaking_Handshaking_1_35.jpg", "9_Press_Conference_Press_Conference_9_196.jpg")


@pytest.fixture(scope="module")
def wider(shared_data):
    return shared_data / "wider_val_416"


def test_scaled_ground_truth_lands_on_detected_faces(wider):
    from moodstream.shared.settings import Settings
    from moodstream.worker.detectors import build_detector

    images = [i for i in load_wider(wider) if i.name in BIG_FRONTAL]
    assert len(images) == 2 and all(is_single_face(i) for i in images)
    det = build_detector(Settings.from_env({}, detector="mtcnn", device="cpu", min_face_px=20, face_score_min=0.0))
    detections, ms = run_detector(det, images)
    r = evaluate(images, detections, size_cut_px=20)
    # a large frontal face: if the GT were scaled wrongly (e.g. x and y swapped) IoU would be ~0
    assert r["single_face_acc"]["0.5"] == 1.0
    assert len(ms) == 2 and all(m > 0 for m in ms)


def test_cli_json_contract_figures_and_detection_cache(wider, tmp_path):
    runner = CliRunner()
    out, dets = tmp_path / "bench.json", tmp_path / "dets.json"
    args = ["iou", "--data", str(wider), "--limit", "4", "--device", "cpu", "--json", "--out", str(out),
            "--figures", str(tmp_path / "fig"), "--save-detections", str(dets)]
    res = runner.invoke(bench, args)
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report == json.loads(out.read_text())
    assert report["n_images"] == 4
    keys = {tkey(t) for t in THRESHOLDS}
    assert keys == {"0.5", "0.75", "0.85"}
    for name in ("mtcnn", "haar"):
        r = report[name]
        for metric in ("single_face_acc", "recall", "recall_uncut"):
            assert set(r[metric]) == keys and all(0.0 <= v <= 1.0 for v in r[metric].values())
        assert 0.0 <= r["precision"] <= 1.0 and r["ms_per_image"] > 0
        assert "calibrated" in r or "calibration_skipped" in r  # 4 images may be too few to fit
    assert report["mtcnn"]["detector"]["face_score_min"] == 0.0
    assert report["mtcnn"]["detector"]["stage_thresholds"] == [0.6, 0.7, 0.7]
    assert report["figures"] and all((tmp_path / "fig" / p.split("/")[-1]).is_file() for p in report["figures"])

    # scoring cached detections gives the same numbers without running a detector
    again = runner.invoke(bench, ["iou", "--data", str(wider), "--limit", "4", "--json", "--detections", str(dets)])
    assert again.exit_code == 0, again.output
    cached = json.loads(again.stdout)
    for name in ("mtcnn", "haar"):
        assert cached[name]["single_face_acc"] == report[name]["single_face_acc"]
        assert cached[name]["recall"] == report[name]["recall"]

    table = runner.invoke(bench, ["iou", "--data", str(wider), "--limit", "4", "--detections", str(dets)])
    assert table.exit_code == 0 and "paper" in table.stdout and "acc@0.5" in table.stdout


def test_cli_rejects_unknown_detector(wider):
    res = CliRunner().invoke(bench, ["iou", "--data", str(wider), "--detectors", "yolo"])
    assert res.exit_code != 0 and "mtcnn and/or haar" in res.output
