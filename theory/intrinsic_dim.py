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
"""
from __future__ import annotations

import numpy as np

from .knn import pairwise_distances
from plumbing.validation import check_array, check_choice, check_int


def knn_distances(x: np.ndarray, k: int, *, norm: str = "2", block: int = 512) -> np.ndarray:
    """(n, k) sorted distances from every point of ``x`` to its k nearest *other* points."""
    x = check_array("x", x, min_len=2)
    k = check_int("k", k, min_value=1, max_value=len(x) - 1)
    flat = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    out = np.empty((len(flat), k))
    for s in range(0, len(flat), block):
        d = pairwise_distances(flat[s:s + block], flat, norm)
        d[np.arange(len(d)), np.arange(s, s + len(d))] = np.inf
        part = np.partition(d, k - 1, axis=1)[:, :k]
        out[s:s + len(d)] = np.sort(part, axis=1)
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


def levina_bickel(x: np.ndarray, k1: int = 10, k2: int | None = None, *, norm: str = "2",
                  aggregate: str = "inverse") -> float:
    """Global Levina–Bickel estimate averaged over k = k1..k2 (k2 = k1 when None)."""
    k1 = check_int("k1", k1, min_value=2)
    k2 = k1 if k2 is None else check_int("k2", k2, min_value=k1)
    check_choice("aggregate", aggregate, ("mean", "inverse"))
    x = check_array("x", x, min_len=k2 + 1)
    knn = knn_distances(x, k2, norm=norm)
    ests = []
    for k in range(k1, k2 + 1):
        m = levina_bickel_pointwise(knn, k)
        m = m[np.isfinite(m)]
        if not len(m):
            raise ValueError("every point has a duplicate among its nearest neighbours")
        ests.append(float(m.mean()) if aggregate == "mean" else float(1.0 / np.mean(1.0 / m)))
    return float(np.mean(ests))
