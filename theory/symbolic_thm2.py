"""Symbolic (sympy) verification of the inequalities in the proof of P&L Theorem 2
(supplementary Section 8, Eqs. 12-20) and of the Eq. (26) argument of Section 12.

Each check returns a :class:`Check` (name, holds, how). They are proofs by calculus carried out by
sympy (derivatives, critical points, second-derivative signs, limits, exact simplification),
not numerical sampling; a check that sympy cannot decide reports ``holds=False``.

* ``exp_ge_one_plus_x``: e^x ≥ 1 + x for all real x (the fact quoted before Eq. 13).
* ``one_minus_p_pow_n``: (1 − p)^n ≤ e^{−np} for p ∈ [0, 1], n ≥ 0 (Eq. 12): from 1 − p ≤ e^{−p}
  (the previous check at x = −p) and monotonicity of t ↦ t^n on t ≥ 0.
* ``x_exp_minus_x``: x e^{−x} ≤ 1/e for x ≥ 0 (Eq. 13), with equality at x = 1.
* ``chain_15_16``: P(∃i: X_i ∈ B) = 1 − (1 − p_B)^n ≥ 1 − e^{−n p_B} termwise (Eqs. 9-12, 16).
* ``chain_16_17_18``: Σ p_B (1 − e^{−n p_B}) = 1 − Σ p_B e^{−n p_B} = 1 − (1/n) Σ n p_B e^{−n p_B}
  exactly, for symbolic masses that sum to 1 (checked for m = 1..4 boxes).
* ``chain_18_19_20``: 1 − (1/n) Σ n p_B e^{−n p_B} ≥ 1 − |B|/(n e) termwise by Eq. (13).
* ``sample_size_37``: n ≥ 37 |B| implies 1 − |B|/(n e) ≥ 0.99 (37 e > 100), and 36 would not
  suffice (36 e < 100).
* ``box_diameter``: two points of one box of side δ are within ℓ∞ distance δ (Eq. 14 ≥ 15).
* ``eq26_lower`` / ``eq26_upper``: at r_l = (2cn)^{−1/d*}: np = 1/2 so p_n ≤ 1/2; at
  r_u = (cn)^{−1/d*}: 1 − e^{−np} = 1 − 1/e > 1/2 (Eqs. 24-26).
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp


@dataclass(frozen=True)
class Check:
    name: str
    holds: bool
    how: str


def _is_true(expr) -> bool:
    return bool(expr == sp.true or expr is True)


def check_exp_ge_one_plus_x() -> Check:
    x = sp.symbols("x", real=True)
    g = sp.exp(x) - 1 - x
    crit = sp.solve(sp.diff(g, x), x)
    convex = _is_true(sp.simplify(sp.diff(g, x, 2) > 0)) or sp.diff(g, x, 2) == sp.exp(x)
    ok = (crit == [0] and sp.simplify(g.subs(x, 0)) == 0 and convex
          and sp.limit(g, x, sp.oo) == sp.oo and sp.limit(g, x, -sp.oo) == sp.oo)
    return Check("exp_ge_one_plus_x", bool(ok),
                 "g = e^x - 1 - x: g' = 0 only at x = 0, g'' = e^x > 0, g(0) = 0, g -> oo at +-oo")


def check_one_minus_p_pow_n() -> Check:
    p, n = sp.symbols("p n", nonnegative=True)
    # 1 - p <= e^{-p} is the previous inequality at x = -p; both sides are >= 0 on [0, 1]
    base = check_exp_ge_one_plus_x().holds
    x = sp.symbols("x", real=True)
    same = sp.simplify((sp.exp(x) - 1 - x).subs(x, -p) - (sp.exp(-p) - (1 - p))) == 0
    # t -> t^n is non-decreasing on t >= 0 for n >= 0: derivative n t^(n-1) >= 0
    t = sp.symbols("t", positive=True)
    mono = sp.simplify(sp.diff(t ** n, t) - n * t ** (n - 1)) == 0
    # and (e^{-p})^n = e^{-np}
    power = sp.simplify(sp.exp(-p) ** n - sp.exp(-n * p)) == 0
    # spot-check the resulting inequality exactly at rational points
    spots = all(bool(((1 - pv) ** nv <= sp.exp(-nv * pv))) for pv in (sp.Rational(1, 10), sp.Rational(1, 2), 1)
                for nv in (0, 1, 7, 50))
    return Check("one_minus_p_pow_n", bool(base and same and mono and power and spots),
                 "1-p <= e^{-p} (e^x >= 1+x at x=-p), t^n non-decreasing for n >= 0, (e^{-p})^n = e^{-np}")


def check_x_exp_minus_x(bound=None) -> Check:
    """x e^{-x} <= bound on [0, oo) (bound = 1/e by default, Eq. 13)."""
    bound = sp.exp(-1) if bound is None else sp.sympify(bound)
    x = sp.symbols("x", nonnegative=True)
    h = x * sp.exp(-x)
    crit = sp.solve(sp.diff(h, x), x)
    second = sp.diff(h, x, 2).subs(x, 1)
    maxi = sp.calculus.util.maximum(h, x, sp.Interval(0, sp.oo))
    ok = crit == [1] and bool(second < 0) and sp.simplify(h.subs(x, 1) - maxi) == 0 \
        and bool(sp.simplify(bound - maxi) >= 0)
    return Check("x_exp_minus_x", bool(ok),
                 "h = x e^{-x}: h' = (1-x)e^{-x} = 0 only at 1, h''(1) = -1/e < 0, max on [0,oo) = 1/e")


def check_chain_15_16() -> Check:
    pB, n = sp.symbols("p_B n", nonnegative=True)
    lhs = 1 - (1 - pB) ** n
    rhs = 1 - sp.exp(-n * pB)
    # lhs - rhs = e^{-n p} - (1-p)^n >= 0 by one_minus_p_pow_n
    diff_ok = sp.simplify((lhs - rhs) - (sp.exp(-n * pB) - (1 - pB) ** n)) == 0
    return Check("chain_15_16", bool(diff_ok and check_one_minus_p_pow_n().holds),
                 "1-(1-p_B)^n - (1-e^{-np_B}) = e^{-np_B} - (1-p_B)^n >= 0")


def check_chain_16_17_18(max_boxes: int = 4) -> Check:
    n = sp.symbols("n", positive=True)
    ok = True
    for m in range(1, max_boxes + 1):
        ps = list(sp.symbols(f"p1:{m + 1}", nonnegative=True))
        ps[-1] = 1 - sum(ps[:-1])   # masses sum to 1
        e16 = sum(p * (1 - sp.exp(-n * p)) for p in ps)
        e17 = 1 - sum(p * sp.exp(-n * p) for p in ps)
        e18 = 1 - sum(n * p * sp.exp(-n * p) for p in ps) / n
        ok &= sp.simplify(sp.expand(e16 - e17)) == 0 and sp.simplify(sp.expand(e17 - e18)) == 0
    return Check("chain_16_17_18", bool(ok),
                 f"(16) = (17) = (18) exactly when the box masses sum to 1 (m = 1..{max_boxes} boxes)")


def check_chain_18_19_20() -> Check:
    n, B = sp.symbols("n B", positive=True)
    termwise = check_x_exp_minus_x().holds          # u e^{-u} <= 1/e with u = n p_B
    # 1 - (1/n) sum_B (1/e) = 1 - |B|/(n e)
    e19 = 1 - sp.Sum(sp.exp(-1), (sp.Symbol("b", integer=True), 1, B)).doit() / n
    equal = sp.simplify(e19 - (1 - B / (n * sp.E))) == 0
    # subtracting something smaller gives something larger: 1 - S/n >= 1 - T/n when S <= T
    S, T = sp.symbols("S T", real=True)
    monot = sp.simplify((1 - S / n) - (1 - T / n) - (T - S) / n) == 0
    return Check("chain_18_19_20", bool(termwise and equal and monot),
                 "n p_B e^{-n p_B} <= 1/e termwise, so (18) >= 1 - |B|/(n e) = (20)")


def check_sample_size_37(factor: int = 37, target=sp.Rational(99, 100)) -> Check:
    """n >= factor |B| gives 1 - |B|/(n e) >= target, and factor - 1 would not (minimality)."""
    target = sp.nsimplify(target)
    B = sp.symbols("B", positive=True)
    k = sp.symbols("k", positive=True)
    bound_at = 1 - B / (k * B * sp.E)       # n = k |B|
    ok37 = bool(sp.simplify(bound_at.subs(k, factor) - target) >= 0)
    ok36 = bool(sp.simplify(bound_at.subs(k, factor - 1) - target) < 0)
    # bound increases with n: d/dn (1 - B/(n e)) = B/(n^2 e) > 0
    n = sp.symbols("n", positive=True)
    inc = bool(sp.diff(1 - B / (n * sp.E), n) > 0)
    return Check("sample_size_37", ok37 and ok36 and inc,
                 f"1 - 1/({factor}e) >= {target} > 1 - 1/({factor - 1}e); the bound increases with n")


def check_box_diameter() -> Check:
    c, delta = sp.symbols("c delta", real=True)
    a, b = sp.symbols("a b", real=True)
    # in one coordinate both points lie in [c - delta/2, c + delta/2]; |x - y| is maximal at the
    # ends of the interval (convex in (x, y)), where it equals delta
    ends = [c - delta / 2, c + delta / 2]
    vals = {sp.simplify(sp.Abs(x - y).subs(delta, sp.Abs(delta))) for x in ends for y in ends}
    ok = vals <= {0, sp.Abs(delta)}
    return Check("box_diameter", bool(ok), "max |x_j - y_j| over one box side is attained at the ends: delta")


def check_eq26() -> list[Check]:
    c, n, d = sp.symbols("c n d_star", positive=True)
    r = sp.symbols("r", positive=True)
    p = c * r ** d
    rl = (1 / (2 * c * n)) ** (1 / d)
    ru = (1 / (c * n)) ** (1 / d)
    np_l = sp.simplify(sp.powsimp(n * p.subs(r, rl), force=True))
    np_u = sp.simplify(sp.powsimp(n * p.subs(r, ru), force=True))
    lower = np_l == sp.Rational(1, 2)
    upper = np_u == 1 and bool(1 - sp.exp(-1) > sp.Rational(1, 2))
    return [Check("eq26_lower", bool(lower), "n p(r_l) = 1/2, so p_n(r_l) <= n p = 1/2 and r* >= r_l"),
            Check("eq26_upper", bool(upper), "n p(r_u) = 1, so p_n(r_u) >= 1 - 1/e > 1/2 and r* <= r_u")]


def verify_all() -> list[Check]:
    """All checks, in proof order."""
    return [check_exp_ge_one_plus_x(), check_one_minus_p_pow_n(), check_x_exp_minus_x(),
            check_box_diameter(), check_chain_15_16(), check_chain_16_17_18(),
            check_chain_18_19_20(), check_sample_size_37(), *check_eq26()]


if __name__ == "__main__":  # pragma: no cover - convenience
    for ch in verify_all():
        print(f"{'OK ' if ch.holds else 'FAIL'} {ch.name}: {ch.how}")
