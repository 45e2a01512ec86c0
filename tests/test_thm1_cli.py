"""python -m simulate.no_free_robustness (P&L Theorem 1): output, JSON keys, determinism, and bad
input (exit status 2 with one line naming the parameter)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MOD = ["-m", "simulate.no_free_robustness"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}

BAD = {
    "n zero": (["--n", "0"], "--n"),
    "n negative": (["--n", "-5"], "--n"),
    "n non-numeric": (["--n", "ten"], "--n"),
    "n fractional": (["--n", "2.5"], "--n"),
    "delta 0": (["--delta", "0"], "--delta"),
    "delta 1": (["--delta", "1"], "--delta"),
    "delta nan": (["--delta", "nan"], "--delta"),
    "eps negative": (["--eps", "-0.01"], "--eps"),
    "eps >= 1": (["--eps", "1.0"], "--eps"),
    "trials 0": (["--trials", "0"], "--trials"),
    "unknown learner": (["--learners", "bayes,svm"], "svm"),
    "d too large": (["--d", "65"], "--d"),
    "sweep with n": (["--sweep", "--n", "10"], "--n"),
    "unknown fallback": (["--fallback", "nearest", "--n", "4", "--trials", "1"], "fallback"),
}


def test_bad_inputs_exit_2_with_one_line():
    procs = {k: subprocess.Popen([sys.executable, *MOD, *args], cwd=REPO, env=ENV, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for k, (args, _) in BAD.items()}
    for k, p in procs.items():
        out, err = p.communicate(timeout=120)
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert p.returncode == 2, (k, err)
        assert len(lines) == 1, (k, err)
        assert BAD[k][1] in lines[0], (k, lines[0])
        if k == "unknown learner":
            assert "oracle" in lines[0] and "bayes" in lines[0]     # names the allowed values
        assert out == ""


def _run(args, tmp_path, name):
    path = tmp_path / name
    r = subprocess.run([sys.executable, *MOD, *args, "--json", str(path)], cwd=REPO, env=ENV,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout, json.loads(path.read_text())


def test_small_run_table_json_and_determinism(tmp_path):
    args = ["--n", "5e2", "--trials", "4", "--test-size", "300", "--seed", "3"]
    out, res = _run(args, tmp_path, "a.json")
    for key in ("n", "d", "delta", "eps", "trials", "seed", "bound", "learners"):
        assert key in res
    assert res["n"] == 500 and res["d"] == 16 and res["eps"] == res["delta"] == 0.1
    assert res["bound"] == pytest.approx(0.5 + 500 / 2 ** 16)
    names = [r["name"] for r in res["learners"]]
    assert names == ["oracle", "linear", "memoriser", "1nn", "knn", "bayes"]
    for row in res["learners"]:
        assert {"name", "clean_accuracy", "robust_accuracy", "robust_accuracy_ci95"} <= set(row)
        lo, hi = row["robust_accuracy_ci95"]
        assert lo <= row["robust_accuracy"] <= hi
    for nm in names:
        assert nm in out
    assert "95% CI" in out and "verdict" in out and "FAIL" not in out
    assert all(not r["verdict"].startswith("FAIL") and "FAIL" not in r["verdict"]
               for r in res["learners"])
    assert "1/2 + P(seen)/2" in res["verdict_method"]
    from simulate.no_free_robustness import main

    assert main(args + ["--json", str(tmp_path / "b.json")]) == 0     # in-process, same seed
    res2 = json.loads((tmp_path / "b.json").read_text())
    res.pop("provenance"), res2.pop("provenance")
    assert res == res2                                  # same seed -> identical numbers


def test_sweep_command(tmp_path, capsys):
    from simulate.no_free_robustness import main

    path = tmp_path / "s.json"
    assert main(["--sweep", "--d", "6", "--sweep-n", "4,64,1024", "--trials", "3",
                 "--test-size", "200", "--learners", "bayes,1nn", "--json", str(path)]) == 0
    out, res = capsys.readouterr().out, json.loads(path.read_text())
    assert [p["n"] for p in res["points"]] == [4, 64, 1024]
    last = {r["name"]: r["robust_accuracy"] for r in res["points"][-1]["learners"]}
    assert last == {"bayes": 1.0, "1nn": 1.0}
    assert "n/2^(d-1)" in out
