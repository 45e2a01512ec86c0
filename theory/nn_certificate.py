"""Sound robustness certificate of the 1-nearest-neighbour classifier: a *lower bound* on the
radius at which the 1-NN prediction can change (not the exact radius).

Used by P&L Theorem 2 (supplementary Section 8: 1-NN reaches 99% robust accuracy) and by
YRZSC Theorem 4.2 (on a finite sample the distance classifier g is the 1-NN classifier).

Statement. Let ŷ be the label of the training point nearest to x (in a norm ‖·‖), let
a = d(x, X^(ŷ)) be the distance to the nearest training point labelled ŷ and b = min over labels
c ≠ ŷ of d(x, X^(c)). If b − a > 2ρ then every x' with ‖x' − x‖ ≤ ρ is still classified ŷ.

Proof (triangle inequality). For such x': d(x', X^(ŷ)) ≤ a + ρ and, for every c ≠ ŷ,
d(x', X^(c)) ≥ b − ρ. Since a + ρ < b − ρ, the nearest training point to x' is labelled ŷ and it is
strictly nearer than any other label, so 1-NN predicts ŷ at x' (no tie can arise). ∎

Hence the certified radius is (b − a)/2 and x is certified at ρ iff (b − a)/2 > ρ. A query with
a = b (a tie between labels) gets radius 0 and is never certified, whatever tie-break the
prediction uses. Certified robust accuracy = fraction of points that are correct and certified.

Certified (lower bound). (b − a)/2 is sound but not tight: the smallest perturbation that changes
the 1-NN prediction can be larger, because moving x towards the other class's nearest point need
not move it away from its own (equality needs the two nearest points and x on one line). On MNIST
the true flip radius exceeds (b − a)/2 by more than 0.01 for about half of the points in ℓ2 and a
quarter in ℓ∞. So the certified radius and the certified robust accuracy computed here are
**lower bounds** on the exact 1-NN robust radius and robust accuracy, and are reported as
"certified (lower bound)".
"""
from __future__ import annotations

import numpy as np

from plumbing.validation import check_float


def check_labels(name: str, value, length: int | None = None) -> np.ndarray:
    """A 1-D array of integer class labels (int/uint dtype; floats, bools and strings are
    rejected with TypeError naming ``name``), optionally of a given length."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer array of class labels, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-dimensional, got shape {arr.shape}")
    if length is not None and len(arr) != length:
        raise ValueError(f"{name} must have length {length}, got {len(arr)}")
    return arr


def certified_radius_1nn(dist_same: np.ndarray, dist_other: np.ndarray) -> np.ndarray:
    """Certified radius (a lower bound on the exact 1-NN flip radius): (b − a)/2, clipped at 0;
    ``dist_same`` = a (nearest point of the predicted label), ``dist_other`` = b (nearest point of
    any other label). ``inf`` where only one label exists."""
    a = np.asarray(dist_same, dtype=np.float64)
    b = np.asarray(dist_other, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"dist_same and dist_other must have the same shape, got {a.shape} and {b.shape}")
    if np.isnan(a).any() or np.isnan(b).any():
        raise ValueError("dist_same and dist_other must not contain NaN")
    return np.maximum((b - a) / 2.0, 0.0)


def certify_1nn(pred: np.ndarray, dist_same: np.ndarray, dist_other: np.ndarray, labels: np.ndarray,
                eps: float) -> dict:
    """Certified robust accuracy (a lower bound on the exact robust accuracy) of 1-NN at radius
    ``eps`` from per-query nearest distances.

    Returns dict with ``certified`` (bool per query: certified radius > eps), ``correct``,
    ``radius`` (the certified radius (b − a)/2, a lower bound on the exact flip radius),
    ``clean_accuracy``, ``certified_robust_accuracy`` (correct and certified: a lower bound).
    """
    eps = check_float("eps", eps, low=0.0)
    radius = certified_radius_1nn(dist_same, dist_other)
    pred = check_labels("pred", pred)
    labels = check_labels("labels", labels)
    if pred.shape != radius.shape or labels.shape != radius.shape:
        raise ValueError("pred, labels and distances must have the same length")
    correct = pred == labels
    certified = radius > eps
    return {
        "radius": radius,
        "correct": correct,
        "certified": certified,
        "clean_accuracy": float(correct.mean()) if correct.size else float("nan"),
        "certified_robust_accuracy": float((correct & certified).mean()) if correct.size else float("nan"),
    }


def nearest_by_label(dist_matrix: np.ndarray, ref_labels: np.ndarray, n_classes: int | None = None) -> np.ndarray:
    """From a dense (queries, references) distance matrix, the (queries, classes) matrix of the
    distance to the nearest reference of each class (inf for a class with no reference)."""
    d = np.asarray(dist_matrix, dtype=np.float64)
    lab = np.asarray(ref_labels)
    k = int(lab.max()) + 1 if n_classes is None else int(n_classes)
    out = np.full((d.shape[0], k), np.inf)
    for c in range(k):
        m = lab == c
        if m.any():
            out[:, c] = d[:, m].min(axis=1)
    return out


def one_nn_from_class_distances(class_dist: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(prediction, a, b) from the per-class nearest distances: prediction = argmin (lowest label
    on ties), a = its distance, b = the smallest distance among the other classes."""
    cd = np.asarray(class_dist, dtype=np.float64)
    pred = np.argmin(cd, axis=1)
    rows = np.arange(cd.shape[0])
    a = cd[rows, pred]
    other = cd.copy()
    other[rows, pred] = np.inf
    b = other.min(axis=1)
    return pred, a, b


def class_nearest_distances(queries: np.ndarray, references: np.ndarray, ref_labels: np.ndarray,
                            norm: str = "2", n_classes: int | None = None) -> np.ndarray:
    """(queries, classes) distances to the nearest reference of each class (inf for a class with
    no reference), one blocked brute-force search per class (``theory.knn.nearest_neighbor``),
    so memory stays bounded for many references. Same values as ``nearest_by_label`` applied to
    the dense distance matrix."""
    from .knn import _check_knn_norm, _numeric, nearest_neighbor

    norm = _check_knn_norm(norm)
    q = _numeric("queries", queries, 1)
    r = _numeric("references", references, 1)
    lab = check_labels("ref_labels", ref_labels, len(r))
    if lab.min() < 0:
        raise ValueError("ref_labels must be non-negative integers 0..C-1")
    k = int(lab.max()) + 1 if n_classes is None else int(n_classes)
    out = np.full((len(q), k), np.inf)
    for c in range(k):
        m = lab == c
        if m.any():
            out[:, c], _ = nearest_neighbor(q, r[m], norm)
    return out
