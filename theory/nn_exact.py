"""Exact robust radius of the l2-metric 1-nearest-neighbour classifier, on whole data sets.

Used beside the half-gap lower bound of ``theory.nn_certificate`` (P&L Theorem 2, supplementary
Section 8; YRZSC Theorem 4.2, where on a finite sample the distance classifier is 1-NN).

Classifier. 1-NN in the Euclidean metric: the prediction at x is the label of the training point
nearest to x. Tie rule: when training points of several labels are at exactly the same squared
distance (decided in exact rational arithmetic), the *lowest* label is predicted.

Radius. For a query x with prediction y, in the perturbation norm ("2" or "inf"), optionally
inside a box B = [lo, hi] (the threat model where the perturbed input stays a valid image),

    R(x) = min over training points z with label != y of  dist(x, P_z ∩ B),
    P_z  = { x' : ||x' - z||_2 <= ||x' - s||_2 for every training point s labelled y },

the distance from x to the closed set where y is no longer the *unique* nearest label.

Robustness rule (ties count as attacks). x is called robust at eps when every x' (in B) with
||x' - x|| <= eps has y as its unique nearest label. Since the set above is closed, x is robust at
eps  iff  R(x) > eps. A query already at a tie has R = 0 (adversarial point = x).
Exception for the *prediction* under the lowest-label tie rule: at the adversarial point the
prediction may still be y (a tie that the tie rule resolves in favour of y), and when a point of
label y is duplicated by a point of another label, no perturbation near it changes the prediction
although R = 0 there. "R <= eps" therefore means "a tie or a flip within eps", not "a flip".
With one label R = inf. P_z ∩ B contains z (training points must lie in the box), so every problem
below is feasible.

Solvers (exact to the tolerance below).
* "2": the least-distance QP min ||d|| s.t. A d <= h, Lawson and Hanson's LDP reduction to
  non-negative least squares (``scipy.optimize.nnls``; "Solving Least Squares Problems", 1974,
  ch. 23), polished on the active set; box bounds enter as rows d_i <= hi_i - x_i,
  -d_i <= x_i - lo_i (added lazily like the bisectors).
* "inf": min t s.t. A d <= h, -t <= d_i <= t (and the box as variable bounds), a linear program
  solved by HiGHS (``scipy.optimize.linprog``).
Each problem is translated to the query and divided by its scale sigma = ||x - z||_2 (an upper
bound on dist(x, P_z ∩ B) in both norms), so every tolerance is relative. The data are centred
and divided by a power of two once, so R(c X, c q) = c R(X, q) up to rounding.

Search (best-first over the candidates z, each with a chain of increasing lower bounds).
Bounds (Wang, Jha, Chen, Chaudhuri, "Evaluating the robustness of nearest neighbor classifiers:
a primal-dual perspective", 2019): P_z lies in every bisector half-space H_{z,s}, so
dist(x, P_z) >= dist(x, H_{z,s}) = (||x-z||^2 - ||x-s||^2) / (2 ||s - z||_*), ||.||_* the dual
norm (l2 for "2", l1 for "inf"); any subset of the same-label s gives a lower bound.
 A. all candidates at once, from the bulk distances: l2 (||x-z|| - ||x-s_0||)/2 (triangle
    inequality); l-inf the bisector of s_0 with ||s_0 - z||_1 <= ||s_0 - x||_1 + ||x - z||_1;
 B. per block of candidates in increasing A order: the bisectors of the k_near same-label points
    nearest to x (one BLAS product);
 C. per candidate: the bisectors of *all* same-label points (one matrix-vector product);
 D. cutting planes: the QP/LP restricted to the k_init most binding bisectors of C, checked against
    every same-label bisector (and the box), the k_add most violated ones added per round; each
    restricted optimum is again a lower bound, the final one is dist(x, P_z ∩ B) itself.
A priority queue always advances the candidate with the smallest current bound; the first
candidate whose bound is exact is the answer, since every other bound is already >= it. All
bounds are deflated by a rigorous floating-point error bound, so pruning is sound; the bulk
distances come from one BLAS product per chunk of queries, and the decisions that hinge on zero
(prediction, ties at the query) are re-checked in exact rational arithmetic.
The reported ``lower_bound`` is min over z of the best single-bisector bound (stage C, over all
same-label points, ignoring the box): a certificate on its own (<= R).

Tolerance. The adversarial point x' satisfies every bisector constraint of its P_z (and the box)
up to ``FEAS_TOL * sigma`` in distance units: ||x' - z|| <= ||x' - s|| + 2 FEAS_TOL sigma for all
s labelled y.

``method="reference"`` runs the previous implementation (``theory.nn_exact_reference``: no box,
absolute tolerances) for comparisons and the bench.
"""
from __future__ import annotations

import contextlib
import heapq
import math
from dataclasses import dataclass
from fractions import Fraction

import numba
import numpy as np
from scipy import sparse
from scipy.optimize import linprog, nnls

try:  # optional: pins BLAS to one thread for the many small products (speed only, never results)
    from threadpoolctl import threadpool_limits as _threadpool_limits
except ImportError:  # not a dependency of the project (it comes with scikit-learn, the bench extra)
    _threadpool_limits = None

from plumbing.validation import check_array, check_int

FEAS_TOL = 1e-10     # accepted violation of a constraint, in units of the problem's scale sigma
_HIGHS_TOL = 1e-10   # HiGHS primal and dual feasibility tolerances (the LP is scaled to O(1))
_POLISH_TOL = 1e-11  # accepted violation of the active-set polish (scaled problem)
_U = 2.0 ** -53      # float64 unit roundoff
_U32 = 2.0 ** -24    # float32 unit roundoff
METHODS = ("fast", "reference")

