"""Batched, on-device augmentation of grayscale face batches.

All ops take and return ``(B, 1, S, S)`` float tensors in [0, 1] and draw their
randomness from the given generator, so a seeded run is repeatable. They work on
whatever device the batch lives on: the whole batch is augmented in a few
kernels, never image by image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def hflip(x: torch.Tensor, p: float, gen: torch.Generator) -> torch.Tensor:
    """Mirror each image left-right with probability ``p``."""
    mask = torch.rand(x.shape[0], device=x.device, generator=gen) < p
    return torch.where(mask[:, None, None, None], x.flip(-1), x)


def gaussian_kernel(sigma: float, radius: int | None = None) -> torch.Tensor:
    """A normalised 1-D Gaussian, length 2 * radius + 1."""
    radius = max(1, math.ceil(3 * sigma)) if radius is None else radius
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(x: torch.Tensor, p: float, sigma_max: float, gen: torch.Generator) -> torch.Tensor:
    """Blur a random subset (probability ``p``) with a per-image sigma in (0.1, sigma_max].

    Separable blur with per-image kernels, done as grouped convolutions.
    """
    b = x.shape[0]
    radius = max(1, math.ceil(3 * sigma_max))
    sigma = 0.1 + torch.rand(b, device=x.device, generator=gen) * (sigma_max - 0.1)
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-0.5 * (t[None, :] / sigma[:, None]) ** 2)  # (B, K)
    k = k / k.sum(1, keepdim=True)
    y = x.transpose(0, 1)  # (1, B, S, S): one group per image
    y = F.pad(y, (radius, radius, radius, radius), mode="reflect")
    y = F.conv2d(y, k[:, None, None, :], groups=b)
    y = F.conv2d(y, k[:, None, :, None], groups=b)
    y = y.transpose(0, 1)
    mask = torch.rand(b, device=x.device, generator=gen) < p
    return torch.where(mask[:, None, None, None], y, x)


def contrast(x: torch.Tensor, p: float, low: float, high: float, gen: torch.Generator) -> torch.Tensor:
    """Scale each image's deviation from its mean by a factor in [low, high]
    (a factor > 1 enhances contrast), then clamp to [0, 1]."""
    b = x.shape[0]
    factor = low + torch.rand(b, device=x.device, generator=gen) * (high - low)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    y = ((x - mean) * factor[:, None, None, None] + mean).clamp(0, 1)
    mask = torch.rand(b, device=x.device, generator=gen) < p
    return torch.where(mask[:, None, None, None], y, x)


def affine(x: torch.Tensor, p: float, degrees: float, scale: float, translate: float,
           gen: torch.Generator) -> torch.Tensor:
    """Small random rotation / zoom / shift, border pixels replicated."""
    b = x.shape[0]
    dev = x.device

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + torch.rand(b, device=dev, generator=gen) * (hi - lo)

    angle = uniform(-degrees, degrees) * math.pi / 180
    s = uniform(1 - scale, 1 + scale)
    tx, ty = uniform(-translate, translate) * 2, uniform(-translate, translate) * 2
    cos, sin = torch.cos(angle) / s, torch.sin(angle) / s
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)  # (B, 2, 3)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    y = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    mask = torch.rand(b, device=dev, generator=gen) < p
    return torch.where(mask[:, None, None, None], y, x)


def random_erasing(x: torch.Tensor, p: float, max_frac: float, gen: torch.Generator) -> torch.Tensor:
    """Blank one random rectangle (up to ``max_frac`` of each side) per chosen image
    with uniform noise."""
    b, _, h, w = x.shape
    dev = x.device
    eh = (torch.rand(b, device=dev, generator=gen) * max_frac * h).long().clamp(min=1)
    ew = (torch.rand(b, device=dev, generator=gen) * max_frac * w).long().clamp(min=1)
    y0 = (torch.rand(b, device=dev, generator=gen) * (h - eh + 1)).long()
    x0 = (torch.rand(b, device=dev, generator=gen) * (w - ew + 1)).long()
    rows = torch.arange(h, device=dev)[None, :, None]
    cols = torch.arange(w, device=dev)[None, None, :]
    box = ((rows >= y0[:, None, None]) & (rows < (y0 + eh)[:, None, None])
           & (cols >= x0[:, None, None]) & (cols < (x0 + ew)[:, None, None]))  # (B, H, W)
    chosen = torch.rand(b, device=dev, generator=gen) < p
    box = box & chosen[:, None, None]
    noise = torch.rand(x.shape, device=dev, generator=gen, dtype=x.dtype)
    return torch.where(box[:, None], noise, x)


@dataclass
class AugmentConfig:
    flip_p: float = 0.5
    blur_p: float = 0.2
    blur_sigma_max: float = 1.2  # pixels of a 48 px face (scaled with the face's size)
    contrast_p: float = 0.5
    contrast_low: float = 0.7
    contrast_high: float = 1.5
    affine_p: float = 0.7
    affine_degrees: float = 12.0
    affine_scale: float = 0.12
    affine_translate: float = 0.08
    erase_p: float = 0.4
    erase_max_frac: float = 0.4

    @classmethod
    def paper(cls) -> AugmentConfig:
        """Only the paper's three: flip, Gaussian blur, contrast enhancement."""
        return cls(affine_p=0.0, erase_p=0.0)

    @classmethod
    def none(cls) -> AugmentConfig:
        return cls(flip_p=0.0, blur_p=0.0, contrast_p=0.0, affine_p=0.0, erase_p=0.0)


def augment(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """Apply every enabled op in a fixed order; ``x`` is (B, 1, S, S) in [0, 1]."""
    if cfg.flip_p > 0:
        x = hflip(x, cfg.flip_p, gen)
    if cfg.affine_p > 0:
        x = affine(x, cfg.affine_p, cfg.affine_degrees, cfg.affine_scale, cfg.affine_translate, gen)
    if cfg.contrast_p > 0:
        x = contrast(x, cfg.contrast_p, cfg.contrast_low, cfg.contrast_high, gen)
    if cfg.blur_p > 0:  # sigma in pixels of a 48 px face: the same blur of the face at any size
        x = gaussian_blur(x, cfg.blur_p, cfg.blur_sigma_max * x.shape[-1] / 48, gen)
    if cfg.erase_p > 0:
        x = random_erasing(x, cfg.erase_p, cfg.erase_max_frac, gen)
    return x
