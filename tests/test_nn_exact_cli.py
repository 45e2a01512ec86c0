"""Command lines around the exact 1-NN radius: simulate.nn_exact_robustness (reduced MNIST run,
resume, files, bad input) and the side-by-side columns of simulate.nn_covering --exact."""
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
    (["--box", "--no-box"], "--no-box"),
    (["--dataset", "svhn"], "--dataset"),
    (["--chunk", "0"], "--chunk"),
])
def test_bad_input_exits_2_with_one_line(args, needle):
    p = _run(args)
    assert p.returncode == 2
    assert len(p.stderr.strip().splitlines()) == 1 and needle in p.stderr


def test_existing_result_refused_before_work(tmp_path):
    (tmp_path / "mnist_l2_box.json").write_text("{}")
    p = _run(["--norm", "2", "--out", str(tmp_path)])
    assert p.returncode == 2 and "--force" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    assert (tmp_path / "mnist_l2_box.json").read_text() == "{}"


def test_mnist_reduced_run_resume_and_files(mnist_root, tmp_path, monkeypatch):
    argv = ["--data-root", str(mnist_root), "--n-train", "400", "--n-test", "12", "--chunk", "4",
            "--norm", "2", "--out", str(tmp_path)]
    real = cmd.nn_exact_chunk
    calls = {"n": 0}

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(cmd, "nn_exact_chunk", flaky)
    with pytest.raises(KeyboardInterrupt):
        cmd.main(argv)
    js = tmp_path / "mnist_l2_box_reduced.json"
    assert (tmp_path / "mnist_l2_box_reduced.json.ckpt").is_file() and not js.exists()
    calls["n"] = -10                     # the rerun solves only the last chunk
    assert cmd.main(argv) == 0
    assert calls["n"] == -9
    data = json.loads(js.read_text())
    assert data["reduced"] and data["n_train"] == 400 and data["n_test"] == 12
    assert data["box"] == [0.0, 1.0] and "pixel box" in data["threat_model"]
    assert data["checksum_match"] is True and data["approximate"] is False
    for r in data["grid"] + data["paper_radii"]:       # lower bounds <= exact <= clean
        assert r["half_gap_certified_accuracy"] <= r["exact_robust_accuracy"] + 1e-12
        assert r["bisector_certified_accuracy"] <= r["exact_robust_accuracy"] <= r["clean_accuracy"]
    ex = [r["exact_robust_accuracy"] for r in data["grid"]]
    assert all(a >= b for a, b in zip(ex, ex[1:]))
    z = np.load(tmp_path / "mnist_l2_box_reduced.npz")
    assert len(z["radius"]) == 12 and len(z["target_train_index"]) == 12
    ok = z["status"] == 0
    assert np.all(z["radius"][z["prediction"] != z["label"]] == 0)
    assert np.all(z["bisector_lower_bound"][ok] <= z["radius"][ok] + 1e-12)
    # same radii as an uninterrupted run without the box are never larger
    monkeypatch.setattr(cmd, "nn_exact_chunk", real)
    assert cmd.main(argv + ["--no-box"]) == 0
    z2 = np.load(tmp_path / "mnist_l2_nobox_reduced.npz")
    assert np.all(z2["radius"] <= z["radius"] + 1e-9)
    assert not (tmp_path / "mnist_l2_box_reduced.json.ckpt").exists()
    with pytest.raises(cmd.UsageError, match="--force"):   # finished result kept without --force
        cmd.main(argv)


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


def test_first_test_reuses_the_checkpoint_of_a_longer_run(mnist_root, tmp_path, monkeypatch):
    argv = ["--data-root", str(mnist_root), "--n-train", "300", "--chunk", "4", "--norm", "inf",
            "--no-box", "--out", str(tmp_path)]
    real = cmd.nn_exact_chunk
    calls = {"n": 0}

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(cmd, "nn_exact_chunk", flaky)
    with pytest.raises(KeyboardInterrupt):
        cmd.main(argv)                    # the full test set, interrupted after two chunks
    calls["n"] = -10
    assert cmd.main(argv + ["--first-test", "8"]) == 0
    assert calls["n"] == -10              # both chunks came from the checkpoint
    data = json.loads((tmp_path / "mnist_inf_nobox_reduced.json").read_text())
    assert data["n_test"] == 8 and data["reduced"]
    assert cmd.main(argv + ["--first-test", "6", "--force"]) == 0
    assert calls["n"] == -9               # the second chunk has another length: recomputed
