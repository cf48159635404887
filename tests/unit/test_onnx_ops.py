"""The numpy operations of the ONNX backend (worker.detectors.onnx_mtcnn, worker.onnx_classify,
shared.boxes), each against the torch / facenet-pytorch code it reproduces, on random inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from facenet_pytorch.models.utils import detect_face as fn
from torch.nn.functional import interpolate
from torchvision.ops import batched_nms
from torchvision.ops import box_iou as tv_box_iou
from torchvision.ops import nms as tv_nms

from moodstream.shared.boxes import box_iou, match_one_to_one
from moodstream.worker.detectors import mtcnn_ops, onnx_mtcnn
from moodstream.worker.detectors.onnx_mtcnn import (area_crops, area_resize, bbreg, integral_image, nms, normalise, pad_boxes,
                                          pnet_cells, pnet_strips, pyramid_scales, rerec)
from moodstream.worker.onnx_session import MTCNN_FILES, ONNX_DIR, open_session


def random_boxes(rng: np.random.Generator, n: int, span: float = 200.0) -> np.ndarray:
    xy = rng.uniform(0, span, (n, 2))
    wh = rng.uniform(5, 45, (n, 2))
    return np.concatenate([xy, xy + wh], axis=1).astype(np.float32)


@pytest.mark.parametrize("n", [0, 1, 7, 300, 2000])
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_nms_is_torchvision_nms(n, threshold):
    rng = np.random.default_rng(n)
    boxes, scores = random_boxes(rng, n), rng.random(n).astype(np.float32)
    want = tv_nms(torch.from_numpy(boxes), torch.from_numpy(scores), threshold).numpy()
    np.testing.assert_array_equal(nms(boxes, scores, threshold), want)


def test_nms_ties_keep_input_order_like_torchvision():
    rng = np.random.default_rng(3)
    boxes = random_boxes(rng, 400, span=100.0)
    scores = rng.choice(np.float32([0.9, 0.95, 1.0]), 400)  # saturated scores tie
    want = tv_nms(torch.from_numpy(boxes), torch.from_numpy(scores), 0.5).numpy()
    np.testing.assert_array_equal(nms(boxes, scores, 0.5), want)


@pytest.mark.parametrize("n", [5, 500, 3000])
def test_grouped_nms_is_nms_per_group(n):
    rng = np.random.default_rng(10 + n)
    boxes, scores = random_boxes(rng, n), rng.random(n).astype(np.float32)
    boxes[: n // 3] -= 150  # negative coordinates: groups must still not touch each other
    groups = rng.integers(0, 9, n)
    keep = nms(boxes, scores, 0.5, groups)
    want = [np.nonzero(groups == g)[0][tv_nms(torch.from_numpy(boxes[groups == g]),
                                              torch.from_numpy(scores[groups == g]), 0.5).numpy()]
            for g in np.unique(groups)]
    assert sorted(keep.tolist()) == sorted(np.concatenate(want).tolist())
    assert np.all(np.diff(scores[keep]) <= 0)  # best first
    if n <= 500:  # torchvision's coordinate-trick path: the same order, ties included
        shifted = boxes + 150
        want = batched_nms(torch.from_numpy(shifted), torch.from_numpy(scores), torch.from_numpy(groups), 0.5)
        np.testing.assert_array_equal(nms(shifted, scores, 0.5, groups), want.numpy())


@pytest.mark.parametrize("n", [1, 5, 40, 300])
def test_min_nms_is_facenets_numpy_nms(n):
    rng = np.random.default_rng(20 + n)
    boxes = random_boxes(rng, n, span=80.0)
    scores = rng.random(n).astype(np.float32)
    scores[rng.random(n) < 0.3] = 1.0  # ONet saturates: ties decided by numpy's argsort, as in facenet
    groups = rng.integers(0, 3, n)
    want = fn.batched_nms_numpy(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(groups),
                                0.7, "Min").numpy()
    np.testing.assert_array_equal(nms(boxes, scores, 0.7, groups, method="min"), want)


def test_nms_of_nothing_and_bad_method():
    assert nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.5).shape == (0,)
    with pytest.raises(ValueError):
        nms(np.zeros((1, 4)), np.ones(1), 0.5, method="max")


def test_bbreg_and_rerec_are_facenets():
    rng = np.random.default_rng(4)
    boxes = np.concatenate([random_boxes(rng, 50), rng.random((50, 1), dtype=np.float32)], axis=1)
    reg = rng.normal(0, 0.2, (50, 4)).astype(np.float32)
    want = fn.rerec(fn.bbreg(torch.from_numpy(boxes.copy()), torch.from_numpy(reg))).numpy()
    np.testing.assert_allclose(rerec(bbreg(boxes.copy(), reg)), want, rtol=0, atol=1e-4)
    sq = rerec(boxes.copy())
    np.testing.assert_allclose(sq[:, 2] - sq[:, 0], sq[:, 3] - sq[:, 1], atol=1e-4)


def test_pad_boxes_is_facenets_pad():
    rng = np.random.default_rng(5)
    boxes = random_boxes(rng, 60, span=140.0) - 20  # some start left of / above the frame, some past it
    x0, y0, x1, y1, valid = pad_boxes(boxes, 100, 60)
    y, ey, x, ex = fn.pad(torch.from_numpy(boxes.copy()), 100, 60)
    want_valid = (ey > y - 1) & (ex > x - 1)
    np.testing.assert_array_equal(valid, want_valid)
    for got, ref in ((x0, x - 1), (y0, y - 1), (x1, ex), (y1, ey)):
        np.testing.assert_array_equal(got[valid], ref[valid])


@pytest.mark.parametrize("h,w,minsize", [(1080, 1920, 20), (360, 640, 20), (180, 320, 40), (7, 5, 20)])
def test_pyramid_scales_are_the_torch_paths(h, w, minsize):
    assert pyramid_scales(h, w, minsize, 0.709) == mtcnn_ops.pyramid_scales(h, w, minsize, 0.709)


@pytest.mark.parametrize("kernels,resize_pixels", [("numpy", 64_000), ("numpy", 100), ("numpy", 1),  # one chunk;
                                                    ("installed", 64_000)])  # chunks of one or a few rows
def test_area_resize_and_crops_equal_interpolate_area(monkeypatch, kernels, resize_pixels):
    monkeypatch.setattr(onnx_mtcnn, "RESIZE_PIXELS", resize_pixels)
    if kernels == "numpy":  # else the compiled ones where built (tests/unit/test_area_kernels.py)
        monkeypatch.setattr(onnx_mtcnn, "_area", None)
    frame = np.random.default_rng(6).integers(0, 256, (61, 83, 3), dtype=np.uint8)
    table = integral_image(frame)
    assert table.dtype == np.int32 and table.shape == (62, 84, 3)
    img = torch.from_numpy(frame).permute(2, 0, 1)[None].float()
    for size in [(37, 50), (61, 83), (13, 9), (70, 90)]:  # down, same, tiny, up
        whole = area_resize(table, *size)
        np.testing.assert_allclose(whole, interpolate(img, size=size, mode="area").numpy(), rtol=0, atol=1e-4)
        for rows in [(0, size[0]), (0, 1), (3, 11), (size[0] - 2, size[0])]:  # a strip is those rows, exactly
            part = area_resize(table, *size, rows=rows)
            assert part.flags.c_contiguous
            np.testing.assert_array_equal(part, whole[:, :, rows[0]:rows[1]])
    rects = [(5, 3, 60, 50), (10, 20, 17, 31), (40, 40, 41, 41), (0, 0, 83, 61), (70, 2, 83, 59)]
    x0, y0, x1, y1 = (np.array(v) for v in zip(*rects))
    for size in (24, 48):
        got = area_crops(table, x0, y0, x1, y1, size)
        for k, (a0, b0, a1, b1) in enumerate(rects):
            want = interpolate(img[:, :, b0:b1, a0:a1], size=(size, size), mode="area")[0].numpy()
            np.testing.assert_allclose(got[k], want, rtol=0, atol=1e-4)


def test_integral_image_is_exact_and_widens_for_huge_frames():
    white = np.full((5, 4, 3), 255, np.uint8)
    assert integral_image(white)[-1, -1].tolist() == [5 * 4 * 255] * 3
    huge = integral_image(np.full((3000, 3000, 3), 255, np.uint8))  # 2.3e9 does not fit int32
    assert huge.dtype == np.float64 and huge[-1, -1, 0] == 3000 * 3000 * 255
    x = np.array([2990])
    np.testing.assert_array_equal(area_crops(huge, x, x, x + 10, x + 10, 24), np.full((1, 3, 24, 24), 255.0))


@pytest.mark.parametrize("height", [12, 13, 40, 97, 217])
@pytest.mark.parametrize("cells", [1, 7, 30, 1000])
def test_pnet_strips_cover_the_output_rows_once(height, cells):
    strips = pnet_strips(height, cells)
    firsts = [first for _, _, first in strips]
    ends = [first + pnet_cells(stop - start) for start, stop, first in strips]
    assert firsts[0] == 0 and ends == firsts[1:] + [pnet_cells(height)]  # back to back, to the last row
    assert all(start == 2 * first and 0 < pnet_cells(stop - start) <= cells for start, stop, first in strips)
    assert strips[-1][1] == height and len(strips) == -(-pnet_cells(height) // cells)
    assert pnet_strips(10, cells) == []  # too small for one output


@pytest.fixture(scope="module")
def pnet():
    return open_session(ONNX_DIR / MTCNN_FILES["pnet"])


@pytest.mark.parametrize("shape", [(75, 131), (76, 130), (12, 12), (13, 40), (217, 385)])  # odd sizes: ceil_mode pools
def test_pnet_in_strips_is_pnet_on_the_whole_image(pnet, shape):
    pixels = normalise(np.random.default_rng(sum(shape)).uniform(0, 255, (1, 3, *shape)).astype(np.float32))
    (heads,) = pnet.run(None, {"input": pixels})
    assert heads.shape == (1, 6, pnet_cells(shape[0]), pnet_cells(shape[1]))
    for cells in (1, 5, 16):
        parts = [pnet.run(None, {"input": np.ascontiguousarray(pixels[:, :, start:stop])})[0]
                 for start, stop, _ in pnet_strips(shape[0], cells)]
        np.testing.assert_allclose(np.concatenate(parts, axis=2), heads, rtol=0, atol=1e-6)


@pytest.mark.parametrize("shape", [(30, 41), (31, 40), (12, 12), (13, 13), (33, 35)])  # odd: the pool cut short
def test_pnet_on_a_cells_window_is_that_cell(pnet, shape):
    pixels = normalise(np.random.default_rng(sum(shape)).uniform(0, 255, (1, 3, *shape)).astype(np.float32))
    (heads,) = pnet.run(None, {"input": pixels})
    y, x = (v.ravel() for v in np.indices(heads.shape[2:]))
    seen = np.zeros(heads.shape[2:], bool)
    for cells, windows in onnx_mtcnn.pnet_windows(pixels[0], y, x):
        assert windows.shape[1:] == (3, *windows.shape[2:]) and max(windows.shape[2:]) <= 12
        (got,) = pnet.run(None, {"input": windows})
        np.testing.assert_allclose(got[:, :, 0, 0].T, heads[0][:, y[cells], x[cells]], rtol=0, atol=1e-5)
        seen[y[cells], x[cells]] = True
    assert seen.all()


@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.6, 0.95, 1.0])
def test_pnet_outputs_are_the_softmax_cells_over_the_threshold(threshold):
    rng = np.random.default_rng(11)
    heads = rng.normal(0, 2, (6, 40, 57)).astype(np.float32)
    heads[1, 3, 4] = heads[0, 3, 4] + np.log(1.5) + 1e-4  # just over p = 0.6
    heads[1, 5, 6] = heads[0, 5, 6] + 40  # saturated: p = 1.0
    prob = torch.softmax(torch.from_numpy(heads[:2]), dim=0)[1].numpy()  # what the net ended with
    y, x, p = onnx_mtcnn.pnet_outputs(heads, threshold)
    got = np.zeros(prob.shape, bool)
    got[y, x] = True
    # the same cells (row-major, as torch's nonzero), but where torch's exp and numpy's differ in
    # the last bit right at the threshold (|p - t| < 1e-6, never on real frames in practice)
    clear = np.abs(prob - np.float32(threshold)) > 1e-6
    np.testing.assert_array_equal(got[clear], (prob >= np.float32(threshold))[clear])
    assert np.all(np.diff(y * prob.shape[1] + x) > 0)
    np.testing.assert_allclose(p, prob[y, x], rtol=0, atol=1e-6)
    assert got[5, 6] == (threshold <= 1.0) and got[3, 4] == (threshold <= 0.6)


def test_face_crops_are_worker_crops():
    from moodstream.worker.crop import crop_faces as torch_crop_faces
    from moodstream.worker.framing import FRAMING
    from moodstream.worker.onnx_classify import crop_faces

    rng = np.random.default_rng(7)
    frames = [rng.integers(0, 256, (90, 120, 3), dtype=np.uint8), rng.integers(0, 256, (50, 40, 3), dtype=np.uint8),
              rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)]
    boxes = [random_boxes(rng, 6, span=100.0),
             np.array([[-30, -20, 25, 40], [30, 30, 70, 90], [10, 10, 11, 10.5], [-40, -50, 80, 100]], np.float32),
             np.zeros((0, 4), np.float32)]  # overhanging, tiny, past half a frame, none
    for framing in FRAMING.values():
        want = torch_crop_faces(frames, boxes, framing, 48, torch.device("cpu")).numpy()
        np.testing.assert_allclose(crop_faces(frames, boxes, framing, 48), want, rtol=0, atol=1e-4)


def test_box_iou_is_torchvisions():
    rng = np.random.default_rng(8)
    a, b = random_boxes(rng, 30), random_boxes(rng, 20)
    np.testing.assert_allclose(box_iou(a, b), tv_box_iou(torch.from_numpy(a), torch.from_numpy(b)).numpy(),
                               rtol=1e-5, atol=1e-6)
    assert box_iou(a[:0], b).shape == (0, 20)


def test_match_one_to_one_takes_best_pairs_once():
    a = np.array([[0, 0, 10, 10], [0.1, 0, 10.1, 10]], np.float32)
    assert match_one_to_one(a, a[:1], 0.95) == [(0, 0)]
    assert sorted(match_one_to_one(a, a, 0.95)) == [(0, 0), (1, 1)]
    assert match_one_to_one(a, a[:0], 0.5) == [] and match_one_to_one(a[:0], a, 0.5) == []
    # the greedy pass takes the best pair first even when another order would match more
    ref = np.array([[0, 0, 10, 10], [0, 0, 10, 11]], np.float32)
    cand = np.array([[0, 0, 10, 10.5]], np.float32)
    assert match_one_to_one(ref, cand, 0.9) == [(1, 0)]


class FakeNet:
    """A Net whose face score is a crop's mean pixel (shifted), recording what it saw."""

    runtime, precision, metadata = "fake", "fp32", {}

    def __init__(self, shift: float = 0.0, outputs: int = 2):
        self.shift, self.outputs, self.seen = shift, outputs, []

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        self.seen.append(x.copy())
        score = np.clip(x.mean(axis=(1, 2, 3)) * 0.5 + 0.5 + self.shift, 0, 1).astype(np.float32)
        reg = np.tile(score[:, None], (1, 4)).astype(np.float32)
        prob = np.stack([1 - score, score], axis=1)
        return [reg, prob] if self.outputs == 2 else [reg, np.zeros((len(x), 10), np.float32), prob]


