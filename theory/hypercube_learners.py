"""Learners for the family F of P&L Theorem 1 (Section 3, supplementary Section 7), all with one
fit/predict interface so a user can plug in their own.

Protocol (:class:`HypercubeLearner`)
------------------------------------
* ``fit(train: HypercubeSample) -> self``
* ``predict(patterns, xd) -> int8 array in {-1, 0, +1}``: the prediction for points whose robust
  sign pattern is ``patterns`` (uint64, bit i set iff x_{i+1} > 0) and whose non-robust feature is
  ``xd``.  0 means "no decision" (e.g. sign(0)) and is always scored as an error.
* ``xd_breakpoints``: the x_d values at which, for a fixed pattern, the prediction may change.
  ``()`` means the learner ignores x_d.  Between consecutive breakpoints the prediction must be
  constant (it may take any value *at* a breakpoint).

A learner that sees a point only through (sign pattern, x_d) and declares its breakpoints gets an
*exact* worst-case robust accuracy from :mod:`theory.hypercube_robustness`.  ``predict_features``
accepts the raw (m, d) feature matrix instead.  Register a new learner for the simulation and the
command line with :func:`register_learner`.

Provided learners
-----------------
memoriser   seen pattern -> its stored label; unseen -> fallback ("sign_xd": sign(x_d), the
            default, so clean accuracy is 1; "constant": always +1; "coin": a fixed fair coin per
            pattern, which makes it the Bayes-robust learner).
1nn / knn   k nearest training points in Hamming distance between packed patterns (XOR +
            popcount, numba).  Neighbourhood = every training point within the k-th smallest
            distance (ties at that distance all included, so the result does not depend on the
            order of the training set); prediction = sign of the label sum, vote ties -> +1.
linear      sign(x_d) (Theorem 1, bullet 2); sign(0) = 0 is an error.
bayes       Bayes-robust: seen -> stored label, unseen -> fair coin (a hash of the pattern under a
            per-run coin key, i.e. a fixed randomly drawn function of the pattern).  Its expected
            robust accuracy equals 1/2 + 1/2 P(seen), the bound of Section 7, Eq. (8).
oracle      phi(sign(x_1..x_{d-1})) (Theorem 1, bullet 1): knows phi, ignores the training set.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

from theory.hypercube import (HypercubeFamily, HypercubeSample, _u64, features_to_patterns,
                              phi_of)
from plumbing.validation import check_choice, check_int

# ---- packed-bit kernels ---------------------------------------------------------------------


@intrinsic
def _popcount64(typingctx, x):
    """LLVM ctpop on a uint64 (one POPCNT instruction on x86-64)."""
    if x != types.uint64:
        return None

    def codegen(context, builder, sig, args):
        return builder.ctpop(args[0])

    return types.uint64(types.uint64), codegen


@njit(cache=True)
def popcount(x):
    """Number of set bits of a uint64."""
    return _popcount64(x)


@njit(cache=True)
def hamming_levels(queries, refs, counts, sums, kmax):
    """Per query, training-point count and label sum at each Hamming distance 0..64, filled from
    the nearest distance upwards until at least ``kmax`` points are covered (later levels 0).

    refs: unique uint64 patterns; counts[j] (int32): multiplicity of refs[j]; sums[j] (int32):
    the sum of their labels.  One pass per query stores every distance popcount(q ^ refs[j]) in a
    byte buffer and finds the minimum; then one pass per level r = min, min+1, ... (usually 1-3).
    Serial on purpose: trials are the unit of work, and on a shared 2-core machine a threaded
    version was slower.
    """
    m = queries.shape[0]
    u = refs.shape[0]
    cnt = np.zeros((m, 65), dtype=np.int32)
    sm = np.zeros((m, 65), dtype=np.int32)
    dbuf = np.empty(u, dtype=np.uint8)
    for i in range(m):
        q = queries[i]
        dmin = np.uint8(64)
        for j in range(u):
            dd = np.uint8(_popcount64(q ^ refs[j]))
            dbuf[j] = dd
            dmin = min(dmin, dd)
        covered = 0
        r = dmin
        while covered < kmax:
            c = np.int32(0)
            s = np.int32(0)
            for j in range(u):
                hit = dbuf[j] == r
                c += counts[j] if hit else np.int32(0)
                s += sums[j] if hit else np.int32(0)
            cnt[i, r] = c
            sm[i, r] = s
            covered += c
            if r == 64:
                break
            r += np.uint8(1)
    return cnt, sm


@njit(cache=True)
def knn_from_levels(cnt, sm, k):
    """k-NN vote from :func:`hamming_levels` (computed with kmax >= k): all points within the
    k-th smallest distance vote; sign of the label sum, tie -> +1."""
    m = cnt.shape[0]
    out = np.empty(m, dtype=np.int8)
    for i in range(m):
        covered = 0
        vote = 0
        for r in range(65):
            covered += cnt[i, r]
            vote += sm[i, r]
            if covered >= k:
                break
        out[i] = np.int8(1) if vote >= 0 else np.int8(-1)
    return out


def knn_hamming_predict(queries, refs, counts, sums, k):
    """k-NN in Hamming distance (ties at the k-th distance included; vote tie -> +1)."""
    cnt, sm = hamming_levels(queries, refs, counts, sums, k)
    return knn_from_levels(cnt, sm, k)


@njit(cache=True)
def unique_table(patterns, labels):
    """Sorted unique patterns with their multiplicity and label sum (int32), in one sort."""
    n = patterns.shape[0]
    order = np.argsort(patterns, kind="mergesort")
    uniq = np.empty(n, dtype=np.uint64)
    counts = np.zeros(n, dtype=np.int32)
    sums = np.zeros(n, dtype=np.int32)
    u = -1
    for t in range(n):
        i = order[t]
        if u < 0 or patterns[i] != uniq[u]:
            u += 1
            uniq[u] = patterns[i]
        counts[u] += 1
        sums[u] += labels[i]
    return uniq[: u + 1].copy(), counts[: u + 1].copy(), sums[: u + 1].copy()


@njit(cache=True)
def _lookup(sorted_patterns, labels, queries):
    """(seen, stored label) for each query by binary search in the sorted unique patterns."""
    m = queries.shape[0]
    seen = np.zeros(m, dtype=np.bool_)
    lab = np.zeros(m, dtype=np.int8)
    u = sorted_patterns.shape[0]
    if u == 0:
        return seen, lab
    pos = np.searchsorted(sorted_patterns, queries)
    for i in range(m):
        p = pos[i]
        if p < u and sorted_patterns[p] == queries[i]:
            seen[i] = True
            lab[i] = labels[p]
    return seen, lab


def train_table(train: HypercubeSample):
    """Sorted unique patterns with multiplicity and label sum (int32) of a training sample,
    computed once per sample and shared by every learner fitted on it.  Labels of one pattern
    agree under D_phi; for foreign data a memoriser stores the sign of the sum (ties -> +1).
    The table is cached on the sample: treat a sample's arrays as read-only after fitting."""
    cached = getattr(train, "_table", None)
    if cached is None:
        p = np.ascontiguousarray(np.asarray(train.patterns, dtype=np.uint64))
        y = np.ascontiguousarray(np.asarray(train.y, dtype=np.int32))
        cached = unique_table(p, y)
        object.__setattr__(train, "_table", cached)
    return cached


