"""Datasets as torch tensors for the network experiments (loaders live in ``plumbing.datasets``).

Images come back as float32 (N, C, H, W) in [0, 1] and labels as int64, on the CPU; callers move
them to their device. Mean subtraction is *not* applied here: models carry it as their first,
1-Lipschitz layer, so attacks and certificates work in the [0, 1] input space.

Fidelity: every load records whether the data matched the official checksums and whether it is
approximate (for example CIFAR-10 from the JPEG copy); the first load of a dataset prints one line
saying so, and :func:`loaded_fidelity_json` / :func:`data_fidelity` give the fields every result
JSON of the network experiments carries (``checksum_match``, ``approximate``,
``approximate_reason``): those of the result's own dataset (a process may load several, e.g. the
GPU campaign loads MNIST and then CIFAR-10), none for results on random tensors.
"""
from __future__ import annotations

import numpy as np
import torch

from plumbing.datasets import load_dataset_with_fidelity
from plumbing.fidelity import Fidelity, combine
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
    images, labels, fid = load_dataset_with_fidelity(name, split, root)
    _record(name, root, split, fid)
    if subset is not None:
        idx = balanced_subset(labels, subset, seed)
        images, labels = images[idx], labels[idx]
    return to_tensor_images(images), torch.from_numpy(np.asarray(labels, dtype=np.int64))


# ---- fidelity of what this process loaded ------------------------------------------------------

_FIDELITY: dict = {}


def _record(name: str, root, split: str, fid: Fidelity) -> None:
    key = (name, str(root))
    first = not any(k[:2] == key for k in _FIDELITY)
    _FIDELITY[key + (split,)] = fid
    if first:
        print(fid.line(), flush=True)


def fidelity_state() -> dict:
    """What this process has recorded about the data it loaded (to hand to a worker process,
    e.g. a Ray task, whose results must record the same fidelity as a local run)."""
    return dict(_FIDELITY)


def restore_fidelity_state(state: dict | None) -> None:
    """Adopt the records of :func:`fidelity_state` from the process that loaded the data."""
    for key, fid in (state or {}).items():
        _FIDELITY.setdefault(key, fid)


def data_fidelity(name: str, root=None) -> Fidelity:
    """Fidelity of ``name`` at ``root`` (both splits), from this process's loads when there were
    any, else checked now (cheap once the data is cached)."""
    key = (name, str(root))
    for split in ("train", "test"):
        if key + (split,) not in _FIDELITY:
            _, _, fid = load_dataset_with_fidelity(name, split, root)
            _FIDELITY[key + (split,)] = fid
    return combine(_FIDELITY[key + ("train",)], _FIDELITY[key + ("test",)])


#: ``loaded_fidelity_json(NO_DATASET)``: the result was computed on synthetic (random) tensors
NO_DATASET = None
_ANY = object()


def loaded_fidelity_json(dataset=_ANY) -> dict:
    """The fidelity fields for a result JSON about ``dataset``: the records of that dataset's
    splits this process loaded through :func:`load_tensors` ({} when it loaded none of them).
    ``dataset=None`` (a result on random tensors): {} - no dataset fidelity. Without an argument:
    every dataset loaded; with several (a summary over MNIST and CIFAR-10 runs) the record lists
    each dataset's fidelity under ``data_fidelity["datasets"]``, never one dataset's for all."""
    if dataset is None:
        return {}
    if dataset is not _ANY:
        parts = [f for (name, *_), f in _FIDELITY.items() if name == dataset]
        return combine(*parts).as_json() if parts else {}
    names = list(dict.fromkeys(name for name, *_ in _FIDELITY))
    if not names:
        return {}
    if len(names) == 1:
        return loaded_fidelity_json(names[0])
    per = {n: loaded_fidelity_json(n) for n in names}
    reasons = [f"{n}: {r['approximate_reason']}" for n, r in per.items() if r["approximate"]]
    matches = [r["checksum_match"] for r in per.values()]
    return {"data_fidelity": {"datasets": {n: r["data_fidelity"] | {"approximate": r["approximate"]}
                                           for n, r in per.items()}},
            "checksum_match": False if False in matches else (
                True if all(m is True for m in matches) else "unknown"),
            "approximate": bool(reasons), "approximate_reason": "; ".join(reasons) or None}
