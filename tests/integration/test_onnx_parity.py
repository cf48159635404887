"""The torch-free ONNX Runtime backend against the torch path it replaces.

* The shipped ONNX files match their torch sources (facenet-pytorch's nets,
  the shipped emotion checkpoint: outputs to 1e-4, version and sha256).
* OnnxMTCNNDetector against facenet-pytorch's MTCNN (worker.detectors.mtcnn_reference.MTCNNDetector,
  one frame at a time): one-to-one box matches at IoU >= 0.95 for >= 99 % of
  the reference faces, at most 1 % extra faces.
* OnnxEmotionClassifier against worker.classify.EmotionClassifier on the same
  boxes: the same top emotion for >= 99 % of faces, probabilities within 0.02.
* Importing and running the backend leaves torch out of the process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from moodstream.shared.boxes import match_one_to_one
from moodstream.shared.labels import LABELS
from moodstream.shared.media import iter_video
from moodstream.shared.models import SHIPPED_CHECKPOINT, load_checkpoint
from moodstream.shared.settings import Settings
from moodstream.worker.detectors import Face
from moodstream.worker.framing import framing_for
from moodstream.worker.onnx_classify import OnnxEmotionClassifier
from moodstream.worker.detectors.onnx_mtcnn import OnnxMTCNNDetector
from moodstream.worker.onnx_session import EMOTION_FILE, INT8_FILES, MTCNN_FILES, ONNX_DIR, OPENVINO_DIR, open_session

REPO = Path(__file__).resolve().parents[2]
MATCH_IOU, MATCH_RATE, EXTRA_RATE = 0.95, 0.99, 0.01
TOP_RATE, PROB_TOL = 0.99, 0.02
BATCH = 8  # frames per detect() call for ours; the reference gets one at a time


def read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def video_frames(path: Path, n: int, every_n: int = 1) -> list[np.ndarray]:
    return [item.image for item in iter_video(str(path), every_n=every_n, max_frames=n)]


# --- the shipped files ---------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    from moodstream.trainer.export import export_all

    out = tmp_path_factory.mktemp("onnx")
    export_all(out)
    return out


@pytest.mark.parametrize("net,shape", [("pnet", (2, 3, 75, 131)), ("rnet", (9, 3, 24, 24)),
                                       ("onet", (9, 3, 48, 48))])
def test_shipped_mtcnn_files_match_their_sources(exported, net, shape):
    from moodstream.trainer.export import mtcnn_nets

    x = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
    with torch.inference_mode():
        want = [t.numpy() for t in mtcnn_nets()[net](torch.from_numpy(x))]
    # both forms (ONNX Runtime's; OpenVINO's in openvino/), shipped and freshly exported
    for folder in (ONNX_DIR, exported, ONNX_DIR / OPENVINO_DIR, exported / OPENVINO_DIR):
        got = open_session(folder / MTCNN_FILES[net]).run(None, {"input": x})
        if net == "pnet":  # one output: face logits, then the regression (merge_pnet_heads)
            (heads,) = got
            logits = heads[:, :2]
            e = np.exp(logits - logits.max(axis=1, keepdims=True))
            got = [heads[:, 2:], e / e.sum(axis=1, keepdims=True)]
        assert len(got) == len(want)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=0, atol=1e-4)


def test_shipped_files_are_reproducible(exported):
    for name in [*MTCNN_FILES.values(), *(f"{OPENVINO_DIR}/{f}" for f in MTCNN_FILES.values()), EMOTION_FILE]:
        assert (ONNX_DIR / name).read_bytes() == (exported / name).read_bytes(), name


def test_shipped_emotion_file_matches_the_shipped_checkpoint(exported):
    from moodstream.trainer.export import sha256_of

    ckpt = load_checkpoint()
    x = np.random.default_rng(1).normal(0, 1, (6, 1, ckpt.config.input_size, ckpt.config.input_size))
    x = x.astype(np.float32)
    with torch.inference_mode():
        want = ckpt.model(torch.from_numpy(x)).numpy()
    for folder in (ONNX_DIR, exported):
        session = open_session(folder / EMOTION_FILE)
        np.testing.assert_allclose(session.run(None, {"input": x})[0], want, rtol=0, atol=1e-4)
        meta = session.get_modelmeta().custom_metadata_map
        # a new shipped checkpoint must come with `moodstream export onnx` in the same commit
        assert meta["version"] == ckpt.version
        assert meta["checkpoint_sha256"] == sha256_of(SHIPPED_CHECKPOINT)
    clf = OnnxEmotionClassifier()
    assert clf.version == ckpt.version and clf.labels == ckpt.labels and clf.flip_tta
    assert (float(clf.mean), float(clf.std), clf.input_size) == pytest.approx(
        (ckpt.mean, ckpt.std, ckpt.config.input_size))
    np.testing.assert_allclose(clf.class_weights, np.exp(ckpt.class_bias), rtol=1e-6)


def test_shipped_files_are_small():
    sizes = {str(p.relative_to(ONNX_DIR)): p.stat().st_size for p in ONNX_DIR.rglob("*.onnx")}
    assert set(sizes) == {*MTCNN_FILES.values(), *(f"{OPENVINO_DIR}/{f}" for f in MTCNN_FILES.values()), EMOTION_FILE,
                          *(f"{OPENVINO_DIR}/{f}" for f in INT8_FILES.values())}
    # 12.8 MiB: fp16 weights where fp32 ones are kept (emotion.onnx 5.3 MB; the int8 file 4.1 MB, its
    # dense layers fp16); fp32 weights anywhere would overshoot
    assert sum(sizes.values()) < 14 * 2**20, sizes
    assert (ONNX_DIR / "ATTRIBUTION.md").is_file()


# --- parity with the torch path ----------------------------------------------------


@pytest.fixture(scope="module")
def reference():
    torch.set_num_threads(1)  # the same work as ours (one thread), and a quieter shared CPU
    return load_reference()


def load_reference():
    from moodstream.worker.classify import EmotionClassifier
    from moodstream.worker.detectors.mtcnn_reference import MTCNNDetector

    settings = Settings.from_env(env={}, device="cpu")
    return MTCNNDetector(settings), EmotionClassifier(load_checkpoint(), torch.device("cpu"), framing_for("mtcnn"))


@pytest.fixture(scope="module")
def ours():
    return OnnxMTCNNDetector(), OnnxEmotionClassifier(framing=framing_for("mtcnn"))


def boxes_of(faces: list[Face]) -> np.ndarray:
    return np.array([f.box for f in faces], dtype=np.float32).reshape(-1, 4)


def assert_parity(frames: list[np.ndarray], reference, ours) -> dict:
    ref_det, ref_clf = reference
    our_det, our_clf = ours
    ref_faces = [faces for frame in frames for faces in ref_det.detect([frame])]
    our_faces = [faces for i in range(0, len(frames), BATCH) for faces in our_det.detect(frames[i:i + BATCH])]
    assert len(our_faces) == len(frames)
    total = sum(len(f) for f in ref_faces)
    assert total > 0, "the reference found no face: the parity check would be empty"
    matched = extra = 0
    landmark_px = 0.0
    for ref, got in zip(ref_faces, our_faces):
        pairs = match_one_to_one(boxes_of(ref), boxes_of(got), MATCH_IOU)
        matched += len(pairs)
        extra += len(got) - len(pairs)
        for r, g in pairs:
            assert abs(ref[r].score - got[g].score) < 1e-3
            landmark_px = max(landmark_px, float(np.abs(np.subtract(ref[r].landmarks, got[g].landmarks)).max()))
    assert matched >= MATCH_RATE * total, f"{matched}/{total} reference faces matched at IoU >= {MATCH_IOU}"
    assert extra <= EXTRA_RATE * total, f"{extra} extra faces for {total} reference faces"
    assert landmark_px < 2.0

    # the classifiers on the same (reference) boxes
    boxes = [boxes_of(f) for f in ref_faces]
    want, got = ref_clf.predict(frames, boxes), our_clf.predict(frames, boxes)
    assert got.shape == want.shape == (total, 8) and got.dtype == np.float32
    same_top = float((want.argmax(1) == got.argmax(1)).mean())
    assert same_top >= TOP_RATE, f"top emotion agrees on {same_top:.3f} of faces"
    assert float(np.abs(want - got).max()) <= PROB_TOL
    return {"faces": total, "matched": matched, "extra": extra}


@pytest.fixture(scope="module")
def fixture_frames(fixtures_dir) -> list[np.ndarray]:
    images = sorted((fixtures_dir / "images").glob("*.jpg")) + sorted((REPO / "samples").glob("*.jpg"))
    return ([read_rgb(p) for p in images] + video_frames(fixtures_dir / "clip_360p.mp4", 12)
            + video_frames(REPO / "samples" / "hamilton_clip.mp4", 12, every_n=5))


@pytest.mark.slow
def test_parity_on_fixtures(fixture_frames, reference, ours):
    assert_parity(fixture_frames, reference, ours)


@pytest.mark.slow
def test_parity_on_wider_subset(shared_data, reference, ours):
    paths = sorted((shared_data / "wider_val_416" / "images").glob("*.jpg"))
    assert len(paths) == 200
    assert_parity([read_rgb(p) for p in paths], reference, ours)


@pytest.mark.slow
def test_parity_on_shared_videos(shared_data, reference, ours):
    videos = shared_data / "videos"
    assert_parity(video_frames(videos / "hamilton_360p.mp4", 8, every_n=10)
                  + video_frames(videos / "street_1080p.mp4", 2), reference, ours)


# --- behaviour ------------------------------------------------------------------------


def test_detector_output_types_and_order(ours, fixtures_dir):
    det, _ = ours
    street = read_rgb(fixtures_dir / "images" / "street_640x360.jpg")
    parade = read_rgb(fixtures_dir / "images" / "wider_0_Parade_Parade_0_545.jpg")
    frames = [parade, street, np.zeros((50, 60, 3), np.uint8), np.zeros_like(street), street]
    mixed = det.detect(frames)
    alone = [det.detect([f])[0] for f in frames]
    assert [len(f) for f in mixed] == [len(f) for f in alone] and mixed[2] == [] and mixed[3] == []
    assert len(mixed[1]) >= 4
    for got, want in zip(mixed, alone):
        assert len(match_one_to_one(boxes_of(want), boxes_of(got), 0.999)) == len(want)
    for face in mixed[1]:
        assert isinstance(face, Face) and all(isinstance(v, float) for v in face.box)
        assert face.box[0] < face.box[2] and face.box[1] < face.box[3]
        assert isinstance(face.score, float) and 0.9 <= face.score <= 1.0
        assert len(face.landmarks) == 5 and all(len(p) == 2 for p in face.landmarks)
    assert [f.score for f in mixed[1]] == sorted((f.score for f in mixed[1]), reverse=True)
    assert det.detect([]) == []
    assert det.detect([np.zeros((7, 5, 3), np.uint8), np.zeros((19, 400, 3), np.uint8)]) == [[], []]


class CountingNet:
    """A net whose runs are counted (the crops of each run)."""

    def __init__(self, net):
        self.net, self.runs = net, []

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        self.runs.append(len(x))
        return self.net.run(x)


@pytest.fixture(scope="module", params=["onnx", "openvino"])
def any_runtime_detector(request) -> OnnxMTCNNDetector:
    if request.param == "openvino":
        pytest.importorskip("openvino", reason="the openvino extra is not installed")
    return OnnxMTCNNDetector(runtime=request.param)


@pytest.mark.parametrize("budget_frames", [1, 2, 8])
def test_a_batch_shares_runs_across_frames_and_each_frame_gets_its_own_answer(any_runtime_detector, fixtures_dir,
                                                                              monkeypatch, budget_frames):
    """detect() takes a batch's frames through each stage together (PNet scale by scale,
    RNet / ONet crops of several frames in one run), in groups of one size within
    GROUP_TABLE_BYTES: every frame's faces are exactly those it gets alone, whatever the
    sizes' order and the group size, and a batch needs fewer RNet / ONet runs than its
    frames one by one."""
    from moodstream.worker.detectors import onnx_mtcnn

    det = any_runtime_detector
    street = read_rgb(fixtures_dir / "images" / "street_640x360.jpg")
    parade = read_rgb(fixtures_dir / "images" / "wider_0_Parade_Parade_0_545.jpg")
    hamilton = video_frames(REPO / "samples" / "hamilton_clip.mp4", 3, every_n=7)
    frames = [street, parade, hamilton[0], street[:, ::-1], np.zeros((30, 30, 3), np.uint8), parade[::-1],
              hamilton[1], street[::-1], hamilton[2]]
    alone = [det.detect([f])[0] for f in frames]
    assert sum(len(f) for f in alone) >= 15
    table_bytes = (street.shape[0] + 1) * (street.shape[1] + 1) * 12
    monkeypatch.setattr(onnx_mtcnn, "GROUP_TABLE_BYTES", budget_frames * table_bytes)
    rnet, onet = det.rnet, det.onet
    try:
        det.rnet, det.onet = CountingNet(rnet), CountingNet(onet)
        together = det.detect(frames)
        runs = len(det.rnet.runs) + len(det.onet.runs)
        det.rnet, det.onet = CountingNet(rnet), CountingNet(onet)
        for f in frames:
            det.detect([f])
        runs_alone = len(det.rnet.runs) + len(det.onet.runs)
    finally:
        det.rnet, det.onet = rnet, onet
    assert together == alone
    assert runs < runs_alone if budget_frames > 1 else runs == runs_alone


def test_rnet_and_onet_outputs_do_not_depend_on_the_run_size(any_runtime_detector):
    """A crop's RNet / ONet outputs are the same, bit for bit, in a run of any size up to
    the detector's chunk, as the detector runs them (``run_crops``): otherwise a frame's
    faces would depend on which frames share its batch (detect-every-N's key frames would
    not reproduce the every-frame faces, and the emotion crop of a box that moved by 1e-6 px
    can shift by a pixel). OpenVINO on a 2-core Zen 3 EPYC ran RNet runs of 81 crops or more
    with another kernel, 1.6e-7 off; on a 2-core Zen 5 EPYC ONet (fp32) ran a single crop
    with another kernel, 4e-8 off."""
    from moodstream.worker.detectors.onnx_mtcnn import area_crops, integral_image, normalise
    from moodstream.worker.onnx_session import run_crops

    det = any_runtime_detector
    frame = video_frames(REPO / "samples" / "hamilton_clip.mp4", 1)[0]
    h, w = frame.shape[:2]
    table = integral_image(frame)
    rng = np.random.default_rng(0)
    for net, chunk, size in ((det.rnet, det.rnet_chunk, 24), (det.onet, det.onet_chunk, 48)):
        side = rng.integers(12, min(h, w) // 2, chunk)
        x0, y0 = rng.integers(0, w - side), rng.integers(0, h - side)
        crops = normalise(area_crops(table, x0, y0, x0 + side, y0 + side, size))
        full = run_crops(net, crops)
        for n in range(1, chunk):
            for got, want in zip(run_crops(net, crops[:n]), full):
                np.testing.assert_array_equal(got, want[:n], err_msg=f"{size}x{size} crops, a run of {n} of {chunk}")


@pytest.mark.parametrize("runtime, precision", [("onnx", "fp32"), ("openvino", "fp32"), ("openvino", "int8")])
def test_a_faces_emotion_does_not_depend_on_how_many_faces_share_its_batch(runtime, precision):
    """The emotion net gives a face the same probabilities, bit for bit, whether it is
    classified alone, in a small batch or among 150 faces (300 crops with their mirror
    images): OpenVINO on a 2-core Zen 3 EPYC ran more than 80 crops a run with another
    kernel, so a face's probabilities moved with the number of faces in the batch."""
    if runtime == "openvino":
        pytest.importorskip("openvino", reason="the openvino extra is not installed")
    clf = OnnxEmotionClassifier(runtime=runtime, precision=precision)
    frames = video_frames(REPO / "samples" / "hamilton_clip.mp4", 3, every_n=5)
    rng = np.random.default_rng(1)
    boxes = []
    for frame in frames:
        h, w = frame.shape[:2]
        side = rng.uniform(24, 160, 50)
        x0, y0 = rng.uniform(0, w - side), rng.uniform(0, h - side)
        boxes.append(np.stack([x0, y0, x0 + side, y0 + side], axis=1).astype(np.float32))
    together = clf.predict(frames, boxes)
    assert together.shape == (150, len(LABELS))
    in_small_batches = np.concatenate([clf.predict([frame], [b[i:i + 7]]) for frame, b in zip(frames, boxes)
                                       for i in range(0, len(b), 7)])
    np.testing.assert_array_equal(together, in_small_batches)
    np.testing.assert_array_equal(together[:1], clf.predict(frames[:1], [boxes[0][:1]]))
    # without flip TTA a face alone is a run of one crop, which OpenVINO on a 2-core Zen 5 EPYC
    # ran with another kernel (fp32 and int8, 4e-8 off)
    clf = OnnxEmotionClassifier(runtime=runtime, precision=precision, flip_tta=False)
    together = clf.predict(frames, boxes)
    for k in (0, 77, 149):
        frame = k // 50
        np.testing.assert_array_equal(together[k:k + 1], clf.predict([frames[frame]], [boxes[frame][k % 50:][:1]]))


