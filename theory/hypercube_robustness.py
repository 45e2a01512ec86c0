"""Exact worst-case robust accuracy on the family F of P&L Theorem 1 (Section 3; supplementary
Section 7, Eqs. (5)-(8)), and the proof's weaker attack "set x_d to 0".

Threat model.  l2 ball of radius eps around x in [-1, 1]^d, with 0 <= eps < 1.  Perturbed points
are kept in the theorem's domain [-1, 1]^d (``clip=True``, the default; ``clip=False`` lets x_d
leave it).

Derivation of the exact worst case.  On the support of D every robust feature has |x_i| = 1, so a
perturbation with ||r||_2 <= eps < 1 changes each x_i by less than 1 and cannot flip or zero its
sign: the robust sign pattern of every point of the ball equals that of x.  For a learner that sees
a point only through (sign pattern, x_d) (the contract of ``HypercubeLearner``) the adversary
therefore controls exactly x_d' in I = [x_d - eps, x_d + eps] (intersected with [-1, 1] when
clipping); putting the whole budget on x_d is never worse than spending some of it on robust
features.  The prediction is constant on each open piece of I cut by the learner's
``xd_breakpoints``, so the worst case over the ball is the worst case over the finite candidate set
{ends of I} u {breakpoints inside I} u {one interior point of each piece}.  A point counts as
robustly correct iff the prediction equals y at every candidate.

Tie scoring: a prediction of 0 (e.g. sign(0) when x_d' = 0 is reachable) is an error, as in
Eq. (5), where the adversary wins whenever L(S)(x') != y.

Consequences for the provided learners (stated here, *measured* by :func:`evaluate`):
* pattern-only learners (oracle, 1-NN, k-NN, Bayes-robust, memoriser with constant/coin
  fallback): robust correctness = clean correctness point by point.
* sign(x_d): x_d = delta*y; 0 is reachable iff eps >= delta, so robust accuracy is 1 if
  eps < delta and 0 otherwise (with ties as errors).
* memoriser with sign(x_d) fallback: seen points are robustly correct; unseen ones are robustly
  correct iff eps < delta.

The proof's attack (Section 7, Eq. (6)) replaces x_d by 0 when |x_d| <= eps (allowed by the
budget) and leaves x unchanged otherwise; its accuracy is an upper bound on the exact robust
accuracy and is reported separately.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from theory.hypercube import HypercubeSample
from theory.hypercube_learners import HypercubeLearner
from plumbing.validation import check_float


def check_eps(eps) -> float:
    """eps in [0, 1): the radius for which the exact evaluation below is valid."""
    return check_float("eps", eps, low=0.0, high=1.0, high_open=True)


def reachable_interval(xd: float, eps: float, clip: bool = True) -> tuple[float, float]:
    """The x_d' values the adversary can reach: [xd - eps, xd + eps], clipped to [-1, 1]."""
    lo, hi = float(xd) - eps, float(xd) + eps
    if clip:
        lo, hi = max(lo, -1.0), min(hi, 1.0)
    return lo, hi


def candidate_points(lo: float, hi: float, breakpoints) -> np.ndarray:
    """Ends, interior breakpoints and one interior point per piece of [lo, hi] (sorted)."""
    pts = sorted({lo, hi, *[float(b) for b in breakpoints if lo < b < hi]})
    mids = [(a + b) / 2.0 for a, b in zip(pts[:-1], pts[1:])]
    return np.array(sorted(set(pts) | set(mids)), dtype=np.float64)


@dataclass
class Evaluation:
    """Per-point outcomes of one learner on one test sample."""
    clean: np.ndarray         # prediction == y at the unperturbed point
    robust: np.ndarray        # prediction == y at every point of the eps-ball (exact)
    zero_attack: np.ndarray   # prediction == y after the proof's attack x_d := 0
    witness_xd: np.ndarray    # an x_d' that breaks the point (NaN where robustly correct)

    @property
    def clean_accuracy(self) -> float:
        return float(self.clean.mean()) if self.clean.size else float("nan")

    @property
    def robust_accuracy(self) -> float:
        return float(self.robust.mean()) if self.robust.size else float("nan")

    @property
    def zero_attack_accuracy(self) -> float:
        return float(self.zero_attack.mean()) if self.zero_attack.size else float("nan")


