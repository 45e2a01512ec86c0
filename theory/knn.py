"""Exact brute-force nearest neighbours (any label), blocked so memory stays bounded.

Reference implementation used by the nearest-neighbour distance scaling of P&L Section 12 and as
the ground truth for faster kernels (``theory.separation``). Norms: "2" (Euclidean), "inf"
(Chebyshev), "angular" (angle in radians between the vectors).
"""
from __future__ import annotations

import numpy as np

from plumbing.validation import check_array, check_choice, check_int

NORMS = ("2", "inf", "angular")


def pairwise_distances(q: np.ndarray, r: np.ndarray, norm: str = "2") -> np.ndarray:
    """Dense (len(q), len(r)) distance matrix in float64 (exact for uint8 input)."""
    check_choice("norm", norm, NORMS)
    q = np.asarray(q, dtype=np.float64).reshape(len(q), -1)
    r = np.asarray(r, dtype=np.float64).reshape(len(r), -1)
    if norm == "inf":
        return np.abs(q[:, None, :] - r[None, :, :]).max(axis=2)
    if norm == "angular":
        qn = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-300)
        rn = r / np.maximum(np.linalg.norm(r, axis=1, keepdims=True), 1e-300)
        return np.arccos(np.clip(qn @ rn.T, -1.0, 1.0))
    sq = (q * q).sum(1)[:, None] + (r * r).sum(1)[None, :] - 2.0 * (q @ r.T)
    return np.sqrt(np.maximum(sq, 0.0))


def nearest_neighbor(queries, references, norm: str = "2", *, exclude_self: bool = False,
                     block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Distance to, and index of, each query's nearest reference.

    ``exclude_self`` (queries is references) skips the identical index. For norm "2" the
    squared distances are formed with BLAS and the winner's distance is recomputed exactly.
    """
    q = check_array("queries", queries, min_len=1)
    r = check_array("references", references, min_len=1 + int(exclude_self))
    block = check_int("block", block, min_value=1)
    q2 = q.reshape(len(q), -1)
    r2 = r.reshape(len(r), -1)
    if q2.shape[1] != r2.shape[1]:
        raise ValueError(f"queries and references must have the same number of features, "
                         f"got {q2.shape[1]} and {r2.shape[1]}")
    if exclude_self and len(q2) != len(r2):
        raise ValueError("exclude_self requires queries and references to be the same array")
    rf = r2.astype(np.float64)
    dist = np.empty(len(q2))
    idx = np.empty(len(q2), dtype=np.int64)
    # the l-inf difference tensor has block*len(r)*features entries: keep it near 2^25 (256 MB)
    inf_block = max(1, min(block, (1 << 25) // max(1, rf.shape[0] * rf.shape[1])))
    step = inf_block if norm == "inf" else block
    for s in range(0, len(q2), step):
        qb = q2[s:s + step].astype(np.float64)
        d = pairwise_distances(qb, rf, norm)
        if exclude_self:
            d[np.arange(len(qb)), np.arange(s, s + len(qb))] = np.inf
        j = np.argmin(d, axis=1)
        idx[s:s + len(qb)] = j
        if norm == "2":
            dist[s:s + len(qb)] = np.linalg.norm(qb - rf[j], axis=1)
        else:
            dist[s:s + len(qb)] = d[np.arange(len(qb)), j]
    return dist, idx
