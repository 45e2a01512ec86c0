"""The P&L experiment commands (deep.scaling_law, robust_overfitting, pca_features, tradeoff,
throughput) and their shared run logic (deep.pl_runs): --tiny runs end to end on real MNIST on the
CPU and write the expected JSON; an interrupted run resumed from its checkpoint ends with exactly
the metrics of an uninterrupted one; bad input exits 2 with one line."""
from __future__ import annotations

import json
import math
import subprocess
import sys
import types

import pytest
import torch

from deep.experiments import pl_runs
from deep.experiments import scaling_law as sl
from deep.experiments.experiment import ExperimentArgs
from deep.trainer import TrainConfig
from plumbing.cli import run_main

RUN_KEYS = {"name", "config", "lipschitz", "train_size", "test_size", "eps", "eps_labels", "final",
            "history", "provenance", "augmentation", "data_passes"}
ROW_KEYS = {"model", "train_size", "epochs", "train_acc", "test_acc", "test_cra_36", "train_cra_36", "lr"}


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _common(root, tmp_path, **kw):
    d = dict(dataset="mnist", data_root=str(root), device="cpu", epochs=None, out=tmp_path, seed=0, tiny=True)
    d.update(kw)
    return ExperimentArgs(**d)


def _args(**kw):
    d = dict(width=None, depth=None, batch_size=None, test_size=None, eval_train_size=None, evaluations=20,
             lr=None, keep_checkpoints=False, init=None)
    d.update(kw)
    return types.SimpleNamespace(**d)


def _check_run_files(out, n_runs):
    results = [p for p in out.glob("*.json") if not p.name.endswith(".metrics.json") and p.name != "summary.json"]
    assert len(results) == n_runs
    for p in results:
        rec = json.loads(p.read_text())
        assert RUN_KEYS <= set(rec), set(RUN_KEYS) - set(rec)
        assert rec["provenance"]["seed"] == 0 and rec["provenance"]["device"] == "cpu"
        metrics = json.loads(p.with_name(p.name[:-5] + ".metrics.json").read_text())
        last = metrics["history"][-1]
        assert {"epoch", "train_loss", "train_acc", "test_acc", "train_cra", "test_cra"} <= set(last)
        if rec["lipschitz"]:
            assert len(last["test_cra"]) == len(rec["eps"])
            cra = last["test_cra"]
            assert all(a >= b for a, b in zip(cra, cra[1:]))    # CRA decreases with the radius
            assert cra[0] <= last["test_acc"] + 1e-12           # CRA <= accuracy
        assert not list(out.glob("*.ckpt"))                      # finished runs drop their checkpoint


def test_scaling_law_tiny_end_to_end(mnist_root, tmp_path, capsys):
    out = tmp_path / "sl"
    argv = ["--tiny", "--models", "aol_mlp,cpl_convnet", "--data-root", str(mnist_root), "--out", str(out)]
    rc = run_main(sl.main, argv, prog=sl.PROG)
    assert rc == 0
    summ = json.loads((out / "summary.json").read_text())
    assert summ["experiment"] == "scaling_law" and summ["tiny"] is True
    assert {r["model"] for r in summ["runs"]} == {"aol_mlp", "cpl_convnet"}
    for r in summ["runs"]:
        assert ROW_KEYS <= set(r)
        # fixed compute: passes * size is the same for every size (Sec. 4.2)
        assert r["data_passes"] * r["train_size"] == 64
        assert (r["test_cra_36"] is None) == (r["model"] == "simple_convnet")
    _check_run_files(out, 4)
    assert "aol_mlp" in capsys.readouterr().out
    # rerun: every run is found finished and skipped (identical summary rows)
    rc = run_main(sl.main, argv, prog=sl.PROG)
    again = json.loads((out / "summary.json").read_text())
    assert [r["test_acc"] for r in again["runs"]] == [r["test_acc"] for r in summ["runs"]]


def test_compute_scaling_tiny(mnist_root, tmp_path):
    out = tmp_path / "cs"
    rc = run_main(sl.main, ["--tiny", "--compute-scaling", "--models", "aol_mlp", "--epoch-list", "1,3",
                            "--data-root", str(mnist_root), "--out", str(out)], prog=sl.PROG)
    assert rc == 0
    summ = json.loads((out / "summary.json").read_text())
    assert summ["experiment"] == "compute_scaling"
    assert sorted(r["data_passes"] for r in summ["runs"]) == [1, 3]
    assert {r["train_size"] for r in summ["runs"]} == {64}


