"""ℓ∞-δ-robust labelled distributions on [0,1]^d (the hypothesis of P&L Theorem 2).

Theorem 2 (P&L Section 3, supplementary Section 8) assumes "an L∞ robust classifier (margin δ)
on data distribution D, where the data points are in [0,1]^d". We read this as: there is f with
f(x') = y for every (x, y) in the support of D and every x' with ‖x' − x‖∞ ≤ δ.

Lemma (characterisation). Such an f exists iff any two support points x, x̃ with different labels
satisfy ‖x − x̃‖∞ > 2δ. (⇒: if ‖x − x̃‖∞ ≤ 2δ the midpoint is within δ of both, so f would need
both labels there. ⇐: take f = label of the nearest support point; for x' within δ of x the own
class is ≤ δ away and every other class is > 2δ − δ = δ away.) The supplementary proof uses exactly
this consequence ("the nearest point of a different class is at least 2δ away").

Construction (:class:`GridRobustDistribution`). Split [0,1]^d into k^d closed cells of side
s = 1/k with s > 2δ, give each cell a label drawn uniformly from {0, …, n_classes − 1} (seeded),
and let D be uniform on the *kept* set

    K = {x ∈ [0,1]^d : ℓ∞-dist(x, every cell whose label differs from the label of x's cell) > δ},

labelled by its cell. (Points on a boundary between two cells of different labels are within
distance 0 of both, so they are not kept and the label of a kept point is unambiguous.)

Proof that D has margin δ. Let x ∈ K with cell label a and x̃ ∈ K with label b ≠ a. Walk along the
segment z(t) = x + t(x̃ − x), t ∈ [0, 1]. Let t* = sup{t : z(t) lies in a closed cell labelled a}.
The set of such t is closed, so z* = z(t*) lies in an a-cell; and t* < 1 because x̃ is > δ > 0 from
every a-cell, so points z(t), t > t*, lie in cells not labelled a, whose closure contains z*. Hence
z* is in a closed a-cell and in a closed non-a cell, so ‖x − z*‖∞ > δ (x is > δ from every non-a
cell) and ‖x̃ − z*‖∞ > δ (x̃ is > δ from every a-cell). On a segment the norm is additive:
‖x − x̃‖∞ = ‖x − z*‖∞ + ‖z* − x̃‖∞ > 2δ. By the Lemma, D has an ℓ∞ robust classifier of margin δ,
and the cell classifier :meth:`GridRobustDistribution.robust_classifier` is one: for x ∈ K and
‖x' − x‖∞ ≤ δ, every cell containing clip(x', 0, 1) is within δ of x (clipping to the cube does
not increase the distance to x), so it carries x's label. ∎

With k = 1 there is one cell and K = [0,1]^d for every δ ∈ (0, 1). For k ≥ 2 we require s > 2δ:
K is non-empty in every cell: s > 2δ makes each cell centre ≥ s/2 > δ from every other cell.
Only the 3^d neighbouring cells can lie within δ (a cell two steps away is ≥ s > δ away), which is
what :meth:`distance_to_other_label` checks.

Uniform special case (:func:`uniform_cube`): k = 1, one class: D = U([0,1]^d), robust at every
margin; its box probabilities are known in closed form (``theory.box_covering``).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from plumbing.validation import check_array, check_float, check_int

# a point is kept only when its distance to other-label cells exceeds delta by this much, so
# floating-point rounding in the distance can never shrink the proven separation below 2*delta
_SAFETY = 1e-12


@dataclass(frozen=True)
class GridRobustDistribution:
    """Uniform distribution on the kept set K of the module docstring (margin ``delta``)."""

    d: int
    delta: float
    cells_per_axis: int = 2
    n_classes: int = 2
    seed: int = 0
    cell_labels: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "d", check_int("d", self.d, min_value=1, max_value=12))
        object.__setattr__(self, "delta", check_float("delta", self.delta, low=0.0, high=1.0,
                                                      low_open=True, high_open=True))
        k = check_int("cells_per_axis", self.cells_per_axis, min_value=1)
        object.__setattr__(self, "cells_per_axis", k)
        if k >= 2 and not 1.0 / k > 2.0 * self.delta:
            raise ValueError(f"cells_per_axis must satisfy 1/cells_per_axis > 2*delta "
                             f"(cells_per_axis < {1 / (2 * self.delta):.6g} for delta={self.delta}), "
                             f"got {k}")
        if k ** self.d > 10 ** 7:
            raise ValueError(f"cells_per_axis**d must be <= 1e7, got {k}**{self.d}")
        object.__setattr__(self, "n_classes", check_int("n_classes", self.n_classes, min_value=1))
        object.__setattr__(self, "seed", check_int("seed", self.seed, min_value=0))
        rng = np.random.default_rng([self.seed, 0x7B2])
        labels = rng.integers(0, self.n_classes, size=(k,) * self.d)
        labels.setflags(write=False)
        object.__setattr__(self, "cell_labels", labels)

    @property
    def classes_present(self) -> int:
        """Number of distinct labels among the cells (the seeded draw may give fewer than
        ``n_classes``)."""
        return int(np.unique(self.cell_labels).size)

    @property
    def vacuous(self) -> bool:
        """True when every cell has the same label: then a constant classifier is correct and
        robust at every radius, so a robust accuracy of 1 says nothing about Theorem 2."""
        return self.classes_present < 2

    @property
    def side(self) -> float:
        return 1.0 / self.cells_per_axis

    def cell_index(self, x: np.ndarray) -> np.ndarray:
        """(n, d) integer index of the cell holding each point (points clipped to the cube)."""
        x = np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0)
        return np.minimum((x * self.cells_per_axis).astype(np.int64), self.cells_per_axis - 1)

    def cell_label_of(self, x: np.ndarray) -> np.ndarray:
        idx = self.cell_index(x)
        return self.cell_labels[tuple(idx.T)]

    def distance_to_other_label(self, x: np.ndarray) -> np.ndarray:
        """ℓ∞ distance from each point to the union of cells whose label differs from the label
        of the point's own cell (inf when none is among the 3^d neighbours)."""
        x = check_array("x", x, ndim=2, min_len=0)
        if x.shape[1] != self.d:
            raise ValueError(f"x must have d={self.d} columns, got {x.shape[1]}")
        k, s = self.cells_per_axis, self.side
        own_idx = self.cell_index(x)
        flat_labels = self.cell_labels.reshape(-1)
        strides = k ** np.arange(self.d - 1, -1, -1, dtype=np.int64)
        own_flat = own_idx @ strides
        own = flat_labels[own_flat]
        gap_lo = x - own_idx * s            # distance to the lower face along each axis
        gap_hi = (own_idx + 1) * s - x      # distance to the upper face along each axis
        out = np.full(len(x), np.inf)
        for off in itertools.product((-1, 0, 1), repeat=self.d):
            o = np.asarray(off, dtype=np.int64)
            if not o.any():
                continue                     # the own cell has the own label
            nb = own_idx + o
            valid = np.all((nb >= 0) & (nb < k), axis=1)
            lab = flat_labels[np.where(valid, own_flat + o @ strides, own_flat)]
            diff = valid & (lab != own)
            if not diff.any():
                continue
            # the neighbour differs from the own cell only along axes with o_j != 0, where the
            # gap is the distance to the shared face; along the others the distance is 0
            dist = np.zeros(len(x))
            for j in np.flatnonzero(o):
                dist = np.maximum(dist, gap_hi[:, j] if o[j] > 0 else gap_lo[:, j])
            out = np.where(diff, np.minimum(out, dist), out)
        return out

    def in_support(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        inside = np.all((x >= 0.0) & (x <= 1.0), axis=1)
        return inside & (self.distance_to_other_label(x) > self.delta + _SAFETY)

    def robust_classifier(self, x: np.ndarray) -> np.ndarray:
        """The cell classifier: label of the cell holding clip(x); robust with margin ``delta``."""
        return self.cell_label_of(x)

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """n i.i.d. points of D (rejection sampling from U([0,1]^d)) and their labels."""
        n = check_int("n", n, min_value=0)
        xs, total = [], 0
        batch = max(256, 2 * n)
        while total < n:
            cand = rng.random((batch, self.d))
            keep = cand[self.in_support(cand)]
            xs.append(keep)
            total += len(keep)
            rate = max(len(keep) / batch, 1e-3)
            batch = int(min(4_000_000, max(256, 1.2 * (n - total) / rate)))
        x = np.concatenate(xs)[:n] if xs else np.empty((0, self.d))
        return x, self.cell_label_of(x).astype(np.int64)

    def acceptance_rate(self, rng: np.random.Generator, samples: int = 100_000) -> float:
        """Monte Carlo volume of K (fraction of the cube kept)."""
        return float(self.in_support(rng.random((samples, self.d))).mean())


def non_vacuous_grid(d: int, delta: float, cells_per_axis: int = 2, n_classes: int = 2,
                     seed: int = 0, max_tries: int = 10_000) -> GridRobustDistribution:
    """The first :class:`GridRobustDistribution` with seed ``seed``, ``seed + 1``, ... whose cells
    carry at least two labels (not :attr:`~GridRobustDistribution.vacuous`). The choice depends on
    the cell labels only, never on a simulation outcome."""
    n_classes = check_int("n_classes", n_classes, min_value=2)
    cells = check_int("cells_per_axis", cells_per_axis, min_value=1)
    if cells ** check_int("d", d, min_value=1) < 2:
        raise ValueError(f"n_classes: a grid with cells_per_axis={cells} and d={d} has one cell, "
                         f"so it cannot carry {n_classes} classes; use cells_per_axis >= 2")
    seed = check_int("seed", seed, min_value=0)
    for s in range(seed, seed + check_int("max_tries", max_tries, min_value=1)):
        dist = GridRobustDistribution(d=d, delta=delta, cells_per_axis=cells, n_classes=n_classes,
                                      seed=s)
        if not dist.vacuous:
            return dist
    raise ValueError(f"no seed in [{seed}, {seed + max_tries}) gives two classes")


def uniform_cube(d: int, delta: float = 0.25) -> GridRobustDistribution:
    """U([0,1]^d), one class: the uniform special case (robust at every margin; ``delta`` in
    (0, 1) only labels the object)."""
    return GridRobustDistribution(d=d, delta=delta, cells_per_axis=1, n_classes=1, seed=0)


def min_cross_label_distance(x: np.ndarray, y: np.ndarray) -> float:
    """Smallest ℓ∞ distance between two points with different labels (inf if one label)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y)
    best = np.inf
    for c in np.unique(y):
        a, b = x[y == c], x[y != c]
        if len(a) and len(b):
            for s in range(0, len(a), 512):
                best = min(best, float(np.abs(a[s:s + 512, None, :] - b[None]).max(axis=2).min()))
    return best
