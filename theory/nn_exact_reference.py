"""The previous implementation of the exact 1-NN radius (``theory.nn_exact``), kept unchanged as
``method="reference"`` for the bench (``bench/bench_nn_exact.py``) and as an independent check in
the tests: one query at a time, direct-summation distances to every training point, bisector
bounds from a precomputed same-label neighbour table, absolute tolerances (scale >= 1). No box.
See ``theory.nn_exact`` for the definitions."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.optimize import linprog, nnls

from plumbing.validation import check_int
from theory.nn_exact import _prepare  # the same input checks as the fast code

FEAS_TOL = 1e-8
_HIGHS_TOL = 1e-10


def check_norm(name: str, value) -> str:
    from plumbing.validation import check_norm as _check_norm
    return _check_norm(name, value)


@dataclass
class ExactRadiusResult:
    """Per query: prediction (tie rule: lowest label), exact radius, a minimal adversarial point
    (NaN row where the radius is inf), the index of the other-label training point z whose region
    it reaches (-1 if none), the pruning lower bound min_z max_s dist(x, H_{z,s}) (a sound
    certificate on its own), the half-gap certificate (||x - z_nearest other|| - ||x - s_0||)/2
    in the l2 metric, and how many QP/LP candidates were solved."""
    norm: str
    prediction: np.ndarray
    radius: np.ndarray
    adversarial: np.ndarray
    target: np.ndarray
    lower_bound: np.ndarray
    half_gap_l2: np.ndarray
    n_solved: np.ndarray
    n_candidates: np.ndarray


def _dual_norm(v: np.ndarray, norm: str) -> np.ndarray:
    return np.abs(v).sum(axis=-1) if norm == "inf" else np.sqrt((v * v).sum(axis=-1))


def _label_knn(tx: np.ndarray, ty: np.ndarray, labels: np.ndarray, k: int, block: int = 512):
    """(N, len(labels), k) indices of the k training points of each label nearest to each training
    point (-1 padding). Only used to *choose* which bisector bounds to evaluate, so rounding in
    the BLAS distances cannot affect soundness."""
    n = len(tx)
    out = np.full((n, len(labels), k), -1, dtype=np.int64)
    sq = (tx * tx).sum(1)
    for ci, c in enumerate(labels):
        idx = np.flatnonzero(ty == c)
        kk = min(k, len(idx))
        R = tx[idx]
        for b0 in range(0, n, block):
            d = sq[b0:b0 + block, None] + sq[idx][None, :] - 2.0 * (tx[b0:b0 + block] @ R.T)
            part = np.argpartition(d, kk - 1, axis=1)[:, :kk] if kk < len(idx) else \
                np.broadcast_to(np.arange(len(idx)), (len(d), len(idx)))
            out[b0:b0 + block, ci, :kk] = idx[part]
    return out


def _ldp(A: np.ndarray, h: np.ndarray) -> np.ndarray:
    """min ||d||_2 s.t. A d <= h (Lawson-Hanson LDP via NNLS), polished on the active set."""
    m, dim = A.shape
    E = np.vstack([-A.T, -h[None, :]])            # G = -A, g = -h:  G d >= g
    f = np.zeros(dim + 1)
    f[-1] = 1.0
    u, _ = nnls(E, f, maxiter=50 * max(m, 10))
    r = E @ u - f
    if abs(r[-1]) < 1e-300:                         # incompatible (cannot happen: z is feasible)
        raise RuntimeError("least-distance program reported infeasible")
    d = -r[:dim] / r[-1]
    act = u > 0
    if act.any():
        As = A[act]
        mu, *_ = np.linalg.lstsq(As @ As.T, h[act], rcond=None)
        dp = As.T @ mu
        if np.max(A @ dp - h) <= max(np.max(A @ d - h), 0.0) + 1e-15:
            d = dp
    return d


def _lp_inf(A: np.ndarray, h: np.ndarray) -> np.ndarray:
    """min ||d||_inf s.t. A d <= h, as an LP in (d, t) solved by HiGHS."""
    m, dim = A.shape
    eye = sparse.identity(dim, format="csr")
    col = sparse.csr_matrix(-np.ones((dim, 1)))
    A_ub = sparse.vstack([sparse.hstack([sparse.csr_matrix(A), sparse.csr_matrix((m, 1))]),
                          sparse.hstack([eye, col]), sparse.hstack([-eye, col])], format="csr")
    b_ub = np.concatenate([h, np.zeros(2 * dim)])
    c = np.zeros(dim + 1)
    c[-1] = 1.0
    bounds = [(None, None)] * dim + [(0.0, None)]
    res = linprog(c, A_ub=A_ub, b_ub=b_ub, bounds=bounds, method="highs",
                  options={"primal_feasibility_tolerance": _HIGHS_TOL,
                           "dual_feasibility_tolerance": _HIGHS_TOL})
    if res.status != 0:
        raise RuntimeError(f"linprog (HiGHS) failed: {res.message}")
    return np.asarray(res.x[:dim])


def _region_distance(x, z, S, d2_S, d2_z, norm, best, init, k_add, tol):
    """dist(x, P_z) by cutting planes over the constraints of the same-label points S.

    Returns (value, delta) or (None, None) when the restricted value already reaches ``best``."""
    diff = S - z                                     # rows s - z
    nrm = np.sqrt((diff * diff).sum(axis=1))
    live = nrm > 0                                   # s == z gives 0 <= 0: no constraint
    h_all = np.where(live, (d2_S - d2_z) / (2.0 * np.where(live, nrm, 1.0)), 0.0)
    A_all = np.where(live[:, None], diff / np.where(live, nrm, 1.0)[:, None], 0.0)
    active = np.zeros(len(S), dtype=bool)
    active[init] = True
    active &= live
    if not active.any():
        active[np.flatnonzero(live)[:1]] = True
    solve = _ldp if norm == "2" else _lp_inf
    while True:
        idx = np.flatnonzero(active)
        d = solve(A_all[idx], h_all[idx])
        val = float(np.abs(d).max()) if norm == "inf" else float(np.sqrt(d @ d))
        if val >= best:
            return None, None
        viol = A_all @ d - h_all                     # signed distance past each bisector
        viol[~live] = -np.inf
        bad = np.flatnonzero((viol > tol) & ~active)
        if bad.size == 0:
            return val, d
        worst = bad[np.argsort(-viol[bad])[:k_add]]
        active[worst] = True


def same_label_neighbours(train_x, train_y, k_bound: int = 8) -> np.ndarray:
    """The (N, labels, k_bound) table of each training point's nearest points of every label,
    which :func:`exact_1nn` builds on every call; pass it as ``neighbours`` to reuse it across
    batches of queries on the same training set."""
    _, tx, ty = _prepare(np.zeros((0, np.asarray(train_x).reshape(len(train_x), -1).shape[1])),
                         train_x, train_y)
    return _label_knn(tx, ty, np.unique(ty), check_int("k_bound", k_bound, min_value=1))


def _exact_1nn_reference(queries, train_x, train_y, norm="2", *, k_bound: int = 8, k_init: int = 10,
                         k_add: int = 10, progress=None, neighbours=None) -> ExactRadiusResult:
    """Exact robust radii of the l2-metric 1-NN classifier for each query (module docstring).

    ``norm``: perturbation norm, "2" or "inf" (also 2, float("inf")). ``k_bound``: same-label
    points used in the pruning bound; ``k_init`` / ``k_add``: constraints in the first restricted
    problem / added per cutting-plane round (performance only: the radius does not depend on
    them). ``progress``: optional callable advanced by one per query."""
    norm = check_norm("norm", norm)
    k_bound = check_int("k_bound", k_bound, min_value=1)
    k_init = check_int("k_init", k_init, min_value=1)
    k_add = check_int("k_add", k_add, min_value=1)
    q, tx, ty = _prepare(queries, train_x, train_y)
    nq, dim = q.shape
    labels = np.unique(ty)
    if neighbours is not None:
        knn = np.asarray(neighbours)
        if knn.shape != (len(tx), len(labels), k_bound):
            raise ValueError(f"neighbours must have shape ({len(tx)}, {len(labels)}, {k_bound}) "
                             f"(from same_label_neighbours with the same k_bound), got {knn.shape}")
    else:
        knn = _label_knn(tx, ty, labels, k_bound) if nq and len(labels) > 1 else None
    scale = max(1.0, float(np.abs(tx).max()), float(np.abs(q).max()) if nq else 0.0)
    tol = FEAS_TOL * scale
    pred = np.empty(nq, dtype=np.int64)
    radius = np.full(nq, np.inf)
    adv = np.full((nq, dim), np.nan)
    target = np.full(nq, -1, dtype=np.int64)
    lower = np.full(nq, np.inf)
    half_gap = np.full(nq, np.inf)
    n_solved = np.zeros(nq, dtype=np.int64)
    n_cand = np.zeros(nq, dtype=np.int64)
    for i in range(nq):
        x = q[i]
        diff = tx - x
        d2 = np.einsum("ij,ij->i", diff, diff)
        a2 = d2.min()
        y = int(ty[d2 == a2].min())                  # tie rule: lowest label among the nearest
        pred[i] = y
        same = ty == y
        S_idx = np.flatnonzero(same)
        Z_idx = np.flatnonzero(~same)
        n_cand[i] = len(Z_idx)
        if len(Z_idx) == 0:
            if progress is not None:
                progress(1)
            continue
        half_gap[i] = (math.sqrt(d2[Z_idx].min()) - math.sqrt(a2)) / 2.0
        tie = Z_idx[d2[Z_idx] == a2]
        if tie.size:                                 # already tied: radius 0
            radius[i], adv[i], target[i], lower[i] = 0.0, x, int(tie[0]), 0.0
            if progress is not None:
                progress(1)
            continue
        S = tx[S_idx]
        d2_S = d2[S_idx]
        order_S = np.argsort(d2_S, kind="stable")
        kb = order_S[:k_bound]
        # Wang et al. bisector bound: max over the k_bound same-label points nearest to x and
        # the k_bound same-label points nearest to each candidate z
        lb = np.full(len(Z_idx), -np.inf)
        Zx = tx[Z_idx]
        for s in kb:
            dn = _dual_norm(Zx - S[s], norm)
            num = d2[Z_idx] - d2_S[s]
            with np.errstate(divide="ignore", invalid="ignore"):
                b = np.where(dn > 0, num / (2.0 * np.where(dn > 0, dn, 1.0)), -np.inf)
            lb = np.maximum(lb, b)
        near_z = knn[Z_idx, int(np.searchsorted(labels, y))]          # (|Z|, k) train indices
        for j in range(near_z.shape[1]):
            sj = near_z[:, j]
            ok = sj >= 0
            sj = np.where(ok, sj, 0)
            dn = _dual_norm(Zx - tx[sj], norm)
            num = d2[Z_idx] - d2[sj]
            with np.errstate(divide="ignore", invalid="ignore"):
                b = np.where(ok & (dn > 0), num / (2.0 * np.where(dn > 0, dn, 1.0)), -np.inf)
            lb = np.maximum(lb, b)
        lb = np.maximum(lb, 0.0)
        lower[i] = float(lb.min())
        init = order_S[:k_init]
        best, best_d, best_z = np.inf, None, -1
        for j in np.argsort(lb, kind="stable"):
            if lb[j] >= best:
                break
            z = Z_idx[j]
            n_solved[i] += 1
            pos = np.searchsorted(S_idx, near_z[j][near_z[j] >= 0])       # z's nearest label-y points
            cut = np.concatenate([init, pos])
            val, d = _region_distance(x, tx[z], S, d2_S, d2[z], norm, best, cut, k_add, tol)
            if val is not None and val < best:
                best, best_d, best_z = val, d, int(z)
        radius[i] = best
        adv[i] = x + best_d
        target[i] = best_z
        if progress is not None:
            progress(1)
    return ExactRadiusResult(norm, pred, radius, adv, target, lower, half_gap, n_solved, n_cand)
