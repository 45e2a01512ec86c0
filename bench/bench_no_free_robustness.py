"""Benchmark of the P&L Theorem 1 Monte Carlo: our numba implementation
(theory.hypercube_simulation) against an independent plain-NumPy implementation of the same
simulation (same counter-based random streams, same learners, same exact robust evaluation).

    python -m bench.bench_no_free_robustness [--n 1e4] [--trials 20] [--test-size 2000] [--seed 0]

Prints wall and CPU times of both sides measured in this run, the speed ratios, and whether every
per-trial integer count (clean / robust / x_d:=0 correct, per learner, and the number of seen test
patterns) is identical.  Our side is timed after one warm-up trial (numba's cache loaded); the
NumPy side uses blocked vectorised XOR + np.bitwise_count + per-row histograms for k-NN.
"""
from __future__ import annotations

import sys
import time

import numpy as np

from plumbing.cli import OneLineArgumentParser, int_sci, run_main

PROG = "python -m bench.bench_no_free_robustness"
_C1, _C2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_G = np.uint64(0x9E3779B97F4A7C15)


def _mix64(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> np.uint64(30))) * _C1
    z = (z ^ (z >> np.uint64(27))) * _C2
    return z ^ (z >> np.uint64(31))


def _stream(key: int, idx: np.ndarray) -> np.ndarray:
    return _mix64(np.uint64(key) + (idx + np.uint64(1)) * _G)


def _phi(key: int, p: np.ndarray) -> np.ndarray:
    return np.where(_stream(key, p) >> np.uint64(63), 1, -1).astype(np.int8)


def _knn_votes(queries, refs, counts, sums, ks, block=256):
    """Plain NumPy k-NN in Hamming distance: full distance histogram per query."""
    m = queries.size
    out = {k: np.empty(m, dtype=np.int8) for k in ks}
    for s in range(0, m, block):
        q = queries[s:s + block]
        dist = np.bitwise_count(q[:, None] ^ refs[None, :]).astype(np.int64)     # (B, u)
        rows = np.arange(q.size)[:, None] * 65 + dist
        cnt = np.bincount(rows.ravel(), weights=np.broadcast_to(counts, dist.shape).ravel(),
                          minlength=q.size * 65).reshape(q.size, 65)
        sm = np.bincount(rows.ravel(), weights=np.broadcast_to(sums, dist.shape).ravel(),
                         minlength=q.size * 65).reshape(q.size, 65)
        ccum, scum = np.cumsum(cnt, axis=1), np.cumsum(sm, axis=1)
        for k in ks:
            level = np.argmax(ccum >= k, axis=1)
            vote = scum[np.arange(q.size), level]
            out[k][s:s + block] = np.where(vote >= 0, 1, -1)
    return out


def _robust_correct(pred_fn, y, xd, eps, breakpoints):
    """Exact worst case for a prediction constant between breakpoints (the same rule as
    theory.hypercube_robustness, written independently)."""
    clean = pred_fn(xd) == y
    if not breakpoints:
        return clean, clean.copy(), clean.copy()
    robust = clean.copy()
    for v in np.unique(xd):
        i = xd == v
        lo, hi = max(v - eps, -1.0), min(v + eps, 1.0)
        pts = sorted({lo, hi, *[b for b in breakpoints if lo < b < hi]})
        cands = pts + [(a + b) / 2 for a, b in zip(pts[:-1], pts[1:])]
        for c in cands:
            robust[i] &= pred_fn(np.full(xd.shape, c))[i] == y[i]
    zero = clean.copy()
    allowed = np.abs(xd) <= eps
    zero[allowed] = (pred_fn(np.zeros(xd.shape)) == y)[allowed]
    return clean, robust, zero