def _as_query(patterns, xd):
    p = np.ascontiguousarray(np.asarray(patterns, dtype=np.uint64).reshape(-1))
    x = np.asarray(xd, dtype=np.float64).reshape(-1)
    if x.size == 1 and p.size != 1:
        x = np.full(p.size, float(x[0]))
    if x.size != p.size:
        raise ValueError(f"patterns and xd must have equal length, got {p.size} and {x.size}")
    return p, x


# ---- the protocol ---------------------------------------------------------------------------


class HypercubeLearner(ABC):
    """Base class of every learner on F (see module docstring for the contract)."""

    name: str = "learner"
    xd_breakpoints: tuple[float, ...] = ()

    @abstractmethod
    def fit(self, train: HypercubeSample) -> "HypercubeLearner":
        """Learn from a training sample; return self."""

    @abstractmethod
    def predict(self, patterns, xd) -> np.ndarray:
        """int8 predictions in {-1, 0, +1} (0 = no decision, scored as an error)."""

    def predict_features(self, X) -> np.ndarray:
        """Predictions for an (m, d) feature matrix (robust features enter only via their sign)."""
        X = np.asarray(X, dtype=np.float64)
        return self.predict(features_to_patterns(X), X[:, -1])

    def _check_fitted(self):
        if not getattr(self, "_fitted", False):
            raise RuntimeError(f"{self.name}: call fit() before predict()")


