"""Exact brute-force nearest neighbours (any label), blocked so memory stays bounded.

Reference implementation used by the nearest-neighbour distance scaling of P&L Section 12 and as
the ground truth for faster kernels (``theory.separation``). Norms: "2" (Euclidean), "inf"
(Chebyshev), "angular" (angle in radians between the vectors).

Exactness. Distances that can decide a zero (a duplicate, a tie) are never taken from the
Gram-matrix formula ||q||^2 + ||r||^2 - 2 q.r: its rounding error (about 1e-13 of ||q||^2 for
MNIST scaled to [0, 1]) turns into ~1e-6 after the square root, so an exact duplicate would sit at
1e-6 instead of 0. The formula only *shortlists* candidates: every reference whose approximate
squared distance lies within a rigorous rounding-error bound of the k-th smallest one; the
shortlist's distances are then recomputed directly as sqrt(sum of squared differences) (scaled,
so tiny differences do not underflow), and the k nearest are taken from those. The result is the
exact k nearest (ties broken by index) with distances accurate to a few ulps, and 0 exactly iff the
rows are equal.
"""
from __future__ import annotations

import numpy as np

from plumbing.validation import check_array, check_int, check_norm

NORMS = ("2", "inf", "angular")
_EPS64 = np.finfo(np.float64).eps


def _numeric(name: str, value, min_len: int) -> np.ndarray:
    """check_array plus: the array must hold numbers (not strings, bytes or objects) and have at
    least one dimension."""
    arr = check_array(name, value, min_len=min_len)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a numeric array (int, uint, float or bool), "
                        f"got dtype {arr.dtype}")
    if arr.ndim == 0:
        raise ValueError(f"{name} must be an array of points (at least 1 dimension), got a scalar")
    return arr


def _check_knn_norm(norm) -> str:
    """"angular", or a Euclidean/Chebyshev norm in any form :func:`check_norm` accepts."""
    if isinstance(norm, str) and norm == "angular":
        return norm
    try:
        return check_norm("norm", norm)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{exc} (or 'angular')") from None


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-300)


def _direct_l2(q: np.ndarray, r: np.ndarray) -> np.ndarray:
    """sqrt(sum (q - r)^2) along the last axis, scaled by max |q - r| so it cannot underflow:
    0 exactly iff the rows are equal."""
    diff = q - r
    scale = np.abs(diff).max(axis=-1)
    safe = np.where(scale > 0, scale, 1.0)
    return scale * np.sqrt(((diff / safe[..., None]) ** 2).sum(axis=-1))


def _direct_angle(qu: np.ndarray, ru: np.ndarray) -> np.ndarray:
    """Angle between unit vectors as 2 atan2(|u - v|, |u + v|) (accurate near 0 and pi; 0 exactly
    iff the unit vectors are equal)."""
    return 2.0 * np.arctan2(_direct_l2(qu, ru), np.linalg.norm(qu + ru, axis=-1))


def pairwise_distances(q: np.ndarray, r: np.ndarray, norm: str = "2") -> np.ndarray:
    """Dense (len(q), len(r)) distance matrix in float64, computed directly (exact zeros for
    equal rows; memory len(q) * len(r) * features floats for norms "2" and "inf")."""
    norm = _check_knn_norm(norm)
    q = np.asarray(q, dtype=np.float64).reshape(len(q), -1)
    r = np.asarray(r, dtype=np.float64).reshape(len(r), -1)
    if norm == "inf":
        return np.abs(q[:, None, :] - r[None, :, :]).max(axis=2)
    if norm == "angular":
        return _direct_angle(_unit_rows(q)[:, None, :], _unit_rows(r)[None, :, :])
    return _direct_l2(q[:, None, :], r[None, :, :])


