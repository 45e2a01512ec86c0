"""Levina–Bickel maximum-likelihood intrinsic-dimension estimator.

The comparison estimator asked for beside the slope estimate of P&L Section 12 (d* from
log r* against log n, ``theory.nn_scaling``). Reference: E. Levina and P. J. Bickel, "Maximum
Likelihood Estimation of Intrinsic Dimension", NIPS 2004.

Around a point x the neighbour counts within radius t are modelled as a Poisson process with rate
∝ t^{m−1}; maximising the likelihood over the k nearest neighbours (distances T_1 ≤ … ≤ T_k) gives

    m̂_k(x) = [ 1/(k−1) Σ_{j=1}^{k−1} ln(T_k(x) / T_j(x)) ]^{−1}.

The global estimate averages over points: ``aggregate="mean"`` averages m̂_k(x) (the original
paper); ``aggregate="inverse"`` inverts the average of 1/m̂_k(x) (MacKay and Ghahramani's
correction, less biased for small k). Both are averaged over k = k1..k2.

Duplicates. The estimator is undefined at a point with a neighbour at distance 0 (ln(T_k/0)), and
a duplicate is not a sample from a density, so exact duplicate rows are **dropped before the
estimate** (one copy of each distinct row is kept) and their number is reported by
:func:`levina_bickel_report`. Duplicates are detected exactly, by byte equality of the rows in
float64 (-0.0 counted as 0.0; for the angular norm, of the unit vectors), and the k-NN distances are
exact (``theory.knn``), so a duplicate can never hide as a tiny positive distance.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .knn import _block_rows, _check_knn_norm, _numeric, _unit_rows, knn_block
from plumbing.validation import check_choice, check_int


def unique_rows(x) -> tuple[np.ndarray, int]:
    """(distinct rows of ``x`` as a float64 (m, features) array in first-occurrence order, number
    of rows dropped as exact duplicates). Equality is byte equality of the float64 values."""
    flat = np.ascontiguousarray(np.asarray(x, dtype=np.float64).reshape(len(x), -1) + 0.0)
    keys = flat.view(np.dtype((np.void, flat.dtype.itemsize * flat.shape[1]))).ravel()
    _, first = np.unique(keys, return_index=True)
    first.sort()
    return flat[first], len(flat) - len(first)


def knn_distances(x: np.ndarray, k: int, *, norm: str = "2", block: int = 512) -> np.ndarray:
    """(n, k) sorted exact distances from every point of ``x`` to its k nearest *other* points
    (an exact duplicate is at distance 0.0 exactly)."""
    x = _numeric("x", x, 2)
    norm = _check_knn_norm(norm)
    k = check_int("k", k, min_value=1, max_value=len(x) - 1)
    block = check_int("block", block, min_value=1)
    flat = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    ref = _unit_rows(flat) if norm == "angular" else flat
    rsq = (ref * ref).sum(1)
    out = np.empty((len(flat), k))
    step = _block_rows(block, len(flat), flat.shape[1], norm, k)
    for s in range(0, len(flat), step):
        d, _ = knn_block(ref[s:s + step], ref, k, norm, ref_sq=None if norm == "angular" else rsq,
                         self_offset=s)
        out[s:s + len(d)] = d
    return out


def levina_bickel_pointwise(knn: np.ndarray, k: int) -> np.ndarray:
    """m̂_k(x) for every row of a sorted (n, ≥k) k-NN distance matrix; rows with a zero distance
    among the first k (duplicates) are NaN."""
    knn = np.asarray(knn, dtype=np.float64)
    k = check_int("k", k, min_value=2, max_value=knn.shape[1])
    t = knn[:, :k]
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.log(t[:, k - 1:k] / t[:, :k - 1]).sum(axis=1) / (k - 1)
        m = 1.0 / s
    m[~np.isfinite(m) | np.any(t <= 0, axis=1)] = np.nan
    return m


@dataclass(frozen=True)
class LevinaBickelResult:
    """The global estimate and what went into it."""
    estimate: float
    per_k: tuple[float, ...]     # the estimate at k = k1..k2 (``estimate`` is their mean)
    k1: int
    k2: int
    points_given: int
    points_used: int             # distinct rows
    duplicates_dropped: int      # points_given - points_used
    aggregate: str
    norm: str


def levina_bickel_report(x: np.ndarray, k1: int = 10, k2: int | None = None, *, norm: str = "2",
                         aggregate: str = "inverse") -> LevinaBickelResult:
    """Global Levina–Bickel estimate averaged over k = k1..k2 (k2 = k1 when None), after dropping
    exact duplicate rows (module docstring), with the number dropped."""
    k1 = check_int("k1", k1, min_value=2)
    k2 = k1 if k2 is None else check_int("k2", k2, min_value=k1)
    check_choice("aggregate", aggregate, ("mean", "inverse"))
    norm = _check_knn_norm(norm)
    x = _numeric("x", x, k2 + 1)
    flat = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    uniq, dropped = unique_rows(_unit_rows(flat) if norm == "angular" else flat)
    if len(uniq) < k2 + 1:
        raise ValueError(f"x has {len(uniq)} distinct rows after dropping {dropped} exact "
                         f"duplicates; k2 = {k2} needs at least {k2 + 1}")
    knn = knn_distances(uniq, k2, norm=norm)
    ests = []
    for k in range(k1, k2 + 1):
        m = levina_bickel_pointwise(knn, k)
        m = m[np.isfinite(m)]
        if not len(m):
            raise ValueError("no point has k distinct neighbours at a positive distance")
        ests.append(float(m.mean()) if aggregate == "mean" else float(1.0 / np.mean(1.0 / m)))
    return LevinaBickelResult(estimate=float(np.mean(ests)), per_k=tuple(ests), k1=k1, k2=k2,
                              points_given=len(flat), points_used=len(uniq),
                              duplicates_dropped=dropped, aggregate=aggregate, norm=norm)


def levina_bickel(x: np.ndarray, k1: int = 10, k2: int | None = None, *, norm: str = "2",
                  aggregate: str = "inverse") -> float:
    """Global Levina–Bickel estimate (exact duplicates dropped; :func:`levina_bickel_report` also
    gives how many)."""
    return levina_bickel_report(x, k1, k2, norm=norm, aggregate=aggregate).estimate
