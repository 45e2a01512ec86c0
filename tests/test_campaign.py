"""The budgeted GPU campaigns (``python -m deep.campaign``) on the CPU with ``--tiny``.

* stacked multi-model training (``deep.experiments.campaign_stack``) gives the same parameters as
  training each model alone with ``deep.methods`` (fails if a model's rows, weights or loss
  scaling get mixed up);
* the compressed YRZSC learning-rate schedule;
* end to end: a cut-off campaign (``--stop-after-runs``, and a budget that ends at once) leaves its
  finished runs, a manifest and a valid archive; the rerun resumes without touching finished
  runs and completes; JSON fields (provenance, epochs, deviations, broken certificates == 0).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from deep.experiments.campaign_common import step_decay_factor
from deep.experiments.campaign_stack import Group, Schedule, train_group
from deep.methods import parse_method_spec
from deep.models_yang import CNN1

REPO = Path(__file__).resolve().parent.parent


def _cnn1(seed=3):
    torch.manual_seed(seed)
    return CNN1(image_size=16, dropout=0.0)


@pytest.mark.parametrize("kind,specs", [("trades", ["trades:1", "trades:6"]),
                                        ("ce_mix", ["at", "rst:2"])])
def test_stacked_training_matches_separate_training(kind, specs):
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(24, 1, 16, 16, generator=g)
    y = torch.randint(0, 10, (24,), generator=g)
    sched = Schedule(lr=0.05, momentum=0.9, milestones=(0.5,))
    methods = [parse_method_spec(s, steps=1) for s in specs]
    group = Group("cnn1", kind, methods)
    stacked = group.build([_cnn1() for _ in methods])
    train_group(group, stacked, x, y, epochs=1, batch_size=8, sched=sched, seed=0)
    together = stacked.unstack(_cnn1())
    start = _cnn1()
    for m, joint in zip(methods, together):
        alone = _cnn1()
        train_group(Group("cnn1", "single", [m]), alone, x, y, epochs=1, batch_size=8,
                    sched=sched, seed=0)
        moved = max((p - q).abs().max().item() for p, q in zip(alone.parameters(), start.parameters()))
        diff = max((p - q).abs().max().item() for p, q in zip(alone.parameters(), joint.parameters()))
        assert moved > 1e-3, "training did not change the parameters"
        assert diff < 1e-5 * max(1.0, moved) + 1e-6, f"{m.spec}: stacked differs by {diff} (moved {moved})"


def test_compressed_step_schedule():
    from deep.experiments.campaign_yrzsc import LR_MILESTONES

    assert LR_MILESTONES == (0.25, 0.5, 0.75, 0.875)
    assert step_decay_factor(0.0, LR_MILESTONES) == 1.0
    assert step_decay_factor(0.2499, LR_MILESTONES) == 1.0
    assert step_decay_factor(0.25, LR_MILESTONES) == pytest.approx(0.1)
    assert step_decay_factor(0.8, LR_MILESTONES) == pytest.approx(1e-3)
    assert step_decay_factor(0.9, LR_MILESTONES) == pytest.approx(1e-4)


def _fake_cifar(path: Path) -> Path:
    """A tiny CIFAR-shaped uint8 .npz (random pixels), the format of ``deep.campaign prepare``."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 60), ("test", 40)):
        arrays[f"x_{split}"] = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        arrays[f"y_{split}"] = np.arange(n, dtype=np.int64) % 10
    np.savez(path, **arrays)
    return path


def _campaign(args, timeout=900):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "deep.campaign", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _archive_names(path: Path) -> set[str]:
    with tarfile.open(path, "r:gz") as tar:
        return set(tar.getnames())


def _run_files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes()
            for sub in ("yrzsc-mnist/runs", "pl") if (out / sub).is_dir()
            for p in (out / sub).rglob("*.json") if p.name != "plan.json"}