def test_a_screened_stage_gives_the_unscreened_answers(monkeypatch):
    """Screening (worker.runtime.AUTO_SCREENED) only skips crops the screen puts below the
    threshold minus SCREEN_MARGIN: the answers are the full net's, whatever the screen's error
    within the margin, and the full net never sees the skipped crops."""
    rng = np.random.default_rng(12)
    frame = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    frame[:, 80:] //= 4  # a dark half: crops there score low
    table = integral_image(frame)
    boxes = np.concatenate([random_boxes(rng, 150, span=110.0), np.zeros((150, 1), np.float32)], axis=1)
    det = onnx_mtcnn.OnnxMTCNNDetector.__new__(onnx_mtcnn.OnnxMTCNNDetector)
    det.thresholds, det.rnet_chunk, det.onet_chunk = (0.6, 0.5, 0.7), 32, 16
    det.rnet, det.screens = FakeNet(), {"rnet": None, "onet": None}
    [(want_boxes, (want_reg,))] = det._refine([table], [boxes.copy()], 120, 160, 24)
    seen_alone = sum(len(x) for x in det.rnet.seen)
    for error in (-0.15, 0.0, 0.15):  # a screen off by up to 0.15 (< SCREEN_MARGIN) either way
        det.rnet, det.screens = FakeNet(), {"rnet": FakeNet(shift=error), "onet": None}
        [(got_boxes, (got_reg,))] = det._refine([table], [boxes.copy()], 120, 160, 24)
        np.testing.assert_array_equal(got_boxes, want_boxes)
        np.testing.assert_array_equal(got_reg, want_reg)
        assert sum(len(x) for x in det.screens["rnet"].seen) == seen_alone  # the screen saw every crop
        assert sum(len(x) for x in det.rnet.seen) < seen_alone  # the full net only those near or over
    assert 0 < len(want_boxes) < seen_alone