# status codes of ExactRadiusResult.status
SOLVED, TIE_AT_QUERY, MISCLASSIFIED, ONE_LABEL = 0, 1, 2, 3


def check_norm(name: str, value) -> str:
    """Normalise ``value`` to "2" or "inf" (``plumbing.validation.check_norm``)."""
    from plumbing.validation import check_norm as _check_norm
    return _check_norm(name, value)


@dataclass
class ExactRadiusResult:
    """Per query: prediction (tie rule: lowest label), exact radius, a minimal adversarial point
    (NaN row where the radius is inf), the index of the other-label training point z whose region
    it reaches (-1 if none), the single-bisector lower bound (a certificate on its own), the
    half-gap certificate (||x - z_nearest other|| - ||x - s_0||)/2 in the l2 metric, how many
    candidates had a QP/LP solved, the number of candidates, and a status (0 solved, 1 tie at the
    query, 2 misclassified (``labels`` given: radius 0, not solved), 3 one label only)."""
    norm: str
    prediction: np.ndarray
    radius: np.ndarray
    adversarial: np.ndarray
    target: np.ndarray
    lower_bound: np.ndarray
    half_gap_l2: np.ndarray
    n_solved: np.ndarray
    n_candidates: np.ndarray
    status: np.ndarray | None = None
    box: tuple | None = None


# --------------------------------------------------------------------------- input checks

def _prepare(queries, train_x, train_y):
    tx = check_array("train_x", train_x, min_len=1)
    if tx.ndim < 1 or tx.dtype.kind not in "uif":
        raise TypeError(f"train_x must be a numeric array of rows, got dtype {tx.dtype}")
    n = len(tx)
    tx = tx.reshape(n, -1).astype(np.float64)
    ty = np.asarray(train_y)
    if ty.shape != (n,):
        raise ValueError(f"train_y must have shape ({n},) (one label per training row), got {ty.shape}")
    if ty.dtype.kind not in "iu":
        if ty.dtype.kind == "f" and np.all(np.isfinite(ty)) and np.all(ty == np.round(ty)):
            ty = ty.astype(np.int64)
        else:
            raise TypeError(f"train_y must hold integer labels, got dtype {ty.dtype}")
    ty = ty.astype(np.int64)
    q = check_array("queries", queries, min_len=0)
    if q.dtype.kind not in "uif":
        raise TypeError(f"queries must be a numeric array, got dtype {q.dtype}")
    if q.ndim >= 1:
        q = q.reshape(len(q), -1 if len(q) else tx.shape[1]).astype(np.float64)
    if q.ndim != 2 or q.shape[1] != tx.shape[1]:
        raise ValueError(f"queries must be rows with {tx.shape[1]} features like train_x, "
                         f"got shape {np.asarray(queries).shape}")
    return q, tx, ty


def _check_box(box, dim, tx, q):
    """(lo, hi) as float64 arrays of length dim; training points and queries must lie inside."""
    if box is None:
        return None
    if not isinstance(box, (tuple, list)) or len(box) != 2:
        raise TypeError(f"box must be None or a pair (lo, hi) of numbers or arrays, got {box!r}")
    lo = np.broadcast_to(np.asarray(box[0], dtype=np.float64), (dim,)).copy()
    hi = np.broadcast_to(np.asarray(box[1], dtype=np.float64), (dim,)).copy()
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(lo < hi)):
        raise ValueError("box must satisfy lo < hi with finite bounds in every coordinate")
    if len(tx) and (np.any(tx < lo) or np.any(tx > hi)):
        raise ValueError("box: every training point must lie inside [lo, hi]")
    if len(q) and (np.any(q < lo) or np.any(q > hi)):
        raise ValueError("box: every query must lie inside [lo, hi]")
    return lo, hi


# --------------------------------------------------------------------------- kernels

@numba.njit(parallel=True, cache=True, fastmath=True)
def _l1_block(Q, T, DM, UM, out):  # pragma: no cover - compiled
    """out[b, j] = sum_k DM[b,k] (Q[b,k] - T[j,k])_+ + UM[b,k] (T[j,k] - Q[b,k])_+ (float32),
    tiled over T for cache reuse. With DM = UM = 1 this is the l1 distance; with the box masks
    (DM[b,k] = 1 iff query b can move down along k, UM likewise up) it bounds the box-movable l1
    norm of (s - z) through the query (triangle inequality per coordinate)."""
    B, d = Q.shape
    N = T.shape[0]
    tile = 64
    nt = (N + tile - 1) // tile
    for ti in numba.prange(nt):
        t0 = ti * tile
        t1 = min(N, t0 + tile)
        for b in range(B):
            for j in range(t0, t1):
                acc = np.float32(0.0)
                for k in range(d):
                    a = Q[b, k] - T[j, k]
                    acc += DM[b, k] * max(a, np.float32(0.0)) + UM[b, k] * max(-a, np.float32(0.0))
                out[b, j] = acc


@numba.njit(cache=True, fastmath=True)
def _l1_rows(R, v, out):  # pragma: no cover - compiled
    """out[j] = sum_k |R[j, k] - v[k]| (float32)."""
    n, d = R.shape
    for j in range(n):
        acc = np.float32(0.0)
        for k in range(d):
            acc += abs(R[j, k] - v[k])
        out[j] = acc


