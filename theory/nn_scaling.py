"""Nearest-neighbour distance scaling: P&L Section 9.4 ("Why linear-log?") and Section 12.

Model (Section 12). For a test point the probability that one random data point lies within
distance r is p(r) ≈ c r^{d*} (d* an "intrinsic dimension"). With n i.i.d. training points the
nearest one is within r with probability p_n(r) = 1 − (1 − p(r))^n, and

    np ≥ p_n ≥ 1 − e^{−np}                                               (Eqs. 22-23)

give for the median nearest-neighbour distance r*(n) (p_n(r*) = 1/2)

    (1/(2cn))^{1/d*} ≤ r* ≤ (1/(cn))^{1/d*}                               (Eqs. 24-26).

When p(r) = c r^{d*} holds exactly (for example the centre of the cube [−1/2, 1/2]^{d*}, ℓ2 norm,
c = volume of the unit d*-ball, r ≤ 1/2) the median is exact:
r* = ((1 − 2^{−1/n})/c)^{1/d*} (:func:`exact_median_radius`).

Consequences used here:
* log r* = const − (1/d*) log n, so d* = −1 / slope of log r* against log n
  (:func:`slope_intrinsic_dimension`);
* for log n ≪ d*, r* ≈ C (1 − log n / d*) is about linear in log n (Eqs. 27-28), which
  :func:`linear_log_fit` measures (slope of r* against log n and R²). Note: the printed Eq. (28)
  has its two sides swapped; since log(2n) > log n the correct order is
  C (1 − log(2n)/d*) ≤ r* ≤ C (1 − log(n)/d*);
* the harmonic-sum argument of Section 9.4 / Eq. (21): Σ_{i=n1+1}^{n2} 1/i ≈ ln(n2/n1), with the
  integral bounds ln((n2+1)/(n1+1)) ≤ Σ ≤ ln(n2/n1) (:func:`harmonic_sum`,
  :func:`harmonic_log_bounds`).

Synthetic data of known intrinsic dimension: :func:`embedded_uniform` draws uniform points of a
d*-dimensional cube placed in a random d*-dimensional linear subspace of R^D (an isometry, so ℓ2
distances are those of the cube).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .knn import nearest_neighbor
from plumbing.validation import check_float, check_int


# --- Eq. (26) ---------------------------------------------------------------------------------

def eq26_bounds(c: float, d_star: float, n: int) -> tuple[float, float]:
    """(r_l, r_u) = ((2cn)^{−1/d*}, (cn)^{−1/d*}) of Eqs. (24)-(26)."""
    c = check_float("c", c, low=0.0, low_open=True)
    d_star = check_float("d_star", d_star, low=0.0, low_open=True)
    n = check_int("n", n, min_value=1)
    return (2.0 * c * n) ** (-1.0 / d_star), (c * n) ** (-1.0 / d_star)


def exact_median_radius(c: float, d_star: float, n: int) -> float:
    """Median of the nearest-neighbour distance when p(r) = c r^{d*} exactly (and p(r*) ≤ 1):
    ((1 − 2^{−1/n}) / c)^{1/d*}."""
    c = check_float("c", c, low=0.0, low_open=True)
    d_star = check_float("d_star", d_star, low=0.0, low_open=True)
    n = check_int("n", n, min_value=1)
    return (-math.expm1(-math.log(2.0) / n) / c) ** (1.0 / d_star)


def unit_ball_volume(dim: int) -> float:
    """Volume of the unit ℓ2 ball in R^dim: π^{dim/2} / Γ(dim/2 + 1)."""
    dim = check_int("dim", dim, min_value=1)
    return math.pi ** (dim / 2.0) / math.gamma(dim / 2.0 + 1.0)


# --- synthetic data of known intrinsic dimension ------------------------------------------------

def random_orthonormal(d_star: int, ambient: int, rng: np.random.Generator) -> np.ndarray:
    """(d*, D) matrix with orthonormal rows: a random isometric embedding R^{d*} → R^D."""
    d_star = check_int("d_star", d_star, min_value=1)
    ambient = check_int("ambient", ambient, min_value=d_star)
    q, _ = np.linalg.qr(rng.standard_normal((ambient, d_star)))
    return q.T


def embedded_uniform(n: int, d_star: int, ambient: int, rng: np.random.Generator,
                     basis: np.ndarray | None = None) -> np.ndarray:
    """n points uniform on [−1/2, 1/2]^{d*}, mapped isometrically into R^D by ``basis``
    (a fresh random one when None)."""
    n = check_int("n", n, min_value=0)
    if basis is None:
        basis = random_orthonormal(d_star, ambient, rng)
    return (rng.random((n, d_star)) - 0.5) @ basis


def centre_median_nn_distance(n: int, d_star: int, ambient: int, *, trials: int,
                              rng: np.random.Generator) -> np.ndarray:
    """Monte Carlo: per trial, the ℓ2 distance from the cube centre (the origin) to the nearest of
    n embedded-uniform points; returns the ``trials`` distances (their median estimates r*)."""
    trials = check_int("trials", trials, min_value=1)
    basis = random_orthonormal(d_star, ambient, rng)
    out = np.empty(trials)
    for t in range(trials):
        x = embedded_uniform(n, d_star, ambient, rng, basis)
        out[t] = np.sqrt((x * x).sum(axis=1).min())
    return out


def median_quantile_interval(samples: np.ndarray, z: float = 3.0) -> tuple[float, float]:
    """Distribution-free interval for the median from order statistics (binomial normal
    approximation, ±z standard deviations of the rank)."""
    s = np.sort(np.asarray(samples, dtype=np.float64))
    m = len(s)
    half = z * math.sqrt(m) / 2.0
    lo = max(0, int(math.floor(m / 2.0 - half)))
    hi = min(m - 1, int(math.ceil(m / 2.0 + half)))
    return float(s[lo]), float(s[hi])


# --- r*(n) curves ---------------------------------------------------------------------------------

def check_sizes(sizes, name: str = "sizes") -> list[int]:
    """Strictly increasing positive training-set sizes."""
    sizes = [check_int(name, s, min_value=1) for s in sizes]
    if not sizes:
        raise ValueError(f"{name} must be a non-empty list of increasing integers")
    if any(b <= a for a, b in zip(sizes, sizes[1:])):
        raise ValueError(f"{name} must be strictly increasing, got {sizes}")
    return sizes


@dataclass(frozen=True)
class NNCurve:
    sizes: list
    median: list          # r*(n): median over queries of the nearest-neighbour distance
    mean: list            # mean over queries
    q25: list
    q75: list


def nn_distance_curve(train: np.ndarray, queries: np.ndarray, sizes, norm: str = "2", *,
                      rng: np.random.Generator | None = None, on_size=None) -> NNCurve:
    """Nearest-neighbour distance of every query to nested training subsets (the first n points
    of one random permutation; identity when ``rng`` is None), summarised per size."""
    sizes = check_sizes(sizes)
    from .knn import _check_knn_norm, _numeric

    norm = _check_knn_norm(norm)
    train = _numeric("train", train, 1)
    queries = _numeric("queries", queries, 1)
    if sizes[-1] > len(train):
        raise ValueError(f"sizes must be <= the number of training points ({len(train)}), "
                         f"got {sizes[-1]}")
    order = np.arange(len(train)) if rng is None else rng.permutation(len(train))
    med, mean, q25, q75 = [], [], [], []
    for n in sizes:
        dist, _ = nearest_neighbor(queries, train[order[:n]], norm)
        med.append(float(np.median(dist)))
        mean.append(float(dist.mean()))
        q25.append(float(np.quantile(dist, 0.25)))
        q75.append(float(np.quantile(dist, 0.75)))
        if on_size is not None:
            on_size(n, dist)
    return NNCurve(sizes, med, mean, q25, q75)


@dataclass(frozen=True)
class LineFit:
    slope: float
    intercept: float
    r2: float


def _fit(x, y) -> LineFit:
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if len(x) < 2:
        raise ValueError("need at least 2 sizes for a fit")
    slope, intercept = np.polyfit(x, y, 1)
    resid = y - (slope * x + intercept)
    ss = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float((resid ** 2).sum()) / ss if ss > 0 else 1.0
    return LineFit(float(slope), float(intercept), r2)


def slope_intrinsic_dimension(sizes, r_star) -> tuple[float, LineFit]:
    """d* = −1/slope of log r* against log n (Section 12); returns (d*, the log-log fit)."""
    sizes = check_sizes(sizes)
    r = np.asarray(r_star, dtype=np.float64)
    if r.shape != (len(sizes),) or np.any(r <= 0) or not np.all(np.isfinite(r)):
        raise ValueError("r_star must be positive and finite, one value per size")
    fit = _fit(np.log(sizes), np.log(r))
    d_star = -1.0 / fit.slope if fit.slope < 0 else float("inf")
    return d_star, fit


def linear_log_fit(sizes, r_star) -> LineFit:
    """Least-squares line of r* against ln n (Section 9.4: about linear for log n ≪ d*)."""
    sizes = check_sizes(sizes)
    return _fit(np.log(sizes), np.asarray(r_star, dtype=np.float64))


# --- harmonic sum (Section 9.4, Eq. 21) ------------------------------------------------------------

def harmonic_sum(n1: int, n2: int) -> float:
    """Σ_{i=n1+1}^{n2} 1/i, exactly summed (math.fsum)."""
    n1 = check_int("n1", n1, min_value=0)
    n2 = check_int("n2", n2, min_value=n1)
    if n2 - n1 > 10 ** 8:
        raise ValueError("n2 - n1 must be <= 1e8")
    return math.fsum(1.0 / i for i in range(n1 + 1, n2 + 1))


def harmonic_log_bounds(n1: int, n2: int) -> tuple[float, float]:
    """ln((n2+1)/(n1+1)) ≤ Σ_{i=n1+1}^{n2} 1/i ≤ ln(n2/n1) (integral comparison; n1 ≥ 1)."""
    n1 = check_int("n1", n1, min_value=1)
    n2 = check_int("n2", n2, min_value=n1)
    return math.log((n2 + 1) / (n1 + 1)), math.log(n2 / n1)
