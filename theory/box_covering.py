"""The box covering of the proof of P&L Theorem 2 (supplementary Section 8, Eqs. 9-20).

With D = ⌈1/δ⌉ the box centres are C = {δ/2, 3δ/2, …, (2D−1)δ/2}^d and the boxes are the
ℓ∞ balls of radius δ/2 around them: B = {B_{δ/2}(c) : c ∈ C}, |B| = ⌈1/δ⌉^d. They cover [0,1]^d
(they overlap only on faces, a null set), and two points of one box are ≤ δ apart in ℓ∞, so
"the test point's box holds a training point" implies "a training point is within δ" (Eq. 14-15).

For a distribution with box masses p_B and n i.i.d. training points the *coverage*

    P(the test point's box holds a training point) = Σ_B p_B (1 − (1 − p_B)^n)        (Eqs. 9-11, 15)

is ≥ Σ_B p_B (1 − e^{−n p_B}) (Eq. 16) ≥ 1 − |B|/(n e) (Eq. 20). With n ≥ 37⌈1/δ⌉^d the bound
is ≥ 1 − 1/(37 e) > 0.99 (37 is the integer just above 100/e ≈ 36.79).

Here: |B| and the centres, the box index of a point, the exact box masses and coverage for the
uniform distribution (closed form: the only box masses are δ^{d−j} L^j with L = 1 − (D−1)δ the
width of the last, partial box, taken by C(d, j)(D−1)^{d−j} boxes), the bounds (16) and (20),
Monte Carlo coverage for any sampler, and the Monte Carlo of the theorem itself: 1-NN certified
robust accuracy at radius δ/2 (``theory.nn_certificate``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .constants import THM2_SAMPLE_FACTOR, THM2_TARGET_ROBUST_ACC
from plumbing.validation import check_array, check_float, check_int

Sampler = Callable[[int, np.random.Generator], tuple[np.ndarray, np.ndarray]]


def _check_delta(delta) -> float:
    return check_float("delta", delta, low=0.0, high=1.0, low_open=True, high_open=True)


def boxes_per_axis(delta: float) -> int:
    """D = ⌈1/δ⌉ (1/δ within 1e-12 of an integer counts as that integer, so δ = 0.1 gives 10)."""
    delta = _check_delta(delta)
    inv = 1.0 / delta
    r = round(inv)
    return int(r) if abs(inv - r) <= 1e-12 * inv else int(math.ceil(inv))


def n_boxes(d: int, delta: float) -> int:
    """|B| = ⌈1/δ⌉^d (Section 8)."""
    d = check_int("d", d, min_value=1)
    return boxes_per_axis(delta) ** d


def theorem2_sample_size(d: int, delta: float) -> int:
    """n = 37⌈1/δ⌉^d of Theorem 2."""
    return THM2_SAMPLE_FACTOR * n_boxes(d, delta)


def bound_sample_size(d: int, delta: float, target: float = THM2_TARGET_ROBUST_ACC) -> int:
    """Smallest n with 1 − |B|/(n e) ≥ target, i.e. ⌈|B| / (e (1 − target))⌉ (Eq. 20 solved)."""
    target = check_float("target", target, low=0.0, high=1.0, high_open=True)
    return int(math.ceil(n_boxes(d, delta) / (math.e * (1.0 - target)) - 1e-9))


def box_centers(d: int, delta: float) -> np.ndarray:
    """(|B|, d) array of the centres C = {δ/2, 3δ/2, …, (2D−1)δ/2}^d."""
    D = boxes_per_axis(delta)
    d = check_int("d", d, min_value=1)
    if D ** d > 10 ** 7:
        raise ValueError(f"ceil(1/delta)**d must be <= 1e7 to list the centres, got {D}**{d}")
    axis = (np.arange(D) + 0.5) * delta
    grids = np.meshgrid(*([axis] * d), indexing="ij")
    return np.stack([g.reshape(-1) for g in grids], axis=1)


def box_index(x: np.ndarray, delta: float) -> np.ndarray:
    """Flat index of the box holding each point of [0,1]^d (ties on faces go to the upper box,
    the point 1.0 to the last box)."""
    D = boxes_per_axis(delta)
    x = check_array("x", x, ndim=2, min_len=0)
    if x.size and (x.min() < 0.0 or x.max() > 1.0):
        raise ValueError("x must lie in [0, 1]^d")
    idx = np.minimum(np.floor(x / delta).astype(np.int64), D - 1)
    strides = D ** np.arange(x.shape[1] - 1, -1, -1, dtype=np.int64)
    return idx @ strides


def uniform_box_masses(d: int, delta: float) -> list[tuple[float, int]]:
    """Exact box masses of U([0,1]^d) as (mass, number of boxes with that mass) pairs."""
    d = check_int("d", d, min_value=1)
    D = boxes_per_axis(delta)
    last = 1.0 - (D - 1) * delta          # width of the last box inside [0,1]
    if abs(last - delta) <= 1e-12:
        return [(delta ** d, D ** d)]
    return [(delta ** (d - j) * last ** j, math.comb(d, j) * (D - 1) ** (d - j)) for j in range(d + 1)]


def coverage_from_masses(masses, n: int) -> float:
    """Σ p_B (1 − (1 − p_B)^n) (Eqs. 9-11 and 15) for ``masses`` as (mass, count) pairs or a
    plain array of box masses."""
    n = check_int("n", n, min_value=0)
    pairs = masses if (len(masses) and isinstance(masses[0], tuple)) else [(float(p), 1) for p in np.ravel(masses)]
    total = 0.0
    for p, cnt in pairs:
        if p <= 0.0:
            continue
        miss = 0.0 if p >= 1.0 else math.exp(n * math.log1p(-p))
        total += cnt * p * (1.0 - miss)
    return total


def uniform_coverage_exact(d: int, delta: float, n: int) -> float:
    """Exact coverage for U([0,1]^d) (closed form)."""
    return coverage_from_masses(uniform_box_masses(d, delta), n)


def eq16_bound(masses, n: int) -> float:
    """Σ p_B (1 − e^{−n p_B}) (Eq. 16)."""
    n = check_int("n", n, min_value=0)
    pairs = masses if (len(masses) and isinstance(masses[0], tuple)) else [(float(p), 1) for p in np.ravel(masses)]
    return float(sum(cnt * p * (1.0 - math.exp(-n * p)) for p, cnt in pairs))


def coverage_bound(d: int, delta: float, n: int) -> float:
    """1 − |B|/(n e) (Eq. 20); may be negative (vacuous) for small n."""
    n = check_int("n", n, min_value=1)
    return 1.0 - n_boxes(d, delta) / (n * math.e)


def uniform_n_for_coverage(d: int, delta: float, target: float = THM2_TARGET_ROBUST_ACC) -> int:
    """Smallest n whose exact uniform coverage reaches ``target`` (bisection; coverage is
    increasing in n)."""
    target = check_float("target", target, low=0.0, high=1.0, high_open=True)
    masses = uniform_box_masses(d, delta)
    if target <= 0.0:
        return 0
    hi = 1
    while coverage_from_masses(masses, hi) < target:
        hi *= 2
    lo = hi // 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if coverage_from_masses(masses, mid) >= target:
            hi = mid
        else:
            lo = mid
    return hi


@dataclass(frozen=True)
class Estimate:
    """Monte Carlo mean with its standard error over independent trials."""
    mean: float
    stderr: float
    trials: int

    def interval(self, z: float = 3.0) -> tuple[float, float]:
        return self.mean - z * self.stderr, self.mean + z * self.stderr


def _estimate(values) -> Estimate:
    v = np.asarray(values, dtype=np.float64)
    se = float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else float("nan")
    return Estimate(float(v.mean()), se, len(v))


def coverage_monte_carlo(sampler: Sampler, d: int, delta: float, n: int, *, trials: int = 20,
                         n_test: int = 1000, seed: int = 0) -> Estimate:
    """Monte Carlo coverage: per trial draw n training and ``n_test`` test points with
    ``sampler(m, rng) -> (x, y)`` and record the fraction of test points whose box holds a
    training point; mean and standard error over trials."""
    d = check_int("d", d, min_value=1)
    n = check_int("n", n, min_value=1)
    trials = check_int("trials", trials, min_value=1)
    n_test = check_int("n_test", n_test, min_value=1)
    rng = np.random.default_rng(check_int("seed", seed, min_value=0))
    vals = []
    for _ in range(trials):
        xtr, _ = sampler(n, rng)
        xte, _ = sampler(n_test, rng)
        vals.append(float(np.isin(box_index(xte, delta), box_index(xtr, delta)).mean()))
    return _estimate(vals)


@dataclass(frozen=True)
class Theorem2Trial:
    """Per-(d, δ, n) Monte Carlo of Theorem 2 (means and standard errors over trials)."""
    certified_robust_accuracy: Estimate   # 1-NN, correct and certified at δ/2
    near_fraction: Estimate               # P(min_i ‖x − X_i‖∞ ≤ δ)   (Eq. 14)
    coverage: Estimate                    # P(test box holds a training point)  (Eq. 15)
    classes_seen: int = 2                 # fewest distinct labels among a trial's points

    @property
    def vacuous(self) -> bool:
        """True when some trial saw a single class: there 1-NN is constant, hence correct and
        robust at every radius, and its certified robust accuracy is no evidence for Theorem 2."""
        return self.classes_seen < 2


def simulate_theorem2(sampler: Sampler, d: int, delta: float, n: int, *, trials: int = 10,
                      n_test: int = 500, seed: int = 0, radius: float | None = None) -> Theorem2Trial:
    """1-NN certified robust accuracy (ℓ∞, radius δ/2 unless given), the fraction of test points
    with a training point within δ, and the box coverage, over ``trials`` training sets.
    ``classes_seen`` (and ``vacuous``) flag a draw with one class, where CRA = 1 is trivial."""
    from .nn_certificate import certify_1nn, class_nearest_distances, one_nn_from_class_distances

    d = check_int("d", d, min_value=1)
    delta = _check_delta(delta)
    n = check_int("n", n, min_value=1)
    trials = check_int("trials", trials, min_value=1)
    n_test = check_int("n_test", n_test, min_value=1)
    rho = delta / 2.0 if radius is None else check_float("radius", radius, low=0.0)
    rng = np.random.default_rng(check_int("seed", seed, min_value=0))
    cra, near, cov, classes = [], [], [], []
    for _ in range(trials):
        xtr, ytr = sampler(n, rng)
        xte, yte = sampler(n_test, rng)
        classes.append(int(np.unique(np.concatenate([ytr, yte])).size))
        n_classes = int(max(ytr.max(), yte.max())) + 1
        cd = class_nearest_distances(xte, xtr, ytr, norm="inf", n_classes=n_classes)
        pred, a, b = one_nn_from_class_distances(cd)
        res = certify_1nn(pred, a, b, yte, rho)
        cra.append(res["certified_robust_accuracy"])
        near.append(float((cd.min(axis=1) <= delta).mean()))
        cov.append(float(np.isin(box_index(xte, delta), box_index(xtr, delta)).mean()))
    return Theorem2Trial(_estimate(cra), _estimate(near), _estimate(cov), min(classes))