@numba.njit(cache=True, fastmath=True)
def _movable1(R, Z, DM, UM, out):  # pragma: no cover - compiled
    """out[j, m] = sum_k DM[k] (a_k)_+ + UM[k] (-a_k)_+, a = R[j] - Z[m]: the l1 norm of the
    half-space normal a over the coordinates along which a . d can still be decreased inside the
    box (a_k > 0 needs d_k < 0: DM[k] = 1 iff x_k > lo_k; UM likewise)."""
    nr, d = R.shape
    nz = Z.shape[0]
    for j in range(nr):
        for m in range(nz):
            acc = np.float32(0.0)
            for k in range(d):
                a = R[j, k] - Z[m, k]
                acc += DM[k] * max(a, np.float32(0.0)) + UM[k] * max(-a, np.float32(0.0))
            out[j, m] = acc


@numba.njit(cache=True, fastmath=True)
def _movable2(R, Z, DM, UM, out):  # pragma: no cover - compiled
    """As :func:`_movable1` with squares: the squared l2 norm of the movable part of a."""
    nr, d = R.shape
    nz = Z.shape[0]
    for j in range(nr):
        for m in range(nz):
            acc = np.float32(0.0)
            for k in range(d):
                a = R[j, k] - Z[m, k]
                pa = max(a, np.float32(0.0))
                na = max(-a, np.float32(0.0))
                acc += DM[k] * pa * pa + UM[k] * na * na
            out[j, m] = acc


def _movable_pairs(R, Z, DM, UM, p, out):
    (_movable1 if p == 1 else _movable2)(R, Z, DM, UM, out)


def _l1_up(l1_f32, n1a, n1b, dim):
    """Rigorous upper bound on the exact float64 l1 distance from a float32 evaluation."""
    return l1_f32.astype(np.float64) * (1.0 + 2.0 * (dim + 2) * _U32) + 2.0 * _U32 * (n1a + n1b)


def _l2_up(sq_f32, n2a, n2b, dim):
    """Rigorous upper bound on a float64 l2 norm of a difference from a float32 sum of squares
    (n2a, n2b: l2 norms of the two rows)."""
    return (np.sqrt(sq_f32.astype(np.float64) * (1.0 + 2.0 * (dim + 2) * _U32))
            + 2.0 * _U32 * (n2a + n2b))


def _exact_sq(a: np.ndarray, b: np.ndarray) -> Fraction:
    return sum(((Fraction(float(u)) - Fraction(float(v))) ** 2 for u, v in zip(a, b)), Fraction(0))


# --------------------------------------------------------------------------- sub-problems

def _ldp(A: np.ndarray, h: np.ndarray):
    """min ||d||_2 s.t. A d <= h (Lawson-Hanson LDP via NNLS), polished on the active set.
    Rows of A have unit norm and h is O(1) (the caller scales), so the tolerances are relative.
    Returns None when the program is infeasible."""
    m, dim = A.shape
    E = np.vstack([-A.T, -h[None, :]])            # G = -A, g = -h:  G d >= g
    f = np.zeros(dim + 1)
    f[-1] = 1.0
    u, _ = nnls(E, f, maxiter=50 * max(m, 10))
    r = E @ u - f
    if abs(r[-1]) < 1e-12:
        return None
    cands = [-r[:dim] / r[-1]]
    act = u > 0
    if act.any():
        As = A[act]
        mu, *_ = np.linalg.lstsq(As @ As.T, h[act], rcond=None)
        cands.append(As.T @ mu)
    viol = [float(np.max(A @ c - h)) for c in cands]
    ok = [c for c, v in zip(cands, viol) if v <= _POLISH_TOL]
    if ok:
        return min(ok, key=lambda c: float(c @ c))
    return cands[int(np.argmin(viol))]


def _lp_inf_linprog(A: np.ndarray, h: np.ndarray, lb=None, ub=None) -> np.ndarray:
    """min ||d||_inf s.t. A d <= h (and lb <= d <= ub), an LP in (d, t) solved by HiGHS through
    ``scipy.optimize.linprog``."""
    m, dim = A.shape
    eye = sparse.identity(dim, format="csr")
    col = sparse.csr_matrix(-np.ones((dim, 1)))
    A_ub = sparse.vstack([sparse.hstack([sparse.csr_matrix(A), sparse.csr_matrix((m, 1))]),
                          sparse.hstack([eye, col]), sparse.hstack([-eye, col])], format="csr")
    b_ub = np.concatenate([h, np.zeros(2 * dim)])
    c = np.zeros(dim + 1)
    c[-1] = 1.0
    if lb is None:
        bounds = [(None, None)] * dim + [(0.0, None)]
    else:
        bounds = np.column_stack([np.append(lb, 0.0), np.append(ub, np.inf)])
    res = linprog(c, A_ub=A_ub, b_ub=b_ub, bounds=bounds, method="highs",
                  options={"primal_feasibility_tolerance": _HIGHS_TOL,
                           "dual_feasibility_tolerance": _HIGHS_TOL})
    if res.status != 0:
        raise RuntimeError(f"linprog (HiGHS) failed: {res.message}")
    return np.asarray(res.x[:dim])


try:   # the HiGHS object that scipy ships (same solver as linprog, without its conversions)
    from scipy.optimize._highspy import _core as _hc
    _HIGHS_DIRECT = hasattr(_hc, "_Highs")
except ImportError:  # pragma: no cover - other scipy versions: linprog
    _HIGHS_DIRECT = False


