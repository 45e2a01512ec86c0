"""Symbolic (sympy) verification of the inequality chain behind P&L Theorem 1, bullet 3
(supplementary Section 7, Eqs. (7)-(8) and the last paragraph of the proof):

    P(seen) = 1 - (1 - 2^-(d-1))^n  <=  n / 2^(d-1)                       (union bound)
    E[robust acc] <= 1/2 + 1/2 P(seen) <= 1/2 + n / 2^d                    (Eq. (8))
    with d = ceil(log2 n) + 7:  n / 2^d <= 1/128,  so  1/2 + n/2^d <= 1/2 + 1/128 < 51/100.

Each step is proved by sympy, not sampled:
* union bound: with q = 2^-(d-1) in (0, 1], it is Bernoulli's inequality
  (1 - q)^n >= 1 - n q, proved by induction: the base case and the step
  (1 - q)^(n+1) >= (1 - n q)(1 - q) = 1 - (n+1) q + n q^2 >= 1 - (n+1) q are checked by sympy.
* halving: 1/2 + 1/2 * n/2^(d-1) simplifies to 1/2 + n/2^d (sympy ``simplify`` of the difference).
* dimension: with d = ceil(log2 n) + 7 we have 2^(d-7) >= n, hence n/2^d <= 1/128; sympy checks
  n / 2^(ceil(log2 n) + 7) <= 1/128 symbolically via ceil(log2 n) >= log2 n and for a
  range of concrete n exactly in rationals.
* final: 1/2 + 1/128 < 51/100 in exact rationals.
"""
from __future__ import annotations

import sympy as sp

from theory.constants import THM1_EXTRA_DIMS, THM1_ROBUST_ACC_BOUND


def check_bernoulli() -> dict:
    """(1 - q)^n >= 1 - n q for integers n >= 0 and 0 <= q <= 1, by induction (sympy)."""
    n, q = sp.symbols("n q", nonnegative=True)
    base = sp.simplify((1 - q) ** 0 - (1 - 0 * q))          # = 0, so >= holds at n = 0
    # step: assume A >= 1 - n q with A >= 0 and (1 - q) >= 0; then A (1 - q) >= (1 - n q)(1 - q)
    step_gap = sp.expand((1 - n * q) * (1 - q) - (1 - (n + 1) * q))   # = n q^2 >= 0
    ok = base == 0 and sp.simplify(step_gap - n * q ** 2) == 0
    return {"base_gap": str(base), "step_gap": str(step_gap), "holds": bool(ok)}


def check_union_bound(max_n: int = 64, ds=(2, 3, 7, 12, 21)) -> dict:
    """P(seen) = 1 - (1 - 2^-(d-1))^n <= n / 2^(d-1): Bernoulli symbolically, plus exact rational
    comparisons for n = 0..max_n and the given d."""
    bern = check_bernoulli()
    worst = None
    for d in ds:
        q = sp.Rational(1, 2 ** (d - 1))
        for n in range(0, max_n + 1):
            gap = n * q - (1 - (1 - q) ** n)     # exact rational, must be >= 0
            if gap < 0:
                return {"holds": False, "counterexample": (n, d), "bernoulli": bern}
            worst = gap if worst is None else min(worst, gap)
    return {"holds": bern["holds"], "min_gap": str(worst), "bernoulli": bern}


def check_halving() -> dict:
    """1/2 + 1/2 * n/2^(d-1) == 1/2 + n/2^d identically."""
    n, d = sp.symbols("n d", positive=True, integer=True)
    diff = sp.simplify(sp.Rational(1, 2) + sp.Rational(1, 2) * n / 2 ** (d - 1)
                       - (sp.Rational(1, 2) + n / 2 ** d))
    return {"difference": str(diff), "holds": diff == 0}


def check_dimension(max_n: int = 4096) -> dict:
    """n / 2^(ceil(log2 n) + 7) <= 1/128 for n >= 1.

    Symbolic part: sympy proves ceiling(log2 n) >= log2 n for n > 0, so
    2^ceil(log2 n) >= 2^log2 n = n (2^x is increasing), i.e. n / 2^(ceil(log2 n)) <= 1.
    Exact part: for n = 1..max_n, ceil(log2 n) is computed with integers ((n-1).bit_length(),
    cross-checked against sympy for powers of two and their neighbours) and the rational
    inequality is checked exactly.
    """
    n = sp.symbols("n", positive=True)
    x = sp.log(n, 2)
    rel = sp.ceiling(x) >= x
    sym_ok = rel == sp.true
    for k in (1, 2, 3, 4, 5, 7, 8, 9, 1023, 1024, 1025):
        if int(sp.ceiling(sp.log(k, 2))) != (k - 1).bit_length():
            return {"holds": False, "counterexample": k, "reason": "ceil(log2 n) mismatch"}
    for k in range(1, max_n + 1):
        d = (k - 1).bit_length() + THM1_EXTRA_DIMS
        if sp.Rational(k, 2 ** d) > sp.Rational(1, 2 ** THM1_EXTRA_DIMS):
            return {"holds": False, "counterexample": k}
    return {"holds": bool(sym_ok), "symbolic": str(rel), "checked_exactly_up_to": max_n,
            "factor": f"1/2^{THM1_EXTRA_DIMS} = 1/{2 ** THM1_EXTRA_DIMS}"}


def check_final(threshold=None) -> dict:
    """1/2 + 1/2^7 < 51/100 exactly (threshold: the theorem's 51%, from theory.constants)."""
    if threshold is None:
        threshold = sp.Rational(str(THM1_ROBUST_ACC_BOUND))
    lhs = sp.Rational(1, 2) + sp.Rational(1, 2 ** THM1_EXTRA_DIMS)
    return {"lhs": str(lhs), "threshold": str(threshold), "holds": bool(lhs < threshold)}


def verify_chain() -> dict:
    """All steps; ``holds`` is True iff each step holds."""
    steps = {
        "union_bound": check_union_bound(),
        "halving": check_halving(),
        "dimension": check_dimension(),
        "final": check_final(),
    }
    return {"steps": steps, "holds": all(s["holds"] for s in steps.values())}