def test_other_experiments_tiny(mnist_root, tmp_path):
    from deep.experiments import pca_features, robust_overfitting, tradeoff

    root = ["--tiny", "--data-root", str(mnist_root)]
    assert run_main(robust_overfitting.main, root + ["--models", "aol_mlp", "--out", str(tmp_path / "ro")]) == 0
    ro = json.loads((tmp_path / "ro" / "summary.json").read_text())
    assert abs(ro["offset"] - math.sqrt(2)) < 1e-12
    for r in ro["runs"]:
        assert r["augment"] is False and r["loss"]["offset"] == pytest.approx(math.sqrt(2))
        c = r["cra_curve"]
        assert len(c["eps"]) == len(c["train"]) == len(c["test"]) and c["eps"][0] == 0.0
    assert run_main(pca_features.main, root + ["--out", str(tmp_path / "pca"), "--subsets", "1-16,513-3072",
                                               "--models", "simple_convnet"]) == 0
    pca = json.loads((tmp_path / "pca" / "summary.json").read_text())
    comp = {r["subset"]: (r["components"], r["variance_explained"]) for r in pca["runs"]}
    assert comp["1-16"][0] == "1-4" and comp["513-3072"][0] == "132-784"
    assert 0 < comp["513-3072"][1] < comp["1-16"][1] < 1     # top 4 PCs hold more variance than 132-784
    assert run_main(tradeoff.main, root + ["--out", str(tmp_path / "to"), "--ts", "0,10"]) == 0
    to = json.loads((tmp_path / "to" / "summary.json").read_text())
    assert [r["t"] for r in to["runs"]] == [0.0, 10.0]
    assert all(r["model"] == "unified_convnet" and r["loss"]["name"] == "self_normalizing_ce" for r in to["runs"])


def test_resume_after_interruption_equals_uninterrupted(mnist_root, tmp_path):
    """Augmented AOL-MLP, 3 epochs: stopped after 1 epoch and rerun == run straight through."""
    common = _common(mnist_root, tmp_path)
    cfg = pl_runs.build_run(_args(), common, name="resume", model="aol_mlp", loss=pl_runs.LossConfig(),
                            epochs=3, train_size=96, augment=True, eval_every=1)
    full = pl_runs.run(cfg, tmp_path / "a", torch.device("cpu"), mnist_root)
    assert pl_runs.run(cfg, tmp_path / "b", torch.device("cpu"), mnist_root, stop_after_epochs=1) is None
    assert list((tmp_path / "b").glob("*.ckpt"))                   # interrupted: checkpoint kept
    resumed = pl_runs.run(cfg, tmp_path / "b", torch.device("cpu"), mnist_root)
    assert resumed["final"] == full["final"]
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in full["history"]]
    assert [{k: v for k, v in h.items() if k != "seconds"} for h in resumed["history"]] == strip
    assert full["history"][-1]["train_loss"] < full["history"][0]["train_loss"] + 0.05


def test_fixed_compute_rules():
    assert [pl_runs.epochs_for_size(n, 1024, 50) for n in (64, 128, 1024)] == [800, 400, 50]
    assert pl_runs.group_passes(800, 64, 4096) == (80, 10)         # smallest divisor of 800 >= 64
    assert pl_runs.group_passes(50, 1024, 4096) == (5, 10)
    assert pl_runs.group_passes(7, 64, 4096) == (7, 1)             # prime: one trainer epoch
    assert pl_runs.group_passes(3, 10, 10 ** 6) == (3, 1)
    assert pl_runs.group_passes(50, 4096, 4096) == (1, 50)
    assert sl.gain_per_doubling([64, 128, 256], [0.1, 0.17, 0.24]) == pytest.approx(0.07)
    assert sl.crossing_size([128, 256], [0.8, 1.0], 0.9) == pytest.approx(2 ** 7.5)
    assert sl.crossing_size([128, 256], [0.5, 0.6], 0.9) is None


def test_config_hash_separates_settings(tmp_path):
    t = TrainConfig(epochs=1)
    a = pl_runs.RunConfig(name="x", dataset="mnist", model="aol_mlp", loss=pl_runs.LossConfig(), train=t)
    b = pl_runs.RunConfig(name="x", dataset="mnist", model="aol_mlp", loss=pl_runs.LossConfig(),
                          train=TrainConfig(epochs=1, lr=0.2))
    assert pl_runs.run_paths(a, tmp_path)["result"] != pl_runs.run_paths(b, tmp_path)["result"]
    with pytest.raises(ValueError, match="model must be one of"):
        pl_runs.RunConfig(name="x", dataset="mnist", model="resnet", loss=pl_runs.LossConfig(), train=t)
    with pytest.raises(ValueError, match="loss must be one of"):
        pl_runs.LossConfig(name="hinge")
    with pytest.raises(ValueError, match="init applies"):
        pl_runs.RunConfig(name="x", dataset="mnist", model="simple_convnet", loss=pl_runs.LossConfig(),
                          train=t, init="orthogonal")


