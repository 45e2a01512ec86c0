"""P&L Theorem 1: the inequality chain verified with sympy (theory.symbolic_thm1)."""
from __future__ import annotations

import sympy as sp

from theory.symbolic_thm1 import (check_bernoulli, check_dimension, check_final, check_halving,
                                  check_union_bound, verify_chain)


def test_chain_holds():
    res = verify_chain()
    assert res["holds"], res
    assert set(res["steps"]) == {"union_bound", "halving", "dimension", "final"}


def test_steps_individually():
    assert check_bernoulli()["step_gap"] == "n*q**2"
    assert check_halving()["difference"] == "0"
    assert check_final()["lhs"] == "65/128"
    assert check_union_bound(max_n=10)["holds"]
    assert check_dimension(max_n=64)["holds"]


def test_checks_can_fail():
    """The final step is a real comparison: it fails for a threshold below 1/2 + 1/128."""
    assert not check_final(sp.Rational(1, 2))["holds"]
    assert not check_final(sp.Rational(65, 128))["holds"]      # strict inequality
    assert check_final(sp.Rational(66, 128))["holds"]


def test_paper_claims_registered_and_chain_claim_passes():
    import paper_checks.claims_thm1  # noqa: F401  (registers; other topics' modules not needed)
    from paper_checks import registry
    from paper_checks.registry import run_claim

    by_id = dict(registry._REGISTRY)
    for cid in ("thm1.bullet1_robust_classifier", "thm1.bullet2_linear_accuracy",
                "thm1.bullet3_robust_below_51", "thm1.bound_chain_sympy"):
        assert cid in by_id and by_id[cid].cost == "fast"
    assert run_claim(by_id["thm1.bound_chain_sympy"])["verdict"] == "PASS"
