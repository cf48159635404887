"""shared.devices.strict_fp32: fp32 arithmetic as written on a GPU inside, the caller's settings after."""

import pytest

torch = pytest.importorskip("torch")

from moodstream.shared.devices import strict_fp32  # noqa: E402


@pytest.fixture
def tf32_on():
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def test_tf32_is_off_inside_and_the_callers_setting_returns(tf32_on):
    with strict_fp32():
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32


def test_the_callers_setting_returns_after_an_error(tf32_on):
    with pytest.raises(ValueError), strict_fp32():
        raise ValueError("boom")
    assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32


def test_the_gpu_paths_run_inside_it(monkeypatch):
    """The batched MTCNN and the torch emotion classifier compute with TF32 off (GPU parity)."""
    import numpy as np

    from moodstream.shared.models import load_checkpoint
    from moodstream.shared.settings import Settings
    from moodstream.worker.classify import EmotionClassifier
    from moodstream.worker.crop import FRAMING
    from moodstream.worker.detectors.mtcnn_batched import BatchedMTCNNDetector

    seen = []
    real_conv = torch.nn.Conv2d.forward

    def conv(self, x):
        seen.append(torch.backends.cudnn.allow_tf32)
        return real_conv(self, x)

    monkeypatch.setattr(torch.nn.Conv2d, "forward", conv)
    torch.backends.cudnn.allow_tf32 = True
    frame = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    BatchedMTCNNDetector(Settings.from_env(env={}, device="cpu")).detect([frame])
    EmotionClassifier(load_checkpoint(), torch.device("cpu"), FRAMING["mtcnn"]).predict(
        [frame], [np.array([[20, 20, 90, 100]], np.float32)])
    assert seen and not any(seen)
    assert torch.backends.cudnn.allow_tf32  # back to the caller's
