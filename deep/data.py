"""Datasets as torch tensors for the network experiments (loaders live in ``plumbing.datasets``).

Images come back as float32 (N, C, H, W) in [0, 1] and labels as int64, on the CPU; callers move
them to their device. Mean subtraction is *not* applied here: models carry it as their first,
1-Lipschitz layer, so attacks and certificates work in the [0, 1] input space.
"""
from __future__ import annotations

import numpy as np
import torch

from plumbing.datasets import load_dataset
from plumbing.validation import check_int


def to_tensor_images(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W) or (N, H, W, C) -> float32 (N, C, H, W) in [0, 1]."""
    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[:, None, :, :]
    elif arr.ndim == 4:
        arr = arr.transpose(0, 3, 1, 2)
    else:
        raise ValueError(f"images must have 3 or 4 dimensions, got shape {arr.shape}")
    t = torch.from_numpy(np.array(arr, order="C"))  # a writable copy (IDX buffers are read-only)
    return t.float().div_(255.0) if arr.dtype == np.uint8 else t.float()


def balanced_subset(labels: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """Indices of a class-balanced random subset of ``size`` (as equal per class as possible),
    reproducible from ``seed``; sorted. Used for the 2^k scaling-law subsets (P&L Sec. 4.2)."""
    labels = np.asarray(labels)
    size = check_int("size", size, min_value=1, max_value=len(labels))
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per = np.full(len(classes), size // len(classes))
    per[rng.permutation(len(classes))[: size % len(classes)]] += 1
    picks = []
    for c, k in zip(classes, per):
        idx = np.flatnonzero(labels == c)
        if k > len(idx):
            raise ValueError(f"size {size} asks for {k} examples of class {c}, which has {len(idx)}")
        picks.append(rng.choice(idx, size=k, replace=False))
    return np.sort(np.concatenate(picks))


def load_tensors(name: str, split: str = "train", root=None, *, subset: int | None = None,
                 seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(images float32 (N, C, H, W) in [0, 1], labels int64) of a dataset split, optionally a
    class-balanced subset of size ``subset`` drawn with ``seed``."""
    images, labels = load_dataset(name, split, root)
    if subset is not None:
        idx = balanced_subset(labels, subset, seed)
        images, labels = images[idx], labels[idx]
    return to_tensor_images(images), torch.from_numpy(np.asarray(labels, dtype=np.int64))
