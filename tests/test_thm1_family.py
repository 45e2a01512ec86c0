"""P&L Theorem 1: the family F (theory.hypercube): dimension, lazy phi, sampling."""
from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from theory.hypercube import (GOLDEN, TAG_PHI, HypercubeFamily, derive_key, dimension_for,
                              features_to_patterns, mix64_int, p_seen, patterns_to_features,
                              phi_of, robust_accuracy_bound, stream_patterns, _u64)


def test_dimension_matches_ceil_log2_plus_7():
    for n in range(1, 300):
        assert dimension_for(n) == math.ceil(math.log2(n)) + 7
    for n in list(range(2, 300)) + [10_000, 2 ** 20, 2 ** 20 + 1, 2 ** 53, 2 ** 53 + 1]:
        d = dimension_for(n)          # exact integer definition of ceil(log2 n): 2^(c-1) < n <= 2^c
        assert 2 ** (d - 8) < n <= 2 ** (d - 7)
    assert dimension_for(1) == 7 and dimension_for(10_000) == 21 and dimension_for(2 ** 53) == 60


def test_numba_hash_equals_python_hash():
    key = derive_key(123, TAG_PHI)
    got = stream_patterns(_u64(key), 50, _u64((1 << 64) - 1))
    want = [mix64_int(key + (i + 1) * GOLDEN) for i in range(50)]
    assert [int(v) for v in got] == want
    # phi is the top bit of the same hash evaluated at the pattern
    pats = np.arange(50, dtype=np.uint64)
    lab = phi_of(_u64(key), pats)
    assert [int(v) for v in lab] == [1 if mix64_int(key + (p + 1) * GOLDEN) >> 63 else -1
                                     for p in range(50)]


@settings(max_examples=20)
@given(seed=st.integers(0, 2 ** 64 - 1), d=st.integers(12, 64))
def test_phi_balanced_and_reproducible(seed, d):
    """Lazy phi: over 20000 distinct patterns the fraction of +1 is 1/2 within 5 sigma
    (sigma = 0.5/sqrt(20000) = 0.0035), and two families with the same seed agree."""
    fam = HypercubeFamily(d=d, delta=0.3, phi_seed=seed)
    pats = np.arange(20000, dtype=np.uint64) * np.uint64(2654435761) & np.uint64(fam.mask)
    pats = np.unique(pats)
    lab = fam.phi(pats)
    assert set(np.unique(lab)) <= {-1, 1}
    assert abs((lab == 1).mean() - 0.5) <= 5 * 0.5 / math.sqrt(pats.size)
    again = HypercubeFamily(d=d, delta=0.3, phi_seed=seed).phi(pats)
    assert np.array_equal(lab, again)


def test_phi_differs_between_seeds_and_neighbours_uncorrelated():
    a = HypercubeFamily(d=30, delta=0.1, phi_seed=1)
    b = HypercubeFamily(d=30, delta=0.1, phi_seed=2)
    p = np.arange(40000, dtype=np.uint64)
    la, lb = a.phi(p).astype(float), b.phi(p).astype(float)
    sigma = 1 / math.sqrt(p.size)
    assert abs(np.mean(la * lb)) < 5 * sigma                 # independent functions
    assert abs(np.mean(la[:-1] * la[1:])) < 5 * sigma        # consecutive patterns
    flip0 = a.phi(p ^ np.uint64(1)).astype(float)            # neighbours in Hamming distance 1
    assert abs(np.mean(la * flip0)) < 5 * sigma


def test_sample_is_reproducible_uniform_and_consistent():
    fam = HypercubeFamily.for_n(10_000, delta=0.25, phi_seed=7)
    assert fam.d == 21
    s1 = fam.sample_seeded(50_000, seed=3)
    s2 = fam.sample_seeded(50_000, seed=3)
    assert np.array_equal(s1.patterns, s2.patterns) and np.array_equal(s1.y, s2.y)
    assert int(s1.patterns.max()) <= fam.mask
    assert np.array_equal(s1.y, fam.phi(s1.patterns))
    assert np.allclose(s1.xd, 0.25 * s1.y)
    # each robust bit is a fair coin: 5-sigma band, sigma = 0.5/sqrt(50000)
    bits = (s1.patterns[:, None] >> np.arange(20, dtype=np.uint64)) & np.uint64(1)
    assert np.all(np.abs(bits.mean(axis=0) - 0.5) < 5 * 0.5 / math.sqrt(50_000))
    X = s1.features()
    assert X.shape == (50_000, 21) and set(np.unique(X[:, :-1])) == {-1.0, 1.0}
    assert np.array_equal(features_to_patterns(X), s1.patterns)


def test_d60_constant_memory():
    """d = 60: sampling and phi without a 2^59 table (peak Python allocation < 2 MB)."""
    fam = HypercubeFamily(d=60, delta=0.5, phi_seed=11)
    tracemalloc.start()
    s = fam.sample_seeded(20_000, seed=1)
    lab = fam.phi(np.array([0, fam.mask, 12345678901234567], dtype=np.uint64))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 2_000_000
    assert len(s) == 20_000 and int(s.patterns.max()) < 2 ** 59
    assert np.unique(s.patterns).size == 20_000       # collisions have probability ~1e-9
    assert set(lab.tolist()) <= {-1, 1}
    assert HypercubeFamily(d=64, delta=0.5).mask == 2 ** 63 - 1


def test_patterns_features_roundtrip_small():
    p = np.array([0, 1, 5, 127], dtype=np.uint64)
    X = patterns_to_features(p, [0.1, -0.1, 0.1, -0.1], 8)
    assert X[2, :3].tolist() == [1.0, -1.0, 1.0]
    assert np.array_equal(features_to_patterns(X * 0.5), p)   # signs only


def test_p_seen_and_bound_closed_forms():
    assert p_seen(0, 5) == 0.0
    assert p_seen(1, 2) == pytest.approx(0.5)
    assert p_seen(10, 4) == pytest.approx(1 - (7 / 8) ** 10, rel=1e-12)
    assert robust_accuracy_bound(10_000, 21) == pytest.approx(0.5 + 10_000 / 2 ** 21)
    assert robust_accuracy_bound(10 ** 6, 5) == 1.0


@settings(max_examples=60)
@given(n=st.integers(1, 2 ** 40))
def test_bound_chain_numerically(n):
    d = dimension_for(n)
    ps = p_seen(n, d)
    assert ps <= n / 2 ** (d - 1) * (1 + 1e-12)
    assert 0.5 + 0.5 * ps <= robust_accuracy_bound(n, d) + 1e-15
    assert robust_accuracy_bound(n, d) <= 0.5 + 1 / 128 < 0.51


@pytest.mark.parametrize("kwargs,match", [
    (dict(d=1, delta=0.5), "d must be"), (dict(d=65, delta=0.5), "d must be"),
    (dict(d=10, delta=0.0), "delta"), (dict(d=10, delta=1.0), "delta"),
    (dict(d=10, delta=0.5, phi_seed=-1), "phi_seed"),
])
def test_family_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HypercubeFamily(**kwargs)


def test_bad_input_messages():
    with pytest.raises(ValueError, match="n must be >= 1"):
        dimension_for(0)
    with pytest.raises(TypeError, match="n must be an integer"):
        dimension_for("10")
    fam = HypercubeFamily(d=4, delta=0.5)
    with pytest.raises(ValueError, match="patterns must be < 2"):
        fam.phi(np.array([8], dtype=np.uint64))
    with pytest.raises(ValueError, match="nonzero"):
        features_to_patterns(np.zeros((2, 4)))
