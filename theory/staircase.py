"""The Staircase regression problem (YRZSC Section 5 and Appendix A, "Synthetic Staircase setup";
the problem comes from Raghunathan, Xie, Yang, Duchi, Liang, "Adversarial training can hurt
generalization", 2019, YRZSC ref. [41]).

What we follow: the YRZSC authors' variant, not Raghunathan et al.'s own construction. The data
distribution, the staircase, the spline model and the penalty follow the public notebook the
YRZSC authors used for this experiment (github.com/yangarbiter/robust-local-lipschitz,
notebooks/splines.ipynb, which credits part of its code to Raghunathan et al.; their ref. [42]).
Raghunathan et al.'s own spline code (github.com/p-lambda/robust_tradeoff, splines/) is a
different construction: one-sided perturbations {floor(x), floor(x) + eps} and one-sided input
noise, knots at s and s + eps only, and minimum-norm *interpolating* estimators (the fit is an
equality constraint, no lambda trade-off) instead of the penalised least squares below.

* stairs s = 0, ..., S-1 (S = 10) with probabilities proportional to 1/5 for the first five and
  0.01 for the others (``stair_weights``);
* a training input is x = s, except with probability ``x_noise`` = 0.005 where it is s - eps or
  s + eps (each with probability 1/2), eps = 1/3; the label is y = slope * s + N(0, sigma^2),
  slope 1, sigma = 0.1: the target is the staircase t -> slope * round(t);
* the model is linear regression f_theta(t) = phi(t)^T theta on the cubic B-spline basis whose
  knots are s and s +- eps for every stair (3 S = 30 knots), padded by DEGREE + 1 = 4 knots of
  spacing eps on each side: 38 knots, 34 basis functions, domain [-2 eps, S - 1 + 2 eps]
  (``scipy.interpolate.BSpline``; the notebook has the same counts but pads with spacing 1, its
  left pad shifted to -3.67 .. -0.67, so only the outermost basis functions differ); the norm
  penalty is theta^T P theta with P = D2^T D2, D2 the
  second-difference matrix of the coefficients (the authors' smoothness penalty; YRZSC call it
  the RKHS norm), lambda = 0.1 (YRZSC Appendix A; the public notebook's cell uses 1e-2, and the
  small-n AT result depends strongly on it: ``simulate.staircase --lam-sweep``);
* losses are *summed* over the training set (as in that code), so lambda weighs against n points;
* perturbation set P(x, eps) = {x - eps, x, x + eps} (YRZSC Appendix A).

Methods (the definitions of ``deep.methods`` / YRZSC Appendix A.0.2 with L(t, y) = (f(t) - y)^2):

=======  ===========================================================================  ==========
natural  sum_i L(x_i) + lam theta^T P theta                                            convex: one
                                                                                       least squares
at       sum_i max_{x' in P(x_i)} L(x') + lam theta^T P theta                          convex (max of
                                                                                       convex quads)
gr       sum_i [L(x_i) + beta (d/dx L(x_i))^2] + lam P-term, d/dx L = 2 r f'(x),      NOT convex
         beta = 1e-4 (the h -> 0 limit of Finlay-Oberman's finite difference)          (quartic)
llr      sum_i [L(x_i) + gamma_w max_{delta in {-eps, +eps}} |L(x+delta) - L(x)       NOT convex,
         - delta d/dx L(x)|] + lam P-term, local linearity gamma only, gamma_w = 1e-2   not smooth
trades   sum_i [L(x_i) + beta max_{x' in P(x_i)} (f(x') - f(x_i))^2] + lam P-term,     convex
         beta = 6 (``deep.methods`` default; the squared difference is the regression
         analogue of TRADES' KL term, as in the YRZSC notebook)
=======  ===========================================================================  ==========

GR and LLR are not the notebook's. Ours are the input-gradient definitions of ``deep.methods``
(table above), per training point. The notebook's ``solve_gr`` adds (beta / 2) sum_i |r_i|
||phi(x_i)||_2 with r_i = f(x_i) - y_i: the norm (not squared) of the gradient of the loss with
respect to the *weights* theta (up to its factor 2), not the input derivative. Its ``solve_llr``
adds beta * max(l_-, l_+) with l_+- = sum_i L(x_i +- eps) - sum_i L(x_i) -+ 2 eps sum_i g_i r_i:
one maximum of sums over the whole training set (not a sum of per-point maxima), no absolute
value, and in place of f'(x_i) the number g_i = (D1 D1^T theta)_{k_i + 2}, k_i the index of the
knot nearest x_i and D1 the first-difference matrix (so g_i = 2 theta_k - theta_{k-1} -
theta_{k+1}, a second difference of the coefficients, not the spline's slope at x_i). Both
are solved there by scipy ``minimize`` (L-BFGS-B for GR, BFGS for LLR) from
theta = 0 with finite-difference gradients; ours by BFGS with analytic (sub)gradients from the
natural fit. AT and TRADES agree with the notebook's cvxpy objectives (TRADES: the squared output
difference over P(x, eps)). The notebook also evaluates on a sample of 10,000 test points; we
take the exact population expectation.

Solvers. natural: ``numpy.linalg.lstsq`` on [F; sqrt(lam) D2] theta = [y; 0] (exact up to
rounding). at, trades: the convex problem as an equivalent QP with linear constraints (epigraph
variables per distinct input and per point, see ``_fit_at`` / ``_fit_trades``), solved by
``scipy.optimize.minimize`` (trust-constr, sparse) from a strictly feasible start; tolerance: gradient/constraint violation 1e-8
(``QP_TOL``; against a 1e-10 run at n = 80 the objective agreed to 6e-8 relative), and the returned objective is re-evaluated in closed form. gr, llr: not convex, so a
*local* minimum from the natural solution by BFGS with the analytic (sub)gradient, gtol 1e-8;
stated as such.

Evaluation is exact over the population (30 support points): test MSE = E (f(x) - y)^2 (includes
sigma^2) and robust test MSE = E max_{x' in P(x, eps)} (f(x') - y)^2, the expectation over the
Gaussian label noise of a maximum of squares done in closed form with normal moments.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.interpolate import BSpline
from scipy.optimize import LinearConstraint, minimize
from scipy.stats import norm as _normal

from plumbing.validation import check_choice, check_float, check_int
from theory.constants import (STAIRCASE_BETA_GR, STAIRCASE_BETA_TRADES, STAIRCASE_EPS,
                              STAIRCASE_GAMMA_LLR, STAIRCASE_LABEL_NOISE, STAIRCASE_LAMBDA,
                              STAIRCASE_N_STAIRS, STAIRCASE_X_NOISE)

METHODS = ("natural", "at", "gr", "llr", "trades")
QP_TOL = 1e-8
DEGREE = 3


@dataclass(frozen=True)
class StaircaseSpec:
    """The distribution and model (defaults: YRZSC Appendix A and the authors' public code)."""
    n_stairs: int = STAIRCASE_N_STAIRS
    eps: float = STAIRCASE_EPS
    label_noise: float = STAIRCASE_LABEL_NOISE
    x_noise: float = STAIRCASE_X_NOISE
    slope: float = 1.0
    lam: float = STAIRCASE_LAMBDA
    beta_gr: float = STAIRCASE_BETA_GR
    gamma_llr: float = STAIRCASE_GAMMA_LLR
    beta_trades: float = STAIRCASE_BETA_TRADES

    def __post_init__(self):
        check_int("n_stairs", self.n_stairs, min_value=6)
        check_float("eps", self.eps, low=0.0, high=0.5, low_open=True, high_open=True)
        check_float("label_noise", self.label_noise, low=0.0)
        check_float("x_noise", self.x_noise, low=0.0, high=1.0)
        check_float("slope", self.slope)
        check_float("lam", self.lam, low=0.0)
        for name in ("beta_gr", "gamma_llr", "beta_trades"):
            check_float(name, getattr(self, name), low=0.0)

    # ---- distribution ---------------------------------------------------------------------
    def stair_weights(self) -> np.ndarray:
        w = np.r_[np.full(5, 1 / 5), np.full(self.n_stairs - 5, 0.01)]
        return w / w.sum()

    def support(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(x, stair, probability) of the 3 S support points of the input distribution."""
        w = self.stair_weights()
        s = np.arange(self.n_stairs, dtype=float)
        x = np.r_[s, s - self.eps, s + self.eps]
        st = np.r_[s, s, s]
        p = np.r_[w * (1 - self.x_noise), w * self.x_noise / 2, w * self.x_noise / 2]
        return x, st, p

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """n training pairs (x, y)."""
        n = check_int("n", n, min_value=1)
        s = rng.choice(self.n_stairs, size=n, p=self.stair_weights()).astype(float)
        y = self.slope * s + self.label_noise * rng.standard_normal(n)
        side = np.where(rng.random(n) < 0.5, -1.0, 1.0)
        moved = rng.random(n) < self.x_noise
        return s + moved * side * self.eps, y

    def target(self, t) -> np.ndarray:
        return self.slope * np.round(np.asarray(t, dtype=float))

    # ---- model ----------------------------------------------------------------------------
    def knots(self) -> np.ndarray:
        s = np.arange(self.n_stairs, dtype=float)
        inner = np.sort(np.r_[s - self.eps, s, s + self.eps])
        pad = self.eps * np.arange(1, DEGREE + 2)
        return np.r_[inner[0] - pad[::-1], inner, inner[-1] + pad]

    def domain(self) -> tuple[float, float]:
        t = self.knots()
        return float(t[DEGREE]), float(t[-DEGREE - 1])

    @property
    def n_basis(self) -> int:
        return len(self.knots()) - DEGREE - 1

    def basis(self, x, deriv: int = 0) -> np.ndarray:
        """(len(x), n_basis) matrix of the B-splines (or their ``deriv``-th derivative) at x."""
        x = np.asarray(x, dtype=float).ravel()
        lo, hi = self.domain()
        if x.size and (x.min() < lo - 1e-12 or x.max() > hi + 1e-12):
            raise ValueError(f"x must lie in the spline domain [{lo:.4g}, {hi:.4g}]")
        spl = BSpline(self.knots(), np.eye(self.n_basis), DEGREE, extrapolate=False)
        if deriv:
            spl = spl.derivative(deriv)
        return np.nan_to_num(spl(np.clip(x, lo, hi)))

    def d2(self) -> np.ndarray:
        return np.diff(np.eye(self.n_basis), n=2, axis=0)

    def penalty(self) -> np.ndarray:
        D = self.d2()
        return D.T @ D


# ---- objectives -------------------------------------------------------------------------------

def _perturbed(spec: StaircaseSpec, x):
    x = np.asarray(x, dtype=float)
    return [spec.basis(x + d) for d in (-spec.eps, 0.0, spec.eps)]


def objective(method: str, theta, x, y, spec: StaircaseSpec) -> float:
    """The training objective of ``method`` at ``theta`` (module docstring table)."""
    check_choice("method", method, METHODS)
    theta = np.asarray(theta, dtype=float)
    y = np.asarray(y, dtype=float)
    Fm, F0, Fp = _perturbed(spec, x)
    r = [F @ theta - y for F in (Fm, F0, Fp)]
    pen = spec.lam * theta @ spec.penalty() @ theta
    if method == "natural":
        return float((r[1] ** 2).sum() + pen)
    if method == "at":
        return float(np.max(np.square(r), axis=0).sum() + pen)
    if method == "trades":
        a0 = F0 @ theta
        diff = np.max([np.square(F @ theta - a0) for F in (Fm, Fp)], axis=0)
        return float((r[1] ** 2).sum() + spec.beta_trades * diff.sum() + pen)
    fp = spec.basis(x, 1) @ theta
    if method == "gr":
        return float(((r[1] ** 2) * (1 + 4 * spec.beta_gr * fp ** 2)).sum() + pen)
    e = spec.eps
    gm = r[0] ** 2 - r[1] ** 2 + e * 2 * r[1] * fp       # delta = -eps
    gp = r[2] ** 2 - r[1] ** 2 - e * 2 * r[1] * fp       # delta = +eps
    return float((r[1] ** 2 + spec.gamma_llr * np.maximum(np.abs(gm), np.abs(gp))).sum() + pen)


# ---- solvers ----------------------------------------------------------------------------------

def fit_natural(x, y, spec: StaircaseSpec) -> np.ndarray:
    F = spec.basis(x)
    A = np.vstack([F, math.sqrt(spec.lam) * spec.d2()])
    b = np.r_[np.asarray(y, dtype=float), np.zeros(spec.n_basis - 2)]
    return np.linalg.lstsq(A, b, rcond=None)[0]


def _trust_constr_qp(H, g_lin, A, ub, z0) -> np.ndarray:
    """min 0.5 z^T H z + g_lin^T z  s.t.  A z <= ub (convex; H PSD), by trust-constr."""
    Hs = sparse.csr_matrix(H)
    res = minimize(lambda z: 0.5 * z @ (Hs @ z) + g_lin @ z, z0, jac=lambda z: Hs @ z + g_lin,
                   hess=lambda z: Hs, method="trust-constr",
                   constraints=[LinearConstraint(sparse.csr_matrix(A), -np.inf, ub)],
                   options={"gtol": QP_TOL, "xtol": QP_TOL * 1e-3, "maxiter": 20000, "verbose": 0})
    return res.x


def _groups(x):
    xu, inv = np.unique(x, return_inverse=True)
    return xu, inv


def _fit_at(x, y, spec: StaircaseSpec, theta0) -> np.ndarray:
    """AT as a QP in z = (theta, lo_g, hi_g, u_j): min sum u_j^2 + lam theta^T P theta s.t.
    lo_g <= f(x'_gk) <= hi_g for the 3 points x' of P(x_g) of every distinct input x_g, and
    u_j >= hi_g(j) - y_j, u_j >= y_j - lo_g(j). At the optimum hi/lo are the max/min of f over
    P(x_g) and u_j = max_k |f(x'_k) - y_j|, so the QP equals the AT objective."""
    p, n = spec.n_basis, len(x)
    xu, gi = _groups(x)
    G = len(xu)
    R = [spec.basis(xu + d) for d in (-spec.eps, 0.0, spec.eps)]
    nz = p + 2 * G + n
    io, ih, iu = p, p + G, p + 2 * G
    H = sparse.lil_matrix((nz, nz))
    H[:p, :p] = 2 * spec.lam * spec.penalty()
    H[iu:, iu:] = 2 * sparse.identity(n)
    eyeG = sparse.identity(G, format="csr")
    rows, ub = [], []
    for Rk in R:
        Rk = sparse.csr_matrix(Rk)
        rows.append(sparse.hstack([Rk, sparse.csr_matrix((G, G)), -eyeG, sparse.csr_matrix((G, n))]))
        rows.append(sparse.hstack([-Rk, eyeG, sparse.csr_matrix((G, G)), sparse.csr_matrix((G, n))]))
        ub += [np.zeros(G), np.zeros(G)]
    sel = sparse.csr_matrix((np.ones(n), (np.arange(n), gi)), shape=(n, G))
    eyeN = sparse.identity(n, format="csr")
    rows.append(sparse.hstack([sparse.csr_matrix((n, p)), sparse.csr_matrix((n, G)), sel, -eyeN]))
    rows.append(sparse.hstack([sparse.csr_matrix((n, p)), -sel, sparse.csr_matrix((n, G)), -eyeN]))
    ub += [y, -y]
    A = sparse.vstack(rows, format="csr")
    a = np.array([Rk @ theta0 for Rk in R])
    lo0, hi0 = a.min(0) - 1.0, a.max(0) + 1.0
    u0 = np.maximum(hi0[gi] - y, y - lo0[gi]) + 1.0
    z = _trust_constr_qp(H.tocsr(), np.zeros(nz), A, np.concatenate(ub), np.r_[theta0, lo0, hi0, u0])
    return z[:p]


def _fit_trades(x, y, spec: StaircaseSpec, theta0) -> np.ndarray:
    """TRADES as a QP in z = (theta, u_g): sum_j (f(x_j) - y_j)^2 + beta sum_g m_g u_g^2 +
    lam P-term s.t. |f(x_g +- eps) - f(x_g)| <= u_g (one u per distinct input x_g, m_g copies)."""
    p = spec.n_basis
    xu, gi = _groups(x)
    G = len(xu)
    m = np.bincount(gi, minlength=G).astype(float)
    F0 = spec.basis(xu)
    ybar_sum = np.bincount(gi, weights=y, minlength=G)
    nz = p + G
    H = np.zeros((nz, nz))
    H[:p, :p] = 2 * (F0.T * m) @ F0 + 2 * spec.lam * spec.penalty()
    H[p:, p:] = 2 * spec.beta_trades * np.diag(m)
    g_lin = np.zeros(nz)
    g_lin[:p] = -2 * F0.T @ ybar_sum
    rows = []
    eyeG = np.eye(G)
    for d in (-spec.eps, spec.eps):
        Dk = spec.basis(xu + d) - F0
        rows += [np.hstack([Dk, -eyeG]), np.hstack([-Dk, -eyeG])]
    A = np.vstack(rows)
    u0 = np.max([np.abs((spec.basis(xu + d) - F0) @ theta0) for d in (-spec.eps, spec.eps)], axis=0) + 1.0
    z = _trust_constr_qp(H, g_lin, A, np.zeros(4 * G), np.r_[theta0, u0])
    return z[:p]


def fit(method: str, x, y, spec: StaircaseSpec | None = None) -> np.ndarray:
    """Spline coefficients theta fitted by ``method`` on (x, y) (module docstring)."""
    spec = spec or StaircaseSpec()
    check_choice("method", method, METHODS)
    x = np.asarray(x, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    if x.shape != y.shape or x.size == 0:
        raise ValueError(f"x and y must be non-empty and of the same length, got {x.shape}, {y.shape}")
    theta_nat = fit_natural(x, y, spec)
    if method == "natural":
        return theta_nat
    if method == "at":
        return _fit_at(x, y, spec, theta_nat)
    if method == "trades":
        return _fit_trades(x, y, spec, theta_nat)
    Fm, F0, Fp = _perturbed(spec, x)
    D1 = spec.basis(x, 1)
    P = spec.penalty()
    lam, e = spec.lam, spec.eps

    if method == "gr":
        b4 = 4 * spec.beta_gr

        def fg(th):
            r = F0 @ th - y
            fp = D1 @ th
            val = (r ** 2 * (1 + b4 * fp ** 2)).sum() + lam * th @ P @ th
            grad = F0.T @ (2 * r * (1 + b4 * fp ** 2)) + D1.T @ (2 * b4 * r ** 2 * fp) + 2 * lam * P @ th
            return val, grad
    else:  # llr
        gw = spec.gamma_llr

        def fg(th):
            rm, r0, rp = Fm @ th - y, F0 @ th - y, Fp @ th - y
            fp = D1 @ th
            gm = rm ** 2 - r0 ** 2 + 2 * e * r0 * fp
            gp = rp ** 2 - r0 ** 2 - 2 * e * r0 * fp
            use_m = np.abs(gm) >= np.abs(gp)
            g = np.where(use_m, gm, gp)
            sg = np.sign(g)
            # gradient of the chosen g (a subgradient where |g_-| = |g_+| or g = 0)
            coef_rm = np.where(use_m, 2 * rm, 0.0)
            coef_rp = np.where(use_m, 0.0, 2 * rp)
            sgn_e = np.where(use_m, 1.0, -1.0)
            coef_r0 = -2 * r0 + sgn_e * 2 * e * fp
            coef_fp = sgn_e * 2 * e * r0
            grad_g = (Fm.T @ (sg * coef_rm) + Fp.T @ (sg * coef_rp) + F0.T @ (sg * coef_r0)
                      + D1.T @ (sg * coef_fp))
            val = (r0 ** 2 + gw * np.abs(g)).sum() + lam * th @ P @ th
            grad = F0.T @ (2 * r0) + gw * grad_g + 2 * lam * P @ th
            return val, grad

    res = minimize(fg, theta_nat, jac=True, method="BFGS", options={"gtol": 1e-8, "maxiter": 5000})
    return res.x


# ---- evaluation -------------------------------------------------------------------------------

def _expected_max_square(a_lo: np.ndarray, a_hi: np.ndarray, sigma: float) -> np.ndarray:
    """E max((a_lo - xi)^2, (a_hi - xi)^2), xi ~ N(0, sigma^2), a_lo <= a_hi (closed form).

    The maximum is (xi - a_lo)^2 for xi >= m = (a_lo + a_hi)/2, else (xi - a_hi)^2."""
    if sigma == 0:
        return np.maximum(a_lo ** 2, a_hi ** 2)
    c = (a_lo + a_hi) / 2 / sigma
    phi, Phi = _normal.pdf(c), _normal.cdf(c)
    upper = sigma ** 2 * (c * phi + 1 - Phi) - 2 * a_lo * sigma * phi + a_lo ** 2 * (1 - Phi)
    lower = sigma ** 2 * (Phi - c * phi) + 2 * a_hi * sigma * phi + a_hi ** 2 * Phi
    return upper + lower


def evaluate(theta, spec: StaircaseSpec | None = None) -> dict:
    """Exact population test MSE and robust test MSE (and their noiseless parts) of f_theta."""
    spec = spec or StaircaseSpec()
    theta = np.asarray(theta, dtype=float)
    x, st, p = spec.support()
    target = spec.slope * st
    a = spec.basis(x) @ theta - target
    sig = spec.label_noise
    test = float(p @ (a ** 2) + sig ** 2)
    pert = np.array([spec.basis(x + d) @ theta - target for d in (-spec.eps, 0.0, spec.eps)])
    robust = float(p @ _expected_max_square(pert.min(0), pert.max(0), sig))
    return {"test_mse": test, "robust_test_mse": robust}
