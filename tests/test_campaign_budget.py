"""Budget and stop handling of the GPU campaign (``python -m deep.campaign``) on the CPU.

* ``pl`` under SIGTERM: the running training run is cut within a step, and the command writes
  its summary, manifest and archive and exits within 30 s (fails if ``pl_runs.run``, the timing
  pilots or the throughput measurement ignore the stop request);
* ``pl`` with a plan that overshoots its budget: the running run is cut at the budget (fails if
  a started run always trains to its end);
* the stop hooks of ``pl_runs.run`` and ``throughput.measure`` in-process;
* ``pl_runs.run`` scopes ``torch.use_deterministic_algorithms`` to the run (fails if the global
  flag set for one run leaks into later runs of the process).

The subprocess tests patch the ``--tiny`` preset of the P&L campaign in the child so that its
plan asks for far more epochs than fit (``max_ref_epochs``, ``safety``): training then runs
long enough to be interrupted.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent

CHILD = """
import json, sys
from deep.experiments import campaign_pl as cp
cp.TINY.update(json.loads(sys.argv[1]))
from deep.campaign import PROG, main
from plumbing.cli import run_main
sys.exit(run_main(main, sys.argv[2:], prog=PROG))
"""


def _start(preset: dict, args: list[str]) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(preset), *args], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _check_outputs(out: Path, archive: Path) -> dict:
    man = json.loads((out / "manifest_pl.json").read_text())
    summary = json.loads((out / "campaign_pl.json").read_text())
    with tarfile.open(archive, "r:gz") as tar:
        names = set(tar.getnames())
        assert json.loads(tar.extractfile("manifest_pl.json").read()) == man
    assert "campaign_pl.json" in names
    assert not any(n.endswith(".ckpt") for n in names)
    assert set(man["runs_done"]) == set(summary["runs_done"])
    return man


def test_pl_sigterm_during_training_writes_manifest_and_archive(tmp_path, mnist_root):
    out, archive = tmp_path / "camp", tmp_path / "camp.tar.gz"
    proc = _start({"max_ref_epochs": 150},   # the CPL run: about a minute on a CPU
                  ["pl", "--tiny", "--budget-s", "1500", "--data-root", str(mnist_root),
                   "--out", str(out), "--archive", str(archive)])
    work = out / "pl" / "scaling_law_mnist" / "work"
    deadline = time.monotonic() + 90
    try:
        # training of the CPL ConvNet (the plan's second, long run) has started once its first
        # epoch wrote a metrics file
        while not list(work.glob("mnist_cpl_convnet_*.metrics.json")):
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "training did not start within 90 s"
            time.sleep(0.2)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail("the campaign did not exit within 30 s of SIGTERM")
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-3000:]
    assert took < 30
    man = _check_outputs(out, archive)
    assert man["status"] == "stopped" and "SIGTERM" in man["stop_reason"]
    assert man["n_left"] >= 1
    # the throughput item finished before training and travels in the archive
    assert any(r.startswith("pl/throughput/") for r in man["runs_done"])
    assert list(work.glob("*.ckpt")), "the cut run should keep its last epoch's checkpoint"


def test_pl_budget_cuts_the_running_run(tmp_path, mnist_root):
    out, archive = tmp_path / "camp", tmp_path / "camp.tar.gz"
    budget = 15.0
    # safety 200: the plan asks for ~200x the budget, so the first run would far overrun it
    proc = _start({"max_ref_epochs": 10 ** 6, "safety": 200.0},
                  ["pl", "--tiny", "--budget-s", str(budget), "--data-root", str(mnist_root),
                   "--out", str(out), "--archive", str(archive)])
    try:
        _, err = proc.communicate(timeout=budget + 40)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"the campaign ran past its {budget} s budget by more than 40 s")
    assert proc.returncode == 0, err[-3000:]
    man = _check_outputs(out, archive)
    assert man["status"] == "stopped" and man["n_left"] >= 1
    # slack: single non-interruptible pieces (a CPL layer's eval-mode norm, the final evaluation)
    # take a few seconds on a loaded CPU; a run that ignores the budget overruns it by minutes
    assert man["provenance"]["wall_seconds"] <= budget + 6.0, man["provenance"]["wall_seconds"]
    plan = json.loads((out / "pl/scaling_law_mnist/plan.json").read_text())["plan"]
    assert plan["ref_epochs"] > 1   # the patched plan really overshoots


def _tiny_run_config(epochs=3):
    from deep.experiments import pl_runs
    from deep.trainer import TrainConfig

    return pl_runs.RunConfig(name="stop", dataset="mnist", model="aol_mlp",
                             loss=pl_runs.LossConfig(), train=TrainConfig(epochs=epochs, batch_size=16),
                             train_size=32, test_size=20, eval_train_size=16, width=16, depth=1,
                             eval_every=epochs)


def test_pl_run_stop_hook_cuts_and_resumes(tmp_path, mnist_root):
    from deep.experiments import pl_runs

    torch.set_num_threads(1)
    cfg = _tiny_run_config()
    calls = [0]

    def stop_in_second_epoch():   # asked once at the start, then per step (2 per epoch)
        calls[0] += 1
        return calls[0] > 4

    dev = torch.device("cpu")
    assert pl_runs.run(cfg, tmp_path, dev, mnist_root, should_stop=stop_in_second_epoch) is None
    paths = pl_runs.run_paths(cfg, tmp_path)
    assert not paths["result"].exists() and paths["checkpoint"].exists()
    assert len(json.loads(paths["metrics"].read_text())["history"]) == 1
    res = pl_runs.run(cfg, tmp_path, dev, mnist_root, should_stop=lambda: False)
    assert res is not None and len(res["history"]) == 3
    with pytest.raises(TypeError, match="should_stop"):
        pl_runs.run(_tiny_run_config(2), tmp_path, dev, mnist_root, should_stop=3)


def test_throughput_measure_stop_hook():
    from deep.experiments.throughput import measure

    torch.set_num_threads(1)
    dev = torch.device("cpu")
    kw = dict(batch_size=4, warmup=1, width=4)
    assert measure("aol_convnet", "cifar10", dev, batches=3, should_stop=lambda: True, **kw) is None
    calls = [0]

    def after_three():   # warm-up step, then two timed steps
        calls[0] += 1
        return calls[0] > 3

    r = measure("aol_convnet", "cifar10", dev, batches=50, should_stop=after_three, **kw)
    assert r["batches_timed"] == 2


def test_deterministic_algorithms_restored_after_run(tmp_path, mnist_root, monkeypatch):
    from deep.experiments import pl_runs

    torch.set_num_threads(1)
    seen = []
    real_fit = pl_runs.fit

    def fit(*a, **k):
        seen.append(torch.are_deterministic_algorithms_enabled())
        return real_fit(*a, **k)

    monkeypatch.setattr(pl_runs, "fit", fit)
    before = (torch.are_deterministic_algorithms_enabled(),
              torch.is_deterministic_algorithms_warn_only_enabled())
    assert before[0] is False, "another test left deterministic algorithms on"
    try:
        res = pl_runs.run(_tiny_run_config(1), tmp_path, torch.device("cpu"), mnist_root,
                          deterministic=True)
        assert res is not None and seen == [True]
        assert (torch.are_deterministic_algorithms_enabled(),
                torch.is_deterministic_algorithms_warn_only_enabled()) == before
        # a strict setting made by the caller survives a deterministic run unchanged
        torch.use_deterministic_algorithms(True, warn_only=False)
        pl_runs.run(_tiny_run_config(2), tmp_path, torch.device("cpu"), mnist_root,
                    deterministic=True)
        assert torch.are_deterministic_algorithms_enabled()
        assert not torch.is_deterministic_algorithms_warn_only_enabled()
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])


def test_cublas_workspace_config(monkeypatch):
    from deep.experiments import pl_runs

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    assert pl_runs.use_cublas_determinism()
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")   # a user's deterministic choice stays
    assert pl_runs.use_cublas_determinism() and os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


def test_cifar_plan_uses_the_loaded_training_set_size(tmp_path, monkeypatch):
    """A prepared CIFAR-10 file with N training images: the epoch plan divides by N (not 50000)."""
    import numpy as np

    from deep.experiments import campaign_pl as cp
    from deep.experiments import pl_runs
    from deep.experiments.campaign_common import Budget
    from plumbing import datasets

    n = 60
    rng = np.random.default_rng(0)
    npz = tmp_path / "cifar10_u8.npz"
    np.savez(npz, x_train=rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
             y_train=np.arange(n) % 10, x_test=rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8),
             y_test=np.arange(20) % 10)
    loader, msg = cp.cifar_loader(npz)
    assert loader is not None, msg
    monkeypatch.setitem(datasets._FID_LOADERS, "cifar10", None)   # restored after the test
    datasets.register_loader("cifar10", loader)
    monkeypatch.setattr(pl_runs, "_CACHE", {})
    sec = 1e-3   # seconds per training example, instead of the timing pilot
    monkeypatch.setattr(cp, "_seconds_per_example", lambda *a, **k: sec)
    cfg = cp.PlConfig(out=tmp_path / "o", cifar_root=str(npz), max_cifar_epochs=10 ** 6)
    budget = Budget(100.0)
    plan = cp._cifar_epochs(cfg, torch.device("cpu"), budget, ("cpl_convnet",), 1, "item")
    fit = (cfg.safety * 100.0 - 5.0) / (sec * n)   # 1250 epochs of 60 images (1 of 50000)
    assert fit - 10 <= plan["epochs"] <= fit
    assert plan["n_train"] == n and plan["n_train_loaded"] == n
