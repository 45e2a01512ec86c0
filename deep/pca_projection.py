"""Projection of images onto ranges of principal components (P&L Section 4.4, Table 1, Sec. 11).

"we flatten the training images in order to evaluate the principal components. Then in different
experiments we project the flattened (train and test) images onto different subsets of principal
components. After the projection, we transform the vectors back into the image space."

With training mean mu and orthonormal principal directions v_1, ..., v_D (decreasing variance), the
projection onto a set S of component indices is

    P_S(x) = mu + sum_{i in S} <x - mu, v_i> v_i,

reshaped back to (C, H, W). The mean is added back so the data stay in the usual input range;
the models subtract the training mean as their first layer, so they see exactly the centred
projection. P_S is an orthogonal projection (idempotent, P_S + P_{S^c} = identity on x - mu),
and the fraction of variance explained by S is sum_{i in S} lambda_i / sum_i lambda_i.

Component ranges are 1-indexed and inclusive, as in Table 1 ("1-16", "513-3072"). The paper's
ranges are for CIFAR-10 (D = 3072). For another dimension D (MNIST: 784) each range boundary is
scaled proportionally: a range [a, b] becomes [round((a-1) * D/3072) + 1, round(b * D/3072)], so a
range keeps the same *fraction* of the spectrum. For MNIST this gives 1-16 -> 1-4, 1-512 -> 1-131,
513-3072 -> 132-784, 2049-3072 -> 524-784. Note that about 67 MNIST pixels are constant zero in
the training set, so the last ~67 components of MNIST carry no variance at all.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from plumbing.validation import check_int

CIFAR10_DIM = 3 * 32 * 32  # the paper's ranges refer to this dimension (Table 1)


@dataclass(frozen=True)
class PCRange:
    """Principal components ``start``..``stop`` (1-indexed, inclusive)."""
    start: int
    stop: int

    def __post_init__(self):
        check_int("start", self.start, min_value=1)
        check_int("stop", self.stop, min_value=1)
        if self.stop < self.start:
            raise ValueError(f"stop must be >= start, got {self.start}-{self.stop}")

    @property
    def label(self) -> str:
        return f"{self.start}-{self.stop}"


@dataclass(frozen=True)
class PCSubset:
    """A union of disjoint component ranges, e.g. 1-16 & 513-3072 (Table 1, last row)."""
    ranges: tuple[PCRange, ...]

    def __post_init__(self):
        if not self.ranges or not all(isinstance(r, PCRange) for r in self.ranges):
            raise TypeError("ranges must be a non-empty tuple of PCRange")
        srt = sorted(self.ranges, key=lambda r: r.start)
        for a, b in zip(srt, srt[1:]):
            if b.start <= a.stop:
                raise ValueError(f"ranges must not overlap: {a.label} and {b.label}")

    @property
    def label(self) -> str:
        return "&".join(r.label for r in self.ranges)

    def indices(self, dim: int) -> np.ndarray:
        """0-based component indices; ValueError if a range exceeds ``dim``."""
        dim = check_int("dim", dim, min_value=1)
        for r in self.ranges:
            if r.stop > dim:
                raise ValueError(f"component range {r.label} exceeds the data dimension {dim}")
        return np.concatenate([np.arange(r.start - 1, r.stop) for r in self.ranges])

    def scaled(self, dim: int, ref_dim: int = CIFAR10_DIM) -> "PCSubset":
        """The same fractions of the spectrum for data of dimension ``dim`` (module docstring)."""
        dim = check_int("dim", dim, min_value=1)
        ref_dim = check_int("ref_dim", ref_dim, min_value=1)
        out = []
        for r in self.ranges:
            a = int(round((r.start - 1) * dim / ref_dim)) + 1
            b = int(round(r.stop * dim / ref_dim))
            out.append(PCRange(a, max(a, b)))
        return PCSubset(tuple(out))


def _sub(*pairs: tuple[int, int]) -> PCSubset:
    return PCSubset(tuple(PCRange(a, b) for a, b in pairs))


# The five rows of P&L Table 1 (CIFAR-10 component indices, D = 3072).
TABLE1_SUBSETS: dict[str, PCSubset] = {
    "1-16": _sub((1, 16)),
    "1-512": _sub((1, 512)),
    "513-3072": _sub((513, 3072)),
    "2049-3072": _sub((2049, 3072)),
    "1-16&513-3072": _sub((1, 16), (513, 3072)),
}


def subset_for_dim(name: str, dim: int) -> PCSubset:
    """Table 1 row ``name`` for data of dimension ``dim`` (scaled when dim != 3072)."""
    if name not in TABLE1_SUBSETS:
        raise ValueError(f"subset must be one of {', '.join(TABLE1_SUBSETS)}; got {name!r}")
    sub = TABLE1_SUBSETS[name]
    return sub if dim == CIFAR10_DIM else sub.scaled(dim)


@dataclass
class PCABasis:
    """Training mean (D,), principal directions as columns (D, D), variances (D,) decreasing."""
    mean: np.ndarray
    components: np.ndarray
    variances: np.ndarray

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    def explained_variance(self, subset: PCSubset) -> float:
        """Fraction of the total training variance in the span of ``subset`` (Table 1, 'Var. Expl.')."""
        lam = np.clip(self.variances, 0.0, None)
        return float(lam[subset.indices(self.dim)].sum() / lam.sum())


def fit_pca(x: torch.Tensor | np.ndarray, block: int = 4096) -> PCABasis:
    """Principal components of flattened images ``x`` (N, ...) in float64 (blocked covariance)."""
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if arr.ndim < 2 or arr.shape[0] < 2:
        raise ValueError(f"x must hold at least 2 images, got shape {arr.shape}")
    flat = arr.reshape(arr.shape[0], -1)
    if not np.all(np.isfinite(flat)):
        raise ValueError("x contains NaN or infinite values")
    n, d = flat.shape
    mean = flat.mean(axis=0, dtype=np.float64)
    cov = np.zeros((d, d))
    for i in range(0, n, block):
        c = flat[i:i + block].astype(np.float64) - mean
        cov += c.T @ c
    cov /= n - 1
    lam, vec = np.linalg.eigh(cov)
    order = np.argsort(lam)[::-1]
    return PCABasis(mean=mean, components=vec[:, order], variances=lam[order])


def project(x: torch.Tensor, basis: PCABasis, subset: PCSubset) -> torch.Tensor:
    """P_S(x) of the module docstring for images (N, C, H, W); same shape and dtype as ``x``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    flat = x.reshape(x.shape[0], -1).double()
    if flat.shape[1] != basis.dim:
        raise ValueError(f"x has {flat.shape[1]} values per image but the basis has dimension {basis.dim}")
    v = torch.from_numpy(basis.components[:, subset.indices(basis.dim)]).to(flat.device)
    mu = torch.from_numpy(basis.mean).to(flat.device)
    proj = mu + ((flat - mu) @ v) @ v.T
    return proj.to(x.dtype).reshape(x.shape)
