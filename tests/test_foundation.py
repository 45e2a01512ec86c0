"""Foundation: validation, CLI plumbing, atomic I/O, provenance, registries, brute-force kNN."""
from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

from paper_checks.registry import Claim, Measured, NeedsData, run_claim, verdict
from plumbing import cli, io, validation
from theory import knn


# ---- validation ----------------------------------------------------------------------------

def test_check_int_names_parameter():
    assert validation.check_int("n", 5, min_value=1) == 5
    assert validation.check_int("n", 4.0) == 4
    with pytest.raises(ValueError, match="n must be >= 1"):
        validation.check_int("n", 0, min_value=1)
    with pytest.raises(TypeError, match="n must be an integer"):
        validation.check_int("n", "3")
    with pytest.raises(TypeError):
        validation.check_int("n", True)


def test_check_float_intervals():
    assert validation.check_float("delta", 0.5, low=0, high=1, low_open=True, high_open=True) == 0.5
    for bad in (0.0, 1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"delta must be .*\(0"):
            validation.check_float("delta", bad, low=0, high=1, low_open=True, high_open=True)


def test_check_array_rejects_nan_and_wrong_ndim():
    with pytest.raises(ValueError, match="x contains NaN"):
        validation.check_array("x", np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="x must have 2 dimensions"):
        validation.check_array("x", np.zeros(3), ndim=2)


# ---- CLI types -------------------------------------------------------------------------------

def test_int_sci_parses_scientific_notation():
    p = cli.int_sci(1, "--n")
    assert p("1e4") == 10000 and p("7") == 7
    for bad in ("0", "-3", "abc", "1.5", "inf", "nan"):
        with pytest.raises(argparse.ArgumentTypeError, match="--n must be an integer"):
            p(bad)


def test_one_line_parser_exits_2(capsys):
    ap = cli.OneLineArgumentParser(prog="prog")
    ap.add_argument("--x", type=cli.float_range(0, 1, low_open=True, name="--x"))
    with pytest.raises(SystemExit) as exc:
        ap.parse_args(["--x", "2"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--x must be in (0, 1]" in err[0]


def test_run_main_turns_value_error_into_exit_2(capsys):
    def main(argv):
        raise ValueError("delta must be in (0, 1), got 2")
    with pytest.raises(SystemExit) as exc:
        cli.run_main(main, [], prog="p")
    assert exc.value.code == 2
    assert capsys.readouterr().err.strip() == "p: error: delta must be in (0, 1), got 2"


# ---- atomic I/O and provenance ---------------------------------------------------------------

def test_atomic_json_roundtrip_numpy_and_nonfinite(tmp_path):
    p = tmp_path / "sub" / "r.json"
    io.atomic_write_json(p, {"a": np.float32(0.5), "b": np.arange(3), "c": float("nan"), "d": math.inf})
    assert json.loads(p.read_text()) == {"a": 0.5, "b": [0, 1, 2], "c": None, "d": "inf"}
    assert [f.name for f in p.parent.iterdir()] == ["r.json"]  # no temp file left behind


def test_provenance_fields():
    rec = io.provenance(seed=3, wall_seconds=1.23456, device="cpu", extra_key=1)
    for key in ("command", "commit", "utc", "versions", "seed", "wall_seconds", "device", "extra_key"):
        assert key in rec
    assert rec["seed"] == 3 and rec["wall_seconds"] == 1.2346


# ---- paper_checks registry ---------------------------------------------------------------------

def _claim(claimed, compare, measured, tol=0.0):
    return Claim(id="t", paper="P&L", location="x", claim="c", claimed=claimed, compare=compare,
                 tolerance=tol, measure=lambda: measured, kind="reproduction")


@pytest.mark.parametrize("compare,claimed,measured,tol,expected", [
    ("approx", 1.0, 1.05, 0.1, "PASS"), ("approx", 1.0, 1.2, 0.1, "FAIL"),
    ("le", 0.51, 0.50, 0.0, "PASS"), ("le", 0.51, 0.52, 0.0, "FAIL"),
    ("ge", 0.99, 0.995, 0.0, "PASS"), ("ge", 0.99, 0.98, 0.0, "FAIL"),
    ("lt", 0.51, 0.51, 0.0, "FAIL"), ("gt", 0.0, 0.1, 0.0, "PASS"),
    ("true", True, True, 0.0, "PASS"), ("true", True, False, 0.0, "FAIL"),
])
def test_verdicts_can_pass_and_fail(compare, claimed, measured, tol, expected):
    assert verdict(_claim(claimed, compare, measured, tol), measured) == expected


def test_run_claim_reports_needs_data_and_errors():
    def missing():
        raise NeedsData("no CIFAR-10")

    def broken():
        raise RuntimeError("boom")
    c1 = Claim(id="a", paper="YRZSC", location="T1", claim="c", claimed=1, measure=missing, kind="reproduction")
    c2 = Claim(id="b", paper="YRZSC", location="T1", claim="c", claimed=1, measure=broken, cost="gpu", kind="reproduction")
    c3 = Claim(id="c", paper="P&L", location="T1", claim="c", claimed=1, measure=lambda: Measured(1.0, "ok"), kind="identity")
    assert run_claim(c1)["verdict"] == "NEEDS-DATA"
    assert run_claim(c2)["verdict"] == "ERROR"
    assert run_claim(c3)["verdict"] == "PASS"
    with pytest.raises(ValueError, match="paper must be one of"):
        Claim(id="d", paper="nope", location="", claim="", claimed=1, measure=lambda: 1,
              kind="reproduction")


# ---- brute-force kNN reference ---------------------------------------------------------------

@given(st.integers(1, 12), st.integers(2, 12), st.integers(1, 5), st.sampled_from(["2", "inf"]),
       st.integers(0, 2**31 - 1))
def test_nearest_neighbor_matches_naive(nq, nr, dim, norm, seed):
    rng = np.random.default_rng(seed)
    q = rng.integers(0, 256, size=(nq, dim)).astype(np.uint8)
    r = rng.integers(0, 256, size=(nr, dim)).astype(np.uint8)
    d, i = knn.nearest_neighbor(q, r, norm)
    qi, ri = q.astype(np.int64), r.astype(np.int64)
    for a in range(nq):
        diffs = np.abs(qi[a] - ri)
        full = diffs.max(1) if norm == "inf" else np.sqrt((diffs ** 2).sum(1))
        assert d[a] == pytest.approx(full.min(), abs=1e-9)
        assert full[i[a]] == pytest.approx(full.min(), abs=1e-9)


def test_nearest_neighbor_exclude_self():
    x = np.array([[0.0], [1.0], [3.0]])
    d, i = knn.nearest_neighbor(x, x, "2", exclude_self=True)
    assert d.tolist() == [1.0, 1.0, 2.0] and i.tolist() == [1, 0, 1]
    with pytest.raises(ValueError, match="norm must be one of"):
        knn.nearest_neighbor(x, x, "1")