def _lp_inf(A: np.ndarray, h: np.ndarray, lb=None, ub=None) -> np.ndarray:
    """min ||d||_inf s.t. A d <= h (and lb <= d <= ub): the LP min t s.t. A d <= h,
    d_k - t <= 0, -d_k - t <= 0, solved by HiGHS (scipy's bundled HiGHS object when available,
    else ``scipy.optimize.linprog``; the same solver and tolerances either way)."""
    if not _HIGHS_DIRECT:
        return _lp_inf_linprog(A, h, lb, ub)
    m, dim = A.shape
    inf = _hc.kHighsInf
    H = _hc._Highs()
    H.setOptionValue("output_flag", False)
    H.setOptionValue("primal_feasibility_tolerance", _HIGHS_TOL)
    H.setOptionValue("dual_feasibility_tolerance", _HIGHS_TOL)
    lo = np.full(dim, -inf) if lb is None else np.asarray(lb, dtype=np.float64)
    up = np.full(dim, inf) if ub is None else np.asarray(ub, dtype=np.float64)
    H.addVars(dim + 1, np.append(lo, 0.0), np.append(up, inf))
    H.changeColCost(dim, 1.0)
    k = np.arange(dim, dtype=np.int32)
    idx = np.empty(4 * dim, dtype=np.int32)
    val = np.empty(4 * dim)
    idx[0::2] = np.concatenate([k, k])
    idx[1::2] = dim
    val[0::2] = np.concatenate([np.ones(dim), -np.ones(dim)])
    val[1::2] = -1.0
    H.addRows(2 * dim, np.full(2 * dim, -inf), np.zeros(2 * dim), 4 * dim,
              np.arange(0, 4 * dim, 2, dtype=np.int32), idx, val)
    nz = A != 0.0
    cnt = nz.sum(1)
    starts = np.concatenate([[0], np.cumsum(cnt)[:-1]]).astype(np.int32)
    cols = np.nonzero(nz)[1].astype(np.int32)
    H.addRows(m, np.full(m, -inf), np.asarray(h, dtype=np.float64), int(cnt.sum()), starts, cols,
              A[nz])
    H.run()
    if H.getModelStatus() != _hc.HighsModelStatus.kOptimal:
        return _lp_inf_linprog(A, h, lb, ub)
    return np.asarray(H.getSolution().col_value[:dim])


# --------------------------------------------------------------------------- the index

class _Index:
    """Training set sorted by label, centred and divided by a power of two (exact rescaling)."""

    def __init__(self, tx, ty, norm, box):
        order = np.argsort(ty, kind="stable")
        self.order = order
        self.raw = tx[order]
        self.y = ty[order]
        self.labels, self.starts = np.unique(self.y, return_index=True)
        self.ends = np.append(self.starts[1:], len(self.y))
        self.mu = self.raw.mean(0)
        cen = self.raw - self.mu
        rms = math.sqrt(float(np.mean(cen * cen))) if cen.size else 0.0
        if not rms > 0:
            rms = max(float(np.abs(self.mu).max()), 1.0)
        self.sg = 2.0 ** round(math.log2(rms))
        self.T = cen / self.sg
        self.sq = np.einsum("ij,ij->i", self.T, self.T)
        self.dim = tx.shape[1]
        self.norm = norm
        self.gamma = 4.0 * (self.dim + 4) * _U
        self.box = None
        self.box_raw = box
        if box is not None:
            self.box = ((box[0] - self.mu) / self.sg, (box[1] - self.mu) / self.sg)
        if norm == "inf" or box is not None:
            self.T32 = self.T.astype(np.float32)
            self.n1 = np.abs(self.T).sum(1)
            self.n2 = np.sqrt(self.sq)

    def transform(self, q):
        return (q - self.mu) / self.sg


def _stage_c(ix, x, g, z, s0, s1, sqx, down_ok=None, up_ok=None):
    """Bisectors of z against all same-label points: (bound, per-row bound, state)."""
    S = ix.T[s0:s1]
    sqS = ix.sq[s0:s1]
    zt = ix.T[z]
    sqz = ix.sq[z]
    n2 = sqS + sqz - 2.0 * (S @ zt)
    small = n2 <= 1e-6 * (sqS + sqz) + 1e-300
    if small.any():
        dd = S[small] - zt
        n2[small] = np.einsum("ij,ij->i", dd, dd)
    live = n2 > 0
    nrm = np.sqrt(np.where(live, n2, 1.0))
    h = ((sqS - sqz) / 2.0 - (g[s0:s1] - g[z])) / nrm        # x + d in P_z  <=>  a.d <= h
    errh = ix.gamma * (sqS + sqz + 2.0 * math.sqrt(sqx) * (np.sqrt(sqS) + math.sqrt(sqz))) / nrm
    errh += ix.gamma * np.abs(h)
    viol0 = np.maximum(-h - errh, 0.0)                         # l2 distance to the half-space
    if ix.box is not None:                     # only coordinates that can move inside the box
        w = np.empty((s1 - s0, 1), dtype=np.float32)
        p = 1 if ix.norm == "inf" else 2
        _movable_pairs(ix.T32[s0:s1], ix.T32[z][None, :], down_ok, up_ok, p, w)
        w = w[:, 0]
        if p == 1:
            wu = _l1_up(w, ix.n1[s0:s1], ix.n1[z], ix.dim)
        else:
            wu = _l2_up(w, ix.n2[s0:s1], ix.n2[z], ix.dim)
        per = np.where(wu > 0, viol0 * nrm / np.where(wu > 0, wu, 1.0),
                       np.where(viol0 > 0, np.inf, 0.0))
    elif ix.norm == "inf":
        l1 = np.empty(s1 - s0, dtype=np.float32)
        _l1_rows(ix.T32[s0:s1], ix.T32[z], l1)
        l1u = _l1_up(l1, ix.n1[s0:s1], ix.n1[z], ix.dim)
        per = np.where(l1u > 0, viol0 * nrm / np.where(l1u > 0, l1u, 1.0), 0.0)
    else:
        per = viol0
    per = np.where(live, per, 0.0)
    return per, nrm, h, live


