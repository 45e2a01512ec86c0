"""Data augmentation of P&L Section 4.1 (and its MNIST variant, Section 9.3), on batched tensors.

Section 4.1: "random crops (size 4), random flipping and we randomly erase (replace with 0) a
patch of size 2x2". Every random draw comes from the ``torch.Generator`` that
:func:`deep.trainer.fit` passes per batch (seeded from (seed, epoch)), so a run is reproducible
and a resumed run continues exactly like an uninterrupted one. Random numbers are drawn on the
CPU and moved to the batch's device, so CPU and CUDA runs see the same crops, flips and erasures.

MNIST (Section 9.3): the paper pads the images "after subtracting the mean value with value 0 to
size 32x32" and uses "only random cropping (size 4) and random flipping". We deliberately use
*no horizontal flip on MNIST* (digits are not mirror-symmetric: a mirrored digit is another or
no digit), so MNIST gets random crops only (no flip, no erasing). Because our models
carry the mean subtraction as their first layer (inputs stay in [0, 1]), "pad with 0 after
subtracting the mean" is implemented as padding with the training mean (:func:`pad_to`).

Fill values: crops pad with ``fill`` (default 0.0 in [0, 1] input space, the usual
tensor-space crop); erasing writes ``erase_value`` (default 0.0, "replace with 0").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from theory.constants import RANDOM_CROP_PADDING, RANDOM_ERASE_SIZE
from plumbing.validation import check_float, check_int

MNIST_PADDED_SIZE = 32  # P&L Sec. 9.3: MNIST padded to 32x32 so the CIFAR-10 setup applies


@dataclass
class AugmentConfig:
    """Which augmentations to apply (0 disables crop/erase; see module docstring)."""
    crop_padding: int = RANDOM_CROP_PADDING
    flip: bool = True
    erase_size: int = RANDOM_ERASE_SIZE
    erase_prob: float = 1.0      # probability that an image gets one erased patch
    fill: float = 0.0            # value of the crop padding
    erase_value: float = 0.0     # value written into the erased patch

    def __post_init__(self):
        check_int("crop_padding", self.crop_padding, min_value=0, max_value=64)
        if not isinstance(self.flip, bool):
            raise TypeError(f"flip must be a bool, got {self.flip!r}")
        check_int("erase_size", self.erase_size, min_value=0, max_value=64)
        check_float("erase_prob", self.erase_prob, low=0.0, high=1.0)
        check_float("fill", self.fill)
        check_float("erase_value", self.erase_value)

    @property
    def is_identity(self) -> bool:
        return self.crop_padding == 0 and not self.flip and (self.erase_size == 0 or self.erase_prob == 0)


def config_for_dataset(dataset: str, enabled: bool = True) -> AugmentConfig:
    """The paper's augmentation for ``dataset``: crop+flip+erase (Sec. 4.1); MNIST and
    Fashion-MNIST crop only (Sec. 9.3; no flip: a mirrored digit is another or no digit);
    ``enabled=False`` gives the identity (robust overfitting, Sec. 4.3; PCA without augmentation,
    Sec. 11). ``dataset`` as in ``deep.models.dataset_name`` (``fashion_mnist`` accepted)."""
    from deep.models import dataset_name

    dataset = dataset_name(dataset)
    if not enabled:
        return AugmentConfig(crop_padding=0, flip=False, erase_size=0)
    if dataset in ("mnist", "fashion-mnist"):
        return AugmentConfig(flip=False, erase_size=0)
    if dataset == "svhn":  # digits again: no mirror images
        return AugmentConfig(flip=False)
    return AugmentConfig()


def _check_batch(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f"x must be a (N, C, H, W) tensor, got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")


def _check_gen(generator) -> None:
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator, fill: float = 0.0) -> torch.Tensor:
    """Pad every image by ``padding`` on each side with ``fill`` and cut out an H x W window at an
    independent uniformly random offset in {0, ..., 2*padding}^2 (per image)."""
    _check_batch(x)
    _check_gen(generator)
    padding = check_int("padding", padding, min_value=0)
    if padding == 0:
        return x
    n, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (padding, padding, padding, padding), value=float(fill))
    oy = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
    ox = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
    rows = oy[:, None] + torch.arange(h, device=x.device)[None, :]            # (N, H)
    cols = ox[:, None] + torch.arange(w, device=x.device)[None, :]            # (N, W)
    batch = torch.arange(n, device=x.device)[:, None, None]
    out = padded[batch, :, rows[:, :, None], cols[:, None, :]]                # (N, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


def random_flip(x: torch.Tensor, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Mirror each image left-right independently with probability ``p``."""
    _check_batch(x)
    _check_gen(generator)
    p = check_float("p", p, low=0.0, high=1.0)
    mask = (torch.rand(x.shape[0], generator=generator) < p).to(x.device)
    return torch.where(mask[:, None, None, None], x.flip(-1), x)