def test_throughput_tiny():
    from deep.experiments.throughput import measure

    r = measure("aol_mlp", "mnist", torch.device("cpu"), batch_size=8, batches=1, warmup=0, width=16)
    assert r["epochs_per_second"] > 0
    assert r["epochs_per_second"] == pytest.approx(r["examples_per_second"] / 60000)


def test_help_names_the_gpu_command(capsys):
    with pytest.raises(SystemExit) as e:
        sl.main(["--help"])
    assert e.value.code == 0
    assert "--device cuda" in capsys.readouterr().out


@pytest.mark.parametrize("module,args", [
    ("deep.scaling_law", ["--sizes", "0"]),
    ("deep.scaling_law", ["--models", "resnet"]),
    ("deep.scaling_law", ["--size", "64"]),
    ("deep.robust_overfitting", ["--models", "simple_convnet"]),
    ("deep.pca_features", ["--subsets", "1-8"]),
    ("deep.tradeoff", ["--ts", "-1"]),
    ("deep.throughput", ["--device", "tpu"]),
])
def test_bad_input_one_line_exit_2(module, args, capsys):
    mod = __import__(module, fromlist=["main"])
    with pytest.raises(SystemExit) as e:
        run_main(mod.main, args, prog=module)
    assert e.value.code == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1, err


def test_bad_input_subprocess():
    p = subprocess.run([sys.executable, "-m", "deep.scaling_law", "--epochs", "0"], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 2
    assert len([ln for ln in p.stderr.splitlines() if ln.strip()]) == 1, p.stderr


def test_claims_read_results_and_can_fail(tmp_path, monkeypatch):
    """The Sec. 9.3 claims on a synthetic summary: a curve crossing 90% at 2^8 passes the
    '~234 examples' claim, one crossing at 2^12 fails it; a missing file is NEEDS-GPU."""
    import paper_checks.registry as reg
    from paper_checks import claims_pl_experiments as cp

    monkeypatch.setattr(reg, "RESULTS_DIR", tmp_path)
    claim = {c.id: c for c in reg.claims()}["pl-sec9.3-examples-for-90-cra"]
    assert reg.run_claim(claim)["verdict"] == "NEEDS-GPU"

    def write(cra_by_k):
        runs = [{"model": m, "train_size": 2 ** k, "test_cra_36": v, "test_acc": v}
                for m in cp.LIPSCHITZ_MODELS for k, v in cra_by_k.items()]
        (tmp_path / "scaling_law_mnist.json").write_text(json.dumps({"runs": runs}))

    write({6: 0.70, 7: 0.80, 8: 0.90, 9: 0.95, 14: 0.985, 15: 0.99})
    row = reg.run_claim(claim)
    assert row["verdict"] == "PASS" and row["measured"] == pytest.approx(256)
    write({6: 0.50, 8: 0.60, 10: 0.70, 12: 0.90, 15: 0.95})
    assert reg.run_claim(claim)["verdict"] == "FAIL"
    gain = {c.id: c for c in reg.claims()}["pl-sec9.3-gain-per-doubling-small"]
    assert reg.run_claim(gain)["measured"] == pytest.approx(0.05)   # 0.50 -> 0.60 over two doublings


def test_figures_render_from_results_or_skip(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import paper_checks.registry as reg
    from figures import fig_pl_experiments as fp
    from paper_checks.registry import NeedsData

    monkeypatch.setattr(reg, "RESULTS_DIR", tmp_path)
    with pytest.raises(NeedsData):
        fp.make_scaling_mnist(tmp_path)
    runs = [{"model": m, "train_size": n, "test_acc": 0.5, "train_acc": 0.9,
             "test_cra_36": None if m == "simple_convnet" else 0.3} for m in ("simple_convnet", "aol_mlp")
            for n in (64, 128)]
    (tmp_path / "scaling_law_mnist.json").write_text(json.dumps({"runs": runs}))
    assert fp.make_scaling_mnist(tmp_path).stat().st_size > 1000
    curve = {"eps": [0.0, 1.0], "train": [1.0, 0.9], "test": [0.8, 0.1]}
    (tmp_path / "robust_overfitting_mnist.json").write_text(json.dumps({"runs": [{"model": "aol_mlp", "cra_curve": curve}]}))
    assert fp.make_overfit_mnist(tmp_path).stat().st_size > 1000


def test_recalibrate_batchnorm_sets_exact_statistics():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.BatchNorm2d(3), torch.nn.ReLU())
    x = torch.randn(600, 1, 6, 6) * 2 + 1
    net.eval()
    assert pl_runs.recalibrate_batchnorm(net, x, batch_size=200) is True
    assert not net.training and net[1].momentum == 0.1
    with torch.no_grad():
        h = net[0](x)
    assert torch.allclose(net[1].running_mean, h.mean(dim=(0, 2, 3)), atol=1e-5)
    assert pl_runs.recalibrate_batchnorm(torch.nn.Linear(2, 2), torch.zeros(3, 2)) is False
