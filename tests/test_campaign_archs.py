"""``deep.campaign yrzsc-mnist --archs``: CNN1 and CNN2 in separate commands into one ``--out``
join one set of tables without retraining (fails if a second command refuses the folder,
retrains or rewrites the first network's runs, or drops its tables), and the evaluation sizes
the pilot chose are in the plan, every run and the combined tables."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent


def _campaign(args, timeout=600):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "deep.campaign", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _runs(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (out / "yrzsc-mnist" / "runs").glob("*.json")}


def test_archs_in_separate_commands_combine(tmp_path, mnist_root):
    out = tmp_path / "camp"
    common = ["yrzsc-mnist", "--tiny", "--budget-s", "900", "--data-root", str(mnist_root),
              "--out", str(out)]
    r = _campaign([*common, "--archs", "cnn1"])
    assert r.returncode == 0, r.stderr[-3000:]
    man = json.loads((out / "manifest_yrzsc_mnist.json").read_text())
    assert man["status"] == "complete" and man["n_done"] == 10 and man["n_left"] == 0
    first = _runs(out)
    assert len(first) == 10 and all("_cnn1_" in n for n in first)
    y = json.loads((out / "campaign_yrzsc_mnist.json").read_text())
    assert set(y["tables"]) == {"table2_cnn1", "table9_cnn1_mt"} and y["archs"] == ["cnn1"]

    r = _campaign([*common, "--archs", "cnn2"])
    assert r.returncode == 0, r.stderr[-3000:]
    second = _runs(out)
    assert len(second) == 20
    assert all(second[n] == b for n, b in first.items()), "CNN1 runs were rewritten"
    y = json.loads((out / "campaign_yrzsc_mnist.json").read_text())
    assert y["complete"] and y["archs"] == ["cnn1", "cnn2"] and y["epochs"] == 1
    assert all(len(t["rows"]) == 10 for t in y["tables"].values()) and len(y["tables"]) == 4
    man = json.loads((out / "manifest_yrzsc_mnist.json").read_text())
    assert man["n_done"] == 20 and man["status"] == "complete"
    # evaluation sizes: chosen by the pilot, in the plan, in every run and in each table
    for arch in ("cnn1", "cnn2"):
        plan = json.loads((out / f"yrzsc-mnist/plan_{arch}.json").read_text())["plan"]
        sizes = plan["eval_sizes"]
        assert plan["n_test"] == sizes["test"] and plan["n_mt"] == sizes["mt_test"]
        run = json.loads((out / f"yrzsc-mnist/runs/mnist_{arch}_at.json").read_text())
        assert run["n_eval"] == {"train": sizes["train_eval"], "test": sizes["test"],
                                 "mt_train": sizes["mt_train"], "mt_test": sizes["mt_test"],
                                 "lipschitz": sizes["lip"]}
        assert y["tables"][f"table2_{arch}"]["plan"]["n_test"] == sizes["test"]

    # both networks again: nothing is retrained or rewritten
    r = _campaign([*common, "--archs", "cnn1,cnn2"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert _runs(out) == second
    assert "pilot" not in r.stderr


def test_archs_usage_errors(tmp_path, capsys):
    from deep.experiments.campaign import build_parser

    r = _campaign(["yrzsc-mnist", "--budget-s", "5", "--out", str(tmp_path / "o"), "--archs", "cnn3"])
    assert r.returncode == 2, r.stderr
    assert "--archs" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    for bad in ("cnn1,cnn1", "", "cnn1,"):
        with pytest.raises(SystemExit) as exc:
            build_parser().parse_args(["yrzsc-mnist", "--archs", bad])
        assert exc.value.code == 2 and "--archs" in capsys.readouterr().err
    assert build_parser().parse_args(["all", "--archs", "cnn2,cnn1"]).archs == ("cnn2", "cnn1")


def test_size_evaluation_fits_its_share():
    from deep.experiments import campaign_yrzsc as cy

    cfg = cy.YrzscConfig(out=Path("unused"))
    data = {"y_tr_eval": torch.zeros(10000), "yt": torch.zeros(10000), "y_mt_tr": torch.zeros(1000),
            "y_mt_te": torch.zeros(1000), "x_lip": torch.zeros(10000, 1)}
    per_pass = {"cnn1": 2e-6, "cnn2": 3e-6}
    models = {"cnn1": 10, "cnn2": 10}
    full = cy.eval_passes(cfg, cy.full_eval_sizes(data))

    def cost(sizes):
        return sum(per_pass[a] * models[a] * cy.eval_passes(cfg, sizes) for a in per_pass)

    big = cy.size_evaluation(cfg, data, per_pass, models, 1e6)
    assert big["fraction"] == 1.0 and big["sizes"] == cy.full_eval_sizes(data)
    assert big["seconds_full"] == pytest.approx(cost(big["full"]))
    seconds = 0.3 * big["seconds_full"]
    small = cy.size_evaluation(cfg, data, per_pass, models, seconds)
    assert small["fits"] and cost(small["sizes"]) <= seconds
    assert small["fraction"] == pytest.approx(0.3, abs=1e-3)
    assert 2990 <= small["sizes"]["test"] <= 3000 and 299 <= small["sizes"]["mt_test"] <= 300
    assert cost(small["sizes"]) > 0.99 * seconds   # the largest sizes that fit, not far less
    # at 8 % the MT sets stop at MIN_EVAL_SIZE and the others shrink further to compensate
    five = cy.size_evaluation(cfg, data, per_pass, models, 0.08 * big["seconds_full"])
    assert five["fits"] and five["sizes"]["mt_test"] == cy.MIN_EVAL_SIZE
    assert five["fraction"] < 0.07 and cost(five["sizes"]) <= 0.08 * big["seconds_full"]
    tiny = cy.size_evaluation(cfg, data, per_pass, models, 1e-9)
    assert not tiny["fits"] and set(tiny["sizes"].values()) == {cy.MIN_EVAL_SIZE}


def test_gpu_estimate_cuts_the_evaluation_to_its_share():
    from deep.experiments.campaign_timing import gpu_estimate

    groups = [{"group": "cnn1_natural", "models": 1, "aten_ops_per_step": 100,
               "flops_per_step_b64": 1e9}]
    evals = {"cnn1": {k: {"flops_per_example": 1e9, "aten_ops_per_batch": 10}
                      for k in ("pgd10", "mt20", "lip10")}}
    kw = dict(launch_s=1e-5, gpu_flops=1e12, n_pgd=20000, n_mt=2000, n_lip=10000, eval_batch=1000)
    full = gpu_estimate(groups, evals, budget_s=1e6, **kw)
    assert full["eval_fraction_that_fits"] == 1.0
    est = gpu_estimate(groups, evals, budget_s=100.0, eval_share=0.35, **kw)
    assert est["eval_seconds_all_models"] == full["eval_seconds_all_models"] == pytest.approx(32.0)
    assert est["eval_seconds_used"] == pytest.approx(0.35 * 0.85 * 100)
    assert est["epochs_that_fit"] == int((0.85 * 100 - 0.35 * 0.85 * 100) // (938 * 1e-3))