def evaluate(learner: HypercubeLearner, test: HypercubeSample, eps: float,
             clip: bool = True) -> Evaluation:
    """Clean, exact worst-case robust, and x_d := 0 accuracy of ``learner`` on ``test``.

    Exact for every learner honouring the ``HypercubeLearner`` contract (see module docstring).
    Cost: one ``predict`` call when the learner ignores x_d, otherwise one per candidate point and
    distinct x_d value (a handful).
    """
    if not isinstance(learner, HypercubeLearner):
        raise TypeError(f"learner must be a HypercubeLearner, got {type(learner).__name__}")
    if not isinstance(test, HypercubeSample):
        raise TypeError(f"test must be a HypercubeSample, got {type(test).__name__}")
    eps = check_eps(eps)
    y = np.asarray(test.y, dtype=np.int8)
    xd = np.asarray(test.xd, dtype=np.float64)
    pats = np.asarray(test.patterns, dtype=np.uint64)
    pred = np.asarray(learner.predict(pats, xd), dtype=np.int8)
    clean = pred == y
    bps = tuple(learner.xd_breakpoints)
    if not bps:
        # Prediction is a function of the (unflippable) sign pattern: robust == clean.
        return Evaluation(clean, clean.copy(), clean.copy(),
                          np.where(clean, np.nan, xd))
    robust = clean.copy()
    witness = np.where(clean, np.nan, xd)
    for v in np.unique(xd):
        idx = np.flatnonzero(xd == v)
        lo, hi = reachable_interval(v, eps, clip)
        for c in candidate_points(lo, hi, bps):
            pred_c = learner.predict(pats[idx], np.full(idx.size, c))
            ok = np.asarray(pred_c, dtype=np.int8) == y[idx]
            newly = robust[idx] & ~ok
            witness[idx[newly]] = c
            robust[idx] &= ok
    zero = clean.copy()
    allowed = np.abs(xd) <= eps
    if allowed.any():
        ia = np.flatnonzero(allowed)
        zero[ia] = np.asarray(learner.predict(pats[ia], np.zeros(ia.size)), dtype=np.int8) == y[ia]
    return Evaluation(clean, robust, zero, witness)


def adversarial_points(test: HypercubeSample, witness_xd: np.ndarray) -> np.ndarray:
    """Feature matrix of the adversarial examples: x with x_d replaced by the witness (rows with
    no witness are left unchanged).  Each row is within l2 distance eps of the original."""
    X = test.features()
    w = np.asarray(witness_xd, dtype=np.float64)
    has = ~np.isnan(w)
    X[has, -1] = w[has]
    return X


def feature_space_attack(learner: HypercubeLearner, X, y, eps: float, rng: np.random.Generator,
                         n_random: int = 32) -> np.ndarray:
    """Per point, True if ``learner.predict_features`` keeps the label ``y`` under an attack in
    the raw feature space that is independent of :func:`evaluate` (it does not use the learner's
    declared breakpoints): every single coordinate moved by ``eps`` towards 0 (past it when
    eps > |x_i|), and ``n_random`` uniformly random directions of norm ``eps``, all clipped to
    [-1, 1]^d. Its mean is an *upper bound* on the exact robust accuracy. A candidate with a robust
    coordinate exactly 0 (reached at eps = 1) counts as an error (sign(0) is no decision)."""
    if not isinstance(learner, HypercubeLearner):
        raise TypeError(f"learner must be a HypercubeLearner, got {type(learner).__name__}")
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    if X.ndim != 2 or len(y) != len(X):
        raise ValueError(f"X must be (m, d) and y of length m, got {X.shape} and {y.shape}")
    eps = check_float("eps", eps, low=0.0)
    n_random = int(n_random)

    def keeps(Xp):
        Xp = np.clip(Xp, -1.0, 1.0)
        zero = np.any(Xp[:, :-1] == 0.0, axis=1)
        Xp[zero, :-1] = np.where(Xp[zero, :-1] == 0.0, 1.0, Xp[zero, :-1])
        return (learner.predict_features(Xp) == y) & ~zero

    ok = keeps(X.copy())
    for i in range(X.shape[1]):
        Xp = X.copy()
        Xp[:, i] -= np.where(Xp[:, i] >= 0, 1.0, -1.0) * eps
        ok &= keeps(Xp)
    for _ in range(n_random):
        v = rng.standard_normal(X.shape)
        v *= eps / np.linalg.norm(v, axis=1, keepdims=True)
        ok &= keeps(X + v)
    return ok