def test_frames_are_grouped_by_size_within_the_table_budget(monkeypatch):
    """detect() groups a batch's frames by size, in order, each group's summed-area tables
    within GROUP_TABLE_BYTES (at least one frame a group); frames no face fits in are left out."""
    det = onnx_mtcnn.OnnxMTCNNDetector.__new__(onnx_mtcnn.OnnxMTCNNDetector)
    det.min_face_px = 20
    small, large, tiny = (np.zeros(s, np.uint8) for s in ((36, 64, 3), (99, 120, 3), (19, 400, 3)))
    table = lambda f: (f.shape[0] + 1) * (f.shape[1] + 1) * 12  # int32, three channels
    frames = [small, large, small, tiny, small, large, small]
    monkeypatch.setattr(onnx_mtcnn, "GROUP_TABLE_BYTES", 3 * table(small))
    assert det._groups(frames) == [[0, 2, 4], [6], [1], [5]]  # a large table is over half the budget
    monkeypatch.setattr(onnx_mtcnn, "GROUP_TABLE_BYTES", 1)
    assert det._groups(frames) == [[0], [2], [4], [6], [1], [5]]
    monkeypatch.setattr(onnx_mtcnn, "GROUP_TABLE_BYTES", 10**9)
    assert det._groups(frames) == [[0, 2, 4, 6], [1, 5]]
    assert det._groups([tiny]) == det._groups([]) == []