def random_erase(x: torch.Tensor, size: int, generator: torch.Generator, p: float = 1.0,
                 value: float = 0.0) -> torch.Tensor:
    """With probability ``p`` per image, set one ``size`` x ``size`` patch (all channels, uniformly
    random position fully inside the image) to ``value``."""
    _check_batch(x)
    _check_gen(generator)
    n, _, h, w = x.shape
    size = check_int("size", size, min_value=0, max_value=min(h, w))
    p = check_float("p", p, low=0.0, high=1.0)
    if size == 0:
        return x
    y0 = torch.randint(0, h - size + 1, (n,), generator=generator).to(x.device)
    x0 = torch.randint(0, w - size + 1, (n,), generator=generator).to(x.device)
    apply = (torch.rand(n, generator=generator) < p).to(x.device)
    ii = torch.arange(h, device=x.device)[None, :, None]
    jj = torch.arange(w, device=x.device)[None, None, :]
    patch = ((ii >= y0[:, None, None]) & (ii < y0[:, None, None] + size)
             & (jj >= x0[:, None, None]) & (jj < x0[:, None, None] + size) & apply[:, None, None])
    return x.masked_fill(patch[:, None, :, :], float(value))


def make_augment(cfg: AugmentConfig) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None:
    """``augment(xb, generator) -> xb`` for :func:`deep.trainer.fit` (None if nothing to do).
    Order: crop, flip, erase (as a torchvision pipeline RandomCrop, RandomHorizontalFlip,
    RandomErasing would apply them)."""
    if not isinstance(cfg, AugmentConfig):
        raise TypeError(f"cfg must be an AugmentConfig, got {type(cfg).__name__}")
    if cfg.is_identity:
        return None

    def augment(xb: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if cfg.crop_padding:
            xb = random_crop(xb, cfg.crop_padding, generator, cfg.fill)
        if cfg.flip:
            xb = random_flip(xb, generator)
        if cfg.erase_size and cfg.erase_prob > 0:
            xb = random_erase(xb, cfg.erase_size, generator, cfg.erase_prob, cfg.erase_value)
        return xb

    return augment


def pad_to(x: torch.Tensor, size: int = MNIST_PADDED_SIZE, fill: torch.Tensor | float = 0.0) -> torch.Tensor:
    """Pad (N, C, H, W) images symmetrically to ``size`` x ``size`` (Sec. 9.3: MNIST 28 -> 32).

    ``fill`` is a scalar or a per-channel tensor (C,); pass the training mean so that after the
    model's mean subtraction the border is exactly 0, as in the paper ("after subtracting the mean
    value with value 0")."""
    _check_batch(x)
    n, c, h, w = x.shape
    size = check_int("size", size, min_value=max(h, w))
    top, left = (size - h) // 2, (size - w) // 2
    fill_t = torch.as_tensor(fill, dtype=x.dtype, device=x.device).reshape(-1)
    if fill_t.numel() not in (1, c):
        raise ValueError(f"fill must be a scalar or have one value per channel ({c}), got {fill_t.numel()}")
    out = fill_t.reshape(1, -1, 1, 1).expand(n, c, size, size).clone()
    out[:, :, top:top + h, left:left + w] = x
    return out
