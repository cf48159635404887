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
from moodstream.worker.runtime import cpu_info, describe, precisions_here, screened_nets

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
    v = report["videos"]["clip_360p.mp4"]
    assert v["resolution"] == "320x180" and v["frames"] == 3 and v["decode_fps"] > 0
    r = v["backends"]["onnx"]
    assert list(r["stages_ms_per_frame"]) == list(STAGES)
    assert sum(r["stages_share"].values()) == pytest.approx(1.0, abs=0.01)
    assert sum(r["stages_ms_per_frame"].values()) == pytest.approx(r["ms_per_frame"], rel=0.02)
    for net in NETS:  # every net ran, and its time is the stage's
        assert r["nets"][net]["calls_per_frame"] > 0 and r["nets"][net]["shapes"]
        assert r["nets"][net]["ms_per_frame"] == pytest.approx(r["stages_ms_per_frame"][net], abs=0.02)
    assert r["stages_ms_per_frame"]["pyramid"] > 0 and r["stages_ms_per_frame"]["nms"] > 0
    assert "| hamilton" not in res.output and "| clip_360p.mp4 | onnx | pnet |" in res.output
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
    assert (clf.confirm, clf.net) == (confirm, net)  # restored
