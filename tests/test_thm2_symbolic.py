"""sympy verification of the inequalities in the proof of P&L Theorem 2 (theory.symbolic_thm2),
and that the checks can fail (a false bound or a too-small sample factor is rejected)."""
from __future__ import annotations

import sympy as sp

from theory.symbolic_thm2 import check_sample_size_37, check_x_exp_minus_x, verify_all


def test_all_proof_steps_verified():
    checks = verify_all()
    names = [c.name for c in checks]
    for required in ("exp_ge_one_plus_x", "one_minus_p_pow_n", "x_exp_minus_x", "chain_15_16",
                     "chain_16_17_18", "chain_18_19_20", "sample_size_37", "eq26_lower", "eq26_upper"):
        assert required in names
    failed = [c.name for c in checks if not c.holds]
    assert not failed, failed


def test_checks_can_fail():
    assert not check_x_exp_minus_x(sp.exp(-1) * sp.Rational(99, 100)).holds   # bound too small
    assert check_x_exp_minus_x(sp.Rational(1, 2)).holds                        # 1/2 > 1/e: true
    assert not check_sample_size_37(36).holds      # 36 |B| does not give 99%
    assert not check_sample_size_37(38).holds      # 37 would already do: 38 is not minimal
    assert check_sample_size_37(19, sp.Rational(98, 100)).holds   # 1 - 1/(19e) >= 0.98 > 1 - 1/(18e)
