import pytest
import torch

from moodstream.shared.errors import ModelError
from moodstream.shared.models import ModelConfig, build_model, load_checkpoint, predict_proba, save_checkpoint


@pytest.mark.parametrize("arch", ["vgg", "resnet"])
def test_round_trip_keeps_predictions(tmp_path, arch):
    cfg = ModelConfig(arch=arch, widths=(8, 16), hidden=32, input_size=32)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    path = tmp_path / "m.pt"
    save_checkpoint(path, model, cfg, mean=0.5, std=0.25, meta={"version": "t1"})
    ckpt = load_checkpoint(path)
    assert ckpt.config == cfg and ckpt.version == "t1"
    assert (ckpt.mean, ckpt.std) == (0.5, 0.25)
    x = torch.rand(4, 1, 48, 48)  # resized to the checkpoint's 32x32 on the way in
    ref = torch.softmax(model(torch.nn.functional.interpolate(
        x, size=(32, 32), mode="bilinear", align_corners=False, antialias=True).sub(0.5).div(0.25)), 1)
    got = predict_proba(ckpt, x, flip_tta=False)
    assert got.shape == (4, 8)
    assert torch.allclose(got.sum(1), torch.ones(4), atol=1e-5)
    assert torch.allclose(got, ref, atol=2e-2)  # weights stored in fp16


def test_flip_tta_is_mirror_invariant(tmp_path):
    cfg = ModelConfig(widths=(8, 16), hidden=16, input_size=48)
    save_checkpoint(tmp_path / "m.pt", build_model(cfg), cfg, 0.5, 0.25)
    ckpt = load_checkpoint(tmp_path / "m.pt")
    x = torch.rand(3, 1, 48, 48)
    assert torch.allclose(predict_proba(ckpt, x), predict_proba(ckpt, x.flip(-1)), atol=1e-5)


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_checkpoint(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="cannot be read"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ModelError, match="not a moodstream emotion checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_shipped_checkpoint_loads():
    ckpt = load_checkpoint()
    assert ckpt.config.num_classes == 8
    assert 0 < ckpt.std < 1
