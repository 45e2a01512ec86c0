"""paper_checks: every claim has an explicit kind ("reproduction" or "identity"), identities never
count as reproductions, APPROX-* verdicts are counted apart, and the table/summary/JSON show it."""
from __future__ import annotations

import json
import re

import pytest

from paper_checks.registry import (KINDS, Claim, Measured, claims, run_claim, summarise,
                                   summary_line)


def _claim(cid, kind, value, approximate=False, **kw):
    return Claim(id=cid, paper="P&L", location="x", claim="c", claimed=1.0, compare="approx",
                 tolerance=0.01, measure=lambda: Measured(value, "", approximate=approximate),
                 kind=kind, **kw)


def test_a_claim_without_kind_is_rejected():
    with pytest.raises(TypeError, match="kind is required"):
        Claim(id="k", paper="P&L", location="x", claim="c", claimed=1.0, measure=lambda: 1.0)
    with pytest.raises(ValueError, match="kind must be one of"):
        _claim("k", "proof", 1.0)
    with pytest.raises(TypeError):   # keyword only: a positional 11th argument is not a kind
        Claim("k", "P&L", "x", "c", 1.0, lambda: 1.0, "approx", 0.0, "fast", "", "identity")


def test_every_registered_claim_is_classified():
    cs = claims()
    assert cs and all(c.kind in KINDS for c in cs)
    kinds = {c.id: c.kind for c in cs}
    for cid in ("thm1.bullet1_robust_classifier", "thm1.bullet2_linear_accuracy",
                "pl-thm2-eq20", "pl-eq21-harmonic", "yrzsc-thm42-spiral-astute",
                "thm1.bound_chain_sympy", "pl-thm2-proof-inequalities"):
        assert kinds[cid] == "identity", cid
    for cid in ("thm1.bullet3_robust_below_51", "pl-thm2-99", "pl-eq26", "pl-thm2-coverage"):
        assert kinds[cid] == "reproduction", cid


def test_identities_never_count_in_the_reproduction_headline():
    rows = [run_claim(_claim("r1", "reproduction", 1.0)),
            run_claim(_claim("r2", "reproduction", 2.0)),              # FAIL
            run_claim(_claim("r3", "reproduction", 1.0, approximate=True)),
            run_claim(_claim("r4", "reproduction", 3.0, approximate=True)),
            run_claim(_claim("i1", "identity", 1.0)),
            run_claim(_claim("i2", "identity", 1.0)),
            run_claim(_claim("i3", "identity", 1.0))]
    assert [r["kind"] for r in rows] == ["reproduction"] * 4 + ["identity"] * 3
    s = summarise(rows)
    assert s["reproductions"] == {"PASS": 1, "FAIL": 1, "APPROX-AGREES": 1, "APPROX-DIFFERS": 1}
    assert s["identities"] == {"PASS": 3}
    line = summary_line(rows)
    assert line == ("reproductions: 1 PASS, 1 FAIL, 1 APPROX-AGREES, 1 APPROX-DIFFERS "
                    "| identities: 3 hold, 0 fail")
    only_ids = summary_line(rows[4:])
    assert only_ids.startswith("reproductions: 0 PASS, 0 FAIL |")


def test_output_format_and_json(tmp_path, capsys):
    """Two sections (reproductions first), a kind column, the summary line last; JSON rows carry
    kind and the summary."""
    from paper_checks.__main__ import main

    out_json = tmp_path / "pc.json"
    ids = "pl-thm2-eq20,pl-eq21-harmonic,thm1.bound_chain_sympy,pl-eq26"
    rc = main(["--only", ids, "--json", str(out_json)])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 0
    i_rep = out.index("Reproductions (measured; could disagree with the paper)")
    i_id = out.index("Identities (checks of our own algebra; not reproductions)")
    assert i_rep < i_id
    assert re.match(r"claim\s+\| kind\s+\| where", out[i_rep + 1])
    rep_rows = [ln for ln in out[i_rep:i_id] if "| reproduction |" in ln.replace("  ", " ")
                or re.search(r"\|\s*reproduction\s*\|", ln)]
    id_rows = [ln for ln in out[i_id:] if re.search(r"\|\s*identity\s*\|", ln)]
    assert len(rep_rows) == 1 and rep_rows[0].startswith("pl-eq26")
    assert len(id_rows) == 3
    assert out[-1] == "reproductions: 1 PASS, 0 FAIL | identities: 3 hold, 0 fail"
    data = json.loads(out_json.read_text())
    assert {r["id"]: r["kind"] for r in data["rows"]}["pl-eq26"] == "reproduction"
    assert data["summary"] == {"reproductions": {"PASS": 1}, "identities": {"PASS": 3}}
    assert data["summary_line"] == out[-1]


def test_bullet1_attack_can_find_adversarial_points():
    """The feature-space attack measuring the Theorem 1 bullet 1 identity is a real attack: it
    breaks sign(x_d) at eps = delta (its exact robust accuracy there is 0) and keeps the oracle."""
    import numpy as np

    from paper_checks.claims_thm1 import _attack_accuracy
    from theory.hypercube import HypercubeFamily, derive_key
    from theory.hypercube_learners import LinearSignXd, PhiOracle

    fam = HypercubeFamily(d=8, delta=0.1, phi_key=derive_key(0, 1, 0))
    t = fam.sample(500, derive_key(0, 3, 0))
    rng = np.random.default_rng(0)
    assert _attack_accuracy(LinearSignXd().fit(t), t.features(), t.y, 0.1, rng) == 0.0
    assert _attack_accuracy(PhiOracle(fam), t.features(), t.y, 0.999, rng) == 1.0


def test_bad_json_path_exits_2_before_computing(tmp_path):
    """--json naming a folder or a path under a file: one line, exit 2, no claim run (a missing
    parent folder is created, as in every command; see plumbing.io.check_output_file)."""
    import os
    import subprocess
    import sys

    (tmp_path / "f").write_text("x")
    for bad in (str(tmp_path), str(tmp_path / "f" / "out.json")):
        p = subprocess.run([sys.executable, "-m", "paper_checks", "--only", "pl-eq26", "--json", bad],
                           capture_output=True, text=True, env=os.environ.copy(), timeout=120)
        assert p.returncode == 2, p.stderr
        lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and "--json" in lines[0], p.stderr
        assert "pl-eq26" not in p.stdout