def numpy_trial(cfg, t: int) -> dict:
    """One trial of the simulation in plain NumPy; returns the same counts as ours."""
    from theory.hypercube import TAG_COIN, TAG_PHI, TAG_TEST, TAG_TRAIN, derive_key

    mask = np.uint64((1 << (cfg.d - 1)) - 1)
    kphi = derive_key(cfg.seed, TAG_PHI, t)
    ptr = _stream(derive_key(cfg.seed, TAG_TRAIN, t), np.arange(cfg.n, dtype=np.uint64)) & mask
    pte = _stream(derive_key(cfg.seed, TAG_TEST, t),
                  np.arange(cfg.test_size, dtype=np.uint64)) & mask
    ytr, yte = _phi(kphi, ptr), _phi(kphi, pte)
    xd = cfg.delta * yte.astype(np.float64)
    uniq, inv, counts = np.unique(ptr, return_inverse=True, return_counts=True)
    sums = np.bincount(inv, weights=ytr, minlength=uniq.size)
    pos = np.minimum(np.searchsorted(uniq, pte), uniq.size - 1)
    seen = uniq[pos] == pte
    stored = np.where(sums[pos] >= 0, 1, -1).astype(np.int8)
    coin = _phi(derive_key(cfg.seed, TAG_COIN, t), pte)
    fb = cfg.fallback
    ks = sorted({1, cfg.k})
    votes = _knn_votes(pte, uniq, counts.astype(np.float64), sums, ks) \
        if {"1nn", "knn"} & set(cfg.learners) else {}
    preds = {
        "oracle": (lambda x: yte, ()),
        "linear": (lambda x: np.sign(x).astype(np.int8), (0.0,)),
        "memoriser": ((lambda x: np.where(seen, stored, np.sign(x).astype(np.int8)), (0.0,))
                      if fb == "sign_xd" else
                      (lambda x: np.where(seen, stored, 1 if fb == "constant" else coin), ())),
        "1nn": (lambda x: votes[1], ()),
        "knn": (lambda x: votes[cfg.k], ()),
        "bayes": (lambda x: np.where(seen, stored, coin), ()),
    }
    out = {}
    for name in cfg.learners:
        fn, bps = preds[name]
        c, r, z = _robust_correct(fn, yte, xd, cfg.eps, bps)
        out[name] = (int(c.sum()), int(r.sum()), int(z.sum()))
    out["_seen"] = int(seen.sum())
    return out


def main(argv=None) -> int:
    ap = OneLineArgumentParser(prog=PROG, description=__doc__)
    ap.add_argument("--n", type=int_sci(1, "--n"), default=10_000, help="training-set size")
    ap.add_argument("--trials", type=int_sci(1, "--trials"), default=20, help="trials per repetition")
    ap.add_argument("--test-size", type=int_sci(1, "--test-size"), default=2000, help="test points per trial")
    ap.add_argument("--seed", type=int_sci(0, "--seed"), default=0, help="seed, >= 0")
    ap.add_argument("--repeat", type=int_sci(1, "--repeat"), default=3,
                    help="timed repetitions of our side (best is reported)")
    args = ap.parse_args(argv)
    from plumbing.memory import check_fits, no_free_robustness_bytes

    check_fits(2 * no_free_robustness_bytes(args.n, args.test_size),   # ours and the NumPy reference
               f"--n {args.n} with --test-size {args.test_size}", "lower --n or --test-size")
    from theory.hypercube_simulation import Thm1Config, _trial_counts

    cfg = Thm1Config(n=args.n, trials=args.trials, test_size=args.test_size, seed=args.seed)
    _trial_counts(cfg, 0)                          # warm-up: load numba's cache
    wall, cpu = [], []
    for _ in range(args.repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        ours = [_trial_counts(cfg, t) for t in range(cfg.trials)]
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    t0, c0 = time.perf_counter(), time.process_time()
    ref = [numpy_trial(cfg, t) for t in range(cfg.trials)]
    np_wall, np_cpu = time.perf_counter() - t0, time.process_time() - c0
    equal = ours == ref
    print(f"P&L Thm 1 Monte Carlo, n = {cfg.n}, d = {cfg.d}, {cfg.trials} trials x "
          f"{cfg.test_size} test points, learners {','.join(cfg.learners)}")
    print(f"{'':17s} {'wall s':>8s} {'CPU s':>8s}")
    print(f"ours (numba)      {min(wall):8.3f} {min(cpu):8.3f}   (best of {args.repeat})")
    print(f"plain NumPy       {np_wall:8.3f} {np_cpu:8.3f}")
    print(f"speed ratio       {np_wall / min(wall):7.1f}x {np_cpu / min(cpu):7.1f}x  (goal >= 10x; "
          "CPU time is the fairer figure on a shared machine: both sides are single-threaded)")
    print(f"identical results: {equal}  (every per-trial count of every learner)")
    return 0 if equal else 1


if __name__ == "__main__":
    sys.exit(run_main(main, prog=PROG))