class ShiftedScreen:
    """A PNet screen: the full net's heads with the face logit moved by ``shift`` (an error
    within SCREEN_MARGIN around the 0.6 threshold) and the regression scrambled."""

    def __init__(self, net, shift: float):
        self.net, self.shift, self.cells = net, shift, 0

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        (heads,) = self.net.run(x)
        heads = heads.copy()
        heads[:, 1] += self.shift
        heads[:, 2:] = -heads[:, 2:]
        self.cells += heads[0, 0].size
        return [heads]


class CountingNet:
    def __init__(self, net):
        self.net, self.windows = net, 0

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        if x.shape[2] <= 12:
            self.windows += len(x)
        return self.net.run(x)


def test_a_screened_pnet_gives_the_candidates_of_the_full_net(monkeypatch):
    """PNet screening (worker.runtime.AUTO_SCREENED): the strips run on the screen, and the
    cells it puts near or over the threshold run again at full precision, for every scale
    and frame of a group together after the strips. The candidates are the full net's,
    whatever the screen's error within the margin: each cell's rerun lands in its own
    frame, scale and place."""
    from moodstream.shared.media import iter_video
    from pathlib import Path

    clip = Path(__file__).resolve().parents[1] / "fixtures" / "clip_360p.mp4"
    frames = [item.image for item in iter_video(str(clip), every_n=4, max_frames=3)]
    h, w = frames[0].shape[:2]
    tables = [integral_image(f) for f in frames]
    det = onnx_mtcnn.OnnxMTCNNDetector()
    want = det._stage1(tables, h, w)  # unscreened: the full net on whole strips
    assert all(len(c) >= 5 for c in want)
    blank = [integral_image(np.zeros_like(frames[0]))]  # no cell near the threshold anywhere
    assert [len(c) for c in det._stage1(blank, h, w)] == [0]
    monkeypatch.setattr(onnx_mtcnn, "PNET_SCREEN_MIN_PIXELS", 0)  # screen every scale
    full = det.pnet
    for shift in (-0.3, 0.0, 0.3):  # logit(0.6) = 0.41, logit(0.6 - SCREEN_MARGIN) = -0.41
        det.pnet, det.screens = CountingNet(full), {"pnet": ShiftedScreen(full, shift), "rnet": None, "onet": None}
        got = det._stage1(tables, h, w)
        assert [len(c) for c in got] == [len(c) for c in want]
        assert [len(c) for c in det._stage1(blank, h, w)] == [0]
        for g, c in zip(got, want):
            np.testing.assert_allclose(g, c, rtol=0, atol=1e-3)  # windows against strips: float rounding
        assert 0 < det.pnet.windows < det.screens["pnet"].cells / 10  # only the cells near or over, again
    det.pnet, det.screens = full, {"pnet": None, "rnet": None, "onet": None}