def test_campaign_tiny_cutoff_resume_and_fields(tmp_path, mnist_root):
    out = tmp_path / "camp"
    archive = tmp_path / "camp.tar.gz"
    npz = _fake_cifar(tmp_path / "cifar10_u8.npz")
    common = ["--tiny", "--data-root", str(mnist_root), "--out", str(out), "--archive", str(archive),
              "--cifar-root", str(npz)]

    # 1. a budget that ends at once: nothing finishes, but manifest and archive are valid
    quick = tmp_path / "quick"
    r = _campaign(["yrzsc-mnist", "--tiny", "--data-root", str(mnist_root), "--budget-s", "0.001",
                   "--out", str(quick)])
    assert r.returncode == 0, r.stderr
    man = json.loads((quick / "manifest_yrzsc_mnist.json").read_text())
    assert man["status"] != "complete" and man["n_done"] == 0 and man["n_left"] == 20
    assert "manifest_yrzsc_mnist.json" in _archive_names(quick / "campaign_results.tar.gz")

    # 2. cut off after 3 runs (as if the budget ran out): those 3 are written and archived
    r = _campaign(["all", "--budget-s", "900", "--stop-after-runs", "3", *common])
    assert r.returncode == 0, r.stderr
    man = json.loads((out / "manifest_yrzsc_mnist.json").read_text())
    assert man["n_done"] == 3 and man["n_left"] == 17 and man["status"] == "stopped"
    first = _run_files(out)
    assert len(first) == 3
    names = _archive_names(archive)
    assert all(n in names for n in first), (sorted(first), sorted(names))

    # 3. the rerun resumes: finished runs untouched, everything completes
    r = _campaign(["all", "--budget-s", "900", *common])
    assert r.returncode == 0, r.stderr
    second = _run_files(out)
    for name, data in first.items():
        assert second[name] == data, f"{name} was rewritten on resume"
    y = json.loads((out / "campaign_yrzsc_mnist.json").read_text())
    assert y["complete"] and y["tiny"] and y["epochs"] == 1 and y["paper_epochs"] == 160
    assert "1 epoch(s)" in y["header"]
    assert any("instead of the paper's 160" in d for d in y["deviations"])
    assert {"command", "commit", "device", "seed", "wall_seconds", "versions"} <= set(y["provenance"])
    assert "torch" in y["provenance"]["versions"]
    assert len(y["tables"]["table2_cnn1"]["rows"]) == 10 and len(y["tables"]["table10_cnn2_mt"]["rows"]) == 10
    row = y["tables"]["table9_cnn1_mt"]["rows"][0]
    assert row["gap"] == pytest.approx(row["train_acc"] - row["test_acc"])
    run = json.loads((out / "yrzsc-mnist/runs/mnist_cnn2_trades-6.json").read_text())
    assert run["epochs"] == 1 and run["method_config"]["weight"] == 6.0
    assert run["mt"]["adv_test_acc"] <= run["mt"]["test_acc"] + 1e-9
    assert run["provenance"]["device"] == "cpu"

    p = json.loads((out / "campaign_pl.json").read_text())
    assert p["broken_certificates"] == 0
    assert p["cifar_skipped"] is None
    for key in ("throughput", "scaling_law_mnist", "pca_features_cifar10", "tradeoff_cifar10",
                "robust_overfitting_cifar10"):
        assert p["items"][key]["runs"], key
        for rr in p["items"][key]["runs"]:
            assert rr["broken_certificates"] == 0
    assert all(rr["approximate"] for rr in p["items"]["tradeoff_cifar10"]["runs"])
    pm = json.loads((out / "manifest_pl.json").read_text())
    assert pm["broken_certificates"] == 0 and pm["provenance"]["device_info"]["torch"]
    names = _archive_names(archive)
    assert "campaign_pl.json" in names and "campaign_yrzsc_mnist.json" in names
    assert not any(n.endswith(".ckpt") for n in names)

    # 4. a third run finds everything finished and rewrites no run
    r = _campaign(["all", "--budget-s", "900", *common])
    assert r.returncode == 0, r.stderr
    assert _run_files(out) == second


def test_campaign_usage_errors(tmp_path):
    r = _campaign(["yrzsc-mnist", "--out", str(tmp_path / "o")])
    assert r.returncode == 2 and "--budget-s" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = _campaign(["pl", "--budget-s", "10", "--out", str(tmp_path / "o"), "--archive",
                   str(tmp_path / "a.zip")])
    assert r.returncode == 2 and "--archive" in r.stderr
    (tmp_path / "file").write_text("x")
    r = _campaign(["pl", "--budget-s", "10", "--out", str(tmp_path / "file")])
    assert r.returncode == 2 and "not a folder" in r.stderr


def test_stacked_model_replays_dropout_masks_per_model():
    """TRADES compares f(x) and f(x') under one dropout mask: replaying torch's RNG state must
    give the stacked model the same masks (and different models different masks)."""
    from deep.experiments.campaign_stack import StackedModel
    from deep.methods import _SameRandomness

    torch.manual_seed(0)
    models = [CNN1(image_size=16, dropout=0.5) for _ in range(3)]
    for m in models[1:]:
        m.load_state_dict(models[0].state_dict())
    st = StackedModel(models).train()
    x = torch.rand(4, 1, 16, 16).repeat(3, 1, 1, 1)
    rng = _SameRandomness(x.device)
    a = st(x)
    rng.replay()
    b = st(x)
    c = st(x)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert not torch.allclose(a[:4], a[4:8]), "identical models got identical dropout masks"
