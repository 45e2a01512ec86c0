"""Command lines around the exact 1-NN radius: simulate.nn_exact_robustness (MNIST subset,
resume, bad input) and the side-by-side columns of simulate.nn_covering --exact."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import simulate.nn_exact_robustness as cmd
from theory.box_covering import simulate_theorem2
from theory.nn_exact import theorem2_exact
from theory.robust_distributions import GridRobustDistribution

PROG = [sys.executable, "-m", "simulate.nn_exact_robustness"]


def _run(args):
    return subprocess.run(PROG + args, capture_output=True, text=True, env=dict(os.environ), timeout=300)


@pytest.mark.parametrize("args,needle", [
    (["--n-train", "1"], "--n-train"),
    (["--norm", "1"], "--norm"),
    (["--eps", "-0.1", "--norm", "inf"], "--eps"),
    (["--eps", "0.1"], "--eps needs a single --norm"),
    (["--json", "/"], "directory"),
])
def test_bad_input_exits_2_with_one_line(args, needle):
    p = _run(args)
    assert p.returncode == 2
    assert len(p.stderr.strip().splitlines()) == 1 and needle in p.stderr


def test_mnist_subset_and_resume(mnist_root, tmp_path, monkeypatch):
    out = tmp_path / "r.json"
    argv = ["--data-root", str(mnist_root), "--n-train", "300", "--n-test", "12", "--batch", "4",
            "--norm", "2", "--eps", "0.5,1.0", "--json", str(out)]
    # interrupt after the second batch: the checkpoint keeps two batches
    real = cmd.exact_1nn
    calls = {"n": 0}

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(cmd, "exact_1nn", flaky)
    with pytest.raises(KeyboardInterrupt):
        cmd.main(argv)
    assert (tmp_path / "r.json.ckpt").is_file() and not out.exists()
    calls["n"] = -10                     # the rerun must solve only the last batch
    assert cmd.main(argv) == 0
    assert calls["n"] == -9
    data = json.loads(out.read_text())
    blk = data["norms"]["2"]
    assert data["n_train"] == 300 and data["n_test"] == 12 and len(blk["radius"]) == 12
    rows = {r["eps"]: r for r in blk["rows"]}
    for r in rows.values():   # lower bounds <= exact <= clean
        assert r["half_gap_certified_accuracy"] <= r["bisector_certified_accuracy"] + 1e-12
        assert r["bisector_certified_accuracy"] <= r["exact_robust_accuracy"] <= r["clean_accuracy"]
    assert rows[1.0]["exact_robust_accuracy"] <= rows[0.5]["exact_robust_accuracy"]
    # same result as an uninterrupted run
    out2 = tmp_path / "s.json"
    monkeypatch.setattr(cmd, "exact_1nn", real)
    assert cmd.main(argv[:-1] + [str(out2)]) == 0
    assert json.loads(out2.read_text())["norms"]["2"]["radius"] == blk["radius"]
    assert not (tmp_path / "r.json.ckpt").exists()


def test_theorem2_exact_uses_the_same_sets_as_simulate_theorem2():
    dist = GridRobustDistribution(d=2, delta=0.2, cells_per_axis=2, n_classes=2, seed=0)
    ex = theorem2_exact(dist.sample, 2, 0.2, 60, trials=2, n_test=15, seed=3)
    ref = simulate_theorem2(dist.sample, 2, 0.2, 60, trials=2, n_test=15, seed=3)
    assert ex["linf_nn_certified"][0] == pytest.approx(ref.certified_robust_accuracy.mean)
    assert ex["l2_nn_certified"][0] <= ex["l2_nn_exact"][0]


def test_nn_covering_exact_columns(capsys):
    from simulate.nn_covering import main as covering_main

    assert covering_main(["--d", "1", "--delta", "0.1", "--trials", "2", "--n-test", "10",
                          "--halvings", "2", "--exact"]) == 0
    out = capsys.readouterr().out
    assert "l2NN EXACT" in out
    row = [ln for ln in out.splitlines() if ln.strip().startswith("1 ")][0].split()
    lb, exact = float(row[-2]), float(row[-1])
    assert 0 <= lb <= exact <= 1