@pytest.mark.parametrize("gap", [0, 1, 6])
def test_pnet_on_a_line_of_windows_gives_each_cell(pnet, gap):
    """pnet_line: the whole windows of some cells of a strip as one 12-row line, the windows of
    a row's nearby cells sharing their columns; PNet on the line gives each cell exactly
    where `at` says."""
    rng = np.random.default_rng(gap)
    pixels = normalise(rng.uniform(0, 255, (1, 3, 41, 70)).astype(np.float32))
    (heads,) = pnet.run(None, {"input": pixels})
    whole = np.indices(((41 - 12) // 2 + 1, (70 - 12) // 2 + 1)).reshape(2, -1)  # cells with whole windows
    pick = np.sort(rng.choice(whole.shape[1], 60, replace=False))
    y, x = whole[0, pick], whole[1, pick]  # row-major, as np.nonzero gives them
    line, at = onnx_mtcnn.pnet_line(pixels[0], y, x, gap)
    assert line.shape[:2] == (3, 12) and (at % 2 == 0).all()
    assert line.shape[2] == 12 * 60 if gap == 0 else line.shape[2] < 12 * 60  # neighbours share columns
    (got,) = pnet.run(None, {"input": np.ascontiguousarray(line[None])})
    np.testing.assert_allclose(got[0][:, 0, at // 2], heads[0][:, y, x], rtol=0, atol=1e-5)
    empty, none = onnx_mtcnn.pnet_line(pixels[0], y[:0], x[:0], gap)
    assert empty.shape == (3, 12, 0) and none.shape == (0,)


def test_lines_are_cut_into_overlapping_pieces_that_keep_every_window_whole(monkeypatch):
    """_rerun_line joins the lines of several strips and cuts them into pieces of
    PNET_LINE_WIDTH columns overlapping by 10, run in batches padded to PNET_LINE_BATCHES:
    every cell comes back with its own outputs, whichever piece and run holds it."""
    det = onnx_mtcnn.OnnxMTCNNDetector()
    rng = np.random.default_rng(5)
    groups, want = [], []
    for rows, cols in ((30, 64), (41, 57), (24, 100)):
        pixels = normalise(rng.uniform(0, 255, (1, 3, rows, cols)).astype(np.float32))
        (heads,) = det.pnet.run(pixels)
        y, x = (v.ravel() for v in np.indices(((rows - 12) // 2 + 1, (cols - 12) // 2 + 1)))
        line, at = onnx_mtcnn.pnet_line(pixels[0], y, x, 6)
        groups.append((None, y, x, line, at))
        want.append(heads[0][:, y, x].T)
    monkeypatch.setattr(onnx_mtcnn, "PNET_LINE_WIDTH", 40)
    monkeypatch.setattr(onnx_mtcnn, "PNET_LINE_BATCHES", (1, 2, 3))  # many pieces: several runs, one padded
    got = det._rerun_line(groups)
    np.testing.assert_allclose(got, np.concatenate(want), rtol=0, atol=1e-5)
