"""Image side of the data generation: initial images, the augmentation pipeline, clipping.

Every random choice takes an explicit ``torch.Generator`` (one per batch), so that a batch is
the same whichever process, and in whichever order, optimizes it.
"""
from __future__ import annotations

import math
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F

from .config import DataGenConfig, DataInitType, ImagePipelineType


def gaussian_taps(size: int = 3, sigma: float = 1.25) -> torch.Tensor:
    """The 1-D factor of the normalised Gaussian kernel: ``outer(taps, taps)`` is the
    ``size`` x ``size`` smoothing filter (3 x 3, sigma 1.25)."""
    ax = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-ax ** 2 / (2 * sigma * sigma))
    return g / g.sum()


def gaussian_kernel(size: int = 3, sigma: float = 1.25) -> torch.Tensor:
    """A normalised ``size`` x ``size`` Gaussian kernel (the smoothing filter, 3 x 3, sigma 1.25).

    Example:
        >>> round(float(gaussian_kernel().sum()), 6)
        1.0
    """
    g = gaussian_taps(size, sigma)
    return g[:, None] * g[None, :]


def smooth(x: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Each channel of (N, C, H, W) convolved with ``outer(taps, taps)``, zero padding, same size:
    as one shifted sum per axis (PyTorch's depthwise conv2d and its backward are 4-15x slower on
    the CPU for these shapes)."""
    k = taps.numel()
    p = torch.nn.functional.pad(x, (k // 2, k // 2, k // 2, k // 2))
    h, w = x.shape[2], x.shape[3]
    rows = sum(p[:, :, :, j:j + w] * float(taps[j]) for j in range(k))
    return sum(rows[:, :, i:i + h, :] * float(taps[i]) for i in range(k))


def valid_range(cfg: DataGenConfig, channels: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """(low, high) per channel, shape (1, C, 1, 1): pixels 0 and 255 in normalized units."""
    mean, std = cfg.normalization()
    for name, v in (("normalization_mean", mean), ("normalization_std", std)):
        if len(v) not in (1, channels):
            raise ValueError(f"{name} has {len(v)} values; the model's input has {channels} channels")
    m = torch.tensor(mean, dtype=torch.float32).expand(channels) if len(mean) == 1 else torch.tensor(mean)
    s = torch.tensor(std, dtype=torch.float32).expand(channels) if len(std) == 1 else torch.tensor(std)
    m, s = m.float().reshape(1, -1, 1, 1), s.float().reshape(1, -1, 1, 1)
    return (0.0 - m) / s, (255.0 - m) / s


class _ClipST(torch.autograd.Function):
    """Clamp in the forward pass, identity in the backward pass (straight-through)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return torch.maximum(torch.minimum(x, hi), lo)

    @staticmethod
    def backward(ctx, g: torch.Tensor):  # type: ignore[override]
        return g, None, None


class ImagePipeline:
    """The pipeline of one run: ``augment`` before every forward pass, ``finalize`` at the end.

    ``input_size`` is the size of the optimized images (output size plus ``extra_pixels`` for
    the smoothing-and-augmentation pipeline).
    """

    def __init__(self, cfg: DataGenConfig, output_size: Tuple[int, int], channels: int) -> None:
        self.cfg = cfg
        self.output_size = output_size
        self.channels = channels
        self.smooth = cfg.image_pipeline is ImagePipelineType.SMOOTHING_AND_AUGMENTATION
        ex = cfg.extra_pixels if self.smooth else (0, 0)
        self.input_size = (output_size[0] + ex[0], output_size[1] + ex[1])
        self.lo, self.hi = valid_range(cfg, channels)
        self.taps = gaussian_taps()

    def _smooth(self, x: torch.Tensor) -> torch.Tensor:
        return smooth(x, self.taps)

    def _clip(self, x: torch.Tensor) -> torch.Tensor:
        return _ClipST.apply(x, self.lo, self.hi) if self.cfg.clip_images else x

    def augment(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Random horizontal flip of the whole batch (p = 0.5), smoothing, one random crop for
        the batch, clipping (straight-through); or ``x`` itself for the identity pipeline."""
        if not self.smooth:
            return x
        if bool(torch.rand((), generator=gen) < 0.5):
            x = torch.flip(x, dims=(3,))
        x = self._smooth(x)
        (h, w), (th, tw) = x.shape[2:], self.output_size
        i = int(torch.randint(0, h - th + 1, (), generator=gen))
        j = int(torch.randint(0, w - tw + 1, (), generator=gen))
        return self._clip(x[:, :, i:i + th, j:j + tw])

    def finalize(self, x: torch.Tensor) -> torch.Tensor:
        """The images handed out: smoothed, center-cropped and clipped (identity: as they are)."""
        if not self.smooth:
            return x
        x = self._smooth(x)
        (h, w), (th, tw) = x.shape[2:], self.output_size
        i, j = int(round((h - th) / 2.0)), int(round((w - tw) / 2.0))
        return self._clip(x[:, :, i:i + th, j:j + tw])

    @torch.no_grad()
    def reflect_(self, x: torch.Tensor) -> None:
        """Fold values outside the valid range back inside, in place: ``2 * clamp(x) - x``."""
        c = torch.maximum(torch.minimum(x, self.hi), self.lo)
        x.mul_(-1).add_(c, alpha=2.0)
        # a value more than one range width outside lands outside on the other side: clamp it
        torch.maximum(torch.minimum(x, self.hi), self.lo, out=x)


def initial_images(cfg: DataGenConfig, n: int, channels: int, size: Sequence[int],
                   gen: torch.Generator) -> torch.Tensor:
    """``n`` starting images of ``channels`` x ``size``: N(0, 1) pixels (Gaussian), or per image
    a random per-channel std and mean (both N(0, 1)) times N(0, 1) noise, then a 5 x 5 box
    filter summed over the channels, divided by 16 (Diverse; zero padding keeps the size)."""
    shape = (n, channels) + tuple(size)
    if cfg.data_init is DataInitType.Gaussian:
        return torch.randn(shape, generator=gen)
    std = torch.randn((n, channels, 1, 1), generator=gen)
    mean = torch.randn((n, channels, 1, 1), generator=gen)
    x = std * torch.randn(shape, generator=gen) + mean
    k = torch.ones(channels, channels, 5, 5) / 16
    return F.conv2d(x, k, padding=2)


def batch_generator(seed: int, batch: int) -> torch.Generator:
    """The random generator of batch ``batch`` for ``seed``: independent of the process and of
    the other batches."""
    import numpy as np

    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(seed) >> 32 & 0xFFFFFFFF, 0x44474E, batch])
    return torch.Generator().manual_seed(int(state.generate_state(1, np.uint64)[0] >> 1))


def n_batches(n_images: int, batch_size: int) -> int:
    return int(math.ceil(n_images / batch_size))


__all__ = ["ImagePipeline", "initial_images", "gaussian_kernel", "gaussian_taps", "smooth", "valid_range", "batch_generator", "n_batches"]
