"""The CPU path needs no torch (issue 14): `analyze` and a worker run with torch,
torchvision and facenet-pytorch made unimportable, on the ONNX Runtime backend;
without onnxruntime either, the command says which extra to install."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BLOCK = ("import sys\n"
         "for name in {blocked}:\n"
         "    sys.modules[name] = None  # import raises ImportError, as where it is not installed\n"
         "from moodstream.cli import main\n"
         "sys.argv = ['moodstream', *sys.argv[1:]]\n"
         "try:\n"
         "    main()\n"
         "finally:\n"
         "    leaked = [m for m in ('torch', 'torchvision', 'facenet_pytorch') if sys.modules.get(m) is not None]\n"
         "    print('LEAKED', leaked, file=sys.stderr)\n")


def _run(blocked: tuple[str, ...], *args: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "MOODSTREAM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", BLOCK.format(blocked=list(blocked)), *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)


def test_analyze_runs_without_torch():
    out = _run(("torch", "torchvision", "facenet_pytorch"), "analyze", "samples/street.jpg")
    assert out.returncode == 0, out.stderr[-3000:]
    record = json.loads(out.stdout.splitlines()[0])
    assert len(record["faces"]) >= 3 and record["model_version"]
    assert "LEAKED []" in out.stderr


def test_without_any_backend_one_line_names_the_extra():
    # with no runtime at all: ONNX Runtime and OpenVINO both read the ONNX files, either one serves
    out = _run(("torch", "torchvision", "facenet_pytorch", "onnxruntime", "openvino"), "analyze", "samples/street.jpg")
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "moodstream[cpu]" in out.stderr and "moodstream[worker]" in out.stderr


def test_a_worker_serves_frames_without_torch(redis_url):
    import cv2

    from moodstream.producer.client import Producer
    from moodstream.producer.results import FROM_START, ResultReader
    from moodstream.shared.settings import Settings

    settings = Settings.from_env({}, redis_url=redis_url, prefix="tf")
    producer = Producer(settings)
    data = cv2.imencode(".jpg", cv2.imread(str(REPO / "samples" / "street.jpg")))[1].tobytes()
    ids = [producer.submit_image(data, source="street", frame=i).job_id for i in range(3)]
    # a [cpu] install: ONNX Runtime without OpenVINO (with both, auto may measure OpenVINO faster here)
    out = _run(("torch", "torchvision", "facenet_pytorch", "openvino"), "worker", "--redis-url", redis_url,
               "--prefix", "tf", "--max-frames", "3")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "LEAKED []" in out.stderr and "backend onnx" in out.stderr
    got = list(ResultReader(settings).read(start=FROM_START, count=3, timeout_s=10))
    assert sorted(r.job_id for r in got) == sorted(ids) and all(r.ok and len(r.faces) >= 3 for r in got)


def test_trainer_commands_without_torch_name_the_train_extra(tmp_path):
    # a [cpu] install has onnxruntime but no torch: suggesting [cpu] again would not help
    out = _run(("torch", "torchvision", "facenet_pytorch"), "eval", "--data", str(tmp_path), "--split", "test")
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert "moodstream[train]" in out.stderr and "moodstream[cpu]" not in out.stderr, out.stderr[-2000:]


def _cpu_install(tmp_path: Path) -> dict[str, str]:
    """The environment of a [cpu] venv: torch (and OpenVINO, the [openvino] extra) unimportable in
    this process and every one it spawns."""
    (tmp_path / "sitecustomize.py").write_text("import sys\nfor name in ('torch', 'torchvision', 'facenet_pytorch', "
                                               "'openvino'):\n    sys.modules[name] = None\n")
    return {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "MOODSTREAM_THREADS": "1", "PYTHONPATH": str(tmp_path)}


def test_service_benchmark_runs_in_a_cpu_install(redis_url, tmp_path):
    """`bench stream` measures what a worker install ships: in a [cpu] venv (torch unimportable
    here and in the workers it spawns) it measures the worker the default settings run; it asked for torch."""
    env = _cpu_install(tmp_path)
    out = subprocess.run([sys.executable, "-m", "moodstream", "bench", "stream", "--video", "samples/hamilton_clip.mp4",
                          "--frames", "2", "--warmup", "0", "--latency-frames", "1", "--redis-url", redis_url,
                          "--timeout-s", "240", "--out", str(tmp_path / "stream.json")],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stdout[-2000:] + out.stderr[-2000:]
    report = json.loads((tmp_path / "stream.json").read_text())
    assert list(report["runs"]) == ["auto"] and report["runs"]["auto"]["throughput"]["frames"] == 2, report


def test_bench_encoding_runs_in_a_cpu_install(tmp_path):
    out = subprocess.run([sys.executable, "-m", "moodstream", "bench", "encoding", "--max-frames", "2", "--json"],
                         cwd=REPO, env=_cpu_install(tmp_path), capture_output=True, text=True, timeout=400)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr[-2000:]
    report = json.loads(out.stdout)
    assert report["backend"] == "onnx" and report["videos"][0]["frames"] == 2, report


def test_a_benchmark_without_torch_names_the_train_extra():
    # bench video needs torch: the hint must say [train] for `bench video`, not [cpu] for `video`
    out = _run(("torch", "torchvision", "facenet_pytorch"), "bench", "video", "--frames", "2",
               "--videos", str(REPO / "samples"))  # an existing folder: its default lies in ../shared
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert "moodstream bench video" in out.stderr and "moodstream[train]" in out.stderr, out.stderr[-2000:]