def test_table_buffers_are_kept_per_thread_and_size_within_the_budget(fixtures_dir, monkeypatch):
    """detect() writes the summed-area tables into buffers it keeps between calls (fresh
    memory costs its page faults each time): the same buffers for the same size, the
    right answers from reused buffers, one size at a time, none kept for a table over
    GROUP_TABLE_BYTES, and another thread gets its own."""
    import threading

    from moodstream.worker.detectors import onnx_mtcnn

    det = OnnxMTCNNDetector()
    street = read_rgb(fixtures_dir / "images" / "street_640x360.jpg")
    parade = read_rgb(fixtures_dir / "images" / "wider_0_Parade_Parade_0_545.jpg")
    flipped = np.ascontiguousarray(street[:, ::-1])
    want = det.detect([street, flipped])
    (shape, dtype), kept = det._local.tables
    assert shape == (361, 641, 3) and dtype is np.int32 and len(kept) == 2
    assert det.detect([flipped, street]) == want[::-1]  # reused buffers, each frame its own answer
    assert all(a is b for a, b in zip(det._local.tables[1], kept))
    det.detect([parade])
    assert det._local.tables[0][0] == (parade.shape[0] + 1, parade.shape[1] + 1, 3)  # another size replaces them
    others = []
    worker = threading.Thread(target=lambda: others.append((det.detect([street])[0], det._local.tables[1])))
    worker.start()
    worker.join()
    assert others[0][0] == want[0] and len(others[0][1]) == 1 and det._local.tables[0][0][0] == parade.shape[0] + 1
    monkeypatch.setattr(onnx_mtcnn, "GROUP_TABLE_BYTES", 1)  # every table alone is over it
    assert det.detect([street]) == want[:1] and det._local.tables[1] == []


