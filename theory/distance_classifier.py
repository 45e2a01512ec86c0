"""The distance classifier of YRZSC Section 4.1 (Theorem 4.2, Eq. (1)-(2); binary form Thm 4.4).

Multiclass (Eq. (1), (2)): f(x)_i = dist(x, X^(i)) / r and g(x) = argmin_i f(x)_i.
Binary (Section 4.1, before Lemma 4.3): f(x) = (dist(x, X^-) - dist(x, X^+)) / (2r), g = sign(f).

Facts implemented and checked here:
* Lipschitz (Thm 4.2 (a)): |f(x)_i - f(x')_i| <= dist(x, x') / r (triangle inequality), so f is
  1/r-Lipschitz coordinate-wise; the binary f is 1/r-Lipschitz as well.
* Lemma 4.1 (margin): if f is 1/r-Lipschitz and f(x)_j - f(x)_y >= 2 for all j != y, g is astute
  at x with radius r. :func:`lemma41_margin` returns min_{j != y} f(x)_j - f(x)_y.
* Lemma 4.3 (binary): |f(x)| >= 1 with the right sign gives astuteness at radius r.
* Thm 4.2 (b): on r-separated data every data point has margin >= 2 (f(x)_y = 0 and
  f(x)_j >= 2r / r), so g is astute at radius r on the support.

Finite sample. When the class sets X^(i) are finite training sets, g(x) = argmin_i
dist(x, X^(i)) is exactly the 1-nearest-neighbour classifier (ties to the lowest label here).
Its robustness certificate is therefore the 1-NN certificate of :mod:`theory.nn_certificate`
(radius (b - a)/2), which we reuse rather than restate; note that the Lemma 4.1 radius
r * margin / 2 with f = dist / r is the same number (b - a) / 2. The certificate is sound but a
*lower bound*: the exact radius at which g changes can be larger, so the certified robust
accuracy is reported as "certified (lower bound)".
"""
from __future__ import annotations

import numpy as np

from .knn import _numeric
from .nn_certificate import certify_1nn, check_labels, one_nn_from_class_distances
from .separation import nearest_with_label
from plumbing.validation import check_float, check_norm


CERTIFICATE_NOTE = ("certified (lower bound): 1-NN radius (b - a)/2 is sound but not exact; the "
                    "exact robust accuracy can be higher")


def class_distances(x, class_points, labels, norm: str = "inf") -> np.ndarray:
    """(N, C) matrix dist(x, X^(i)), exact, using the fast kernels of :mod:`theory.separation`.
    ``labels`` must take values 0..C-1; a class with no point gets inf."""
    norm = check_norm("norm", norm)
    lab = check_labels("labels", labels)
    x = _numeric("x", x, 1)
    _numeric("class_points", class_points, 1)
    if lab.ndim != 1 or lab.shape[0] != len(np.asarray(class_points)):
        raise ValueError("labels must have one entry per class point")
    if lab.size == 0 or lab.min() < 0:
        raise ValueError("labels must be non-negative integers 0..C-1")
    n_classes = int(lab.max()) + 1
    out = np.full((len(x), n_classes), np.inf)
    for c in range(n_classes):
        if np.any(lab == c):
            out[:, c], _ = nearest_with_label(x, class_points, lab, c, norm)
    return out


def distance_function(x, class_points, labels, r: float, norm: str = "inf") -> np.ndarray:
    """Eq. (1): f(x)_i = dist(x, X^(i)) / r, shape (N, C)."""
    r = check_float("r", r, low=0.0, low_open=True)
    return class_distances(x, class_points, labels, norm) / r


def classify(f_values) -> np.ndarray:
    """Eq. (2): g(x) = argmin_i f(x)_i (lowest label on ties)."""
    return np.argmin(np.asarray(f_values), axis=1)


def lemma41_margin(f_values, y) -> np.ndarray:
    """min_{j != y} f(x)_j - f(x)_y per row (Lemma 4.1 asks for >= 2)."""
    f = np.asarray(f_values, dtype=np.float64)
    y = np.asarray(y)
    rows = np.arange(len(f))
    other = f.copy()
    other[rows, y] = np.inf
    return other.min(axis=1) - f[rows, y]


def binary_function(x, pos_points, neg_points, r: float, norm: str = "inf") -> np.ndarray:
    """Binary f(x) = (dist(x, X^-) - dist(x, X^+)) / (2r) (Section 4.1, Thm 4.4)."""
    r = check_float("r", r, low=0.0, low_open=True)
    pos = np.asarray(pos_points)
    neg = np.asarray(neg_points)
    pts = np.concatenate([neg, pos])
    lab = np.concatenate([np.zeros(len(neg), np.int64), np.ones(len(pos), np.int64)])
    cd = class_distances(x, pts, lab, norm)
    return (cd[:, 0] - cd[:, 1]) / (2.0 * r)


def lemma43_astute(f_value, y_sign) -> np.ndarray:
    """Lemma 4.3 conditions (b) and (c): |f(x)| >= 1 and sign(f(x)) = y (y in {-1, +1})."""
    f = np.asarray(f_value, dtype=np.float64)
    return (np.abs(f) >= 1.0) & (np.sign(f) == np.asarray(y_sign))


def certified_accuracy(test_x, test_y, train_x, train_y, eps_list, norm: str = "inf",
                       scale: float = 1.0) -> dict:
    """Clean accuracy and certified robust accuracy (a lower bound) of g (= 1-NN on the training
    set) on a test set.

    Distances are divided by ``scale`` (255 for uint8 images, so eps is in [0, 1] pixel units).
    The certificate is :func:`theory.nn_certificate.certify_1nn`: sound, and a lower bound on the
    exact robust accuracy (the exact flip radius can exceed (b - a)/2). Keys:
    ``certified_lower_bound`` (eps -> certified robust accuracy), ``median_certified_radius_lower_bound``
    and ``certificate`` (this note)."""
    norm = check_norm("norm", norm)
    scale = check_float("scale", scale, low=0.0, low_open=True)
    ty = check_labels("test_y", test_y, len(np.asarray(test_x)))
    if np.ndim(eps_list) != 1 or len(eps_list) == 0:
        raise TypeError(f"eps_list must be a non-empty list of radii >= 0, got {eps_list!r}")
    eps_list = [check_float("eps_list", e, low=0.0) for e in eps_list]
    cd = class_distances(test_x, train_x, train_y, norm) / scale
    pred, a, b = one_nn_from_class_distances(cd)
    out = {"norm": norm, "n_test": int(len(ty)), "clean_accuracy": float((pred == ty).mean()),
           "certificate": CERTIFICATE_NOTE, "certified_lower_bound": {}}
    for eps in eps_list:
        res = certify_1nn(pred, a, b, ty, float(eps))
        out["certified_lower_bound"][f"{float(eps):.6g}"] = res["certified_robust_accuracy"]
    out["median_certified_radius_lower_bound"] = float(np.median(np.maximum((b - a) / 2.0, 0.0)))
    return out