def knn_block(qb: np.ndarray, ref: np.ndarray, k: int, norm: str, *, ref_sq: np.ndarray | None = None,
              self_offset: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest references of each row of ``qb`` (float64, 2-D): (distances, indices),
    both (len(qb), k), sorted by distance then index. ``self_offset``: qb[i] is ref[self_offset+i]
    and that index is skipped. For norms "2" and "angular" the shortlist comes from a BLAS
    product and a rigorous error bound (module docstring); for "inf" distances are exact."""
    b, nref = len(qb), len(ref)
    rows = np.arange(b)
    if norm == "inf":
        d = np.abs(qb[:, None, :] - ref[None, :, :]).max(axis=2)
        if self_offset is not None:
            d[rows, self_offset + rows] = np.inf
        order = np.lexsort((np.broadcast_to(np.arange(nref), d.shape), d), axis=1)[:, :k]
        return np.take_along_axis(d, order, axis=1), order
    if norm == "angular":
        qb, ref = _unit_rows(qb), _unit_rows(ref)
        ref_sq = None
    rsq = (ref * ref).sum(1) if ref_sq is None else ref_sq
    qsq = (qb * qb).sum(1)
    approx = qsq[:, None] + rsq[None, :] - 2.0 * (qb @ ref.T)
    # |fl(approx) - exact| <= gamma (||q||^2 + ||r||^2 + 2|q||r|) <= 2 gamma (||q||^2 + ||r||^2);
    # gamma = (features + 4) eps covers the dot products and the two additions, doubled for safety
    gamma = 2.0 * (qb.shape[1] + 4) * _EPS64
    tol = 4.0 * gamma * (qsq[:, None] + rsq.max())
    if self_offset is not None:
        approx[rows, self_offset + rows] = np.inf
    kth = np.partition(approx, k - 1, axis=1)[:, k - 1:k]
    cand = approx <= kth + 2.0 * tol
    width = int(cand.sum(axis=1).max())
    idx = np.argpartition(approx, width - 1, axis=1)[:, :width] if width < nref else \
        np.broadcast_to(np.arange(nref), (b, nref)).copy()
    direct = _direct_angle if norm == "angular" else _direct_l2
    d = np.empty(idx.shape)
    # many near-ties (e.g. small-integer data) widen the shortlist: recompute in row chunks so the
    # (rows, width, features) temporary stays near 2^24 floats
    rows_per = max(1, (1 << 24) // max(1, width * qb.shape[1]))
    for s in range(0, b, rows_per):
        d[s:s + rows_per] = direct(qb[s:s + rows_per, None, :], ref[idx[s:s + rows_per]])
    if self_offset is not None:
        d[idx == (self_offset + rows)[:, None]] = np.inf
    order = np.lexsort((idx, d), axis=1)[:, :k]
    return np.take_along_axis(d, order, axis=1), np.take_along_axis(idx, order, axis=1)


def _block_rows(block: int, nref: int, feats: int, norm: str, k: int) -> int:
    """Rows per block so the largest temporary stays near 2^25 floats (256 MB)."""
    per_row = nref * feats if norm == "inf" else nref + (k + 8) * feats
    return max(1, min(block, (1 << 25) // max(1, per_row)))


def nearest_neighbor(queries, references, norm: str = "2", *, exclude_self: bool = False,
                     block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Distance to, and index of, each query's nearest reference (exact; ties -> smallest index).

    ``exclude_self`` (queries is references) skips the identical index. An exact duplicate of a
    query is at distance 0.0 exactly (module docstring).
    """
    norm = _check_knn_norm(norm)
    q = _numeric("queries", queries, 1)
    r = _numeric("references", references, 1 + int(exclude_self))
    block = check_int("block", block, min_value=1)
    q2 = q.reshape(len(q), -1)
    r2 = r.reshape(len(r), -1)
    if q2.shape[1] != r2.shape[1]:
        raise ValueError(f"queries and references must have the same number of features, "
                         f"got {q2.shape[1]} and {r2.shape[1]}")
    if exclude_self and len(q2) != len(r2):
        raise ValueError("exclude_self requires queries and references to be the same array")
    rf = r2.astype(np.float64)
    rsq = (rf * rf).sum(1) if norm == "2" else None
    dist = np.empty(len(q2))
    idx = np.empty(len(q2), dtype=np.int64)
    step = _block_rows(block, len(rf), rf.shape[1], norm, 1)
    for s in range(0, len(q2), step):
        qb = q2[s:s + step].astype(np.float64)
        d, j = knn_block(qb, rf, 1, norm, ref_sq=rsq, self_offset=s if exclude_self else None)
        dist[s:s + len(qb)] = d[:, 0]
        idx[s:s + len(qb)] = j[:, 0]
    return dist, idx
