"""Distance classifier of YRZSC Theorem 4.2 / 4.4, Lemmas 4.1 / 4.3; on finite data g = 1-NN."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from theory.distance_classifier import (binary_function, certified_accuracy, class_distances,
                                        classify, distance_function, lemma41_margin,
                                        lemma43_astute)
from theory.nn_certificate import certify_1nn, class_nearest_distances, one_nn_from_class_distances
from theory.separation import separation_row


def _dist(a, b, norm):
    d = np.asarray(a, float) - np.asarray(b, float)
    return np.abs(d).max(-1) if norm == "inf" else np.sqrt((d * d).sum(-1))


def _separated(seed, n_classes=3, per=8, dim=3):
    """Clusters around far-apart centres: an r-separated sample with r = min gap / 2."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim)) * 10
    x = np.concatenate([c + rng.uniform(-1, 1, (per, dim)) for c in centres])
    y = np.repeat(np.arange(n_classes), per)
    return x, y


@settings(max_examples=15)
@given(st.integers(0, 2**31 - 1), st.sampled_from(["inf", "2"]), st.floats(0.05, 5.0))
def test_f_is_one_over_r_lipschitz(seed, norm, r):
    """Thm 4.2 (a): |f(x)_i - f(x')_i| <= dist(x, x') / r (tolerance 1e-12 relative)."""
    rng = np.random.default_rng(seed)
    pts = rng.normal(size=(15, 3))
    lab = rng.integers(0, 3, 15)
    lab[:3] = [0, 1, 2]
    x = rng.normal(size=(10, 3))
    x2 = x + rng.normal(size=(10, 3)) * rng.uniform(0.001, 2)
    f1 = distance_function(x, pts, lab, r, norm)
    f2 = distance_function(x2, pts, lab, r, norm)
    bound = _dist(x, x2, norm)[:, None] / r
    assert np.all(np.abs(f1 - f2) <= bound * (1 + 1e-12) + 1e-12)
    fb1 = binary_function(x, pts[lab == 1], pts[lab != 1], r, norm)
    fb2 = binary_function(x2, pts[lab == 1], pts[lab != 1], r, norm)
    assert np.all(np.abs(fb1 - fb2) <= bound[:, 0] * (1 + 1e-12) + 1e-12)


@settings(max_examples=12)
@given(st.integers(0, 2**31 - 1), st.sampled_from(["inf", "2"]))
def test_astute_at_radius_r_on_separated_data(seed, norm):
    """Thm 4.2 (b) via Lemma 4.1: on an r-separated sample every point has margin >= 2, hence g
    is astute with radius r; checked exactly by the margin and by Monte Carlo perturbations of
    norm < r (seeded)."""
    x, y = _separated(seed)
    row = separation_row(x, y, norm=norm, scale=1.0)
    r = row.train_train_min / 2
    assert r > 0
    f = distance_function(x, x, y, r, norm)
    assert np.all(f[np.arange(len(y)), y] == 0)
    margin = lemma41_margin(f, y)
    assert np.all(margin >= 2 - 1e-12)
    assert np.array_equal(classify(f), y)
    rng = np.random.default_rng(seed)
    for _ in range(5):
        delta = rng.uniform(-1, 1, x.shape)
        n = _dist(delta, 0 * delta, norm)[:, None]
        delta = delta / n * r * rng.uniform(0, 0.999, (len(x), 1))
        assert np.array_equal(classify(distance_function(x + delta, x, y, r, norm)), y)
    # binary form (Thm 4.4 / Lemma 4.3): |f| >= 1 with the right sign at every data point
    pos = y == 0
    fb = binary_function(x, x[pos], x[~pos], r, norm)
    assert np.all(lemma43_astute(fb, np.where(pos, 1, -1)))


@settings(max_examples=12)
@given(st.integers(0, 2**31 - 1), st.sampled_from(["inf", "2"]))
def test_g_is_1nn_and_certificate_is_reused(seed, norm):
    """On a finite sample g = argmin_i dist(x, X^(i)) is the 1-NN classifier; its margin radius
    r * margin / 2 equals the 1-NN certificate radius (b - a) / 2 of theory.nn_certificate."""
    rng = np.random.default_rng(seed)
    pts = rng.normal(size=(30, 4))
    lab = rng.integers(0, 3, 30)
    lab[:3] = [0, 1, 2]
    x = rng.normal(size=(20, 4))
    f = distance_function(x, pts, lab, 1.0, norm)
    nn = lab[np.argmin(np.stack([_dist(xi, pts, norm) for xi in x]), axis=1)]
    assert np.array_equal(classify(f), nn)
    oracle = class_nearest_distances(x, pts, lab, "inf" if norm == "inf" else "2", n_classes=3)
    np.testing.assert_allclose(f, oracle, rtol=1e-12, atol=1e-12)
    pred, a, b = one_nn_from_class_distances(f)
    cert = certify_1nn(pred, a, b, nn, 0.0)
    margin = lemma41_margin(f, pred)
    np.testing.assert_allclose(cert["radius"], np.maximum(margin, 0) / 2, rtol=0, atol=1e-12)
    # soundness (Monte Carlo, seeded): perturbations below the certified radius keep the label
    for _ in range(5):
        delta = rng.uniform(-1, 1, x.shape)
        delta = delta / _dist(delta, 0 * delta, norm)[:, None] * (cert["radius"][:, None] * 0.999)
        assert np.array_equal(classify(distance_function(x + delta, pts, lab, 1.0, norm)), pred)


def test_mnist_certified_accuracy_matches_brute_force(mnist_train, mnist_test):
    (x, y), (xt, yt) = mnist_train, mnist_test
    x, y, xt, yt = x[:1000], y[:1000], xt[:60], yt[:60]
    res = certified_accuracy(xt, yt, x, y, [0.1], "inf", scale=255.0)
    cd = class_nearest_distances(xt.reshape(60, -1), x.reshape(1000, -1), y, "inf", 10) / 255
    pred, a, b = one_nn_from_class_distances(cd)
    ref = certify_1nn(pred, a, b, yt, 0.1)
    assert res["clean_accuracy"] == ref["clean_accuracy"]
    assert res["certified_lower_bound"]["0.1"] == ref["certified_robust_accuracy"]
    assert "lower bound" in res["certificate"] and "certified" not in res
    assert np.array_equal(class_distances(xt, x, y, "inf") / 255, cd)
    assert 0.3 < res["clean_accuracy"] <= 1.0   # l-inf 1-NN is weak on MNIST but far above chance
