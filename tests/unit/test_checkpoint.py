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
    with pytest.raises(ModelError, match=r"junk.pt is not a moodstream emotion checkpoint \(a text file"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ModelError, match="not a moodstream emotion checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_shipped_checkpoint_loads():
    ckpt = load_checkpoint()
    assert ckpt.config.num_classes == 8
    assert 0 < ckpt.std < 1


def _raw(tmp_path, **changes) -> dict:
    cfg = ModelConfig(widths=(8, 16))
    save_checkpoint(tmp_path / "good.pt", build_model(cfg), cfg, 0.5, 0.25, class_bias=(0.0,) * 8)
    raw = torch.load(tmp_path / "good.pt", weights_only=True)
    for key, value in changes.items():
        if value is None:
            del raw[key]
        else:
            raw[key] = value
    return raw


@pytest.mark.parametrize("changes", [
    {"labels": None}, {"normalization": None}, {"labels": 5}, {"normalization": [1, 2]},
    {"normalization": {"mean": 0.5, "std": 0.0}}, {"normalization": {"mean": float("nan"), "std": 0.25}},
    {"normalization": {"mean": "a", "std": 0.25}}, {"class_bias": [float("nan")] * 8}, {"class_bias": 3},
    {"config": {"arch": "vgg", "widths": [10**9, 10**9]}}, {"config": {"arch": "vgg", "widths": [0, 0]}},
    {"config": "vgg"}, {"state_dict": None}, {"state_dict": [1]},
])
def test_a_checkpoint_of_the_wrong_shape_is_one_model_error(tmp_path, changes):
    """Each was a KeyError / TypeError / RuntimeError traceback (one asked for 360 GB), or loaded
    and made every face "anger" with NaN probabilities (std 0, a NaN class bias)."""
    torch.save(_raw(tmp_path, **changes), tmp_path / "bad.pt")
    with pytest.raises(ModelError, match="bad.pt"):
        load_checkpoint(tmp_path / "bad.pt")


@pytest.mark.parametrize("content", [b"hello world\n", b"", bytes(range(256)) * 8])
def test_a_file_torch_cannot_read_is_named_without_torchs_advice(tmp_path, content):
    (tmp_path / "x.pt").write_bytes(content)
    with pytest.raises(ModelError) as exc:
        load_checkpoint(tmp_path / "x.pt")
    text = str(exc.value)
    assert "x.pt" in text and "weights_only=False" not in text and "\n" not in text and len(text) < 400
    assert text.rstrip().endswith(")") or "not a checkpoint" in text