def _solve_round(ix, st, x, k_add):
    """One cutting-plane round for candidate state ``st``: (value, d, exact)."""
    s0, s1, z = st["s0"], st["s1"], st["z"]
    S = ix.T[s0:s1]
    zt = ix.T[z]
    sig = st["sigma"]
    act = np.flatnonzero(st["active"])
    A = (S[act] - zt) / st["nrm"][act, None]
    hh = st["h"][act] / sig
    box = ix.box
    # coordinates on which no active row depends: d_k = 0 there is optimal (and inside the box,
    # which contains x), so the program is solved on the support of the active rows only
    cols = np.flatnonzero(np.any(A != 0.0, axis=0))
    if ix.norm == "2" and box is not None and st["box_rows"]:
        cols = np.union1d(cols, np.array([c for c, _ in st["box_rows"]]))
    Ac = A[:, cols]
    d = np.zeros(ix.dim)
    if ix.norm == "2":
        if box is not None and st["box_rows"]:
            cs = np.array([c for c, _ in st["box_rows"]])
            sg_ = np.array([s for _, s in st["box_rows"]], dtype=np.float64)
            B = np.zeros((len(cs), len(cols)))
            B[np.arange(len(cs)), np.searchsorted(cols, cs)] = sg_
            hb = np.where(sg_ > 0, box[1][cs] - x[cs], x[cs] - box[0][cs]) / sig
            Ac = np.vstack([Ac, B])
            hh = np.concatenate([hh, hb])
        dn = _ldp(Ac, hh)
        if dn is None:                      # cannot happen for points inside the box
            return math.inf, None, True
        d[cols] = dn * sig
        val = float(math.sqrt(d @ d))
    else:
        lb = ub = None
        if box is not None:
            lb, ub = (box[0][cols] - x[cols]) / sig, (box[1][cols] - x[cols]) / sig
        d[cols] = _lp_inf(Ac, hh, lb, ub) * sig
        val = float(np.abs(d).max())
    tol = FEAS_TOL * sig
    viol = (S @ d - zt @ d) / st["nrm"] - st["h"]
    viol[~st["live"]] = -np.inf
    bad = np.flatnonzero((viol > tol) & ~st["active"])
    new_box = []
    if ix.norm == "2" and box is not None:
        xp = x + d
        for c in np.flatnonzero(xp - box[1] > tol):
            if (int(c), 1) not in st["box_rows"]:
                new_box.append((int(c), 1))
        for c in np.flatnonzero(box[0] - xp > tol):
            if (int(c), -1) not in st["box_rows"]:
                new_box.append((int(c), -1))
    if bad.size == 0 and not new_box:
        return val, d, True
    if bad.size:
        st["active"][bad[np.argsort(-viol[bad])[:k_add]]] = True
    st["box_rows"].extend(new_box)
    return val, d, False


