"""IoU, greedy matching, WIDER ground-truth parsing and scaling, and the
benchmark metrics, against hand-computed values."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from moodstream.shared.errors import DataError
from moodstream.shared.boxes import box_iou, greedy_match
from moodstream.trainer.bench.iou import evaluate, paired_iou
from moodstream.trainer.bench.wider import WiderImage, load_wider, parse_gt, read_sizes, restored_size, scale_boxes, spread
from moodstream.worker.detectors import Face


def test_box_iou_hand_values():
    a = np.array([[0, 0, 2, 2], [0, 0, 2, 2], [0, 0, 2, 2], [0, 0, 4, 4]])
    b = np.array([[0, 0, 2, 2], [1, 0, 3, 2], [5, 5, 6, 6], [1, 1, 3, 3]])
    iou = box_iou(a, b)
    assert iou.shape == (4, 4)
    assert iou[0, 0] == pytest.approx(1.0)
    assert iou[1, 1] == pytest.approx(2 / 6)  # intersection 1x2, union 4 + 4 - 2
    assert iou[2, 2] == 0.0
    assert iou[3, 3] == pytest.approx(4 / 16)  # a box inside another: area ratio
    assert box_iou(a[:1], b[3:])[0, 0] == pytest.approx(1 / 7)


def test_box_iou_degenerate_and_empty():
    assert box_iou([[0, 0, 0, 0]], [[0, 0, 0, 0]])[0, 0] == 0.0  # no area: 0, not NaN
    assert box_iou(np.zeros((0, 4)), [[0, 0, 1, 1]]).shape == (0, 1)
    assert box_iou([[0, 0, 1, 1]], np.zeros((0, 4))).shape == (1, 0)


def test_greedy_match_takes_best_pair_first():
    # pred 0 fits both faces; the best pair (0, 0) is taken first, so pred 1 gets nothing
    iou = np.array([[0.9, 0.6],
                    [0.8, 0.0]])
    col, val = greedy_match(iou)
    assert col.tolist() == [0, -1]
    assert val.tolist() == [0.9, 0.0]


def test_greedy_match_is_one_to_one():
    iou = np.array([[0.7, 0.65, 0.0],
                    [0.75, 0.1, 0.0],
                    [0.0, 0.0, 0.0]])
    col, val = greedy_match(iou)
    assert col.tolist() == [1, 0, -1]  # (1, 0) first at 0.75, then pred 0 takes face 1
    assert val.tolist() == [0.65, 0.75, 0.0]
    assert greedy_match(np.zeros((0, 3)))[0].shape == (0,)
    assert greedy_match(np.zeros((2, 0)))[0].tolist() == [-1, -1]


GT_TEXT = """0--Parade/a.jpg
2
100 50 200 100 0 0 0 0 0 0
10 10 4 6 2 0 0 1 0 0
1--Handshaking/empty.jpg
0
0 0 0 0 0 0 0 0 0 0
2--Demonstration/one.jpg
1
0 0 0 0 0 0 0 0 0 0
"""


def test_parse_gt(tmp_path):
    p = tmp_path / "gt.txt"
    p.write_text(GT_TEXT)
    gt = parse_gt(p)
    assert list(gt) == ["0--Parade/a.jpg", "1--Handshaking/empty.jpg", "2--Demonstration/one.jpg"]
    assert gt["0--Parade/a.jpg"].shape == (2, 10)
    assert gt["0--Parade/a.jpg"][1].tolist() == [10, 10, 4, 6, 2, 0, 0, 1, 0, 0]
    assert gt["1--Handshaking/empty.jpg"].shape == (0, 10)  # official no-face form: count 0 + a zero line
    assert gt["2--Demonstration/one.jpg"].shape == (1, 10)  # the form some copies use: count 1 + zeros


@pytest.mark.parametrize("text, message", [
    ("a.jpg\nx\n", "face count"),
    ("a.jpg\n2\n1 2 3 4 0 0 0 0 0 0\n", "ends inside"),
    ("a.jpg\n1\n1 2 3 4\n", "expected 10 values"),
    ("a.jpg\n", "no face count"),
])
def test_parse_gt_errors_name_the_line(tmp_path, text, message):
    p = tmp_path / "gt.txt"
    p.write_text(text)
    with pytest.raises(DataError, match=message):
        parse_gt(p)


def test_scale_boxes_to_416():
    rows = np.array([[100, 50, 200, 100]])
    boxes = scale_boxes(rows, original=(1000, 500), size=(416, 416))
    # x by 416/1000, y by 416/500
    assert boxes[0].tolist() == pytest.approx([41.6, 41.6, 124.8, 124.8])
    assert scale_boxes(np.zeros((0, 10)), (10, 10), (5, 5)).shape == (0, 4)


def test_restored_size_keeps_aspect_and_short_side():
    assert restored_size((1024, 683), (416, 416)) == (624, 416)
    assert restored_size((1024, 1536), (416, 416)) == (416, 624)


def _write_benchmark(root, size=(416, 416)):
    (root / "images").mkdir(parents=True)
    for name in ("a.jpg", "one.jpg"):
        cv2.imwrite(str(root / "images" / name), np.full((size[1], size[0], 3), 128, np.uint8))
    (root / "original_sizes.csv").write_text(
        "wider_path,width,height\n0--Parade/a.jpg,1000,500\n2--Demonstration/one.jpg,800,800\n")
    (root / "wider_face_val_bbx_gt.txt").write_text(GT_TEXT)


def test_load_wider_scales_and_flags(tmp_path):
    _write_benchmark(tmp_path)
    images = load_wider(tmp_path)
    assert [i.name for i in images] == ["a.jpg", "one.jpg"]
    a = images[0]
    assert a.size == (416, 416) and a.original_size == (1000, 500)
    assert a.boxes[0].tolist() == pytest.approx([41.6, 41.6, 124.8, 124.8])
    assert a.invalid.tolist() == [False, True]  # second face has the invalid flag
    assert a.min_side[0] == pytest.approx(41.6 * 2)
    assert images[1].invalid.tolist() == [True]  # 0 0 0 0: a degenerate box
    assert a.read().shape == (416, 416, 3)


def test_load_wider_restored_geometry(tmp_path):
    _write_benchmark(tmp_path)
    a = load_wider(tmp_path, geometry="restored")[0]
    assert a.size == (832, 416)  # 1000x500 with the short side at 416: s = 0.832
    assert a.boxes[0].tolist() == pytest.approx([83.2, 41.6, 249.6, 124.8])
    assert a.read().shape == (416, 832, 3)


def test_load_wider_missing_pieces(tmp_path):
    with pytest.raises(DataError, match="images"):
        load_wider(tmp_path)
    _write_benchmark(tmp_path)
    (tmp_path / "original_sizes.csv").write_text("wider_path,width,height\n")
    with pytest.raises(DataError, match="not listed"):
        load_wider(tmp_path)


def test_read_sizes_rejects_bad_rows(tmp_path):
    p = tmp_path / "s.csv"
    p.write_text("wider_path,width,height\na.jpg,0,10\n")
    with pytest.raises(DataError, match=":2"):
        read_sizes(p)


def test_spread_picks_evenly():
    assert spread(list(range(10)), 3) == [0, 4, 9]  # linspace 0, 4.5, 9 rounded half to even
    assert spread([1, 2], None) == [1, 2]
    assert spread([1, 2], 5) == [1, 2]


def _img(name, boxes, invalid=None):
    boxes = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    attrs = np.zeros((len(boxes), 6), dtype=np.int64)
    if invalid is not None:
        attrs[:, 3] = invalid
    return WiderImage(name, name, None, (100, 100), (100, 100), boxes, attrs)


def _faces(*boxes):
    return [Face(tuple(float(v) for v in b), 0.99) for b in boxes]


def test_single_face_accuracy_hand_computed():
    gt = [0, 0, 10, 10]
    images = [_img("hit", [gt]), _img("close", [gt]), _img("miss", [gt]), _img("empty", [[0, 0, 0, 0]]),
              _img("two", [gt, [50, 50, 60, 60]])]
    detections = [
        _faces([0, 0, 10, 10], [70, 70, 80, 80]),  # IoU 1 (an extra box does not matter)
        _faces([0, 0, 10, 8]),  # IoU 0.8: counts at 0.5 and 0.75, not 0.85
        [],  # no box
        _faces([0, 0, 5, 5]),  # a "0 0 0 0" entry is not a single-face image
        _faces([0, 0, 10, 10]),  # two faces: not a single-face image
    ]
    r = evaluate(images, detections, size_cut_px=0)
    assert r["n_single_face_images"] == 3
    assert r["single_face_acc"] == {"0.5": round(2 / 3, 4), "0.75": round(2 / 3, 4), "0.85": round(1 / 3, 4)}
    assert r["single_face_mean_iou"] == pytest.approx((1 + 0.8 + 0) / 3, abs=1e-4)


def test_recall_precision_size_cut_and_invalid():
    big, small, bad = [0, 0, 40, 40], [100, 100, 110, 110], [200, 200, 240, 240]
    images = [_img("a", [big, small, bad], invalid=[0, 0, 1])]
    detections = [_faces(
        [0, 0, 40, 36],  # big face, IoU 0.9
        [100, 100, 110, 104],  # small face, IoU 0.4: unmatched at 0.5
        [200, 200, 240, 240],  # the invalid face: matched, so not a false positive
        [300, 300, 340, 340],  # nothing there
    )]
    r = evaluate(images, detections, size_cut_px=20)
    assert r["n_faces"] == 1 and r["n_faces_uncut"] == 2  # invalid face never counted
    assert r["recall"] == {"0.5": 1.0, "0.75": 1.0, "0.85": 1.0}
    assert r["recall_uncut"] == {"0.5": 0.5, "0.75": 0.5, "0.85": 0.5}
    assert r["n_predictions"] == 4 and r["n_true_positives"] == 2
    assert r["precision"] == 0.5


def test_evaluate_without_detections():
    r = evaluate([_img("a", [[0, 0, 30, 30]])], [[]], size_cut_px=20)
    assert r["single_face_acc"]["0.5"] == 0.0 and r["recall"]["0.5"] == 0.0 and r["precision"] == 0.0


def test_paired_iou_compares_the_same_detections():
    images = [_img("a", [[0, 0, 10, 10], [50, 50, 90, 90]])]
    raw = [_faces([0, 0, 10, 8], [50, 50, 90, 80])]  # IoU 0.8 and 0.75
    better = [_faces([0, 0, 10, 10], [50, 50, 90, 80])]
    p = paired_iou(images, raw, better, size_cut_px=0)
    assert p["n_faces"] == 2
    assert p["mean_iou_raw"] == pytest.approx(0.775)
    assert p["mean_iou_calibrated"] == pytest.approx(0.875)
    assert p["fraction_improved"] == 0.5
    assert paired_iou(images, raw, better, size_cut_px=20)["n_faces"] == 1
