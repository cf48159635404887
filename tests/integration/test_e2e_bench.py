"""``moodstream bench e2e``: the canvas generator and the metric code, on the real
FER+ faces shipped in tests/fixtures/ferplus. No accuracy is asserted: the
shipped model changes."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from moodstream.shared.record import Face
from moodstream.trainer.bench.e2e import (CanvasSpec, canvases, feather_mask, label_metrics, make_canvas, match_face,
                               select_rows, summarize)
from moodstream.trainer.data import load_split


@pytest.fixture(scope="module")
def fer_test(fixtures_dir):
    return load_split(fixtures_dir / "ferplus", "test")


def test_canvas_places_the_face_inside(fer_test):
    spec = CanvasSpec()
    for row in range(4):
        canvas, box = make_canvas(fer_test.images[row], np.random.default_rng([0, row]), spec)
        assert canvas.shape == (320, 320, 3) and canvas.dtype == np.uint8
        x1, y1, x2, y2 = box.astype(int)
        side = x2 - x1
        assert side == y2 - y1 and 80 <= side <= 200
        assert 0 <= x1 and 0 <= y1 and x2 <= 320 and y2 <= 320
        # away from the feathered edge the canvas is the upscaled face, grey in all channels
        want = cv2.resize(fer_test.images[row], (side, side), interpolation=cv2.INTER_CUBIC)
        m = max(2, side // 16) + 1
        inner = canvas[y1 + m:y2 - m, x1 + m:x2 - m]
        assert np.abs(inner.astype(int) - want[m:-m, m:-m, None].astype(int)).max() <= 1


def test_canvas_is_seeded_per_row_not_per_selection(fer_test):
    rows = np.array([1, 3])
    a = list(canvases(fer_test.images, rows, seed=7))
    b = list(canvases(fer_test.images, np.array([0, 1, 2, 3]), seed=7))
    assert np.array_equal(a[0][0], b[1][0]) and np.array_equal(a[1][1], b[3][1])
    c = list(canvases(fer_test.images, rows, seed=8))
    assert not np.array_equal(a[0][0], c[0][0])


def test_feather_mask_ramps_at_the_edge():
    m = feather_mask(20, 4)
    assert m.shape == (20, 20)
    assert m[10, 10] == 1.0 and m[0, 10] == pytest.approx(0.125) and m[0, 0] == pytest.approx(0.125)
    assert m[4, 10] == 1.0 and m[3, 10] == pytest.approx(0.875) and m[2, 10] == pytest.approx(0.625)


def test_select_rows_is_seeded_sorted_unique():
    r = select_rows(100, 10, seed=3)
    assert len(r) == 10 and len(set(r.tolist())) == 10 and (np.diff(r) > 0).all()
    assert (select_rows(100, 10, seed=3) == r).all()
    assert select_rows(5, None, 0).tolist() == [0, 1, 2, 3, 4]
    assert select_rows(5, 9, 0).tolist() == [0, 1, 2, 3, 4]


def test_label_metrics_counts_a_miss_as_wrong():
    labels = np.array([0, 0, 4, 4, 4, 5])
    pred = np.array([0, -1, 4, 4, 5, 5])  # one miss, one confusion
    m = label_metrics(labels, pred)
    assert m["n"] == 6 and m["accuracy"] == round(4 / 6, 4)
    assert m["recall_per_class"] == {"anger": 0.5, "happiness": round(2 / 3, 4), "neutrality": 1.0}
    assert m["macro_recall"] == round((0.5 + 2 / 3 + 1.0) / 3, 4)


def test_match_face_picks_the_best_overlap():
    faces = [Face(box, 0.9) for box in ((0, 0, 10, 10), (100, 100, 190, 190), (95, 95, 200, 200))]
    assert match_face(faces, np.array([100.0, 100, 200, 200])) == (2, pytest.approx(10000 / 105 ** 2))
    assert match_face([], np.array([0.0, 0, 1, 1])) == (-1, 0.0)


def test_summarize_hand_values():
    labels = np.array([4, 4, 5, 6])
    e2e = np.array([4, -1, 5, 0])
    found = e2e >= 0
    r = summarize(labels, e2e, found, np.array([0.8, 0.1, 0.9, 0.7]), np.array([90, 150, 190, 100]),
                  alone_pred=np.array([4, 4, 5, 6]), true_box_pred=np.array([4, 4, 0, 6]))
    assert r["detection_rate"] == 0.75 and r["mean_iou_found"] == pytest.approx(0.8)
    assert r["end_to_end"]["accuracy"] == 0.5
    assert r["end_to_end_on_found"]["accuracy"] == round(2 / 3, 4)
    assert r["classifier_alone"]["accuracy"] == 1.0 and r["classifier_on_true_box"]["accuracy"] == 0.75
    assert r["detection_rate_by_face_px"] == {"80-119": 1.0, "120-159": 0.0, "160-200": 1.0}


def test_cli_on_fixture_faces(fixtures_dir, tmp_path):
    pytest.importorskip("moodstream.worker.pipeline")
    from moodstream.trainer.cli import bench

    out = tmp_path / "e2e.json"
    res = CliRunner().invoke(bench, ["e2e", "--data", str(fixtures_dir / "ferplus"), "--limit", "4",
                                     "--device", "cpu", "--json", "--out", str(out)])
    assert res.exit_code == 0, res.output
    r = json.loads(res.stdout)
    assert r == json.loads(out.read_text())
    assert r["n"] == 4 and r["canvas"]["canvas_px"] == 320
    assert 0.0 <= r["detection_rate"] <= 1.0
    for key in ("end_to_end", "classifier_alone", "classifier_on_true_box"):
        assert r[key]["n"] == 4 and 0.0 <= r[key]["accuracy"] <= 1.0 and 0.0 <= r[key]["macro_recall"] <= 1.0
    # a missed face can only lower end-to-end accuracy below the found-only one's share
    assert r["end_to_end"]["accuracy"] <= r["detection_rate"] + 1e-9