def _search(ix, x, g, d2, lo2, hi2, l1row, s0, s1, sqx, k_near, k_init, k_add, down_ok=None,
            up_ok=None):
    """Best-first search over the candidates of one query: (radius, d, z, lower_bound, n_solved)."""
    N = len(ix.y)
    Z = np.concatenate([np.arange(0, s0), np.arange(s1, N)])
    sn = s0 + int(np.argmin(d2[s0:s1]))                       # nearest same-label point
    a2_hi = float(hi2[sn])
    if ix.norm == "2":
        bA = np.maximum(np.sqrt(lo2[Z]) - math.sqrt(a2_hi), 0.0) / 2.0
    else:
        # l1row: box-movable l1 from the query (plain l1 without a box), see _l1_block
        l1u = _l1_up(l1row[Z], ix.n1[Z], 0.0, ix.dim)
        if ix.box is None:
            l1s = float(_l1_up(l1row[sn:sn + 1], ix.n1[sn:sn + 1], 0.0, ix.dim)[0])
        else:   # box-movable part of (s_0 - x): a_k > 0 needs a decrease of x_k, and so on
            a = ix.T[sn] - x
            l1s = float(down_ok @ np.maximum(a, 0.0) + up_ok @ np.maximum(-a, 0.0))
            l1s = l1s * (1.0 + 4.0 * (ix.dim + 2) * _U)
        # the query's own l1 norm enters the rounding bound of both terms
        l1u = l1u + 2.0 * _U32 * float(np.abs(x).sum())
        l1s = l1s + 2.0 * _U32 * float(np.abs(x).sum())
        bA = np.maximum(lo2[Z] - a2_hi, 0.0) / (2.0 * (l1u + l1s))
    kk = min(k_near, s1 - s0)
    near = s0 + (np.argpartition(d2[s0:s1], kk - 1)[:kk] if kk < s1 - s0 else np.arange(s1 - s0))
    # stage-A pool: blocks in increasing bound order
    first = min(64, len(Z))
    if first < len(Z):
        part = np.argpartition(bA, first)
        pending, rest = part[:first], part[first:]
        nextA = float(bA[part[first]])
    else:
        pending, rest, nextA = np.arange(len(Z)), np.arange(0), math.inf
    heap = []
    cnt = 0
    lower = math.inf
    n_solved = 0

    def expand(block):
        nonlocal cnt
        zb = Z[block]
        if ix.box is not None:
            w = np.empty((len(near), len(zb)), dtype=np.float32)
            p = 1 if ix.norm == "inf" else 2
            _movable_pairs(ix.T32[near], ix.T32[zb], down_ok, up_ok, p, w)
            if p == 1:
                den = 2.0 * _l1_up(w, ix.n1[near][:, None], ix.n1[zb][None, :], ix.dim)
            else:
                den = 2.0 * _l2_up(w, ix.n2[near][:, None], ix.n2[zb][None, :], ix.dim)
        elif ix.norm == "2":
            P = ix.T[near] @ ix.T[zb].T
            n2 = ix.sq[near][:, None] + ix.sq[zb][None, :] - 2.0 * P
            en = ix.gamma * (ix.sq[near][:, None] + ix.sq[zb][None, :])
            den = 2.0 * np.sqrt(np.maximum(n2 + en, 0.0))
        else:
            l1 = np.empty((len(near), len(zb)), dtype=np.float32)
            ones = np.ones((len(near), ix.dim), dtype=np.float32)
            _l1_block(ix.T32[near], ix.T32[zb], ones, ones, l1)
            den = 2.0 * _l1_up(l1, ix.n1[near][:, None], ix.n1[zb][None, :], ix.dim)
        num = np.maximum(lo2[zb][None, :] - hi2[near][:, None], 0.0)
        b = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0).max(0)
        b = np.maximum(b, bA[block])
        for j in range(len(zb)):
            heapq.heappush(heap, (float(b[j]), cnt, 0, int(zb[j])))
            cnt += 1

    expand(pending)
    while True:
        top = heap[0][0] if heap else math.inf
        if nextA <= top and nextA < math.inf:
            size = min(256, len(rest))
            if size < len(rest):
                part = np.argpartition(bA[rest], size)
                blk, rest = rest[part[:size]], rest[part[size:]]
                nextA = float(bA[rest].min())
            else:
                blk, rest, nextA = rest, rest[:0], math.inf
            expand(blk)
            continue
        bound, _, kind, item = heapq.heappop(heap)
        if kind == 0:                                         # stage C
            z = item
            per, nrm, h, live = _stage_c(ix, x, g, z, s0, s1, sqx, down_ok, up_ok)
            bC = float(per.max()) if per.size else 0.0
            lower = min(lower, bC)
            active = np.zeros(s1 - s0, dtype=bool)
            ki = min(k_init, int(live.sum()))
            if ki:
                cand = np.flatnonzero(live)
                top_rows = cand[np.argsort(-per[cand], kind="stable")[:ki]]
                if not (per[top_rows] > 0).any():   # no bisector separates: most violated by h
                    top_rows = cand[np.argsort(h[cand], kind="stable")[:ki]]
                active[top_rows] = True
            st = {"z": z, "s0": s0, "s1": s1, "nrm": nrm, "h": h, "live": live, "active": active,
                  "sigma": max(math.sqrt(max(float(d2[z]), 0.0)), 1e-300), "box_rows": [],
                  "solved": False}
            heapq.heappush(heap, (max(bound, bC), cnt, 1, st))
            cnt += 1
        elif kind == 1:                                       # one cutting-plane round
            st = item
            if not st["solved"]:
                st["solved"] = True
                n_solved += 1
            if not st["active"].any() and not st["box_rows"]:
                d = np.zeros(ix.dim)                          # x itself lies in P_z
                val, exact = 0.0, True
            else:
                val, d, exact = _solve_round(ix, st, x, k_add)
            if exact:
                heapq.heappush(heap, (val, cnt, 2, (val, d, st["z"])))
            else:
                heapq.heappush(heap, (max(val, bound), cnt, 1, st))
            cnt += 1
        else:
            val, d, z = item
            return val, d, z, min(lower, val), n_solved


def _predict(ix, q_raw, lo2, hi2):
    """(prediction, tie, other-label training index at the tie): exact rational re-check of every
    training point whose float distance could be the minimum."""
    minhi = float(hi2.min())
    C = np.flatnonzero(lo2 <= minhi)
    labs = ix.y[C]
    if np.all(labs == labs[0]):
        return int(labs[0]), False, -1
    ex = [_exact_sq(ix.raw[c], q_raw) for c in C]
    m = min(ex)
    win = [c for c, e in zip(C, ex) if e == m]
    wl = ix.y[win]
    pred = int(wl.min())
    if np.all(wl == pred):
        return pred, False, -1
    other = [c for c in win if ix.y[c] != pred][0]
    return pred, True, int(other)


def build_index(train_x, train_y, norm="2", box=None):
    """The prepared training set (sorted by label, centred, scaled) for repeated calls of
    :func:`exact_1nn` on the same training set, norm and box (pass it as ``index``)."""
    norm = check_norm("norm", norm)
    q, tx, ty = _prepare(np.zeros((0, np.asarray(train_x).reshape(len(train_x), -1).shape[1])),
                         train_x, train_y)
    bx = _check_box(box, tx.shape[1], tx, q)
    return _Index(tx, ty, norm, bx)


