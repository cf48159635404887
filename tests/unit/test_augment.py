import torch

from moodstream.trainer.augment import (AugmentConfig, affine, augment, contrast, gaussian_blur, gaussian_kernel, hflip,
                             random_erasing)


def batch(seed=0, b=6, s=48):
    return torch.rand(b, 1, s, s, generator=torch.Generator().manual_seed(seed))


def gen(seed=1):
    return torch.Generator().manual_seed(seed)


def test_flip_all_and_none():
    x = batch()
    assert torch.equal(hflip(x, 1.0, gen()), x.flip(-1))
    assert torch.equal(hflip(x, 0.0, gen()), x)


def test_gaussian_kernel_normalised_and_symmetric():
    k = gaussian_kernel(1.0)
    assert abs(float(k.sum()) - 1) < 1e-6
    assert torch.allclose(k, k.flip(0))
    assert len(k) == 7


def test_blur_keeps_constant_image_and_smooths_noise():
    flat = torch.full((3, 1, 32, 32), 0.4)
    assert torch.allclose(gaussian_blur(flat, 1.0, 1.5, gen()), flat, atol=1e-5)
    x = batch()
    y = gaussian_blur(x, 1.0, 1.5, gen())
    assert y.shape == x.shape
    assert y.std() < x.std()  # noise is smoothed
    assert abs(float(y.mean() - x.mean())) < 0.02


def test_contrast_scales_deviation_about_the_mean():
    x = torch.linspace(0.3, 0.7, 48 * 48).reshape(1, 1, 48, 48).repeat(4, 1, 1, 1)
    y = contrast(x, 1.0, 1.5, 1.5, gen())
    assert torch.allclose(y - y.mean(), (x - x.mean()) * 1.5, atol=1e-5)
    assert torch.equal(contrast(x, 0.0, 1.5, 1.5, gen()), x)


def test_affine_identity_when_ranges_are_zero():
    x = batch()
    assert torch.allclose(affine(x, 1.0, 0.0, 0.0, 0.0, gen()), x, atol=1e-5)
    y = affine(x, 1.0, 15.0, 0.1, 0.1, gen())
    assert y.shape == x.shape and not torch.allclose(y, x)


def test_random_erasing_changes_a_rectangle_only():
    x = torch.zeros(8, 1, 48, 48)
    y = random_erasing(x, 1.0, 0.4, gen())
    changed = (y != x).squeeze(1)
    for img in changed:
        rows = img.any(1).nonzero().flatten()
        cols = img.any(0).nonzero().flatten()
        assert len(rows) and len(cols)
        # the changed pixels fill their bounding box (one rectangle), up to noise hitting exactly 0
        box = img[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        assert box.float().mean() > 0.99
        assert len(rows) <= 0.4 * 48 + 1 and len(cols) <= 0.4 * 48 + 1


def test_augment_is_seeded_and_in_range():
    x = batch()
    a = augment(x, AugmentConfig(), gen(7))
    b = augment(x, AugmentConfig(), gen(7))
    assert torch.equal(a, b)
    assert a.min() >= 0 and a.max() <= 1
    assert torch.equal(augment(x, AugmentConfig.none(), gen(7)), x)
