"""paper_checks CIFAR-10 claims: a result made on approximate data (the JPEG copy) gets
APPROX-AGREES / APPROX-DIFFERS, never PASS/FAIL; official data would get PASS/FAIL; a reduced CPU
run of a GPU experiment stays NEEDS-GPU. Results are fake files in a temporary results/."""
from __future__ import annotations

import json

import pytest

import paper_checks.registry as reg


@pytest.fixture()
def results(tmp_path, monkeypatch):
    monkeypatch.setattr(reg, "RESULTS_DIR", tmp_path)

    def write(rel, obj):
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(obj))
    return write


def _claim(cid):
    return next(c for c in reg.claims() if c.id == cid)


def _sep(approx, tt_min, tt_mean=0.479):
    d = {"dataset": "cifar10", "norm": "inf", "train_train_min": tt_min, "test_train_min": 0.22,
         "train_train_mean": tt_mean, "test_train_mean": 0.479, "argmin_pairs": {}}
    if approx is not None:
        d.update(approximate=approx, approximate_reason="CIFAR-10, JPEG-approximate: lossy" if approx else None)
    return d


def test_separation_claims_approximate_verdicts(results):
    results("separation/cifar10_jpeg_inf.json", _sep(True, 0.215))
    assert reg.run_claim(_claim("yrzsc-cifar10-train-train-min"))["verdict"] == "APPROX-AGREES"
    assert reg.run_claim(_claim("yrzsc-cifar10-separation-exceeds-2eps"))["verdict"] == "APPROX-AGREES"
    results("separation/cifar10_jpeg_inf.json", _sep(True, 0.150))
    row = reg.run_claim(_claim("yrzsc-cifar10-train-train-min"))
    assert row["verdict"] == "APPROX-DIFFERS" and row["approximate"] is True
    assert "JPEG-approximate" in row["detail"]


def test_separation_claims_exact_data_gets_plain_verdicts(results):
    results("separation/cifar10_jpeg_inf.json", _sep(False, 0.212))
    assert reg.run_claim(_claim("yrzsc-cifar10-train-train-min"))["verdict"] == "PASS"
    results("separation/cifar10_jpeg_inf.json", _sep(None, 0.212))      # no fidelity record
    assert reg.run_claim(_claim("yrzsc-cifar10-train-train-min"))["verdict"] == "APPROX-AGREES"


def test_nn_scaling_dstar_claim(results):
    summ = {"norm": "2", "d_star_slope": 26.0, "loglog_r2": 0.99, "linlog_r2": 0.99,
            "linlog_slope_per_doubling": -0.1, "d_star_levina_bickel": 30.0}
    results("nn_distance_scaling_cifar10.json", {"summary": [summ], "approximate": True,
                                                 "approximate_reason": "JPEG"})
    row = reg.run_claim(_claim("pl-sec12-cifar10-dstar"))
    assert row["verdict"] == "APPROX-AGREES" and row["measured"] == 26.0
    assert "Levina-Bickel d* 30.0" in row["detail"]
    summ["d_star_slope"] = 40.0
    results("nn_distance_scaling_cifar10.json", {"summary": [summ], "approximate": True})
    assert reg.run_claim(_claim("pl-sec12-cifar10-dstar"))["verdict"] == "APPROX-DIFFERS"


def test_reduced_cpu_run_stays_needs_gpu_and_paper_scale_is_approximate(results):
    run = {"subset": "1-16", "model": "simple_convnet", "components": "1-16", "train_acc": 0.99,
           "test_acc": 0.43, "train_size": 2048, "epochs": 5}
    results("pca_features_cifar10.json", {"tiny": False, "approximate": True, "runs": [run]})
    row = reg.run_claim(_claim("pl-table1-1-16-test_acc"))
    assert row["verdict"] == "NEEDS-GPU" and "reduced" in row["detail"]
    run.update(train_size=50000, epochs=200)
    results("pca_features_cifar10.json", {"tiny": False, "approximate": True, "runs": [run]})
    assert reg.run_claim(_claim("pl-table1-1-16-test_acc"))["verdict"] == "APPROX-AGREES"


def test_yang_cifar_table_rows_are_gpu_and_approximate(results):
    c = _claim("yrzsc-table3-cifar10-at-test_acc")
    assert c.cost == "gpu" and c.kind == "reproduction"
    assert reg.run_claim(c)["verdict"] == "NEEDS-GPU"
    results("tradeoff_table_cifar10_wrn.json", {"config": {}, "approximate": True,
                                                "rows": [{"method": "at", "test_acc": 83.6}]})
    assert reg.run_claim(c)["verdict"] == "APPROX-AGREES"


def test_table1_variance_claim_from_data(monkeypatch):
    """The 'variance explained' column is computed from the CIFAR-10 training images. Stand-in:
    8x8x3 images (192 dimensions, so PCs 1-16 of 3072 scale to PCs 1-1) whose variance lies
    90% in one random direction; the measured fraction must be about 0.9."""
    import numpy as np

    import plumbing.datasets as pds
    from paper_checks import claims_pl_experiments as cpe
    from plumbing.fidelity import Fidelity

    rng = np.random.default_rng(0)
    n, d = 1000, 192
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    z = rng.normal(size=(n, d)) * np.sqrt(np.r_[0.9, np.full(d - 1, 0.1 / (d - 1))])
    x = np.clip(np.round(128 + 60 * (z @ q.T)), 0, 255).astype(np.uint8).reshape(n, 8, 8, 3)
    fid = Fidelity("cifar10", False, True, "CIFAR-10, JPEG-approximate: test stand-in")
    monkeypatch.setattr(pds, "load_dataset_with_fidelity", lambda *a, **k: (x, np.zeros(n, np.int64), fid))
    cpe._PCA_CACHE.clear()
    row = reg.run_claim(_claim("pl-table1-1-16-variance_explained"))
    cpe._PCA_CACHE.clear()
    assert row["approximate"] is True and row["verdict"] == "APPROX-DIFFERS"   # 0.9 vs 0.72
    assert abs(row["measured"] - 0.9) < 0.03
    assert "1000 CIFAR-10 training images" in row["detail"] and "PCs 1-1" in row["detail"]
