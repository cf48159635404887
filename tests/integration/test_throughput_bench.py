"""``moodstream bench throughput`` and ``bench profile`` on a few frames of the
fixture clip: the JSON contract of issue 26 (per video: the old keys, plus the
CPU model and ISA flags, precision, the match at IoU 0.5, the decode ceiling)
and a profile that accounts for the pipeline's time stage by stage."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from moodstream.trainer.bench.profile import NETS, STAGES, profile_cmd
from moodstream.trainer.bench.throughput import throughput_cmd
from moodstream.worker.detectors.onnx_mtcnn import area_kernels
from moodstream.worker.runtime import cpu_info, describe, first_layers_here, precisions_here, screened_nets

pytest.importorskip("onnxruntime")
ISA = {"avx2", "avx512", "vnni", "avx512_bf16", "amx"}


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_throughput_json_keys(fixtures_dir, tmp_path, backend):
    if backend == "openvino":
        pytest.importorskip("openvino")
    md = tmp_path / "t.md"
    res = CliRunner().invoke(throughput_cmd, ["--videos", str(fixtures_dir), "--video", "clip_360p.mp4",
                                              "--device", "cpu", "--frames", "2", "--backend", backend,
                                              "--repeats", "2", "--decode-frames", "10", "--json",
                                              "--markdown", str(md)])
    assert res.exit_code == 0, res.output
    r = json.loads(res.output)["clip_360p.mp4"]
    for key in ("baseline_fps", "ours_fps", "ratio", "box_match_rate", "emotion_agreement", "backend",
                "cpu", "precision", "box_match_rate_50", "cpu_isa", "decode_fps", "ours_share_of_decode",
                "ratio_cpu_time"):
        assert key in r, key
    # precision auto: what this CPU runs (bf16 for some nets on openvino where it has native bf16, the
    # emotion net as measured here)
    want = describe(precisions_here("auto", backend), screened_nets("auto", backend, cpu_info()))
    assert r["backend"] == backend and r["precision"] == want and r["repeats"] == 2
    assert r["cpu"] == cpu_info().model and set(r["cpu_isa"]) == ISA
    assert r["cpu_isa"] == {k: v for k, v in cpu_info().to_dict().items() if k != "model"}
    assert r["box_match_rate"] == r["box_match_rate_50"] == 1.0 and r["emotion_agreement"] == 1.0
    assert r["area_kernels"] == area_kernels()  # the pyramid and crops compiled, or numpy where not built
    # the nets whose first layers ran compiled: none on ONNX Runtime, on OpenVINO what was measured here
    want_first = [] if backend == "onnx" else list(first_layers_here(
        backend, precisions_here("auto", backend), screened_nets("auto", backend, cpu_info())))
    assert r["first_layers_compiled"] == want_first
    assert r["decode_fps"] > 0
    assert r["ours_share_of_decode"] == pytest.approx(r["ours_fps"] / r["decode_fps"], abs=1e-4)
    text = md.read_text()
    assert cpu_info().model in text and "IoU>=0.5" in text and "decode fps" in text


def test_profile_accounts_for_the_time(fixtures_dir, tmp_path):
    out = tmp_path / "p.json"
    res = CliRunner().invoke(profile_cmd, ["--videos", str(fixtures_dir), "--video", "clip_360p.mp4", "--frames", "3",
                                           "--backend", "onnx", "--decode-frames", "10", "--out", str(out),
                                           "--markdown", str(tmp_path / "p.md")])
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())
    assert report["cpu"]["model"] == cpu_info().model and ISA <= set(report["cpu"])
    assert report["area_kernels"] == area_kernels()
    assert f"pyramid and crops {area_kernels()}; first layers compiled: none" in (tmp_path / "p.md").read_text()
    assert report["videos"]["clip_360p.mp4"]["backends"]["onnx"]["first_layers_compiled"] == []
    v = report["videos"]["clip_360p.mp4"]
    assert v["resolution"] == "320x180" and v["frames"] == 3 and v["decode_fps"] > 0
    r = v["backends"]["onnx"]
    assert list(r["stages_ms_per_frame"]) == list(STAGES)
    assert sum(r["stages_share"].values()) == pytest.approx(1.0, abs=0.01)
    assert sum(r["stages_ms_per_frame"].values()) == pytest.approx(r["ms_per_frame"], rel=0.02)
    for net in NETS:  # every net ran, and its time is the stage's
        assert r["nets"][net]["calls_per_frame"] > 0 and r["nets"][net]["shapes"]
        assert r["nets"][net]["ms_per_frame"] == pytest.approx(r["stages_ms_per_frame"][net], abs=0.02)
        # ONNX Runtime runs each net once, in fp32: one part, the whole net
        (part,) = r["nets"][net]["parts"].items()
        assert part[0] == "fp32" and part[1]["calls_per_frame"] == r["nets"][net]["calls_per_frame"]
        assert part[1]["ms_per_frame"] == pytest.approx(r["nets"][net]["ms_per_frame"], abs=0.02)
        assert part[1]["items_per_frame"] >= part[1]["calls_per_frame"]
    assert r["stages_ms_per_frame"]["pyramid"] > 0 and r["stages_ms_per_frame"]["nms"] > 0
    assert "| hamilton" not in res.output and "| clip_360p.mp4 | onnx | pnet |" in res.output
    assert "| clip_360p.mp4 | onnx | pnet | fp32 |" in res.output  # the per-part table
    # instrumentation is undone: the module functions are the plain ones again
    from moodstream.worker.detectors import onnx_mtcnn

    assert onnx_mtcnn.nms.__module__ == "moodstream.worker.detectors.onnx_mtcnn" and onnx_mtcnn.nms.__name__ == "nms"


def test_profile_counts_the_fp32_reruns_as_the_emotion_nets_time(settings, fixtures_dir):
    """int8's (bf16's with AMX) close calls run again on a second, fp32 emotion net
    (onnx_classify.CONFIRM_MARGINS): its runs are the emotion net's time too, not "other" (which
    they were on a Zen 5)."""
    pytest.importorskip("openvino", reason="the openvino extra is not installed")
    import cv2
    import numpy as np

    from moodstream.trainer.bench.profile import Clock, instrumented
    from moodstream.worker.framing import framing_for
    from moodstream.worker.onnx_classify import OnnxEmotionClassifier
    from moodstream.worker.pipeline import Pipeline

    pipeline = Pipeline(settings.replace(backend="openvino", precision="auto"))
    # int8 whatever auto measured here (fp32 where int8 does not pay, as on a Zen 1: nothing to rerun)
    clf = pipeline.classifier = OnnxEmotionClassifier(framing=framing_for(pipeline.detector.name),
                                                      threads=pipeline.threads, runtime="openvino", precision="int8")
    assert clf.confirm is not None
    confirm, net = clf.confirm, clf.net
    paths = sorted((fixtures_dir / "ferplus" / "FER2013Test").glob("*.png"))
    faces = np.stack([cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in paths]).astype(np.float32)[:, None] / 255
    top2 = np.sort(clf.predict_crops(faces), axis=1)[:, -2:]
    tie = faces[np.flatnonzero(top2[:, 1] - top2[:, 0] < clf.confirm_margin)[:1]]  # a close call of FER+ Test's
    assert len(tie) == 1
    clock, before = Clock(), clf.faces_confirmed
    with instrumented(pipeline, clock):
        clf.predict_crops(tie)
    assert clf.faces_confirmed == before + 1
    assert clock.calls["emotion_net"] == 2  # int8 (or bf16), then fp32 on the close call
    assert clock.shapes["emotion_net"] == {"2x1x48x48": 2}  # the face and its mirror image, each time
    # each part on its own: int8's run of the face and its mirror image, then fp32's rerun of both
    assert set(clock.parts) == {("emotion_net", "int8"), ("emotion_net", "fp32 reruns")}
    for part in clock.parts.values():
        assert part.calls == 1 and part.items == 2 and part.seconds > 0
    assert sum(p.seconds for p in clock.parts.values()) == pytest.approx(clock.seconds["emotion_net"])
    assert (clf.confirm, clf.net) == (confirm, net)  # restored


def test_profile_splits_a_screened_net_into_its_screen_and_its_reruns(fixtures_dir):
    """A screened net (worker.runtime.AUTO_SCREENED) runs twice: its bf16 screen on every input, its
    own precision on what the screen leaves near the threshold. The profile times the two apart,
    so the reruns' cost shows (on a Zen 4 at 360p they were 42% of PNet's time). The screens here
    are fp32 nets, so that any CPU runs the test: the accounting is the same."""
    pytest.importorskip("openvino", reason="the openvino extra is not installed")
    from moodstream.trainer.bench.profile import Clock, instrumented
    from moodstream.shared.media import decode_image
    from moodstream.shared.settings import Settings
    from moodstream.worker.detectors.onnx_mtcnn import PNET_SCREEN_MIN_PIXELS, OnnxMTCNNDetector
    from moodstream.worker.onnx_session import MTCNN_FILES, ONNX_DIR, net_file, open_net
    from moodstream.worker.pipeline import Pipeline

    frames = [decode_image(p.read_bytes(), 10**7) for p in sorted((fixtures_dir / "images").glob("*.jpg"))]
    assert max(f.shape[0] * f.shape[1] for f in frames) * 0.6**2 >= PNET_SCREEN_MIN_PIXELS  # PNet screens a scale
    pipeline = Pipeline(Settings(backend="openvino", precision="fp32", device="cpu"))
    det = pipeline.detector = OnnxMTCNNDetector(runtime="openvino")
    det.screens = {k: open_net(net_file(ONNX_DIR, f, "openvino"), 1, "openvino", "fp32") if k != "onet" else None
                   for k, f in MTCNN_FILES.items()}
    clock = Clock()
    with instrumented(pipeline, clock):
        det.detect(frames)
    for net in ("pnet", "rnet"):
        screen, own = clock.parts[(net, "fp32 screen")], clock.parts[(net, "fp32")]
        assert screen.calls > 0 and own.calls > 0
        assert screen.seconds + own.seconds == pytest.approx(clock.seconds[net])
    # RNet's screen sees every crop, its own runs only those near or over the threshold
    assert clock.parts[("rnet", "fp32")].items < clock.parts[("rnet", "fp32 screen")].items
    assert set(clock.parts) >= {("onet", "fp32")} and ("onet", "fp32 screen") not in clock.parts