class Memoriser(HypercubeLearner):
    """Look up seen robust patterns; unseen patterns use the documented ``fallback``:
    "sign_xd" (default; sign of the non-robust feature, so clean accuracy is 1), "constant"
    (always ``constant``), or "coin" (fair coin per pattern from ``coin_key``)."""

    name = "memoriser"
    FALLBACKS = ("sign_xd", "constant", "coin")

    def __init__(self, fallback: str = "sign_xd", constant: int = 1, coin_key: int = 0):
        self.fallback = check_choice("fallback", fallback, self.FALLBACKS)
        if constant not in (-1, 1):
            raise ValueError(f"constant must be -1 or +1, got {constant!r}")
        self.constant = int(constant)
        self.coin_key = check_int("coin_key", coin_key, min_value=0, max_value=(1 << 64) - 1)
        self.xd_breakpoints = (0.0,) if self.fallback == "sign_xd" else ()
        self._fitted = False

    def fit(self, train: HypercubeSample) -> "Memoriser":
        uniq, _, sums = train_table(train)
        self._patterns = uniq
        self._labels = np.where(sums >= 0, 1, -1).astype(np.int8)
        self._fitted = True
        return self

    def seen(self, patterns) -> np.ndarray:
        """Boolean mask: was each pattern in the training set?"""
        self._check_fitted()
        p, _ = _as_query(patterns, np.zeros(np.size(patterns)))
        return _lookup(self._patterns, self._labels, p)[0]

    def _unseen_prediction(self, p, x):
        if self.fallback == "sign_xd":
            return np.sign(x).astype(np.int8)
        if self.fallback == "constant":
            return np.full(p.size, self.constant, dtype=np.int8)
        return phi_of(_u64(self.coin_key), p)

    def predict(self, patterns, xd) -> np.ndarray:
        self._check_fitted()
        p, x = _as_query(patterns, xd)
        seen, lab = _lookup(self._patterns, self._labels, p)
        return np.where(seen, lab, self._unseen_prediction(p, x)).astype(np.int8)


class BayesRobust(Memoriser):
    """Seen -> stored label, unseen -> fair coin: the Bayes-optimal robust learner on F (its
    expected robust accuracy at eps >= delta is exactly 1/2 + 1/2 P(seen))."""

    name = "bayes"

    def __init__(self, coin_key: int = 0):
        super().__init__(fallback="coin", coin_key=coin_key)


class HammingIndex:
    """Packed training patterns for Hamming k-NN, shareable between k-NN learners of one training
    sample: the per-query distance levels of the last query array are kept (up to ``kmax``), so
    1-NN and k-NN on the same test set pay for one distance pass."""

    def __init__(self, train: HypercubeSample, kmax: int = 1):
        if len(train) == 0:
            raise ValueError("train must hold at least 1 point for k-NN")
        self.train = train
        self.kmax = check_int("kmax", kmax, min_value=1)
        self.refs, self.counts, self.sums = train_table(train)
        self._last = None   # (queries array, kmax used, cnt, sm)

    def predict(self, patterns, k: int) -> np.ndarray:
        k = check_int("k", k, min_value=1)
        p = np.ascontiguousarray(np.asarray(patterns, dtype=np.uint64).reshape(-1))
        last = self._last
        if last is None or last[1] < k or not (last[0] is p or (last[0].shape == p.shape
                                                                and np.array_equal(last[0], p))):
            kmax = max(k, self.kmax)
            cnt, sm = hamming_levels(p, self.refs, self.counts, self.sums, kmax)
            self._last = last = (p, kmax, cnt, sm)
        return knn_from_levels(last[2], last[3], k)


