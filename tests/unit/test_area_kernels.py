"""The compiled area resizes (worker/detectors/_area.c) against the numpy code they replace
(worker/detectors/onnx_mtcnn.py): the same values bit for bit on random frames, boxes and
scales, and bad input refused with ValueError, never read out of bounds."""

from __future__ import annotations

import numpy as np
import pytest

from moodstream.worker.detectors import onnx_mtcnn
from moodstream.worker.detectors.onnx_mtcnn import (area_crops, area_kernels, area_resize, cells_above, integral_image,
                                                    nms, normalise, pnet_line, pnet_outputs, pyramid_scales,
                                                    resize_edges, window_edges)

try:
    from moodstream.worker.detectors import _area
except ImportError:  # checked below: a developer install builds it
    _area = None

needs_compiled = pytest.mark.skipif(_area is None, reason="the compiled area resizes are not built here")


def test_a_developer_install_builds_the_compiled_area_resizes():
    # setup.py builds them where a C compiler is (the README's setup, CI); numpy is only the fallback
    assert _area is not None, "worker/detectors/_area.c is not built: pip install -e . with a C compiler"
    assert area_kernels() == "compiled"


def numpy_only(monkeypatch) -> None:
    monkeypatch.setattr(onnx_mtcnn, "_area", None)
    assert area_kernels() == "numpy"


