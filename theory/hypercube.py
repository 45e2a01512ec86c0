"""The family F of P&L Theorem 1 (No Free Robustness), Section 3 (Proof Sketch 1) and
supplementary Section 7.

For a training-set size n the dimension is d = ceil(log2 n) + 7.  One distribution D_phi in F is
given by a Boolean function phi : {+-1}^(d-1) -> {+-1}:

* robust features x_1..x_{d-1} uniform on the hypercube {+-1}^(d-1);
* label y = phi(x_1..x_{d-1});
* non-robust feature x_d = delta * y with 0 < delta < 1.

Representation.  A point of the hypercube is a *pattern*: an unsigned 64-bit integer whose bit i is
set iff x_{i+1} > 0 (so d - 1 <= 63, i.e. d <= 64).  phi is a uniformly random Boolean function,
but it is never materialised as a 2^(d-1) table: phi(p) is the top bit of a splitmix64-style hash of
(phi key, p), where the phi key is derived from a seed.  This is a counter-based construction: the
label of any pattern is computed on demand in O(1) time and memory, reproducibly, so d up to 64
works in constant memory.  Training and test patterns are drawn the same way (the i-th draw of a
stream is the hash of (stream key, i)), which makes every simulation bit-for-bit reproducible and
lets an independent plain-NumPy implementation (``bench/``) reproduce it exactly.

The hash (``mix64``) is the splitmix64 output function (Steele, Lea, Flood 2014; the constants are
the published ones); stream i of key k yields mix64(k + (i+1) * GOLDEN) mod 2^64, which is exactly
splitmix64 started from state k.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numba import njit

from theory.constants import THM1_EXTRA_DIMS
from plumbing.validation import check_float, check_int

MAX_D = 64                      # d - 1 <= 63 robust features fit in one uint64 pattern
_M64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15     # splitmix64 increment
_C1 = 0xBF58476D1CE4E5B9
_C2 = 0x94D049BB133111EB

# Stream tags (arbitrary distinct constants) used to derive independent keys from one seed.
TAG_PHI, TAG_TRAIN, TAG_TEST, TAG_COIN = 1, 2, 3, 4


# ---- hashing: pure-Python (for keys) and numba (for arrays); identical results -------------

def mix64_int(z: int) -> int:
    """splitmix64 output function on a Python int (mod 2^64)."""
    z &= _M64
    z = ((z ^ (z >> 30)) * _C1) & _M64
    z = ((z ^ (z >> 27)) * _C2) & _M64
    return z ^ (z >> 31)


def derive_key(seed: int, *tags: int) -> int:
    """A 64-bit key for the stream named by ``tags`` under ``seed`` (e.g. (TAG_PHI, trial))."""
    seed = check_int("seed", seed, min_value=0, max_value=_M64)
    key = mix64_int(seed + GOLDEN)
    for t in tags:
        t = check_int("tag", t, min_value=0, max_value=_M64)
        key = mix64_int(key ^ mix64_int((t + 1) * GOLDEN))
    return key


@njit(cache=True, inline="always")
def _mix64(z):
    z = (z ^ (z >> np.uint64(30))) * np.uint64(_C1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(_C2)
    return z ^ (z >> np.uint64(31))


@njit(cache=True, inline="always")
def _stream(key, i):
    """i-th output of splitmix64 started at state ``key`` (both uint64)."""
    return _mix64(key + (i + np.uint64(1)) * np.uint64(GOLDEN))


@njit(cache=True, inline="always")
def _phi(key, pattern):
    """+1 or -1: the top bit of the hash of (phi key, pattern)."""
    return np.int8(1) if (_stream(key, pattern) >> np.uint64(63)) else np.int8(-1)


@njit(cache=True)
def stream_patterns(key, count, mask):
    """``count`` uniform patterns (uint64 & mask) from the stream ``key``."""
    out = np.empty(count, dtype=np.uint64)
    for i in range(count):
        out[i] = _stream(key, np.uint64(i)) & mask
    return out


@njit(cache=True)
def phi_of(key, patterns):
    """Labels phi(p) in {-1, +1} (int8) for an array of uint64 patterns."""
    out = np.empty(patterns.shape[0], dtype=np.int8)
    for i in range(patterns.shape[0]):
        out[i] = _phi(key, patterns[i])
    return out


def _u64(x: int) -> np.uint64:
    return np.uint64(x & _M64)


# ---- the family ----------------------------------------------------------------------------

def dimension_for(n: int) -> int:
    """d = ceil(log2 n) + 7 (Proof Sketch 1), computed exactly with integers."""
    n = check_int("n", n, min_value=1)
    return (n - 1).bit_length() + THM1_EXTRA_DIMS


def pattern_mask(d: int) -> int:
    """Bit mask of the d - 1 robust features."""
    d = check_int("d", d, min_value=2, max_value=MAX_D)
    return (1 << (d - 1)) - 1


@dataclass(frozen=True)
class HypercubeSample:
    """Samples of one D_phi in compact form.

    patterns: uint64, bit i set iff x_{i+1} = +1;  xd: float64 non-robust feature;  y: int8 in
    {-1, +1}.  ``features()`` materialises the (m, d) float matrix (only sensible for small m*d).
    """
    patterns: np.ndarray
    xd: np.ndarray
    y: np.ndarray
    d: int

    def __post_init__(self):
        check_int("d", self.d, min_value=2, max_value=MAX_D)
        m = len(self.patterns)
        if not (len(self.xd) == m == len(self.y)):
            raise ValueError(f"patterns, xd and y must have equal length, got "
                             f"{m}, {len(self.xd)}, {len(self.y)}")

    def __len__(self) -> int:
        return len(self.patterns)

    def features(self) -> np.ndarray:
        """The points as an (m, d) float64 array: x_1..x_{d-1} in {-1, +1}, x_d last."""
        return patterns_to_features(self.patterns, self.xd, self.d)


def patterns_to_features(patterns, xd, d: int) -> np.ndarray:
    """(m, d) float64 features from uint64 patterns and the non-robust feature x_d."""
    d = check_int("d", d, min_value=2, max_value=MAX_D)
    p = np.asarray(patterns, dtype=np.uint64)
    bits = (p[:, None] >> np.arange(d - 1, dtype=np.uint64)[None, :]) & np.uint64(1)
    X = np.empty((len(p), d), dtype=np.float64)
    X[:, : d - 1] = np.where(bits == 1, 1.0, -1.0)
    X[:, d - 1] = np.asarray(xd, dtype=np.float64)
    return X


def features_to_patterns(X) -> np.ndarray:
    """uint64 patterns of sign(x_1..x_{d-1}) (bit set iff x_i > 0) of an (m, d) array.

    A robust coordinate equal to 0 has no sign; it is rejected (on the support of D and within
    any l2 ball of radius < 1 around it, |x_i| > 0).
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or not (2 <= X.shape[1] <= MAX_D):
        raise ValueError(f"X must be an (m, d) array with 2 <= d <= {MAX_D}, got shape {X.shape}")
    R = X[:, :-1]
    if np.any(R == 0) or not np.all(np.isfinite(R)):
        raise ValueError("X robust features must be finite and nonzero (their sign is the pattern)")
    weights = np.uint64(1) << np.arange(R.shape[1], dtype=np.uint64)
    return ((R > 0).astype(np.uint64) * weights[None, :]).sum(axis=1, dtype=np.uint64)