def exact_1nn(queries, train_x, train_y, norm="2", *, box=None, labels=None, method: str = "fast",
              chunk: int = 128, k_near: int = 16, k_init: int = 8, k_add: int = 16,
              progress=None, index=None, **reference_kwargs) -> ExactRadiusResult:
    """Exact robust radii of the l2-metric 1-NN classifier for each query (module docstring).

    ``norm``: perturbation norm, "2" or "inf" (also 2, float("inf")). ``box``: None (unconstrained
    perturbations) or (lo, hi), numbers or per-feature arrays: the perturbed input must stay in
    [lo, hi] (training points and queries must lie inside). ``labels``: optional true labels of
    the queries; a misclassified query (prediction != label) gets radius 0 and is not solved
    (it is not robustly correct at any radius). ``chunk``: queries per bulk BLAS product;
    ``k_near``, ``k_init``, ``k_add``: bisectors in the block bound, in the first restricted problem,
    added per cutting-plane round (performance only: the radius does not depend on them).
    ``progress``: optional callable advanced by one per query. ``index``: the result of
    :func:`build_index` for the same training set, norm and box (saves the preparation).
    ``method="reference"``: the previous one-query-at-a-time implementation (no box, no labels)."""
    norm = check_norm("norm", norm)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "reference":
        if box is not None or labels is not None:
            raise ValueError("method='reference' supports neither box nor labels")
        from .nn_exact_reference import _exact_1nn_reference
        r = _exact_1nn_reference(queries, train_x, train_y, norm, progress=progress,
                                 **reference_kwargs)
        st = np.where(np.isinf(r.radius), ONE_LABEL, np.where(r.radius == 0, TIE_AT_QUERY, SOLVED))
        return ExactRadiusResult(norm, r.prediction, r.radius, r.adversarial, r.target,
                                 r.lower_bound, r.half_gap_l2, r.n_solved, r.n_candidates, st, None)
    if reference_kwargs:
        raise TypeError(f"unexpected arguments {sorted(reference_kwargs)}")
    chunk = check_int("chunk", chunk, min_value=1)
    k_near = check_int("k_near", k_near, min_value=1)
    k_init = check_int("k_init", k_init, min_value=1)
    k_add = check_int("k_add", k_add, min_value=1)
    if index is not None:
        if not isinstance(index, _Index):
            raise TypeError("index must come from build_index")
        n_tr = len(train_x)
        if index.norm != norm or len(index.y) != n_tr:
            raise ValueError("index was built for another norm or training set")
        q, tx, ty = _prepare(queries, index.raw[:1], index.y[:1])
        bx = _check_box(box, q.shape[1], tx[:0], q)
        same = (bx is None) == (index.box_raw is None) and (
            bx is None or (np.array_equal(bx[0], index.box_raw[0])
                           and np.array_equal(bx[1], index.box_raw[1])))
        if not same:
            raise ValueError("index was built for another box")
    else:
        q, tx, ty = _prepare(queries, train_x, train_y)
        bx = _check_box(box, q.shape[1], tx, q)
    nq, dim = q.shape
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (nq,) or labels.dtype.kind not in "iu":
            raise ValueError(f"labels must be None or {nq} integer labels (one per query), "
                             f"got shape {labels.shape} dtype {labels.dtype}")
    ix = index if index is not None else _Index(tx, ty, norm, bx)
    pred = np.empty(nq, dtype=np.int64)
    radius = np.full(nq, np.inf)
    adv = np.full((nq, dim), np.nan)
    target = np.full(nq, -1, dtype=np.int64)
    lower = np.full(nq, np.inf)
    half_gap = np.full(nq, np.inf)
    n_solved = np.zeros(nq, dtype=np.int64)
    n_cand = np.zeros(nq, dtype=np.int64)
    status = np.full(nq, SOLVED, dtype=np.int8)
    N = len(ix.y)
    for c0 in range(0, nq, chunk):
        Q = ix.transform(q[c0:c0 + chunk])
        G = Q @ ix.T.T
        sqq = np.einsum("ij,ij->i", Q, Q)
        D2 = sqq[:, None] + ix.sq[None, :] - 2.0 * G
        E = ix.gamma * (sqq[:, None] + ix.sq[None, :])
        L1 = None
        if norm == "inf" and len(ix.labels) > 1:
            L1 = np.empty((len(Q), N), dtype=np.float32)
            if bx is None:
                DM = UM = np.ones(Q.shape, dtype=np.float32)
            else:
                qc = q[c0:c0 + chunk]
                DM, UM = (qc > bx[0]).astype(np.float32), (qc < bx[1]).astype(np.float32)
            _l1_block(Q.astype(np.float32), ix.T32, DM, UM, L1)
        with _one_blas_thread():   # small products: threads only hurt
            _chunk_queries(ix, q, Q, G, D2, E, L1, sqq, c0, labels, pred, radius, adv, target, lower,
                           half_gap, n_solved, n_cand, status, k_near, k_init, k_add, progress)
    return ExactRadiusResult(norm, pred, radius, adv, target, lower, half_gap, n_solved, n_cand,
                             status, None if bx is None else (bx[0], bx[1]))


def _one_blas_thread():
    """Context that limits BLAS to one thread when threadpoolctl is installed, else does nothing."""
    if _threadpool_limits is None:
        return contextlib.nullcontext()
    return _threadpool_limits(limits=1, user_api="blas")