@needs_compiled
@pytest.mark.parametrize("h,w", [(1080, 1920), (360, 640), (61, 83), (13, 12), (500, 37)])
def test_the_compiled_pyramid_is_the_numpy_one_bit_for_bit(monkeypatch, h, w):
    frame = np.random.default_rng(h * w).integers(0, 256, (h, w, 3), dtype=np.uint8)
    table = integral_image(frame)
    sizes = [(int(h * s + 1), int(w * s + 1)) for s in pyramid_scales(h, w, 20, 0.709)]
    sizes += [(h, w), (h + 9, w + 13), (1, 1), (max(1, h // 7), w)]  # the same, up, one pixel, rows only
    compiled = {}
    for size in sizes:
        for rows in (None, (0, 1), (size[0] // 3, size[0])):
            for normalised in (False, True):
                compiled[size, rows, normalised] = area_resize(table, *size, rows, normalised=normalised)
    numpy_only(monkeypatch)
    for (size, rows, normalised), got in compiled.items():
        want = area_resize(table, *size, rows, normalised=normalised)
        assert got.shape == want.shape and got.flags.c_contiguous
        np.testing.assert_array_equal(got, want, err_msg=f"{size} rows {rows} normalised {normalised}")
    assert np.array_equal(compiled[sizes[0], None, True], normalise(area_resize(table, *sizes[0])))


@needs_compiled
@pytest.mark.parametrize("size", [24, 48, 1, 7])
def test_the_compiled_crops_are_the_numpy_ones_bit_for_bit(monkeypatch, size):
    rng = np.random.default_rng(size)
    h, w = 361, 643
    table = integral_image(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    n = 500
    x0, y0 = rng.integers(0, w - 1, n), rng.integers(0, h - 1, n)
    x1 = np.minimum(w, x0 + rng.integers(1, 400, n))  # 1 px (up-sampled) to wider than the frame's rest
    y1 = np.minimum(h, y0 + rng.integers(1, 300, n))
    x0[:3], y0[:3], x1[:3], y1[:3] = 0, 0, w, h  # the whole frame
    got = {norm: area_crops(table, x0, y0, x1, y1, size, normalised=norm) for norm in (False, True)}
    empty = area_crops(table, x0[:0], y0[:0], x1[:0], y1[:0], size)
    numpy_only(monkeypatch)
    for norm, crops in got.items():
        np.testing.assert_array_equal(crops, area_crops(table, x0, y0, x1, y1, size, normalised=norm))
    assert empty.shape == (0, 3, size, size)


@needs_compiled
@pytest.mark.parametrize("gap", [0, 1, 6, 1000])
def test_the_compiled_pnet_line_is_the_numpy_one(monkeypatch, gap):
    # PNet's screened cells' windows as one 12-row line (onnx_mtcnn.pnet_line): copies, the same values
    rng = np.random.default_rng(gap)
    lines = []
    for rows, cols in ((12, 12), (41, 70), (97, 643), (13, 200)):
        pixels = normalise(rng.uniform(0, 255, (1, 3, rows, cols)).astype(np.float32))[0]
        cells = np.indices(((rows - 12) // 2 + 1, (cols - 12) // 2 + 1)).reshape(2, -1)  # whole windows
        for n in sorted({1, min(5, cells.shape[1]), cells.shape[1]}):
            pick = np.sort(rng.choice(cells.shape[1], n, replace=False))
            lines.append((pixels, cells[0, pick], cells[1, pick]))
    got = [pnet_line(p, y, x, gap) for p, y, x in lines]
    numpy_only(monkeypatch)
    for (p, y, x), (line, at) in zip(lines, got):
        want, want_at = pnet_line(p, y, x, gap)
        assert line.shape == want.shape and line.flags.c_contiguous
        np.testing.assert_array_equal(line, want)
        np.testing.assert_array_equal(at, want_at)


@needs_compiled
def test_the_compiled_line_refuses_segments_outside_the_strip():
    pixels = np.zeros((3, 20, 30), np.float32)
    one = np.array([0])
    out = np.empty((3, 12, 12), np.float32)
    _area.line(pixels, one, one, np.array([12]), out)  # the good call
    for what, args in {"rows past the strip": (pixels, one + 9, one, np.array([12]), out),
                       "columns past the strip": (pixels, one, one + 19, np.array([12]), out),
                       "a width of 0": (pixels, one, one, np.array([0]), out),
                       "an output of another width": (pixels, one, one, np.array([11]), out),
                       "two channels": (pixels[:2].copy(), one, one, np.array([12]), out),
                       "float64 pixels": (pixels.astype(float), one, one, np.array([12]), out)}.items():
        with pytest.raises(ValueError):
            _area.line(*args)
            pytest.fail(f"accepted {what}")


@needs_compiled
@pytest.mark.parametrize("n", [0, 1, 2, 7, 300, 2000])
def test_the_compiled_nms_keeps_what_the_numpy_one_keeps(monkeypatch, n):
    rng = np.random.default_rng(n)
    xy = rng.uniform(0, 300, (n, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(0, 60, (n, 2))], axis=1).astype(np.float32)
    boxes[: n // 10, 2:] = boxes[: n // 10, :2]  # zero-area boxes
    boxes[n // 10: n // 5] = boxes[0] if n else boxes[n // 10: n // 5]  # duplicates
    scores = rng.choice([0.9, 0.95, 1.0], n).astype(np.float32)  # many ties
    odd = boxes.astype(np.float64)
    if n >= 7:
        odd[3, 0], odd[4, 2], odd[5, :2] = np.nan, np.inf, -np.inf
    groups = [None, rng.integers(0, 4, n), rng.integers(0, 3, n) * 0.5]
    # numpy's groups ride on a shift along x that a non-finite box turns into inf / NaN (torchvision's
    # batched_nms has the same trick), so odd boxes are compared without groups there, and with groups below
    cases = [(b, g, t, m) for b in (boxes, odd) for g in groups for t in (0.0, 0.5, 0.7) for m in ("union", "min")
             if b is boxes or g is None]
    got = [nms(b, scores, t, g, m) for b, g, t, m in cases]
    for t in (0.0, 0.5, 0.7):  # the compiled code keeps groups apart whatever the coordinates
        kept = [np.nonzero(groups[1] == v)[0][nms(odd[groups[1] == v], scores[groups[1] == v], t)] for v in range(4)]
        assert sorted(nms(odd, scores, t, groups[1])) == sorted(np.concatenate(kept))
    numpy_only(monkeypatch)
    with np.errstate(invalid="ignore"):  # the odd boxes' inf - inf
        for (b, g, t, m), kept in zip(cases, got):
            np.testing.assert_array_equal(kept, nms(b, scores, t, g, m), err_msg=f"threshold {t} {m} groups {g}")


@needs_compiled
def test_the_compiled_nms_refuses_what_is_not_a_ranking():
    boxes, keep = np.array([[0, 0, 5, 5], [2, 0, 7, 5], [9, 0, 12, 5]], float), np.empty(3, np.uint8)
    groups, by_x = np.zeros(3, np.int64), np.array([0, 1, 2])
    _area.nms(boxes, np.array([2, 0, 1]), by_x, groups, 0.5, 0.0, False, keep)  # the good call
    for what, args in {"a repeated index": (boxes, np.array([2, 2, 1]), by_x, groups, 0.5),
                       "an index past the boxes": (boxes, np.array([0, 1, 3]), by_x, groups, 0.5),
                       "by_x not by x": (boxes, np.array([0, 1, 2]), np.array([1, 0, 2]), groups, 0.5),
                       "by_x not by group": (boxes, np.array([0, 1, 2]), by_x, np.array([1, 0, 0]), 0.5),
                       "boxes of 5 columns": (np.zeros((3, 5)), np.array([0, 1, 2]), by_x, groups, 0.5),
                       "groups of another length": (boxes, np.array([0, 1, 2]), by_x, groups[:2], 0.5),
                       "a negative threshold": (boxes, np.array([0, 1, 2]), by_x, groups, -0.1)}.items():
        with pytest.raises(ValueError):
            _area.nms(*args, 0.0, False, keep)
            pytest.fail(f"accepted {what}")


def planes(rng: np.random.Generator, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """PNet-like logit planes: most cells far below any threshold, some near and over it, some at it
    exactly, and a few NaN and infinite ones."""
    heads = rng.normal(0.0, 1.0, (2, rows, cols)).astype(np.float32)
    heads[0] += 3
    heads[1] -= 3
    if heads[0].size:
        near = rng.random((rows, cols)) < 0.02
        heads[1][near] = heads[0][near] + rng.normal(-0.4, 0.5, near.sum()).astype(np.float32)
        at = rng.random((rows, cols)) < 0.005
        heads[0][at], heads[1][at] = 1.0, np.float32(1.1)  # l1 - l0 is float32(1.1) - 1, exactly
        for plane, value in ((0, np.nan), (1, np.nan), (1, np.inf), (0, np.inf), (0, -np.inf)):
            heads[plane][rng.integers(0, rows), rng.integers(0, cols)] = value
    return heads[0], heads[1]


@needs_compiled
@pytest.mark.parametrize("rows,cols", [(47, 572), (320, 573), (1, 1), (3, 17), (16, 16), (0, 5)])
def test_the_compiled_threshold_scan_finds_the_numpy_cells(monkeypatch, rows, cols):
    # PNet's screen (cells near the threshold, strict) and pnet_outputs (cells that can pass, >=)
    rng = np.random.default_rng(rows * 1000 + cols)
    l0, l1 = planes(rng, rows, cols)
    exact = float(np.float32(1.1) - np.float32(1.0))  # the margin of the cells set "at" it
    thresholds = [exact, 0.1, -0.4054651081081644, 15.0, -np.inf, np.inf, 0.0]
    compiled = {(t, strict): cells_above(l0, l1, t, strict) for t in thresholds for strict in (True, False)}
    heads = np.concatenate([np.stack([l0, l1]), rng.normal(size=(4, rows, cols)).astype(np.float32)])
    with np.errstate(invalid="ignore"):  # the softmax of an infinite logit is NaN, in either code
        outputs = [pnet_outputs(heads, t) for t in (0.6, 0.5, 0.0, 1.0)]
    numpy_only(monkeypatch)
    for (t, strict), got in compiled.items():
        want = np.nonzero((l1 - l0 > t) if strict else (l1 - l0 >= t))  # the expressions it replaced
        assert all(np.array_equal(g, w) for g, w in zip(got, want)), f"threshold {t} strict {strict}"
        assert all(np.array_equal(g, w) for g, w in zip(cells_above(l0, l1, t, strict), want))
    for got, t in zip(outputs, (0.6, 0.5, 0.0, 1.0)):
        with np.errstate(invalid="ignore"):
            want = pnet_outputs(heads, t)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)
    if rows * cols > 100:  # the scan finds some cells and skips others, at and beside the exact margin
        assert 0 < len(compiled[0.1, True][0]) < rows * cols
        assert len(compiled[exact, True][0]) < len(compiled[exact, False][0])


@needs_compiled
def test_the_compiled_scan_compares_in_float32():
    # l1 - l0 is float32(1.1) - 1 = 0.10000002384, above 0.1 in float64 but equal to float32(0.1) + ...:
    # numpy compares a float32 array with a Python float in float32, and so must the scan
    l0, l1 = np.ones((1, 1), np.float32), np.full((1, 1), 1.1, np.float32)
    margin = float(l1[0, 0] - l0[0, 0])
    below = float(np.nextafter(np.float32(margin), np.float32(0)))
    between = (margin + below) / 2  # rounds to one of the two in float32, not between them in float64
    for t in (margin, below, between):
        for strict in (True, False):
            want = len(np.nonzero((l1 - l0 > t) if strict else (l1 - l0 >= t))[0])
            assert len(cells_above(l0, l1, t, strict)[0]) == want, f"{t!r} strict {strict}"


@needs_compiled
def test_the_compiled_scan_refuses_bad_input_with_value_error():
    l0, l1 = np.zeros((4, 5), np.float32), np.ones((4, 5), np.float32)
    out = np.empty((2, 20), np.int64)
    assert _area.above(l0, l1, 0.5, True, out) == 20  # the good call
    for what, args in {"planes of two shapes": (l0, l1[:3].copy(), 0.5, True, out),
                       "three-dimensional planes": (l0[None], l1[None], 0.5, True, out),
                       "float64 planes": (l0.astype(float), l1, 0.5, True, out),
                       "an output too small": (l0, l1, 0.5, True, out[:, :19].copy()),
                       "int32 output": (l0, l1, 0.5, True, out.astype(np.int32)),
                       "strided planes": (np.zeros((4, 10), np.float32)[:, ::2], l1, 0.5, True, out)}.items():
        with pytest.raises(ValueError):
            _area.above(*args)
            pytest.fail(f"accepted {what}")
    strided = np.zeros((4, 10), np.float32)[:, ::2]  # the Python side takes numpy for it instead
    assert [len(v) for v in cells_above(strided, l1, 0.5, True)] == [20, 20]


def test_a_huge_frames_float64_table_takes_the_numpy_code():
    huge = integral_image(np.full((3000, 3000, 3), 255, np.uint8))  # 2.3e9 does not fit int32
    assert huge.dtype == np.float64 and not onnx_mtcnn.compiled_table(huge)
    np.testing.assert_array_equal(area_resize(huge, 30, 30, (0, 2)), np.full((1, 3, 2, 30), 255.0))
    np.testing.assert_array_equal(area_crops(huge, *[np.array([v]) for v in (5, 5, 90, 90)], 24, normalised=True),
                                  np.full((1, 3, 24, 24), (255 - 127.5) / 128, np.float32))


def test_a_table_that_is_not_contiguous_takes_the_numpy_code():
    table = integral_image(np.random.default_rng(1).integers(0, 256, (40, 50, 3), dtype=np.uint8))
    strided = np.asfortranarray(table)
    assert not onnx_mtcnn.compiled_table(strided)
    np.testing.assert_array_equal(area_resize(strided, 20, 25), area_resize(table, 20, 25))


@needs_compiled
def test_the_compiled_kernels_refuse_bad_input_with_value_error():
    table = integral_image(np.zeros((10, 12, 3), np.uint8))  # (11, 13, 3)
    r0, r1, c0, c1 = (np.array(e) for e in resize_edges(11, 13, 5, 6))
    out = np.empty((1, 3, 5, 6), np.float32)
    _area.resize(table, r0, r1, c0, c1, out, False)  # the good call
    bad_calls = {
        "a row edge past the table": (table, r0, np.append(r1[:-1], 11), c0, c1, out),
        "a negative column edge": (table, r0, r1, np.append(-1, c0[1:]), c1, out),
        "an empty window": (table, r0, r0, c0, c1, out),
        "float64 edges": (table, r0.astype(float), r1, c0, c1, out),
        "a float32 table": (table.astype(np.float32), r0, r1, c0, c1, out),
        "a byte-swapped table": (table.astype(table.dtype.newbyteorder()), r0, r1, c0, c1, out),
        "a table of two channels": (np.ascontiguousarray(table[:, :, :2]), r0, r1, c0, c1, out),
        "an output too small": (table, r0, r1, c0, c1, out[:, :, :4]),
        "a read-only output": (table, r0, r1, c0, c1, np.frombuffer(bytes(out.nbytes), np.float32)),
        "a strided table": (table[:, ::2], r0, r1, c0, c1, out),
        "rows of two lengths": (table, r0, r1[:-1], c0, c1, out),
        "not a buffer": (table, r0, r1, c0, c1, "out"),
    }
    for what, args in bad_calls.items():
        with pytest.raises(ValueError):
            _area.resize(*args, False)
            pytest.fail(f"accepted {what}")
    ys0, ys1 = window_edges(np.array([2]), np.array([5]), 4)
    xs0, xs1 = window_edges(np.array([3]), np.array([6]), 4)
    crop = np.empty((1, 3, 4, 4), np.float32)
    _area.crops(table, ys0, ys1, xs0, xs1, 4, crop, True)
    for what, args in {"a crop past the table": (table, ys0 + 5, ys1 + 5, xs0, xs1, 4, crop),
                       "edges not n x size": (table, ys0, ys1, xs0, xs1, 3, crop),
                       "a size of 0": (table, ys0, ys1, xs0, xs1, 0, crop),
                       "an output of another size": (table, ys0, ys1, xs0, xs1, 4, out)}.items():
        with pytest.raises(ValueError):
            _area.crops(*args, False)
            pytest.fail(f"accepted {what}")


def test_a_detector_without_the_compiled_kernels_says_so_once(monkeypatch, caplog):
    numpy_only(monkeypatch)
    onnx_mtcnn.warn_numpy_kernels.cache_clear()
    with caplog.at_level("WARNING", logger=onnx_mtcnn.__name__):
        for _ in range(2):
            onnx_mtcnn.OnnxMTCNNDetector(runtime="onnx")
    said = [r.getMessage() for r in caplog.records if "not built" in r.getMessage()]
    assert len(said) == 1 and "C compiler" in said[0] and "20% slower" in said[0]
    monkeypatch.undo()
    caplog.clear()
    if _area is not None:  # built: nothing to say
        onnx_mtcnn.warn_numpy_kernels.cache_clear()
        onnx_mtcnn.OnnxMTCNNDetector(runtime="onnx")
        assert not [r for r in caplog.records if "not built" in r.getMessage()]


@needs_compiled
@pytest.mark.parametrize("runtime", ["onnx", "openvino"])
def test_a_detector_finds_the_same_faces_with_either_code(monkeypatch, fixtures_dir, runtime):
    # end to end: the numpy fallback and the compiled code give a detector the same boxes, scores and
    # landmarks, bit for bit, on real frames (the fixture clip, and a street scene of several faces)
    if runtime == "openvino":
        pytest.importorskip("openvino")
    from moodstream.shared.media import decode_image, iter_video

    frames = [item.decoded(10**8) for item in iter_video(str(fixtures_dir / "clip_360p.mp4"), max_frames=4)]
    frames += [decode_image((fixtures_dir / "images" / name).read_bytes(), 10**8)
               for name in ("street_640x360.jpg", "wider_0_Parade_Parade_0_275.jpg")]
    detector = onnx_mtcnn.OnnxMTCNNDetector(runtime=runtime)
    compiled = detector.detect(frames)
    numpy_only(monkeypatch)
    assert sum(len(f) for f in compiled) >= 5
    assert detector.detect(frames) == compiled
