"""moodstream.worker.crop: FER-style framing, roi_align crops, border handling, and the measured framing itself."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from moodstream.trainer.bench.framing import fer_probes, measure_framing
from moodstream.worker import crop
from moodstream.worker.crop import FRAMING, Framing, crop_faces, framing_for, square_boxes, to_gray

CPU = torch.device("cpu")


def test_square_boxes_geometry():
    boxes = torch.tensor([[10.0, 20.0, 50.0, 80.0]])  # w 40, h 60, centre (30, 50)
    [sq] = square_boxes(boxes, Framing(scale=1.5, dx=0.25, dy=-0.1)).tolist()
    side = 1.5 * math.sqrt(40 * 60)
    assert sq[2] - sq[0] == pytest.approx(side) and sq[3] - sq[1] == pytest.approx(side)
    assert (sq[0] + sq[2]) / 2 == pytest.approx(30 + 0.25 * 40)
    assert (sq[1] + sq[3]) / 2 == pytest.approx(50 - 0.1 * 60)


def test_framing_per_detector():
    assert framing_for("mtcnn") is FRAMING["mtcnn"] and framing_for("haar") is FRAMING["haar"]
    assert framing_for("something-else") is FRAMING["mtcnn"]
    assert 0.9 < FRAMING["mtcnn"].scale < 1.3 and 0.9 < FRAMING["haar"].scale < 1.3


def test_gray_uses_luma_weights():
    frames = torch.zeros((1, 2, 2, 3), dtype=torch.uint8)
    frames[0, 0, 0] = torch.tensor([255, 0, 0])
    frames[0, 1, 1] = torch.tensor([255, 255, 255])
    gray = to_gray(frames)
    assert gray.shape == (1, 1, 2, 2)
    assert gray[0, 0, 0, 0].item() == pytest.approx(0.299, abs=1e-4)
    assert gray[0, 0, 1, 1].item() == pytest.approx(1.0, abs=1e-4)


def test_crop_covers_exactly_the_box():
    frame = np.zeros((120, 200, 3), np.uint8)
    frame[40:90, 100:150] = 255  # a white 50x50 square
    box = [np.array([[100, 40, 150, 90]], np.float32)]
    crops = crop_faces([frame], box, Framing(1.0), 48, CPU)
    assert crops.shape == (1, 1, 48, 48) and crops.dtype == torch.float32
    assert crops[0, 0, 1:-1, 1:-1].min().item() > 0.99  # inside: all white
    assert crops[0, 0].min().item() > 0.7  # the outer ring samples within half a pixel of the edge
    wider = crop_faces([frame], box, Framing(2.0), 48, CPU)
    assert wider[0, 0, 14:34, 14:34].min().item() > 0.99  # centred ...
    assert wider[0, 0, :10].max().item() < 0.01 and wider[0, 0, :, :10].max().item() < 0.01  # ... in a black margin


def test_crops_keep_frame_and_box_order_across_sizes(monkeypatch):
    shades = [40, 200, 120, 90]
    frames = [np.full((100, 120, 3), shades[0], np.uint8), np.full((80, 80, 3), shades[1], np.uint8),
              np.full((100, 120, 3), shades[2], np.uint8), np.full((80, 80, 3), shades[3], np.uint8)]
    box = [10, 10, 40, 40]
    boxes = [np.array([box, box], np.float32), np.array([box], np.float32), np.zeros((0, 4), np.float32),
             np.array([box, box, box], np.float32)]
    crops = crop_faces(frames, boxes, FRAMING["mtcnn"], 32, CPU)
    expected = [shades[0]] * 2 + [shades[1]] + [shades[3]] * 3
    assert crops.shape == (6, 1, 32, 32)
    assert crops.mean(dim=(1, 2, 3)).tolist() == pytest.approx([s / 255 for s in expected], abs=1e-3)
    assert crop_faces(frames, [np.zeros((0, 4), np.float32)] * 4, FRAMING["mtcnn"], 32, CPU).shape == (0, 1, 32, 32)
    monkeypatch.setattr("moodstream.worker.crop.CHUNK_PIXELS", 1)  # one frame per roi_align call: same crops
    torch.testing.assert_close(crop_faces(frames, boxes, FRAMING["mtcnn"], 32, CPU), crops)


def test_box_past_the_edge_replicates_the_border():
    # left half grey 100, right half 200; a face box hanging 30 px off the left edge
    frame = np.full((100, 160, 3), 200, np.uint8)
    frame[:, :80] = 100
    crops = crop_faces([frame], [np.array([[-30, 20, 30, 80]], np.float32)], Framing(1.0), 48, CPU)
    values = crops[0, 0]
    assert values.min().item() == pytest.approx(100 / 255, abs=1e-3)  # no black fill from outside the frame
    assert values.max().item() == pytest.approx(100 / 255, abs=1e-3)
    # a box far larger than the frame still gives a crop without NaN / zeros
    huge = crop_faces([frame], [np.array([[-500, -500, 700, 700]], np.float32)], Framing(1.0), 48, CPU)
    assert torch.isfinite(huge).all() and huge.min().item() > 0.3


def test_fer_framing_reproduces_fer_crops(fixtures_dir, pipeline):
    """FER+ faces, upscaled and set in a larger frame, come back out of detect +
    crop looking like the original 48x48 images, closer than with the bare box."""
    probes, originals = fer_probes(fixtures_dir / "ferplus", 40)
    result = measure_framing(probes, originals, pipeline.detector)
    assert result["images"] == 40 and result["found"] >= 30
    corr = result["correlation_by_scale"]
    assert corr[FRAMING["mtcnn"].scale] > 0.55
    assert corr[FRAMING["mtcnn"].scale] > corr[1.0] + 0.03  # the margin matters
    # the measurement on these 40 agrees with the constants measured on 600
    assert result["framing"]["scale"] == pytest.approx(FRAMING["mtcnn"].scale, abs=0.1)
    assert abs(result["framing"]["dx"]) < 0.1 and abs(result["framing"]["dy"]) < 0.1


@pytest.mark.gpu
def test_crops_on_cuda_match_cpu():
    frame = np.random.default_rng(0).integers(0, 255, (90, 160, 3), dtype=np.uint8)
    boxes = [np.array([[-10, 5, 50, 70], [60, 20, 150, 88]], np.float32)]
    cpu = crop_faces([frame], boxes, FRAMING["mtcnn"], 48, CPU)
    gpu = crop_faces([frame], boxes, FRAMING["mtcnn"], 48, torch.device("cuda"))
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=0)


def test_resident_frames_are_cropped_where_they_are(monkeypatch):
    """Frames a detector already holds on the device are cropped from there, not stacked and uploaded again
    (on an H200 the second upload of 16 1080p frames cost about a fifth of a batch)."""
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (90, 120, 3), dtype=np.uint8) for _ in range(3)] + \
             [rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)]
    boxes = [np.array([[10, 10, 50, 60]], np.float32), np.zeros((0, 4), np.float32),
             np.array([[30, 20, 90, 80], [0, 0, 40, 40]], np.float32), np.array([[5, 5, 40, 50]], np.float32)]
    uploads = []
    real_upload = crop._upload
    monkeypatch.setattr(crop, "_upload", lambda fs, device: uploads.append(len(fs)) or real_upload(fs, device))
    expected = crop_faces(frames, boxes, FRAMING["mtcnn"], 32, CPU)
    assert uploads == [2, 1]  # frames without boxes are not touched
    # the detector's uploads: the 90x120 frames in one tensor, in its own order; the small frame in another
    big = torch.from_numpy(np.stack([frames[2], frames[1], frames[0]]))
    resident = {0: (big, 2), 1: (big, 1), 2: (big, 0), 3: (torch.from_numpy(frames[3][None].copy()), 0)}
    uploads.clear()
    torch.testing.assert_close(crop_faces(frames, boxes, FRAMING["mtcnn"], 32, CPU, resident=resident),
                               expected, rtol=0, atol=0)
    assert uploads == []  # nothing stacked or uploaded again
    # the resident pixels are the ones cropped: change them there and the crops follow
    inverted = {i: (255 - t, j) for i, (t, j) in resident.items()}
    assert torch.allclose(crop_faces(frames, boxes, FRAMING["mtcnn"], 32, CPU, resident=inverted),
                          1 - expected, atol=1e-5)
    # a frame the detector did not hold is uploaded as before, the rest still come from the device
    partial = {i: resident[i] for i in (0, 1, 2)}
    torch.testing.assert_close(crop_faces(frames, boxes, FRAMING["mtcnn"], 32, CPU, resident=partial),
                               expected, rtol=0, atol=0)
    assert uploads == [1]
    monkeypatch.setattr("moodstream.worker.crop.CHUNK_PIXELS", 1)  # chunks of one frame, gathered one by one
    torch.testing.assert_close(crop_faces(frames, boxes, FRAMING["mtcnn"], 32, CPU, resident=resident),
                               crop_faces(frames, boxes, FRAMING["mtcnn"], 32, CPU), rtol=0, atol=0)