def _chunk_queries(ix, q, Q, G, D2, E, L1, sqq, c0, labels, pred, radius, adv, target, lower,
                   half_gap, n_solved, n_cand, status, k_near, k_init, k_add, progress):
    N = len(ix.y)
    if True:
        for b in range(len(Q)):
            i = c0 + b
            x = Q[b]
            d2 = D2[b]
            lo2 = np.maximum(d2 - E[b], 0.0)
            hi2 = d2 + E[b]
            y, tie, other = _predict(ix, q[i], lo2, hi2)
            pred[i] = y
            li = int(np.searchsorted(ix.labels, y))
            s0, s1 = int(ix.starts[li]), int(ix.ends[li])
            n_cand[i] = N - (s1 - s0)
            if n_cand[i] == 0:
                status[i] = ONE_LABEL
            else:
                sn = s0 + int(np.argmin(d2[s0:s1]))
                other_mask_d2 = np.concatenate([d2[:s0], d2[s1:]])
                zn = int(np.argmin(other_mask_d2))
                zn = zn if zn < s0 else zn + (s1 - s0)
                a = float(np.linalg.norm(ix.raw[sn] - q[i]))
                bb = float(np.linalg.norm(ix.raw[zn] - q[i]))
                half_gap[i] = (bb - a) / 2.0
                if labels is not None and y != labels[i]:
                    status[i] = MISCLASSIFIED
                    radius[i], adv[i], lower[i] = 0.0, q[i], 0.0
                elif tie:
                    status[i] = TIE_AT_QUERY
                    radius[i], adv[i], lower[i] = 0.0, q[i], 0.0
                    target[i] = int(ix.order[other])
                else:
                    dok = uok = None
                    if ix.box is not None:
                        dok = (q[i] > ix.box_raw[0]).astype(np.float32)
                        uok = (q[i] < ix.box_raw[1]).astype(np.float32)
                    val, d, z, lb, ns = _search(ix, x, G[b], d2, lo2, hi2,
                                                None if L1 is None else L1[b], s0, s1,
                                                float(sqq[b]), k_near, k_init, k_add, dok, uok)
                    radius[i] = val * ix.sg
                    adv[i] = q[i] + d * ix.sg
                    target[i] = int(ix.order[z])
                    lower[i] = lb * ix.sg
                    n_solved[i] = ns
            if progress is not None:
                progress(1)


def robust_radius(queries, train_x, train_y, norm="2", box=None, *,
                  method: str = "fast") -> tuple[np.ndarray, np.ndarray]:
    """(radius, adversarial): per query the exact robust radius of the l2-metric 1-NN classifier
    trained on (train_x, train_y) in the perturbation norm ``norm`` ("2" or "inf"), inside the box
    ``box`` = (lo, hi) when given, and a minimal adversarial point (where 1-NN ties or flips, inside
    the box; NaN row where the radius is inf). See the module docstring for the definition, tie
    rule and tolerance."""
    res = exact_1nn(queries, train_x, train_y, norm, box=box, method=method)
    return res.radius, res.adversarial


def robust_accuracy(radius, prediction, labels, eps: float) -> float:
    """Fraction of queries that are correct and have radius > eps (robust at eps: no tie or flip
    within eps, module docstring)."""
    r = np.asarray(radius, dtype=np.float64)
    p, lab = np.asarray(prediction), np.asarray(labels)
    if not (r.shape == p.shape == lab.shape):
        raise ValueError(f"radius, prediction and labels must have the same shape, got "
                         f"{r.shape}, {p.shape}, {lab.shape}")
    if not (isinstance(eps, (int, float)) and eps >= 0 and math.isfinite(eps)):
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    return float(((p == lab) & (r > eps)).mean()) if r.size else float("nan")


def theorem2_exact(sampler, d: int, delta: float, n: int, *, trials: int = 10, n_test: int = 500,
                   seed: int = 0, radius: float | None = None) -> dict:
    """P&L Theorem 2 Monte Carlo, side by side: on the *same* training and test sets as
    ``theory.box_covering.simulate_theorem2`` (same seed, same draws), the robust accuracy at the
    l-inf radius δ/2 (or ``radius``) of

    * the l-inf-metric 1-NN of Theorem 2, half-gap certificate (a lower bound);
    * the l2-metric 1-NN: half-gap certificate in l2 divided by sqrt(d) (a lower bound, since
      ||v||_2 <= sqrt(d) ||v||_inf), and its EXACT robust accuracy (exact radius > ρ, LP).

    Returns means and standard errors over ``trials`` (keys ``linf_nn_certified``,
    ``l2_nn_certified``, ``l2_nn_exact``, each ``(mean, stderr)``)."""
    from plumbing.validation import check_float
    from .nn_certificate import certify_1nn, class_nearest_distances, one_nn_from_class_distances

    d = check_int("d", d, min_value=1)
    delta = check_float("delta", delta, low=0.0, high=1.0, low_open=True, high_open=True)
    n = check_int("n", n, min_value=1)
    trials = check_int("trials", trials, min_value=1)
    n_test = check_int("n_test", n_test, min_value=1)
    rho = delta / 2.0 if radius is None else check_float("radius", radius, low=0.0)
    rng = np.random.default_rng(check_int("seed", seed, min_value=0))
    vals = {"linf_nn_certified": [], "l2_nn_certified": [], "l2_nn_exact": []}
    for _ in range(trials):
        xtr, ytr = sampler(n, rng)
        xte, yte = sampler(n_test, rng)
        n_classes = int(max(ytr.max(), yte.max())) + 1
        cd = class_nearest_distances(xte, xtr, ytr, norm="inf", n_classes=n_classes)
        pred, a, b = one_nn_from_class_distances(cd)
        vals["linf_nn_certified"].append(certify_1nn(pred, a, b, yte, rho)["certified_robust_accuracy"])
        res = exact_1nn(xte, xtr, ytr, "inf")
        correct = res.prediction == yte
        vals["l2_nn_certified"].append(float((correct & (res.half_gap_l2 / math.sqrt(d) > rho)).mean()))
        vals["l2_nn_exact"].append(float((correct & (res.radius > rho)).mean()))
    out = {}
    for k, v in vals.items():
        arr = np.asarray(v, dtype=np.float64)
        se = float(arr.std(ddof=1) / math.sqrt(len(arr))) if len(arr) > 1 else float("nan")
        out[k] = (float(arr.mean()), se)
    return out
