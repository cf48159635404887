"""moodstream.worker.detectors.mtcnn_ops: each batched op against the facenet-pytorch step it replaces."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from facenet_pytorch.models.utils import detect_face as fn
from torch.nn.functional import interpolate
from torchvision.ops import nms

from moodstream.worker.detectors.mtcnn_ops import (_group_chunks, area_crops, grouped_nms, grouped_nms_min, integral_image, pad_boxes, pyramid_scales,
                              rerec, table_dtype)


def facenet_scales(h, w, minsize, factor):  # the loop inside detect_face
    m = 12.0 / minsize
    minl, scale, scales = min(h, w) * m, m, []
    while minl >= 12:
        scales.append(scale)
        scale, minl = scale * factor, minl * factor
    return scales


@pytest.mark.parametrize("h,w,minsize", [(1080, 1920, 20), (360, 640, 20), (180, 320, 40), (19, 30, 20)])
def test_pyramid_scales_are_facenets(h, w, minsize):
    assert pyramid_scales(h, w, minsize, 0.709) == facenet_scales(h, w, minsize, 0.709)


def test_pyramid_is_empty_below_the_smallest_face():
    assert pyramid_scales(7, 5, 20, 0.709) == []


def test_area_crops_equal_interpolate_area():
    gen = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (2, 61, 83, 3), dtype=torch.uint8, generator=gen)
    table = integral_image(frames)
    imgs = frames.permute(0, 3, 1, 2).float()
    # downscaling, upscaling (crop smaller than the output), one pixel, the whole frame
    rects = [(0, 5, 3, 60, 50), (1, 10, 20, 17, 31), (0, 40, 40, 41, 41), (1, 0, 0, 83, 61), (0, 70, 2, 83, 59)]
    idx, x0, y0, x1, y1 = (torch.tensor(v) for v in zip(*rects))
    for size in (24, 48):
        got = area_crops(table, idx, x0, y0, x1, y1, size)
        for k, (b, a0, b0, a1, b1) in enumerate(rects):
            want = interpolate(imgs[b:b + 1, :, b0:b1, a0:a1], size=(size, size), mode="area")[0]
            torch.testing.assert_close(got[k], want, rtol=0, atol=1e-4)


def test_integral_image_is_exact_and_widens_for_huge_frames():
    frames = torch.full((1, 5, 4, 3), 255, dtype=torch.uint8)
    table = integral_image(frames)
    assert table.dtype == torch.int32 and table.shape == (1, 6, 5, 3) and table[0, -1, -1, 0] == 5 * 4 * 255
    assert table_dtype(2160, 3840) == torch.int32  # 4K: 2.1e9 fits
    assert table_dtype(3000, 3000) == torch.int64


def random_boxes(n, gen, span=200.0):
    xy = torch.rand(n, 2, generator=gen) * span
    wh = 5 + torch.rand(n, 2, generator=gen) * 40
    return torch.cat([xy, xy + wh], 1)


@pytest.mark.parametrize("max_boxes", [16384, 70])
def test_grouped_nms_is_nms_per_group(max_boxes):
    gen = torch.Generator().manual_seed(1)
    boxes, scores = random_boxes(300, gen), torch.rand(300, generator=gen)
    groups = torch.sort(torch.randint(0, 7, (300,), generator=gen)).values
    want = torch.cat([nms(boxes[groups == g], scores[groups == g], 0.5).sort().values
                      + int(torch.nonzero(groups == g)[0]) for g in groups.unique()]).sort().values
    assert torch.equal(grouped_nms(boxes, scores, groups, 0.5, max_boxes=max_boxes), want)
    assert grouped_nms(boxes[:0], scores[:0], groups[:0], 0.5).numel() == 0


def test_grouped_nms_min_is_facenets_numpy_nms():
    gen = torch.Generator().manual_seed(2)
    for n in (1, 5, 40, 200):
        boxes, scores = random_boxes(n, gen, span=80.0), torch.rand(n, generator=gen)
        groups = torch.randint(0, 3, (n,), generator=gen)
        want = fn.batched_nms_numpy(boxes, scores, groups, 0.7, "Min")
        assert grouped_nms_min(boxes, scores, groups, 0.7).tolist() == want.tolist()
        # in runs of whole groups when capped: same boxes kept
        capped = grouped_nms_min(boxes, scores, groups, 0.7, max_boxes=max(1, n // 3))
        assert sorted(capped.tolist()) == sorted(want.tolist())
    assert grouped_nms_min(boxes[:0], scores[:0], groups[:0], 0.7).numel() == 0


def test_group_chunks_cut_between_groups():
    groups = torch.tensor([0, 0, 0, 1, 2, 2, 2, 2, 2, 3])
    assert _group_chunks(groups, 4) == [(0, 4), (4, 9), (9, 10)]  # group 2 (5 boxes) alone
    assert _group_chunks(groups, 100) == [(0, 10)]


def test_pad_boxes_is_facenets_pad():
    boxes = torch.tensor([[-5.7, -0.2, 30.9, 40.1], [10.2, 12.8, 99.5, 70.0], [3.0, 4.0, 9.9, 9.1],
                          [120.0, 5.0, 140.0, 25.0]])  # the last starts right of a 100 px frame
    x0, y0, x1, y1, valid = pad_boxes(boxes, 100, 60)
    y, ey, x, ex = fn.pad(boxes.clone(), 100, 60)
    assert valid.tolist() == [True, True, True, False]
    assert x0[:3].tolist() == (x - 1)[:3].tolist() and x1[:3].tolist() == ex[:3].tolist()
    assert y0[:3].tolist() == (y - 1)[:3].tolist() and y1[:3].tolist() == ey[:3].tolist()


def test_rerec_makes_squares_like_facenet():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 20.0, 0.9], [5.0, 5.0, 25.0, 9.0, 0.8]])
    assert torch.equal(rerec(boxes.clone()), fn.rerec(boxes.clone()))
    sq = rerec(boxes.clone())
    np.testing.assert_allclose((sq[:, 2] - sq[:, 0]).numpy(), (sq[:, 3] - sq[:, 1]).numpy())