class KNearestHamming(HypercubeLearner):
    """k-NN (k = 1: 1-NN) in Hamming distance on the packed robust patterns; ignores x_d.

    ``index``: an optional shared :class:`HammingIndex` of the same training sample (used when
    ``fit`` receives that sample; otherwise a private index is built)."""

    def __init__(self, k: int = 1, index: "HammingIndex | None" = None):
        self.k = check_int("k", k, min_value=1)
        self.name = "1nn" if self.k == 1 else "knn"
        if index is not None and not isinstance(index, HammingIndex):
            raise TypeError("index must be a HammingIndex")
        self._shared = index
        self._fitted = False

    def fit(self, train: HypercubeSample) -> "KNearestHamming":
        if self._shared is not None and self._shared.train is train:
            self._index = self._shared
        else:
            self._index = HammingIndex(train, self.k)
        self._fitted = True
        return self

    def predict(self, patterns, xd) -> np.ndarray:
        self._check_fitted()
        p, _ = _as_query(patterns, xd)
        return self._index.predict(p, self.k)


class LinearSignXd(HypercubeLearner):
    """The linear classifier sign(x_d) of Theorem 1, bullet 2 (fit ignores the data)."""

    name = "linear"
    xd_breakpoints = (0.0,)

    def fit(self, train: HypercubeSample) -> "LinearSignXd":
        self._fitted = True
        return self

    def predict(self, patterns, xd) -> np.ndarray:
        _, x = _as_query(patterns, xd)
        return np.sign(x).astype(np.int8)


class PhiOracle(HypercubeLearner):
    """The robust classifier phi(sign(x_1..x_{d-1})) of Theorem 1, bullet 1 (knows phi)."""

    name = "oracle"

    def __init__(self, family: HypercubeFamily):
        if not isinstance(family, HypercubeFamily):
            raise TypeError(f"family must be a HypercubeFamily, got {type(family).__name__}")
        self.family = family

    def fit(self, train: HypercubeSample) -> "PhiOracle":
        return self

    def predict(self, patterns, xd) -> np.ndarray:
        p, _ = _as_query(patterns, xd)
        return self.family.phi(p)


# ---- registry used by the simulation and the command line ------------------------------------


@dataclass(frozen=True)
class LearnerContext:
    """What a learner factory may use: the trial's family member and coin key, and options."""
    family: HypercubeFamily
    coin_key: int
    k: int = 5
    fallback: str = "sign_xd"
    hamming: "HammingIndex | None" = None   # shared k-NN index of the trial's training sample


LearnerFactory = Callable[[LearnerContext], HypercubeLearner]
_LEARNERS: dict[str, tuple[LearnerFactory, str]] = {}


def register_learner(name: str, factory: LearnerFactory, role: str = "learner") -> None:
    """Register ``factory(ctx) -> HypercubeLearner`` under ``name``.

    role: "learner" (trained on S; the bound of bullet 3 applies), "bullet1" (the robust
    classifier, knows phi) or "bullet2" (the linear classifier).
    """
    check_choice("role", role, ("learner", "bullet1", "bullet2"))
    if not callable(factory):
        raise TypeError("factory must be callable")
    _LEARNERS[name] = (factory, role)


def learner_names() -> list[str]:
    return list(_LEARNERS)


def learner_role(name: str) -> str:
    check_choice("learner", name, learner_names())
    return _LEARNERS[name][1]


def make_learner(name: str, ctx: LearnerContext) -> HypercubeLearner:
    """Instantiate the registered learner ``name`` for one trial."""
    check_choice("learner", name, learner_names())
    learner = _LEARNERS[name][0](ctx)
    if not isinstance(learner, HypercubeLearner):
        raise TypeError(f"factory for {name!r} must return a HypercubeLearner")
    return learner


register_learner("oracle", lambda c: PhiOracle(c.family), role="bullet1")
register_learner("linear", lambda c: LinearSignXd(), role="bullet2")
register_learner("memoriser", lambda c: Memoriser(fallback=c.fallback, coin_key=c.coin_key))
register_learner("1nn", lambda c: KNearestHamming(k=1, index=c.hamming))
register_learner("knn", lambda c: KNearestHamming(k=c.k, index=c.hamming))
register_learner("bayes", lambda c: BayesRobust(coin_key=c.coin_key))