@dataclass(frozen=True)
class HypercubeFamily:
    """One member D_phi of the family F (Theorem 1): dimension d, non-robust scale delta, and phi
    drawn lazily from ``phi_seed`` (see module docstring).

    Use :meth:`for_n` to get the theorem's d = ceil(log2 n) + 7.  ``phi_key`` may be given
    directly (the simulation derives one per trial from its seed).
    """
    d: int
    delta: float
    phi_seed: int = 0
    phi_key: int | None = None
    _key: int = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "d", check_int("d", self.d, min_value=2, max_value=MAX_D))
        object.__setattr__(self, "delta", check_float("delta", self.delta, low=0.0, high=1.0,
                                                      low_open=True, high_open=True))
        check_int("phi_seed", self.phi_seed, min_value=0, max_value=_M64)
        key = (derive_key(self.phi_seed, TAG_PHI) if self.phi_key is None
               else check_int("phi_key", self.phi_key, min_value=0, max_value=_M64))
        object.__setattr__(self, "_key", key)

    @classmethod
    def for_n(cls, n: int, delta: float, phi_seed: int = 0) -> "HypercubeFamily":
        """The member of F for training-set size n: d = ceil(log2 n) + 7."""
        return cls(d=dimension_for(n), delta=delta, phi_seed=phi_seed)

    @property
    def n_patterns(self) -> int:
        """2^(d-1), the number of robust patterns."""
        return 1 << (self.d - 1)

    @property
    def mask(self) -> int:
        return pattern_mask(self.d)

    def phi(self, patterns) -> np.ndarray:
        """phi(p) in {-1, +1} (int8) for uint64 patterns (each must be < 2^(d-1))."""
        p = np.ascontiguousarray(np.asarray(patterns, dtype=np.uint64).reshape(-1))
        if p.size and int(p.max()) > self.mask:
            raise ValueError(f"patterns must be < 2^(d-1) = {self.n_patterns}")
        return phi_of(_u64(self._key), p)

    def sample(self, m: int, stream_key: int) -> HypercubeSample:
        """m i.i.d. draws from D_phi using the counter-based stream ``stream_key``."""
        m = check_int("m", m, min_value=0)
        stream_key = check_int("stream_key", stream_key, min_value=0, max_value=_M64)
        p = stream_patterns(_u64(stream_key), m, _u64(self.mask))
        y = phi_of(_u64(self._key), p)
        return HypercubeSample(patterns=p, xd=self.delta * y.astype(np.float64), y=y, d=self.d)

    def sample_seeded(self, m: int, seed: int, stream: int = TAG_TRAIN) -> HypercubeSample:
        """m draws from the stream (seed, stream): convenience wrapper of :meth:`sample`."""
        return self.sample(m, derive_key(seed, stream))


def p_seen(n: int, d: int) -> float:
    """P(a test pattern appears among n i.i.d. training patterns) = 1 - (1 - 2^-(d-1))^n
    (Section 7, the event x^r in X^r of Eq. (8)); computed stably with log1p/expm1."""
    import math

    n = check_int("n", n, min_value=0)
    d = check_int("d", d, min_value=2, max_value=MAX_D)
    return -math.expm1(n * math.log1p(-(2.0 ** -(d - 1))))


def robust_accuracy_bound(n: int, d: int) -> float:
    """The theorem's bound 1/2 + n / 2^d on any learner's expected robust accuracy at eps >= delta
    (Section 7: robust error >= 1/2 - n/2^d), capped at 1."""
    n = check_int("n", n, min_value=0)
    d = check_int("d", d, min_value=2, max_value=MAX_D)
    return min(1.0, 0.5 + n / 2.0 ** d)


def robust_accuracy_bound_tight(n: int, d: int) -> float:
    """1/2 + 1/2 P(seen): the exact value of the best achievable expected robust accuracy at
    eps >= delta (attained by the Bayes-robust learner; Eq. (8) with P(seen) exact)."""
    return 0.5 + 0.5 * p_seen(n, d)
