"""The class-prior adjustment: fitting tau on Valid, and how checkpoints carry it."""

import numpy as np
import pytest
import torch

from moodstream.shared.errors import ModelError
from moodstream.shared.models import ModelConfig, build_model, load_checkpoint, predict_proba, save_checkpoint, write_checkpoint
from moodstream.trainer.balance import adjusted_predictions, class_prior, fit_tau


def _skewed_probs(n_major: int, n_rare: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A model that puts 0.3 on the rare class 1 for rare faces, but 0.6 on class 0:
    the plain argmax never says 1; dividing by the prior fixes that."""
    labels = np.r_[np.zeros(n_major, int), np.ones(n_rare, int)]
    probs = np.full((len(labels), 8), 0.1 / 6)
    probs[:n_major, 0], probs[:n_major, 1] = 0.85, 0.05
    probs[n_major:, 0], probs[n_major:, 1] = 0.6, 0.3
    probs += rng.uniform(0, 1e-3, probs.shape)
    return probs / probs.sum(1, keepdims=True), labels


def test_prior_is_smoothed_and_sums_to_one():
    prior = class_prior(np.array([0, 0, 0, 1]))
    assert prior.sum() == pytest.approx(1.0)
    assert (prior > 0).all()  # classes absent from Train still get a finite bias
    assert prior[0] == pytest.approx(4 / 12) and prior[1] == pytest.approx(2 / 12)


def test_tau_zero_is_the_plain_argmax():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(8), size=50)
    assert (adjusted_predictions(probs, class_prior(rng.integers(0, 8, 100)), 0.0) == probs.argmax(1)).all()


def test_fit_recovers_the_rare_class():
    probs, labels = _skewed_probs(950, 50, np.random.default_rng(0))
    prior = class_prior(labels)
    assert (probs.argmax(1) == 0).all()  # the plain model: recall 0 for class 1
    fit = fit_tau(probs, labels, prior)
    assert fit.tau > 0
    pred = adjusted_predictions(probs, prior, fit.tau)
    assert (pred[labels == 1] == 1).all() and (pred[labels == 0] == 0).all()
    assert fit.table[0]["tau"] == 0.0
    assert max(r["macro_f1"] for r in fit.table) == next(r for r in fit.table if r["tau"] == fit.tau)["macro_f1"]
    assert fit.class_bias[1] > fit.class_bias[0]  # the rare class is pushed up


def test_fit_keeps_tau_zero_when_nothing_gains():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 8, 400)
    probs = np.full((400, 8), 0.01)
    probs[np.arange(400), labels] = 0.93  # a perfect model: any adjustment can only tie
    assert fit_tau(probs, labels, class_prior(labels)).tau == 0.0


def _checkpoint(tmp_path, bias=None):
    cfg = ModelConfig(widths=(8, 16), hidden=16, input_size=48)
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "m.pt", build_model(cfg), cfg, 0.5, 0.25, class_bias=bias)
    return load_checkpoint(tmp_path / "m.pt")


def test_checkpoint_carries_the_bias_and_predict_applies_it(tmp_path):
    plain = _checkpoint(tmp_path)
    assert plain.class_bias is None
    bias = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 30.0)  # overwhelming: everything becomes class 7
    ckpt = _checkpoint(tmp_path, bias)
    assert ckpt.class_bias == bias
    x = torch.rand(5, 1, 48, 48)
    adjusted = predict_proba(ckpt, x)
    assert (adjusted.argmax(1) == 7).all()
    assert torch.allclose(adjusted.sum(1), torch.ones(5), atol=1e-5)
    assert torch.allclose(predict_proba(ckpt, x, adjust=False), predict_proba(plain, x), atol=1e-6)
    write_checkpoint(tmp_path / "again.pt", ckpt)
    assert load_checkpoint(tmp_path / "again.pt").class_bias == bias


def test_bias_of_the_wrong_length_is_refused(tmp_path):
    with pytest.raises(ModelError, match="class_bias needs 8"):
        _checkpoint(tmp_path, (1.0, 2.0))
    _checkpoint(tmp_path)
    raw = torch.load(tmp_path / "m.pt", weights_only=True)
    raw["class_bias"] = [0.0] * 3
    torch.save(raw, tmp_path / "bad.pt")
    with pytest.raises(ModelError, match="3 class_bias values"):
        load_checkpoint(tmp_path / "bad.pt")