def test_classifier_interface(ours, fixtures_dir):
    _, clf = ours
    street = read_rgb(fixtures_dir / "images" / "street_640x360.jpg")
    probs = clf.predict([street, street], [np.array([[100, 50, 140, 100]], np.float32), np.zeros((0, 4))])
    assert probs.shape == (1, 8) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    assert clf.labels == LABELS
    assert clf.predict([street], [np.zeros((0, 4))]).shape == (0, 8)


def test_bad_model_files_fail_with_model_errors(tmp_path):
    from moodstream.shared.errors import ConfigError, ModelError

    with pytest.raises(ModelError, match="not found"):
        OnnxMTCNNDetector(model_dir=tmp_path)
    (tmp_path / EMOTION_FILE).write_bytes(b"not an onnx file")
    with pytest.raises(ModelError, match="cannot be loaded"):
        OnnxEmotionClassifier(tmp_path / EMOTION_FILE)
    with pytest.raises(ModelError, match="not a moodstream emotion model"):
        OnnxEmotionClassifier(ONNX_DIR / MTCNN_FILES["onet"])
    with pytest.raises(ConfigError):
        OnnxMTCNNDetector(min_face_px=0)


def test_backend_runs_without_torch(fixtures_dir):
    code = f"""
import json, sys
import cv2
from moodstream.worker.onnx_classify import OnnxEmotionClassifier
from moodstream.worker.detectors.onnx_mtcnn import OnnxMTCNNDetector
frame = cv2.cvtColor(cv2.imread({str(fixtures_dir / "images" / "street_640x360.jpg")!r}), cv2.COLOR_BGR2RGB)
faces = OnnxMTCNNDetector().detect([frame])[0]
probs = OnnxEmotionClassifier().predict([frame], [[f.box for f in faces]])
print(json.dumps({{"faces": len(faces), "probs": list(probs.shape),
                  "torch": sorted(m for m in sys.modules if m == "torch" or m.startswith(("torch.", "facenet")))}}))
"""
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["faces"] >= 4 and out["probs"] == [out["faces"], 8]
    assert out["torch"] == []


def test_export_with_a_bad_checkpoint_writes_nothing(tmp_path):
    """`export onnx --checkpoint bad` wrote the three MTCNN files before failing: with the default
    --out, over the package's own files."""
    from click.testing import CliRunner

    from moodstream.cli import cli

    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["export", "onnx", "--out", str(out), "--checkpoint", str(tmp_path / "bad.pt")])
    assert result.exit_code != 0 and "bad.pt" in result.output, result.output
    assert not out.exists() or not any(out.rglob("*"))
